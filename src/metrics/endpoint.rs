//! The HTTP endpoint on `metrics_listen`: `GET /metrics` (the exposition,
//! OpenMetrics text), `GET /healthz` (the process is up), `GET /readyz`
//! (catalog open, partitions loaded, Kafka listener bound) and `GET /`
//! (the status page).
//!
//! Owns: [`Readiness`] (three flags the engine and the broker set), the
//! [`Endpoint`] (readiness plus the pages, attached once the engine is
//! open) and the request handling. Must never know the engine: pages are
//! render closures; and never make a probe wait on the engine (`/healthz`
//! and `/readyz` read atomics only).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Renders a page; `None` once the engine is gone.
pub type Render = dyn Fn() -> Option<String> + Send + Sync;

/// What `/readyz` checks. The engine sets the first two as it opens, the
/// broker the last when it accepts connections (and clears it when it
/// stops).
#[derive(Debug, Default)]
pub struct Readiness {
    catalog_open: AtomicBool,
    partitions_loaded: AtomicBool,
    listener_bound: AtomicBool,
}

impl Readiness {
    pub fn set_catalog_open(&self, v: bool) {
        self.catalog_open.store(v, Ordering::SeqCst);
    }

    pub fn set_partitions_loaded(&self, v: bool) {
        self.partitions_loaded.store(v, Ordering::SeqCst);
    }

    pub fn set_listener_bound(&self, v: bool) {
        self.listener_bound.store(v, Ordering::SeqCst);
    }

    /// Why the broker is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<&'static str> {
        if !self.catalog_open.load(Ordering::SeqCst) {
            Some("catalog not open")
        } else if !self.partitions_loaded.load(Ordering::SeqCst) {
            Some("partitions not loaded")
        } else if !self.listener_bound.load(Ordering::SeqCst) {
            Some("Kafka listener not bound")
        } else {
            None
        }
    }
}

/// An answer of one of the engine's routes.
pub struct Response {
    /// `200 OK`, `404 Not Found`, …
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

/// Answers `GET <path>?<query>` given the query (`""` without one); `None`
/// once the engine is gone. Runs on a blocking thread.
pub type Route = dyn Fn(&str) -> Option<Response> + Send + Sync;

/// The pages the engine renders.
pub struct Pages {
    /// The Prometheus exposition (`/metrics`).
    pub metrics: Box<Render>,
    /// The status page's HTML (`/`).
    pub status: Box<Render>,
    /// More paths the engine answers (`/v1/tier/status`), with their query.
    pub routes: Vec<(&'static str, Arc<Route>)>,
}

/// What the endpoint serves: probes from the start, pages once attached.
pub struct Endpoint {
    readiness: Arc<Readiness>,
    pages: RwLock<Option<Arc<Pages>>>,
}

impl Endpoint {
    /// An endpoint answering probes from `readiness`; `/metrics` and `/`
    /// answer 503 until [`Endpoint::attach`].
    pub fn new(readiness: Arc<Readiness>) -> Self {
        Endpoint {
            readiness,
            pages: RwLock::new(None),
        }
    }

    /// Serve `pages` from now on.
    pub fn attach(&self, pages: Pages) {
        *self.pages.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(pages));
    }

    fn pages(&self) -> Option<Arc<Pages>> {
        self.pages.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Largest request head the endpoint reads.
const MAX_HEAD: usize = 8 * 1024;

/// Serve the endpoint on `listener` until `shutdown` turns true, one
/// short-lived task per connection (`Connection: close`). Unknown paths
/// get 404, another method than GET (or HEAD) 405.
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoint: Arc<Endpoint>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "metrics endpoint ready (GET /metrics, /healthz, /readyz, / for the status page)"
    );
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint cannot accept");
                crate::clock::monotonic_sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            let answer =
                tokio::time::timeout(std::time::Duration::from_secs(10), answer(stream, endpoint))
                    .await;
            if let Ok(Err(e)) = answer {
                tracing::debug!(%peer, error = %e, "metrics request failed");
            }
        });
    }
}

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

async fn answer(mut stream: tokio::net::TcpStream, endpoint: Arc<Endpoint>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let unavailable = |why: &str| ("503 Service Unavailable", TEXT, format!("{why}\n"));
    // Pages read the partitions (locks, the catalog): off the runtime.
    let render = |status_page: bool| {
        let pages = endpoint.pages();
        async move {
            let pages = pages?;
            tokio::task::spawn_blocking(move || {
                if status_page {
                    (pages.status)()
                } else {
                    (pages.metrics)()
                }
            })
            .await
            .ok()
            .flatten()
        }
    };
    let (status, content_type, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/healthz") => ("200 OK", TEXT, "ok\n".to_string()),
        (b"GET" | b"HEAD", b"/readyz") => match endpoint.readiness.not_ready() {
            None => ("200 OK", TEXT, "ready\n".to_string()),
            Some(why) => unavailable(why),
        },
        (b"GET" | b"HEAD", b"/metrics") => match render(false).await {
            Some(text) => ("200 OK", super::EXPOSITION, text),
            None => unavailable("the engine is not open"),
        },
        (b"GET" | b"HEAD", b"/") => match render(true).await {
            Some(html) => ("200 OK", HTML, html),
            None => unavailable("the engine is not open"),
        },
        (_, b"/healthz" | b"/readyz" | b"/metrics" | b"/") => {
            ("405 Method Not Allowed", TEXT, "only GET\n".to_string())
        }
        _ => {
            let route = endpoint.pages().and_then(|p| {
                p.routes
                    .iter()
                    .find(|(at, _)| at.as_bytes() == path)
                    .map(|(_, r)| Arc::clone(r))
            });
            match (route, method) {
                (Some(route), b"GET" | b"HEAD") => {
                    let query = String::from_utf8_lossy(
                        target.splitn(2, |&b| b == b'?').nth(1).unwrap_or_default(),
                    )
                    .into_owned();
                    let answered = tokio::task::spawn_blocking(move || route(&query))
                        .await
                        .ok()
                        .flatten();
                    match answered {
                        Some(r) => (r.status, r.content_type, r.body),
                        None => unavailable("the engine is not open"),
                    }
                }
                (Some(_), _) => ("405 Method Not Allowed", TEXT, "only GET\n".to_string()),
                (None, _) => (
                    "404 Not Found",
                    TEXT,
                    "see /metrics, /healthz, /readyz, / or /v1/tier/status\n".to_string(),
                ),
            }
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != b"HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_first_missing_condition() {
        let r = Readiness::default();
        assert_eq!(r.not_ready(), Some("catalog not open"));
        r.set_catalog_open(true);
        assert_eq!(r.not_ready(), Some("partitions not loaded"));
        r.set_partitions_loaded(true);
        assert_eq!(r.not_ready(), Some("Kafka listener not bound"));
        r.set_listener_bound(true);
        assert_eq!(r.not_ready(), None);
    }
}
