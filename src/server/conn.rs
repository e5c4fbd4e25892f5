//! The listener under the routes: accepts TCP connections and serves HTTP/1.1 on each with
//! hyper, within bounds a hostile client cannot stretch.
//!
//! - At most `max_connections` connections at once (capped further by the process's open-file
//!   limit). When a new connection finds them all taken, the connection that has waited longest
//!   without a request in flight is closed to make room; only when every connection is busy is
//!   the newcomer refused (`503`, written without reading anything). So idle or half-sent
//!   connections can never lock out a probe or a sender that speaks promptly.
//! - A connection must deliver a request's complete headers within `header_read_timeout` of
//!   connecting, and the next request within `idle_timeout` of its previous response; otherwise
//!   it is closed. Handlers bound the time to read a body themselves ([`super::read_body`]).
//! - A long-lived response ([`LongLived`], the SSE stream) keeps its connection busy while it
//!   streams: it is bounded by its own subscriber limit instead, and ends on shutdown.
//! - On shutdown the listener closes; connections without a request in flight close at once,
//!   the others after their response; whatever is still open when the server is told to stop
//!   for good is dropped, so a half-sent request cannot hold the process.
//!
//! hyper 1's own `header_read_timeout` is not used: it also runs while a keep-alive connection
//! waits for its next request (`proto/h1/conn.rs`, `poll_read_head` is polled as soon as the
//! previous message is done), so it could not tell the two timeouts apart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router as Http;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// File descriptors kept back from the connection limit for everything else the process opens
/// (clients of the queue, the API server and the sinks, the listener, logs).
pub const RESERVED_FDS: u64 = 128;
/// The largest request head (request line and headers) read; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// What a connection refused at the limit is told, written once without reading its request.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nretry-after: 1\r\nconnection: close\r\n\r\n";
/// How often a connection with a request in flight looks whether it has become idle.
const BUSY_RECHECK: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bounds of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From accept to a complete request head.
    pub header_read_timeout: Duration,
    /// From a response to the next complete request head.
    pub idle_timeout: Duration,
}

impl Limits {
    /// `max_connections` capped to the open-file limit less [`RESERVED_FDS`] (at least 16), so
    /// that the listener evicts before `accept` would fail with `EMFILE`.
    pub fn capped_by(mut self, nofile: Option<u64>) -> Limits {
        if let Some(n) = nofile {
            let room =
                usize::try_from(n.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
            self.max_connections = self.max_connections.min(room);
        }
        self
    }
}

/// The soft limit on open files of this process (`Max open files` in `/proc/self/limits`;
/// `None` where there is no such file or the limit is unlimited).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One accepted connection, as the table and its own task see it.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// Requests whose head was read (the service was called).
    requests: AtomicU64,
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
    /// When the connection was accepted, or its last response produced.
    since: Mutex<Instant>,
    /// Cancelled to close the connection now.
    evict: CancellationToken,
}

impl Conn {
    fn since(&self) -> Instant {
        *self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the connection is due to close if no request starts: the head timeout for the
    /// first request, the idle timeout after a response.
    fn due(&self, limits: &Limits) -> Instant {
        let wait = if self.requests.load(Ordering::Acquire) == 0 {
            limits.header_read_timeout
        } else {
            limits.idle_timeout
        };
        self.since() + wait
    }
}

/// A request being served on a connection.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn begin(conn: &Arc<Conn>) -> InFlight {
        conn.requests.fetch_add(1, Ordering::AcqRel);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response extension: the response is a long-lived stream (`GET /v1/events`), and its
/// connection counts as busy until the body ends, so that neither the idle timeout nor eviction
/// at the connection limit cuts it. Other responses count as done once produced, so a client
/// that does not read a response cannot hold its connection busy.
#[derive(Debug, Clone, Copy)]
pub struct LongLived;

/// Ends `in_flight` now, or, for a [`LongLived`] response, when its body is dropped (sent to
/// the end, or the connection closed).
fn busy_while_streaming(
    rsp: axum::response::Response,
    in_flight: InFlight,
) -> axum::response::Response {
    use http_body_util::BodyExt;
    if rsp.extensions().get::<LongLived>().is_none() {
        drop(in_flight);
        return rsp;
    }
    rsp.map(|body| {
        axum::body::Body::new(body.map_frame(move |frame| {
            let _busy = &in_flight;
            frame
        }))
    })
}

/// The open connections, oldest first.
#[derive(Debug, Default)]
struct Table {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // A map of handles: a panic elsewhere cannot leave it half-updated.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Makes room for one more connection: removes and returns the connection that has waited
    /// longest without a request in flight, if any.
    fn evict_one(&self) -> Option<Arc<Conn>> {
        let mut conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| !c.busy())
            .min_by_key(|c| c.since())?
            .id;
        conns.remove(&victim)
    }
}

