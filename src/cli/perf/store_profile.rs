//! `--store-latency-ms` and `--store-stream-mbps`, flattened into every
//! `tierlog perf` command: the store each benchmark uses (the engine's and
//! the raw baseline's alike) answers like S3 (see `remote::profile`).

use std::sync::Arc;

use tierlog::remote::profile::StoreProfile;
use tierlog::remote::RemoteStore;
use tierlog::Error;

#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct StoreProfileArgs {
    /// S3 profile: wait this long before each store request's first byte
    /// (real S3: about 20–50 ms); 0 is off. Applies to the engine's store
    /// and the raw baseline's alike.
    #[arg(long, default_value_t = 0)]
    pub store_latency_ms: u64,
    /// S3 profile: each GET or PUT body streams at most this many MB/s
    /// (10^6 bytes; real S3: about 50–100 per connection); 0 is unlimited.
    #[arg(long, default_value_t = 0.0)]
    pub store_stream_mbps: f64,
}

impl StoreProfileArgs {
    pub fn profile(&self) -> StoreProfile {
        StoreProfile::new(self.store_latency_ms, self.store_stream_mbps)
    }

    /// The store for `url`, wrapped in the profile.
    pub fn store(&self, url: &str) -> Result<RemoteStore, Error> {
        let store = RemoteStore::from_url(url)?;
        Ok(RemoteStore::new(
            self.profile().wrap(Arc::clone(&store.store)),
            store.url(),
        ))
    }

    /// How the profile is shown in a benchmark's first line.
    pub fn describe(&self) -> String {
        if self.profile().is_off() {
            "no store profile".to_string()
        } else {
            format!(
                "store profile {} ms to first byte, {} MB/s per request",
                self.store_latency_ms, self.store_stream_mbps
            )
        }
    }
}
