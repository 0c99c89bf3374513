//! What a client may make the server hold before it has shown a token (issue 16), and for how
//! long: every accepted TCP connection is read through a [`MeteredIo`] that shares a [`Meter`]
//! with whoever serves the connection.
//!
//! - **Deadlines.** An HTTP request must arrive within [`crate::limits::REQUEST_DEADLINE`] of the
//!   connection (or of its first byte, after an answered request on a kept-alive connection);
//!   after the WebSocket upgrade, a frame (or a fragmented message) that has started must
//!   complete within [`crate::limits::FRAME_DEADLINE`]. A connection past a deadline has its
//!   reads fail; the WebSocket transports then close it with 4408.
//! - **Budgets.** The bytes of an HTTP request not yet answered (against its address's budget
//!   only, so that a flood cannot fail everyone's probes and API calls) and, while a WebSocket has
//!   no accepted token ([`Meter::admit`] until [`Meter::authenticated`]), the bytes read from it that
//!   have not yet made up a whole message, and the messages waiting for a token (`collab`'s pre-authentication queues, which charge
//!   [`Meter::charge_pending`]), count against a server-wide [`Budget`] and the budget of the
//!   client's address. A socket that would pass either is closed with 4503; a new socket is
//!   refused with 4503 while either has no room for a handshake.
//!
//! Addresses are kept in memory only, as keys of the per-address budget, and never logged. This
//! module does not know WebSocket framing beyond one fact: a client's control frame (a Ping) of
//! `n` payload bytes takes `6 + n` bytes on the wire.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::documents::peer::{Delivery, Framing, Notice};
use crate::limits::Limits;

/// Which budget has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The server-wide budget.
    Server,
    /// The budget of the client's address.
    Address,
}

impl Busy {
    /// The close reason sent with [`debrief_proto::close::SERVER_BUSY`].
    pub fn reason(self) -> &'static str {
        match self {
            Busy::Server => {
                "server_busy: too much is waiting for authentication on this server; try again later"
            }
            Busy::Address => {
                "address_busy: too much is waiting for authentication from your address; try again later"
            }
        }
    }
}

/// Why a connection's reads were failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It would have passed a budget.
    Busy(Busy),
    /// A frame (or an HTTP request) did not complete in time.
    Timeout,
}

/// Bytes held for unauthenticated sockets, server-wide and per client address.
#[derive(Debug)]
pub struct Budget {
    total_limit: usize,
    address_limit: usize,
    admission: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Only addresses that hold something; an entry goes when its count returns to zero.
    by_address: HashMap<IpAddr, usize>,
}

