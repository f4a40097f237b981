//! Client quotas in force (Kafka's `ClientQuotaManager` and
//! `ClientRequestQuotaManager`, KIP-13, KIP-55, KIP-124): which quota
//! applies to a user and client id (the eight levels of KIP-55), the rate
//! each quota entity has used over `quota.window.num` windows of
//! `quota.window.size.seconds` (Kafka's `Rate` over a `SampledStat`), and
//! the throttle time once it is over (Kafka's `QuotaUtils.throttleTime`).
//!
//! Owns the in-memory quota table (loaded from the catalog at start and
//! after every AlterClientQuotas) and the sampled rates. Sans-io at its
//! core: time comes in as an argument. The hot path takes no broker-wide
//! lock: a request with no quota of a kind configured costs one atomic
//! load; a connection caches what applies to it until the table changes
//! (an epoch counter), and then locks only its quota entity's rate.
//! Must never disconnect or refuse a client: it only says how long to
//! throttle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::quotas::{ClientQuota, EntityName, QuotaEntity, QuotaKey};
use crate::sync::lock;

/// Kafka's `quota.window.num` default.
pub const DEFAULT_WINDOW_NUM: u32 = 11;
/// Kafka's `quota.window.size.seconds` default.
pub const DEFAULT_WINDOW_SIZE_SECONDS: u32 = 1;

/// Shards of the rate table (entities hash to one; a record locks one).
const SHARDS: usize = 16;

/// Rates kept per shard before idle ones are dropped (Kafka expires a
/// quota sensor after an hour without use; here one unused for the whole
/// sampled window and held by no connection goes once a shard is this
/// full).
const SHARD_SOFT_LIMIT: usize = 256;

/// The sampling windows (`quota.window.num`, `quota.window.size.seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindows {
    pub samples: u32,
    pub window_ms: i64,
}

impl QuotaWindows {
    pub fn new(samples: u32, window_seconds: u32) -> QuotaWindows {
        QuotaWindows {
            samples: samples.max(1),
            window_ms: i64::from(window_seconds.max(1)) * 1000,
        }
    }
}

impl Default for QuotaWindows {
    fn default() -> Self {
        QuotaWindows::new(DEFAULT_WINDOW_NUM, DEFAULT_WINDOW_SIZE_SECONDS)
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: i64,
    total: f64,
}

/// Kafka's `Rate` over a `SampledTotal`: totals in `samples` windows of
/// `window_ms`, the oldest reused once the newest is complete; a window
/// older than all of them together is reset before it is read.
#[derive(Debug, Clone, Default)]
pub struct SampledRate {
    samples: Vec<Sample>,
    current: usize,
    last_record_ms: i64,
}

impl SampledRate {
    /// Add `value` at `now_ms`.
    pub fn record(&mut self, w: QuotaWindows, value: f64, now_ms: i64) {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start_ms: now_ms,
                total: 0.0,
            });
            self.current = 0;
        }
        if now_ms - self.samples[self.current].start_ms >= w.window_ms {
            self.current = (self.current + 1) % w.samples as usize;
            let fresh = Sample {
                start_ms: now_ms,
                total: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].total += value;
        self.last_record_ms = now_ms;
    }

    /// Samples older than every window together start again at `now_ms`.
    fn purge(&mut self, w: QuotaWindows, now_ms: i64) {
        let expire = i64::from(w.samples) * w.window_ms;
        for s in &mut self.samples {
            if now_ms - s.start_ms >= expire {
                *s = Sample {
                    start_ms: now_ms,
                    total: 0.0,
                };
            }
        }
    }

    /// The span the rate is measured over (Kafka's `Rate.windowSize`): from
    /// the oldest sample to now, but at least `samples - 1` whole windows,
    /// so a burst at the start is not measured over a few milliseconds.
    pub fn window_size_ms(&mut self, w: QuotaWindows, now_ms: i64) -> i64 {
        self.purge(w, now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms - oldest;
        let full = elapsed / w.window_ms;
        let min_full = i64::from(w.samples) - 1;
        if full < min_full {
            elapsed += (min_full - full) * w.window_ms;
        }
        elapsed.max(1)
    }

    /// The rate per second at `now_ms`.
    pub fn measure(&mut self, w: QuotaWindows, now_ms: i64) -> f64 {
        let size = self.window_size_ms(w, now_ms);
        let total: f64 = self.samples.iter().map(|s| s.total).sum();
        total / (size as f64 / 1000.0)
    }
}

