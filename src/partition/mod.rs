//! One partition as a whole (Kafka's UnifiedLog): its local log and its
//! tiered segments, the offsets they span together, and which tier serves a
//! read of a given offset.
//!
//! Owns: the partition's online/offline state and the in-memory map of its
//! `COPY_FINISHED` remote segments (loaded from the catalog at open, kept
//! current by the remote log manager). Offsets in `[log start, local log
//! start)` are served from the remote tier, the rest from the local log.
//! Never does object-store I/O itself: a remote read is planned here and run
//! by `remote/fetcher.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::catalog::RemoteSegment;
use crate::error::{Error, ErrorKind, Result};
use crate::log::LocalLog;
use crate::remote::fetcher::RemoteReadRequest;
use crate::{lock, ReadResult};

pub(crate) enum PartitionState {
    Online(LocalLog),
    /// Could not be opened; the message says why (path and offset).
    Offline(Error),
    Closed,
}

/// The tiered segments of a partition that reads may use, by base offset.
#[derive(Debug, Default, Clone)]
pub(crate) struct RemoteSegments {
    by_base: BTreeMap<i64, Arc<RemoteSegment>>,
}

impl RemoteSegments {
    /// The first offset held remotely.
    pub(crate) fn start(&self) -> Option<i64> {
        self.by_base.values().next().map(|s| s.base_offset)
    }

    /// The last offset held remotely.
    pub(crate) fn last_offset(&self) -> Option<i64> {
        self.by_base.values().next_back().map(|s| s.last_offset)
    }

    /// The segment holding `offset` (or, in a hole, the first one after
    /// it), and the one after that.
    fn find(&self, offset: i64) -> Option<(Arc<RemoteSegment>, Option<Arc<RemoteSegment>>)> {
        let seg = match self.by_base.range(..=offset).next_back() {
            Some((_, s)) if s.last_offset >= offset => s,
            _ => self.by_base.range(offset + 1..).next()?.1,
        };
        let next = self
            .by_base
            .range(seg.base_offset + 1..)
            .next()
            .map(|(_, s)| Arc::clone(s));
        Some((Arc::clone(seg), next))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<RemoteSegment>> {
        self.by_base.values()
    }
}

pub(crate) struct Partition {
    pub(crate) state: Mutex<PartitionState>,
    pub(crate) remote: RwLock<RemoteSegments>,
}

/// Where a read is served from.
pub(crate) enum ReadPlan {
    /// Served from the local log (done under its lock).
    Done(ReadResult),
    /// To be read from the remote tier.
    Remote {
        request: RemoteReadRequest,
        log_start_offset: i64,
        log_end_offset: i64,
    },
}

/// A partition's offsets across both tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset readable, remote or local.
    pub log_start_offset: i64,
    /// The first offset on local disk.
    pub local_log_start_offset: i64,
    /// The log end offset (the high watermark on one broker).
    pub log_end_offset: i64,
    /// The last offset held by the remote tier, if any is.
    pub last_tiered_offset: Option<i64>,
}

fn offline_error(e: &Error) -> Error {
    Error::new(e.kind(), format!("partition is offline: {e}"))
}

impl Partition {
    pub(crate) fn new(state: PartitionState) -> Self {
        Partition {
            state: Mutex::new(state),
            remote: RwLock::new(RemoteSegments::default()),
        }
    }

    pub(crate) fn with_log<T>(&self, f: impl FnOnce(&mut LocalLog) -> Result<T>) -> Result<T> {
        let mut state = lock(&self.state);
        match &mut *state {
            PartitionState::Online(log) => {
                let result = f(log);
                if let Err(e) = &result {
                    if e.kind() == ErrorKind::Unavailable {
                        // As Kafka does with a failing log directory: after a
                        // failed write or fsync the state of the files is
                        // unknown (Linux may drop dirty pages and report the
                        // next fsync clean), so stop serving the partition
                        // until a restart recovers it.
                        tracing::error!(log = log.name(), error = %e, "I/O error: taking the partition offline");
                        let offline = Error::new(ErrorKind::Unavailable, e.message().to_string());
                        *state = PartitionState::Offline(offline);
                    }
                }
                result
            }
            PartitionState::Offline(e) => Err(offline_error(e)),
            PartitionState::Closed => Err(Error::new(ErrorKind::Closed, "the engine is shut down")),
        }
    }

