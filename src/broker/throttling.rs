//! Client quotas on the request path: what one request costs against its
//! user's and client id's quotas, the throttle time its response carries,
//! and how the connection is held back, as Kafka does.
//!
//! Once any quota is configured, `connection.rs` runs each request inside
//! a [`RequestQuota`] scope (a task-local: the handlers need not know
//! about quotas; with no quota at all there is none and a request costs
//! one atomic load here); `respond` (the
//! one place responses are encoded) calls [`on_response`], which records
//! the request's handling time (`request_percentage`), its size for a
//! Produce (`producer_byte_rate`, Kafka counts the request's bytes) and
//! its response's size for a Fetch (`consumer_byte_rate`), and sets
//! `throttle_time_ms` to the largest throttle. The connection then holds
//! the client back that long: a client new enough to throttle itself
//! (KIP-219, [`client_side_throttle`]) gets its response at once and its
//! next request is not read until the time is up (Kafka mutes the
//! channel); an older one gets its response only then.
//!
//! Must never shorten or refuse a response or close a connection over a
//! quota. (Kafka answers a throttled Fetch with no records and does not
//! count its bytes; tierlog sends the records and throttles afterwards,
//! so nothing read is wasted.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::*;

use super::quota_manager::{ClientQuotas, ConnectionQuotaCache};
use super::ConnError;
use crate::catalog::quotas::QuotaKey;
use crate::metrics::Metrics;
use crate::sync::lock;

tokio::task_local! {
    /// The quota state of the request being handled on this task.
    static REQUEST: Arc<RequestQuota>;
}

/// Throttle times of one request, by [`QuotaKey`] index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttles(pub [u64; 3]);

impl Throttles {
    /// What the response carries and the connection waits: the largest.
    pub fn max_ms(&self) -> u64 {
        self.0.iter().copied().max().unwrap_or(0)
    }
}

#[derive(Default)]
struct State {
    /// Time the request waited for data or a rebalance (not handling).
    parked: Duration,
    /// Set once recorded (a request is counted once).
    outcome: Option<Throttles>,
}

/// One request's identity and cost so far.
pub struct RequestQuota {
    user: String,
    client_id: String,
    api_key: i16,
    request_bytes: usize,
    started: tokio::time::Instant,
    state: Mutex<State>,
    cache: Arc<Mutex<ConnectionQuotaCache>>,
}

impl RequestQuota {
    /// A request of `frame` (header and body, without the size prefix)
    /// from `principal` (`User:NAME`), through its connection's `cache`.
    pub fn new(
        principal: Option<&str>,
        frame: &[u8],
        cache: Arc<Mutex<ConnectionQuotaCache>>,
    ) -> RequestQuota {
        let user = principal
            .map(|p| p.strip_prefix("User:").unwrap_or(p))
            .unwrap_or("ANONYMOUS")
            .to_string();
        let api_key = if frame.len() >= 2 {
            i16::from_be_bytes([frame[0], frame[1]])
        } else {
            -1
        };
        RequestQuota {
            user,
            client_id: peek_client_id(frame),
            api_key,
            request_bytes: frame.len(),
            started: crate::clock::monotonic_now(),
            state: Mutex::new(State::default()),
            cache,
        }
    }

    /// Run the request's handling with `quota`'s scope, or without one
    /// (no quota configured: nothing to record).
    pub async fn scope<F: std::future::Future>(quota: Option<&Arc<Self>>, f: F) -> F::Output {
        match quota {
            Some(q) => REQUEST.scope(Arc::clone(q), f).await,
            None => f.await,
        }
    }

