//! `tierlog quota set|remove|describe`: client quotas over the Kafka
//! protocol (AlterClientQuotas, DescribeClientQuotas; KIP-546), like
//! Kafka's `kafka-configs --entity-type users|clients`.
//!
//! An entity is a user (`--user NAME` or `--default-user`), a client id
//! (`--client-id ID` or `--default-client-id`), or both. Quotas can be
//! changed over a PLAINTEXT listener only from loopback.

use std::process::ExitCode;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tierlog::client::{describe_error, Cluster};
use tierlog::{Error, ErrorKind};

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Who a quota is for.
#[derive(clap::Args, Clone)]
pub struct EntityArgs {
    /// A user (the SASL user name, a certificate's subject, or
    /// ANONYMOUS on listeners without authentication).
    #[arg(long, conflicts_with = "default_user")]
    user: Option<String>,
    /// Every user without a quota of their own (Kafka's `<default>`).
    #[arg(long)]
    default_user: bool,
    /// A client id (the client's `client.id`).
    #[arg(long, conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// Every client id without a quota of its own.
    #[arg(long)]
    default_client_id: bool,
}

impl EntityArgs {
    /// (entity type, name; `None` = default) pairs.
    fn parts(&self) -> Vec<(&'static str, Option<String>)> {
        let mut parts = Vec::new();
        if self.user.is_some() || self.default_user {
            parts.push(("user", self.user.clone()));
        }
        if self.client_id.is_some() || self.default_client_id {
            parts.push(("client-id", self.client_id.clone()));
        }
        parts
    }
}

