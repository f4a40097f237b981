//! `tierlog topic …`, `tierlog produce`, `tierlog consume`: Kafka clients
//! over the protocol (work against tierlog and any Kafka broker).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tierlog::client::{describe_error, partition_for_key, Cluster};
use tierlog::format::{decode_records, BatchBuilder, Record};
use tierlog::{Error, ErrorKind};

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// A topic config, `key=value` (Kafka names); repeatable.
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
    /// List topics.
    List {
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
    /// Show a topic's partitions, offsets and configs; for a compacted
    /// topic, each partition's dirty ratio with --metrics.
    Describe {
        name: String,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
        /// The broker's metrics address (`metrics_listen`, HOST:PORT): for
        /// a compacted topic, each partition's dirty ratio, first dirty
        /// offset and last cleaning are read from its `GET /metrics` (the
        /// Kafka protocol does not carry them).
        #[arg(long, value_name = "HOST:PORT")]
        metrics: Option<String>,
    },
    /// Change topic configs (IncrementalAlterConfigs) or grow the
    /// partition count (CreatePartitions).
    Alter {
        name: String,
        /// Grow the topic to this many partitions (never fewer, as in
        /// Kafka; records keyed to a partition may land elsewhere after).
        #[arg(long)]
        partitions: Option<i32>,
        /// Set `key=value`; repeatable.
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        /// Reset a key to its default; repeatable.
        #[arg(long = "delete-config")]
        delete: Vec<String>,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
    /// Delete the records of a partition below an offset (DeleteRecords):
    /// the log start offset moves there, in both tiers.
    DeleteRecords {
        name: String,
        #[arg(long)]
        partition: i32,
        /// Records below this offset go; -1: every record (the high
        /// watermark).
        #[arg(long, allow_hyphen_values = true)]
        offset: i64,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
        bootstrap: String,
    },
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line into key and value at the first occurrence.
    #[arg(long)]
    key_separator: Option<String>,
    /// Send everything to this partition (default: by key hash, as Kafka's
    /// partitioner; keyless lines round-robin by batch).
    #[arg(long)]
    partition: Option<i32>,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    acks: i16,
    /// Lines per produce request.
    #[arg(long, default_value_t = 500)]
    batch_lines: usize,
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap: String,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at this offset.
    #[arg(long, conflicts_with = "from_beginning")]
    offset: Option<i64>,
    /// Start at each partition's earliest offset (default: the end).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Print `key<separator>value`.
    #[arg(long)]
    print_key: bool,
    #[arg(long, default_value = "\t")]
    key_separator: String,
    #[arg(long, default_value = DEFAULT_BOOTSTRAP)]
    bootstrap: String,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("'{s}' is not key=value"))
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}")))
}

