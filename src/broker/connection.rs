//! One client connection: reading frames (with read-ahead, the per-connection
//! and broker-wide byte budgets, and the read timeouts), handing each to
//! `handle` in order and writing the responses in order.
//!
//! Owns the connection's timers: a connection with no request in flight
//! and nothing read or written for `connections.max.idle.ms` is closed
//! (Kafka's idle expiry), and a frame begun must arrive whole within
//! `request_read_timeout_ms` (counted from its first byte for the size
//! prefix, and again from when its body may be read, so time spent waiting
//! for the broker's byte budget is not the client's), else the connection
//! is closed and the bytes it reserved given back. Must never wait on a
//! client without one of these bounds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::quota_manager::ConnectionQuotaCache;
use super::records_send::SocketWriter;
use super::sasl::{self, Gate, Session};
use super::throttling::{self, RequestQuota};
use super::{codec, handle, logging, ConnError, Ctx};
use crate::clock::{monotonic_now, monotonic_sleep_until};

/// Frames read ahead of the one being handled, per connection: reading the
/// next request overlaps handling the current one, while responses still go
/// out one at a time, in order.
const READ_AHEAD: usize = 4;

/// Bytes of requests a connection may hold at once (read ahead, being
/// handled): a frame waits for its share before its body is read, and a
/// frame at or above this size takes all of it. Small pipelined requests
/// flow freely; large ones are read one at a time, so a connection pins
/// about one `socket.request.max.bytes`, not `READ_AHEAD + 2` of them.
const READ_AHEAD_BYTES: usize = 4 << 20;

/// What the reader and the handler loop share about the connection's
/// activity, for the idle timer.
#[derive(Default)]
struct Activity {
    /// Frames read and not yet answered (read ahead or being handled).
    in_flight: AtomicUsize,
    /// Bumped each time a request is answered.
    answered: AtomicU64,
}

