//! The broker with a real Kafka client: librdkafka (the C library every
//! non-Java client wraps), through the rdkafka crate.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::broker::TestBroker;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const T0: i64 = 1_700_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(addr: &str, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

fn consumer(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "unused") // required by librdkafka; assign() uses no group
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer")
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin")
}

/// Produce `n` keyed records with headers and increasing timestamps;
/// returns their (partition, offset) from the delivery reports.
async fn produce(
    p: &FutureProducer,
    topic: &str,
    n: usize,
    partition: Option<i32>,
) -> Vec<(i32, i64)> {
    let data: Vec<(String, String, String)> = (0..n)
        .map(|i| {
            (
                format!("key-{i}"),
                format!("value-{i}-{}", "x".repeat(i % 50)),
                i.to_string(),
            )
        })
        .collect();
    let mut futures = Vec::new();
    for (i, (key, value, n)) in data.iter().enumerate() {
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(value)
            .timestamp(T0 + i as i64 * 10)
            .headers(OwnedHeaders::new().insert(Header {
                key: "n",
                value: Some(n),
            }));
        if let Some(p) = partition {
            record = record.partition(p);
        }
        futures.push(p.send(record, Duration::from_secs(10)));
    }
    let mut out = Vec::new();
    for f in futures {
        let delivery = f.await.map_err(|(e, _)| e).expect("acknowledged");
        out.push((delivery.partition, delivery.offset));
    }
    out
}

/// Read from `offset` until `n` messages arrived; check each is record
/// `first + k` as `produce` made it.
fn consume_and_check(
    c: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: Offset,
    first: usize,
    n: usize,
) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, offset).unwrap();
    c.assign(&tpl).unwrap();
    let mut got = 0;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while got < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {got} of {n} messages arrived"
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("no consume error");
        let i = first + got;
        assert_eq!(m.offset(), i as i64, "dense offsets");
        assert_eq!(m.key(), Some(format!("key-{i}").as_bytes()));
        assert_eq!(
            m.payload(),
            Some(format!("value-{i}-{}", "x".repeat(i % 50)).as_bytes())
        );
        assert_eq!(m.timestamp().to_millis(), Some(T0 + i as i64 * 10));
        let h = m.headers().expect("headers").get(0);
        assert_eq!((h.key, h.value), ("n", Some(i.to_string().as_bytes())));
        got += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_acks_all_and_1_then_consume_from_beginning_middle_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let addr = broker.addr.clone();

    // acks=all: auto-created topic, offsets dense from 0.
    let delivered = produce(&producer(&addr, "all"), "events", 500, None).await;
    assert_eq!(delivered, (0..500).map(|o| (0, o)).collect::<Vec<_>>());
    // acks=1 continues the same log.
    let delivered = produce(&producer(&addr, "1"), "events", 100, None).await;
    assert_eq!(delivered.first(), Some(&(0, 500)));
    assert_eq!(delivered.last(), Some(&(0, 599)));

    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        let c = consumer(&addr2);
        // The acks=1 records restart numbering at 0: check the first 500 only.
        consume_and_check(&c, "events", 0, Offset::Beginning, 0, 500);
        consume_and_check(&c, "events", 0, Offset::Offset(250), 250, 100);

        // By timestamp: record i has T0 + 10 i; T0 + 1235 lands on record 124.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("events", 0, Offset::Offset(T0 + 1235))
            .unwrap();
        let found = c.offsets_for_times(tpl, TIMEOUT).unwrap();
        assert_eq!(
            found.find_partition("events", 0).unwrap().offset(),
            Offset::Offset(124)
        );
        consume_and_check(&c, "events", 0, Offset::Offset(124), 124, 10);

        let (low, high) = c.fetch_watermarks("events", 0, TIMEOUT).unwrap();
        assert_eq!((low, high), (0, 600));
    })
    .await
    .unwrap();
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_waiting_at_the_end_gets_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let addr = broker.addr.clone();
    produce(&producer(&addr, "1"), "live", 1, None).await;
    let addr2 = addr.clone();
    let waiter = tokio::task::spawn_blocking(move || {
        let c = consumer(&addr2);
        consume_and_check(&c, "live", 0, Offset::Beginning, 0, 20);
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Re-produce records 0..20 content at offsets 1..: check via offsets only.
    let p = producer(&addr, "1");
    for i in 1..20usize {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 50));
        let header_value = i.to_string();
        p.send(
            FutureRecord::to("live")
                .key(&key)
                .payload(&value)
                .timestamp(T0 + i as i64 * 10)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "n",
                    value: Some(&header_value),
                })),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    waiter.await.unwrap();
    broker.stop();
}

