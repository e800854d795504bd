//! The accept loop, with the limits a service facing a network needs: a deadline on reading a
//! request's headers (which also closes idle keep-alive connections), a cap on open connections
//! sized on the descriptors the process may open, a bound per client address, and a bounded drain
//! at shutdown. `axum::serve` has none of them, so a few hundred clients that never finish a
//! request could hold every file descriptor and keep SIGTERM waiting forever.
//!
//! When there is no room, a new connection takes the place of one that waits for a request (see
//! [`slots`]): a client re-opening half-sent requests as fast as it can only displaces its own,
//! and `/healthz` and the API keep answering everyone else, and itself.

mod slots;
mod tally;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use slots::{Admission, Client, Slots, Ticket};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tally::Tally;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Descriptors kept for everything but client connections: the database pool (up to 9
/// connections on PostgreSQL, a database, journal and shared-memory file on SQLite), calls to
/// Brivo and mail, the listener, standard streams, the runtime's own, and in `doorsync demo` the
/// emulator's end of each Brivo call.
pub const RESERVED_DESCRIPTORS: u64 = 64;
/// Connections beyond this are not worth more descriptors: each costs buffers, and a door-access
/// service's clients (a platform, a dashboard, members' phones) need far fewer.
pub const MOST_CONNECTIONS: usize = 8192;
/// A cap below this leaves too little room to be useful; the process is told at start.
pub const FEWEST_CONNECTIONS: usize = 16;
/// The default bound of connections per client address.
pub const PER_CLIENT: usize = 32;
/// Accept failures and refused connections are logged once per interval, with a count.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Out of descriptors, accepting again at once would only fail again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long a new connection waits for a displaced one to close; a displaced connection is not in
/// a request, so it closes as soon as its task runs.
const ROOM_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must send a request's headers within this time of connecting or of its last
    /// response; otherwise the connection is closed.
    pub header_read_timeout: Duration,
    /// At most this many connections are open; beyond it, a new one takes the place of one waiting
    /// for a request, or is closed at once.
    pub max_connections: usize,
    /// At most this many from one client address (IPv6: one /64).
    pub per_client: usize,
    /// At shutdown, requests in flight get this long to finish.
    pub drain_timeout: Duration,
}

/// What [`crate::serve`] uses, in tests that start the router in process: no bound per address,
/// since everything there comes from 127.0.0.1, some of it many requests at once.
/// `doorsync serve` sizes its own with [`Limits::for_descriptors`].
impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            per_client: 512,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The limits for a process that may open `descriptors` files (`None`: no limit).
    pub fn for_descriptors(descriptors: Option<u64>, per_client: usize) -> Limits {
        let room = descriptors.map_or(u64::MAX, |d| d.saturating_sub(RESERVED_DESCRIPTORS));
        let max_connections = usize::try_from(room)
            .unwrap_or(usize::MAX)
            .clamp(FEWEST_CONNECTIONS, MOST_CONNECTIONS);
        Limits {
            max_connections,
            per_client: per_client.clamp(1, max_connections),
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// The descriptors that the largest cap needs, for raising the process's limit.
    pub fn descriptors_wanted() -> u64 {
        MOST_CONNECTIONS as u64 + RESERVED_DESCRIPTORS
    }
}

/// The router for one connection: the client's address in each request's extensions (as
/// `ConnectInfo`, for the dashboard's sign-in rate limit), and the connection marked busy from a
/// request's headers until its response is written, so that it is never displaced mid-request.
fn connection_service(
    app: Router,
    peer: SocketAddr,
    ticket: Arc<Ticket>,
) -> impl tower::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let request = ticket.request_started();
        let app = app.clone();
        async move {
            let res = app.oneshot(req).await?;
            // The body is dropped once written: that ends the request.
            Ok(res.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _in_progress = &request;
                    frame
                }))
            }))
        }
    })
}

/// Serves one connection until it ends, it is displaced, or the server stops. Displaced or
/// stopped while waiting for a request, it is closed at once; in the middle of one, after it.
async fn drive(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    ticket: Ticket,
    mut displaced: oneshot::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let ticket = Arc::new(ticket);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(connection_service(app, peer, ticket.clone())),
        );
    let mut conn = std::pin::pin!(conn);
    // A request already in the buffer is taken before the connection may be displaced.
    let first = std::future::poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx))).await;
    if let Poll::Ready(ended) = first {
        return closed(ended);
    }
    ticket.read_once(Instant::now());
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => return closed(ended),
            _ = &mut displaced, if !closing => {}
            _ = stop.wait_for(|stop| *stop), if !closing => {}
        }
        if !ticket.busy() {
            return;
        }
        conn.as_mut().graceful_shutdown();
        closing = true;
    }
}