/// Serves `app` on `listener` until `stop`, then closes gracefully until `abort` (or until the
/// last connection closed).
pub async fn serve(
    listener: TcpListener,
    app: Http,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let table = Arc::new(Table::default());
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                metrics.http_accept_failed(&e);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        if table.len() >= limits.max_connections {
            match table.evict_one() {
                Some(victim) => {
                    victim.evict.cancel();
                    metrics.http_connection_closed("evicted");
                }
                None => {
                    // Every connection has a request in flight. Nonblocking: a client that does
                    // not read gets nothing rather than a task.
                    let _ = stream.try_write(REFUSED);
                    metrics.http_connection_closed("refused");
                    continue;
                }
            }
        }
        next_id += 1;
        let conn = Arc::new(Conn {
            id: next_id,
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
            evict: CancellationToken::new(),
        });
        table.lock().insert(conn.id, conn.clone());
        metrics.http_connections_open(table.len());
        tasks.spawn(connection(
            stream,
            conn,
            app.clone(),
            limits,
            table.clone(),
            metrics.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    // Idle connections close at once (`graceful_shutdown` on an idle HTTP/1 connection), the
    // others after their response; `abort` ends what is left.
    tokio::select! {
        _ = abort.cancelled() => {
            let left = tasks.len();
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            if left > 0 {
                metrics.http_connections_dropped_at_shutdown(left);
            }
        }
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
    metrics.http_connections_open(0);
}

async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    app: Http,
    limits: Limits,
    table: Arc<Table>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = InFlight::begin(&conn);
            let app = app.clone();
            async move {
                let rsp = app.oneshot(req.map(axum::body::Body::new)).await;
                Ok::<_, std::convert::Infallible>(match rsp {
                    Ok(rsp) => busy_while_streaming(rsp, in_flight),
                })
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let http = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    let mut closing = false;
    let reason = loop {
        // A busy connection is looked at again every second: its request may end meanwhile.
        let wake = if conn.busy() {
            Instant::now() + BUSY_RECHECK
        } else {
            conn.due(&limits)
        };
        tokio::select! {
            _ = http.as_mut() => break None,
            _ = conn.evict.cancelled() => break None,
            _ = stop.cancelled(), if !closing => {
                closing = true;
                if conn.busy() {
                    http.as_mut().graceful_shutdown();
                } else {
                    break Some("shutdown");
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                if !conn.busy() && Instant::now() >= conn.due(&limits) {
                    let first = conn.requests.load(Ordering::Acquire) == 0;
                    break Some(if first { "header_timeout" } else { "idle_timeout" });
                }
            }
        }
    };
    if let Some(reason) = reason {
        metrics.http_connection_closed(reason);
    }
    let mut conns = table.lock();
    conns.remove(&conn.id);
    let open = conns.len();
    drop(conns);
    metrics.http_connections_open(open);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert_eq!(parse_open_files_limit(""), None);
    }

    #[test]
    fn the_connection_limit_leaves_room_for_other_files() {
        let limits = Limits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        assert_eq!(limits.capped_by(Some(1024)).max_connections, 512);
        assert_eq!(limits.capped_by(Some(256)).max_connections, 128);
        assert_eq!(limits.capped_by(Some(64)).max_connections, 16);
        assert_eq!(limits.capped_by(None).max_connections, 512);
    }

    #[test]
    fn eviction_takes_the_longest_waiting_connection_without_a_request_in_flight() {
        let table = Table::default();
        let t0 = Instant::now();
        for (id, age, busy) in [(1, 30, true), (2, 20, false), (3, 10, false)] {
            let conn = Arc::new(Conn {
                id,
                requests: AtomicU64::new(0),
                in_flight: AtomicUsize::new(usize::from(busy)),
                since: Mutex::new(t0 - Duration::from_secs(age)),
                evict: CancellationToken::new(),
            });
            table.lock().insert(id, conn);
        }
        assert_eq!(table.evict_one().map(|c| c.id), Some(2));
        assert_eq!(table.evict_one().map(|c| c.id), Some(3));
        assert!(
            table.evict_one().is_none(),
            "a busy connection is never evicted"
        );
        assert_eq!(table.len(), 1);
    }
}