/// How long a client over `bound` with a measured `rate` is throttled
/// (Kafka's `QuotaUtils.throttleTime`): long enough that the rate over
/// the window falls back to the bound. 0 when within it.
pub fn throttle_time_ms(rate: f64, bound: f64, window_size_ms: i64) -> u64 {
    if rate <= bound || bound <= 0.0 {
        return 0;
    }
    let t = (rate - bound) / bound * window_size_ms as f64;
    t.round().clamp(0.0, i32::MAX as f64) as u64
}

/// The sensor a user and client id are measured under for one quota
/// key, and the quota that applies: Kafka's `DefaultQuotaCallback`. The
/// first of the eight levels of KIP-55 with a value for `key` decides;
/// the tags say whose usage is pooled (a user quota is shared by all its
/// client ids, a default quota is per name).
pub fn resolve(
    table: &QuotaTable,
    key: QuotaKey,
    user: &str,
    client_id: &str,
) -> Option<(f64, SensorTags)> {
    use EntityName::{Default, Name};
    let name = |n: &str| Some(Name(n.to_string()));
    let both = || SensorTags {
        user: user.to_string(),
        client_id: client_id.to_string(),
    };
    let user_only = || SensorTags {
        user: user.to_string(),
        client_id: String::new(),
    };
    let client_only = || SensorTags {
        user: String::new(),
        client_id: client_id.to_string(),
    };
    type Tags<'a> = &'a dyn Fn() -> SensorTags;
    let levels: [(Option<EntityName>, Option<EntityName>, Tags); 8] = [
        (name(user), name(client_id), &both),
        (name(user), Some(Default), &both),
        (name(user), None, &user_only),
        (Some(Default), name(client_id), &both),
        (Some(Default), Some(Default), &both),
        (Some(Default), None, &user_only),
        (None, name(client_id), &client_only),
        (None, Some(Default), &client_only),
    ];
    for (u, c, tags) in levels {
        let entity = QuotaEntity {
            user: u,
            client_id: c,
        };
        if let Some(v) = table.get(&entity).and_then(|values| values[key.index()]) {
            return Some((v, tags()));
        }
    }
    None
}

/// Whose usage a rate counts (Kafka's quota metric tags): `""` for a part
/// that is pooled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorTags {
    pub user: String,
    pub client_id: String,
}

/// Quota values by entity, one slot per [`QuotaKey`].
pub type QuotaTable = HashMap<QuotaEntity, [Option<f64>; 3]>;

/// One shard of the rates, by key and tags.
type SensorShard = HashMap<(QuotaKey, SensorTags), Arc<Sensor>>;

/// One entity's rate for one key.
#[derive(Debug, Default)]
pub struct Sensor {
    rate: Mutex<SampledRate>,
}

/// What applies to one connection for one key, until the table changes.
#[derive(Clone)]
struct Applied {
    bound: f64,
    sensor: Arc<Sensor>,
}

/// A connection's cache of the quotas that apply to it.
#[derive(Default)]
pub struct ConnectionQuotaCache {
    epoch: u64,
    user: String,
    client_id: String,
    applied: [Option<Applied>; 3],
    filled: bool,
}

/// The broker's client quotas: the table and the rates.
pub struct ClientQuotas {
    windows: QuotaWindows,
    /// Bumped on every table change: connections resolve again.
    epoch: AtomicU64,
    /// Whether any entity has a value for the key (the fast path).
    enabled: [AtomicBool; 3],
    table: RwLock<Arc<QuotaTable>>,
    sensors: Vec<Mutex<SensorShard>>,
    /// Time zero of the rates (monotonic).
    origin: tokio::time::Instant,
}

impl ClientQuotas {
    pub fn new(windows: QuotaWindows) -> ClientQuotas {
        ClientQuotas {
            windows,
            epoch: AtomicU64::new(1),
            enabled: Default::default(),
            table: RwLock::new(Arc::new(QuotaTable::new())),
            sensors: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            origin: crate::clock::monotonic_now(),
        }
    }

    /// Milliseconds on the rates' clock.
    pub fn now_ms(&self) -> i64 {
        crate::clock::monotonic_now()
            .saturating_duration_since(self.origin)
            .as_millis() as i64
    }