fn closed(ended: hyper::Result<()>) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// The client holding the most connections and how many, for the log.
fn busiest(slots: &Slots) -> (String, usize) {
    slots
        .busiest()
        .map_or((String::new(), 0), |(c, n)| (c.to_string(), n))
}

/// The accept loop's log lines, one per interval however often things happen.
struct Pressure {
    accept_failed: Tally,
    refused: Tally,
    displaced: Tally,
}

impl Pressure {
    fn new() -> Pressure {
        Pressure {
            accept_failed: Tally::new(LOG_INTERVAL),
            refused: Tally::new(LOG_INTERVAL),
            displaced: Tally::new(LOG_INTERVAL),
        }
    }

    fn accept_failed(&mut self, e: &std::io::Error, shed: Option<Client>) {
        if let Some(n) = self.accept_failed.count(Instant::now()) {
            let closed_a_waiting_one_of = shed.map(|c| c.to_string()).unwrap_or_default();
            tracing::warn!(error = %e, times = n, within = ?LOG_INTERVAL, closed_a_waiting_one_of, "accept failed");
        }
    }

    fn refused(&mut self, slots: &Slots, limits: &Limits) {
        if let Some(n) = self.refused.count(Instant::now()) {
            Self::log_refused(n, slots, limits);
        }
    }

    fn log_refused(n: u64, slots: &Slots, limits: &Limits) {
        let (busiest, holds) = busiest(slots);
        tracing::warn!(
            refused = n,
            within = ?LOG_INTERVAL,
            max_connections = limits.max_connections,
            per_client = limits.per_client,
            busiest,
            holds,
            "connections refused: every one open is in a request or still being read"
        );
    }

    fn displaced(&mut self, slots: &Slots, limits: &Limits) {
        if let Some(n) = self.displaced.count(Instant::now()) {
            Self::log_displaced(n, slots, limits);
        }
    }

    fn log_displaced(n: u64, slots: &Slots, limits: &Limits) {
        let (busiest, holds) = busiest(slots);
        tracing::warn!(
            closed = n,
            within = ?LOG_INTERVAL,
            open = slots.open(),
            max_connections = limits.max_connections,
            per_client = limits.per_client,
            busiest,
            holds,
            "connection limits reached: connections waiting for a request closed for newer ones"
        );
    }

    /// What was counted and not yet said, once its interval has passed.
    fn flush(&mut self, slots: &Slots, limits: &Limits) {
        let now = Instant::now();
        if let Some(n) = self.accept_failed.due(now) {
            tracing::warn!(times = n, within = ?LOG_INTERVAL, "accept failed");
        }
        if let Some(n) = self.refused.due(now) {
            Self::log_refused(n, slots, limits);
        }
        if let Some(n) = self.displaced.due(now) {
            Self::log_displaced(n, slots, limits);
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Slots::new(limits.max_connections, limits.per_client);
    let (stopping, stop) = watch::channel(false);
    let mut pressure = Pressure::new();
    let mut tick = tokio::time::interval(LOG_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically out of descriptors: make room and back off rather than spin.
                        let shed = slots.shed_one();
                        pressure.accept_failed(&e, shed);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                match slots.admit(Client::of(peer.ip()), ROOM_WAIT).await {
                    Admission::Refused => {
                        drop(stream);
                        pressure.refused(&slots, &limits);
                    }
                    Admission::Admitted { ticket, leave, displaced } => {
                        if displaced.is_some() {
                            pressure.displaced(&slots, &limits);
                        }
                        tokio::spawn(drive(stream, peer, app.clone(), limits, ticket, leave, stop.clone()));
                        // Let the connection be read once before accepting more: a flood would
                        // otherwise fill the table with connections not yet read, which cannot be
                        // displaced, and refuse everyone else.
                        tokio::task::yield_now().await;
                    }
                }
            }
            _ = tick.tick() => pressure.flush(&slots, &limits),
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(stop);
    let _ = stopping.send(true);
    // Each connection holds a receiver: all are gone once every connection has ended.
    if tokio::time::timeout(limits.drain_timeout, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            after = ?limits.drain_timeout,
            "requests still in flight at shutdown were cut off"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_rest_of_the_process() {
        let at = |d| Limits::for_descriptors(d, PER_CLIENT).max_connections;
        assert_eq!(at(Some(256)), 192);
        assert_eq!(at(Some(1024)), 960);
        assert_eq!(at(Some(70)), FEWEST_CONNECTIONS);
        assert_eq!(at(Some(1 << 20)), MOST_CONNECTIONS);
        assert_eq!(at(None), MOST_CONNECTIONS);
        assert_eq!(
            Limits::for_descriptors(Some(70), 100).per_client,
            FEWEST_CONNECTIONS
        );
    }
}