/// Serve a connection of a PLAINTEXT or SASL_PLAINTEXT listener.
pub(super) async fn plain(
    ctx: Arc<Ctx>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> std::result::Result<(), ConnError> {
    let session = Session::new(&ctx.security, None);
    let (reader, writer) = stream.into_split();
    connection(ctx, reader, writer, session, peer, shutdown).await
}

/// Serve a connection of an SSL or SASL_SSL listener: the TLS handshake
/// (within `request_read_timeout_ms`), then requests inside TLS. A client
/// that is not speaking TLS (plaintext Kafka bytes) fails the handshake
/// and is closed; nothing of it reaches the request loop.
pub(super) async fn tls(
    ctx: Arc<Ctx>,
    config: Arc<rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> std::result::Result<(), ConnError> {
    let deadline = monotonic_now() + Duration::from_millis(ctx.settings.request_read_timeout_ms);
    let accepted = tokio::select! {
        r = tokio_rustls::TlsAcceptor::from(config).accept(stream) => r.map_err(|e| e.to_string()),
        _ = monotonic_sleep_until(deadline) => Err("TLS handshake not finished within request_read_timeout_ms".to_string()),
        _ = shutdown.changed() => return Ok(()),
    };
    let stream = match accepted {
        Ok(s) => s,
        Err(reason) => {
            ctx.engine.metrics().tls_handshake_failures.inc();
            if let Some(suppressed) = ctx.warn_admit() {
                tracing::warn!(%peer, listener = %ctx.security.protocol, reason = %logging::escape(&reason), suppressed, "TLS handshake failed");
            }
            return Err(ConnError::Tls(reason));
        }
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| crate::security::principal::subject_name(cert))
        .map(|name| format!("User:{name}"));
    let session = Session::new(&ctx.security, principal);
    let (reader, writer) = tokio::io::split(stream);
    connection(ctx, reader, writer, session, peer, shutdown).await
}

async fn connection<R, W>(
    ctx: Arc<Ctx>,
    mut reader: R,
    mut writer: W,
    mut session: Session,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> std::result::Result<(), ConnError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: SocketWriter + Send,
{
    let metrics = Arc::clone(ctx.engine.metrics());
    metrics.connections_opened.inc();
    let closed_metrics = Arc::clone(&metrics);
    let _closed = OnDrop(move || {
        closed_metrics.connections_closed.inc();
    });
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel(READ_AHEAD);
    // Turns true when the reader sees the client leave (end of stream or a
    // socket error): the request being handled is then abandoned.
    let (gone_tx, mut gone) = watch::channel(false);
    let max = ctx.settings.max_request_bytes;
    // Before authentication a frame may be at most
    // sasl.server.max.receive.size (Kafka's cap on what an unauthenticated
    // client can make the broker buffer).
    let authenticated = Arc::clone(&session.authenticated);
    let max_unauthenticated = ctx.security.max_unauthenticated_bytes.min(max);
    let idle = Duration::from_millis(ctx.settings.connections_max_idle_ms);
    let read_timeout = Duration::from_millis(ctx.settings.request_read_timeout_ms);
    let activity = Arc::new(Activity::default());
    let per_connection = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_BYTES));
    let reader_ctx = Arc::clone(&ctx);
    let reader_activity = Arc::clone(&activity);
    let read_ahead = tokio::spawn(async move {
        loop {
            let max = if authenticated.load(Ordering::SeqCst) {
                max
            } else {
                max_unauthenticated
            };
            let frame =
                match next_frame_size(&mut reader, max, idle, read_timeout, &reader_activity).await
                {
                    Ok(Some(size)) => {
                        let share = size.clamp(1, READ_AHEAD_BYTES) as u32;
                        let Ok(permit) =
                            Arc::clone(&per_connection).acquire_many_owned(share).await
                        else {
                            return;
                        };
                        // Room in the broker-wide budget before a byte of the
                        // body is allocated or read.
                        let Some(mut reserved) = reader_ctx.budget.reserve(size).await else {
                            return;
                        };
                        reserved.buffering(size);
                        let deadline = monotonic_now() + read_timeout;
                        tokio::select! {
                            body = codec::read_frame_body(&mut reader, size) => {
                                body.map(|body| Some((body, (permit, reserved))))
                            }
                            _ = monotonic_sleep_until(deadline) => Err(ConnError::ReadTimeout {
                                what: "request body",
                                ms: read_timeout.as_millis() as u64,
                            }),
                        }
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
            if matches!(frame, Ok(None) | Err(ConnError::Io(_))) {
                let _ = gone_tx.send(true);
            }
            match &frame {
                Ok(Some(_)) => {
                    reader_activity.in_flight.fetch_add(1, Ordering::SeqCst);
                }
                Err(ConnError::Idle { .. }) => {
                    reader_ctx.engine.metrics().connections_idle_closed.inc();
                }
                Err(ConnError::ReadTimeout { .. }) => {
                    reader_ctx.engine.metrics().request_read_timeouts.inc();
                }
                _ => {}
            }
            let end = !matches!(frame, Ok(Some(_)));
            if frames_tx.send(frame).await.is_err() || end {
                return;
            }
        }
    });
    // The reader ends with the connection: the handler loop owns its fate.
    let _abort_reader = AbortOnDrop(read_ahead);
    // What the client quotas that apply to this connection are, until
    // they change (quota_manager.rs).
    let quota_cache = Arc::new(std::sync::Mutex::new(ConnectionQuotaCache::default()));
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(frame) = frame else { return Ok(()) };
        // The reservations (this frame's share of READ_AHEAD_BYTES and of
        // queued.max.request.bytes) are held until its response is written.
        let frame = frame.inspect_err(|e| {
            if !matches!(e, ConnError::Io(_) | ConnError::Idle { .. }) {
                if let Some(suppressed) = ctx.warn_admit() {
                    tracing::warn!(%peer, error = %logging::escape(&e.to_string()), suppressed, "closing connection");
                }
            }
        })?;
        let Some((mut frame, _reserved)) = frame else {
            return Ok(()); // clean EOF
        };
        // A JoinGroup or SyncGroup may be held for a whole rebalance: a
        // shutdown must not wait for it. Every other request finishes and
        // is answered (a produce that was appended gets its ack).
        let api_key = (frame.len() >= 2).then(|| i16::from_be_bytes([frame[0], frame[1]]));
        let held =
            api_key == Some(ApiKey::JoinGroup as i16) || api_key == Some(ApiKey::SyncGroup as i16);
        // A request whose client left is abandoned at its next await (a
        // DeleteGroups between two groups), except a Produce: its records
        // are appended as Kafka would (acks=0 clients leave at once).
        let abandonable = api_key != Some(ApiKey::Produce as i16);
        // SASL requests are answered here; on a SASL listener nothing
        // else but ApiVersions passes before authentication.
        let handled = match sasl::gate(&ctx, &mut session, &mut frame, peer).await {
            Ok(Gate::Pass) => None,
            Ok(Gate::Answer { bytes, close }) => Some((bytes, close)),
            Err(e) => {
                if let Some(suppressed) = ctx.warn_admit() {
                    tracing::warn!(%peer, error = %logging::escape(&e.to_string()), suppressed, "closing connection");
                }
                return Err(e);
            }
        };
        if let Some((bytes, close)) = handled {
            codec::write_frame(&mut writer, &bytes).await?;
            if close {
                return Err(ConnError::Unauthenticated(
                    "SASL authentication failed or out of order".to_string(),
                ));
            }
            activity.answered.fetch_add(1, Ordering::SeqCst);
            activity.in_flight.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let version = (frame.len() >= 4).then(|| i16::from_be_bytes([frame[2], frame[3]]));
        // Without any client quota configured (the default) a request
        // gets no quota scope and costs nothing here.
        let quota = ctx.quotas.any_enabled().then(|| {
            Arc::new(RequestQuota::new(
                session.principal.as_deref(),
                &frame,
                Arc::clone(&quota_cache),
            ))
        });
        let handled = tokio::select! {
            biased;
            r = RequestQuota::scope(
                quota.as_ref(),
                handle(&ctx, &mut frame, peer, session.principal.as_deref().unwrap_or("User:ANONYMOUS")),
            ) => r,
            _ = client_gone(&mut gone), if abandonable => {
                metrics.requests_abandoned.inc();
                return Ok(());
            }
            _ = shutdown.changed(), if held => return Ok(()),
        };
        let response = match handled {
            Ok(r) => r,
            Err(e) => {
                if let Some(suppressed) = ctx.warn_admit() {
                    tracing::warn!(%peer, error = %logging::escape(&e.to_string()), suppressed, "closing connection");
                }
                return Err(e);
            }
        };
        // Counted against the client's quotas (when `respond` did not: an
        // acks=0 Produce has no response), and held back if over them:
        // a KIP-219 client gets its response now and nothing more is
        // handled until the throttle time is up (Kafka mutes the
        // channel); an older client gets its response only then.
        let throttle_ms = quota
            .as_ref()
            .map_or(0, |q| q.finish(&ctx.quotas, &metrics, 0).max_ms());
        let client_throttles =
            throttling::client_side_throttle(api_key.unwrap_or(-1), version.unwrap_or(-1));
        let throttle = Duration::from_millis(throttle_ms);
        if throttle_ms > 0
            && !client_throttles
            && response.is_some()
            && !hold(throttle, &mut shutdown, &mut gone).await
        {
            return Ok(());
        }
        if let Some(response) = &response {
            codec::write_response(&mut writer, response).await?;
        }
        if throttle_ms > 0
            && (client_throttles || response.is_none())
            && !hold(throttle, &mut shutdown, &mut gone).await
        {
            return Ok(());
        }
        activity.answered.fetch_add(1, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wait out a quota throttle; `false` when the broker shuts down or the
/// client leaves meanwhile (the connection then ends).
async fn hold(
    throttle: Duration,
    shutdown: &mut watch::Receiver<bool>,
    gone: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = crate::clock::monotonic_sleep(throttle) => true,
        _ = shutdown.changed() => false,
        _ = client_gone(gone) => false,
    }
}

/// The next frame's size prefix, `None` on a clean end of stream between
/// frames. Waits for its first byte while the connection is busy (a request
/// in flight) or has answered one within `idle`; the rest of the prefix
/// must follow within `read_timeout`.
async fn next_frame_size<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    idle: Duration,
    read_timeout: Duration,
    activity: &Activity,
) -> Result<Option<usize>, ConnError> {
    let mut first = [0u8; 1];
    loop {
        let answered = activity.answered.load(Ordering::SeqCst);
        let deadline = monotonic_now() + idle;
        tokio::select! {
            // `read` is cancel-safe: a byte is either returned or left unread.
            n = reader.read(&mut first) => {
                if n? == 0 {
                    return Ok(None);
                }
                break;
            }
            _ = monotonic_sleep_until(deadline) => {
                let busy = activity.in_flight.load(Ordering::SeqCst) > 0
                    || activity.answered.load(Ordering::SeqCst) != answered;
                if !busy {
                    return Err(ConnError::Idle {
                        ms: idle.as_millis() as u64,
                    });
                }
            }
        }
    }
    let mut rest = [0u8; 3];
    let deadline = monotonic_now() + read_timeout;
    tokio::select! {
        r = reader.read_exact(&mut rest) => {
            r?; // an end of stream here is the client leaving, as anywhere
        }
        _ = monotonic_sleep_until(deadline) => {
            return Err(ConnError::ReadTimeout {
                what: "request size",
                ms: read_timeout.as_millis() as u64,
            });
        }
    }
    let prefix = [first[0], rest[0], rest[1], rest[2]];
    codec::frame_size(prefix, max).map(Some)
}

/// Resolves once the reader has seen the client leave; never if the
/// reader ended another way.
async fn client_gone(gone: &mut watch::Receiver<bool>) {
    if gone.wait_for(|g| *g).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs a closure when dropped (however the connection ends).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
