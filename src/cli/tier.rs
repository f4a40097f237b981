//! `tierlog tier status`.
//!
//! `status` asks a running broker, over its HTTP endpoint (the
//! `metrics_listen` address that serves `/metrics`), for
//! `GET /v1/tier/status`: the Kafka protocol has no request for a
//! partition's tiering state (DescribeLogDirs carries sizes only, and a
//! private API key would be one no Kafka tool knows), while the endpoint
//! is already there, loopback by default, read-only, and speaks JSON to
//! scripts without a Kafka client — as Redpanda's admin API answers
//! `rpk cluster storage` on port 9644. The document's format is on
//! `tierlog::TierStatus`.

use std::process::ExitCode;

use tierlog::{Error, ErrorKind, PartitionTierStatus, TierStatus};

/// The broker's HTTP endpoint by default (Redpanda's admin port).
const DEFAULT_ENDPOINT: &str = "127.0.0.1:9644";

#[derive(clap::Subcommand)]
pub enum TierCommand {
    /// Each partition's offsets in both tiers, bytes, segments by
    /// lifecycle state, tiering lag, last upload error and cleaner state,
    /// from a running broker.
    Status {
        /// Only this topic.
        topic: Option<String>,
        /// Print the JSON document (stable; fields are only added).
        #[arg(long)]
        json: bool,
        /// The broker's metrics endpoint (`metrics_listen`, HOST:PORT),
        /// which serves GET /v1/tier/status.
        #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_ENDPOINT)]
        metrics: String,
    },
}

pub fn run(cmd: TierCommand) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start runtime: {e}")))?;
    match cmd {
        TierCommand::Status {
            topic,
            json,
            metrics,
        } => runtime.block_on(status(topic.as_deref(), json, &metrics)),
    }
}

async fn status(topic: Option<&str>, json: bool, endpoint: &str) -> Result<ExitCode, Error> {
    let target = match topic {
        Some(t) => format!("{}?topic={t}", tierlog::STATUS_PATH),
        None => tierlog::STATUS_PATH.to_string(),
    };
    let body = super::scrape::get(endpoint, &target).await.map_err(|e| {
        if e.kind() == ErrorKind::Unavailable {
            Error::new(
                ErrorKind::Unavailable,
                format!("{e} (is the broker serving with --metrics-listen {endpoint}?)"),
            )
        } else {
            e
        }
    })?;
    let status: TierStatus = serde_json::from_str(&body).map_err(|e| {
        Error::new(
            ErrorKind::Invalid,
            format!("the broker's tier status is not the expected JSON: {e}"),
        )
    })?;
    if json {
        println!("{}", body.trim_end());
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

/// `12.3 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn offset(o: Option<i64>) -> String {
    o.map_or_else(|| "-".into(), |o| o.to_string())
}

fn age(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
}

fn row(p: &PartitionTierStatus) -> Vec<String> {
    let s = &p.segments;
    vec![
        p.topic.clone(),
        p.partition.to_string(),
        offset(p.log_start_offset),
        offset(p.local_log_start_offset),
        offset(p.last_tiered_offset),
        offset(p.log_end_offset),
        bytes(p.local_bytes),
        bytes(p.remote_bytes),
        format!(
            "{}/{}/{}/{}",
            s.copy_started, s.copy_finished, s.delete_started, s.delete_finished
        ),
        if p.remote_storage_enable {
            format!("{} ({})", bytes(p.copy_lag_bytes), p.copy_lag_segments)
        } else {
            "off".into()
        },
        age(p.oldest_untiered_age_ms),
        match (&p.offline, &p.last_upload_error) {
            (Some(_), _) => "offline".into(),
            (None, Some(e)) if e.consecutive_failures > 0 => {
                format!("failing ({}x)", e.consecutive_failures)
            }
            (None, Some(_)) => "ok (failed before)".into(),
            (None, None) => "ok".into(),
        },
    ]
}

fn print_status(status: &TierStatus) {
    println!(
        "remote: {}",
        status.remote.as_deref().unwrap_or("none configured")
    );
    let header: Vec<String> = [
        "TOPIC",
        "PARTITION",
        "LOG-START",
        "LOCAL-START",
        "LAST-TIERED",
        "LOG-END",
        "LOCAL",
        "REMOTE",
        "CS/CF/DS/DF",
        "COPY-LAG",
        "LAG-AGE",
        "UPLOADS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = vec![header];
    rows.extend(status.partitions.iter().map(row));
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!("CS/CF/DS/DF: catalog rows COPY_STARTED/COPY_FINISHED/DELETE_STARTED/DELETE_FINISHED; COPY-LAG: sealed segments not yet tiered (bytes, count); LAG-AGE: since the oldest of them was sealed");
    for p in &status.partitions {
        let name = format!("{}-{}", p.topic, p.partition);
        if let Some(why) = &p.offline {
            println!("{name}: offline: {why}");
        }
        if let Some(e) = &p.last_upload_error {
            let ago = age(Some(status.now_ms.saturating_sub(e.at_ms)));
            let next = e
                .next_attempt_ms
                .map(|n| {
                    format!(
                        ", next attempt in {}",
                        age(Some((n - status.now_ms).max(0)))
                    )
                })
                .unwrap_or_default();
            println!(
                "{name}: last upload error {ago} ago (segment at offset {}, {} failures in a row{next}): {}",
                e.base_offset, e.consecutive_failures, e.error
            );
        }
        if let Some(c) = &p.cleaner {
            let last = if c.last_clean_ms < 0 {
                "never".to_string()
            } else {
                format!(
                    "{} ago",
                    age(Some(status.now_ms.saturating_sub(c.last_clean_ms)))
                )
            };
            println!(
                "{name}: log cleaner: dirty ratio {:.3}, first dirty offset {}, last cleaned {last}",
                c.dirty_ratio, c.first_dirty_offset
            );
        }
    }
}