    /// The local log start and the remote segments below it, read together
    /// (so retention moving a segment between the tiers cannot hide it).
    pub(crate) fn remote_below_local(&self) -> Result<(i64, Vec<Arc<RemoteSegment>>)> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        self.with_log(|log| {
            let local_start = log.log_start_offset();
            Ok((
                local_start,
                remote
                    .iter()
                    .filter(|s| s.base_offset < local_start)
                    .cloned()
                    .collect(),
            ))
        })
    }

    /// A segment became `COPY_FINISHED`: reads may use it.
    pub(crate) fn add_remote(&self, seg: RemoteSegment) {
        let mut map = self.remote.write().unwrap_or_else(|p| p.into_inner());
        map.by_base.insert(seg.base_offset, Arc::new(seg));
    }

    /// A segment is about to be deleted: no new read may start on it.
    pub(crate) fn remove_remote(&self, segment_uuid: uuid::Uuid) {
        let mut map = self.remote.write().unwrap_or_else(|p| p.into_inner());
        map.by_base.retain(|_, s| s.segment_uuid != segment_uuid);
    }

    /// Offsets across both tiers.
    pub(crate) fn offsets(&self) -> Result<PartitionOffsets> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        self.with_log(|log| Ok(unified_offsets(log, &remote)))
    }

    /// Plan a read of `offset`: a local read is done now, under the log's
    /// lock; a remote one is described for the fetcher. `remote_on` says
    /// whether a fetcher exists (without one, only local offsets are
    /// readable).
    pub(crate) fn plan_read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        remote_on: bool,
    ) -> Result<ReadPlan> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        self.with_log(|log| {
            let o = if remote_on {
                unified_offsets(log, &remote)
            } else {
                unified_offsets(log, &RemoteSegments::default())
            };
            if offset < o.local_log_start_offset && offset >= o.log_start_offset {
                if let Some((segment, next)) = remote.find(offset) {
                    return Ok(ReadPlan::Remote {
                        request: RemoteReadRequest {
                            segment,
                            next,
                            offset,
                            max_bytes,
                            min_one,
                        },
                        log_start_offset: o.log_start_offset,
                        log_end_offset: o.log_end_offset,
                    });
                }
            }
            if offset < o.log_start_offset || offset > o.log_end_offset {
                return Err(out_of_range(log.name(), offset, &o));
            }
            // Below the local start with no remote segment left to serve
            // it (a hole, or a fetcher-less engine): the batches from the
            // local start on; a consumer moves forward past missing offsets
            // as it does past compacted ones.
            let from = offset.max(o.local_log_start_offset);
            let records = log.read(from, max_bytes, min_one)?;
            Ok(ReadPlan::Done(ReadResult {
                records,
                log_start_offset: o.log_start_offset,
                log_end_offset: o.log_end_offset,
            }))
        })
    }
}

pub(crate) fn out_of_range(name: &str, offset: i64, o: &PartitionOffsets) -> Error {
    Error::new(
        ErrorKind::OutOfRange,
        format!(
            "offset {offset} is out of range for {name}: log start offset {}, log end offset {}",
            o.log_start_offset, o.log_end_offset
        ),
    )
}

fn unified_offsets(log: &LocalLog, remote: &RemoteSegments) -> PartitionOffsets {
    let local_start = log.log_start_offset();
    PartitionOffsets {
        log_start_offset: remote.start().map_or(local_start, |r| r.min(local_start)),
        local_log_start_offset: local_start,
        log_end_offset: log.log_end_offset(),
        last_tiered_offset: remote.last_offset(),
    }
}
