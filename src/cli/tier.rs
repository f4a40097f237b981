//! `tierlog tier status` and `tierlog tier check`.
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
//!
//! `check` runs offline, on the data directory of a stopped broker and its
//! bucket (`tierlog::check_tier`).

use std::process::ExitCode;

use tierlog::clock::{Clock, SystemClock};
use tierlog::metrics::human_bytes;
use tierlog::remote::admin::S3Admin;
use tierlog::remote::check::{CheckOptions, CheckReport};
use tierlog::remote::RemoteStore;
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
    /// Compare the catalog of a stopped broker with its bucket: missing,
    /// resized or (with --deep) corrupt committed objects, orphaned
    /// objects, rows stuck mid-transition, interrupted uploads. Exits 2
    /// when problems are left.
    Check {
        /// The data directory (its lock is taken: the broker must be stopped).
        #[arg(long, env = "TIERLOG_DATA_DIR")]
        data_dir: std::path::PathBuf,
        /// The remote tier, as given to `serve --remote`.
        #[arg(long, env = "TIERLOG_REMOTE")]
        remote: String,
        /// Do what the reaper would: finish stuck rows, delete orphaned
        /// objects and staging files, abort interrupted multipart uploads.
        /// Missing or corrupt committed objects are only reported.
        #[arg(long)]
        repair: bool,
        /// Read every committed object and compare its CRC32C (and each
        /// manifest) with the catalog.
        #[arg(long)]
        deep: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        TierCommand::Check {
            data_dir,
            remote,
            repair,
            deep,
            json,
        } => {
            let report = runtime.block_on(async {
                let store = RemoteStore::from_url(&remote)?;
                let admin = S3Admin::from_url(&remote).await?;
                let options = CheckOptions { repair, deep };
                tierlog::check_tier(
                    &data_dir,
                    &store,
                    admin.as_ref(),
                    options,
                    SystemClock.now_ms(),
                )
                .await
            })?;
            if json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| Error::internal(format!("cannot encode the report: {e}")))?;
                println!("{text}");
            } else {
                print_check(&report, &data_dir);
            }
            Ok(if report.remaining() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
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
        human_bytes(p.local_bytes),
        human_bytes(p.remote_bytes),
        format!(
            "{}/{}/{}/{}",
            s.copy_started, s.copy_finished, s.delete_started, s.delete_finished
        ),
        if p.remote_storage_enable {
            format!(
                "{} ({})",
                human_bytes(p.copy_lag_bytes),
                p.copy_lag_segments
            )
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

fn print_check(r: &CheckReport, data_dir: &std::path::Path) {
    println!(
        "tier check of {} against the catalog in {}: {} committed segments, {} objects",
        r.remote,
        data_dir.display(),
        r.committed_segments,
        r.objects
    );
    let section = |label: &str, items: &[String]| {
        println!("  {label:<44}{}", items.len());
        for i in items.iter().take(20) {
            println!("      {i}");
        }
        if items.len() > 20 {
            println!("      … and {} more (--json lists all)", items.len() - 20);
        }
    };
    section("missing objects of committed segments", &r.missing);
    section("size mismatches", &r.size_mismatches);
    if r.deep {
        section("CRC32C mismatches", &r.crc_mismatches);
        section("manifest mismatches", &r.manifest_mismatches);
    } else {
        println!("  {:<44}not checked (add --deep)", "CRC32C mismatches");
    }
    section("committed segments the catalog lacks", &r.unknown_committed);
    section("orphaned objects (no row)", &r.orphans);
    section("objects of DELETE_FINISHED rows", &r.deleted_leftovers);
    section("rows stuck in COPY_STARTED", &r.stuck_copies);
    section("rows stuck in DELETE_STARTED", &r.stuck_deletes);
    if r.remote.starts_with("file://") {
        section("staging files of interrupted puts", &r.staging_files);
    }
    match &r.multipart_not_checked {
        Some(why) => println!(
            "  {:<44}not checked: {why}",
            "multipart uploads in progress"
        ),
        None if r.remote.starts_with("s3://") => {
            section("multipart uploads in progress", &r.multipart_uploads)
        }
        None => {}
    }
    println!(
        "  {:<44}{}",
        "not judged (outside the catalog's topics)", r.not_judged
    );
    if r.repair {
        println!("repaired {}:", r.repaired.len());
        for what in &r.repaired {
            println!("      {what}");
        }
        for what in &r.repair_failures {
            println!("  repair failed: {what}");
        }
    }
    let left = r.remaining();
    if left == 0 {
        println!(
            "{}",
            if r.problems() == 0 {
                "no problems found"
            } else {
                "every problem found was repaired"
            }
        );
        return;
    }
    println!("{left} problems left");
    if r.unrepairable() > 0 {
        println!("  missing or corrupt committed objects and committed segments the catalog lacks are never repaired (the data may exist nowhere else): reads of those offsets fail until the objects are put back from a copy");
    }
    if !r.repair && r.repairable() > 0 {
        println!(
            "  {} of them --repair would fix (what the reaper does)",
            r.repairable()
        );
    }
}
