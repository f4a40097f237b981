//! The broker's listeners and their security settings: `listeners`,
//! `advertised.listeners`, the `ssl.*` PEM settings and the SASL ones,
//! resolved into one [`ListenerSpec`] per listener.

use super::*;
use crate::security::tls::{ClientAuth, TlsFiles};
use crate::security::{protocol::parse_listener, SaslMechanism, SecurityProtocol};

/// One listener as the broker opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub protocol: SecurityProtocol,
    /// `host:port` to bind.
    pub bind: String,
    /// `host:port` clients are told (Metadata, FindCoordinator); `None`:
    /// the bound address.
    pub advertised: Option<String>,
}

impl BrokerConfig {
    /// The listeners to open: `listeners` when set, else one PLAINTEXT
    /// listener on `listen` advertised as `advertised_listener`.
    pub fn listener_specs(&self) -> Result<Vec<ListenerSpec>> {
        if self.listeners.is_empty() {
            return Ok(vec![ListenerSpec {
                protocol: SecurityProtocol::Plaintext,
                bind: self.listen.clone(),
                advertised: self.advertised_listener.clone(),
            }]);
        }
        let mut advertised = BTreeMap::new();
        for a in &self.advertised_listeners {
            let (p, addr) = parse_listener(a, "advertised.listeners")?;
            if advertised.insert(p, addr).is_some() {
                return Err(Error::invalid(format!(
                    "advertised.listeners names {p} twice"
                )));
            }
        }
        let mut specs: Vec<ListenerSpec> = Vec::new();
        for l in &self.listeners {
            let (protocol, bind) = parse_listener(l, "listeners")?;
            if specs.iter().any(|s| s.protocol == protocol) {
                return Err(Error::invalid(format!(
                    "listeners names {protocol} twice (one listener per protocol)"
                )));
            }
            let advertised = advertised.remove(&protocol).or_else(|| {
                (protocol == SecurityProtocol::Plaintext)
                    .then(|| self.advertised_listener.clone())
                    .flatten()
            });
            specs.push(ListenerSpec {
                protocol,
                bind,
                advertised,
            });
        }
        if let Some(p) = advertised.keys().next() {
            return Err(Error::invalid(format!(
                "advertised.listeners names {p}, which is not in listeners"
            )));
        }
        Ok(specs)
    }

    /// The SASL mechanisms offered, in the configured order.
    pub fn sasl_mechanisms(&self) -> Result<Vec<SaslMechanism>> {
        self.sasl_enabled_mechanisms
            .iter()
            .map(|m| {
                SaslMechanism::parse(m).ok_or_else(|| {
                    Error::invalid(format!(
                        "sasl.enabled.mechanisms: unknown mechanism '{m}' \
                         (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)"
                    ))
                })
            })
            .collect()
    }

