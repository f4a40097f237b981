//! Incremental fetch sessions (KIP-227): a consumer of many partitions
//! sends its whole partition list once, then only what changed; the broker
//! answers only the partitions with something new (records, an error, a
//! moved high watermark or log start offset).
//!
//! Owns: the session cache (`max.incremental.fetch.session.cache.slots`
//! sessions at most), the rules that turn a request's `session_id` /
//! `session_epoch` into the partitions to read, and the filter that keeps an
//! incremental response to what changed. Must never read a log: `fetch.rs`
//! reads what [`FetchSessions::begin`] lists.
//!
//! The request rules, as Kafka's `FetchManager`:
//! - id 0, epoch -1: a full fetch without a session (what librdkafka sends);
//! - id 0 (or any id), epoch 0: a full fetch that opens a new session
//!   (closing the one named); without a free slot it is answered as a
//!   sessionless full fetch (id 0), which clients accept;
//! - id N, epoch -1: close N, full fetch without a session;
//! - id N, epoch E > 0: incremental; an unknown N gets
//!   FETCH_SESSION_ID_NOT_FOUND, an epoch other than the one expected
//!   INVALID_FETCH_SESSION_EPOCH (the client then starts over with a full
//!   fetch).
//!
//! A full cache evicts its least recently used session only when that one
//! has been idle for [`EVICTION_IDLE`] (Kafka's `evictionMs`), so busy
//! consumers never take turns evicting each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::ResponseError;

use crate::sync::lock;

/// A session idle this long may be evicted for a new one.
pub const EVICTION_IDLE: Duration = Duration::from_secs(120);

/// One partition to read, from the request or the session.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    pub topic: TopicName,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: i32,
    /// The client's `current_leader_epoch` (v9+; -1: no check), checked
    /// by `fetch.rs` before reading.
    pub current_leader_epoch: i32,
}

/// What the client was last told about a session partition.
#[derive(Clone, Debug)]
struct Cached {
    topic_id: uuid::Uuid,
    fetch_offset: i64,
    max_bytes: i32,
    /// The last `current_leader_epoch` the client sent for it.
    current_leader_epoch: i32,
    /// -1 until the partition was first answered.
    high_watermark: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    /// In reading order: partitions that returned records move to the end,
    /// so a small `max_bytes` cannot starve the last ones.
    partitions: IndexMap<(TopicName, i32), Cached>,
    last_used: Instant,
}

/// How this request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionMode {
    /// Every partition, no session (`session_id` 0 in the response).
    Sessionless,
    /// Every partition, in a new session.
    Full { id: i32 },
    /// Only the partitions with news, in an existing session.
    Incremental { id: i32 },
}

/// The broker's fetch sessions.
#[derive(Debug)]
pub struct FetchSessions {
    slots: usize,
    sessions: std::sync::Mutex<HashMap<i32, Session>>,
    next_id: AtomicI32,
}

impl FetchSessions {
    /// A cache of at most `slots` sessions (0: sessions off, every fetch
    /// is sessionless).
    pub fn new(slots: usize) -> Self {
        // Ids start at a random point so a restarted broker does not take
        // a client's old id for its new session.
        let start = (uuid::Uuid::new_v4().as_u128() as u32 & 0x3fff_ffff) as i32 + 1;
        FetchSessions {
            slots,
            sessions: Default::default(),
            next_id: AtomicI32::new(start),
        }
    }

