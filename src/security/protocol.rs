//! Kafka's security protocols, which tierlog also uses as listener names
//! (`SASL_SSL://0.0.0.0:9093`).

use std::fmt;

use crate::error::{Error, Result};

/// How a listener talks to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication.
    Plaintext,
    /// TLS; the principal from a client certificate when one is presented.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Connections start with a TLS handshake.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Clients must authenticate with SASL before any other request.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Split `PROTOCOL://host:port` into its protocol and address; `what`
/// names the setting in errors.
pub fn parse_listener(s: &str, what: &str) -> Result<(SecurityProtocol, String)> {
    let (name, addr) = s.split_once("://").ok_or_else(|| {
        Error::invalid(format!(
            "{what} '{s}' is not PROTOCOL://host:port (PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
        ))
    })?;
    let protocol = SecurityProtocol::parse(name).ok_or_else(|| {
        Error::invalid(format!(
            "{what} '{s}': unknown protocol '{name}' (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
        ))
    })?;
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !ok {
        return Err(Error::invalid(format!(
            "{what} '{s}': '{addr}' is not host:port"
        )));
    }
    Ok((protocol, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_names() {
        let (p, a) = parse_listener("SASL_SSL://0.0.0.0:9093", "listeners").unwrap();
        assert_eq!((p, a.as_str()), (SecurityProtocol::SaslSsl, "0.0.0.0:9093"));
        let (p, a) = parse_listener("PLAINTEXT://[::1]:9092", "listeners").unwrap();
        assert_eq!((p, a.as_str()), (SecurityProtocol::Plaintext, "[::1]:9092"));
        for bad in [
            "127.0.0.1:9092",
            "TLS://h:1",
            "SSL://h",
            "SSL://:1",
            "SSL://h:x",
        ] {
            assert!(parse_listener(bad, "listeners").is_err(), "{bad}");
        }
        for p in SecurityProtocol::ALL {
            assert_eq!(SecurityProtocol::parse(p.name()), Some(p));
        }
    }
}
