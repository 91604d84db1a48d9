//! `host:port` addresses of listeners, upstream endpoints and scrape targets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A `host:port` pair. The host is an IP literal or a DNS name (resolved when connecting).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    host: Host,
    port: u16,
}

/// The host part of an [`Address`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Name(String),
}

impl Address {
    /// Parses `host:port`, `[v6]:port`. The port may be 0 only where the caller allows it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self {
                host: Host::Ip(addr.ip()),
                port: addr.port(),
            });
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| "missing \":port\"".to_string())?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("port \"{port}\" is not a number from 0 to 65535"))?;
        if host.is_empty() {
            return Err("missing host".into());
        }
        if host.contains(':') || host.starts_with('[') {
            return Err("IPv6 addresses must be written as [addr]:port".into());
        }
        let valid_name = host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_name {
            return Err(format!(
                "\"{host}\" is neither an IP address nor a DNS name"
            ));
        }
        Ok(Self {
            host: Host::Name(host.to_ascii_lowercase()),
            port,
        })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address to bind, for listeners: an IP literal, or `localhost`.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, self.port)),
            Host::Name(name) if name == "localhost" => {
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port))
            }
            Host::Name(_) => None,
        }
    }

    /// The socket address when the host is an IP literal (no DNS lookup needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_names_and_v6() {
        assert_eq!(
            Address::parse("127.0.0.1:8080").map(|a| a.to_string()),
            Ok("127.0.0.1:8080".into())
        );
        assert_eq!(
            Address::parse("[::1]:80").map(|a| a.to_string()),
            Ok("[::1]:80".into())
        );
        assert_eq!(
            Address::parse("Stable.SVC.local:8080").map(|a| a.to_string()),
            Ok("stable.svc.local:8080".into())
        );
        assert_eq!(
            Address::parse("localhost:0")
                .ok()
                .and_then(|a| a.bind_addr()),
            Some("127.0.0.1:0".parse().expect("literal"))
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        assert_eq!(Address::parse("127.0.0.1"), Err("missing \":port\"".into()));
        assert_eq!(
            Address::parse("127.0.0.1:99999"),
            Err("port \"99999\" is not a number from 0 to 65535".into())
        );
        assert_eq!(Address::parse(":80"), Err("missing host".into()));
        assert_eq!(
            Address::parse("::1:80"),
            Err("IPv6 addresses must be written as [addr]:port".into())
        );
        assert_eq!(
            Address::parse("bad host:80"),
            Err("\"bad host\" is neither an IP address nor a DNS name".into())
        );
    }
}
