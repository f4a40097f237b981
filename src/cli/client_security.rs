//! How every `--bootstrap` subcommand reaches a secured listener: flags
//! (`--security-protocol`, `--sasl-mechanism`, `--sasl-username`,
//! `--ssl-ca-location`; the password from `TIERLOG_SASL_PASSWORD` or
//! `--sasl-password-stdin`, never a flag) or a Kafka client properties
//! file (`--command-config`, as Kafka's tools take), flags winning.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use tierlog::client::ClientSecurity;
use tierlog::security::{SaslMechanism, SecurityProtocol};
use tierlog::Error;

#[derive(clap::Args, Debug, Default)]
pub struct ClientArgs {
    /// Security protocol of the --bootstrap listener: PLAINTEXT (default),
    /// SSL, SASL_PLAINTEXT, SASL_SSL.
    #[arg(long, global = true, env = "TIERLOG_SECURITY_PROTOCOL")]
    security_protocol: Option<String>,
    /// SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.
    #[arg(long, global = true, env = "TIERLOG_SASL_MECHANISM")]
    sasl_mechanism: Option<String>,
    #[arg(long, global = true, env = "TIERLOG_SASL_USERNAME")]
    sasl_username: Option<String>,
    /// Read the SASL password from the first line of stdin (otherwise
    /// from TIERLOG_SASL_PASSWORD).
    #[arg(long, global = true)]
    sasl_password_stdin: bool,
    /// PEM CA bundle the broker's certificate must chain to (SSL,
    /// SASL_SSL).
    #[arg(long, global = true, env = "TIERLOG_SSL_CA_LOCATION")]
    ssl_ca_location: Option<PathBuf>,
    /// A Kafka client properties file: security.protocol,
    /// sasl.mechanism, sasl.username and sasl.password or
    /// sasl.jaas.config, ssl.ca.location (or a PEM
    /// ssl.truststore.location).
    #[arg(long, global = true)]
    command_config: Option<PathBuf>,
}

/// `key=value` lines of a properties file (`#`/`!` comments).
fn properties(path: &Path) -> Result<HashMap<String, String>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// `name="value"` from a JAAS line.
fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let at = jaas.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &jaas[at..];
    Some(rest[..rest.find('"')?].to_string())
}

impl ClientArgs {
    /// Whether the SASL password is read from stdin.
    pub fn reads_stdin(&self) -> bool {
        self.sasl_password_stdin
    }

    /// The security these arguments ask for.
    pub fn security(&self) -> Result<ClientSecurity, Error> {
        let props = match &self.command_config {
            Some(p) => properties(p)?,
            None => HashMap::new(),
        };
        let prop = |k: &str| props.get(k).cloned();
        let jaas = prop("sasl.jaas.config");
        // A SASL user named without a protocol: SASL_PLAINTEXT (a user
        // given is never silently dropped).
        let named_user =
            self.sasl_username.is_some() || prop("sasl.username").is_some() || jaas.is_some();
        let protocol_name = self
            .security_protocol
            .clone()
            .or_else(|| prop("security.protocol"))
            .unwrap_or_else(|| {
                if named_user {
                    "SASL_PLAINTEXT"
                } else {
                    "PLAINTEXT"
                }
                .to_string()
            });
        let protocol = SecurityProtocol::parse(&protocol_name).ok_or_else(|| {
            Error::invalid(format!(
                "unknown security protocol '{protocol_name}' (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            ))
        })?;
        let ca_location = self.ssl_ca_location.clone().or_else(|| {
            prop("ssl.ca.location")
                .or_else(|| prop("ssl.truststore.location"))
                .map(PathBuf::from)
        });
        let mut sasl = None;
        if protocol.uses_sasl() {
            let name = self
                .sasl_mechanism
                .clone()
                .or_else(|| prop("sasl.mechanism"))
                .or_else(|| prop("sasl.mechanisms"))
                .unwrap_or_else(|| "SCRAM-SHA-512".to_string());
            let mechanism = SaslMechanism::parse(&name).ok_or_else(|| {
                Error::invalid(format!(
                    "unknown SASL mechanism '{name}' (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)"
                ))
            })?;
            let user = self
                .sasl_username
                .clone()
                .or_else(|| prop("sasl.username"))
                .or_else(|| jaas.as_deref().and_then(|j| jaas_option(j, "username")))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{} needs a user: --sasl-username (or sasl.username in --command-config)",
                        protocol.name()
                    ))
                })?;
            let password = if self.sasl_password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                    Error::invalid(format!("cannot read the password from stdin: {e}"))
                })?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                std::env::var("TIERLOG_SASL_PASSWORD")
                    .ok()
                    .or_else(|| prop("sasl.password"))
                    .or_else(|| jaas.as_deref().and_then(|j| jaas_option(j, "password")))
            }
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "no SASL password: set TIERLOG_SASL_PASSWORD, pass --sasl-password-stdin, \
                     or put sasl.password in --command-config",
                )
            })?;
            sasl = Some((mechanism, user, password));
        }
        Ok(ClientSecurity {
            protocol,
            sasl,
            ca_location,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_java_client_properties_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# comment\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-256\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"s3cret\";\n\
             ssl.truststore.type=PEM\nssl.truststore.location=/pki/ca.pem\n",
        )
        .unwrap();
        let args = ClientArgs {
            command_config: Some(path),
            ..Default::default()
        };
        let s = args.security().unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(s.ca_location, Some(PathBuf::from("/pki/ca.pem")));
        let (m, user, password) = s.sasl.unwrap();
        assert_eq!(m.name(), "SCRAM-SHA-256");
        assert_eq!((user.as_str(), password.as_str()), ("alice", "s3cret"));
        // The password never shows in Debug.
        let args = ClientArgs {
            command_config: Some(dir.path().join("client.properties")),
            ..Default::default()
        };
        assert!(!format!("{:?}", args.security().unwrap()).contains("s3cret"));
    }
}
