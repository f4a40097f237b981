//! Operations (issue 18): the metrics endpoint's probes and status page,
//! and `serve`'s log formats — against the real `tierlog serve` binary,
//! real HTTP and a real librdkafka client committing a group's offsets.

// Tests drive real servers, clients and processes on their own threads
// and wall-clock timeouts; the one-owner rules of clippy.toml are for the
// library.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{err, Server};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_tierlog");

/// `GET path` over a fresh connection: (status line, headers, body).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: tierlog\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

/// The value of the sample `name` in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn status_page_shows_partitions_tiering_groups_and_lag_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tierlog.toml");
    std::fs::write(
        &config,
        "remote_log_manager_task_interval_ms = 100\nflush_check_interval_ms = 100\n",
    )
    .unwrap();
    let server = Server::start_with_metrics(&dir.path().join("data"), &config);
    let metrics = server.metrics.clone().unwrap();

    // Probes: up, and ready once serve said its Kafka listener is.
    let (status, _, body) = http_get(&metrics, "/healthz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (status, _, body) = http_get(&metrics, "/readyz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ready\n")
    );

    // A tiered topic of two partitions with small segments.
    let topic = "ops.orders";
    let o = server.run(
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            "2",
            "--config",
            "remote.storage.enable=true",
            "--config",
            "segment.bytes=2048",
        ],
        None,
    );
    assert!(o.status.success(), "{}", err(&o));
    let lines: String = (0..200)
        .map(|i| format!("order-{i:04}-{}\n", "x".repeat(40)))
        .collect();
    for partition in ["0", "1"] {
        let o = server.run(
            &[
                "produce",
                topic,
                "--partition",
                partition,
                "--batch-lines",
                "20",
            ],
            Some(&lines),
        );
        assert!(o.status.success(), "{}", err(&o));
    }

    // A group (client-supplied id, with characters HTML must escape)
    // commits offset 50 on partition 0 and 120 on partition 1.
    let group = "ops<g>&\"1\"";
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(50))
        .unwrap();
    offsets
        .add_partition_offset(topic, 1, Offset::Offset(120))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);

    // Wait until both partitions have tiered segments (the figures the
    // page draws its remote bars from).
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (_, _, text) = http_get(&metrics, "/metrics");
        let tiered = |p: u32| {
            sample(
                &text,
                &format!("tierlog_remote_log_bytes{{topic=\"{topic}\",partition=\"{p}\"}}"),
            )
            .unwrap_or(0.0)
        };
        if tiered(0) > 0.0 && tiered(1) > 0.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "nothing tiered:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let figure = |text: &str, name: &str, p: u32| {
        sample(
            text,
            &format!("{name}{{topic=\"{topic}\",partition=\"{p}\"}}"),
        )
        .unwrap_or_else(|| panic!("{name} missing:\n{text}")) as i64
    };
    assert_eq!(figure(&text, "tierlog_log_end_offset", 0), 200);
    assert!(figure(&text, "tierlog_local_log_bytes", 0) > 0);

    // The page between two scrapes that agree on the last tiered offsets
    // (the copy job may still be tiering): its lag is from those figures.
    let tiered = |text: &str| [0, 1].map(|p| figure(text, "tierlog_last_tiered_offset", p));
    let (last_tiered, (status, headers, html)) = loop {
        let before = tiered(&http_get(&metrics, "/metrics").2);
        let page = http_get(&metrics, "/");
        if tiered(&http_get(&metrics, "/metrics").2) == before {
            break (before, page);
        }
        assert!(Instant::now() < deadline, "tiering never settled");
    };
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/html; charset=utf-8"),
        "{headers}"
    );
    // Self-contained, refreshing, phone-sized, no script.
    assert!(html.contains("<meta http-equiv=\"refresh\""), "{html}");
    assert!(html.contains("name=\"viewport\""), "{html}");
    for banned in ["<script", "<link", "src=", "http://", "https://"] {
        assert!(!html.contains(banned), "{banned} in the page:\n{html}");
    }
    assert!(html.contains("Ready."), "{html}");
    // Both partitions, with their bytes as bars and their tiering lag
    // (offsets not yet tiered: the log end after the last tiered offset).
    for p in 0..2u32 {
        assert!(
            html.contains(&format!("<tr><td>{topic}</td><td class=\"num\">{p}</td>")),
            "partition {p} missing:\n{html}"
        );
        let lag = 200 - (last_tiered[p as usize] + 1);
        assert!(
            html.contains(&format!("{lag} records")),
            "lag {lag}:\n{html}"
        );
    }
    assert!(html.contains("class=\"remote\" style=\"width:"), "{html}");
    // The group, escaped, with its lag: 150 + 80.
    assert!(!html.contains("ops<g>"), "unescaped group id:\n{html}");
    assert!(
        html.contains(
            "<tr><th colspan=\"3\">ops&lt;g&gt;&amp;&quot;1&quot;</th><th class=\"num\">230</th>"
        ),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<td>{topic}</td><td class=\"num\">0</td><td class=\"num\">150</td><td class=\"num\">50</td><td class=\"num\">200</td>"
        )),
        "{html}"
    );
    assert!(html.contains("Recent errors"), "{html}");
    server.stop();
}

