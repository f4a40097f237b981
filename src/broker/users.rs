//! AlterUserScramCredentials and DescribeUserScramCredentials (KIP-554):
//! SCRAM users in the catalog, what `tierlog user` and Kafka's
//! `kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=…]'` call.
//!
//! The client salts and iterates the password itself; the broker stores
//! only the keys derived from the salted password. Changing users needs
//! Alter on the cluster, listing them Describe on it (as in Kafka); on a
//! PLAINTEXT listener a change from a non-loopback address needs an
//! explicit grant (`acls::may_alter_cluster`). While no ACL exists at all,
//! a loopback client on a PLAINTEXT listener may manage users whatever
//! `allow.everyone.if.no.acl.found` says: that is how the first user is
//! created. Must never log or return a salted password or a key.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::Authz;
use super::{response_errors::ErrorCodes, Ctx};
use crate::security::acl::AclOperation;
use crate::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::{ScramCredential, ScramMechanism, SecurityProtocol};

/// One change asked for, checked.
enum Change {
    Delete(ScramMechanism),
    Upsert(ScramCredential),
}

type Refusal = (ResponseError, String);

/// The bootstrap: no ACL yet, a loopback client on a PLAINTEXT listener.
fn bootstrap(ctx: &Ctx, auth: &Authz, peer: SocketAddr) -> bool {
    auth.no_acls()
        && ctx.security.protocol == SecurityProtocol::Plaintext
        && peer.ip().is_loopback()
}

