//! Connections before they prove themselves: how many, from where, and for
//! how long.
//!
//! The webhook port has to be reachable by whoever sends alerts, so anyone
//! who can reach it can open connections and send nothing, or half a
//! request, before any credential is checked. Three rules keep that from
//! crowding out a real alert:
//!
//! - **A deadline.** A connection must send a whole request head within
//!   `header_timeout` of opening, or of its previous answer (keep-alive);
//!   otherwise it is closed. The body has its own limit, enforced where it
//!   is read (`body_timeout`).
//! - **A limit, with eviction.** At most `max_connections` at once, and
//!   `max_connections_per_ip` from one address. At a limit, a new
//!   connection closes the *oldest one that has not authenticated a
//!   request*, rather than being refused: a flood of idle connections
//!   cannot keep a sender that completes its request promptly out. Only
//!   when every connection is serving an authenticated request is the new
//!   one closed.
//! - **File descriptors.** The limit is kept under the process's open-file
//!   limit, leaving [`FD_RESERVE`] for the ledger, queue and store; if
//!   `accept` still fails for want of descriptors, the oldest
//!   unauthenticated connection makes room.
//!
//! The listener plugs into `axum::serve` ([`Guarded`]); handlers find their
//! connection's [`Peer`] in the request's extensions and call
//! [`Peer::authenticated`] once a credential checks out. The middleware
//! [`track`] moves each connection between its idle and request phases.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// 64 descriptors: the ledger (entries, checkpoints, lock), the queue, the
/// store's files and the SDKs' connection pools of the running jobs.
pub const FD_RESERVE: u64 = 64;
/// The fewest connections the descriptor budget is cut to, whatever the
/// open-file limit says.
const MIN_CONNECTIONS: usize = 8;