/// Topic `orders`' configs: name → (value, is_default).
async fn describe(
    admin: &AdminClient<DefaultClientContext>,
) -> HashMap<String, (Option<String>, bool)> {
    let r = admin
        .describe_configs([&ResourceSpecifier::Topic("orders")], &AdminOptions::new())
        .await
        .unwrap();
    let resource = r.into_iter().next().unwrap().unwrap();
    resource
        .entries
        .iter()
        .map(|e| (e.name.clone(), (e.value.clone(), e.is_default)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_client_creates_alters_and_describes_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));

    let topic =
        NewTopic::new("orders", 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let results = admin.create_topics([&topic], &opts).await.unwrap();
    assert_eq!(results, vec![Ok("orders".to_string())]);
    let again = admin.create_topics([&topic], &opts).await.unwrap();
    assert_eq!(
        again,
        vec![Err((
            "orders".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
    let bad = NewTopic::new("bad", 1, TopicReplication::Fixed(1)).set("retention.mss", "1");
    let results = admin.create_topics([&bad], &opts).await.unwrap();
    assert_eq!(
        results,
        vec![Err(("bad".to_string(), RDKafkaErrorCode::InvalidConfig))]
    );
    let three = NewTopic::new("rf3", 1, TopicReplication::Fixed(3));
    let results = admin.create_topics([&three], &opts).await.unwrap();
    assert_eq!(
        results,
        vec![Err((
            "rf3".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))]
    );

    let configs = describe(&admin).await;
    assert_eq!(configs["retention.ms"], (Some("3600000".into()), false));
    assert_eq!(configs["segment.bytes"], (Some("1073741824".into()), true));

    // Legacy AlterConfigs (what rdkafka sends) replaces all overrides.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("orders")).set("segment.bytes", "1048576");
    let r = admin.alter_configs([&alter], &opts).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let configs = describe(&admin).await;
    assert_eq!(configs["segment.bytes"], (Some("1048576".into()), false));
    assert_eq!(
        configs["retention.ms"],
        (Some("604800000".into()), true),
        "replaced, as Kafka does"
    );
    // An invalid value is refused (INVALID_CONFIG on the wire; rdkafka 0.39
    // reports every AlterConfigs resource as Ok, so check the effect).
    let alter = AlterConfig::new(ResourceSpecifier::Topic("orders")).set("segment.bytes", "10");
    admin.alter_configs([&alter], &opts).await.unwrap();
    let configs = describe(&admin).await;
    assert_eq!(
        configs["segment.bytes"],
        (Some("1048576".into()), false),
        "invalid value not applied"
    );

    let md = admin
        .inner()
        .fetch_metadata(Some("orders"), TIMEOUT)
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);
    let deleted = admin.delete_topics(&["orders"], &opts).await.unwrap();
    assert_eq!(deleted, vec![Ok("orders".to_string())]);
    assert!(broker.engine.topic("orders").is_err());
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_of_the_broker_lists_its_settings_under_kafka_names() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
    use kafka_protocol::protocol::StrBytes;
    use rdkafka::admin::ConfigSource;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| {
        c.max_connections = 500;
        c.topic_defaults
            .insert("retention.ms".into(), "3600000".into());
    });
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let r = admin
        .describe_configs([&ResourceSpecifier::Broker(0)], &opts)
        .await
        .unwrap();
    let resource = r.into_iter().next().unwrap().unwrap();
    let entries: HashMap<_, _> = resource
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    // Set in the config: the static broker source, not default.
    let max = entries["max.connections"];
    assert_eq!(max.value.as_deref(), Some("500"));
    assert_eq!(max.source, ConfigSource::StaticBroker);
    assert!(max.is_read_only && !max.is_default && !max.is_sensitive);
    // Left alone: Kafka's default source.
    let partitions = entries["num.partitions"];
    assert_eq!(partitions.value.as_deref(), Some("1"));
    assert_eq!(partitions.source, ConfigSource::Default);
    assert!(partitions.is_default);
    // Topic defaults under Kafka's broker names.
    let retention = entries["log.retention.ms"];
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::StaticBroker);
    assert_eq!(
        entries["log.segment.bytes"].value.as_deref(),
        Some("1073741824")
    );
    assert_eq!(entries["log.segment.bytes"].source, ConfigSource::Default);
    assert_eq!(
        entries["listeners"].value.as_deref(),
        Some("PLAINTEXT://127.0.0.1:0"),
        "the configured listener"
    );
    for key in [
        "log.dirs",
        "log.cleaner.enable",
        "fetch.max.bytes",
        "remote.cache.bytes",
    ] {
        assert!(
            entries.contains_key(key),
            "{key} missing: {:?}",
            entries.keys()
        );
    }
    assert!(
        entries.values().all(|e| e.value.is_some()
            || [
                "advertised.listeners",
                "advertised_listener",
                "remote_url",
                "ssl.keystore.location",
                "ssl.truststore.location"
            ]
            .contains(&e.name.as_str())),
        "only unset settings have no value"
    );

    // Another broker id is refused, and only the asked keys come back
    // (raw: librdkafka routes a broker resource to that broker).
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let ask = |name: &str, keys: Option<Vec<&str>>| {
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(keys.map(|k| {
                k.into_iter()
                    .map(|k| StrBytes::from_string(k.into()))
                    .collect()
            }))])
    };
    let r: DescribeConfigsResponse = conn
        .call(ApiKey::DescribeConfigs, 4, &ask("7", None))
        .await
        .unwrap();
    assert_eq!(r.results[0].error_code, 42, "INVALID_REQUEST: {r:?}");
    let r: DescribeConfigsResponse = conn
        .call(
            ApiKey::DescribeConfigs,
            4,
            &ask("0", Some(vec!["num.partitions"])),
        )
        .await
        .unwrap();
    let names: Vec<_> = r.results[0]
        .configs
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(names, ["num.partitions"]);
    // The empty name: the cluster-wide dynamic defaults, of which there
    // are none.
    let r: DescribeConfigsResponse = conn
        .call(ApiKey::DescribeConfigs, 4, &ask("", None))
        .await
        .unwrap();
    assert_eq!(
        (r.results[0].error_code, r.results[0].configs.len()),
        (0, 0)
    );

    // A topic without an override reports the broker's default as its
    // source.
    let topic = NewTopic::new("plain", 1, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &opts).await.unwrap();
    let r = admin
        .describe_configs([&ResourceSpecifier::Topic("plain")], &opts)
        .await
        .unwrap();
    let resource = r.into_iter().next().unwrap().unwrap();
    let retention = resource
        .entries
        .iter()
        .find(|e| e.name == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::StaticBroker);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_topic_names_are_never_created_as_ordinary_topics() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    for name in ["__consumer_offsets", "__transaction_state"] {
        let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
        let r = admin.create_topics([&topic], &opts).await.unwrap();
        assert_eq!(
            r,
            vec![Err((name.to_string(), RDKafkaErrorCode::InvalidRequest))]
        );
        // A Metadata request that allows auto-creation does not create it.
        let mut conn = tierlog::client::Connection::connect(&broker.addr)
            .await
            .unwrap();
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(name))))]))
            .with_allow_auto_topic_creation(true);
        let r: MetadataResponse = conn.call(ApiKey::Metadata, 9, &req).await.unwrap();
        assert_eq!(r.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
        assert!(broker.engine.topic(name).is_err());
    }
    // The CLI's way in (the engine) refuses too.
    let e = broker
        .engine
        .create_topic("__consumer_offsets", 1, &Default::default())
        .unwrap_err();
    assert!(e.to_string().contains("internal topic"), "{e}");
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_are_filled_when_asked() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let bit = |ops: i32, op: u8| ops & (1 << op) != 0;
    for ask in [false, true] {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]))
            .with_include_topic_authorized_operations(ask)
            .with_include_cluster_authorized_operations(ask);
        let r: MetadataResponse = conn.call(ApiKey::Metadata, 9, &req).await.unwrap();
        let (topic_ops, cluster_ops) = (
            r.topics[0].topic_authorized_operations,
            r.cluster_authorized_operations,
        );
        let r: DescribeClusterResponse = conn
            .call(
                ApiKey::DescribeCluster,
                0,
                &DescribeClusterRequest::default().with_include_cluster_authorized_operations(ask),
            )
            .await
            .unwrap();
        if !ask {
            assert_eq!(
                (topic_ops, cluster_ops, r.cluster_authorized_operations),
                (i32::MIN, i32::MIN, i32::MIN),
                "omitted unless asked"
            );
            continue;
        }
        // READ, WRITE, DESCRIBE, ALTER_CONFIGS on the topic; no ACLs, so all.
        for op in [3, 4, 8, 11] {
            assert!(bit(topic_ops, op), "topic op {op} in {topic_ops:b}");
        }
        assert!(
            !bit(topic_ops, 12),
            "IDEMPOTENT_WRITE is a cluster operation"
        );
        for ops in [cluster_ops, r.cluster_authorized_operations] {
            // DESCRIBE, ALTER, IDEMPOTENT_WRITE on the cluster.
            for op in [7, 8, 12] {
                assert!(bit(ops, op), "cluster op {op} in {ops:b}");
            }
            assert!(!bit(ops, 3), "READ is not a cluster operation");
        }
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kafka_topic_config_is_accepted_and_the_meaningful_ones_act() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    // What Terraform, Streams and librdkafka's own admin tests set.
    let stored_only = [
        ("preallocate", "true"),
        ("segment.index.bytes", "1048576"),
        ("segment.jitter.ms", "1000"),
        ("unclean.leader.election.enable", "false"),
        ("file.delete.delay.ms", "1000"),
        ("follower.replication.throttled.replicas", "*"),
        ("leader.replication.throttled.replicas", "0:0"),
        ("message.downconversion.enable", "false"),
        ("compression.zstd.level", "5"),
        ("compression.lz4.level", "12"),
    ];
    let mut lz4 =
        NewTopic::new("lz4", 1, TopicReplication::Fixed(1)).set("compression.type", "lz4");
    for (k, v) in stored_only {
        lz4 = lz4.set(k, v);
    }
    let isr = NewTopic::new("isr", 1, TopicReplication::Fixed(1)).set("min.insync.replicas", "2");
    let recent = NewTopic::new("recent", 1, TopicReplication::Fixed(1))
        .set("message.timestamp.before.max.ms", "86400000");
    let bad = NewTopic::new("bad", 1, TopicReplication::Fixed(1)).set("compression.type", "brotli");
    let r = admin
        .create_topics([&lz4, &isr, &recent, &bad], &opts)
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            Ok("lz4".to_string()),
            Ok("isr".to_string()),
            Ok("recent".to_string()),
            Err(("bad".to_string(), RDKafkaErrorCode::InvalidConfig)),
        ]
    );
    let r = admin
        .describe_configs([&ResourceSpecifier::Topic("lz4")], &opts)
        .await
        .unwrap();
    let resource = r.into_iter().next().unwrap().unwrap();
    let entries = resource.entry_map();
    for (k, v) in stored_only.iter().chain(&[("compression.type", "lz4")]) {
        assert_eq!(entries[k].value.as_deref(), Some(*v), "{k}");
    }
    assert_eq!(entries["min.insync.replicas"].value.as_deref(), Some("1"));
    assert!(entries["min.insync.replicas"].is_default);

    // compression.type recompresses: sent uncompressed, stored in lz4 (librdkafka here is built without zstd),
    // read back the same.
    produce(&producer(&broker.addr, "all"), "lz4", 20, Some(0)).await;
    let stored = broker.engine.read("lz4", 0, 0, 1 << 20).unwrap().records;
    let (_, header, _) = tierlog::format::Batches::new(&stored)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(header.attributes & 0x07, 3, "stored as lz4");
    consume_and_check(&consumer(&broker.addr), "lz4", 0, Offset::Beginning, 0, 20);

    // min.insync.replicas above the one broker: acks=all fails, acks=1 works.
    let record = FutureRecord::to("isr").key("k").payload("v").partition(0);
    // NOT_ENOUGH_REPLICAS is retriable (as in Kafka): no retries, to see it.
    let no_retries: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("acks", "all")
        .set("retries", "0")
        .create()
        .unwrap();
    let err = no_retries
        .send(record, Duration::from_secs(10))
        .await
        .unwrap_err()
        .0;
    assert_eq!(
        err,
        KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)
    );
    let record = FutureRecord::to("isr").key("k").payload("v").partition(0);
    producer(&broker.addr, "1")
        .send(record, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(broker.engine.offsets("isr", 0).unwrap().log_end_offset, 1);

    // A timestamp older than message.timestamp.before.max.ms is refused.
    let old = FutureRecord::to("recent")
        .key("k")
        .payload("v")
        .partition(0)
        .timestamp(T0);
    let err = producer(&broker.addr, "1")
        .send(old, Duration::from_secs(10))
        .await
        .unwrap_err()
        .0;
    assert_eq!(
        err,
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp)
    );
    let now = FutureRecord::to("recent")
        .key("k")
        .payload("v")
        .partition(0);
    producer(&broker.addr, "1")
        .send(now, Duration::from_secs(10))
        .await
        .unwrap();
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_reports_local_and_remote_bytes_per_partition() {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::{
        ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let tiered: std::collections::BTreeMap<String, String> = [
        ("remote.storage.enable", "true"),
        ("segment.bytes", "4096"),
        ("retention.ms", "-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    broker.engine.create_topic("tiered", 2, &tiered).unwrap();
    broker
        .engine
        .create_topic("local", 1, &Default::default())
        .unwrap();
    produce(&producer(&broker.addr, "all"), "tiered", 200, Some(0)).await;
    produce(&producer(&broker.addr, "all"), "local", 10, Some(0)).await;
    let engine = broker.engine.clone();
    let status = tokio::task::spawn_blocking(move || {
        // The background copy job may have tiered some already: what
        // matters is that segments are tiered after this round.
        engine.run_remote_round().unwrap();
        assert!(tiered_segments(&engine, "tiered", 0) > 0);
        engine.tier_status(None).unwrap()
    })
    .await
    .unwrap();
    let expected = |topic: &str, p: u32| {
        let s = status
            .partitions
            .iter()
            .find(|s| s.topic == topic && s.partition == p)
            .unwrap();
        (s.local_bytes as i64, s.remote_bytes as i64)
    };

    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    for version in [1, 4] {
        let r: DescribeLogDirsResponse = conn
            .call(
                ApiKey::DescribeLogDirs,
                version,
                &DescribeLogDirsRequest::default().with_topics(None),
            )
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        assert_eq!(r.results.len(), 2, "the data dir and the remote tier");
        let sizes = |result: usize| -> std::collections::BTreeMap<(String, i32), i64> {
            r.results[result]
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| ((t.name.0.to_string(), p.partition_index), p.partition_size))
                })
                .collect()
        };
        let (local, remote) = (sizes(0), sizes(1));
        assert_eq!(
            r.results[0].log_dir.to_string(),
            dir.path().display().to_string()
        );
        assert!(r.results[1].log_dir.starts_with("file://"), "{r:?}");
        assert_eq!(local.len(), 3, "{local:?}");
        assert_eq!(remote.len(), 2, "only the tiered topic: {remote:?}");
        for (topic, p) in [("tiered", 0), ("tiered", 1), ("local", 0)] {
            let (l, rb) = expected(topic, p);
            assert_eq!(local[&(topic.to_string(), p as i32)], l, "{topic}-{p}");
            if topic == "tiered" {
                assert_eq!(remote[&(topic.to_string(), p as i32)], rb, "{topic}-{p}");
            }
        }
        assert!(
            remote[&("tiered".to_string(), 0)] > 0,
            "bytes in the bucket"
        );
        if version >= 4 {
            assert!(r.results[0].total_bytes > 0 && r.results[0].usable_bytes >= 0);
        }
    }
    // Asking for one partition answers only it.
    let r: DescribeLogDirsResponse = conn
        .call(
            ApiKey::DescribeLogDirs,
            4,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("tiered")))
                    .with_partitions(vec![1]),
            ])),
        )
        .await
        .unwrap();
    let listed: Vec<_> = r.results[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    assert_eq!(listed, [("tiered".to_string(), 1)]);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_and_oversized_message_get_kafka_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.auto_create_topics_enable = false);
    let addr = broker.addr.clone();
    let md = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            consumer(&addr)
                .fetch_metadata(Some("nope"), TIMEOUT)
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        md.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );

    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("message.timeout.ms", "5000")
        // Fail unknown topics after 1 s rather than librdkafka's 30 s wait.
        .set("topic.metadata.propagation.max.ms", "1000")
        .create()
        .unwrap();
    let err = p
        .send(
            FutureRecord::<str, str>::to("nope").payload("x"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .0;
    assert!(
        matches!(
            err,
            KafkaError::MessageProduction(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            )
        ),
        "{err:?}"
    );

    broker
        .engine
        .create_topic(
            "small",
            1,
            &[("max.message.bytes".to_string(), "1000".to_string())].into(),
        )
        .unwrap();
    let big = "y".repeat(5000);
    let err = p
        .send(
            FutureRecord::<str, str>::to("small").payload(&big),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .0;
    assert_eq!(
        err,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    // A small one still goes through.
    let ok = p
        .send(
            FutureRecord::<str, str>::to("small").payload("fits"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(ok.unwrap().offset, 0);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.socket_request_max_bytes = 64 * 1024);
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        let closed = |frame: &[u8]| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(frame).unwrap();
            let mut buf = [0u8; 16];
            matches!(s.read(&mut buf), Ok(0) | Err(_))
        };
        // Garbage after a plausible size.
        let mut garbage = 12i32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 12]);
        assert!(closed(&garbage), "garbage closes the connection");
        // A frame over socket.request.max.bytes.
        assert!(
            closed(&(10 * 1024 * 1024i32).to_be_bytes()),
            "oversized frame closes it"
        );
        // A known API with a truncated body (Metadata v9 header, no body).
        let mut short = vec![];
        let body: &[u8] = &[0, 3, 0, 9, 0, 0, 0, 7, 0, 0, 0];
        short.extend_from_slice(&(body.len() as i32).to_be_bytes());
        short.extend_from_slice(body);
        assert!(closed(&short), "truncated request closes it");
        // Array counts near i32::MAX with no elements behind them: the
        // decoder must not reserve room for them (it used to abort the
        // process). Metadata v1 (Array) and v9 (CompactArray).
        let mut huge = vec![0, 3, 0, 1, 0, 0, 0, 8, 0xff, 0xff];
        huge.extend_from_slice(&0x7fff_fff0i32.to_be_bytes());
        let mut frame = (huge.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&huge);
        assert!(closed(&frame), "huge array count closes it");
        let mut huge = vec![0, 3, 0, 9, 0, 0, 0, 9, 0xff, 0xff, 0];
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut frame = (huge.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&huge);
        assert!(closed(&frame), "huge compact array count closes it");

        // A real client still works.
        let md = consumer(&addr).fetch_metadata(None, TIMEOUT).unwrap();
        assert_eq!(md.brokers().len(), 1);
    })
    .await
    .unwrap();
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_grows_a_topic_across_restarts() {
    use rdkafka::admin::NewPartitions;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let topic = NewTopic::new("grow", 1, TopicReplication::Fixed(1));
    admin.create_topics([&topic], &opts).await.unwrap();
    produce(&producer(&broker.addr, "all"), "grow", 5, Some(0)).await;

    let r = admin
        .create_partitions(
            [
                &NewPartitions::new("grow", 3),
                &NewPartitions::new("nope", 3),
            ],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![
            Ok("grow".to_string()),
            Err((
                "nope".to_string(),
                RDKafkaErrorCode::UnknownTopicOrPartition
            )),
        ]
    );
    // Fewer or as many: refused.
    let r = admin
        .create_partitions([&NewPartitions::new("grow", 2)], &opts)
        .await
        .unwrap();
    assert_eq!(
        r,
        vec![Err((
            "grow".to_string(),
            RDKafkaErrorCode::InvalidPartitions
        ))]
    );
    // Validate only changes nothing.
    let r = admin
        .create_partitions(
            [&NewPartitions::new("grow", 4)],
            &AdminOptions::new()
                .request_timeout(Some(TIMEOUT))
                .validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(r, vec![Ok("grow".to_string())]);
    assert_eq!(broker.engine.topic("grow").unwrap().partitions, 3);
    // The new partitions take records.
    produce(&producer(&broker.addr, "all"), "grow", 5, Some(2)).await;
    broker.stop();

    let broker = TestBroker::start(dir.path());
    assert_eq!(broker.engine.topic("grow").unwrap().partitions, 3);
    let ends: Vec<i64> = (0..3)
        .map(|p| broker.engine.offsets("grow", p).unwrap().log_end_offset)
        .collect();
    assert_eq!(ends, [5, 0, 5]);
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        consume_and_check(&consumer(&addr), "grow", 2, Offset::Beginning, 0, 5);
    })
    .await
    .unwrap();
    broker.stop();
}

