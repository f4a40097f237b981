//! SASL on a connection: SaslHandshake and SaslAuthenticate (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) and KIP-368 re-authentication, and the
//! gate that keeps every other request (but ApiVersions) off a SASL
//! listener until the client has authenticated.
//!
//! Owns the per-connection [`Session`]. The exchanges themselves are
//! sans-io (`security::scram`, `security::plain`); credentials are read
//! from the catalog on the blocking pool. Must never log or answer with a
//! password, a proof or a key: a failure is SASL_AUTHENTICATION_FAILED with
//! one message for a wrong password and an unknown user alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{codec, logging, response_errors::ErrorCodes, ConnError, Ctx};
use crate::clock::monotonic_now;
use crate::security::scram::{ScramServer, ScramStep};
use crate::security::{plain, SaslMechanism, SecurityProtocol};

/// What a connection's listener asks of its clients.
#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    /// Mechanisms offered (SASL listeners).
    pub mechanisms: Vec<SaslMechanism>,
    /// `connections.max.reauth.ms`; 0: sessions never expire.
    pub reauth_ms: u64,
    /// `sasl.server.max.receive.size`: largest frame before authentication.
    pub max_unauthenticated_bytes: usize,
}

impl ListenerSecurity {
    /// A PLAINTEXT listener (the embedded default, tests).
    pub fn plaintext() -> ListenerSecurity {
        ListenerSecurity {
            protocol: SecurityProtocol::Plaintext,
            mechanisms: Vec::new(),
            reauth_ms: 0,
            max_unauthenticated_bytes: crate::config::DEFAULT_SASL_SERVER_MAX_RECEIVE_SIZE,
        }
    }
}

/// Authentication state of one connection.
pub(super) struct Session {
    /// `User:NAME` once authenticated (SASL), `User:CN=…` from a client
    /// certificate, `User:ANONYMOUS` on listeners without authentication.
    pub principal: Option<String>,
    /// Shared with the frame reader: frames are capped at
    /// `max_unauthenticated_bytes` until this turns true.
    pub authenticated: Arc<AtomicBool>,
    /// When the SASL session ends (KIP-368); requests after it close the
    /// connection unless it re-authenticates first.
    expires_at: Option<Instant>,
    /// The mechanism the last SaslHandshake chose.
    mechanism: Option<SaslMechanism>,
    scram: Option<ScramServer>,
}

impl Session {
    /// A new connection's session; `cert_principal` from its client
    /// certificate (TLS listeners).
    pub fn new(security: &ListenerSecurity, cert_principal: Option<String>) -> Session {
        let sasl = security.protocol.uses_sasl();
        let principal = if sasl {
            None
        } else {
            Some(cert_principal.unwrap_or_else(|| "User:ANONYMOUS".to_string()))
        };
        Session {
            authenticated: Arc::new(AtomicBool::new(!sasl)),
            principal,
            expires_at: None,
            mechanism: None,
            scram: None,
        }
    }
}

/// What the gate decided for a frame.
pub(super) enum Gate {
    /// Handle it as usual.
    Pass,
    /// Answered here; close the connection after writing it when `close`.
    Answer { bytes: BytesMut, close: bool },
}

/// Answer SASL requests and refuse everything but ApiVersions before
/// authentication (or after the session expired) on a SASL listener.
pub(super) async fn gate(
    ctx: &Arc<Ctx>,
    session: &mut Session,
    frame: &mut Bytes,
    peer: SocketAddr,
) -> Result<Gate, ConnError> {
    let (key, version) = codec::peek_api(frame)?;
    let sasl = ctx.security.protocol.uses_sasl();
    if key == ApiKey::SaslHandshake as i16 || key == ApiKey::SaslAuthenticate as i16 {
        ctx.engine.metrics().request(key);
        let api = if key == ApiKey::SaslHandshake as i16 {
            ApiKey::SaslHandshake
        } else {
            ApiKey::SaslAuthenticate
        };
        // SaslHandshake v0 is advertised (api_versions.rs) but not served:
        // its raw, unframed SASL tokens are gone from Kafka 4.0 too.
        let (min, max) = if api == ApiKey::SaslHandshake {
            (1, 1)
        } else {
            (0, 2)
        };
        if version < min || version > max {
            return Err(ConnError::Unsupported(format!(
                "{api:?} v{version} (supported: v{min} to v{max})"
            )));
        }
        let header = codec::decode_header(frame, api, version)?;
        let c = header.correlation_id;
        return if api == ApiKey::SaslHandshake {
            let req: SaslHandshakeRequest = codec::decode(frame, version)?;
            let (resp, close) = handshake(ctx, session, req, sasl);
            let bytes = super::respond(ctx, api, version, c, &resp)?;
            Ok(Gate::Answer { bytes, close })
        } else {
            let req: SaslAuthenticateRequest = codec::decode(frame, version)?;
            let (resp, close) = authenticate(ctx, session, req, version, sasl, peer).await;
            let bytes = super::respond(ctx, api, version, c, &resp)?;
            Ok(Gate::Answer { bytes, close })
        };
    }
    if !sasl || key == ApiKey::ApiVersions as i16 {
        return Ok(Gate::Pass);
    }
    if !session.authenticated.load(Ordering::SeqCst) {
        return Err(ConnError::Unauthenticated(format!(
            "API key {key} before SASL authentication"
        )));
    }
    if session.expires_at.is_some_and(|t| monotonic_now() >= t) {
        ctx.engine.metrics().sasl_sessions_expired.inc();
        return Err(ConnError::Unauthenticated(
            "SASL session expired (connections.max.reauth.ms) without re-authentication"
                .to_string(),
        ));
    }
    Ok(Gate::Pass)
}

