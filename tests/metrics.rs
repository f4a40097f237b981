//! Metrics (issue 18): `/metrics` scraped over HTTP from the real
//! `tierlog serve` binary moves as a real librdkafka client produces,
//! consumes from both tiers, commits and asks for a topic that does not
//! exist — histogram counts, chunk-cache hits on a re-read of tiered data
//! whose local copy is gone, consumer-group lag down to 0, error counts by
//! Kafka error name. Every wait polls with a deadline; no assertion is on
//! a duration.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::server::{err, Server};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The exposition at `GET /metrics`, with its content type.
fn scrape(addr: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: tierlog\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    (head.to_string(), body.to_string())
}

/// Every sample of an exposition by its name and labels.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// Scrape until `done` holds for the samples; they are returned.
fn scrape_until(
    addr: &str,
    what: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = scrape(addr);
        let m = samples(&body);
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} never happened:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sample's value, 0 when absent (a labelled series not moved yet).
fn get(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

/// Read `topic`-0 from offset 0 to `end` with a fresh assigned consumer of
/// `group`; the number of records read.
fn read_all(addr: &str, group: &str, topic: &str, end: i64) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut next, mut read) = (0, 0);
    while next < end {
        assert!(Instant::now() < deadline, "stuck at offset {next} of {end}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert_eq!(m.offset(), next, "records in order, none skipped");
            next = m.offset() + 1;
            read += 1;
        }
    }
    read
}