/// Every `.log` object under `dir` (the file:// remote tier).
fn log_objects(dir: &std::path::Path) -> usize {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                n += log_objects(&path);
            } else if path.extension().is_some_and(|x| x == "log") {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start_across_both_tiers_and_restarts() {
    use tierlog::catalog::RemoteState;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let topic = NewTopic::new("purge", 1, TopicReplication::Fixed(1))
        .set("remote.storage.enable", "true")
        .set("segment.bytes", "4096")
        .set("retention.ms", "-1");
    let compacted =
        NewTopic::new("table", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    admin
        .create_topics([&topic, &compacted], &opts)
        .await
        .unwrap();
    produce(&producer(&broker.addr, "all"), "purge", 300, Some(0)).await;
    let engine = broker.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine.run_remote_round().unwrap();
        assert!(tiered_segments(&engine, "purge", 0) > 3);
    })
    .await
    .unwrap();

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("purge", 0, Offset::Offset(150))
        .unwrap();
    let r = admin.delete_records(&tpl, &opts).await.unwrap();
    let e = &r.elements_for_topic("purge")[0];
    assert_eq!((e.offset(), e.error()), (Offset::Offset(150), Ok(())));
    assert_eq!(
        broker.engine.offsets("purge", 0).unwrap().log_start_offset,
        150
    );
    // Beyond the high watermark, and on a compacted topic: Kafka's errors.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("purge", 0, Offset::Offset(301))
        .unwrap();
    tpl.add_partition_offset("table", 0, Offset::Offset(0))
        .unwrap();
    let r = admin.delete_records(&tpl, &opts).await.unwrap();
    let errors: Vec<_> = r.elements().iter().map(|e| e.error()).collect();
    assert_eq!(
        errors,
        [
            Err(KafkaError::OffsetFetch(RDKafkaErrorCode::OffsetOutOfRange)),
            Err(KafkaError::OffsetFetch(RDKafkaErrorCode::PolicyViolation)),
        ],
        "{r:?}"
    );
    // Reads below the new start are out of range; a consumer from the
    // beginning starts at it.
    let e = broker.engine.read("purge", 0, 100, 1 << 20).unwrap_err();
    assert_eq!(e.kind(), tierlog::ErrorKind::OutOfRange);
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        consume_and_check(&consumer(&addr), "purge", 0, Offset::Beginning, 150, 10);
    })
    .await
    .unwrap();

    // A round and a retention run later, nothing wholly below 150 is left
    // in either tier.
    let engine = broker.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine.run_remote_round().unwrap();
        engine.run_local_retention();
        engine.run_remote_round().unwrap();
    })
    .await
    .unwrap();
    let rows = broker.engine.remote_segments("purge", 0).unwrap();
    let live: Vec<_> = rows
        .iter()
        .filter(|r| r.state == RemoteState::CopyFinished)
        .collect();
    assert!(!live.is_empty());
    assert!(live.iter().all(|r| r.last_offset >= 150), "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.state == RemoteState::DeleteFinished && r.last_offset < 150),
        "tiered segments below the start were deleted: {rows:?}"
    );
    assert_eq!(
        log_objects(&dir.path().join("remote")),
        live.len(),
        "the bucket holds only the live segments' objects"
    );
    let first_local = broker
        .engine
        .with_log("purge", 0, |log| {
            Ok(log.segments().next().unwrap().next_offset())
        })
        .unwrap();
    assert!(first_local > 150, "no local segment wholly below 150");
    broker.stop();

    // The start survives a restart; -1 deletes up to the high watermark.
    let broker = TestBroker::start(dir.path());
    assert_eq!(
        broker.engine.offsets("purge", 0).unwrap().log_start_offset,
        150
    );
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        consume_and_check(&consumer(&addr), "purge", 0, Offset::Beginning, 150, 10);
    })
    .await
    .unwrap();
    assert_eq!(broker.engine.delete_records("purge", 0, -1).unwrap(), 300);
    assert_eq!(
        broker.engine.offsets("purge", 0).unwrap().log_start_offset,
        300
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_fetch_sessions_answer_only_what_changed() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic("s", 2, &Default::default())
        .unwrap();
    produce(&producer(&broker.addr, "all"), "s", 5, Some(0)).await;
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let fetch = |id: i32, epoch: i32, parts: &[(i32, i64)]| {
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(10)
            .with_max_bytes(1 << 20)
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(if parts.is_empty() {
                vec![]
            } else {
                vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("s")))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&(p, o)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(o)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]
            })
    };
    // (partition, records bytes) answered.
    let answered = |r: &FetchResponse| -> Vec<(i32, bool)> {
        r.responses
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        p.partition_index,
                        p.records.as_ref().is_some_and(|b| !b.is_empty()),
                    )
                })
            })
            .collect()
    };
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(0, 0, &[(0, 0), (1, 0)]))
        .await
        .unwrap();
    let id = r.session_id;
    assert!(id > 0, "a new session: {r:?}");
    assert_eq!(answered(&r), [(0, true), (1, false)]);
    // Epoch 1: partition 0 moves on; nothing new anywhere: empty answer.
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 1, &[(0, 5)]))
        .await
        .unwrap();
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(answered(&r), []);
    // Records for partition 1, which the request does not name: the
    // session remembers it.
    produce(&producer(&broker.addr, "all"), "s", 3, Some(1)).await;
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 2, &[]))
        .await
        .unwrap();
    assert_eq!(answered(&r), [(1, true)]);
    // A wrong epoch, an unknown session: Kafka's errors.
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 9, &[]))
        .await
        .unwrap();
    assert_eq!(r.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id + 1, 1, &[]))
        .await
        .unwrap();
    assert_eq!(r.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    // Closing it: a full, sessionless answer.
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, -1, &[(0, 5), (1, 3)]))
        .await
        .unwrap();
    assert_eq!(r.session_id, 0);
    assert_eq!(answered(&r), [(0, false), (1, false)]);
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 3, &[]))
        .await
        .unwrap();
    assert_eq!(r.error_code, 70, "closed");
    broker.stop();
}

