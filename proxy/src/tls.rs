//! rustls configurations (ring provider) built from the PEM files a config names, and the
//! listeners' server configs reloaded when those files change.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use metrics::Gauge;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sluice_config::{ClientTls, Host, Listener, ListenerProtocol, ServerTls, UpstreamProtocol};

/// A TLS listener's server config. Each handshake takes the one in force; [`ListenerTls::reload`]
/// replaces it when the certificate, key or client CA files change, and keeps it when the new
/// files are unusable. Connections already established keep the config they started with.
pub struct ListenerTls {
    listener: String,
    files: ServerTls,
    protocol: ListenerProtocol,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as last read (loaded or refused), to skip unchanged files and not retry a
    /// refused pair until one of them changes again.
    seen: Mutex<Seen>,
    /// `sluice_tls_certificate_expiry_seconds{listener}`.
    expiry: Gauge,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the combination (e.g. key does not match certificate).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not be used to verify clients.
    #[error("client_ca: {0}")]
    Verifier(String),
    /// `server_name` is not a valid name.
    #[error("invalid server_name \"{0}\"")]
    ServerName(String),
    /// The private key is not the certificate's.
    #[error("{key} is not the private key of the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs_from(&read(path)?, path)
}

/// The certificates of PEM `bytes` read from `path` (named in errors).
fn certs_from(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no certificate found".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key_from(&read(path)?, path)
}

fn key_from(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots_from(&read(path)?, path)
}

fn roots_from(bytes: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(bytes, path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The server config of a TLS listener; ALPN offers what the listener's protocol allows.
pub fn server_config(
    tls: &ServerTls,
    protocol: ListenerProtocol,
) -> Result<Arc<ServerConfig>, TlsError> {
    let ca = tls.client_ca.as_deref().map(read).transpose()?;
    let pem = ServerPem {
        cert: read(&tls.cert)?,
        key: read(&tls.key)?,
        client_ca: ca,
    };
    Ok(server_config_from(tls, &pem, protocol)?.0)
}

/// The bytes of a listener's `[cert, key, client_ca]` files.
type Seen = [Option<Vec<u8>>; 3];

/// The PEM contents of a listener's TLS files.
struct ServerPem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// The server config from PEM contents read from `tls`'s files (named in errors), with the
/// Unix time at which the first certificate of its chain expires.
fn server_config_from(
    tls: &ServerTls,
    pem: &ServerPem,
    protocol: ListenerProtocol,
) -> Result<(Arc<ServerConfig>, Option<i64>), TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match (&tls.client_ca, &pem.client_ca) {
        (Some(path), Some(ca)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots_from(ca, path)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let chain = certs_from(&pem.cert, &tls.cert)?;
    let expiry = chain.iter().filter_map(|c| not_after(c)).min();
    let mut config = builder
        .with_single_cert(chain, key_from(&pem.key, &tls.key)?)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: tls.cert.display().to_string(),
                key: tls.key.display().to_string(),
            },
            other => TlsError::Rustls(other),
        })?;
    config.alpn_protocols = match protocol {
        ListenerProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ListenerProtocol::Http1 => vec![b"http/1.1".to_vec()],
        ListenerProtocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok((Arc::new(config), expiry))
}

/// The Unix time (seconds) after which `cert` is no longer valid, if it parses.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, parsed)| parsed.validity().not_after.timestamp())
}

impl ListenerTls {
    /// Loads `listener`'s TLS files (it must have `tls`); `expiry` is its
    /// `sluice_tls_certificate_expiry_seconds` gauge.
    pub fn load(listener: &Listener, expiry: Gauge) -> Result<Option<Self>, TlsError> {
        let Some(files) = &listener.tls else {
            return Ok(None);
        };
        let (pem, seen) = read_pem(files)?;
        let (config, not_after) = server_config_from(files, &pem, listener.protocol)?;
        if let Some(at) = not_after {
            expiry.set(at as f64);
        }
        Ok(Some(Self {
            listener: listener.name.clone(),
            files: files.clone(),
            protocol: listener.protocol,
            current: RwLock::new(config),
            seen: Mutex::new(seen),
            expiry,
        }))
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The files it reads: certificate chain, key, and client CA when configured.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.files.cert.clone(), self.files.key.clone()];
        files.extend(self.files.client_ca.clone());
        files
    }

    /// An acceptor with the server config in force, for one handshake.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Re-reads the files and, when they changed (or `forced`), builds and installs a new
    /// server config. `Ok(None)`: unchanged; `Ok(Some(expiry))`: installed, with the Unix time
    /// its certificate expires; `Err`: the files are unusable and the config in force stays
    /// (the same files are not retried until one of them changes). Reads files: call it where
    /// blocking is allowed.
    pub fn reload(&self, forced: bool) -> Result<Option<Option<i64>>, TlsError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (pem, now) = read_pem(&self.files)?;
        if !forced && now == *seen {
            return Ok(None);
        }
        *seen = now;
        let (config, not_after) = server_config_from(&self.files, &pem, self.protocol)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        if let Some(at) = not_after {
            self.expiry.set(at as f64);
        }
        Ok(Some(not_after))
    }
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("listener", &self.listener)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The PEM contents of `files` and their bytes as [`ListenerTls::seen`] keeps them.
fn read_pem(files: &ServerTls) -> Result<(ServerPem, Seen), TlsError> {
    let pem = ServerPem {
        cert: read(&files.cert)?,
        key: read(&files.key)?,
        client_ca: files.client_ca.as_deref().map(read).transpose()?,
    };
    let seen = [
        Some(pem.cert.clone()),
        Some(pem.key.clone()),
        pem.client_ca.clone(),
    ];
    Ok((pem, seen))
}

/// The name to verify in the certificate of `host` when none is configured: an IP literal
/// as an address, a DNS name as itself (`Err` with the name when it cannot be one).
pub fn server_name_of(host: &Host) -> Result<ServerName<'static>, String> {
    match host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(name) => ServerName::try_from(name.clone()).map_err(|_| name.clone()),
    }
}

/// The client config towards a TLS upstream, and the name to verify (when configured).
pub fn client_config(
    tls: &ClientTls,
    protocol: UpstreamProtocol,
) -> Result<(Arc<ClientConfig>, Option<ServerName<'static>>), TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(&tls.ca)?);
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key_path)) => {
            builder.with_client_auth_cert(certs(cert)?, key(key_path)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
    };
    let name = match &tls.server_name {
        Some(name) => Some(
            ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name.clone()))?,
        ),
        None => None,
    };
    Ok((Arc::new(config), name))
}