fn handshake(
    ctx: &Ctx,
    session: &mut Session,
    req: SaslHandshakeRequest,
    sasl: bool,
) -> (SaslHandshakeResponse, bool) {
    let offered: Vec<StrBytes> = ctx
        .security
        .mechanisms
        .iter()
        .map(|m| StrBytes::from_static_str(m.name()))
        .collect();
    if !sasl || session.scram.is_some() {
        // Not a SASL listener, or a handshake in the middle of an exchange.
        let resp = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_mechanisms(offered);
        return (resp, true);
    }
    let chosen = SaslMechanism::parse(req.mechanism.as_str())
        .filter(|m| ctx.security.mechanisms.contains(m));
    let Some(mechanism) = chosen else {
        let resp = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
            .with_mechanisms(offered);
        return (resp, true);
    };
    // A second handshake on an authenticated connection starts KIP-368
    // re-authentication (with the same mechanism, as Kafka requires).
    if session.principal.is_some() && session.mechanism != Some(mechanism) {
        let resp = SaslHandshakeResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_mechanisms(offered);
        return (resp, true);
    }
    session.mechanism = Some(mechanism);
    session.scram = match mechanism {
        SaslMechanism::Scram(m) => Some(ScramServer::new(m)),
        SaslMechanism::Plain => None,
    };
    (
        SaslHandshakeResponse::default().with_mechanisms(offered),
        false,
    )
}

/// One message of the exchange, run on the blocking pool (PBKDF2 for PLAIN,
/// the catalog read).
enum Exchange {
    Plain(Vec<u8>),
    Scram(Box<ScramServer>, Vec<u8>),
}

enum Outcome {
    Continue(Box<ScramServer>, Vec<u8>),
    Done { user: String, reply: Vec<u8> },
    Failed(String),
}

async fn authenticate(
    ctx: &Arc<Ctx>,
    session: &mut Session,
    req: SaslAuthenticateRequest,
    version: i16,
    sasl: bool,
    peer: SocketAddr,
) -> (SaslAuthenticateResponse, bool) {
    let illegal = |message: &str| {
        let resp = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::IllegalSaslState.code())
            .with_error_message(Some(StrBytes::from_string(message.to_string())));
        (resp, true)
    };
    let Some(mechanism) = session.mechanism.filter(|_| sasl) else {
        return illegal("SaslAuthenticate without a SaslHandshake first");
    };
    let auth = req.auth_bytes.to_vec();
    let exchange = match (mechanism, session.scram.take()) {
        (SaslMechanism::Plain, _) => Exchange::Plain(auth),
        (SaslMechanism::Scram(_), Some(server)) => Exchange::Scram(Box::new(server), auth),
        (SaslMechanism::Scram(_), None) => {
            return illegal("SaslAuthenticate after the SCRAM exchange ended");
        }
    };
    let outcome = ctx
        .blocking(move |engine| {
            let lookup = |user: &str| match engine.scram_credentials(Some(user)) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read SCRAM credentials");
                    Vec::new()
                }
            };
            match exchange {
                Exchange::Plain(message) => match plain::authenticate(&message, lookup) {
                    Ok(user) => Outcome::Done {
                        user,
                        reply: Vec::new(),
                    },
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                Exchange::Scram(mut server, message) => {
                    let m = server.mechanism();
                    let step = server.step(&message, |user| {
                        lookup(user).into_iter().find(|c| c.mechanism == m)
                    });
                    match step {
                        Ok(ScramStep::Continue(reply)) => Outcome::Continue(server, reply),
                        Ok(ScramStep::Done { user, server_final }) => Outcome::Done {
                            user,
                            reply: server_final,
                        },
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|e| Outcome::Failed(e.to_string()));
    let failed = |reason: String| {
        ctx.engine.metrics().sasl_authentication_failures.inc();
        if let Some(suppressed) = ctx.warn_admit() {
            tracing::warn!(%peer, mechanism = mechanism.name(), reason = %logging::escape(&reason), suppressed, "SASL authentication failed");
        }
        let resp = SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            ))));
        (resp, true)
    };
    match outcome {
        Outcome::Continue(server, reply) => {
            session.scram = Some(*server);
            (
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply)),
                false,
            )
        }
        Outcome::Failed(reason) => failed(reason),
        Outcome::Done { user, reply } => {
            let principal = format!("User:{user}");
            if session.principal.as_ref().is_some_and(|p| *p != principal) {
                return failed("re-authentication as another principal".to_string());
            }
            if session.principal.is_none() {
                tracing::debug!(%peer, principal = %logging::escape(&principal), mechanism = mechanism.name(), "authenticated");
            }
            session.principal = Some(principal);
            session.authenticated.store(true, Ordering::SeqCst);
            ctx.engine.metrics().sasl_authentications.inc();
            let reauth = ctx.security.reauth_ms;
            let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
            if reauth > 0 {
                session.expires_at = Some(monotonic_now() + Duration::from_millis(reauth));
                if version >= 1 {
                    resp = resp.with_session_lifetime_ms(reauth.min(i64::MAX as u64) as i64);
                }
            }
            (resp, false)
        }
    }
}

impl ErrorCodes for SaslHandshakeResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}

impl ErrorCodes for SaslAuthenticateResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
    }
}
