//! Kafka requests by API and the error codes their responses carried, by
//! API and Kafka error name: `tierlog_requests_total{api}` and
//! `tierlog_request_errors_total{api,error}`.
//!
//! Owns the counting tables (fixed arrays of atomics: the broker counts
//! without a lock or a map) and their exposition, which lists only the
//! series that moved. Must never decide what an error is: the broker
//! reports the codes it put in a response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

/// Highest Kafka API key counted per key (higher ones share the last slot).
const API_SLOTS: usize = 128;
/// Error codes -1 (UNKNOWN_SERVER_ERROR) up to 158 have a slot each; higher
/// (or lower) ones share the last.
const ERROR_SLOTS: usize = 160;

fn api_slot(api_key: i16) -> usize {
    usize::try_from(api_key).unwrap_or(0).min(API_SLOTS - 1)
}

fn error_slot(code: i16) -> usize {
    usize::try_from(i32::from(code) + 1)
        .unwrap_or(ERROR_SLOTS - 1)
        .min(ERROR_SLOTS - 1)
}

/// Requests and response error codes, per API.
#[derive(Debug)]
pub struct RequestCounters {
    requests: Box<[AtomicU64]>,
    /// Per API, allocated at its first error.
    errors: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters {
            requests: (0..API_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..API_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl RequestCounters {
    pub fn request(&self, api_key: i16) {
        self.requests[api_slot(api_key)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, api_key: i16) -> u64 {
        self.requests[api_slot(api_key)].load(Ordering::Relaxed)
    }

    /// Count error `code` in a response to `api_key` (0, no error, is not
    /// counted).
    pub fn error(&self, api_key: i16, code: i16) {
        if code == 0 {
            return;
        }
        let row = self.errors[api_slot(api_key)]
            .get_or_init(|| (0..ERROR_SLOTS).map(|_| AtomicU64::new(0)).collect());
        row[error_slot(code)].fetch_add(1, Ordering::Relaxed);
    }

    /// Errors `code` in responses to `api_key` so far.
    pub fn errors(&self, api_key: i16, code: i16) -> u64 {
        self.errors[api_slot(api_key)]
            .get()
            .map_or(0, |row| row[error_slot(code)].load(Ordering::Relaxed))
    }
}

/// The API's name as the exposition labels it (`Produce`, `Fetch`, …).
fn api_name(slot: usize) -> String {
    i16::try_from(slot)
        .ok()
        .and_then(|k| ApiKey::try_from(k).ok())
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|| format!("api_{slot}"))
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), as its
/// clients and documentation spell it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_CODE_{code}"),
        Some(e) => {
            // `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
            let camel = e.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Encodes the tables at scrape time: only the series that moved.
#[derive(Debug)]
pub(crate) struct RequestsCollector(pub(crate) Arc<RequestCounters>);

impl Collector for RequestsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = &self.0;
        let mut family = encoder.encode_descriptor(
            "tierlog_requests",
            "Kafka requests by API",
            None,
            MetricType::Counter,
        )?;
        for (slot, c) in t.requests.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                let labels = [("api", api_name(slot))];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "tierlog_request_errors",
            "error codes in Kafka responses, by API and Kafka error name (one per partition, topic or group that failed)",
            None,
            MetricType::Counter,
        )?;
        for (slot, row) in t.errors.iter().enumerate() {
            let Some(row) = row.get() else { continue };
            for (e, c) in row.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    // Slot e holds code e - 1 (the last one: every code from there on).
                    let code = i16::try_from(e as i32 - 1).unwrap_or(i16::MAX);
                    let labels = [("api", api_name(slot)), ("error", error_name(code))];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(70), "FETCH_SESSION_ID_NOT_FOUND");
        assert_eq!(error_name(9999), "UNKNOWN_CODE_9999");
    }

    #[test]
    fn only_moved_series_are_exposed() {
        let t = Arc::new(RequestCounters::default());
        t.request(0);
        t.request(0);
        t.request(1);
        t.error(1, 3);
        t.error(1, 3);
        t.error(1, 0);
        t.error(0, -1);
        assert_eq!(t.errors(1, 3), 2);
        assert_eq!(t.errors(1, 0), 0);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(RequestsCollector(t)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &registry).unwrap();
        for line in [
            "tierlog_requests_total{api=\"Produce\"} 2\n",
            "tierlog_requests_total{api=\"Fetch\"} 1\n",
            "tierlog_request_errors_total{api=\"Fetch\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 2\n",
            "tierlog_request_errors_total{api=\"Produce\",error=\"UNKNOWN_SERVER_ERROR\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(text.matches("tierlog_requests_total{").count(), 2, "{text}");
        assert_eq!(
            text.matches("tierlog_request_errors_total{").count(),
            2,
            "{text}"
        );
    }
}
