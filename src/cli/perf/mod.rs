//! `tierlog perf …`: benchmarks that measure tierlog and a baseline in the
//! same run and print the ratio last. One file per benchmark; the helpers
//! they share are here.

mod append;
mod catchup;
mod compact;
mod compact_tiered;
mod store_profile;
mod tier;

use std::process::ExitCode;
use std::time::Duration;

use tierlog::format::{BatchBuilder, Record};
use tierlog::Error;

#[derive(clap::Subcommand)]
pub enum PerfCommand {
    /// Append throughput of the engine against plain sequential write(2) of
    /// the same batches to a file in the same directory, interleaved in
    /// 1 MiB slices so both see the same machine (no fsync in either).
    Append(append::AppendArgs),
    /// Tiering throughput against plain uploads of the same bytes to the same
    /// store, and write requests per GiB.
    Tier(tier::TierArgs),
    /// Catch-up read throughput of tiered data through the engine's remote
    /// path (cold caches, local copies dropped) against parallel ranged
    /// GETs of the same objects with the same chunk size, first-byte
    /// latency, and GET requests per GiB.
    Catchup(catchup::CatchupArgs),
    /// Log cleaner throughput on a generated compacted log (`--updates`
    /// records over `--keys` keys) against a plain read and write of the
    /// same bytes (fsynced), the size left, and the peak RSS. With
    /// `--remote URL` the log is tiered first and cleaned in the store,
    /// against ranged GETs and PUTs of the same bytes, with the cleaner's
    /// requests per GiB.
    Compact(compact::CompactArgs),
}

pub fn run(cmd: PerfCommand) -> Result<ExitCode, Error> {
    match cmd {
        PerfCommand::Append(args) => append::append(args),
        PerfCommand::Tier(args) => tier::tier(args),
        PerfCommand::Catchup(args) => catchup::catchup(args),
        PerfCommand::Compact(args) => compact::compact(args),
    }
}

struct Run {
    bytes: u64,
    records: u64,
    elapsed: Duration,
}

impl Run {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// A pool of distinct batches reused cyclically (appends only patch the
/// base offset, which is outside the CRC).
fn batch_pool(record_size: usize, records_per_batch: usize) -> Result<Vec<Vec<u8>>, Error> {
    let mut pool = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for b in 0..64 {
        let mut builder = BatchBuilder::new();
        for r in 0..records_per_batch {
            let mut value = vec![0u8; record_size];
            for chunk in value.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let bytes = seed.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            let key = format!("key-{b}-{r}").into_bytes();
            builder.push(Record::new(
                Some(key),
                Some(value),
                1_700_000_000_000 + (b * 1000 + r) as i64,
            ));
        }
        pool.push(
            builder
                .build()
                .map_err(|e| Error::invalid(format!("cannot build benchmark batch: {e}")))?,
        );
    }
    Ok(pool)
}

/// Delete every object under `prefix` (all of them with `None`).
async fn delete_prefix(
    store: &tierlog::remote::RemoteStore,
    prefix: Option<&object_store::path::Path>,
) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    if let Ok(objects) = store.store.list(prefix).try_collect::<Vec<_>>().await {
        for o in objects {
            let _ = store.store.delete(&o.location).await;
        }
    }
}

/// `remote` with a fresh per-run prefix (before any `?query`).
fn run_url(remote: &str, run_prefix: &str) -> String {
    let (location, query) = remote.split_once('?').map_or((remote, ""), |(l, q)| (l, q));
    format!(
        "{}/{run_prefix}{}{query}",
        location.trim_end_matches('/'),
        if query.is_empty() { "" } else { "?" }
    )
}

fn runtime_error(e: std::io::Error) -> Error {
    Error::new(
        tierlog::ErrorKind::Internal,
        format!("cannot start a runtime: {e}"),
    )
}
