//! Reading a broker's HTTP endpoint (its `metrics_listen` address) for
//! what the Kafka protocol does not carry: the log cleaner's state of each
//! partition of a compacted topic from `GET /metrics` (`tierlog topic
//! describe --metrics`), and `GET /v1/tier/status` (`tierlog tier status`).

use tierlog::{Error, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest exposition read.
const MAX_BODY: u64 = 64 << 20;

/// One partition's cleaning state as the broker exposes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleaning {
    pub dirty_ratio: f64,
    pub first_dirty_offset: i64,
    /// Engine-clock ms; -1: never cleaned.
    pub last_clean_ms: i64,
}

/// The exposition text of `GET http://<addr>/metrics`.
pub async fn metrics_text(addr: &str) -> Result<String, Error> {
    get(addr, "/metrics").await
}

/// The body of `GET http://<addr><target>` on the broker's metrics
/// endpoint; anything but 200 is an error carrying the status line and
/// the body (the broker's reason).
pub async fn get(addr: &str, target: &str) -> Result<String, Error> {
    let url = format!("http://{addr}{target}");
    let fail = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot {what} the broker's endpoint {url}: {e}"),
        )
    };
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| fail("connect to", e))?;
        stream
            .write_all(
                format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .map_err(|e| fail("send to", e))?;
        let mut response = Vec::new();
        stream
            .take(MAX_BODY)
            .read_to_end(&mut response)
            .await
            .map_err(|e| fail("read from", e))?;
        Ok::<_, Error>(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), get)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                format!("the broker's endpoint {url} did not answer in 30 s"),
            )
        })??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        let kind = if status.contains(" 404 ") {
            ErrorKind::NotFound
        } else {
            ErrorKind::Unavailable
        };
        return Err(Error::new(
            kind,
            format!("{url} answered '{status}': {}", body.trim()),
        ));
    }
    Ok(body.to_string())
}

/// The cleaning state of `topic`'s `partition` in `text`; `None` when the
/// broker reports none (not a compacted topic, or the partition offline).
pub fn cleaning(text: &str, topic: &str, partition: u32) -> Option<Cleaning> {
    // Label values escaped as the exposition escapes them.
    let topic = topic
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let sample = |name: &str| -> Option<&str> {
        let prefix = format!("{name}{{topic=\"{topic}\",partition=\"{partition}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    };
    Some(Cleaning {
        dirty_ratio: sample("tierlog_log_cleaner_dirty_ratio")?.parse().ok()?,
        first_dirty_offset: sample("tierlog_log_cleaner_first_dirty_offset")?
            .parse()
            .ok()?,
        last_clean_ms: sample("tierlog_log_cleaner_last_clean_timestamp_ms")?
            .parse()
            .ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_partitions_cleaning_state() {
        let text = "# TYPE tierlog_log_cleaner_dirty_ratio gauge\n\
            tierlog_log_cleaner_dirty_ratio{topic=\"t\",partition=\"0\"} 0.25\n\
            tierlog_log_cleaner_dirty_ratio{topic=\"t\",partition=\"1\"} 1\n\
            tierlog_log_cleaner_first_dirty_offset{topic=\"t\",partition=\"0\"} 42\n\
            tierlog_log_cleaner_first_dirty_offset{topic=\"t\",partition=\"1\"} 0\n\
            tierlog_log_cleaner_last_clean_timestamp_ms{topic=\"t\",partition=\"0\"} 1700000000000\n\
            tierlog_log_cleaner_last_clean_timestamp_ms{topic=\"t\",partition=\"1\"} -1\n";
        assert_eq!(
            cleaning(text, "t", 0),
            Some(Cleaning {
                dirty_ratio: 0.25,
                first_dirty_offset: 42,
                last_clean_ms: 1_700_000_000_000
            })
        );
        assert_eq!(cleaning(text, "t", 1).unwrap().last_clean_ms, -1);
        assert_eq!(cleaning(text, "t", 2), None);
        assert_eq!(cleaning(text, "t2", 0), None);
    }
}