/// Fetch's and ListOffsets' `current_leader_epoch` (KIP-320), checked as
/// Kafka's leader checks it: -1 means no check, the partition's epoch (0)
/// passes, an older one is FENCED_LEADER_EPOCH and a newer one
/// UNKNOWN_LEADER_EPOCH (nothing read, offsets -1, answered without the
/// long poll); an unknown partition is that whatever the epoch. An
/// incremental fetch session remembers each partition's epoch until the
/// client sends another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_and_list_offsets_check_the_current_leader_epoch() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{
        ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    produce(&producer(&broker.addr, "all"), "le", 4, Some(0)).await;
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let fenced = ResponseError::FencedLeaderEpoch.code();
    let unknown_epoch = ResponseError::UnknownLeaderEpoch.code();
    let unknown_partition = ResponseError::UnknownTopicOrPartition.code();
    // (topic, current_leader_epoch, fetch offset) per partition 0.
    let fetch = |id: i32, session_epoch: i32, parts: &[(&'static str, i32, i64)], wait: i32| {
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(wait)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(id)
            .with_session_epoch(session_epoch)
            .with_topics(
                parts
                    .iter()
                    .map(|&(t, epoch, offset)| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_static_str(t)))
                            .with_partitions(vec![FetchPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(epoch)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(1 << 20)])
                    })
                    .collect(),
            )
    };
    // (error, high watermark, has records) of the one partition answered.
    let only = |r: &FetchResponse| {
        assert_eq!(r.error_code, 0, "{r:?}");
        let parts: Vec<_> = r.responses.iter().flat_map(|t| &t.partitions).collect();
        assert_eq!(parts.len(), 1, "{r:?}");
        let p = parts[0];
        (
            p.error_code,
            p.high_watermark,
            p.records.as_ref().is_some_and(|b| !b.is_empty()),
        )
    };
    // Sessionless, versions that have the field (v9+).
    for version in [9, 11, 12] {
        for (epoch, expected) in [
            (-1, (0, 4, true)),
            (0, (0, 4, true)),
            (1, (unknown_epoch, -1, false)),
            (-2, (fenced, -1, false)),
        ] {
            let r: FetchResponse = conn
                .call(
                    ApiKey::Fetch,
                    version,
                    &fetch(0, -1, &[("le", epoch, 0)], 10),
                )
                .await
                .unwrap();
            assert_eq!(only(&r), expected, "v{version} epoch {epoch}");
        }
        let r: FetchResponse = conn
            .call(ApiKey::Fetch, version, &fetch(0, -1, &[("nope", 5, 0)], 10))
            .await
            .unwrap();
        assert_eq!(only(&r).0, unknown_partition, "v{version}");
    }
    // A wrong epoch at the log end is answered at once, not after the
    // long poll.
    let asked = std::time::Instant::now();
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(0, -1, &[("le", 3, 4)], 20_000))
        .await
        .unwrap();
    assert_eq!(only(&r).0, unknown_epoch);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );

    // A session: opened with the right epoch, then the client sends a
    // newer one (kept for later requests that do not name the partition),
    // then the right one again.
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(0, 0, &[("le", 0, 0)], 10))
        .await
        .unwrap();
    let id = r.session_id;
    assert!(id > 0, "a new session: {r:?}");
    assert_eq!(only(&r), (0, 4, true));
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 1, &[("le", 1, 4)], 10))
        .await
        .unwrap();
    assert_eq!(only(&r), (unknown_epoch, -1, false));
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 2, &[], 10))
        .await
        .unwrap();
    assert_eq!(only(&r), (unknown_epoch, -1, false), "the session kept it");
    let r: FetchResponse = conn
        .call(ApiKey::Fetch, 12, &fetch(id, 3, &[("le", 0, 2)], 10))
        .await
        .unwrap();
    assert_eq!(only(&r), (0, 4, true));

    // ListOffsets v4+ (latest).
    for version in [4, 7, 9] {
        for (topic, epoch, expected) in [
            ("le", -1, (0, 4)),
            ("le", 0, (0, 4)),
            ("le", 1, (unknown_epoch, -1)),
            ("le", -2, (fenced, -1)),
            ("nope", 1, (unknown_partition, -1)),
        ] {
            let lo: ListOffsetsResponse = conn
                .call(
                    ApiKey::ListOffsets,
                    version,
                    &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str(topic)))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_current_leader_epoch(epoch)
                            .with_timestamp(-1)])]),
                )
                .await
                .unwrap();
            let p = &lo.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.offset),
                expected,
                "v{version} {topic} epoch {epoch}"
            );
        }
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    produce(&producer(&broker.addr, "all"), "durable", 50, None).await;
    broker.stop();
    let broker = TestBroker::start(dir.path());
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        consume_and_check(&consumer(&addr), "durable", 0, Offset::Beginning, 0, 50);
    })
    .await
    .unwrap();
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_existing_topic_again_loses_no_record() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let topic = NewTopic::new("victim", 1, TopicReplication::Fixed(1));
    assert_eq!(
        admin.create_topics([&topic], &opts).await.unwrap(),
        vec![Ok("victim".to_string())]
    );
    produce(&producer(&broker.addr, "all"), "victim", 30, None).await;

    // What Kafka Streams, Connect and provisioning scripts do on every start.
    let again = admin.create_topics([&topic], &opts).await.unwrap();
    assert_eq!(
        again,
        vec![Err((
            "victim".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
    let validate = admin
        .create_topics(
            [&topic],
            &AdminOptions::new()
                .request_timeout(Some(TIMEOUT))
                .validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(
        validate,
        vec![Err((
            "victim".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );

    // One raw request naming a topic twice: INVALID_REQUEST, once, nothing
    // created; the request's other topic is created.
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let v = conn.version(ApiKey::CreateTopics, (2, 7)).unwrap();
    let creatable = |name: &'static str| {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(1)
            .with_replication_factor(1)
    };
    for validate_only in [true, false] {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_validate_only(validate_only)
            .with_topics(vec![
                creatable("victim"),
                creatable("twice"),
                creatable("victim"),
                creatable("twice"),
                creatable("other"),
            ]);
        let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, v, &req).await.unwrap();
        let mut codes: Vec<(String, i16)> = resp
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.error_code))
            .collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![
                ("other".to_string(), 0),
                ("twice".to_string(), 42),
                ("victim".to_string(), 42)
            ],
            "validate_only={validate_only}: {resp:?}"
        );
        let twice = resp.topics.iter().find(|t| &*t.name.0 == "twice").unwrap();
        assert!(
            twice
                .error_message
                .as_ref()
                .is_some_and(|m| m.contains("appears 2 times")),
            "{twice:?}"
        );
        assert!(broker.engine.topic("twice").is_err(), "nothing created");
        assert_eq!(broker.engine.topic("other").is_ok(), !validate_only);
    }
    broker.stop();

    // Everything acknowledged is still there after a restart.
    let broker = TestBroker::start(dir.path());
    let addr = broker.addr.clone();
    tokio::task::spawn_blocking(move || {
        consume_and_check(&consumer(&addr), "victim", 0, Offset::Beginning, 0, 30);
    })
    .await
    .unwrap();
    assert_eq!(
        broker.engine.offsets("victim", 0).unwrap().log_end_offset,
        30
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_beyond_the_partition_budget_gets_policy_violation() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.max_partitions = 10);
    let admin = admin(&broker.addr);
    let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let topic = |name: &'static str, n: i32| NewTopic::new(name, n, TopicReplication::Fixed(1));
    let created = admin.create_topics([&topic("a", 6)], &opts).await.unwrap();
    assert_eq!(created, vec![Ok("a".to_string())]);
    let refused = admin.create_topics([&topic("b", 5)], &opts).await.unwrap();
    assert_eq!(
        refused,
        vec![Err(("b".to_string(), RDKafkaErrorCode::PolicyViolation))]
    );
    let err = broker
        .engine
        .create_topic("b", 5, &Default::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("max.partitions (10)") && err.to_string().contains("holds 6"),
        "{err}"
    );
    assert!(
        broker.engine.topic("b").is_err(),
        "nothing of it was created"
    );
    let fits = admin.create_topics([&topic("c", 4)], &opts).await.unwrap();
    assert_eq!(fits, vec![Ok("c".to_string())]);
    broker.stop();
}

/// A raw Fetch of partition 0 of `topic` from `offset`.
fn raw_fetch(
    topic: &str,
    offset: i64,
    max_wait_ms: i32,
    max_bytes: i32,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    kafka_protocol::messages::FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_a_deleted_topic_ends_with_unknown_topic_not_the_new_topic_s_data() {
    use kafka_protocol::messages::{ApiKey, FetchResponse};
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut conn, _) = broker_for_raw_produce(dir.path()).await;
    let v = conn.version(ApiKey::Fetch, (4, 12)).unwrap();
    let mut b = common::batch(0, 1, 10, T0);
    broker.engine.append("t", 0, &mut b).unwrap();
    // Waiting at the log end for up to 30 s.
    let waiting = tokio::spawn(async move {
        let resp: FetchResponse = conn
            .call(ApiKey::Fetch, v, &raw_fetch("t", 1, 30_000, 1 << 20))
            .await
            .unwrap();
        resp
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The topic goes, and a new one of the same name gets a record.
    let engine = Arc::clone(&broker.engine);
    tokio::task::spawn_blocking(move || {
        engine.delete_topic("t").unwrap();
        engine.create_topic("t", 1, &Default::default()).unwrap();
        let mut b = common::batch(0, 3, 10, T0);
        engine.append("t", 0, &mut b).unwrap();
    })
    .await
    .unwrap();
    let resp = waiting.await.unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION: {p:?}");
    assert!(
        p.records.as_ref().is_none_or(|r| r.is_empty()),
        "no record of the new topic"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_max_bytes_of_the_broker_caps_a_fetch_that_asks_for_everything() {
    use kafka_protocol::messages::{ApiKey, FetchResponse};
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(dir.path(), |c| c.fetch_max_bytes = 4096);
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let mut next = 0;
    for _ in 0..20 {
        let mut b = common::batch(next, 5, 100, T0);
        next = broker.engine.append("t", 0, &mut b).unwrap().last_offset + 1;
    }
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let v = conn.version(ApiKey::Fetch, (4, 12)).unwrap();
    for max_bytes in [0, -1, i32::MAX] {
        let resp: FetchResponse = conn
            .call(ApiKey::Fetch, v, &raw_fetch("t", 0, 0, max_bytes))
            .await
            .unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let len = p.records.as_ref().map_or(0, |r| r.len());
        assert!(
            len > 0 && len <= 4096,
            "max_bytes {max_bytes}: {len} bytes, the broker allows 4096"
        );
    }
    broker.stop();
}

/// Fetch responses sent with sendfile(2) (the default on a plaintext
/// listener) decode, at every Fetch version served, to exactly what the
/// copying path answers on the same log: several segments, an offset in
/// the middle of a batch, small limits (whole batches, KIP-74's oversized
/// first batch) and the log end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendfile_fetch_responses_decode_as_the_copying_ones_at_every_version() {
    use kafka_protocol::messages::{ApiKey, FetchResponse};
    let dir = tempfile::tempdir().unwrap();
    let mut answers: Vec<Vec<FetchResponse>> = Vec::new();
    for sendfile in [true, false] {
        let broker = TestBroker::start_with(dir.path(), |c| c.socket_sendfile_enable = sendfile);
        if sendfile {
            let configs = common::configs(&[("segment.bytes", "20000")]);
            broker.engine.create_topic("t", 1, &configs).unwrap();
            let mut next = 0;
            for i in 0..40 {
                let mut b = common::batch(next, 1 + i % 7, 50 + 97 * (i % 5), T0);
                next = broker.engine.append("t", 0, &mut b).unwrap().last_offset + 1;
            }
        }
        let mut conn = tierlog::client::Connection::connect(&broker.addr)
            .await
            .unwrap();
        let mut got = Vec::new();
        for v in 4..=12 {
            for (offset, max_bytes) in [(0, i32::MAX), (3, 1000), (50, 100), (77, 1), (200, 5000)] {
                let mut req = raw_fetch("t", offset, 0, max_bytes);
                req.topics[0].partitions[0].partition_max_bytes = max_bytes;
                let resp: FetchResponse = conn.call(ApiKey::Fetch, v, &req).await.unwrap();
                got.push(resp);
            }
        }
        answers.push(got);
        broker.stop();
    }
    assert!(answers[0].iter().any(|r| r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|b| b.len() > 1000)));
    assert_eq!(answers[0], answers[1]);
}

/// A broker with topic "t" (one partition), a raw connection to it, and the
/// Produce version to use with [`produce_raw`].
async fn broker_for_raw_produce(
    dir: &std::path::Path,
) -> (TestBroker, tierlog::client::Connection, i16) {
    let broker = TestBroker::start(dir);
    broker
        .engine
        .create_topic("t", 1, &Default::default())
        .unwrap();
    let conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let v = conn
        .version(kafka_protocol::messages::ApiKey::Produce, (3, 9))
        .unwrap();
    (broker, conn, v)
}

/// Produce `bytes` to partition 0 of topic "t" with Produce `v`; the
/// partition's error code.
async fn produce_raw(conn: &mut tierlog::client::Connection, v: i16, bytes: Vec<u8>) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(bytes.into()))])]);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, v, &req).await.unwrap();
    resp.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_batches_get_invalid_record_and_bad_checksums_corrupt_message() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut conn, v) = broker_for_raw_produce(dir.path()).await;

    let mut builder = tierlog::format::BatchBuilder::new();
    builder.push(tierlog::format::Record::new(None, Some(b"v".to_vec()), T0));
    let good = builder.build().unwrap();
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    // recordCount 2 with lastOffsetDelta 0, CRC recomputed: valid checksum,
    // invalid batch.
    let mut bad_count = good.clone();
    bad_count[57..61].copy_from_slice(&2i32.to_be_bytes());
    let crc = crc32c::crc32c(&bad_count[21..]);
    bad_count[17..21].copy_from_slice(&crc.to_be_bytes());

    // attributes bits set by a client, CRC recomputed: a control batch
    // (transaction marker), and a transactional batch with no producer id.
    let with_attributes = |bits: i16| {
        let mut b = good.clone();
        let attributes = i16::from_be_bytes([b[21], b[22]]) | bits;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    };
    let control = with_attributes(0x20);
    let transactional_without_pid = with_attributes(0x10);

    for (bytes, expected) in [
        (bad_crc, 2i16),
        (bad_count, 87),
        (control, 87),
        (transactional_without_pid, 87),
        (good.clone(), 0),
    ] {
        assert_eq!(produce_raw(&mut conn, v, bytes).await, expected);
    }
    assert_eq!(
        broker.engine.offsets("t", 0).unwrap().log_end_offset,
        1,
        "only the good batch landed"
    );

    // Two batches for one partition from an idempotent producer (pid 7):
    // refused whole, nothing appended. Without a producer id, two batches
    // are still taken (older clients send them).
    let with_pid = |seq: i32| {
        let mut builder = tierlog::format::BatchBuilder::new();
        builder.push(tierlog::format::Record::new(None, Some(b"p".to_vec()), T0));
        let mut b = builder.build().unwrap();
        b[43..51].copy_from_slice(&7i64.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    };
    for (bytes, expected, end) in [
        ([with_pid(0), with_pid(1)].concat(), 87i16, 1),
        ([with_pid(0), with_pid(0)].concat(), 87, 1),
        ([good.clone(), good].concat(), 0, 3),
    ] {
        assert_eq!(produce_raw(&mut conn, v, bytes).await, expected);
        assert_eq!(broker.engine.offsets("t", 0).unwrap().log_end_offset, end);
    }
    broker.stop();
}