/// Connection limits and the head deadline.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max: usize,
    pub per_ip: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// `max` cut to what the open-file limit leaves after [`FD_RESERVE`].
    pub fn within_fd_limit(mut self) -> Self {
        if let Some(soft) = open_file_limit() {
            let budget = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
            let max = self.max.min(budget.max(MIN_CONNECTIONS));
            if max < self.max {
                tracing::info!(
                    configured = self.max,
                    open_files = soft,
                    max,
                    "connection limit lowered to fit the open-file limit"
                );
            }
            self.max = max;
            self.per_ip = self.per_ip.min(max);
        }
        self
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None`
/// where that cannot be read or says "unlimited".
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where a connection is.
const IDLE: u8 = 0;
/// A request head arrived; its credential is not yet checked.
const REQUEST: u8 = 1;
/// Serving a request whose credential checked out: never evicted.
const TRUSTED: u8 = 2;

/// One connection's shared state, between its IO, the registry and the handlers.
#[derive(Debug)]
struct ConnState {
    id: u64,
    ip: IpAddr,
    phase: AtomicU8,
    evicted: AtomicBool,
    /// When the connection is closed unless a request head arrives first.
    deadline: Mutex<Option<Instant>>,
    header_timeout: Duration,
    /// The connection's task, woken to notice an eviction or a new deadline.
    waker: AtomicWaker,
}

impl ConnState {
    fn set_deadline(&self, at: Option<Instant>) {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
        self.waker.wake();
    }

    fn deadline(&self) -> Option<Instant> {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn evictable(&self) -> bool {
        self.phase.load(Ordering::SeqCst) != TRUSTED
    }
}

/// The open connections, oldest first (ids only grow).
#[derive(Debug, Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the oldest unauthenticated connection `which` accepts; false
    /// when there is none.
    fn evict_oldest(
        conns: &mut BTreeMap<u64, Arc<ConnState>>,
        which: impl Fn(&ConnState) -> bool,
    ) -> bool {
        let victim = conns
            .values()
            .find(|c| c.evictable() && which(c))
            .map(|c| c.id);
        let Some(c) = victim.and_then(|id| conns.remove(&id)) else {
            return false;
        };
        c.evicted.store(true, Ordering::SeqCst);
        c.waker.wake();
        tracing::debug!(ip = %c.ip, "closed an unauthenticated connection to make room");
        true
    }
}

/// A listener that enforces [`Limits`]; give it to `axum::serve`.
#[derive(Debug)]
pub struct Guarded {
    listener: TcpListener,
    limits: Limits,
    registry: Arc<Registry>,
    next_id: u64,
}

impl Guarded {
    pub fn new(listener: TcpListener, limits: Limits) -> Self {
        Self {
            listener,
            limits,
            registry: Arc::default(),
            next_id: 0,
        }
    }

    /// Makes room for a connection from `ip` and registers it; `None` when
    /// every connection in the way is serving an authenticated request.
    fn admit(&mut self, ip: IpAddr) -> Option<Arc<ConnState>> {
        let mut conns = self.registry.conns();
        let from_ip = conns.values().filter(|c| c.ip == ip).count();
        if from_ip >= self.limits.per_ip && !Registry::evict_oldest(&mut conns, |c| c.ip == ip) {
            return None;
        }
        if conns.len() >= self.limits.max && !Registry::evict_oldest(&mut conns, |_| true) {
            return None;
        }
        self.next_id += 1;
        let c = Arc::new(ConnState {
            id: self.next_id,
            ip,
            phase: AtomicU8::new(IDLE),
            evicted: AtomicBool::new(false),
            deadline: Mutex::new(Some(Instant::now() + self.limits.header_timeout)),
            header_timeout: self.limits.header_timeout,
            waker: AtomicWaker::new(),
        });
        conns.insert(c.id, c.clone());
        Some(c)
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e, &self.registry).await;
                    continue;
                }
            };
            let Some(state) = self.admit(addr.ip()) else {
                tracing::warn!(ip = %addr.ip(), "connection refused: every slot serves an authenticated request");
                continue;
            };
            let io = GuardedIo {
                inner: stream,
                state,
                registry: self.registry.clone(),
                sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
                armed: None,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// After a failed `accept`: out of descriptors, close the oldest
/// unauthenticated connection (its task closes the socket on its next
/// poll); anything else, a short pause so a persistent error does not spin.
async fn accept_failed(e: &io::Error, registry: &Registry) {
    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if out_of_fds {
        let evicted = Registry::evict_oldest(&mut registry.conns(), |_| true);
        tracing::warn!(evicted, "out of file descriptors accepting a connection");
        tokio::time::sleep(Duration::from_millis(if evicted { 5 } else { 100 })).await;
        return;
    }
    if !matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        tracing::warn!(error = %e, "cannot accept a connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection's socket, closed (an error on its next read or write)
/// when evicted or past its deadline.
pub struct GuardedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// The deadline `sleep` is set to.
    armed: Option<Instant>,
}

impl std::fmt::Debug for GuardedIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedIo")
            .field("ip", &self.state.ip)
            .finish_non_exhaustive()
    }
}

impl GuardedIo {
    /// `Err` when the connection is to close.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.waker.register(cx.waker());
        if self.state.evicted.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for another connection",
            ));
        }
        let Some(at) = self.state.deadline() else {
            return Ok(());
        };
        if self.armed != Some(at) {
            self.sleep.as_mut().reset(at);
            self.armed = Some(at);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no whole request head in time",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        let mut conns = self.registry.conns();
        if conns
            .get(&self.state.id)
            .is_some_and(|c| Arc::ptr_eq(c, &self.state))
        {
            conns.remove(&self.state.id);
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The connection a request came on, as handlers see it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    state: Arc<ConnState>,
}

impl Peer {
    /// The request's credential checked out: the connection is no longer
    /// closed to make room for others.
    pub fn authenticated(&self) {
        self.state.phase.store(TRUSTED, Ordering::SeqCst);
    }

    /// Closed to make room, while its request was being read.
    pub fn evicted(&self) -> bool {
        self.state.evicted.load(Ordering::SeqCst)
    }

    fn request_started(&self) {
        self.state.phase.store(REQUEST, Ordering::SeqCst);
        // The body's own limit applies from here, where it is read.
        self.state.set_deadline(None);
    }

    fn request_ended(&self) {
        self.state.phase.store(IDLE, Ordering::SeqCst);
        // The answer must be taken and the next head sent within the limit.
        self.state
            .set_deadline(Some(Instant::now() + self.state.header_timeout));
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Guarded>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Guarded>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            state: stream.io().state.clone(),
        }
    }
}

/// Middleware: a request's connection leaves its idle deadline while the
/// request is served, and gets it back once the answer is handed over.
pub async fn track(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map(|c| c.0.clone());
    if let Some(p) = &peer {
        p.request_started();
    }
    let response = next.run(request).await;
    if let Some(p) = &peer {
        p.request_ended();
    }
    response
}

/// The peer of a request, when it came through a [`Guarded`] listener.
pub fn peer(extensions: &axum::http::Extensions) -> Option<&Peer> {
    extensions
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map(|c| &c.0)
}