#[test]
fn readyz_says_what_is_missing_until_the_broker_listens() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = tierlog::EngineConfig::new(dir.path());
    let readiness = Arc::clone(&config.readiness);
    // An endpoint before the engine opens, as `tierlog serve` starts it.
    let endpoint = Arc::new(tierlog::metrics::Endpoint::new(Arc::clone(&readiness)));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let served = runtime.spawn(tierlog::metrics::serve(
        listener,
        Arc::clone(&endpoint),
        stop_rx,
    ));
    assert_eq!(http_get(&addr, "/healthz").0, "HTTP/1.1 200 OK");
    let (status, _, body) = http_get(&addr, "/readyz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 503 Service Unavailable", "catalog not open\n")
    );
    assert_eq!(
        http_get(&addr, "/metrics").0,
        "HTTP/1.1 503 Service Unavailable"
    );

    let engine = Arc::new(tierlog::Engine::open(config).unwrap());
    endpoint.attach(engine.endpoint_pages());
    let (status, _, body) = http_get(&addr, "/readyz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        (
            "HTTP/1.1 503 Service Unavailable",
            "Kafka listener not bound\n"
        )
    );
    let (status, _, page) = http_get(&addr, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        page.contains("Not ready: Kafka listener not bound."),
        "{page}"
    );
    assert!(page.contains("No topics."), "{page}");
    engine.readiness().set_listener_bound(true);
    assert_eq!(http_get(&addr, "/readyz").2, "ready\n");

    // Shutting down: not ready any more; the process still answers.
    engine.shutdown().unwrap();
    assert_eq!(http_get(&addr, "/readyz").2, "partitions not loaded\n");
    assert_eq!(http_get(&addr, "/healthz").2, "ok\n");
    assert_eq!(http_get(&addr, "/nope").0, "HTTP/1.1 404 Not Found");
    stop.send(true).unwrap();
    runtime.block_on(served).unwrap();
}

/// Start `serve` with `args` and the environment `env`; its stderr lines.
fn spawn_serve(
    data: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .env_remove("TIERLOG_CONFIG")
        .env_remove("TIERLOG_METRICS_LISTEN")
        .env("RUST_LOG", "info")
        .current_dir(data.parent().unwrap())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

fn terminate(mut child: std::process::Child) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status();
    assert!(child.wait().unwrap().success(), "clean exit on SIGTERM");
}

#[test]
fn a_busy_metrics_port_stops_serve_naming_the_setting_and_off_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--metrics-listen", &busy_addr])
        .env_remove("TIERLOG_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {busy_addr} (metrics_listen"))
            && stderr.contains("\"off\""),
        "{stderr}"
    );
    // Nothing was opened: the port is checked before the data directory.
    assert!(!dir.path().join("data").join("catalog.db").exists());

    // "off": the broker serves, no endpoint is bound.
    let data = dir.path().join("data");
    let (child, mut lines) = spawn_serve(&data, &[], &[("TIERLOG_METRICS_LISTEN", "off")]);
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("serve logs until ready").unwrap();
        seen.push(line.clone());
        if line.contains("Kafka listener ready") {
            break;
        }
    }
    assert!(
        !seen.iter().any(|l| l.contains("metrics endpoint ready")),
        "{seen:#?}"
    );
    std::thread::spawn(move || for _ in lines {});
    terminate(child);
}

#[test]
fn json_logs_carry_each_request_s_api_client_id_and_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, lines) = spawn_serve(
        &data,
        &["--log-format", "json", "--metrics-listen", "off"],
        &[("RUST_LOG", "info,tierlog::broker=debug")],
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("serve logs")
    };
    let ready: serde_json::Value = loop {
        let line = next();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "Kafka listener ready" {
            break v;
        }
    };
    assert_eq!(ready["level"], "INFO", "{ready}");
    let addr = ready["listen"].as_str().unwrap().to_string();
    // One request with a client id the test chose: its span's fields are
    // on the line the broker logs when it is handled.
    let o = Command::new(BIN)
        .args(["topic", "list", "--bootstrap", &addr])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    let handled: serde_json::Value = loop {
        assert!(Instant::now() < deadline, "no request line");
        let line = next();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "request handled" && v["span"]["api"] == "Metadata" {
            break v;
        }
    };
    assert_eq!(handled["level"], "DEBUG", "{handled}");
    let span = &handled["span"];
    assert_eq!(span["name"], "request", "{handled}");
    assert!(span["correlation_id"].is_i64(), "{handled}");
    assert_eq!(span["client_id"], "tierlog-cli", "{handled}");
    terminate(child);
}
