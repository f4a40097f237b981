//! What the engine shows an operator: the Prometheus exposition, the
//! status page's figures, readiness, and the metrics endpoint as a service
//! of its executor. Read-only: nothing here changes a partition.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Engine;
use crate::metrics;

impl Engine {
    /// What `/readyz` reads (shared with the broker, which marks its
    /// listener bound).
    pub fn readiness(&self) -> &Arc<metrics::Readiness> {
        &self.config.readiness
    }

    /// Every online partition's figures, by topic then partition, and the
    /// offline ones with their reason.
    fn partition_figures(
        &self,
    ) -> (
        Vec<metrics::PartitionFigures>,
        Vec<metrics::OfflinePartition>,
    ) {
        let mut cleaning: HashMap<(String, u32), metrics::CleaningFigures> = self
            .log_cleaner_partitions()
            .into_iter()
            .map(|p| {
                let figures = metrics::CleaningFigures {
                    dirty_ratio: p.cleanable.dirty_ratio,
                    first_dirty_offset: p.cleanable.first_dirty_offset,
                    last_clean_ms: p.checkpoint.last_clean_ms,
                };
                ((p.topic, p.partition), figures)
            })
            .collect();
        let (mut partitions, mut offline) = (Vec::new(), Vec::new());
        for t in self.topics() {
            let remote_storage = self.remote.is_some()
                && t.effective
                    .get(crate::config::REMOTE_STORAGE_ENABLE)
                    .map(String::as_str)
                    == Some("true");
            for partition in 0..t.partitions {
                let figures = self.offsets(&t.name, partition).and_then(|o| {
                    let (local_bytes, remote_bytes) =
                        self.logs.partition(&t.name, partition)?.sizes()?;
                    Ok((o, local_bytes, remote_bytes))
                });
                match figures {
                    Ok((o, local_bytes, remote_bytes)) => {
                        partitions.push(metrics::PartitionFigures {
                            topic: t.name.clone(),
                            partition,
                            log_start_offset: o.log_start_offset,
                            local_log_start_offset: o.local_log_start_offset,
                            log_end_offset: o.log_end_offset,
                            last_tiered_offset: o.last_tiered_offset.unwrap_or(-1),
                            local_bytes,
                            remote_bytes,
                            remote_storage,
                            cleaning: cleaning.remove(&(t.name.clone(), partition)),
                        })
                    }
                    Err(e) => offline.push(metrics::OfflinePartition {
                        topic: t.name.clone(),
                        partition,
                        // The partition's own error, without the
                        // "partition is offline" a client's answer gets.
                        reason: self
                            .logs
                            .partition(&t.name, partition)
                            .ok()
                            .and_then(|p| p.offline_reason())
                            .unwrap_or_else(|| e.to_string()),
                    }),
                }
            }
        }
        (partitions, offline)
    }

    /// The exposition of this engine (OpenMetrics text): its registry,
    /// and the figures read now: every partition's offsets and sizes (an
    /// offline partition is left out), the log cleaner's totals, tiering
    /// lag and consumer-group lag.
    pub fn render_metrics(&self) -> String {
        let (partitions, _) = self.partition_figures();
        let totals = &self.cleaner.totals;
        let cleaner = metrics::CleanerFigures {
            passes: totals.passes.load(Ordering::Relaxed),
            failures: totals.failures.load(Ordering::Relaxed),
            bytes_read: totals.bytes_read.load(Ordering::Relaxed),
            bytes_written: totals.bytes_written.load(Ordering::Relaxed),
            remote_get_requests: totals.remote_get_requests.load(Ordering::Relaxed),
            remote_put_requests: totals.remote_put_requests.load(Ordering::Relaxed),
        };
        let groups = self.group_lags(&partitions);
        metrics::render(
            &self.metrics,
            metrics::ScrapeFigures {
                cleaner,
                partitions,
                tiering_lag: self.tiering_lags(),
                groups,
            },
        )
    }