pub(super) fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    Err(Error::new(
        ErrorKind::Invalid,
        format!("{what}: {}{detail}", describe_error(code)),
    ))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn topic(cmd: TopicCommand) -> Result<ExitCode, Error> {
    runtime()?.block_on(async move {
        match cmd {
            TopicCommand::Create {
                name,
                partitions,
                replication_factor,
                configs,
                bootstrap,
            } => {
                let mut cluster = Cluster::connect(&bootstrap).await?;
                let conn = cluster.any();
                let v = conn.version(ApiKey::CreateTopics, (2, 7))?;
                let req = CreateTopicsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication_factor)
                        .with_configs(
                            configs
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(s(k))
                                        .with_value(Some(s(v)))
                                })
                                .collect(),
                        )]);
                let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, v, &req).await?;
                let t = &resp.topics[0];
                check(
                    t.error_code,
                    t.error_message.as_ref(),
                    &format!("cannot create topic '{name}'"),
                )?;
                println!("created topic {name} ({partitions} partitions)");
                Ok(ExitCode::SUCCESS)
            }
            TopicCommand::List { bootstrap } => {
                let mut cluster = Cluster::connect(&bootstrap).await?;
                for t in cluster.metadata(None).await? {
                    println!("{}", t.name);
                }
                Ok(ExitCode::SUCCESS)
            }
            TopicCommand::Describe {
                name,
                bootstrap,
                metrics,
            } => describe(&name, &bootstrap, metrics.as_deref()).await,
            TopicCommand::Alter {
                name,
                partitions,
                configs,
                delete,
                bootstrap,
            } => {
                if configs.is_empty() && delete.is_empty() && partitions.is_none() {
                    return Err(Error::invalid(
                        "nothing to change: give --partitions N, --config key=value or --delete-config key",
                    ));
                }
                let mut cluster = Cluster::connect(&bootstrap).await?;
                let conn = cluster.any();
                if let Some(count) = partitions {
                    let v = conn.version(ApiKey::CreatePartitions, (0, 3))?;
                    let req = CreatePartitionsRequest::default()
                        .with_timeout_ms(30_000)
                        .with_topics(vec![CreatePartitionsTopic::default()
                            .with_name(TopicName(s(&name)))
                            .with_count(count)
                            .with_assignments(None)]);
                    let resp: CreatePartitionsResponse =
                        conn.call(ApiKey::CreatePartitions, v, &req).await?;
                    let r = &resp.results[0];
                    check(
                        r.error_code,
                        r.error_message.as_ref(),
                        &format!("cannot add partitions to topic '{name}'"),
                    )?;
                    println!("topic {name} now has {count} partitions");
                    if configs.is_empty() && delete.is_empty() {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                let v = conn.version(ApiKey::IncrementalAlterConfigs, (0, 1))?;
                let mut changes: Vec<AlterableConfig> = configs
                    .iter()
                    .map(|(k, val)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(0)
                            .with_value(Some(s(val)))
                    })
                    .collect();
                changes.extend(delete.iter().map(|k| {
                    AlterableConfig::default()
                        .with_name(s(k))
                        .with_config_operation(1)
                }));
                let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(&name))
                        .with_configs(changes),
                ]);
                let resp: IncrementalAlterConfigsResponse =
                    conn.call(ApiKey::IncrementalAlterConfigs, v, &req).await?;
                let r = &resp.responses[0];
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("cannot alter topic '{name}'"),
                )?;
                println!("altered topic {name}");
                Ok(ExitCode::SUCCESS)
            }
            TopicCommand::DeleteRecords {
                name,
                partition,
                offset,
                bootstrap,
            } => {
                let mut cluster = Cluster::connect(&bootstrap).await?;
                let conn = cluster.any();
                let v = conn.version(ApiKey::DeleteRecords, (0, 2))?;
                let req = DeleteRecordsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                        .with_name(TopicName(s(&name)))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(partition)
                                .with_offset(offset),
                        ])]);
                let resp: DeleteRecordsResponse = conn.call(ApiKey::DeleteRecords, v, &req).await?;
                let r = &resp.topics[0].partitions[0];
                check(
                    r.error_code,
                    None,
                    &format!("cannot delete records of {name}-{partition}"),
                )?;
                println!(
                    "{name}-{partition}: log start offset (low watermark) now {}",
                    r.low_watermark
                );
                Ok(ExitCode::SUCCESS)
            }
            TopicCommand::Delete { name, bootstrap } => {
                let mut cluster = Cluster::connect(&bootstrap).await?;
                let conn = cluster.any();
                let v = conn.version(ApiKey::DeleteTopics, (1, 5))?;
                let req = DeleteTopicsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topic_names(vec![TopicName(s(&name))]);
                let resp: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, v, &req).await?;
                let r = &resp.responses[0];
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("cannot delete topic '{name}'"),
                )?;
                println!("deleted topic {name}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn list_offsets(
    cluster: &mut Cluster,
    leader: i32,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<i64, Error> {
    let conn = cluster.node(leader).await?;
    let v = conn.version(ApiKey::ListOffsets, (1, 7))?;
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(ts)])]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, v, &req).await?;
    let p = &resp.topics[0].partitions[0];
    check(
        p.error_code,
        None,
        &format!("cannot list offsets of {topic}-{partition}"),
    )?;
    Ok(p.offset)
}