/// `batch` (one whole batch) with its records section replaced by
/// `section`, length and CRC fixed: a valid frame around any payload.
fn with_records_section(batch: &[u8], section: &[u8]) -> Vec<u8> {
    let mut b = batch[..61].to_vec();
    b.extend_from_slice(section);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_get_invalid_record_and_the_broker_keeps_serving() {
    use tierlog::format::compression::MAX_DECOMPRESSED_BYTES;
    use tierlog::format::{BatchBuilder, Compression, Record};

    let dir = tempfile::tempdir().unwrap();
    let (broker, mut conn, v) = broker_for_raw_produce(dir.path()).await;

    // One record of zeros just past the limit, compressed far below
    // max.message.bytes by the codecs that can (gzip ~1000:1, lz4 ~250:1,
    // zstd more).
    let zeros = vec![0u8; MAX_DECOMPRESSED_BYTES + 1];
    let mut expected_end = 0;
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let mut b = BatchBuilder::new().compression(codec);
        b.push(Record::new(None, Some(zeros.clone()), T0));
        let bomb = b.build().unwrap();
        assert!(bomb.len() < 1 << 20, "{codec:?}: {} bytes", bomb.len());
        assert_eq!(produce_raw(&mut conn, v, bomb).await, 87, "{codec:?}");
        // The same codec with a quarter of the limit is a legal batch.
        let mut b = BatchBuilder::new().compression(codec);
        b.push(Record::new(
            None,
            Some(vec![0u8; MAX_DECOMPRESSED_BYTES / 4]),
            T0,
        ));
        assert_eq!(
            produce_raw(&mut conn, v, b.build().unwrap()).await,
            0,
            "{codec:?}"
        );
        expected_end += 1;
    }
    // Snappy cannot compress that far, but a raw block declares its own
    // length: five bytes claiming 4 GiB, alone and in xerial framing.
    let mut b = BatchBuilder::new().compression(Compression::Snappy);
    b.push(Record::new(None, Some(b"v".to_vec()), T0));
    let small = b.build().unwrap();
    let claim = [0xffu8, 0xff, 0xff, 0xff, 0x0f, 0x00];
    let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    xerial.extend_from_slice(&(claim.len() as u32).to_be_bytes());
    xerial.extend_from_slice(&claim);
    for section in [&claim[..], &xerial[..]] {
        let bomb = with_records_section(&small, section);
        assert_eq!(produce_raw(&mut conn, v, bomb).await, 87);
    }
    assert_eq!(produce_raw(&mut conn, v, small).await, 0);
    expected_end += 1;

    assert_eq!(
        broker.engine.offsets("t", 0).unwrap().log_end_offset,
        expected_end,
        "only the legal batches landed"
    );
    let read = broker.engine.read("t", 0, 0, 1 << 20).unwrap();
    assert!(!read.records.is_empty());
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_incremental_alters_of_one_topic_lose_no_change() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    // Keys that can be set in any order without breaking a cross-key rule.
    let changes = [
        ("retention.ms", "86400000"),
        ("retention.bytes", "1000000000"),
        ("segment.ms", "3600000"),
        ("segment.bytes", "10000000"),
        ("flush.ms", "5000"),
        ("flush.messages", "1000"),
        ("index.interval.bytes", "8192"),
        ("max.message.bytes", "2000000"),
        ("local.retention.ms", "60000"),
        ("local.retention.bytes", "5000000"),
    ];
    for round in 0..3 {
        let topic = format!("alters-{round}");
        broker
            .engine
            .create_topic(&topic, 1, &Default::default())
            .unwrap();
        // Every change from its own connection, all at once.
        let tasks: Vec<_> = changes
            .iter()
            .map(|&(key, value)| {
                let (addr, topic) = (broker.addr.clone(), topic.clone());
                tokio::spawn(async move {
                    let mut conn = tierlog::client::Connection::connect(&addr).await.unwrap();
                    let v = conn
                        .version(ApiKey::IncrementalAlterConfigs, (0, 1))
                        .unwrap();
                    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_string(topic))
                            .with_configs(vec![AlterableConfig::default()
                                .with_name(StrBytes::from_static_str(key))
                                .with_config_operation(0)
                                .with_value(Some(StrBytes::from_static_str(value)))]),
                    ]);
                    let resp: IncrementalAlterConfigsResponse = conn
                        .call(ApiKey::IncrementalAlterConfigs, v, &req)
                        .await
                        .unwrap();
                    assert_eq!(resp.responses[0].error_code, 0, "{key}");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let overrides = broker.engine.topic(&topic).unwrap().overrides;
        let expected: std::collections::BTreeMap<String, String> = changes
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(overrides, expected, "round {round}");
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_larger_than_the_read_ahead_budget_are_answered_in_order() {
    use bytes::BytesMut;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    broker
        .engine
        .create_topic(
            "t",
            1,
            &common::configs(&[("max.message.bytes", "10000000")]),
        )
        .unwrap();
    // Big frames (6 MiB, above the 4 MiB per-connection read-ahead budget)
    // between small ones, all written before any response is read.
    let sizes = [6 << 20, 100, 6 << 20, 100, 100];
    let version = 3;
    let mut wire = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let mut b = tierlog::format::BatchBuilder::new();
        b.push(tierlog::format::Record::new(
            None,
            Some(vec![i as u8; size]),
            T0,
        ));
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(b.build().unwrap().into()))])]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(i as i32);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, ProduceRequest::header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        wire.extend_from_slice(&(body.len() as i32).to_be_bytes());
        wire.extend_from_slice(&body);
    }
    let stream = tokio::net::TcpStream::connect(&broker.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move { wr.write_all(&wire).await.map(|()| wr) });
    // Bounded: a read-ahead that stalled on its own budget would hang here.
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        let mut answered = Vec::new();
        for _ in 0..sizes.len() {
            let len = rd.read_i32().await.unwrap() as usize;
            let mut frame = vec![0u8; len];
            rd.read_exact(&mut frame).await.unwrap();
            let mut buf = bytes::Bytes::from(frame);
            let header =
                ResponseHeader::decode(&mut buf, ProduceResponse::header_version(version)).unwrap();
            let resp = ProduceResponse::decode(&mut buf, version).unwrap();
            let p = &resp.responses[0].partition_responses[0];
            answered.push((header.correlation_id, p.error_code, p.base_offset));
        }
        answered
    })
    .await
    .expect("every pipelined request is answered");
    let _wr = writer.await.unwrap().unwrap();
    let expected: Vec<(i32, i16, i64)> =
        (0..sizes.len()).map(|i| (i as i32, 0, i as i64)).collect();
    assert_eq!(answered, expected);
    let read = broker.engine.read("t", 0, 0, 1).unwrap();
    assert!(read.records.len() > 6 << 20);
    broker.stop();
}