    /// Replace the table with `quotas` (the catalog's, after a change).
    pub fn load(&self, quotas: &[ClientQuota]) {
        let mut table = QuotaTable::new();
        for q in quotas {
            table.entry(q.entity.clone()).or_default()[q.key.index()] = Some(q.value);
        }
        for k in QuotaKey::ALL {
            let any = table.values().any(|v| v[k.index()].is_some());
            self.enabled[k.index()].store(any, Ordering::SeqCst);
        }
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether any quota exists at all (without one a request costs
    /// nothing here).
    pub fn any_enabled(&self) -> bool {
        self.enabled.iter().any(|e| e.load(Ordering::Relaxed))
    }

    /// Whether any quota of `key` exists.
    pub fn enabled(&self, key: QuotaKey) -> bool {
        self.enabled[key.index()].load(Ordering::Relaxed)
    }

    fn sensor(&self, key: QuotaKey, tags: SensorTags) -> Arc<Sensor> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (key, &tags).hash(&mut h);
        let shard = &self.sensors[(h.finish() as usize) % SHARDS];
        let mut map = lock(shard);
        if map.len() >= SHARD_SOFT_LIMIT && !map.contains_key(&(key, tags.clone())) {
            let now = self.now_ms();
            let span = i64::from(self.windows.samples) * self.windows.window_ms;
            map.retain(|_, s| {
                Arc::strong_count(s) > 1 || now - lock(&s.rate).last_record_ms < span
            });
        }
        Arc::clone(map.entry((key, tags)).or_default())
    }

    /// Record `value` of `key` for `user` and `client_id` at `now_ms`
    /// through a connection's `cache`; the throttle time in ms (0 within
    /// quota or without one).
    pub fn record(
        &self,
        cache: &mut ConnectionQuotaCache,
        key: QuotaKey,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: i64,
    ) -> u64 {
        if !self.enabled(key) {
            return 0;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        if !cache.filled
            || cache.epoch != epoch
            || cache.user != user
            || cache.client_id != client_id
        {
            let table = Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()));
            for k in QuotaKey::ALL {
                cache.applied[k.index()] =
                    resolve(&table, k, user, client_id).map(|(bound, tags)| Applied {
                        bound,
                        sensor: self.sensor(k, tags),
                    });
            }
            cache.epoch = epoch;
            cache.user = user.to_string();
            cache.client_id = client_id.to_string();
            cache.filled = true;
        }
        let Some(applied) = &cache.applied[key.index()] else {
            return 0;
        };
        let mut rate = lock(&applied.sensor.rate);
        rate.record(self.windows, value, now_ms);
        let measured = rate.measure(self.windows, now_ms);
        let size = rate.window_size_ms(self.windows, now_ms);
        let t = throttle_time_ms(measured, applied.bound, size);
        if key == QuotaKey::RequestPercentage {
            // Kafka bounds the request-time throttle by one window
            // (`ClientRequestQuotaManager.maxThrottleTimeMs`).
            t.min(self.windows.window_ms as u64)
        } else {
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(samples: u32) -> QuotaWindows {
        QuotaWindows::new(samples, 1)
    }

    #[test]
    fn throttle_time_is_kafkas() {
        // QuotaUtilsTest: 100 observed over a quota of 50, 3 windows of 1 s.
        assert_eq!(throttle_time_ms(100.0, 50.0, 2000), 2000);
        assert_eq!(throttle_time_ms(18.2, 18.2, 2000), 0);
        assert_eq!(throttle_time_ms(16.5, 20.4, 2000), 0);
    }

    #[test]
    fn the_rate_counts_at_least_samples_minus_one_windows() {
        let mut r = SampledRate::default();
        // 10 windows of 1 s: 1000 bytes at t=0 is 1000 over at least 10 s.
        r.record(w(11), 1000.0, 0);
        assert_eq!(r.window_size_ms(w(11), 0), 10_000);
        assert!((r.measure(w(11), 0) - 100.0).abs() < 1e-9);
        // 15 s later every sample is older than 11 s: purged, rate 0.
        assert_eq!(r.measure(w(11), 15_000), 0.0);
    }

    #[test]
    fn a_steady_rate_at_the_bound_is_not_throttled_and_twice_it_is() {
        let windows = w(3);
        let mut r = SampledRate::default();
        // 100 bytes every 100 ms: 1000 bytes/s.
        for i in 0..100 {
            r.record(windows, 100.0, i * 100);
        }
        let now = 99 * 100;
        let rate = r.measure(windows, now);
        assert!((rate - 1000.0).abs() / 1000.0 < 0.2, "rate {rate}");
        let size = r.window_size_ms(windows, now);
        assert_eq!(throttle_time_ms(rate, 1000.0 * 1.3, size), 0);
        // Against half of it: throttled for about the measured window
        // again (twice the bytes need twice the time).
        let t = throttle_time_ms(rate, 500.0, size);
        let size = size as u64;
        assert!(
            (size * 8 / 10..=size * 13 / 10).contains(&t),
            "throttle {t} (window {size})"
        );
    }

    fn table(entries: &[(Option<EntityName>, Option<EntityName>, f64)]) -> QuotaTable {
        let mut t = QuotaTable::new();
        for (u, c, v) in entries {
            t.entry(QuotaEntity {
                user: u.clone(),
                client_id: c.clone(),
            })
            .or_default()[QuotaKey::ProducerByteRate.index()] = Some(*v);
        }
        t
    }

    /// KIP-55's order: each level wins over every one below it, and the
    /// tags pool a user quota across client ids and a client-id quota
    /// across users.
    #[test]
    fn the_eight_levels_of_kip_55_in_order() {
        use EntityName::{Default, Name};
        let n = |s: &str| Some(Name(s.to_string()));
        let levels = [
            (n("alice"), n("app"), 1.0),
            (n("alice"), Some(Default), 2.0),
            (n("alice"), None, 3.0),
            (Some(Default), n("app"), 4.0),
            (Some(Default), Some(Default), 5.0),
            (Some(Default), None, 6.0),
            (None, n("app"), 7.0),
            (None, Some(Default), 8.0),
        ];
        let tags = |u: &str, c: &str| SensorTags {
            user: u.into(),
            client_id: c.into(),
        };
        let expected_tags = [
            tags("alice", "app"),
            tags("alice", "app"),
            tags("alice", ""),
            tags("alice", "app"),
            tags("alice", "app"),
            tags("alice", ""),
            tags("", "app"),
            tags("", "app"),
        ];
        // Remove levels from the top: the next one applies.
        for i in 0..levels.len() {
            let t = table(&levels[i..]);
            let (v, got) = resolve(&t, QuotaKey::ProducerByteRate, "alice", "app").unwrap();
            assert_eq!(v, levels[i].2, "level {}", i + 1);
            assert_eq!(got, expected_tags[i], "level {}", i + 1);
            // Another key has no quota at all.
            assert!(resolve(&t, QuotaKey::ConsumerByteRate, "alice", "app").is_none());
        }
        assert!(resolve(&table(&[]), QuotaKey::ProducerByteRate, "alice", "app").is_none());
        // Another user's quota does not apply to alice.
        let t = table(&[(n("bob"), None, 9.0)]);
        assert!(resolve(&t, QuotaKey::ProducerByteRate, "alice", "app").is_none());
    }

    #[test]
    fn a_user_quota_is_shared_by_its_client_ids_and_a_change_applies_at_once() {
        let quotas = ClientQuotas::new(w(3));
        let alice = QuotaEntity {
            user: Some(EntityName::Name("alice".into())),
            client_id: None,
        };
        quotas.load(&[ClientQuota {
            entity: alice.clone(),
            key: QuotaKey::ProducerByteRate,
            value: 1000.0,
        }]);
        let (mut a, mut b) = (
            ConnectionQuotaCache::default(),
            ConnectionQuotaCache::default(),
        );
        let k = QuotaKey::ProducerByteRate;
        // 1500 bytes from one client id, 1500 from another: 3000 over the
        // minimum 2 s window is 1500/s, over 1000/s together.
        assert_eq!(quotas.record(&mut a, k, "alice", "one", 1500.0, 0), 0);
        let t = quotas.record(&mut b, k, "alice", "two", 1500.0, 0);
        assert_eq!(t, 1000, "(1500 - 1000) / 1000 * 2000 ms");
        // Bob has no quota; nor does the fetch key.
        assert_eq!(quotas.record(&mut b, k, "bob", "two", 1e9, 0), 0);
        assert_eq!(
            quotas.record(&mut a, QuotaKey::ConsumerByteRate, "alice", "one", 1e9, 0),
            0
        );
        // Raised: the cached connection sees it on its next request.
        quotas.load(&[ClientQuota {
            entity: alice,
            key: QuotaKey::ProducerByteRate,
            value: 1e6,
        }]);
        assert_eq!(quotas.record(&mut a, k, "alice", "one", 1.0, 1), 0);
        quotas.load(&[]);
        assert!(!quotas.enabled(k));
    }
}