    /// The TLS files, when a listener needs them.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>> {
        let specs = self.listener_specs()?;
        let Some(tls) = specs.iter().find(|s| s.protocol.uses_tls()) else {
            return Ok(None);
        };
        let keystore = self.ssl_keystore_location.clone().ok_or_else(|| {
            Error::invalid(format!(
                "listener {}://{} needs ssl.keystore.location (a PEM file with the private key \
                 and the certificate chain; TIERLOG_SSL_KEYSTORE_LOCATION)",
                tls.protocol, tls.bind
            ))
        })?;
        let client_auth = self.client_auth()?;
        if client_auth != ClientAuth::None && self.ssl_truststore_location.is_none() {
            return Err(Error::invalid(format!(
                "ssl.client.auth = \"{}\" needs ssl.truststore.location (the PEM CA bundle \
                 client certificates must chain to; TIERLOG_SSL_TRUSTSTORE_LOCATION)",
                client_auth.name()
            )));
        }
        Ok(Some(TlsFiles {
            keystore,
            truststore: self.ssl_truststore_location.clone(),
            client_auth,
        }))
    }

    fn client_auth(&self) -> Result<ClientAuth> {
        ClientAuth::parse(&self.ssl_client_auth).ok_or_else(|| {
            Error::invalid(format!(
                "ssl.client.auth '{}' must be none, requested or required",
                self.ssl_client_auth
            ))
        })
    }

    /// The security settings' own checks (files are read at start).
    pub(super) fn validate_security(&self) -> Result<()> {
        if self.ssl_keystore_type != "PEM" {
            return Err(Error::invalid(format!(
                "ssl.keystore.type '{}': only PEM is supported",
                self.ssl_keystore_type
            )));
        }
        self.client_auth()?;
        let mechanisms = self.sasl_mechanisms()?;
        let specs = self.listener_specs()?;
        for s in &specs {
            let wildcard = s
                .bind
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip().is_unspecified())
                .unwrap_or(false);
            if wildcard && s.advertised.is_none() {
                return Err(Error::invalid(format!(
                    "listener {}://{} is a wildcard address: set advertised.listeners \
                     (--advertised-listeners, TIERLOG_ADVERTISED_LISTENERS) to \
                     {}://HOST:PORT clients should connect to",
                    s.protocol, s.bind, s.protocol
                )));
            }
            if s.protocol.uses_sasl() && mechanisms.is_empty() {
                return Err(Error::invalid(format!(
                    "listener {}://{} needs at least one sasl.enabled.mechanisms",
                    s.protocol, s.bind
                )));
            }
        }
        self.tls_files()?;
        if self.sasl_server_max_receive_size < 1024 {
            return Err(Error::invalid(
                "sasl.server.max.receive.size must be at least 1024",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_one_plaintext_listener_on_loopback() {
        let c = BrokerConfig::default();
        assert_eq!(
            c.listener_specs().unwrap(),
            vec![ListenerSpec {
                protocol: SecurityProtocol::Plaintext,
                bind: "127.0.0.1:9092".into(),
                advertised: None
            }]
        );
        assert_eq!(c.tls_files().unwrap(), None);
    }

    #[test]
    fn listeners_from_toml() {
        let c = BrokerConfig::from_toml(
            r#"
listeners = ["SASL_SSL://0.0.0.0:9093", "PLAINTEXT://127.0.0.1:9092"]
advertised.listeners = ["SASL_SSL://broker.example.com:9093"]
ssl.keystore.type = "PEM"
ssl.keystore.location = "/etc/tierlog/broker.pem"
ssl.truststore.location = "/etc/tierlog/ca.pem"
ssl.client.auth = "requested"
sasl.enabled.mechanisms = ["SCRAM-SHA-512"]
connections.max.reauth.ms = 3600000
"#,
            "t",
        )
        .unwrap();
        let specs = c.listener_specs().unwrap();
        assert_eq!(specs[0].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            specs[0].advertised.as_deref(),
            Some("broker.example.com:9093")
        );
        assert_eq!(specs[1].advertised, None);
        let tls = c.tls_files().unwrap().unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Requested);
        assert_eq!(c.connections_max_reauth_ms, 3_600_000);
        assert_eq!(
            c.sasl_mechanisms().unwrap(),
            vec![SaslMechanism::Scram(
                crate::security::ScramMechanism::Sha512
            )]
        );
    }

    #[test]
    fn refusals_name_the_setting() {
        let bad = |toml: &str, needle: &str| {
            let e = BrokerConfig::from_toml(toml, "t").unwrap_err().to_string();
            assert!(e.contains(needle), "{toml}: {e}");
        };
        bad(
            r#"listeners = ["SASL_SSL://0.0.0.0:9093"]
ssl.keystore.location = "/k.pem""#,
            "wildcard address: set advertised.listeners",
        );
        bad(
            r#"listeners = ["SSL://127.0.0.1:9093"]"#,
            "ssl.keystore.location",
        );
        bad(
            r#"listeners = ["PLAINTEXT://127.0.0.1:1", "PLAINTEXT://127.0.0.1:2"]"#,
            "twice",
        );
        bad(r#"listeners = ["TCP://127.0.0.1:1"]"#, "unknown protocol");
        bad(r#"ssl.client.auth = "maybe""#, "ssl.client.auth");
        bad(r#"ssl.keystore.type = "JKS""#, "only PEM");
        bad(r#"sasl.enabled.mechanisms = ["GSSAPI"]"#, "GSSAPI");
        bad(
            r#"listeners = ["SSL://127.0.0.1:1"]
ssl.keystore.location = "/k.pem"
ssl.client.auth = "required""#,
            "ssl.truststore.location",
        );
    }
}