    /// Sessions open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Whether no session is open.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Apply the request's session fields: the mode and the partitions to
    /// read, or the error the whole response carries.
    pub(super) fn begin(
        &self,
        req: &FetchRequest,
        now: Instant,
    ) -> Result<(SessionMode, Vec<Wanted>), ResponseError> {
        let from_request = || -> Vec<Wanted> {
            req.topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(move |p| Wanted {
                        topic: t.topic.clone(),
                        topic_id: t.topic_id,
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                    })
                })
                .collect()
        };
        let (id, epoch) = (req.session_id, req.session_epoch);
        let mut sessions = lock(&self.sessions);
        if epoch == -1 {
            if id != 0 {
                sessions.remove(&id);
            }
            return Ok((SessionMode::Sessionless, from_request()));
        }
        if epoch == 0 {
            if id != 0 {
                sessions.remove(&id);
            }
            let wanted = from_request();
            if !self.make_room(&mut sessions, now) {
                return Ok((SessionMode::Sessionless, wanted));
            }
            let id = self.new_id(&sessions);
            let partitions = wanted
                .iter()
                .map(|w| {
                    let cached = Cached {
                        topic_id: w.topic_id,
                        fetch_offset: w.offset,
                        max_bytes: w.max_bytes,
                        current_leader_epoch: w.current_leader_epoch,
                        high_watermark: -1,
                        log_start_offset: -1,
                    };
                    ((w.topic.clone(), w.partition), cached)
                })
                .collect();
            sessions.insert(
                id,
                Session {
                    next_epoch: 1,
                    partitions,
                    last_used: now,
                },
            );
            return Ok((SessionMode::Full { id }, wanted));
        }
        let Some(session) = sessions.get_mut(&id) else {
            return Err(ResponseError::FetchSessionIdNotFound);
        };
        if epoch != session.next_epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = epoch.wrapping_add(1).max(1);
        session.last_used = now;
        for w in from_request() {
            let key = (w.topic.clone(), w.partition);
            match session.partitions.get_mut(&key) {
                Some(c) => {
                    c.fetch_offset = w.offset;
                    c.max_bytes = w.max_bytes;
                    c.current_leader_epoch = w.current_leader_epoch;
                    c.topic_id = w.topic_id;
                }
                None => {
                    session.partitions.insert(
                        key,
                        Cached {
                            topic_id: w.topic_id,
                            fetch_offset: w.offset,
                            max_bytes: w.max_bytes,
                            current_leader_epoch: w.current_leader_epoch,
                            high_watermark: -1,
                            log_start_offset: -1,
                        },
                    );
                }
            }
        }
        for forgotten in &req.forgotten_topics_data {
            for p in &forgotten.partitions {
                session
                    .partitions
                    .shift_remove(&(forgotten.topic.clone(), *p));
            }
        }
        let wanted = session
            .partitions
            .iter()
            .map(|((topic, partition), c)| Wanted {
                topic: topic.clone(),
                topic_id: c.topic_id,
                partition: *partition,
                offset: c.fetch_offset,
                max_bytes: c.max_bytes,
                current_leader_epoch: c.current_leader_epoch,
            })
            .collect();
        Ok((SessionMode::Incremental { id }, wanted))
    }

    /// Record what the response tells the client, and for an incremental
    /// fetch drop the partitions with nothing new. Partitions that
    /// returned records move to the end of the session's reading order.
    pub(super) fn finish(&self, mode: SessionMode, topics: &mut Vec<FetchableTopicResponse>) {
        let id = match mode {
            SessionMode::Sessionless => return,
            SessionMode::Full { id } | SessionMode::Incremental { id } => id,
        };
        let incremental = matches!(mode, SessionMode::Incremental { .. });
        let mut sessions = lock(&self.sessions);
        let Some(session) = sessions.get_mut(&id) else {
            return;
        };
        let mut to_back = Vec::new();
        for t in topics.iter_mut() {
            t.partitions.retain(|p| {
                let key = (t.topic.clone(), p.partition_index);
                let Some(c) = session.partitions.get_mut(&key) else {
                    return true;
                };
                let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                let news = has_records
                    || p.error_code != 0
                    || p.high_watermark != c.high_watermark
                    || p.log_start_offset != c.log_start_offset;
                c.high_watermark = p.high_watermark;
                c.log_start_offset = p.log_start_offset;
                if has_records {
                    to_back.push(key);
                }
                news || !incremental
            });
        }
        topics.retain(|t| !t.partitions.is_empty() || !incremental);
        for key in to_back {
            if let Some(c) = session.partitions.shift_remove(&key) {
                session.partitions.insert(key, c);
            }
        }
    }

    /// Room for one more session: true if there is a free slot or the least
    /// recently used session has been idle for [`EVICTION_IDLE`] (evicted).
    fn make_room(&self, sessions: &mut HashMap<i32, Session>, now: Instant) -> bool {
        if sessions.len() < self.slots {
            return true;
        }
        let lru = sessions
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, s)| (*id, s.last_used));
        match lru {
            Some((id, used)) if now.saturating_duration_since(used) >= EVICTION_IDLE => {
                sessions.remove(&id);
                true
            }
            _ => false,
        }
    }

    fn new_id(&self, sessions: &HashMap<i32, Session>) -> i32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            // Positive and unused (0 means "no session").
            if id > 0 && !sessions.contains_key(&id) {
                return id;
            }
            if id <= 0 {
                self.next_id.store(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::fetch_response::PartitionData;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName(StrBytes::from_string(name.to_string()))
    }

    fn request(id: i32, epoch: i32, parts: &[(i32, i64)]) -> FetchRequest {
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(if parts.is_empty() {
                vec![]
            } else {
                vec![FetchTopic::default()
                    .with_topic(topic("t"))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&(p, o)| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(o)
                                    .with_partition_max_bytes(1024)
                            })
                            .collect(),
                    )]
            })
    }

    fn response(parts: &[(i32, i64, usize)]) -> Vec<FetchableTopicResponse> {
        vec![FetchableTopicResponse::default()
            .with_topic(topic("t"))
            .with_partitions(
                parts
                    .iter()
                    .map(|&(p, hw, records)| {
                        PartitionData::default()
                            .with_partition_index(p)
                            .with_high_watermark(hw)
                            .with_log_start_offset(0)
                            .with_records(Some(vec![0u8; records].into()))
                    })
                    .collect(),
            )]
    }

    fn answered(topics: &[FetchableTopicResponse]) -> Vec<i32> {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    #[test]
    fn a_session_answers_only_what_changed_and_checks_its_epoch() {
        let cache = FetchSessions::new(10);
        let now = Instant::now();
        let (mode, wanted) = cache.begin(&request(0, 0, &[(0, 0), (1, 0)]), now).unwrap();
        let SessionMode::Full { id } = mode else {
            panic!("{mode:?}")
        };
        assert_eq!(wanted.len(), 2);
        let mut r = response(&[(0, 5, 100), (1, 0, 0)]);
        cache.finish(mode, &mut r);
        assert_eq!(
            answered(&r),
            [0, 1],
            "a full response keeps every partition"
        );

        // Epoch 1: partition 0's new offset; nothing new anywhere.
        let (mode, wanted) = cache.begin(&request(id, 1, &[(0, 5)]), now).unwrap();
        assert_eq!(mode, SessionMode::Incremental { id });
        let offsets: Vec<_> = wanted.iter().map(|w| (w.partition, w.offset)).collect();
        assert_eq!(offsets, [(1, 0), (0, 5)], "0 returned records: read last");
        let mut r = response(&[(1, 0, 0), (0, 5, 0)]);
        cache.finish(mode, &mut r);
        assert!(r.is_empty(), "{r:?}");

        // Epoch 2: partition 1 has records; 0's high watermark moved.
        let (mode, _) = cache.begin(&request(id, 2, &[]), now).unwrap();
        let mut r = response(&[(1, 3, 50), (0, 6, 0)]);
        cache.finish(mode, &mut r);
        assert_eq!(answered(&r), [1, 0]);

        // A wrong epoch, an unknown id.
        assert_eq!(
            cache.begin(&request(id, 7, &[]), now).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        assert_eq!(
            cache.begin(&request(id + 1, 1, &[]), now).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );

        // Forgetting a partition; then closing the session.
        let mut forget = request(id, 3, &[]);
        forget.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(topic("t"))
            .with_partitions(vec![1])];
        let (_, wanted) = cache.begin(&forget, now).unwrap();
        assert_eq!(wanted.iter().map(|w| w.partition).collect::<Vec<_>>(), [0]);
        let (mode, _) = cache.begin(&request(id, -1, &[(0, 6)]), now).unwrap();
        assert_eq!(mode, SessionMode::Sessionless);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_session_keeps_each_partitions_current_leader_epoch_until_the_client_changes_it() {
        let cache = FetchSessions::new(10);
        let now = Instant::now();
        let with_epochs = |id: i32, epoch: i32, parts: &[(i32, i32)]| {
            let mut r = request(
                id,
                epoch,
                &parts.iter().map(|&(p, _)| (p, 0)).collect::<Vec<_>>(),
            );
            if let Some(t) = r.topics.first_mut() {
                for (fp, &(_, e)) in t.partitions.iter_mut().zip(parts) {
                    fp.current_leader_epoch = e;
                }
            }
            r
        };
        let epochs = |wanted: &[Wanted]| {
            let mut v: Vec<_> = wanted
                .iter()
                .map(|w| (w.partition, w.current_leader_epoch))
                .collect();
            v.sort();
            v
        };
        let (mode, wanted) = cache
            .begin(&with_epochs(0, 0, &[(0, 0), (1, -1)]), now)
            .unwrap();
        let SessionMode::Full { id } = mode else {
            panic!("{mode:?}")
        };
        assert_eq!(epochs(&wanted), [(0, 0), (1, -1)]);
        // Incremental: partition 1 now sends epoch 5; 0 is not mentioned
        // and keeps what it sent last.
        let (_, wanted) = cache.begin(&with_epochs(id, 1, &[(1, 5)]), now).unwrap();
        assert_eq!(epochs(&wanted), [(0, 0), (1, 5)]);
        let (_, wanted) = cache.begin(&with_epochs(id, 2, &[]), now).unwrap();
        assert_eq!(epochs(&wanted), [(0, 0), (1, 5)]);
        let (_, wanted) = cache.begin(&with_epochs(id, 3, &[(1, 0)]), now).unwrap();
        assert_eq!(epochs(&wanted), [(0, 0), (1, 0)]);
    }

    #[test]
    fn a_full_cache_evicts_only_an_idle_session() {
        let cache = FetchSessions::new(1);
        let t0 = Instant::now();
        let (first, _) = cache.begin(&request(0, 0, &[(0, 0)]), t0).unwrap();
        let (second, _) = cache.begin(&request(0, 0, &[(0, 0)]), t0).unwrap();
        assert!(matches!(first, SessionMode::Full { .. }));
        assert_eq!(second, SessionMode::Sessionless, "no slot: sessionless");
        let later = t0 + EVICTION_IDLE;
        let (third, _) = cache.begin(&request(0, 0, &[(0, 0)]), later).unwrap();
        assert!(
            matches!(third, SessionMode::Full { id } if Some(id) != match first { SessionMode::Full { id } => Some(id), _ => None })
        );
        assert_eq!(cache.len(), 1);
        let off = FetchSessions::new(0);
        let (mode, _) = off.begin(&request(0, 0, &[(0, 0)]), t0).unwrap();
        assert_eq!(mode, SessionMode::Sessionless);
    }
}
