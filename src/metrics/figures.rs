//! The figures read when `/metrics` is scraped ([`ScrapeFigures`]: per
//! partition offsets and sizes, the log cleaner's totals and state,
//! tiering lag, consumer-group lag) and their exposition, a
//! `prometheus-client` collector encoded after the engine's registry.
//!
//! Owns the names, help texts and labels of these families. Must never
//! read them itself: the engine fills the figures in.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::GroupLag;

/// One partition's figures at scrape time.
#[derive(Debug, Clone)]
pub struct PartitionFigures {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: i64,
    pub local_log_start_offset: i64,
    pub log_end_offset: i64,
    /// -1 when nothing is tiered.
    pub last_tiered_offset: i64,
    /// Bytes of the local segments.
    pub local_bytes: u64,
    /// Bytes of the `.log` objects of its `COPY_FINISHED` segments.
    pub remote_bytes: u64,
    /// The topic has `remote.storage.enable=true` and a remote tier is
    /// configured.
    pub remote_storage: bool,
    /// The log cleaner's state, for a partition of a compacted topic.
    pub cleaning: Option<CleaningFigures>,
}

impl PartitionFigures {
    /// Offsets not yet in the remote tier (the active segment's included:
    /// only sealed segments are tiered); `None` when the partition is not
    /// tiered at all.
    pub fn tiering_lag(&self) -> Option<i64> {
        let tiered_end = (self.last_tiered_offset + 1).max(self.log_start_offset);
        self.remote_storage
            .then(|| (self.log_end_offset - tiered_end).max(0))
    }
}

/// A compacted partition's cleaning state at scrape time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleaningFigures {
    /// Dirty bytes ÷ (clean + dirty) over its cleanable section.
    pub dirty_ratio: f64,
    /// Where the dirty section starts.
    pub first_dirty_offset: i64,
    /// When its last cleaning pass ended (engine clock, ms); -1: never.
    pub last_clean_ms: i64,
}

/// The log cleaner's totals since the engine started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanerFigures {
    pub passes: u64,
    pub failures: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests of tiered compaction to the remote tier.
    pub remote_get_requests: u64,
    pub remote_put_requests: u64,
}

/// A tiered partition's copy lag (Kafka's `RemoteCopyLagBytes` and
/// `RemoteCopyLagSegments`) at scrape time: sealed, non-empty local
/// segments above its last tiered offset.
#[derive(Debug, Clone, PartialEq)]
pub struct TieringLag {
    pub topic: String,
    pub partition: u32,
    pub bytes: u64,
    pub segments: u64,
    /// How long the oldest of them has been sealed (0 when none).
    pub seconds: f64,
}

/// Everything read when `/metrics` is scraped, beside the registry's own
/// metrics.
#[derive(Debug, Clone, Default)]
pub struct ScrapeFigures {
    pub cleaner: CleanerFigures,
    /// Online partitions.
    pub partitions: Vec<PartitionFigures>,
    /// Partitions of topics with remote storage on.
    pub tiering_lag: Vec<TieringLag>,
    /// Consumer groups' committed offsets against the log end offsets
    /// (the status page's figures).
    pub groups: Vec<GroupLag>,
}

/// A label value with `\`, `"` and newlines escaped (the encoder writes
/// values as given; topic and group names come from clients).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn partition_labels(topic: &str, partition: u32) -> [(&'static str, String); 2] {
    [
        ("topic", label(topic)),
        ("partition", partition.to_string()),
    ]
}

/// A gauge family: its descriptor, then one sample per item.
fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Reads one figure of a partition.
type Figure = fn(&PartitionFigures) -> i64;

