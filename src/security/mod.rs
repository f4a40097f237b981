//! Authentication and authorization building blocks, free of sockets and
//! files where they can be: Kafka ACLs and the authorizer's decision
//! (`acl.rs`), Kafka's security protocols (listener names), SCRAM credentials
//! and the SCRAM and PLAIN server exchanges (sans-io), the principal named
//! by a client certificate, and the TLS server configuration built from
//! PEM files.
//!
//! Owns the credential math and the SASL message formats. Must never log,
//! format into an error or otherwise reveal a password, a salted password,
//! a stored or server key, or a private key: errors name the user, the
//! mechanism and the file, never the secret.

pub mod acl;
pub mod plain;
pub mod principal;
pub mod protocol;
pub mod scram;
pub mod tls;

pub use protocol::SecurityProtocol;
pub use scram::{ScramCredential, ScramMechanism};

/// A SASL mechanism tierlog offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    pub fn parse(name: &str) -> Option<SaslMechanism> {
        if name == "PLAIN" {
            return Some(SaslMechanism::Plain);
        }
        ScramMechanism::parse(name).map(SaslMechanism::Scram)
    }
}
