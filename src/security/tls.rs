//! TLS server configuration from PEM files (Kafka's `ssl.keystore.type =
//! "PEM"`): `ssl.keystore.location` holds the private key and the
//! certificate chain, `ssl.truststore.location` the CA bundle that client
//! certificates must chain to (`ssl.client.auth`). rustls with the
//! aws-lc-rs provider (passed explicitly); TLS 1.2 and 1.3.
//!
//! [`TlsReloader`] holds the current configuration; `reload` reads the
//! files again (SIGHUP) and swaps it in for new connections, keeping the
//! old one if the new files are bad. Errors name the file, never its key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate asked for.
    None,
    /// Asked for; a client without one still connects (as ANONYMOUS or
    /// with SASL).
    Requested,
    /// A client without a trusted certificate is refused.
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Requested => "requested",
            ClientAuth::Required => "required",
        }
    }
}

/// Where the PEM files are and whether client certificates are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub keystore: PathBuf,
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::invalid(format!(
                "{what} {}: cannot read its PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "{what} {}: no CERTIFICATE block in the file",
            path.display()
        )));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Read the files and build the server configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let what = "ssl.keystore.location";
        let chain = certificates(&self.keystore, what)?;
        // The pem error names the section kind, never key bytes.
        let key = PrivateKeyDer::from_pem_file(&self.keystore).map_err(|e| {
            Error::invalid(format!(
                "{what} {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM, unencrypted): {e}",
                self.keystore.display()
            ))
        })?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid(format!("TLS setup failed: {e}")))?;
        let builder = match (self.client_auth, &self.truststore) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(Error::invalid(format!(
                    "ssl.client.auth = \"{}\" needs ssl.truststore.location (the CA bundle client certificates chain to)",
                    self.client_auth.name()
                )))
            }
            (auth, Some(path)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path, "ssl.truststore.location")? {
                    roots.add(cert).map_err(|e| {
                        Error::invalid(format!(
                            "ssl.truststore.location {}: a certificate is not a usable CA: {e}",
                            path.display()
                        ))
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider());
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| Error::invalid(format!("ssl.truststore.location: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            Error::invalid(format!(
                "{what} {}: the key does not fit the certificate chain: {e}",
                self.keystore.display()
            ))
        })?;
        Ok(Arc::new(config))
    }
}

/// The configuration new TLS connections get, reloadable.
pub struct TlsReloader {
    files: TlsFiles,
    current: Mutex<Arc<ServerConfig>>,
}

impl TlsReloader {
    /// Read the files once; an error stops the broker from starting.
    pub fn new(files: TlsFiles) -> Result<TlsReloader> {
        let config = files.server_config()?;
        Ok(TlsReloader {
            files,
            current: Mutex::new(config),
        })
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&crate::sync::lock(&self.current))
    }

    /// Read the files again; on success new connections use them, on
    /// error the previous configuration stays and the error is returned.
    pub fn reload(&self) -> Result<()> {
        let config = self.files.server_config()?;
        *crate::sync::lock(&self.current) = config;
        Ok(())
    }
}