async fn describe(name: &str, bootstrap: &str, metrics: Option<&str>) -> Result<ExitCode, Error> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    let md = cluster.metadata(Some(&[name.to_string()])).await?;
    let t = md
        .first()
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("unknown topic '{name}'")))?;
    println!(
        "topic: {}  id: {}  partitions: {}",
        t.name,
        t.id,
        t.leaders.len()
    );
    let leaders = t.leaders.clone();
    for (p, leader) in leaders.iter().enumerate() {
        let start = list_offsets(&mut cluster, *leader, name, p as i32, -2).await?;
        let end = list_offsets(&mut cluster, *leader, name, p as i32, -1).await?;
        println!(
            "  partition {p}  leader {leader}  log start offset {start}  log end offset {end}"
        );
    }
    let conn = cluster.any();
    let v = conn.version(ApiKey::DescribeConfigs, (1, 4))?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(name))
            .with_configuration_keys(None)]);
    let resp: DescribeConfigsResponse = conn.call(ApiKey::DescribeConfigs, v, &req).await?;
    let r = &resp.results[0];
    check(
        r.error_code,
        r.error_message.as_ref(),
        &format!("cannot describe configs of '{name}'"),
    )?;
    println!("configs:");
    for c in &r.configs {
        let mark = if c.config_source == 1 {
            "  (set on topic)"
        } else {
            ""
        };
        println!(
            "  {}={}{mark}",
            c.name,
            c.value.as_deref().unwrap_or("null")
        );
    }
    let compacted = r.configs.iter().any(|c| {
        c.name.as_str() == "cleanup.policy"
            && c.value
                .as_deref()
                .is_some_and(|v| v.split(',').any(|p| p.trim() == "compact"))
    });
    if compacted {
        describe_cleaning(name, leaders.len(), metrics).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The log cleaner's state of each partition of compacted topic `name`,
/// from the broker's metrics endpoint.
async fn describe_cleaning(
    name: &str,
    partitions: usize,
    metrics: Option<&str>,
) -> Result<(), Error> {
    let Some(addr) = metrics else {
        println!("log cleaner: add --metrics HOST:PORT (the broker's metrics_listen) for each partition's dirty ratio");
        return Ok(());
    };
    let text = super::scrape::metrics_text(addr).await?;
    println!("log cleaner (http://{addr}/metrics):");
    for p in 0..partitions as u32 {
        match super::scrape::cleaning(&text, name, p) {
            Some(c) => {
                let last = if c.last_clean_ms < 0 {
                    "never".to_string()
                } else {
                    c.last_clean_ms.to_string()
                };
                println!(
                    "  partition {p}  dirty ratio {:.3}  first dirty offset {}  last cleaned (ms) {last}",
                    c.dirty_ratio, c.first_dirty_offset
                );
            }
            None => println!("  partition {p}  not reported (offline, or not this broker's)"),
        }
    }
    Ok(())
}

/// Connect, look the topic up, and check `partition` exists; returns the
/// cluster and each partition's leader.
async fn connect_to_topic(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
) -> Result<(Cluster, Vec<i32>), Error> {
    let mut cluster = Cluster::connect(bootstrap).await?;
    let md = cluster.metadata(Some(&[topic.to_string()])).await?;
    let leaders = md[0].leaders.clone();
    if let Some(p) = partition {
        if p < 0 || p as usize >= leaders.len() {
            return Err(Error::invalid(format!(
                "topic '{topic}' has no partition {p}"
            )));
        }
    }
    Ok((cluster, leaders))
}

pub fn produce(args: ProduceArgs) -> Result<ExitCode, Error> {
    runtime()?.block_on(async move {
        let (mut cluster, leaders) =
            connect_to_topic(&args.bootstrap, &args.topic, args.partition).await?;
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut total = 0u64;
        let mut round_robin = 0usize;
        loop {
            let mut chunk = Vec::new();
            for line in lines.by_ref().take(args.batch_lines.max(1)) {
                chunk.push(line.map_err(|e| Error::invalid(format!("cannot read stdin: {e}")))?);
            }
            if chunk.is_empty() {
                break;
            }
            let now = tierlog::clock::Clock::now_ms(&tierlog::clock::SystemClock);
            // Group lines by partition, keeping their order.
            let mut by_partition: BTreeMap<i32, BatchBuilder> = BTreeMap::new();
            round_robin += 1;
            for line in &chunk {
                let (key, value) = match &args.key_separator {
                    Some(sep) => match line.split_once(sep.as_str()) {
                        Some((k, v)) => (Some(k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                        None => (None, line.as_bytes().to_vec()),
                    },
                    None => (None, line.as_bytes().to_vec()),
                };
                let partition = match (args.partition, &key) {
                    (Some(p), _) => p,
                    (None, Some(k)) => partition_for_key(k, leaders.len()),
                    (None, None) => (round_robin % leaders.len()) as i32,
                };
                by_partition
                    .entry(partition)
                    .or_default()
                    .push(Record::new(key, Some(value), now));
            }
            // One request per leader.
            let mut per_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
            for (p, builder) in by_partition {
                let bytes = builder.build().map_err(Error::from)?;
                per_leader.entry(leaders[p as usize]).or_default().push(
                    PartitionProduceData::default()
                        .with_index(p)
                        .with_records(Some(bytes.into())),
                );
            }
            for (leader, parts) in per_leader {
                let conn = cluster.node(leader).await?;
                let v = conn.version(ApiKey::Produce, (3, 9))?;
                let req = ProduceRequest::default()
                    .with_acks(args.acks)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(s(&args.topic)))
                        .with_partition_data(parts)]);
                if args.acks == 0 {
                    return Err(Error::invalid(
                        "--acks 0 is not supported by this CLI (it waits for every response)",
                    ));
                }
                let resp: ProduceResponse = conn.call(ApiKey::Produce, v, &req).await?;
                for t in &resp.responses {
                    for p in &t.partition_responses {
                        check(
                            p.error_code,
                            p.error_message.as_ref(),
                            &format!("cannot produce to {}-{}", args.topic, p.index),
                        )?;
                    }
                }
            }
            total += chunk.len() as u64;
        }
        eprintln!("produced {total} records to {}", args.topic);
        Ok(ExitCode::SUCCESS)
    })
}

