//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them
//! (KIP-84): credentials and the server side of the exchange, sans-io.
//!
//! A credential keeps the salt, the iteration count, `StoredKey =
//! H(HMAC(SaltedPassword, "Client Key"))` and `ServerKey =
//! HMAC(SaltedPassword, "Server Key")`: enough to check a client's proof
//! (and a PLAIN password, by deriving the same keys), never the password
//! or the salted password. Built on aws-lc-rs (HMAC, PBKDF2, SHA-2,
//! system random), the TLS listeners' crypto library.
//!
//! ## Format
//! The exchange (two SaslAuthenticate round trips):
//!
//! | step | sender | message |
//! |------|--------|---------|
//! | client-first | client | `n,,n=USER,r=CNONCE` (GS2 header `n,,`, `y,,` or `n,a=USER,`) |
//! | server-first | broker | `r=CNONCE SNONCE,s=BASE64(SALT),i=ITERATIONS` |
//! | client-final | client | `c=BASE64(GS2 HEADER),r=CNONCE SNONCE,p=BASE64(PROOF)` |
//! | server-final | broker | `v=BASE64(HMAC(ServerKey, AuthMessage))` |
//!
//! `AuthMessage` is client-first-bare `,` server-first `,` client-final
//! without its proof. User names escape `,` as `=2C` and `=` as `=3D`.

use std::num::NonZeroU32;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;

/// Kafka's bounds on SCRAM iterations (`ScramMechanism.minIterations`,
/// 4096, and the largest AlterUserScramCredentials accepts, 16384).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// Iterations `tierlog user add` asks for (Kafka's tools default: 4096).
pub const DEFAULT_ITERATIONS: u32 = 8192;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha512, ScramMechanism::Sha256];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<ScramMechanism> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The number Kafka's AlterUserScramCredentials and
    /// DescribeUserScramCredentials use (1: SHA-256, 2: SHA-512).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<ScramMechanism> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    /// Bytes of a key or a proof (the hash's output).
    pub fn key_len(self) -> usize {
        self.digest().output_len()
    }

    fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// `Hi(password, salt, iterations)`: what Kafka's admin client sends
    /// in AlterUserScramCredentials (so the password never travels).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        // At least MIN_ITERATIONS by every caller; 1 if a caller passed 0.
        let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2(), n, salt, password, &mut out);
        out
    }
}

/// Random bytes from the system (salts, nonces).
pub fn random_bytes(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut out = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ScramError::Random)?;
    Ok(out)
}