impl ScrapeFigures {
    /// One figure of each compacted partition, with its labels.
    fn cleaning<'a, V: 'a>(
        &'a self,
        value: fn(&CleaningFigures) -> V,
    ) -> impl Iterator<Item = ([(&'static str, String); 2], V)> + 'a {
        self.partitions.iter().filter_map(move |p| {
            let c = p.cleaning.as_ref()?;
            Some((partition_labels(&p.topic, p.partition), value(c)))
        })
    }
}

impl Collector for ScrapeFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cleaner = &self.cleaner;
        let cleaner_counters: [(&str, &str, u64); 6] = [
            (
                "tierlog_log_cleaner_passes",
                "log cleaner passes finished (one partition each)",
                cleaner.passes,
            ),
            (
                "tierlog_log_cleaner_failures",
                "log cleaner passes that failed (retried next run)",
                cleaner.failures,
            ),
            (
                "tierlog_log_cleaner_read_bytes",
                "segment bytes the log cleaner read (key map and rewrite)",
                cleaner.bytes_read,
            ),
            (
                "tierlog_log_cleaner_write_bytes",
                "segment bytes the log cleaner wrote",
                cleaner.bytes_written,
            ),
            (
                "tierlog_log_cleaner_remote_get_requests",
                "GET requests tiered compaction made to the remote tier",
                cleaner.remote_get_requests,
            ),
            (
                "tierlog_log_cleaner_remote_put_requests",
                "PUT requests tiered compaction made to the remote tier",
                cleaner.remote_put_requests,
            ),
        ];
        for (name, help, v) in cleaner_counters {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(v).encode(family)?;
        }
        let figures: [(&str, &str, Figure); 6] = [
            (
                "tierlog_log_start_offset",
                "first offset of the log, remote tier included",
                |p| p.log_start_offset,
            ),
            (
                "tierlog_local_log_start_offset",
                "first offset on local disk",
                |p| p.local_log_start_offset,
            ),
            (
                "tierlog_log_end_offset",
                "offset the next record gets",
                |p| p.log_end_offset,
            ),
            (
                "tierlog_last_tiered_offset",
                "last offset in the remote tier (-1: none)",
                |p| p.last_tiered_offset,
            ),
            (
                "tierlog_local_log_bytes",
                "bytes of the local segments",
                |p| p.local_bytes as i64,
            ),
            (
                "tierlog_remote_log_bytes",
                "bytes of the tiered segments' .log objects",
                |p| p.remote_bytes as i64,
            ),
        ];
        for (name, help, value) in figures {
            let samples = self
                .partitions
                .iter()
                .map(|p| (partition_labels(&p.topic, p.partition), value(p)));
            gauges(&mut encoder, name, help, samples)?;
        }
        gauges(
            &mut encoder,
            "tierlog_log_cleaner_dirty_ratio",
            "compacted partitions: dirty bytes / (clean + dirty) over the cleanable section",
            self.cleaning(|c| c.dirty_ratio),
        )?;
        gauges(
            &mut encoder,
            "tierlog_log_cleaner_first_dirty_offset",
            "compacted partitions: where the uncleaned section starts",
            self.cleaning(|c| c.first_dirty_offset),
        )?;
        gauges(
            &mut encoder,
            "tierlog_log_cleaner_last_clean_timestamp_ms",
            "compacted partitions: when the last cleaning pass ended (-1: never)",
            self.cleaning(|c| c.last_clean_ms),
        )?;
        let lag = |f: fn(&TieringLag) -> u64| {
            self.tiering_lag
                .iter()
                .map(move |l| (partition_labels(&l.topic, l.partition), f(l)))
        };
        gauges(
            &mut encoder,
            "tierlog_tiering_lag_bytes",
            "tiered topics: bytes of sealed local segments not yet in the remote tier",
            lag(|l| l.bytes),
        )?;
        gauges(
            &mut encoder,
            "tierlog_tiering_lag_segments",
            "tiered topics: sealed local segments not yet in the remote tier",
            lag(|l| l.segments),
        )?;
        gauges(
            &mut encoder,
            "tierlog_tiering_lag_seconds",
            "tiered topics: how long the oldest sealed segment not yet in the remote tier has waited (0: none)",
            self.tiering_lag
                .iter()
                .map(|l| (partition_labels(&l.topic, l.partition), l.seconds)),
        )?;
        let committed = || {
            self.groups.iter().flat_map(|g| {
                g.partitions.iter().map(move |p| {
                    let labels = [
                        ("group", label(&g.group)),
                        ("topic", label(&p.topic)),
                        ("partition", p.partition.to_string()),
                    ];
                    (labels, p)
                })
            })
        };
        gauges(
            &mut encoder,
            "tierlog_consumer_group_lag",
            "records a consumer group has not consumed: log end offset (the high watermark) minus its committed offset",
            committed().filter_map(|(l, p)| Some((l, p.lag()?))),
        )?;
        gauges(
            &mut encoder,
            "tierlog_consumer_group_committed_offset",
            "a consumer group's committed offset",
            committed().map(|(l, p)| (l, p.committed)),
        )?;
        Ok(())
    }
}