impl Budget {
    /// The budgets of `limits`.
    pub fn new(limits: &Limits) -> Arc<Budget> {
        Arc::new(Budget {
            total_limit: limits.unauthenticated_bytes,
            address_limit: limits.unauthenticated_bytes_per_address,
            admission: limits.unauthenticated_admission_bytes,
            held: Mutex::new(Held::default()),
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes held server-wide right now.
    pub fn total(&self) -> usize {
        self.held().total
    }

    /// Whether both budgets have room for the handshake of a new socket from `ip`.
    fn has_room(&self, ip: IpAddr) -> Result<(), Busy> {
        let held = self.held();
        let mine = held.by_address.get(&ip).copied().unwrap_or(0);
        if mine + self.admission > self.address_limit {
            return Err(Busy::Address);
        }
        if held.total + self.admission > self.total_limit {
            return Err(Busy::Server);
        }
        Ok(())
    }

    /// Charges `n` bytes to `ip`'s budget and, with `server_wide`, to the server's.
    fn charge(&self, ip: IpAddr, n: usize, server_wide: bool) -> Result<(), Busy> {
        if n == 0 {
            return Ok(());
        }
        let mut held = self.held();
        let mine = held.by_address.get(&ip).copied().unwrap_or(0);
        if mine + n > self.address_limit {
            return Err(Busy::Address);
        }
        if server_wide {
            if held.total + n > self.total_limit {
                return Err(Busy::Server);
            }
            held.total += n;
        }
        *held.by_address.entry(ip).or_insert(0) += n;
        Ok(())
    }

    fn release(&self, ip: IpAddr, n: usize, server_wide: bool) {
        if n == 0 {
            return;
        }
        let mut held = self.held();
        if server_wide {
            held.total = held.total.saturating_sub(n);
        }
        if let Some(mine) = held.by_address.get_mut(&ip) {
            *mine = mine.saturating_sub(n);
            if *mine == 0 {
                held.by_address.remove(&ip);
            }
        }
    }
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain HTTP (or an upgrade request not yet answered).
    Http,
    /// A WebSocket without an accepted token: its reads count against the budgets.
    Unauthenticated,
    /// A WebSocket with an accepted token.
    Authenticated,
}

/// What one connection holds and since when; shared by its [`MeteredIo`] and its session.
#[derive(Debug)]
pub struct Meter {
    budget: Arc<Budget>,
    ip: IpAddr,
    limits: MeterLimits,
    state: Mutex<MeterState>,
}

#[derive(Debug, Clone, Copy)]
struct MeterLimits {
    request: std::time::Duration,
    frame: std::time::Duration,
}

#[derive(Debug)]
struct MeterState {
    mode: Mode,
    /// HTTP: when the request being read started (or the connection, for its first request).
    /// WebSocket: when the oldest byte not yet part of a whole message was read.
    since: Option<Instant>,
    /// WebSocket: bytes read that are not yet part of a whole message (an estimate that only
    /// errs by the bytes of the next frame read together with the end of the last one).
    partial: usize,
    /// Of `partial`, what is charged to the budgets (in HTTP, to the address's only).
    charged_partial: usize,
    /// Charged by the session for messages waiting for a token.
    charged_pending: usize,
    failure: Option<Failure>,
}

impl Meter {
    /// The meter of a connection from `ip`, accepted now.
    pub fn new(budget: Arc<Budget>, ip: IpAddr, limits: &Limits) -> Arc<Meter> {
        Arc::new(Meter {
            budget,
            ip,
            limits: MeterLimits {
                request: limits.request_deadline,
                frame: limits.frame_deadline,
            },
            state: Mutex::new(MeterState {
                mode: Mode::Http,
                since: Some(Instant::now()),
                partial: 0,
                charged_partial: 0,
                charged_pending: 0,
                failure: None,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection becomes a WebSocket that has not authenticated, if the budgets have room
    /// for its handshake; otherwise it should be closed with 4503 and the reason.
    pub fn admit(&self) -> Result<(), Busy> {
        // The upgrade request is answered: its bytes are no longer held.
        let mut state = self.state();
        state.since = None;
        state.partial = 0;
        let charged = std::mem::take(&mut state.charged_partial);
        drop(state);
        self.budget.release(self.ip, charged, false);
        self.budget.has_room(self.ip)?;
        self.state().mode = Mode::Unauthenticated;
        Ok(())
    }

    /// The connection is a WebSocket with an accepted token: nothing it reads counts against the
    /// budgets any more (messages waiting for a token still do, through
    /// [`Meter::charge_pending`]).
    pub fn authenticated(&self) {
        let mut state = self.state();
        let server_wide = state.mode != Mode::Http;
        if !server_wide {
            // The upgrade request is answered.
            state.since = None;
            state.partial = 0;
        }
        state.mode = Mode::Authenticated;
        let charged = std::mem::take(&mut state.charged_partial);
        drop(state);
        self.budget.release(self.ip, charged, server_wide);
    }

    /// Charges `n` bytes of messages that wait for a token.
    pub fn charge_pending(&self, n: usize) -> Result<(), Busy> {
        self.budget.charge(self.ip, n, true)?;
        self.state().charged_pending += n;
        Ok(())
    }

    /// Releases `n` bytes charged with [`Meter::charge_pending`].
    pub fn release_pending(&self, n: usize) {
        let mut state = self.state();
        let n = n.min(state.charged_pending);
        state.charged_pending -= n;
        drop(state);
        self.budget.release(self.ip, n, true);
    }

    /// A whole data message (binary, text or close) came out of the WebSocket: nothing read
    /// before it is held any more.
    pub fn message(&self) {
        let mut state = self.state();
        state.partial = 0;
        state.since = None;
        let charged = std::mem::take(&mut state.charged_partial);
        let server_wide = state.mode != Mode::Http;
        drop(state);
        self.budget.release(self.ip, charged, server_wide);
    }

    /// A client's control frame (Ping or Pong) with `payload` bytes came out of the WebSocket.
    /// It may sit between the fragments of a message, so only its own bytes are no longer held.
    pub fn control(&self, payload: usize) {
        let wire = CLIENT_CONTROL_HEADER + payload;
        let mut state = self.state();
        state.partial = state.partial.saturating_sub(wire);
        if state.partial == 0 {
            state.since = None;
        }
        let released = state.charged_partial.saturating_sub(state.partial);
        state.charged_partial -= released;
        let server_wide = state.mode != Mode::Http;
        drop(state);
        self.budget.release(self.ip, released, server_wide);
    }

    /// Why reads were failed, if they were.
    pub fn failure(&self) -> Option<Failure> {
        self.state().failure
    }

    /// When the connection's reads fail unless something completes first.
    fn deadline(&self) -> Option<Instant> {
        let state = self.state();
        let limit = match state.mode {
            Mode::Http => self.limits.request,
            Mode::Unauthenticated | Mode::Authenticated => self.limits.frame,
        };
        state.since.map(|since| since + limit)
    }

    fn fail(&self, failure: Failure) -> io::Error {
        let mut state = self.state();
        state.failure.get_or_insert(failure);
        io::Error::new(io::ErrorKind::TimedOut, "connection limit")
    }

    /// `n` bytes were read from the client.
    fn on_read(&self, n: usize) -> Result<(), Failure> {
        if n == 0 {
            return Ok(());
        }
        let mut state = self.state();
        state.since.get_or_insert_with(Instant::now);
        state.partial += n;
        if state.mode != Mode::Authenticated {
            // An HTTP request counts against its address only: a flood from elsewhere must not
            // fail health probes and REST calls.
            let server_wide = state.mode == Mode::Unauthenticated;
            if let Err(busy) = self.budget.charge(self.ip, n, server_wide) {
                state.failure.get_or_insert(Failure::Busy(busy));
                return Err(Failure::Busy(busy));
            }
            state.charged_partial += n;
        }
        Ok(())
    }

    /// Bytes were written to the client: in HTTP, the request being read was answered (its bytes
    /// are no longer held), and the next one's deadline starts with its first byte.
    fn on_write(&self) {
        let mut state = self.state();
        if state.mode == Mode::Http {
            state.since = None;
            state.partial = 0;
            let charged = std::mem::take(&mut state.charged_partial);
            drop(state);
            self.budget.release(self.ip, charged, false);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let server_wide = state.mode != Mode::Http;
        self.budget
            .release(self.ip, state.charged_partial, server_wide);
        self.budget.release(self.ip, state.charged_pending, true);
    }
}

/// A client's control frame: two header bytes and the four-byte mask (payloads are at most 125
/// bytes, so the length fits the header).
const CLIENT_CONTROL_HEADER: usize = 6;

/// A connection read through its [`Meter`]: reads fail once a deadline has passed or a budget
/// would be exceeded.
#[derive(Debug)]
pub struct MeteredIo {
    inner: TcpStream,
    meter: Arc<Meter>,
    /// Armed only while a deadline runs; boxed so that an idle connection keeps no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl MeteredIo {
    /// The connection's meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Whether the deadline in force has passed (and arms the timer that wakes the reader when
    /// it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.meter.deadline() else {
            self.timer = None;
            return false;
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for MeteredIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(failure) = this.meter.failure() {
            return Poll::Ready(Err(this.meter.fail(failure)));
        }
        if this.expired(cx) {
            return Poll::Ready(Err(this.meter.fail(Failure::Timeout)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                match this.meter.on_read(n) {
                    Ok(()) => {
                        // A deadline that starts with these bytes needs its timer polled.
                        let _ = this.expired(cx);
                        Poll::Ready(Ok(()))
                    }
                    Err(failure) => {
                        buf.set_filled(before);
                        Poll::Ready(Err(this.meter.fail(failure)))
                    }
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for MeteredIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.meter.on_write();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.meter.on_write();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The server's listener: sets `TCP_NODELAY` and gives every connection its [`Meter`].
#[derive(Debug)]
pub struct MeteredListener {
    inner: TcpListener,
    budget: Arc<Budget>,
    limits: Limits,
}

impl MeteredListener {
    /// Wraps `inner`; connections are metered against `budget`.
    pub fn new(inner: TcpListener, budget: Arc<Budget>, limits: Limits) -> MeteredListener {
        MeteredListener {
            inner,
            budget,
            limits,
        }
    }
}

impl axum::serve::Listener for MeteredListener {
    type Io = MeteredIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (MeteredIo, SocketAddr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // Nagle's algorithm meeting delayed ACKs costs ~40 ms per burst of small messages.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let meter = Meter::new(self.budget.clone(), addr.ip(), &self.limits);
        let io = MeteredIo {
            inner: tcp,
            meter,
            timer: None,
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// What a request knows of its connection: the client's address and the connection's meter
/// (as `ConnectInfo<Connection>`; [`crate::Server::serve`] also provides the address alone as
/// `ConnectInfo<SocketAddr>`).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address (never logged or stored).
    pub addr: SocketAddr,
    /// The connection's meter.
    pub meter: Arc<Meter>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, MeteredListener>>
    for Connection
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, MeteredListener>) -> Self {
        Connection {
            addr: *stream.remote_addr(),
            meter: stream.io().meter().clone(),
        }
    }
}

/// The framing of a connection whose token was let through provisionally (a review's document
/// on a cluster node that does not serve reviews; `docs/cluster.md`, "Reviews on one node at a
/// time"): the node that serves the document decides the token again, and only once that node
/// opened the document for the connection does the connection count as authenticated for this
/// node's budgets. A refusal leaves it unauthenticated, under the budgets, as a token refused
/// here would.
#[derive(Debug)]
pub struct Confirming<F> {
    /// The connection's own framing.
    pub inner: F,
    /// The connection's meter.
    pub meter: Arc<Meter>,
}

impl<F: Framing + 'static> Confirming<F> {
    /// The framing of a connection in its dialect `inner`: wrapped to confirm its meter when
    /// its grant was `provisional`, as it is otherwise.
    pub fn around(inner: F, meter: Option<&Arc<Meter>>, provisional: bool) -> Arc<dyn Framing> {
        match meter {
            Some(meter) if provisional => Arc::new(Confirming {
                inner,
                meter: meter.clone(),
            }),
            _ => Arc::new(inner),
        }
    }
}

impl<F: Framing> Framing for Confirming<F> {
    fn prefix(&self) -> &[u8] {
        self.inner.prefix()
    }

    fn notice(&self, notice: &Notice) -> Delivery {
        if let Notice::Opened(_) = notice {
            self.meter.authenticated();
        }
        self.inner.notice(notice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::access::{Access, Denied};

    fn limits(total: usize, per_address: usize) -> Limits {
        Limits {
            unauthenticated_bytes: total,
            unauthenticated_bytes_per_address: per_address,
            unauthenticated_admission_bytes: 10,
            ..Limits::default()
        }
    }

    #[test]
    fn budgets_hold_per_address_and_in_total_and_are_released_on_drop() {
        let limits = limits(100, 60);
        let budget = Budget::new(&limits);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let ma = Meter::new(budget.clone(), a, &limits);
        let mb = Meter::new(budget.clone(), b, &limits);
        ma.admit().expect("room");
        mb.admit().expect("room");
        assert_eq!(ma.on_read(50), Ok(()));
        assert_eq!(ma.on_read(11), Err(Failure::Busy(Busy::Address)));
        assert_eq!(mb.charge_pending(45), Ok(()));
        assert_eq!(budget.total(), 95);
        assert_eq!(mb.on_read(6), Err(Failure::Busy(Busy::Server)));
        let mc = Meter::new(budget.clone(), b, &limits);
        assert_eq!(mc.admit(), Err(Busy::Server));
        ma.message();
        assert_eq!(budget.total(), 45);
        assert_eq!(mc.admit(), Ok(()));
        drop(mb);
        assert_eq!(budget.total(), 0);
        assert!(budget.held().by_address.is_empty());
    }

    #[test]
    fn control_frames_release_only_their_own_bytes() {
        let limits = limits(1000, 1000);
        let budget = Budget::new(&limits);
        let m = Meter::new(budget.clone(), [127, 0, 0, 1].into(), &limits);
        m.admit().expect("room");
        // A lone Ping of 4 bytes: nothing is held after it.
        m.on_read(10).expect("room");
        m.control(4);
        assert_eq!(budget.total(), 0);
        assert!(m.deadline().is_none());
        // A fragment of 300 bytes, then a Ping: the fragment is still held, and timed.
        m.on_read(300).expect("room");
        m.on_read(6).expect("room");
        m.control(0);
        assert_eq!(budget.total(), 300);
        assert!(m.deadline().is_some());
        m.authenticated();
        assert_eq!(budget.total(), 0);
        assert!(
            m.deadline().is_some(),
            "frames are timed after authentication too"
        );
    }

    #[test]
    fn a_provisional_grant_authenticates_only_once_the_document_is_opened() {
        #[derive(Debug)]
        struct Plain;
        impl Framing for Plain {
            fn prefix(&self) -> &[u8] {
                &[]
            }
            fn notice(&self, _: &Notice) -> Delivery {
                Delivery::Nothing
            }
        }
        let limits = limits(1000, 1000);
        let budget = Budget::new(&limits);
        let m = Meter::new(budget.clone(), [127, 0, 0, 1].into(), &limits);
        m.admit().expect("room");
        m.on_read(300).expect("room");
        let framing = Confirming {
            inner: Plain,
            meter: m.clone(),
        };
        // Refused by the node serving the document: still held against the budgets.
        let refused = Denied {
            code: "invalid_token".into(),
            message: "no".to_owned(),
        };
        assert_eq!(
            framing.notice(&Notice::Withdrawn(refused)),
            Delivery::Nothing
        );
        assert_eq!(budget.total(), 300);
        assert_eq!(framing.notice(&Notice::Applied), Delivery::Nothing);
        assert_eq!(budget.total(), 300);
        // Opened there: authenticated here.
        assert_eq!(
            framing.notice(&Notice::Opened(Access::ReadOnly)),
            Delivery::Nothing
        );
        assert_eq!(budget.total(), 0);
    }
}