pub fn consume(args: ConsumeArgs) -> Result<ExitCode, Error> {
    runtime()?.block_on(async move {
        let (mut cluster, leaders) =
            connect_to_topic(&args.bootstrap, &args.topic, args.partition).await?;
        let partitions: Vec<i32> = match args.partition {
            Some(p) => vec![p],
            None => (0..leaders.len() as i32).collect(),
        };
        let mut positions = BTreeMap::new();
        for &p in &partitions {
            let start = match (args.offset, args.from_beginning) {
                (Some(o), _) => o,
                (None, true) => {
                    list_offsets(&mut cluster, leaders[p as usize], &args.topic, p, -2).await?
                }
                (None, false) => {
                    list_offsets(&mut cluster, leaders[p as usize], &args.topic, p, -1).await?
                }
            };
            positions.insert(p, start);
        }
        let mut printed = 0u64;
        let stdout = std::io::stdout();
        loop {
            for (&p, position) in positions.iter_mut() {
                let conn = cluster.node(leaders[p as usize]).await?;
                let v = conn.version(ApiKey::Fetch, (4, 11))?;
                let req = FetchRequest::default()
                    .with_replica_id((-1).into())
                    .with_max_wait_ms(if partitions.len() == 1 { 1000 } else { 100 })
                    .with_min_bytes(1)
                    .with_max_bytes(8 << 20)
                    .with_session_epoch(-1)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(TopicName(s(&args.topic)))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(*position)
                            .with_partition_max_bytes(1 << 20)])]);
                let resp: FetchResponse = conn.call(ApiKey::Fetch, v, &req).await?;
                check(resp.error_code, None, "fetch failed")?;
                for t in &resp.responses {
                    for part in &t.partitions {
                        check(
                            part.error_code,
                            None,
                            &format!("cannot fetch {}-{} at offset {position}", args.topic, p),
                        )?;
                        let Some(records) = &part.records else {
                            continue;
                        };
                        for r in decode_records(records).map_err(Error::from)? {
                            if r.offset < *position {
                                continue;
                            }
                            *position = r.offset + 1;
                            let mut out = stdout.lock();
                            let value = r.value.as_deref().unwrap_or_default();
                            let written = if args.print_key {
                                let key = r.key.as_deref().unwrap_or_default();
                                out.write_all(key)
                                    .and_then(|()| out.write_all(args.key_separator.as_bytes()))
                                    .and_then(|()| out.write_all(value))
                            } else {
                                out.write_all(value)
                            };
                            if written.and_then(|()| out.write_all(b"\n")).is_err() {
                                return Ok(ExitCode::SUCCESS); // stdout closed (e.g. piped to head)
                            }
                            printed += 1;
                            if args.max_messages.is_some_and(|m| printed >= m) {
                                let _ = out.flush();
                                return Ok(ExitCode::SUCCESS);
                            }
                        }
                    }
                }
            }
            let _ = stdout.lock().flush();
        }
    })
}