pub async fn alter_user_scram_credentials(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: AlterUserScramCredentialsRequest,
    peer: SocketAddr,
) -> AlterUserScramCredentialsResponse {
    // Users in request order, each with its changes or its refusal.
    let mut users: BTreeMap<String, Result<Vec<Change>, Refusal>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |name: &str, change: Result<Change, Refusal>| {
        if !users.contains_key(name) {
            order.push(name.to_string());
        }
        let entry = users.entry(name.to_string()).or_insert(Ok(Vec::new()));
        let change = change.and_then(|c| {
            let m = match &c {
                Change::Delete(m) => *m,
                Change::Upsert(cred) => cred.mechanism,
            };
            if seen.insert((name.to_string(), m)) {
                Ok(c)
            } else {
                Err((
                    ResponseError::DuplicateResource,
                    format!("user '{name}' has more than one change for {}", m.name()),
                ))
            }
        });
        match (entry, change) {
            (Ok(list), Ok(c)) => list.push(c),
            (entry @ Ok(_), Err(e)) => *entry = Err(e),
            (Err(_), _) => {}
        }
    };
    let mechanism = |t: i8| {
        ScramMechanism::from_kafka_type(t).ok_or_else(|| {
            (
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {t} (1: SCRAM-SHA-256, 2: SCRAM-SHA-512)"),
            )
        })
    };
    for d in &req.deletions {
        add(d.name.as_str(), mechanism(d.mechanism).map(Change::Delete));
    }
    for u in &req.upsertions {
        let name = u.name.as_str();
        let change = mechanism(u.mechanism).and_then(|m| {
            if !(MIN_ITERATIONS as i32..=MAX_ITERATIONS as i32).contains(&u.iterations) {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!(
                        "iterations {} must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}",
                        u.iterations
                    ),
                ));
            }
            if u.salt.is_empty() || u.salted_password.len() != m.key_len() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    format!(
                        "the salt must not be empty and the salted password must be {} bytes for {}",
                        m.key_len(),
                        m.name()
                    ),
                ));
            }
            Ok(Change::Upsert(ScramCredential::from_salted_password(
                name,
                m,
                &u.salt,
                &u.salted_password,
                u.iterations as u32,
            )))
        });
        add(name, change);
    }
    let allowed = match super::acls::may_alter_cluster(ctx, auth) {
        Ok(()) => Ok(()),
        Err(_) if bootstrap(ctx, auth, peer) => Ok(()),
        Err(refusal) => Err(refusal),
    };
    let mut results = Vec::new();
    for name in order {
        let outcome = match users.remove(&name) {
            _ if name.is_empty() => Err((
                ResponseError::UnacceptableCredential,
                "the user name must not be empty".to_string(),
            )),
            _ if allowed.is_err() => allowed.clone(),
            Some(Ok(changes)) => apply(ctx, &name, changes).await,
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        let mut r = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(name.clone()));
        if let Err((code, message)) = outcome {
            r = r
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        } else {
            tracing::info!(user = %super::logging::escape(&name), %peer, "SCRAM credentials changed");
        }
        results.push(r);
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

async fn apply(ctx: &Arc<Ctx>, name: &str, changes: Vec<Change>) -> Result<(), Refusal> {
    let user = name.to_string();
    let done = ctx
        .blocking(
            move |engine| -> crate::error::Result<Option<ScramMechanism>> {
                // Deletions first: a missing credential refuses the whole user
                // before anything of it changes.
                let existing = engine.scram_credentials(Some(&user))?;
                for c in &changes {
                    if let Change::Delete(m) = c {
                        if !existing.iter().any(|e| e.mechanism == *m) {
                            return Ok(Some(*m));
                        }
                    }
                }
                for c in &changes {
                    match c {
                        Change::Delete(m) => {
                            engine.delete_scram_credential(&user, *m)?;
                        }
                        Change::Upsert(cred) => engine.upsert_scram_credential(cred)?,
                    }
                }
                Ok(None)
            },
        )
        .await
        .and_then(|r| r);
    match done {
        Ok(None) => Ok(()),
        Ok(Some(m)) => Err((
            ResponseError::ResourceNotFound,
            format!("user '{name}' has no {} credential to delete", m.name()),
        )),
        Err(e) => {
            tracing::error!(error = %e, "cannot change SCRAM credentials");
            Err((
                ResponseError::UnknownServerError,
                "the catalog could not be updated".to_string(),
            ))
        }
    }
}

/// Needs Describe on the cluster (or the bootstrap).
pub async fn describe_user_scram_credentials(
    ctx: &Arc<Ctx>,
    auth: &Authz,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !auth.cluster(AclOperation::Describe) && !bootstrap(ctx, auth, auth.peer) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "{} may not Describe the cluster",
                auth.principal
            ))));
    }
    let all = match ctx.blocking(|engine| engine.scram_credentials(None)).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) | Err(e) => {
            tracing::error!(error = %e, "cannot read SCRAM credentials");
            return DescribeUserScramCredentialsResponse::default()
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "the catalog could not be read",
                )));
        }
    };
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for c in &all {
        by_user.entry(&c.user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(c.mechanism.kafka_type())
                .with_iterations(c.iterations as i32),
        );
    }
    let result = |name: &str, infos: Vec<CredentialInfo>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(name.to_string()))
            .with_credential_infos(infos)
    };
    let results = match req.users.filter(|u| !u.is_empty()) {
        None => by_user
            .iter()
            .map(|(name, infos)| result(name, infos.clone()))
            .collect(),
        Some(names) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for n in &names {
                *counts.entry(n.name.as_str()).or_default() += 1;
            }
            let mut done = HashSet::new();
            let mut out = Vec::new();
            for n in &names {
                let name = n.name.as_str();
                if !done.insert(name) {
                    continue;
                }
                let r = if counts[name] > 1 {
                    result(name, Vec::new())
                        .with_error_code(ResponseError::DuplicateResource.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "user '{name}' is named more than once"
                        ))))
                } else {
                    match by_user.get(name) {
                        Some(infos) => result(name, infos.clone()),
                        None => result(name, Vec::new())
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "user '{name}' has no SCRAM credential"
                            )))),
                    }
                };
                out.push(r);
            }
            out
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

impl ErrorCodes for AlterUserScramCredentialsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DescribeUserScramCredentialsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.results.iter().for_each(|r| f(r.error_code));
    }
}
