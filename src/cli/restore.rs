//! `tierlog restore`: rebuild a data directory from the remote tier.

use std::path::PathBuf;
use std::process::ExitCode;

use tierlog::clock::{Clock, SystemClock};
use tierlog::remote::RemoteStore;
use tierlog::restore;
use tierlog::Error;

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
}

pub fn run(args: RestoreArgs) -> Result<ExitCode, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start runtime: {e}")))?;
    let report = runtime.block_on(async {
        let store = RemoteStore::from_url(&args.remote)?;
        restore(&args.data_dir, &store, SystemClock.now_ms()).await
    })?;
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
        println!("{partition}: offsets {first}..{next} in the bucket; new records start at {next}");
    }
    println!(
        "restored {} topics, {} partitions, {} segments into {} ({} manifests skipped)",
        report.topics.len(),
        report.partitions.len(),
        report.segments,
        args.data_dir.display(),
        report.skipped.len()
    );
    Ok(ExitCode::SUCCESS)
}