#[test]
fn scraped_metrics_move_with_produce_fetch_cache_lag_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tierlog.toml");
    std::fs::write(
        &config,
        "remote_log_manager_task_interval_ms = 100\n\
         flush_check_interval_ms = 100\n\
         log_retention_check_interval_ms = 100\n\
         auto_create_topics_enable = false\n",
    )
    .unwrap();
    let server = Server::start_with_metrics(&dir.path().join("data"), &config);
    let metrics = server.metrics.clone().unwrap();
    let (head, _) = scrape(&metrics);
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );

    // A tiered topic whose local copies go as soon as they are tiered.
    let topic = "m.orders";
    let o = server.run(
        &[
            "topic",
            "create",
            topic,
            "--config",
            "remote.storage.enable=true",
            "--config",
            "segment.bytes=4096",
            "--config",
            "local.retention.ms=0",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));

    // Produce 400 records, 20 at a time (each batch well under a segment).
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let end = 400i64;
    for i in 0..end {
        let value = format!("order-{i:05}-{}", "x".repeat(60));
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload(&value),
            )
            .unwrap();
        if i % 20 == 19 {
            producer.flush(TIMEOUT).unwrap();
        }
    }
    producer.flush(TIMEOUT).unwrap();
    let p = |name: &str| format!("{name}{{topic=\"{topic}\",partition=\"0\"}}");

    // Produce latency was observed, once per Produce request.
    let m = scrape_until(&metrics, "every record appended", |m| {
        get(m, &p("tierlog_log_end_offset")) == end as f64
    });
    let produces = get(&m, "tierlog_requests_total{api=\"Produce\"}");
    assert!(produces >= 20.0, "{produces} Produce requests");
    assert_eq!(
        get(&m, "tierlog_produce_duration_seconds_count"),
        produces,
        "one observation per Produce request"
    );
    assert_eq!(
        get(&m, "tierlog_produce_duration_seconds_bucket{le=\"+Inf\"}"),
        produces
    );

    // Tiering settles: every sealed segment tiered (no lag left) and its
    // local copy gone; only the active segment is local.
    let m = scrape_until(&metrics, "tiering and local retention", |m| {
        let tiered = get(m, &p("tierlog_last_tiered_offset"));
        tiered > 0.0
            && get(m, &p("tierlog_local_log_start_offset")) == tiered + 1.0
            && m.get(&p("tierlog_tiering_lag_segments")) == Some(&0.0)
            && m.get(&p("tierlog_tiering_lag_bytes")) == Some(&0.0)
    });
    let local_start = get(&m, &p("tierlog_local_log_start_offset"));
    assert!(
        local_start > 0.0 && local_start < end as f64,
        "{local_start}"
    );
    assert_eq!(get(&m, &p("tierlog_tiering_lag_seconds")), 0.0);
    assert!(get(&m, "tierlog_tiering_round_duration_seconds_count") >= 1.0);
    assert!(get(&m, "tierlog_remote_put_duration_seconds_count") >= 1.0);
    assert!(
        get(&m, "tierlog_remote_put_duration_seconds_count")
            <= get(&m, "tierlog_remote_put_requests_total")
    );

    // A group commits offset 0: it lags by the whole log.
    let group = "m.readers";
    let committer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let commit = |offset: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap();
        committer.commit(&tpl, CommitMode::Sync).unwrap();
    };
    commit(0);
    let lag = format!(
        "tierlog_consumer_group_lag{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}}"
    );
    let m = scrape_until(&metrics, "the group's lag", |m| m.contains_key(&lag));
    assert_eq!(get(&m, &lag), end as f64);
    let before = m;

    // Consume it all (the tiered part from the bucket), commit the end.
    assert_eq!(read_all(&server.addr, group, topic, end), end);
    commit(end);
    let m = scrape_until(&metrics, "the group's lag down to 0", |m| {
        get(m, &lag) == 0.0
    });
    assert_eq!(
        get(
            &m,
            &format!(
                "tierlog_consumer_group_committed_offset{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}}"
            )
        ),
        end as f64
    );
    let remote_reads = "tierlog_read_duration_seconds_count{tier=\"remote\"}";
    let local_reads = "tierlog_read_duration_seconds_count{tier=\"local\"}";
    assert!(get(&m, remote_reads) > get(&before, remote_reads));
    assert!(get(&m, local_reads) > get(&before, local_reads));
    assert!(get(&m, "tierlog_remote_get_duration_seconds_count") >= 1.0);
    let misses = "tierlog_remote_cache_misses_total{cache=\"chunk\"}";
    let hits = "tierlog_remote_cache_hits_total{cache=\"chunk\"}";
    assert!(get(&m, misses) >= 1.0, "the first read loaded chunks");
    assert!(get(&m, "tierlog_remote_cache_bytes{cache=\"chunk\"}") > 0.0);

    // Read the tiered part again: served from the chunk cache.
    let first = m;
    assert_eq!(read_all(&server.addr, "m.again", topic, end), end);
    let m = scrape_until(&metrics, "the re-read's remote reads", |m| {
        get(m, remote_reads) > get(&first, remote_reads)
    });
    assert!(
        get(&m, hits) > get(&first, hits),
        "chunk cache hits grow on a re-read: {} then {}",
        get(&first, hits),
        get(&m, hits)
    );
    assert_eq!(get(&m, misses), get(&first, misses), "nothing loaded again");

    // A topic that does not exist: counted by API and Kafka error name.
    let unknown =
        "tierlog_request_errors_total{api=\"Metadata\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}";
    let before = get(&samples(&scrape(&metrics).1), unknown);
    // (librdkafka may report it as an error or as a topic with an error.)
    let _ = committer.fetch_metadata(Some("m.no-such-topic"), TIMEOUT);
    let m = scrape_until(&metrics, "the unknown topic's error", |m| {
        get(m, unknown) > before
    });
    assert_eq!(
        get(
            &m,
            "tierlog_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"}"
        ),
        0.0
    );
    // Every series the Grafana dashboard (localstack/) graphs is served.
    let (_, body) = scrape(&metrics);
    let served: std::collections::HashSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("localstack/grafana/dashboards/tierlog.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut used = Vec::new();
    let mut exprs = vec![json["templating"]["list"][0]["query"]
        .as_str()
        .unwrap()
        .to_string()];
    for panel in json["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("tierlog_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.push(name);
        }
    }
    assert!(used.len() >= 10, "{used:?}");
    for name in &used {
        assert!(
            served.contains(name.as_str()),
            "the dashboard graphs {name}, which /metrics does not serve"
        );
    }
    drop(committer);
    server.stop();
}