/// Segments of a partition the catalog holds as tiered (uploaded by a
/// test's round or by the broker's own background copy job, whichever ran
/// first).
fn tiered_segments(engine: &tierlog::Engine, topic: &str, partition: u32) -> usize {
    engine
        .remote_segments(topic, partition)
        .unwrap()
        .iter()
        .filter(|r| r.state == tierlog::catalog::RemoteState::CopyFinished)
        .count()
}

/// Leader epochs (KIP-101/KIP-320): each partition's only epoch is 0.
/// Stored batches carry it whatever the client sent, Metadata and
/// ListOffsets report it, and OffsetForLeaderEpoch answers its end offset
/// the way Kafka's leader does, so consumers can validate positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_answers_the_only_epoch_and_batches_carry_it() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
        OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::ResponseError;
    use tierlog::format::batch::BatchHeader;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path());
    produce(&producer(&broker.addr, "all"), "epochs", 10, Some(0)).await;

    // librdkafka sends -1; the broker stamps its epoch.
    let read = broker.engine.read("epochs", 0, 0, 1 << 20).unwrap();
    let mut at = 0;
    while at < read.records.len() {
        let h = BatchHeader::parse(&read.records[at..]).unwrap();
        assert_eq!(h.partition_leader_epoch, 0, "batch at {}", h.base_offset);
        at += h.size();
    }

    let name = || TopicName(StrBytes::from_static_str("epochs"));
    let mut conn = tierlog::client::Connection::connect(&broker.addr)
        .await
        .unwrap();
    let md: MetadataResponse = conn
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name()))
            ])),
        )
        .await
        .unwrap();
    assert_eq!(md.topics[0].partitions[0].leader_epoch, 0);
    // Versions before 4 have no epoch field (kcat's librdkafka 2.0 asks v2:
    // an epoch set there would fail the response's encoding).
    for version in [1, 2, 3, 4, 7, 9] {
        let epoch = if version >= 4 { 0 } else { -1 };
        let lo: ListOffsetsResponse = conn
            .call(
                ApiKey::ListOffsets,
                version,
                &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                    .with_name(name())
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_current_leader_epoch(epoch)
                        .with_timestamp(-1)])]),
            )
            .await
            .unwrap();
        let p = &lo.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.offset, p.leader_epoch),
            (0, 10, epoch),
            "v{version}"
        );
    }

    // (current_leader_epoch, leader_epoch) → (error, epoch, end offset).
    let cases = [
        ((-1, 0), (0, 0, 10)),
        ((0, 0), (0, 0, 10)),
        ((0, 7), (0, -1, -1)),
        ((0, -1), (0, -1, -1)),
        ((1, 0), (ResponseError::UnknownLeaderEpoch.code(), -1, -1)),
        ((-2, 0), (ResponseError::FencedLeaderEpoch.code(), -1, -1)),
    ];
    for version in [2, 4] {
        for ((current, epoch), expected) in cases {
            let r: OffsetForLeaderEpochResponse = conn
                .call(
                    ApiKey::OffsetForLeaderEpoch,
                    version,
                    &OffsetForLeaderEpochRequest::default()
                        .with_replica_id((-1).into())
                        .with_topics(vec![OffsetForLeaderTopic::default()
                            .with_topic(name())
                            .with_partitions(vec![OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(current)
                                .with_leader_epoch(epoch)])]),
                )
                .await
                .unwrap();
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.leader_epoch, p.end_offset),
                expected,
                "v{version} current {current} epoch {epoch}"
            );
        }
    }
    // An unknown partition is that, whatever the epochs.
    let r: OffsetForLeaderEpochResponse = conn
        .call(
            ApiKey::OffsetForLeaderEpoch,
            4,
            &OffsetForLeaderEpochRequest::default().with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("nope")))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_leader_epoch(0)]),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    broker.stop();
}