    /// Record the request against its quotas once (later calls return the
    /// first outcome): its handling time until now, its size (Produce),
    /// `response_bytes` (Fetch).
    pub fn finish(
        &self,
        quotas: &ClientQuotas,
        metrics: &Metrics,
        response_bytes: usize,
    ) -> Throttles {
        let mut state = lock(&self.state);
        if let Some(t) = state.outcome {
            return t;
        }
        let mut t = Throttles::default();
        if quotas.any_enabled() {
            let now = quotas.now_ms();
            let busy = crate::clock::monotonic_now()
                .saturating_duration_since(self.started)
                .saturating_sub(state.parked);
            let mut cache = lock(&self.cache);
            let mut record = |key: QuotaKey, value: f64| {
                t.0[key.index()] =
                    quotas.record(&mut cache, key, &self.user, &self.client_id, value, now);
            };
            // Percent of one thread per second: nanoseconds × 100 / 1e9.
            record(
                QuotaKey::RequestPercentage,
                busy.as_nanos() as f64 * 100.0 / 1e9,
            );
            if self.api_key == ApiKey::Produce as i16 {
                record(QuotaKey::ProducerByteRate, self.request_bytes as f64);
            } else if self.api_key == ApiKey::Fetch as i16 {
                record(QuotaKey::ConsumerByteRate, response_bytes as f64);
            }
            for key in QuotaKey::ALL {
                let ms = t.0[key.index()];
                if ms > 0 {
                    let i = metric_index(key);
                    metrics.quota_throttle_time_ms[i].inc_by(ms);
                    metrics.quota_throttled[i].inc();
                }
            }
        }
        state.outcome = Some(t);
        t
    }
}

/// The metrics' `quota_type` index (`metrics::QUOTA_TYPES`) of a key.
fn metric_index(key: QuotaKey) -> usize {
    match key {
        QuotaKey::ProducerByteRate => 0,
        QuotaKey::ConsumerByteRate => 1,
        QuotaKey::RequestPercentage => 2,
    }
}

