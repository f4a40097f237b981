//! `tierlog user add|remove|list`: SCRAM users over the Kafka protocol
//! (AlterUserScramCredentials, DescribeUserScramCredentials), like Kafka's
//! `kafka-configs --entity-type users`.
//!
//! The password is read from stdin (never a flag: flags show in `ps` and
//! shell history), salted and iterated here; only the salted password
//! travels, as Kafka's admin client does. The first user is created over
//! a PLAINTEXT listener on loopback (while no ACL exists the broker lets a
//! loopback PLAINTEXT client manage users). Later, on a broker with ACLs,
//! log in as a user who may Alter the cluster with `--sasl-username`
//! against a SASL_PLAINTEXT listener (the password from
//! `TIERLOG_SASL_PASSWORD`: stdin carries the new user's password).

use std::io::BufRead;
use std::process::ExitCode;

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tierlog::client::describe_error;
use tierlog::security::scram::{random_bytes, DEFAULT_ITERATIONS};
use tierlog::security::ScramMechanism;
use tierlog::{Error, ErrorKind};

use super::acl::{connect as login, ConnectArgs};

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add a user, or replace its password for the mechanism.
    Add {
        name: String,
        /// SCRAM-SHA-512 or SCRAM-SHA-256 (PLAIN logins are checked
        /// against either).
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// Read the password from the first line of stdin (required).
        #[arg(long)]
        password_stdin: bool,
        /// SCRAM iterations (4096 to 16384).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove a user's credentials (every mechanism unless one is named).
    Remove {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List users with their mechanisms and iterations.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn mechanism(name: &str) -> Result<ScramMechanism, Error> {
    ScramMechanism::parse(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown mechanism '{name}' (SCRAM-SHA-512 or SCRAM-SHA-256)"
        ))
    })
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let detail = message
        .map(|m| format!(": {}", m.as_str()))
        .unwrap_or_default();
    Err(Error::new(
        ErrorKind::Invalid,
        format!("{what}: {}{detail}", describe_error(code)),
    ))
}

/// One line of stdin without its line end; never echoed or logged.
fn read_password() -> Result<String, Error> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::invalid(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(Error::invalid("the password on stdin is empty"));
    }
    Ok(password)
}

pub fn run(cmd: UserCommand) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}")))?;
    runtime.block_on(async move {
        match cmd {
            UserCommand::Add {
                name,
                mechanism: m,
                password_stdin,
                iterations,
                connect,
            } => {
                let m = mechanism(&m)?;
                if !password_stdin {
                    return Err(Error::invalid(
                        "give the password on stdin with --password-stdin \
                         (e.g. `printf '%s' \"$PASSWORD\" | tierlog user add NAME --password-stdin`)",
                    ));
                }
                let password = read_password()?;
                let salt = random_bytes(32).map_err(|e| Error::internal(e.to_string()))?;
                let salted = m.salted_password(password.as_bytes(), &salt, iterations);
                drop(password);
                let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                    ScramCredentialUpsertion::default()
                        .with_name(s(&name))
                        .with_mechanism(m.kafka_type())
                        .with_iterations(iterations as i32)
                        .with_salt(salt.into())
                        .with_salted_password(salted.into()),
                ]);
                alter(&connect, &req, &name).await?;
                println!("user {name}: {} credential stored", m.name());
            }
            UserCommand::Remove {
                name,
                mechanism: m,
                connect,
            } => {
                let mechanisms = match m {
                    Some(m) => vec![mechanism(&m)?],
                    None => describe(&connect, Some(&name))
                        .await?
                        .into_iter()
                        .map(|(_, m, _)| m)
                        .collect(),
                };
                let req = AlterUserScramCredentialsRequest::default().with_deletions(
                    mechanisms
                        .iter()
                        .map(|m| {
                            ScramCredentialDeletion::default()
                                .with_name(s(&name))
                                .with_mechanism(m.kafka_type())
                        })
                        .collect(),
                );
                alter(&connect, &req, &name).await?;
                for m in mechanisms {
                    println!("user {name}: {} credential removed", m.name());
                }
            }
            UserCommand::List { connect } => {
                for (user, m, iterations) in describe(&connect, None).await? {
                    println!("{user}\t{}\titerations={iterations}", m.name());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn alter(
    connect: &ConnectArgs,
    req: &AlterUserScramCredentialsRequest,
    name: &str,
) -> Result<(), Error> {
    let conn = &mut login(connect).await?;
    let v = conn.version(ApiKey::AlterUserScramCredentials, (0, 0))?;
    let resp: AlterUserScramCredentialsResponse =
        conn.call(ApiKey::AlterUserScramCredentials, v, req).await?;
    for r in &resp.results {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("user {name}"),
        )?;
    }
    Ok(())
}

/// (user, mechanism, iterations) of `user` or of everyone.
async fn describe(
    connect: &ConnectArgs,
    user: Option<&str>,
) -> Result<Vec<(String, ScramMechanism, i32)>, Error> {
    let conn = &mut login(connect).await?;
    let v = conn.version(ApiKey::DescribeUserScramCredentials, (0, 0))?;
    let req = DescribeUserScramCredentialsRequest::default()
        .with_users(user.map(|u| vec![UserName::default().with_name(s(u))]));
    let resp: DescribeUserScramCredentialsResponse = conn
        .call(ApiKey::DescribeUserScramCredentials, v, &req)
        .await?;
    check(
        resp.error_code,
        resp.error_message.as_ref(),
        "describe users",
    )?;
    let mut out = Vec::new();
    for r in &resp.results {
        check(
            r.error_code,
            r.error_message.as_ref(),
            &format!("user {}", r.user.as_str()),
        )?;
        for c in &r.credential_infos {
            if let Some(m) = ScramMechanism::from_kafka_type(c.mechanism) {
                out.push((r.user.to_string(), m, c.iterations));
            }
        }
    }
    Ok(out)
}