#[derive(clap::Subcommand)]
pub enum QuotaCommand {
    /// Set quotas of an entity (the others it has stay).
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Produced bytes per second (e.g. 1048576, 1MiB).
        #[arg(long, value_parser = super::parse_size)]
        producer_byte_rate: Option<u64>,
        /// Fetched bytes per second.
        #[arg(long, value_parser = super::parse_size)]
        consumer_byte_rate: Option<u64>,
        /// Request handling time in percent of one thread (e.g. 50).
        #[arg(long)]
        request_percentage: Option<f64>,
        /// Check the change without making it.
        #[arg(long)]
        validate_only: bool,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
    /// Remove quotas of an entity (every one it has unless some are named).
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        #[arg(long)]
        producer_byte_rate: bool,
        #[arg(long)]
        consumer_byte_rate: bool,
        #[arg(long)]
        request_percentage: bool,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
    /// List quotas: all, or the entities matching the given parts (with
    /// `--strict`, only entities with exactly those parts).
    Describe {
        #[command(flatten)]
        entity: EntityArgs,
        #[arg(long)]
        strict: bool,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn entity_text(parts: &[(&str, Option<String>)]) -> String {
    parts
        .iter()
        .map(|(k, n)| format!("{k}={}", n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn need_entity(entity: &EntityArgs) -> Result<Vec<(&'static str, Option<String>)>, Error> {
    let parts = entity.parts();
    if parts.is_empty() {
        return Err(Error::invalid(
            "name an entity: --user NAME or --default-user, and/or --client-id ID or --default-client-id",
        ));
    }
    Ok(parts)
}

pub fn run(cmd: QuotaCommand) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}")))?;
    runtime.block_on(async move {
        match cmd {
            QuotaCommand::Set {
                entity,
                producer_byte_rate,
                consumer_byte_rate,
                request_percentage,
                validate_only,
                bootstrap,
            } => {
                let parts = need_entity(&entity)?;
                let mut ops = Vec::new();
                if let Some(v) = producer_byte_rate {
                    ops.push(("producer_byte_rate", v as f64));
                }
                if let Some(v) = consumer_byte_rate {
                    ops.push(("consumer_byte_rate", v as f64));
                }
                if let Some(v) = request_percentage {
                    ops.push(("request_percentage", v));
                }
                if ops.is_empty() {
                    return Err(Error::invalid(
                        "set at least one of --producer-byte-rate, --consumer-byte-rate, --request-percentage",
                    ));
                }
                let ops: Vec<OpData> = ops
                    .iter()
                    .map(|(k, v)| OpData::default().with_key(s(k)).with_value(*v))
                    .collect();
                alter(&bootstrap, &parts, ops, validate_only).await?;
                let what = if validate_only { "valid" } else { "set" };
                println!(
                    "quota {}: {}",
                    entity_text(&parts),
                    [
                        producer_byte_rate.map(|v| format!("producer_byte_rate={v}")),
                        consumer_byte_rate.map(|v| format!("consumer_byte_rate={v}")),
                        request_percentage.map(|v| format!("request_percentage={v}")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
                        + " "
                        + what
                );
            }
            QuotaCommand::Remove {
                entity,
                producer_byte_rate,
                consumer_byte_rate,
                request_percentage,
                bootstrap,
            } => {
                let parts = need_entity(&entity)?;
                let mut keys: Vec<String> = [
                    (producer_byte_rate, "producer_byte_rate"),
                    (consumer_byte_rate, "consumer_byte_rate"),
                    (request_percentage, "request_percentage"),
                ]
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, k)| k.to_string())
                .collect();
                if keys.is_empty() {
                    keys = describe(&bootstrap, &parts, true)
                        .await?
                        .into_iter()
                        .flat_map(|(_, values)| values.into_iter().map(|(k, _)| k))
                        .collect();
                }
                if keys.is_empty() {
                    return Err(Error::new(
                        ErrorKind::NotFound,
                        format!("{} has no quota", entity_text(&parts)),
                    ));
                }
                let ops = keys
                    .iter()
                    .map(|k| OpData::default().with_key(s(k)).with_remove(true))
                    .collect();
                alter(&bootstrap, &parts, ops, false).await?;
                println!("quota {}: {} removed", entity_text(&parts), keys.join(" "));
            }
            QuotaCommand::Describe {
                entity,
                strict,
                bootstrap,
            } => {
                for (parts, values) in describe(&bootstrap, &entity.parts(), strict).await? {
                    let values: Vec<String> =
                        values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("{}\t{}", entity_text(&parts), values.join(" "));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn alter(
    bootstrap: &str,
    parts: &[(&str, Option<String>)],
    ops: Vec<OpData>,
    validate_only: bool,
) -> Result<(), Error> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    let conn = cluster.any();
    let v = conn.version(ApiKey::AlterClientQuotas, (0, 1))?;
    let req = AlterClientQuotasRequest::default()
        .with_validate_only(validate_only)
        .with_entries(vec![EntryData::default()
            .with_entity(
                parts
                    .iter()
                    .map(|(k, n)| {
                        EntityData::default()
                            .with_entity_type(s(k))
                            .with_entity_name(n.as_deref().map(s))
                    })
                    .collect(),
            )
            .with_ops(ops)]);
    let resp: AlterClientQuotasResponse = conn.call(ApiKey::AlterClientQuotas, v, &req).await?;
    for e in &resp.entries {
        if e.error_code != 0 {
            let detail = e
                .error_message
                .as_ref()
                .map(|m| format!(": {}", m.as_str()))
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "quota {}: {}{detail}",
                    entity_text(parts),
                    describe_error(e.error_code)
                ),
            ));
        }
    }
    Ok(())
}

type Described = Vec<(Vec<(&'static str, Option<String>)>, Vec<(String, f64)>)>;

/// Entities matching `parts` (all with none) and their quotas.
async fn describe(
    bootstrap: &str,
    parts: &[(&str, Option<String>)],
    strict: bool,
) -> Result<Described, Error> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    let conn = cluster.any();
    let v = conn.version(ApiKey::DescribeClientQuotas, (0, 1))?;
    let req = DescribeClientQuotasRequest::default()
        .with_strict(strict)
        .with_components(
            parts
                .iter()
                .map(|(k, n)| {
                    let c = ComponentData::default().with_entity_type(s(k));
                    match n {
                        Some(n) => c.with_match_type(0).with_match(Some(s(n))),
                        None => c.with_match_type(1),
                    }
                })
                .collect(),
        );
    let resp: DescribeClientQuotasResponse =
        conn.call(ApiKey::DescribeClientQuotas, v, &req).await?;
    if resp.error_code != 0 {
        let detail = resp
            .error_message
            .as_ref()
            .map(|m| format!(": {}", m.as_str()))
            .unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "describe quotas: {}{detail}",
                describe_error(resp.error_code)
            ),
        ));
    }
    let mut out = Vec::new();
    for e in resp.entries.unwrap_or_default() {
        let parts = e
            .entity
            .iter()
            .map(|p| {
                let kind = if p.entity_type.as_str() == "user" {
                    "user"
                } else {
                    "client-id"
                };
                (kind, p.entity_name.as_ref().map(|n| n.to_string()))
            })
            .collect();
        let values = e
            .values
            .iter()
            .map(|v| (v.key.to_string(), v.value))
            .collect();
        out.push((parts, values));
    }
    Ok(out)
}