/// The client id of a request frame without decoding it: request headers
/// v1 and v2 hold it as a nullable INT16-length string after the API key,
/// version and correlation id. `""` when null or unreadable (Kafka's
/// empty client id).
fn peek_client_id(frame: &[u8]) -> String {
    let Some(len) = frame.get(8..10) else {
        return String::new();
    };
    let len = i16::from_be_bytes([len[0], len[1]]);
    if len <= 0 {
        return String::new();
    }
    frame
        .get(10..10 + len as usize)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Run `f`, a wait for data or for a rebalance, without counting its time
/// as request handling (Kafka counts handler time, not purgatory time).
pub async fn parked<F: std::future::Future>(f: F) -> F::Output {
    let started = crate::clock::monotonic_now();
    let out = f.await;
    let waited = crate::clock::monotonic_now().saturating_duration_since(started);
    let _ = REQUEST.try_with(|r| lock(&r.state).parked += waited);
    out
}

/// Whether the request being handled runs in a client quota's scope
/// (its response bytes are then counted, and may be held back).
pub fn in_quota_scope() -> bool {
    REQUEST.try_with(|_| ()).is_ok()
}

/// After `encoded` (header and body of `resp`) is built: record the
/// request against its quotas and, when throttled, encode it again with
/// `throttle_time_ms` set. Outside a request scope (SASL, tests) nothing
/// is recorded.
pub fn on_response<T: ThrottleTime + kafka_protocol::protocol::Encodable>(
    ctx: &super::Ctx,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &T,
    encoded: BytesMut,
) -> Result<BytesMut, ConnError> {
    let Ok(throttles) =
        REQUEST.try_with(|r| r.finish(&ctx.quotas, ctx.engine.metrics(), encoded.len()))
    else {
        return Ok(encoded);
    };
    let ms = throttles.max_ms();
    if ms == 0 {
        return Ok(encoded);
    }
    match resp.with_throttle_time(ms.min(i32::MAX as u64) as i32) {
        Some(throttled) => super::codec::respond(api_key, version, correlation_id, &throttled),
        None => Ok(encoded),
    }
}

/// Whether a client of `api` at `version` throttles itself after a
/// response with `throttle_time_ms` (KIP-219): the broker then answers at
/// once and mutes the connection; for older versions it holds the
/// response back instead. The versions Kafka bumped for KIP-219.
pub fn client_side_throttle(api: i16, version: i16) -> bool {
    let Ok(api) = ApiKey::try_from(api) else {
        return false;
    };
    let first = match api {
        ApiKey::Produce => 6,
        ApiKey::Fetch => 8,
        ApiKey::ListOffsets => 3,
        ApiKey::Metadata => 6,
        ApiKey::OffsetCommit => 4,
        ApiKey::OffsetFetch => 4,
        ApiKey::FindCoordinator => 2,
        ApiKey::JoinGroup => 3,
        ApiKey::Heartbeat => 2,
        ApiKey::LeaveGroup => 2,
        ApiKey::SyncGroup => 2,
        ApiKey::DescribeGroups => 2,
        ApiKey::ListGroups => 2,
        ApiKey::ApiVersions => 2,
        ApiKey::CreateTopics => 3,
        ApiKey::DeleteTopics => 2,
        ApiKey::DeleteRecords => 1,
        ApiKey::InitProducerId => 1,
        ApiKey::DescribeConfigs => 2,
        ApiKey::AlterConfigs => 1,
        ApiKey::DescribeLogDirs => 1,
        ApiKey::CreatePartitions => 1,
        ApiKey::DeleteGroups => 1,
        ApiKey::OffsetForLeaderEpoch => 3,
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::EndTxn
        | ApiKey::CreateAcls
        | ApiKey::DescribeAcls
        | ApiKey::DeleteAcls => 1,
        _ => 0,
    };
    version >= first
}

/// A response whose `throttle_time_ms` can be set.
pub trait ThrottleTime: Sized {
    /// A copy with `throttle_time_ms` set; `None` for a response without
    /// one (SASL).
    fn with_throttle_time(&self, ms: i32) -> Option<Self>;
}

macro_rules! throttle_time {
    ($($t:ty),* $(,)?) => {
        $(impl ThrottleTime for $t {
            fn with_throttle_time(&self, ms: i32) -> Option<Self> {
                let mut copy = self.clone();
                copy.throttle_time_ms = ms;
                Some(copy)
            }
        })*
    };
}

throttle_time!(
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    MetadataResponse,
    CreateTopicsResponse,
    DeleteTopicsResponse,
    DescribeConfigsResponse,
    AlterConfigsResponse,
    IncrementalAlterConfigsResponse,
    DescribeClusterResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    OffsetDeleteResponse,
    ListGroupsResponse,
    DescribeGroupsResponse,
    DeleteGroupsResponse,
    InitProducerIdResponse,
    DescribeLogDirsResponse,
    CreatePartitionsResponse,
    DescribeProducersResponse,
    DeleteRecordsResponse,
    AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsResponse,
    DescribeClientQuotasResponse,
    AlterClientQuotasResponse,
    OffsetForLeaderEpochResponse,
    AddPartitionsToTxnResponse,
    AddOffsetsToTxnResponse,
    TxnOffsetCommitResponse,
    EndTxnResponse,
    ListTransactionsResponse,
    DescribeTransactionsResponse,
    CreateAclsResponse,
    DescribeAclsResponse,
    DeleteAclsResponse,
);

impl ThrottleTime for SaslHandshakeResponse {
    fn with_throttle_time(&self, _ms: i32) -> Option<Self> {
        None
    }
}

impl ThrottleTime for SaslAuthenticateResponse {
    fn with_throttle_time(&self, _ms: i32) -> Option<Self> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_id_is_read_from_the_raw_header() {
        let mut frame = vec![0, 0, 0, 9, 0, 0, 0, 1];
        frame.extend_from_slice(&5i16.to_be_bytes());
        frame.extend_from_slice(b"app-1rest");
        assert_eq!(peek_client_id(&frame), "app-1");
        let mut null = vec![0, 0, 0, 9, 0, 0, 0, 1];
        null.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(peek_client_id(&null), "");
        // Cut short: empty, never a panic.
        assert_eq!(peek_client_id(&frame[..12]), "");
        assert_eq!(peek_client_id(&frame[..3]), "");
    }

    #[test]
    fn kip_219_versions() {
        assert!(!client_side_throttle(ApiKey::Produce as i16, 5));
        assert!(client_side_throttle(ApiKey::Produce as i16, 6));
        assert!(!client_side_throttle(ApiKey::Fetch as i16, 7));
        assert!(client_side_throttle(ApiKey::Fetch as i16, 8));
        assert!(client_side_throttle(ApiKey::DescribeClientQuotas as i16, 0));
    }
}