/// What the catalog stores for one user and mechanism. `Debug` shows no
/// key material.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// From a salted password (AlterUserScramCredentials' upsertion).
    pub fn from_salted_password(
        user: &str,
        mechanism: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac_of(salted_password, b"Client Key");
        ScramCredential {
            user: user.to_string(),
            mechanism,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac_of(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// From a password, salt and iteration count.
    pub fn from_password(
        user: &str,
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(password, salt, iterations);
        Self::from_salted_password(user, mechanism, salt, &salted, iterations)
    }

    /// Does `password` derive this credential's stored key (SASL/PLAIN)?
    pub fn check_password(&self, password: &[u8]) -> bool {
        let again = Self::from_password(
            &self.user,
            self.mechanism,
            password,
            &self.salt,
            self.iterations,
        );
        constant_time_eq(&again.stored_key, &self.stored_key)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an exchange failed. The broker answers every one of them with
/// SASL_AUTHENTICATION_FAILED; the text is for its log and names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("unknown user or no {0} credential")]
    UnknownUser(&'static str),
    #[error("invalid credentials (proof does not match)")]
    BadProof,
    #[error("the client's nonce or channel binding changed between messages")]
    Mismatch,
    #[error("the system random generator failed")]
    Random,
    #[error("message out of order")]
    OutOfOrder,
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

enum State {
    Start,
    SentFirst {
        credential: ScramCredential,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// What a step of the exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send this and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send the server-final message.
    Done { user: String, server_final: Vec<u8> },
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Take the client's next message; `lookup` finds a user's credential
    /// for this mechanism (called once, on client-first).
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => self.client_first(text, lookup),
            State::SentFirst {
                credential,
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let auth = Pending {
                    credential: &credential,
                    gs2_header: &gs2_header,
                    client_first_bare: &client_first_bare,
                    server_first: &server_first,
                    nonce: &nonce,
                };
                auth.client_final(self.mechanism, text)
            }
            State::Done => Err(ScramError::OutOfOrder),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, ScramError> {
        // gs2-header: cbind flag, authzid, then the bare message.
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().ok_or(ScramError::Malformed("empty"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-bare"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad GS2 channel binding flag")),
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut user = None;
        let mut client_nonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = Some(unescape_name(v)?);
            } else if let Some(v) = attr.strip_prefix("r=") {
                client_nonce = Some(v);
            } else if attr.starts_with("m=") {
                return Err(ScramError::Malformed("mandatory extension not supported"));
            }
            // Other extensions (Kafka's tokenauth) are ignored.
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        if let Some(a) = authzid.strip_prefix("a=") {
            if unescape_name(a)? != user {
                return Err(ScramError::Malformed(
                    "authorization id differs from the user name",
                ));
            }
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad GS2 authorization id"));
        }
        let credential = lookup(&user)
            .filter(|c| c.mechanism == self.mechanism)
            .ok_or(ScramError::UnknownUser(self.mechanism.name()))?;
        let server_nonce = B64.encode(random_bytes(24)?);
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::SentFirst {
            credential,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        };
        Ok(ScramStep::Continue(reply))
    }
}

struct Pending<'a> {
    credential: &'a ScramCredential,
    gs2_header: &'a str,
    client_first_bare: &'a str,
    server_first: &'a str,
    nonce: &'a str,
}

impl Pending<'_> {
    fn client_final(&self, mechanism: ScramMechanism, text: &str) -> Result<ScramStep, ScramError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("no channel binding"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        // librdkafka 2.0 (Debian's kcat) repeats its own nonce before the
        // combined one. Still bound to this exchange: our fresh server
        // nonce ends it, and the proof covers the message as sent.
        let nonce_ok = nonce.is_some_and(|n| {
            n == self.nonce
                || n.strip_suffix(self.nonce)
                    .is_some_and(|client| self.nonce.starts_with(client) && !client.is_empty())
        });
        if binding != self.gs2_header.as_bytes() || !nonce_ok {
            return Err(ScramError::Mismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != mechanism.key_len() {
            return Err(ScramError::BadProof);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = mechanism.hmac_of(&self.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !constant_time_eq(&mechanism.hash(&client_key), &self.credential.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature =
            mechanism.hmac_of(&self.credential.server_key, auth_message.as_bytes());
        Ok(ScramStep::Done {
            user: self.credential.user.clone(),
            server_final: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }
}

/// A saslname with `=2C` and `=3D` decoded; any other `=` is malformed.
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or("");
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// A user name as a saslname (`,` → `=2C`, `=` → `=3D`).
pub fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The client side, for tests and `tierlog` itself: the client-final
/// message for `password` given the messages so far.
pub fn client_final(
    mechanism: ScramMechanism,
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
) -> Result<String, ScramError> {
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    for attr in server_first.split(',') {
        if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v);
        } else if let Some(v) = attr.strip_prefix("s=") {
            salt = B64.decode(v).ok();
        } else if let Some(v) = attr.strip_prefix("i=") {
            iterations = v.parse::<u32>().ok();
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(ScramError::Malformed("bad server-first message"));
    };
    Ok(client_final_with_nonce(
        mechanism,
        password,
        client_first_bare,
        server_first,
        nonce,
        &salt,
        iterations,
    ))
}

fn client_final_with_nonce(
    mechanism: ScramMechanism,
    password: &[u8],
    client_first_bare: &str,
    server_first: &str,
    nonce: &str,
    salt: &[u8],
    iterations: u32,
) -> String {
    let salted = mechanism.salted_password(password, salt, iterations);
    let client_key = mechanism.hmac_of(&salted, b"Client Key");
    let stored_key = mechanism.hash(&client_key);
    let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = mechanism.hmac_of(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    format!("{without_proof},p={}", B64.encode(proof))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, end to end through the server.
    #[test]
    fn rfc7677_example() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = ScramCredential::from_password("user", m, b"pencil", &salt, 4096);
        // The RFC's server nonce is fixed; ours is random, so check the
        // client's proof for the RFC's messages directly.
        let pending = Pending {
            credential: &cred,
            gs2_header: "n,,",
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO",
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        };
        let step = pending
            .client_final(
                m,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            step,
            ScramStep::Done {
                user: "user".into(),
                server_final: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
    }

    fn exchange(
        m: ScramMechanism,
        stored: &ScramCredential,
        user: &str,
        password: &[u8],
    ) -> Result<ScramStep, ScramError> {
        let mut server = ScramServer::new(m);
        let bare = format!("n={},r=abcdefgh", escape_name(user));
        let first = server.step(format!("n,,{bare}").as_bytes(), |u| {
            (u == stored.user).then(|| stored.clone())
        })?;
        let ScramStep::Continue(server_first) = first else {
            panic!("first step is not Continue")
        };
        let server_first = String::from_utf8(server_first).unwrap();
        let fin = client_final(m, password, &bare, &server_first)?;
        server.step(fin.as_bytes(), |_| unreachable!())
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_others() {
        for m in ScramMechanism::ALL {
            let cred = ScramCredential::from_password("al,i=ce", m, b"s3cret", b"salt", 4096);
            let done = exchange(m, &cred, "al,i=ce", b"s3cret").unwrap();
            assert!(matches!(done, ScramStep::Done { ref user, .. } if user == "al,i=ce"));
            assert_eq!(
                exchange(m, &cred, "al,i=ce", b"wrong"),
                Err(ScramError::BadProof)
            );
            assert_eq!(
                exchange(m, &cred, "bob", b"s3cret"),
                Err(ScramError::UnknownUser(m.name()))
            );
            assert!(cred.check_password(b"s3cret"));
            assert!(!cred.check_password(b"s3cret "));
        }
    }

    /// librdkafka 2.0 sends its own nonce again before the combined one;
    /// any other prefix is refused.
    #[test]
    fn librdkafka_2_0_repeated_client_nonce() {
        let m = ScramMechanism::Sha512;
        let cred = ScramCredential::from_password("u", m, b"pw", b"salt", 4096);
        for (prefix, ok) in [("cnonce", true), ("other", false)] {
            let mut server = ScramServer::new(m);
            let bare = "n=u,r=cnonce";
            let ScramStep::Continue(first) = server
                .step(format!("n,,{bare}").as_bytes(), |_| Some(cred.clone()))
                .unwrap()
            else {
                panic!("first step is not Continue")
            };
            let first = String::from_utf8(first).unwrap();
            let nonce = first.strip_prefix("r=").unwrap().split(',').next().unwrap();
            let sent = format!("{prefix}{nonce}");
            let fin = client_final_with_nonce(m, b"pw", bare, &first, &sent, b"salt", 4096);
            let r = server.step(fin.as_bytes(), |_| None);
            assert_eq!(r.is_ok(), ok, "{prefix}: {r:?}");
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cred = ScramCredential::from_password("u", ScramMechanism::Sha512, b"p", b"s", 4096);
        for bad in [
            &b""[..],
            b"n,,",
            b"p=tls-unique,,n=u,r=x",
            b"n,,n=u",
            b"n,,r=x",
            b"n,,n=u=,r=x",
            b"x,,n=u,r=x",
            b"n,a=other,n=u,r=x",
            b"\xff",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha512);
            assert!(s.step(bad, |_| Some(cred.clone())).is_err(), "{bad:?}");
        }
        let mut s = ScramServer::new(ScramMechanism::Sha512);
        s.step(b"n,,n=u,r=x", |_| Some(cred.clone())).unwrap();
        assert!(s.step(b"c=biws,r=x,p=AAAA", |_| None).is_err());
        assert_eq!(s.step(b"again", |_| None), Err(ScramError::OutOfOrder));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let cred = ScramCredential::from_password("u", ScramMechanism::Sha256, b"p", b"s", 4096);
        let text = format!("{cred:?}");
        assert!(
            !text.contains("stored_key") && !text.contains("salt"),
            "{text}"
        );
    }
}
