//! `tierlog restore`: rebuild a data directory from the remote tier
//! (segments and the newest catalog snapshot), with a progress bar on a
//! terminal, log lines otherwise, and a summary at the end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use tierlog::clock::{Clock, SystemClock};
use tierlog::remote::restore::{RestoreProgress, RestoreReport};
use tierlog::remote::RemoteStore;
use tierlog::{restore_with, Error, RestoreOptions};

/// Flags of `tierlog restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// Data directory to rebuild (created if missing; must hold no topic).
    #[arg(long, env = "TIERLOG_DATA_DIR")]
    data_dir: PathBuf,
    /// The remote tier to read: file://DIR or s3://BUCKET[/PREFIX], as
    /// given to `serve --remote`.
    #[arg(long, env = "TIERLOG_REMOTE")]
    remote: String,
    /// Read back every object restored and check its CRC32C against its
    /// manifest first; any mismatch fails the restore, nothing written.
    #[arg(long)]
    verify: bool,
}

/// Shows progress: a bar when stderr is a terminal, else log lines.
struct Progress {
    bar: Option<ProgressBar>,
    /// The partition count, for the bar's second phase after verifying.
    partitions: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_message("reading the bucket");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            partitions: AtomicU64::new(0),
        }
    }

    fn step(&self, step: RestoreProgress<'_>, verify: bool) {
        let Some(bar) = &self.bar else {
            match step {
                RestoreProgress::Planned {
                    partitions,
                    segments,
                    bytes,
                } => tracing::info!(
                    partitions,
                    segments,
                    bytes,
                    verify,
                    "bucket read; restoring"
                ),
                RestoreProgress::Verified { key, bytes } => {
                    tracing::info!(%key, bytes, "verified")
                }
                RestoreProgress::PartitionCreated { partition } => {
                    tracing::info!(%partition, "partition created")
                }
            }
            return;
        };
        match step {
            RestoreProgress::Planned {
                partitions, bytes, ..
            } => {
                bar.disable_steady_tick();
                if verify {
                    bar.set_style(style("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})"));
                    bar.set_length(bytes);
                    bar.set_message("verifying");
                } else {
                    bar.set_style(style("{msg} [{bar:40}] {pos}/{len}"));
                    bar.set_length(partitions as u64);
                    bar.set_message("creating partitions");
                }
                self.partitions.store(partitions as u64, Ordering::Relaxed);
            }
            RestoreProgress::Verified { bytes, .. } => bar.inc(bytes),
            RestoreProgress::PartitionCreated { .. } => {
                if bar.message() != "creating partitions" {
                    bar.set_style(style("{msg} [{bar:40}] {pos}/{len}"));
                    bar.set_message("creating partitions");
                    bar.set_position(0);
                    bar.set_length(self.partitions.load(Ordering::Relaxed));
                }
                bar.inc(1)
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants above; a bad one falls back to the default.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

pub fn run(args: RestoreArgs) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start runtime: {e}")))?;
    let progress = Progress::new();
    let verify = args.verify;
    let sink = |step: RestoreProgress<'_>| progress.step(step, verify);
    let result = runtime.block_on(async {
        let store = RemoteStore::from_url(&args.remote)?;
        restore_with(
            &args.data_dir,
            &store,
            SystemClock.now_ms(),
            RestoreOptions {
                verify,
                progress: Some(&sink),
            },
        )
        .await
    });
    progress.finish();
    let report = result?;
    summary(&report, &args.data_dir);
    Ok(ExitCode::SUCCESS)
}

/// What was restored and what was not, on stdout (partitions, totals) and
/// stderr (what an operator must look at).
fn summary(report: &RestoreReport, data_dir: &std::path::Path) {
    for kept in &report.set_aside {
        eprintln!(
            "kept {}: a directory was where a restored partition goes; inspect it, then remove it",
            kept.display()
        );
    }
    for why in &report.skipped {
        eprintln!("skipped {why}");
    }
    for (partition, (first, next)) in &report.partitions {
        if first == next {
            println!("{partition}: no segment in the bucket; new records start at {next}");
        } else {
            println!(
                "{partition}: offsets {first}..{next} in the bucket; new records start at {next}"
            );
        }
    }
    match &report.snapshot {
        Some(key) => println!(
            "catalog snapshot: {key} (cluster id {})",
            report.cluster_id.as_deref().unwrap_or("-")
        ),
        None => println!(
            "catalog snapshot: none usable in the bucket; restored the tiered segments only (no \
             committed offsets, groups, or topics without remote storage)"
        ),
    }
    println!(
        "restored {} topics, {} partitions, {} segments ({} bytes), {} groups ({} committed \
         offsets), {} user credentials, {} ACLs, {} client quotas into {}{}; {} skipped",
        report.topics.len(),
        report.partitions.len(),
        report.segments,
        report.bytes,
        report.groups,
        report.committed_offsets,
        report.users,
        report.acls,
        report.client_quotas,
        data_dir.display(),
        if report.verified_objects > 0 {
            format!(", {} objects verified", report.verified_objects)
        } else {
            String::new()
        },
        report.skipped.len()
    );
}
