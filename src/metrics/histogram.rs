//! [`Histogram`]: a latency histogram in seconds whose observations are
//! relaxed atomic adds, encoded by `prometheus-client` like its own
//! histograms (`_bucket{le=…}`, `_sum`, `_count`), and [`Series`]: a fixed
//! set of metrics of one family told apart by one label (`tier`, `cache`).
//!
//! Owns the bucket bounds. Must never lock on the hot path: the crate's
//! own `Histogram` takes a write lock per observation, which is why this
//! one exists.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Bucket upper bounds in seconds for request and object-store latencies:
/// 0.5 ms (a page-cache append) to 10 s (a slow bucket), about ×2.5 apart.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket upper bounds in seconds for whole tiering rounds: 10 ms to 10 min.
pub const ROUND_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One count per bound, then the +Inf bucket (not cumulative).
    counts: Box<[AtomicU64]>,
    /// Sum of the observations in nanoseconds.
    sum_nanos: AtomicU64,
}

/// Durations observed into fixed buckets; cheap to clone (clones share
/// the counts).
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    /// A histogram with upper bounds `bounds` (seconds, ascending) and +Inf.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram(Arc::new(Inner {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }

    /// Count one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        let at = self.0.bounds.partition_point(|&b| b < seconds);
        self.0.counts[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Count the time since `started` (from `clock::monotonic_now`).
    pub fn observe_since(&self, started: tokio::time::Instant) {
        self.observe(started.elapsed());
    }

    /// Observations so far per bucket (not cumulative), each with its
    /// upper bound in seconds, `f64::INFINITY` last: what a benchmark
    /// subtracts from a later reading to get one window's distribution.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // `_count` is the buckets' total, so the two always agree even
        // while observations land during the scrape.
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX)) // the encoder writes +Inf for it
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Metrics of one family, one per value of the label `label`, all
/// exposed (a fixed set: no lock, no map).
#[derive(Debug, Clone)]
pub struct Series<M> {
    label: &'static str,
    members: Vec<(&'static str, M)>,
}

impl<M> Series<M> {
    pub fn new(label: &'static str, members: Vec<(&'static str, M)>) -> Self {
        Series { label, members }
    }
}

impl<M: TypedMetric> TypedMetric for Series<M> {
    const TYPE: MetricType = M::TYPE;
}

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Series<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, metric) in &self.members {
            let labels = [(self.label, *value)];
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on the bound: le="0.001"
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        assert_eq!(h.count(), 4);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t_seconds", "test", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &registry).unwrap();
        for line in [
            "t_seconds_bucket{le=\"0.001\"} 2\n",
            "t_seconds_bucket{le=\"0.01\"} 3\n",
            "t_seconds_bucket{le=\"+Inf\"} 4\n",
            "t_seconds_count 4\n",
            "t_seconds_sum 3.0065\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn buckets_are_per_bucket_counts_with_their_bounds() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_secs(3));
        assert_eq!(h.buckets(), vec![(0.001, 2), (0.01, 0), (f64::INFINITY, 1)]);
    }
}
