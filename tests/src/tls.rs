//! Test PKI generated at run time with rcgen: a CA, server and client certificates, written as
//! PEM files for configs, and rustls configs for test clients and backends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and the PEM files it signed, in one directory.
#[derive(Debug)]
pub struct Pki {
    /// The CA certificate (PEM file).
    pub ca: PathBuf,
    dir: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

/// A certificate and key written as PEM files.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A new CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        Self {
            ca,
            dir: dir.to_path_buf(),
            ca_params,
            ca_key,
        }
    }

    /// A leaf certificate for `names` (server and client auth), written as `<file>.pem`/`.key`.
    pub fn issue(&self, file: &str, names: &[&str]) -> Identity {
        self.issue_with(file, names, None)
    }

    /// Like [`Pki::issue`], valid until midnight UTC of `(year, month, day)`.
    pub fn issue_until(&self, file: &str, names: &[&str], until: (i32, u8, u8)) -> Identity {
        self.issue_with(file, names, Some(until))
    }

    fn issue_with(&self, file: &str, names: &[&str], until: Option<(i32, u8, u8)>) -> Identity {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        if let Some((year, month, day)) = until {
            params.not_after = rcgen::date_time_ymd(year, month, day);
        }
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        let identity = Identity {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&identity.cert, cert.pem()).expect("write cert");
        std::fs::write(&identity.key, key.serialize_pem()).expect("write key");
        identity
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read CA") {
            roots.add(cert.expect("CA cert")).expect("add CA");
        }
        roots
    }

    /// A client config trusting this CA, offering `alpn`, optionally with a client identity.
    pub fn client_config(
        &self,
        alpn: &[&str],
        identity: Option<&Identity>,
    ) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(self.roots());
        let mut config = match identity {
            Some(id) => builder
                .with_client_auth_cert(certs(&id.cert), key(&id.key))
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// A server config for `identity`; requires client certificates from this CA when `mtls`.
    pub fn server_config(
        &self,
        identity: &Identity,
        alpn: &[&str],
        mtls: bool,
    ) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if mtls {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(self.roots()),
                provider(),
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs(&identity.cert), key(&identity.key))
            .expect("server cert");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("read certs")
        .collect::<Result<_, _>>()
        .expect("parse certs")
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).expect("read key")
}