    /// Tiering lag of every online partition of a topic with remote
    /// storage on, from the tier status document's figures.
    fn tiering_lags(&self) -> Vec<metrics::TieringLag> {
        if self.remote.is_none() {
            return Vec::new();
        }
        let status = match self.tier_status(None) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the tiering lag");
                return Vec::new();
            }
        };
        status
            .partitions
            .into_iter()
            .filter(|p| p.remote_storage_enable && p.offline.is_none())
            .map(|p| metrics::TieringLag {
                topic: p.topic,
                partition: p.partition,
                bytes: p.copy_lag_bytes,
                segments: p.copy_lag_segments as u64,
                seconds: p.oldest_untiered_age_ms.unwrap_or(0) as f64 / 1000.0,
            })
            .collect()
    }

    /// Every consumer group's committed offsets against the log end
    /// offsets of `partitions` (the exposition's and the status page's
    /// consumer lag).
    fn group_lags(&self, partitions: &[metrics::PartitionFigures]) -> Vec<metrics::GroupLag> {
        let ends: HashMap<(&str, u32), i64> = partitions
            .iter()
            .map(|p| ((p.topic.as_str(), p.partition), p.log_end_offset))
            .collect();
        let mut groups = Vec::new();
        let names = self.groups_with_offsets().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list consumer groups");
            Vec::new()
        });
        for group in names {
            let Ok(mut committed) = self.committed_offsets(&group) else {
                continue;
            };
            committed.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            let partitions = committed
                .into_iter()
                .map(|c| metrics::GroupPartitionLag {
                    log_end_offset: ends.get(&(c.topic.as_str(), c.partition)).copied(),
                    topic: c.topic,
                    partition: c.partition,
                    committed: c.offset,
                })
                .collect();
            groups.push(metrics::GroupLag { group, partitions });
        }
        groups
    }

    /// The status page's figures: partitions, consumer groups' lag
    /// (committed offsets against log end offsets), recent events.
    pub fn status_figures(&self) -> metrics::StatusFigures {
        let (partitions, offline) = self.partition_figures();
        let groups = self.group_lags(&partitions);
        metrics::StatusFigures {
            now_ms: self.now_ms(),
            not_ready: self.config.readiness.not_ready().map(str::to_string),
            partitions,
            offline,
            groups,
            events: self.metrics.events.recent(),
            events_total: self.metrics.events.total(),
        }
    }

    /// The status page (`GET /` of the metrics endpoint).
    pub fn render_status_page(&self) -> String {
        metrics::render_status_page(&self.status_figures())
    }

    /// The endpoint's pages, rendered from this engine while it lives.
    pub fn endpoint_pages(self: &Arc<Self>) -> metrics::Pages {
        let (a, b, c) = (
            Arc::downgrade(self),
            Arc::downgrade(self),
            Arc::downgrade(self),
        );
        let tier_status: Arc<metrics::Route> =
            Arc::new(move |query: &str| c.upgrade().map(|e| super::tier_status::route(&e, query)));
        metrics::Pages {
            metrics: Box::new(move || a.upgrade().map(|e| e.render_metrics())),
            status: Box::new(move || b.upgrade().map(|e| e.render_status_page())),
            routes: vec![(super::tier_status::STATUS_PATH, tier_status)],
        }
    }

    /// Serve the metrics endpoint (`/metrics`, `/healthz`, `/readyz`, the
    /// status page at `/`) on `listener` until shutdown, as a service of
    /// the engine's executor (on the current runtime). `tierlog serve`
    /// starts its endpoint before the engine opens instead (so probes
    /// answer during recovery) and attaches [`Engine::endpoint_pages`].
    pub fn serve_metrics(self: &Arc<Self>, listener: tokio::net::TcpListener) {
        let endpoint = Arc::new(metrics::Endpoint::new(Arc::clone(&self.config.readiness)));
        endpoint.attach(self.endpoint_pages());
        self.tasks.service(
            "metrics-listener",
            &tokio::runtime::Handle::current(),
            move |stop| metrics::serve(listener, endpoint, stop),
        );
    }
}
