//! The CLI's Kafka commands (`topic`, `produce`, `consume`) against a real
//! `tierlog serve` process.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::server::{err, out, Server};

#[test]
fn topic_admin_produce_and_consume_over_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let o = server.run(
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = server.run(&["topic", "create", "orders"], None);
    assert!(!o.status.success());
    assert!(err(&o).contains("TopicAlreadyExists"), "{}", err(&o));
    let o = server.run(
        &["topic", "create", "bad", "--config", "segment.bytes=5"],
        None,
    );
    assert!(!o.status.success());
    assert!(
        err(&o).contains("InvalidConfig") && err(&o).contains("segment.bytes"),
        "{}",
        err(&o)
    );
    let o = server.run(
        &["topic", "create", "r3", "--replication-factor", "3"],
        None,
    );
    assert!(err(&o).contains("InvalidReplicationFactor"), "{}", err(&o));

    let o = server.run(&["topic", "list"], None);
    assert_eq!(out(&o), "orders\n");

    let input: String = (0..30)
        .map(|i| format!("user-{}:event-{i}\n", i % 5))
        .collect();
    let o = server.run(&["produce", "orders", "--key-separator", ":"], Some(&input));
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("produced 30 records"), "{}", err(&o));

    let o = server.run(
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "30",
            "--print-key",
            "--key-separator",
            ":",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let mut got: Vec<String> = out(&o).lines().map(String::from).collect();
    // Per key, order is kept (one key, one partition).
    for k in 0..5 {
        let key = format!("user-{k}:");
        let events: Vec<&String> = got.iter().filter(|l| l.starts_with(&key)).collect();
        let expected: Vec<String> = (0..30)
            .filter(|i| i % 5 == k)
            .map(|i| format!("user-{k}:event-{i}"))
            .collect();
        assert_eq!(
            events.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected
        );
    }
    got.sort();
    let mut want: Vec<String> = input.lines().map(String::from).collect();
    want.sort();
    assert_eq!(got, want);

    // One partition from an offset: user-0's partition (Kafka's partitioner)
    // holds its 6 events in order; offset 1 is the second.
    let p = tierlog::client::partition_for_key(b"user-0", 3).to_string();
    let o = server.run(
        &[
            "consume",
            "orders",
            "--partition",
            &p,
            "--offset",
            "1",
            "--max-messages",
            "1",
            "--print-key",
            "--key-separator",
            ":",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let second = out(&o);
    assert!(
        second.starts_with("user-") && second.lines().count() == 1,
        "{second}"
    );

    let o = server.run(
        &["topic", "alter", "orders", "--config", "segment.bytes=5"],
        None,
    );
    assert!(
        !o.status.success() && err(&o).contains("InvalidConfig"),
        "{}",
        err(&o)
    );
    let o = server.run(
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "segment.bytes=1048576",
            "--delete-config",
            "retention.ms",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = server.run(&["topic", "describe", "orders"], None);
    let text = out(&o);
    assert!(text.contains("partitions: 3"), "{text}");
    assert!(
        text.contains("segment.bytes=1048576  (set on topic)"),
        "{text}"
    );
    assert!(text.contains("retention.ms=604800000\n"), "{text}");
    let ends: i64 = text
        .lines()
        .filter_map(|l| l.split("log end offset ").nth(1))
        .map(|n| n.trim().parse::<i64>().unwrap())
        .sum();
    assert_eq!(ends, 30);

    // DeleteRecords from the CLI: the log start moves; past the end fails.
    let o = server.run(
        &[
            "topic",
            "delete-records",
            "orders",
            "--partition",
            "0",
            "--offset",
            "-1",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("log start offset (low watermark) now"),
        "{}",
        out(&o)
    );
    let o = server.run(&["topic", "describe", "orders"], None);
    let p0 = out(&o)
        .lines()
        .find(|l| l.contains("partition 0 "))
        .unwrap()
        .to_string();
    let numbers: Vec<&str> = p0.split_whitespace().collect();
    assert_eq!(
        numbers[6], numbers[10],
        "start = end after deleting all: {p0}"
    );
    let o = server.run(
        &[
            "topic",
            "delete-records",
            "orders",
            "--partition",
            "0",
            "--offset",
            "999",
        ],
        None,
    );
    assert!(
        !o.status.success() && err(&o).contains("OffsetOutOfRange"),
        "{}",
        err(&o)
    );

    // Growing the topic; shrinking is refused, as in Kafka.
    let o = server.run(&["topic", "alter", "orders", "--partitions", "5"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("now has 5 partitions"), "{}", out(&o));
    let o = server.run(&["topic", "describe", "orders"], None);
    assert!(out(&o).contains("partitions: 5"), "{}", out(&o));
    let o = server.run(&["topic", "alter", "orders", "--partitions", "2"], None);
    assert!(
        !o.status.success() && err(&o).contains("InvalidPartitions"),
        "{}",
        err(&o)
    );

    let o = server.run(&["topic", "delete", "orders"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&server.run(&["topic", "list"], None)), "");
    let o = server.run(&["consume", "orders", "--max-messages", "1"], None);
    assert!(
        !o.status.success() && err(&o).contains("UnknownTopicOrPartition"),
        "{}",
        err(&o)
    );
    server.stop();
}

#[test]
fn creating_a_topic_again_from_the_cli_keeps_its_records_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let o = server.run(&["topic", "create", "victim", "--partitions", "1"], None);
    assert!(o.status.success(), "{}", err(&o));
    let o = server.run(&["produce", "victim"], Some("a1\na2\na3\n"));
    assert!(o.status.success(), "{}", err(&o));
    let o = server.run(&["topic", "create", "victim", "--partitions", "1"], None);
    assert!(
        !o.status.success() && err(&o).contains("TopicAlreadyExists"),
        "{}",
        err(&o)
    );
    server.stop();
    let server = Server::start(dir.path());
    let o = server.run(
        &[
            "consume",
            "victim",
            "--from-beginning",
            "--max-messages",
            "3",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "a1\na2\na3\n");
    server.stop();
}

#[test]
fn many_more_partitions_than_open_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // 600 partitions, each with a segment, under a limit of 128 open files
    // (every partition kept its .log open before: creation failed with
    // "Too many open files" near the limit).
    let server = Server::start_with_open_file_limit(dir.path(), 128);
    let o = server.run(&["topic", "create", "wide", "--partitions", "600"], None);
    assert!(o.status.success(), "{}", err(&o));
    let input: String = (0..1200).map(|i| format!("k{i}:v{i}\n")).collect();
    let o = server.run(&["produce", "wide", "--key-separator", ":"], Some(&input));
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("produced 1200 records"), "{}", err(&o));
    server.stop();
    // After a restart under the same limit every record reads back.
    let server = Server::start_with_open_file_limit(dir.path(), 128);
    let o = server.run(
        &[
            "consume",
            "wide",
            "--from-beginning",
            "--max-messages",
            "1200",
            "--print-key",
            "--key-separator",
            ":",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let mut got: Vec<String> = out(&o).lines().map(String::from).collect();
    got.sort();
    let mut want: Vec<String> = input.lines().map(String::from).collect();
    want.sort();
    assert_eq!(got, want);
    server.stop();
}

#[test]
fn a_failing_disk_takes_only_its_partition_offline_and_a_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // Files may not grow past 1024 blocks (512 KiB with dash's 512-byte
    // blocks): writes past that fail with EFBIG (the signal the kernel
    // would send instead is ignored), as a full or failing disk does.
    let server = Server::start_after_shell(dir.path(), "trap '' XFSZ; ulimit -f 1024");
    for (topic, segment) in [("big", "4194304"), ("small", "65536")] {
        let o = server.run(
            &[
                "topic",
                "create",
                topic,
                "--config",
                &format!("segment.bytes={segment}"),
            ],
            None,
        );
        assert!(o.status.success(), "{}", err(&o));
    }
    let value = "x".repeat(1000);
    let mut acknowledged = Vec::new();
    let mut failure = None;
    for chunk in 0..40 {
        let lines: Vec<String> = (0..50).map(|i| format!("{chunk}-{i}-{value}")).collect();
        let o = server.run(&["produce", "big"], Some(&(lines.join("\n") + "\n")));
        if o.status.success() {
            acknowledged.extend(lines);
        } else {
            failure = Some(err(&o));
            break;
        }
    }
    let failure = failure.expect("the size limit was reached");
    assert!(failure.contains("KafkaStorageError"), "{failure}");
    assert!(
        failure.contains("big-0") && failure.contains(".log"),
        "the error names the file: {failure}"
    );
    assert!(!acknowledged.is_empty());
    // The other partition keeps serving, past the same limit per file.
    let small: String = (0..1000).map(|i| format!("s{i}-{value}\n")).collect();
    let o = server.run(&["produce", "small", "--batch-lines", "20"], Some(&small));
    assert!(o.status.success(), "{}", err(&o));
    server.stop();

    // Without the limit, a restart recovers the partition with everything
    // that was acknowledged.
    let server = Server::start(dir.path());
    let o = server.run(
        &[
            "consume",
            "big",
            "--from-beginning",
            "--max-messages",
            &acknowledged.len().to_string(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let got: Vec<String> = out(&o).lines().map(String::from).collect();
    assert_eq!(got, acknowledged);
    let o = server.run(&["produce", "big"], Some("after\n"));
    assert!(o.status.success(), "{}", err(&o));
    server.stop();
}

/// `GET /metrics` on `addr`, the body.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn describe_shows_a_compacted_topics_dirty_ratio_from_the_metrics_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tierlog.toml");
    // The log-cleaner job looks again soon after finding nothing due.
    std::fs::write(&config, "log_cleaner_backoff_ms = 100\n").unwrap();
    let server = Server::start_with_metrics(&dir.path().join("data"), &config);
    let metrics = server.metrics.clone().unwrap();
    for args in [
        &[
            "topic",
            "create",
            "table",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=1024",
        ][..],
        &["topic", "create", "plain"],
    ] {
        let o = server.run(args, None);
        assert!(o.status.success(), "{}", err(&o));
    }
    // 200 updates of 10 keys, one batch each: many small segments.
    let lines: String = (0..200)
        .map(|i| format!("k{}:value-{i}\n", i % 10))
        .collect();
    let o = server.run(
        &[
            "produce",
            "table",
            "--key-separator",
            ":",
            "--batch-lines",
            "1",
        ],
        Some(&lines),
    );
    assert!(o.status.success(), "{}", err(&o));

    // Without --metrics: where to find it.
    let text = out(&server.run(&["topic", "describe", "table"], None));
    assert!(text.contains("cleanup.policy=compact"), "{text}");
    assert!(
        text.contains("log cleaner: add --metrics HOST:PORT"),
        "{text}"
    );
    let text = out(&server.run(&["topic", "describe", "plain", "--metrics", &metrics], None));
    assert!(!text.contains("log cleaner"), "not compacted: {text}");

    // The flush job fsyncs the sealed segments, then the log-cleaner job
    // cleans them.
    let describe = || {
        let o = server.run(&["topic", "describe", "table", "--metrics", &metrics], None);
        assert!(o.status.success(), "{}", err(&o));
        let text = out(&o);
        let line = text
            .lines()
            .find(|l| l.starts_with("  partition 0  dirty ratio "))
            .unwrap_or_else(|| panic!("no cleaning line in\n{text}"))
            .to_string();
        let fields: Vec<&str> = line.split_whitespace().collect();
        // partition 0 dirty ratio R first dirty offset N last cleaned (ms) T
        (
            fields[4].parse::<f64>().unwrap(),
            fields[8].parse::<i64>().unwrap(),
            fields[12].to_string(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ratio, first_dirty, last) = loop {
        let d = describe();
        if d.2 != "never" {
            break d;
        }
        assert!(Instant::now() < deadline, "never cleaned: {d:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    assert!(first_dirty > 0 && first_dirty <= 200, "{first_dirty}");
    assert!(last.parse::<i64>().unwrap() > 0, "{last}");
    // What the endpoint says (nothing more is due: the rest is the active
    // segment).
    let body = scrape(&metrics);
    let sample = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{{topic=\"table\",partition=\"0\"}} ")))
            .unwrap_or_else(|| panic!("{name} missing from\n{body}"))
            .to_string()
    };
    assert_eq!(
        sample("tierlog_log_cleaner_first_dirty_offset"),
        first_dirty.to_string()
    );
    assert_eq!(sample("tierlog_log_cleaner_last_clean_timestamp_ms"), last);
    assert!(
        (sample("tierlog_log_cleaner_dirty_ratio")
            .parse::<f64>()
            .unwrap()
            - ratio)
            .abs()
            < 1e-3
    );
    server.stop();
}

/// The catalog's rows of `topic`'s partition 0 read straight from its
/// SQLite file (read-only, beside the running broker): per state, the
/// count, and for COPY_FINISHED the bytes and the last offset.
fn catalog_rows(data: &std::path::Path, topic: &str) -> Vec<(String, i64, i64, i64)> {
    let db = rusqlite::Connection::open_with_flags(
        data.join("catalog.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut q = db
        .prepare(
            "SELECT state, COUNT(*), SUM(log_size + index_size + timeindex_size), MAX(last_offset) \
             FROM remote_segments WHERE topic = ?1 AND partition = 0 GROUP BY state ORDER BY state",
        )
        .unwrap();
    q.query_map([topic], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn tier_status_json_matches_the_catalog_while_tiering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("tierlog.toml");
    std::fs::write(
        &config,
        "flush_check_interval_ms = 20\nremote_log_manager_task_interval_ms = 100\nlog_cleaner_backoff_ms = 100\n",
    )
    .unwrap();
    let server = Server::start_with_metrics(&data, &config);
    let metrics = server.metrics.clone().unwrap();
    for args in [
        &[
            "topic",
            "create",
            "tiered",
            "--config",
            "remote.storage.enable=true",
            "--config",
            "segment.bytes=1024",
        ][..],
        &[
            "topic",
            "create",
            "table",
            "--config",
            "cleanup.policy=compact",
        ],
    ] {
        let o = server.run(args, None);
        assert!(o.status.success(), "{}", err(&o));
    }
    let status = |topic: Option<&str>| -> tierlog::TierStatus {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tierlog"));
        cmd.args(["tier", "status", "--json", "--metrics", &metrics]);
        cmd.args(topic);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)))
    };
    let lines: String = (0..300).map(|i| format!("k{i}:value-{i}\n")).collect();
    let producer = {
        let (addr, lines) = (server.addr.clone(), lines.clone());
        std::thread::spawn(move || {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tierlog"))
                .args([
                    "produce",
                    "tiered",
                    "--key-separator",
                    ":",
                    "--batch-lines",
                    "1",
                ])
                .args(["--bootstrap", &addr])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(lines.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        })
    };
    // While records arrive and segments are tiered: whenever the catalog
    // did not move across a status call, the status says what it says.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut compared = 0;
    let mut done = false;
    while !done {
        assert!(Instant::now() < deadline, "tiering did not catch up");
        let before = catalog_rows(&data, "tiered");
        let s = status(Some("tiered"));
        let after = catalog_rows(&data, "tiered");
        assert_eq!(s.format_version, 1);
        assert_eq!(s.partitions.len(), 1, "one topic asked for");
        let p = &s.partitions[0];
        assert_eq!((p.topic.as_str(), p.partition), ("tiered", 0));
        assert!(p.remote_storage_enable && p.offline.is_none());
        if before == after {
            compared += 1;
            let count = |state: &str| {
                after
                    .iter()
                    .find(|r| r.0 == state)
                    .map_or(0, |r| r.1 as usize)
            };
            assert_eq!(p.segments.copy_started, count("COPY_STARTED"), "{p:?}");
            assert_eq!(p.segments.copy_finished, count("COPY_FINISHED"), "{p:?}");
            assert_eq!(p.segments.delete_started, count("DELETE_STARTED"));
            assert_eq!(p.segments.delete_finished, count("DELETE_FINISHED"));
            let finished = after.iter().find(|r| r.0 == "COPY_FINISHED");
            assert_eq!(p.remote_bytes, finished.map_or(0, |r| r.2 as u64), "{p:?}");
            assert_eq!(p.last_tiered_offset, finished.map(|r| r.3), "{p:?}");
        }
        let (start, local_start, end) = (
            p.log_start_offset.unwrap(),
            p.local_log_start_offset.unwrap(),
            p.log_end_offset.unwrap(),
        );
        assert!(start <= local_start && local_start <= end, "{p:?}");
        assert!(p.last_tiered_offset.is_none_or(|t| t < end), "{p:?}");
        assert!(p.local_bytes > 0 || end == 0, "{p:?}");
        // Lag is sealed data above the last tiered offset.
        assert_eq!(p.copy_lag_segments == 0, p.oldest_untiered_age_ms.is_none());
        assert_eq!(p.copy_lag_segments == 0, p.copy_lag_bytes == 0);
        assert!(p.last_upload_error.is_none(), "{p:?}");
        done = end == 300 && p.copy_lag_segments == 0 && p.segments.copy_finished > 3;
        if !done {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(compared > 0);
    producer.join().unwrap();

    // Every topic, and the compacted one's cleaner state.
    let all = status(None);
    let names: Vec<&str> = all.partitions.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(names, ["table", "tiered"]);
    let table = &all.partitions[0];
    assert!(!table.remote_storage_enable && table.copy_lag_bytes == 0);
    let cleaner = table.cleaner.expect("a compacted topic has cleaner state");
    assert_eq!(cleaner.last_clean_ms, -1, "nothing cleaned yet");
    assert!(all.partitions[1].cleaner.is_none());

    // The table a person reads.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tierlog"))
        .args(["tier", "status", "--metrics", &metrics])
        .output()
        .unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{}", err(&o));
    let header = text.lines().nth(1).unwrap();
    assert!(
        header.starts_with("TOPIC") && header.contains("LAST-TIERED"),
        "{text}"
    );
    let tiered = text.lines().find(|l| l.starts_with("tiered ")).unwrap();
    // Aligned: each column starts where its header does.
    let at = header.find("LOG-END").unwrap();
    assert!(tiered[at..].starts_with("300 "), "{text}");
    assert!(text.contains("table-0: log cleaner: dirty ratio"), "{text}");
    // An unknown topic is an error naming it.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tierlog"))
        .args(["tier", "status", "nope", "--metrics", &metrics])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(err(&o).contains("nope"), "{}", err(&o));
    server.stop();
}

/// DescribeProducers through the CLI: an idempotent librdkafka producer's
/// id, epoch and last sequence, per partition.
#[test]
fn describe_producers_shows_an_idempotent_producers_state() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let o = server.run(&["topic", "create", "idem", "--partitions", "2"], None);
    assert!(o.status.success(), "{}", err(&o));
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for i in 0..3 {
        producer
            .send(
                BaseRecord::to("idem")
                    .partition(1)
                    .key("k")
                    .payload(&format!("v{i}")),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        // One batch per record: sequences 0, 1, 2.
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    let o = server.run(
        &["transactions", "describe-producers", "--topic", "idem"],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "one producer, on partition 1 only: {text}");
    assert_eq!(rows[0][0], "1", "{text}");
    assert!(
        rows[0][1].parse::<i64>().unwrap() >= 0,
        "a producer id: {text}"
    );
    assert_eq!(
        (rows[0][2], rows[0][3]),
        ("0", "2"),
        "epoch 0, last sequence 2: {text}"
    );
    let o = server.run(
        &[
            "transactions",
            "describe-producers",
            "--topic",
            "idem",
            "--partition",
            "0",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 1, "header only: {}", out(&o));
    let o = server.run(
        &[
            "transactions",
            "describe-producers",
            "--topic",
            "idem",
            "--partition",
            "9",
        ],
        None,
    );
    assert!(
        !o.status.success() && err(&o).contains("UnknownTopicOrPartition"),
        "{}",
        err(&o)
    );
    drop(producer);
    server.stop();
}

/// ListTransactions and DescribeTransactions through the CLI: a
/// librdkafka transactional producer's id, state and partitions.
#[test]
fn transactions_list_and_describe_show_a_transactional_producer() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let o = server.run(&["topic", "create", "tx", "--partitions", "2"], None);
    assert!(o.status.success(), "{}", err(&o));
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("transactional.id", "cli-txn")
        .set("transaction.timeout.ms", "45000")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::<(), str>::to("tx").partition(1).payload("v"))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(timeout).unwrap();

    // Open: Ongoing with its partition.
    let o = server.run(&["transactions", "describe", "cli-txn"], None);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[1], row[2], row[3]),
        ("0", "Ongoing", "45000"),
        "{text}"
    );
    assert_eq!(row[5], "tx-1", "{text}");

    producer.commit_transaction(timeout).unwrap();
    let o = server.run(&["transactions", "list"], None);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(
        (rows[0][0], rows[0][2]),
        ("cli-txn", "CompleteCommit"),
        "{text}"
    );
    let o = server.run(&["transactions", "list", "--state", "Ongoing"], None);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 1, "header only: {}", out(&o));
    let o = server.run(&["transactions", "list", "--state", "Bogus"], None);
    assert!(
        !o.status.success() && err(&o).contains("Bogus"),
        "{}",
        err(&o)
    );
    let o = server.run(&["transactions", "describe", "nope"], None);
    assert!(
        !o.status.success() && err(&o).contains("TransactionalIdNotFound"),
        "{}",
        err(&o)
    );
    drop(producer);
    server.stop();
}
