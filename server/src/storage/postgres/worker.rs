//! The database thread: one connection, group commits, the synchronous calls, reconnection.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};

use super::{lock, Call, CompactInput, FlushWaiter, Shared};
use crate::storage::types::{StoreError, StoredDoc};

/// The tables, created when missing (see `schema.sql`).
const SCHEMA: &str = include_str!("schema.sql");

/// Serialises schema changes between nodes starting at once (any constant both sides agree on).
const SCHEMA_LOCK: i64 = 0x6465_6272_6965_6601;

/// Held (session-level) by the one Debrief that uses a database in single-node mode, on every
/// connection it makes: a second server started on the same database by mistake refuses to
/// start instead of taking its documents and overwriting its metadata.
const SINGLE_NODE_LOCK: i64 = 0x6465_6272_6965_6602;

/// How long a first connection waits for [`SINGLE_NODE_LOCK`] before refusing to start: a
/// server restarted at once after a crash may find the old session not yet ended.
const LOCK_PATIENCE: Duration = Duration::from_secs(5);

/// How a new connection takes [`SINGLE_NODE_LOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// Alone (one server per database): any other holder is an error.
    Exclusive,
    /// Shared with the other nodes of a cluster: a single-node server that holds it alone is an
    /// error, and so the cluster's nodes refuse such a server as it refuses them. Which node
    /// serves reviews is decided by the review role (`PgStore::take_reviews`), not by the lock.
    Shared,
}

/// The one-line reason a server does not start (or stops serving) when another holds
/// [`SINGLE_NODE_LOCK`].
const ANOTHER_DEBRIEF: &str = "another Debrief uses this database";

/// A commit slower than this is logged: it delays every relay and acknowledgement it covers.
const SLOW_COMMIT: Duration = Duration::from_millis(50);

/// The first wait before connecting again after a connection was lost; doubled after each
/// failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How often an idle connection is checked, so that the readiness probe notices a database
/// that went away while nothing was written.
const IDLE_CHECK: Duration = Duration::from_secs(2);

const INSERT_RECORDS: &str = "INSERT INTO records (name, seq, record) \
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[]) \
     ON CONFLICT (name, seq) DO UPDATE SET record = EXCLUDED.record";

const UPSERT_META: &str = "INSERT INTO meta (tree, key, value) \
     SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";

const DELETE_META: &str = "DELETE FROM meta \
     WHERE (tree, key) IN (SELECT * FROM unnest($1::text[], $2::bytea[]))";

struct Conn {
    client: Client,
    task: JoinHandle<()>,
    insert_records: Statement,
    upsert_meta: Statement,
    delete_meta: Statement,
}

struct Worker {
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    /// How long one round, call, connection or check may take before the connection is dropped.
    timeout: Duration,
    conn: Option<Conn>,
    /// Set when the single-node lock could not be taken again after a reconnect: another server
    /// may have written since, so this one writes nothing more (and does not reconnect).
    stopped: Option<StoreError>,
    /// When to try connecting again while the connection is down.
    next_try: Instant,
    backoff: Duration,
}

/// What one commit carries.
#[derive(Default)]
struct Batch {
    records: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
    meta: BTreeMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

/// Names the store's sessions after `node` and bounds connecting and unacknowledged data by
/// `timeout` (for the commit connection and the claim session alike).
pub(super) fn configure(config: &mut tokio_postgres::Config, node: &str, timeout: Duration) {
    config.application_name(format!("debrief {node}"));
    // A silent network partition must not stall the server: connecting, and data the database
    // does not acknowledge, are bounded (unless the connection string says otherwise); each
    // round is bounded by `timeout` besides.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(timeout);
    }
    if config.get_keepalives_idle() > timeout {
        config.keepalives_idle(timeout);
    }
}

/// Starts the database thread once it has connected and created the tables; an error (said in
/// one line) when it could not within `patience`.
pub(super) fn spawn(
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    patience: Duration,
    calls: mpsc::UnboundedReceiver<Call>,
    flushes: mpsc::Receiver<FlushWaiter>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    let timeout = shared.timeout;
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("debrief-postgres".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(StoreError::Postgres(format!(
                        "starting the database thread: {e}"
                    ))));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut worker = Worker {
                    shared,
                    config,
                    timeout,
                    conn: None,
                    stopped: None,
                    next_try: Instant::now(),
                    backoff: FIRST_BACKOFF,
                };
                match worker.first_connect(patience).await {
                    Ok(()) => {
                        let _ = ready_tx.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                worker.serve(calls, flushes).await;
            });
        })
        .map_err(|e| StoreError::Postgres(format!("starting the database thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(StoreError::Postgres(
                "the database thread stopped while connecting".to_owned(),
            ))
        }
    }
}

/// Where the connection string points, without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let mut out = if hosts.is_empty() {
        "the default host".to_owned()
    } else {
        hosts.join(",")
    };
    if let Some(port) = config.get_ports().first() {
        out.push_str(&format!(" port {port}"));
    }
    if let Some(db) = config.get_dbname() {
        out.push_str(&format!(" database {db}"));
    }
    if let Some(user) = config.get_user() {
        out.push_str(&format!(" as {user}"));
    }
    out
}

/// Why the fence refused `name`: the node's own reason once it knows it is fenced (its lease
/// ended), or else the document's claim moved on. The fence cannot tell a lease that ended by
/// the database's clock before the node noticed from another node's claim; the node's next
/// renewal tells.
fn fence_refused(owner: &dyn super::owner::Owner, name: &str) -> StoreError {
    match owner.fenced() {
        Some(why) => StoreError::NodeFenced(why),
        None => StoreError::Fenced {
            name: name.to_owned(),
        },
    }
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(why(&e))
}

fn unreachable_error() -> StoreError {
    StoreError::Postgres("the database cannot be reached".to_owned())
}

pub(super) fn overdue_error(timeout: Duration) -> StoreError {
    StoreError::Postgres(format!(
        "the database did not answer within {} s; the connection was dropped and what it was \
         writing may or may not have been stored",
        timeout.as_secs_f64()
    ))
}

/// Why setting up a connection failed.
enum SetUpError {
    Pg(tokio_postgres::Error),
    /// The database does not keep what it acknowledges (fsync off), said in one line.
    Unsafe(String),
    /// Another Debrief holds the single-node lock.
    Taken,
    /// An earlier session of this server held it; it was ended.
    Stale,
    /// Setting up took longer than the timeout.
    Overdue,
}

impl From<tokio_postgres::Error> for SetUpError {
    fn from(e: tokio_postgres::Error) -> Self {
        SetUpError::Pg(e)
    }
}

impl SetUpError {
    fn line(&self) -> String {
        match self {
            SetUpError::Pg(e) => why(e),
            SetUpError::Unsafe(line) => line.clone(),
            SetUpError::Taken => ANOTHER_DEBRIEF.to_owned(),
            SetUpError::Stale => "an earlier session of this server still held the database; \
                                  it was ended"
                .to_owned(),
            SetUpError::Overdue => "the database did not answer in time".to_owned(),
        }
    }
}

/// The most bytes of a held slot one row carries: a row of the `held_slots` table stays well
/// below PostgreSQL's TOAST threshold (about 2 KiB on 8 KiB pages), so no TOAST row is made.
pub(super) const HELD_PIECE_MAX: usize = 1800;

/// The columns of held-slot rows (slot, piece, bytes), as statements take them.
type HeldRows<'a> = (Vec<i32>, Vec<i16>, Vec<&'a [u8]>);

/// The rows of held slots: each slot's bytes cut into the fewest pieces of at most
/// [`HELD_PIECE_MAX`] bytes, all but the last of one length, numbered from 0.
fn held_rows(slots: &[(u32, Vec<u8>)]) -> Result<HeldRows<'_>, StoreError> {
    let mut numbers = Vec::new();
    let mut pieces = Vec::new();
    let mut bytes = Vec::new();
    for (slot, sealed) in slots {
        let slot = i32::try_from(*slot)
            .map_err(|_| StoreError::Corrupt(format!("held slot {slot} out of range")))?;
        let count = sealed.len().div_ceil(HELD_PIECE_MAX).max(1);
        let len = sealed.len().div_ceil(count).max(1);
        for (i, piece) in sealed.chunks(len).enumerate() {
            numbers.push(slot);
            pieces.push(
                i16::try_from(i).map_err(|_| {
                    StoreError::Corrupt(format!("held slot {slot}: too many pieces"))
                })?,
            );
            bytes.push(piece);
        }
    }
    Ok((numbers, pieces, bytes))
}

fn to_i64(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence {seq} out of range")))
}

fn to_u64(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence {seq} out of range")))
}

/// Connects; the connection's task runs on this thread's runtime.
async fn open_client(
    config: &tokio_postgres::Config,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %why(&e), "the connection to PostgreSQL failed");
        }
    });
    Ok((client, task))
}

/// Takes the single-node lock, makes sure commits are durable, bounds how long a transaction may
/// stay idle (`idle_limit`, the node's lease), creates the tables when missing (idempotent, under
/// an advisory lock) and prepares the statements of a group commit.
async fn set_up(
    client: Client,
    task: JoinHandle<()>,
    idle_limit: Option<Duration>,
    lock: Lock,
) -> Result<Conn, SetUpError> {
    let locked = format!("BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA} COMMIT;");
    let prepared = async {
        let taken: bool = match lock {
            Lock::Exclusive => client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&SINGLE_NODE_LOCK])
                .await?
                .get(0),
            Lock::Shared => client
                .query_one(
                    "SELECT pg_try_advisory_lock_shared($1)",
                    &[&SINGLE_NODE_LOCK],
                )
                .await?
                .get(0),
        };
        if !taken {
            // A session of this server's that hung (dropped by us, still alive on the server)
            // keeps the lock until it ends: end it, and try again after the backoff.
            let own: i64 = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = current_setting('application_name') \
                     AND pid <> pg_backend_pid()",
                    &[],
                )
                .await?
                .get(0);
            if own > 0 {
                return Err(SetUpError::Stale);
            }
            return Err(SetUpError::Taken);
        }
        // "Acknowledged" means "on disk": a role or database default of `off` must not apply.
        client.batch_execute("SET synchronous_commit = on").await?;
        if let Some(limit) = idle_limit {
            // A node paused in the middle of a commit holds its fences' row locks: PostgreSQL
            // ends such a transaction after a lease, so no claimer waits longer than that.
            client
                .batch_execute(&format!(
                    "SET idle_in_transaction_session_timeout = {}",
                    limit.as_millis().max(1)
                ))
                .await?;
        }
        let fsync = client
            .query_one("SELECT current_setting('fsync')", &[])
            .await?
            .get::<_, String>(0);
        if fsync != "on" {
            return Err(SetUpError::Unsafe(
                "PostgreSQL runs with fsync off, so a commit it acknowledges can be lost in a \
                 crash; turn fsync on"
                    .to_owned(),
            ));
        }
        client.batch_execute(&locked).await?;
        Ok::<_, SetUpError>((
            client.prepare(INSERT_RECORDS).await?,
            client.prepare(UPSERT_META).await?,
            client.prepare(DELETE_META).await?,
        ))
    };
    match prepared.await {
        Ok((insert_records, upsert_meta, delete_meta)) => Ok(Conn {
            client,
            task,
            insert_records,
            upsert_meta,
            delete_meta,
        }),
        Err(e) => {
            task.abort();
            Err(e)
        }
    }
}

/// An error of tokio-postgres in one line, with what the server said (its `Display` says only
/// "db error" for those).
pub(super) fn why(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out.replace('\n', " ")
}

/// Awaits `$work` (a method of the worker) for at most the worker's timeout; past it the
/// connection is dropped (whatever the statement was doing is rolled back or not, unknown) and
/// the result is an error saying so.
macro_rules! bounded {
    ($worker:ident, $work:expr) => {{
        let timeout = $worker.timeout;
        match tokio::time::timeout(timeout, $work).await {
            Ok(result) => result,
            Err(_) => {
                $worker.lost("a statement took longer than the timeout");
                Err(overdue_error(timeout))
            }
        }
    }};
}

impl Worker {
    /// [`set_up`], bounded by the timeout: the single-node lock alone, or shared with the
    /// other nodes when several share the database.
    async fn set_up(&self, client: Client, task: JoinHandle<()>) -> Result<Conn, SetUpError> {
        let abort = task.abort_handle();
        let idle_limit = self.shared.ownership.owner.idle_limit();
        let lock = if self.shared.shared {
            Lock::Shared
        } else {
            Lock::Exclusive
        };
        match tokio::time::timeout(self.timeout, set_up(client, task, idle_limit, lock)).await {
            Ok(result) => result,
            Err(_) => {
                abort.abort();
                Err(SetUpError::Overdue)
            }
        }
    }

    /// Connects and creates the tables, retrying for `patience`.
    async fn first_connect(&mut self, patience: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut warned = false;
        loop {
            match open_client(&self.config).await {
                Ok((client, task)) => {
                    let conn = match self.set_up(client, task).await {
                        Ok(conn) => conn,
                        Err(SetUpError::Taken | SetUpError::Stale)
                            if started.elapsed() < LOCK_PATIENCE =>
                        {
                            // Perhaps this server's own previous session, not ended yet.
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                        Err(SetUpError::Taken) => {
                            return Err(StoreError::Postgres(format!(
                                "{ANOTHER_DEBRIEF} (PostgreSQL at {}); stop it first",
                                describe(&self.config)
                            )))
                        }
                        Err(e) => {
                            return Err(StoreError::Postgres(format!(
                                "cannot set up Debrief's tables in PostgreSQL at {}: {}",
                                describe(&self.config),
                                e.line()
                            )))
                        }
                    };
                    self.conn = Some(conn);
                    self.shared.up.store(true, Ordering::Release);
                    tracing::info!(database = %describe(&self.config), node = %self.shared.ownership.owner.node(), "connected to PostgreSQL");
                    return Ok(());
                }
                Err(e) if started.elapsed() < patience => {
                    if !warned {
                        tracing::warn!(database = %describe(&self.config), error = %why(&e), "cannot reach PostgreSQL yet; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    return Err(StoreError::Postgres(format!(
                        "cannot reach PostgreSQL at {} (tried for {} s): {}",
                        describe(&self.config),
                        patience.as_secs_f64(),
                        why(&e)
                    )));
                }
            }
        }
    }

    /// Serves commits and calls until every handle is gone, then commits what is pending.
    async fn serve(
        mut self,
        mut calls: mpsc::UnboundedReceiver<Call>,
        mut flushes: mpsc::Receiver<FlushWaiter>,
    ) {
        let mut calls_open = true;
        let mut flushes_open = true;
        let mut last_used = Instant::now();
        while calls_open || flushes_open {
            let next_try = tokio::time::Instant::from_std(self.next_try);
            let idle_check = tokio::time::Instant::from_std(last_used + IDLE_CHECK);
            let connected = self.conn.is_some();
            // Not biased: under a steady stream of commits a document waiting to be loaded
            // must still get its turn. And the calls waiting when a round is due are served
            // first: each caller has at most one, so they are few and short.
            tokio::select! {
                first = flushes.recv(), if flushes_open => match first {
                    Some(first) => {
                        while let Ok(call) = calls.try_recv() {
                            self.call(call).await;
                        }
                        let mut waiters = vec![first];
                        while let Ok(more) = flushes.try_recv() {
                            waiters.push(more);
                        }
                        self.round(waiters).await;
                        last_used = Instant::now();
                    }
                    None => flushes_open = false,
                },
                call = calls.recv(), if calls_open => match call {
                    Some(call) => {
                        self.call(call).await;
                        last_used = Instant::now();
                    }
                    None => calls_open = false,
                },
                () = async {
                    if let Some(conn) = self.conn.as_mut() {
                        let _ = (&mut conn.task).await;
                    }
                }, if connected => {
                    self.lost("the connection ended");
                }
                () = tokio::time::sleep_until(next_try), if !connected && self.stopped.is_none() => {
                    let _ = self.connected().await;
                }
                () = tokio::time::sleep_until(idle_check), if connected => {
                    if let Some(conn) = self.conn.as_ref() {
                        let checked =
                            tokio::time::timeout(self.timeout, conn.client.simple_query("SELECT 1"))
                                .await;
                        match checked {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(error = %why(&e), "PostgreSQL does not answer");
                                self.lost("the connection check failed");
                            }
                            Err(_) => self.lost("the connection check took too long"),
                        }
                    }
                    last_used = Instant::now();
                }
            }
        }
        // Every handle is gone: what metadata is still pending goes in one last commit.
        self.round(Vec::new()).await;
    }

    /// Forgets a connection that failed; the next try is after the backoff.
    fn lost(&mut self, why: &str) {
        if let Some(conn) = self.conn.take() {
            conn.task.abort();
            tracing::error!(
                why,
                "lost the connection to PostgreSQL; commits fail until it is back"
            );
        }
        self.shared.up.store(false, Ordering::Release);
        self.next_try = Instant::now() + self.backoff;
    }

    /// The connection, made again if it is down and the backoff has passed.
    async fn connected(&mut self) -> Result<&mut Conn, StoreError> {
        if self.stopped.is_none() {
            // Stopped from a handle (the review role was let go): the same as from here.
            if let Some(why) = self.shared.stopped.get().cloned() {
                self.stop_with(why);
            }
        }
        if let Some(stopped) = &self.stopped {
            return Err(stopped.clone());
        }
        if self.conn.is_none() {
            if Instant::now() < self.next_try {
                return Err(unreachable_error());
            }
            let made = match open_client(&self.config).await {
                Ok((client, task)) => self.set_up(client, task).await,
                Err(e) => Err(SetUpError::Pg(e)),
            };
            match made {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.backoff = FIRST_BACKOFF;
                    self.shared.up.store(true, Ordering::Release);
                    self.shared.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("connected to PostgreSQL again");
                }
                Err(SetUpError::Taken) => {
                    self.stop(&format!(
                        "{ANOTHER_DEBRIEF}; this server stopped writing to it (restart it once \
                         the other one is stopped)"
                    ));
                    return Err(StoreError::Postgres(ANOTHER_DEBRIEF.to_owned()));
                }
                Err(e) => {
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.next_try = Instant::now() + self.backoff;
                    tracing::warn!(error = %e.line(), retry_ms = self.backoff.as_millis() as u64, "cannot reach PostgreSQL");
                    return Err(unreachable_error());
                }
            }
        }
        self.conn.as_mut().ok_or_else(unreachable_error)
    }

    /// After a reconnect found the single-node lock taken (another server may have claimed this
    /// one's documents and written its metadata since), or a commit found that another node took
    /// the review role over: this one writes nothing more. Every document it holds fails (its
    /// owner stops), and so does everything after.
    fn stop(&mut self, why: &str) {
        self.stop_with(StoreError::Postgres(why.to_owned()));
    }

    /// [`Worker::stop`] with the error every later call fails with.
    fn stop_with(&mut self, why: StoreError) {
        tracing::error!(reason = %why, "this server writes nothing more to the database");
        {
            let mut state = lock(&self.shared.state);
            let claimed: Vec<String> = state.claims.keys().cloned().collect();
            for name in claimed {
                state.records.remove(&name);
                state.failed.insert(name, why.clone());
            }
        }
        self.shared.serves_reviews.store(false, Ordering::Release);
        self.shared.reviews_served.store(false, Ordering::Release);
        let _ = self.shared.stopped.set(why.clone());
        self.stopped = Some(why);
        self.shared.up.store(false, Ordering::Release);
    }

    /// After a statement failed: a connection that is gone is forgotten (and made again later).
    fn after_error(&mut self) {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.lost("the connection closed during a statement");
        }
    }

    async fn call(&mut self, call: Call) {
        match call {
            Call::Read { name, reply } => {
                let result = bounded!(self, self.read_claimed(&name));
                let _ = reply.send(result);
            }
            Call::Tree { name, reply } => {
                let result = bounded!(self, self.tree(&name));
                let _ = reply.send(result);
            }
            Call::CompactRead { name, upto, reply } => {
                let pending_below = lock(&self.shared.state)
                    .records
                    .get(&name)
                    .is_some_and(|r| r.range(..upto).next().is_some());
                if pending_below {
                    // The records to fold must be committed first (no one waits on this one:
                    // the owner's own flush request answers for them).
                    self.round(Vec::new()).await;
                }
                let result = bounded!(self, self.compact_read(&name, upto));
                let _ = reply.send(result);
            }
            Call::CompactWrite {
                name,
                covers_below,
                snapshot,
                reply,
            } => {
                let result = bounded!(self, self.compact_write(&name, covers_below, &snapshot));
                let _ = reply.send(result);
            }
            Call::Size { name, reply } => {
                let result = bounded!(self, self.size(&name));
                let _ = reply.send(result);
            }
            Call::Count { name, reply } => {
                let result = bounded!(self, self.count(&name));
                let _ = reply.send(result);
            }
            Call::Stop { why } => self.stop(&why),
            Call::HeldRead { slots, reply } => {
                let result = bounded!(self, self.held_read(slots));
                let _ = reply.send(result);
            }
            Call::HeldMake { slots, reply } => {
                let result = bounded!(self, self.held_make(&slots));
                let _ = reply.send(result);
            }
            Call::HeldTick { writes, reply } => {
                let result = bounded!(self, self.held_tick(&writes));
                let _ = reply.send(result);
            }
            Call::Flush { reply } => {
                let (done, answer) = tokio::sync::oneshot::channel();
                self.round(vec![FlushWaiter { done, doc: None }]).await;
                let result = answer.await.unwrap_or(Err(StoreError::FlusherGone));
                let _ = reply.send(result);
            }
        }
    }

    /// The pieces of the held slots numbered in `slots`, joined in piece order.
    async fn held_read(
        &mut self,
        slots: std::ops::Range<u32>,
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let from = i32::try_from(slots.start).unwrap_or(i32::MAX);
        let to = i32::try_from(slots.end).unwrap_or(i32::MAX);
        let read = async {
            let conn = self.connected().await?;
            let rows = conn
                .client
                .query(
                    "SELECT slot, sealed FROM held_slots WHERE slot >= $1 AND slot < $2 \
                     ORDER BY slot, piece",
                    &[&from, &to],
                )
                .await
                .map_err(pg_error)?;
            let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
            for row in rows {
                let slot = u32::try_from(row.get::<_, i32>(0))
                    .map_err(|_| StoreError::Corrupt("held_slots: a negative slot".to_owned()))?;
                let piece: &[u8] = row.get(1);
                match out.last_mut() {
                    Some((last, bytes)) if *last == slot => bytes.extend_from_slice(piece),
                    _ => out.push((slot, piece.to_vec())),
                }
            }
            Ok::<_, StoreError>(out)
        };
        let result = read.await;
        if result.is_err() {
            self.after_error();
        }
        result
    }

    /// Inserts the pieces of `slots` whose rows are missing, in one transaction.
    async fn held_make(&mut self, slots: &[(u32, Vec<u8>)]) -> Result<(), StoreError> {
        let (numbers, pieces, bytes) = held_rows(slots)?;
        let make = async {
            let conn = self.connected().await?;
            conn.client
                .execute(
                    "INSERT INTO held_slots (slot, piece, sealed) \
                     SELECT * FROM unnest($1::integer[], $2::smallint[], $3::bytea[]) \
                     ON CONFLICT (slot, piece) DO NOTHING",
                    &[&numbers, &pieces, &bytes],
                )
                .await
                .map_err(pg_error)?;
            Ok::<_, StoreError>(())
        };
        let result = make.await;
        if result.is_err() {
            self.after_error();
        }
        result
    }

    /// One tick of the held slots: every piece of `writes` updated in place, in one transaction,
    /// all or none. All of a tick's SQL is here, so that a fence (the review role's, once a
    /// node takes it over from another) goes at its start.
    async fn held_tick(&mut self, writes: &[(u32, Vec<u8>)]) -> Result<(), StoreError> {
        let (numbers, pieces, bytes) = held_rows(writes)?;
        let expected = numbers.len() as u64;
        // Held items are review state: in a shared database, written only behind the review
        // role's fence (alone on its database, the single-node lock keeps everyone else out).
        let owner = self.shared.ownership.owner.clone();
        if let Some(why) = owner.fenced() {
            return Err(StoreError::NodeFenced(why));
        }
        let epoch = if self.shared.shared {
            let epoch = lock(&self.shared.state)
                .claims
                .get(super::REVIEWS_ROLE)
                .copied();
            match epoch {
                Some(epoch) => Some(epoch),
                None => return Err(self.without_the_role()),
            }
        } else {
            None
        };
        let tick = async {
            let conn = self.connected().await?;
            let tx = conn.client.transaction().await.map_err(pg_error)?;
            if let Some(epoch) = epoch {
                if !owner
                    .fence(&tx, super::REVIEWS_ROLE, epoch)
                    .await
                    .map_err(pg_error)?
                {
                    tx.rollback().await.map_err(pg_error)?;
                    return Ok(false);
                }
            }
            let updated = tx
                .execute(
                    "UPDATE held_slots SET sealed = w.sealed \
                     FROM unnest($1::integer[], $2::smallint[], $3::bytea[]) AS w(slot, piece, sealed) \
                     WHERE held_slots.slot = w.slot AND held_slots.piece = w.piece",
                    &[&numbers, &pieces, &bytes],
                )
                .await
                .map_err(pg_error)?;
            if updated != expected {
                tx.rollback().await.map_err(pg_error)?;
                return Err(StoreError::Corrupt(format!(
                    "held_slots has {updated} of the {expected} rows a tick rewrites"
                )));
            }
            tx.commit().await.map_err(pg_error)?;
            Ok::<_, StoreError>(true)
        };
        match tick.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lost_the_role(owner.as_ref())),
            Err(e) => {
                self.after_error();
                Err(e)
            }
        }
    }

    /// Review state to be written on a node that holds no claim of the review role: refused,
    /// and if the node served reviews (its claim was let go when it registered again) it
    /// stops writing for good.
    fn without_the_role(&mut self) -> StoreError {
        if self.shared.serves_reviews.load(Ordering::Acquire) {
            let why = "this node no longer holds the review role (its claim was let go)";
            self.stop(why);
            return StoreError::Postgres(why.to_owned());
        }
        tracing::error!(
            "review state written on a node that does not serve reviews was not stored"
        );
        StoreError::Postgres(NOT_THE_REVIEW_NODE.to_owned())
    }

    /// The review role's fence refused a commit of review state: another node took the role,
    /// and the review state in this node's memory holds writes no commit will take, so nothing
    /// more is committed (the server shuts down and hands over).
    fn lost_the_role(&mut self, owner: &dyn super::owner::Owner) -> StoreError {
        let why = fence_refused(owner, super::REVIEWS_ROLE);
        let why = format!("this node no longer holds the review role ({why})");
        self.stop(&why);
        StoreError::Postgres(why)
    }

    /// Reads a document this node has just claimed.
    async fn read_claimed(&mut self, name: &str) -> Result<StoredDoc, StoreError> {
        let read = async {
            let conn = self.connected().await?;
            let tx = conn.client.transaction().await.map_err(pg_error)?;
            let snapshot = tx
                .query_opt(
                    "SELECT covers_below, snapshot FROM snapshots WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(pg_error)?;
            let (covers_below, snapshot) = match snapshot {
                Some(row) => (row.get::<_, i64>(0), Some(row.get::<_, Vec<u8>>(1))),
                None => (0, None),
            };
            let rows = tx
                .query(
                    "SELECT seq, record FROM records WHERE name = $1 AND seq >= $2 ORDER BY seq",
                    &[&name, &covers_below],
                )
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            let mut log = BTreeMap::new();
            for row in rows {
                log.insert(to_u64(row.get::<_, i64>(0))?, row.get::<_, Vec<u8>>(1));
            }
            Ok::<_, StoreError>((to_u64(covers_below)?, snapshot, log))
        };
        let (covers_below, snapshot, mut log) = match read.await {
            Ok(read) => read,
            Err(e) => {
                self.after_error();
                return Err(e);
            }
        };
        {
            let mut state = lock(&self.shared.state);
            if state.failed.remove(name).is_some() {
                // Written by an owner that stopped when its records were dropped.
                state.records.remove(name);
            } else if let Some(pending) = state.records.get(name) {
                // Appended by this node and not committed yet (a document rebuilt after a
                // failed update): they are part of the document.
                for (seq, record) in pending.range(covers_below..) {
                    log.insert(*seq, record.clone());
                }
            }
        }
        let next_seq = log.keys().next_back().map_or(covers_below, |last| last + 1);
        // Its size is known now: the quota checks of its review read it without a round trip.
        let bytes = snapshot.as_ref().map_or(0, |s| s.len() as u64)
            + log.values().map(|r| r.len() as u64).sum::<u64>();
        super::remember_size(&self.shared, name, bytes);
        Ok(StoredDoc {
            snapshot: snapshot.map(sled::IVec::from),
            log: log
                .into_iter()
                .map(|(seq, record)| (seq, sled::IVec::from(record)))
                .collect(),
            next_seq,
        })
    }

    async fn tree(&mut self, name: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        let read = async {
            let conn = self.connected().await?;
            let rows = conn
                .client
                .query("SELECT key, value FROM meta WHERE tree = $1", &[&name])
                .await
                .map_err(pg_error)?;
            Ok::<_, StoreError>(
                rows.into_iter()
                    .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
                    .collect(),
            )
        };
        let result = read.await;
        if result.is_err() {
            self.after_error();
        }
        result
    }

    async fn compact_read(&mut self, name: &str, upto: u64) -> Result<CompactInput, StoreError> {
        let upto = to_i64(upto)?;
        let read = async {
            let conn = self.connected().await?;
            let tx = conn.client.transaction().await.map_err(pg_error)?;
            let snapshot = tx
                .query_opt(
                    "SELECT covers_below, snapshot FROM snapshots WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(pg_error)?;
            let (covers_below, snapshot) = match snapshot {
                Some(row) => (row.get::<_, i64>(0), Some(row.get::<_, Vec<u8>>(1))),
                None => (0, None),
            };
            let rows = tx
                .query(
                    "SELECT seq, record FROM records \
                     WHERE name = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                    &[&name, &covers_below, &upto],
                )
                .await
                .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                records.push((to_u64(row.get::<_, i64>(0))?, row.get::<_, Vec<u8>>(1)));
            }
            Ok::<_, StoreError>(CompactInput { snapshot, records })
        };
        let result = read.await;
        if result.is_err() {
            self.after_error();
        }
        result
    }

    async fn compact_write(
        &mut self,
        name: &str,
        covers_below: u64,
        snapshot: &[u8],
    ) -> Result<(), StoreError> {
        let covers_below = to_i64(covers_below)?;
        self.shared
            .let_go_of_earlier_node(&self.shared.ownership.owner.node());
        let epoch = lock(&self.shared.state).claims.get(name).copied();
        let Some(epoch) = epoch else {
            return Err(StoreError::Postgres(format!(
                "{name}: compacted before this node loaded it"
            )));
        };
        let owner = self.shared.ownership.owner.clone();
        if let Some(why) = owner.fenced() {
            self.fence_all(&why);
            return Err(StoreError::NodeFenced(why));
        }
        let write = async {
            let conn = self.connected().await?;
            let tx = conn.client.transaction().await.map_err(pg_error)?;
            let held = owner.fence(&tx, name, epoch).await.map_err(pg_error)?;
            if !held {
                tx.rollback().await.map_err(pg_error)?;
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO snapshots (name, covers_below, snapshot) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET covers_below = EXCLUDED.covers_below, snapshot = EXCLUDED.snapshot",
                &[&name, &covers_below, &snapshot],
            )
            .await
            .map_err(pg_error)?;
            tx.execute(
                "DELETE FROM records WHERE name = $1 AND seq < $2",
                &[&name, &covers_below],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            Ok::<_, StoreError>(true)
        };
        match write.await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let fenced = fence_refused(owner.as_ref(), name);
                if matches!(fenced, StoreError::Fenced { .. }) {
                    owner.lost(name, epoch);
                }
                self.fenced(name, &fenced);
                Err(fenced)
            }
            Err(e) => {
                self.after_error();
                Err(e)
            }
        }
    }

    async fn size(&mut self, name: &str) -> Result<u64, StoreError> {
        let read = async {
            let conn = self.connected().await?;
            let row = conn
                .client
                .query_one(
                    "SELECT coalesce((SELECT length(snapshot)::bigint FROM snapshots WHERE name = $1), 0) \
                     + coalesce((SELECT sum(length(record))::bigint FROM records WHERE name = $1 \
                        AND seq >= coalesce((SELECT covers_below FROM snapshots WHERE name = $1), 0)), 0)",
                    &[&name],
                )
                .await
                .map_err(pg_error)?;
            to_u64(row.get::<_, i64>(0))
        };
        let result = read.await;
        if result.is_err() {
            self.after_error();
        }
        result
    }

    async fn count(&mut self, name: &str) -> Result<u64, StoreError> {
        let read = async {
            let conn = self.connected().await?;
            let row = conn
                .client
                .query_one(
                    "SELECT count(*) FROM records WHERE name = $1 \
                     AND seq >= coalesce((SELECT covers_below FROM snapshots WHERE name = $1), 0)",
                    &[&name],
                )
                .await
                .map_err(pg_error)?;
            to_u64(row.get::<_, i64>(0))
        };
        let result = read.await;
        if result.is_err() {
            self.after_error();
        }
        result
    }

    /// Once the node is fenced: every document it held is fenced (its pending records dropped,
    /// its owner's next flush failing with the node's reason), and it holds nothing more. Not
    /// counted as fenced commits: no other node claimed these documents.
    fn fence_all(&self, why: &str) {
        super::fence_all(&mut lock(&self.shared.state), why);
    }

    /// Marks a document fenced: its pending records are dropped and its owner stops. Only a
    /// document whose claim the fence refused while the node itself was live counts as a fenced
    /// commit; one refused because the node is fenced is logged with the node's reason.
    fn fenced(&self, name: &str, why: &StoreError) {
        let mut state = lock(&self.shared.state);
        state.records.remove(name);
        state.failed.insert(name.to_owned(), why.clone());
        match why {
            StoreError::NodeFenced(reason) => tracing::warn!(
                doc = %name,
                reason = %reason,
                "fenced: this node is fenced; the document's records were not written"
            ),
            _ => {
                self.shared.stats.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    doc = %name,
                    "fenced: another node claimed the document (or this node's lease ended by the database's clock); its records were not written"
                );
            }
        }
    }

    /// One group commit: every pending record and metadata write in one transaction, then the
    /// answers to `waiters` (taken before the batch, so each covers what was appended before it).
    async fn round(&mut self, waiters: Vec<FlushWaiter>) {
        self.shared
            .let_go_of_earlier_node(&self.shared.ownership.owner.node());
        let node_fenced = self.shared.ownership.owner.fenced();
        if let Some(why) = &node_fenced {
            self.fence_all(why);
        }
        let (mut batch, epochs) = {
            let mut state = lock(&self.shared.state);
            let batch = Batch {
                records: std::mem::take(&mut state.records),
                meta: std::mem::take(&mut state.meta),
            };
            let mut epochs: BTreeMap<String, i64> = batch
                .records
                .keys()
                .filter_map(|name| Some((name.clone(), *state.claims.get(name)?)))
                .collect();
            if let Some(epoch) = state.claims.get(super::REVIEWS_ROLE) {
                epochs.insert(super::REVIEWS_ROLE.to_owned(), *epoch);
            }
            (batch, epochs)
        };
        let mut outcome = Ok(());
        let pending = !batch.records.is_empty() || !batch.meta.is_empty();
        if let Some(why) = node_fenced {
            // Nothing more is written: the metadata stays pending, and whoever waits for it is
            // told why. With nothing to write, there is nothing to fail (a fenced node stopped
            // with SIGTERM after its documents left memory exits cleanly).
            if pending {
                let e = StoreError::NodeFenced(why);
                self.failed(batch, &e);
                outcome = Err(e);
            }
        } else if pending {
            let started = Instant::now();
            let committed = bounded!(self, self.commit(&mut batch, &epochs));
            let elapsed = started.elapsed();
            match committed {
                Ok(Committed { fenced, meta }) => {
                    if let Err(e) = meta {
                        outcome = Err(e);
                    }
                    self.shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.shared.stats.commit_took(elapsed);
                    for (name, why) in fenced {
                        if let (StoreError::Fenced { .. }, Some(epoch)) = (&why, epochs.get(&name))
                        {
                            self.shared.ownership.owner.lost(&name, *epoch);
                        }
                        self.fenced(&name, &why);
                    }
                    if elapsed >= SLOW_COMMIT {
                        tracing::warn!(
                            elapsed_ms = elapsed.as_millis() as u64,
                            requests = waiters.len(),
                            "slow group commit"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "group commit failed");
                    self.shared
                        .stats
                        .failed_commits
                        .fetch_add(1, Ordering::Relaxed);
                    self.after_error();
                    self.failed(batch, &e);
                    outcome = Err(e);
                }
            }
        }
        let state = lock(&self.shared.state);
        for w in waiters {
            let answer = match (&w.doc, &outcome) {
                (Some(doc), _) => state.failed.get(&**doc).cloned().map_or(Ok(()), Err),
                (None, Err(e)) => Err(e.clone()),
                (None, Ok(())) => Ok(()),
            };
            // A waiter that went away (its document closed) needs no answer.
            let _ = w.done.send(answer);
        }
    }

    /// After a failed commit: the records it carried are dropped and their documents marked
    /// failed, and so are the records appended to them while it ran (they follow the dropped
    /// ones: written alone they would leave a gap in the log); the metadata writes go back into
    /// the pending batch under any newer ones.
    fn failed(&self, batch: Batch, why: &StoreError) {
        let mut state = lock(&self.shared.state);
        for name in batch.records.into_keys() {
            state.records.remove(&name);
            state.failed.insert(name, why.clone());
        }
        for (tree, writes) in batch.meta {
            let pending = state.meta.entry(tree).or_default();
            for (key, value) in writes {
                pending.entry(key).or_insert(value);
            }
        }
    }

    /// Commits `batch`; the documents that were fenced (left out of it), each with why, and
    /// whether its metadata writes were refused (left out of it too).
    async fn commit(
        &mut self,
        batch: &mut Batch,
        epochs: &BTreeMap<String, i64>,
    ) -> Result<Committed, StoreError> {
        let owner = self.shared.ownership.owner.clone();
        let mut fenced = Vec::new();
        let mut meta = Ok(());
        // In a shared database only the review role's holder writes the metadata trees.
        if self.shared.shared && !batch.meta.is_empty() && !epochs.contains_key(super::REVIEWS_ROLE)
        {
            batch.meta.clear();
            let refused = self.without_the_role();
            if self.stopped.is_some() {
                return Err(refused);
            }
            meta = Err(refused);
        }
        // Documents without a claim (never loaded here) cannot pass the fence.
        batch.records.retain(|name, _| {
            let claimed = epochs.contains_key(name);
            if !claimed {
                fenced.push((name.clone(), StoreError::Fenced { name: name.clone() }));
            }
            claimed
        });
        let shared_db = self.shared.shared;
        loop {
            let conn = self.connected().await?;
            let tx = conn.client.transaction().await.map_err(pg_error)?;
            // The role first: its name sorts before every document's, so the fences still lock
            // rows in name order, as claims do.
            if shared_db && !batch.meta.is_empty() {
                let epoch = epochs.get(super::REVIEWS_ROLE).copied().unwrap_or(-1);
                if !owner
                    .fence(&tx, super::REVIEWS_ROLE, epoch)
                    .await
                    .map_err(pg_error)?
                {
                    tx.rollback().await.map_err(pg_error)?;
                    // The records of this batch were not acknowledged either.
                    return Err(self.lost_the_role(owner.as_ref()));
                }
            }
            if !batch.records.is_empty() {
                // One fence per document, in name order (the batch's order), the order in which
                // claims lock rows, so a commit and a claim cannot deadlock.
                let mut lost = Vec::new();
                for name in batch.records.keys() {
                    let epoch = epochs.get(name).copied().unwrap_or(-1);
                    if !owner.fence(&tx, name, epoch).await.map_err(pg_error)? {
                        lost.push(name.clone());
                    }
                }
                if !lost.is_empty() {
                    tx.rollback().await.map_err(pg_error)?;
                    for name in lost {
                        batch.records.remove(&name);
                        let why = fence_refused(owner.as_ref(), &name);
                        fenced.push((name, why));
                    }
                    continue;
                }
                let mut rec_names = Vec::new();
                let mut seqs = Vec::new();
                let mut records: Vec<&[u8]> = Vec::new();
                for (name, recs) in &batch.records {
                    for (seq, record) in recs {
                        rec_names.push(name.as_str());
                        seqs.push(to_i64(*seq)?);
                        records.push(record);
                    }
                }
                tx.execute(&conn.insert_records, &[&rec_names, &seqs, &records])
                    .await
                    .map_err(pg_error)?;
            }
            // In tree and key order (see the module documentation on anonymity).
            let mut put_trees = Vec::new();
            let mut put_keys: Vec<&[u8]> = Vec::new();
            let mut put_values: Vec<&[u8]> = Vec::new();
            let mut del_trees = Vec::new();
            let mut del_keys: Vec<&[u8]> = Vec::new();
            for (tree, writes) in &batch.meta {
                for (key, value) in writes {
                    match value {
                        Some(v) => {
                            put_trees.push(tree.as_str());
                            put_keys.push(key);
                            put_values.push(v);
                        }
                        None => {
                            del_trees.push(tree.as_str());
                            del_keys.push(key);
                        }
                    }
                }
            }
            if !del_trees.is_empty() {
                tx.execute(&conn.delete_meta, &[&del_trees, &del_keys])
                    .await
                    .map_err(pg_error)?;
            }
            if !put_trees.is_empty() {
                tx.execute(&conn.upsert_meta, &[&put_trees, &put_keys, &put_values])
                    .await
                    .map_err(pg_error)?;
            }
            tx.commit().await.map_err(pg_error)?;
            return Ok(Committed { fenced, meta });
        }
    }
}

/// What a commit did besides committing.
struct Committed {
    /// Documents left out because their fence refused them, each with why.
    fenced: Vec<(String, StoreError)>,
    /// Why the metadata writes were left out, if they were.
    meta: Result<(), StoreError>,
}

/// Why metadata writes of a cluster node that does not hold the review role are refused.
const NOT_THE_REVIEW_NODE: &str =
    "this node does not serve reviews, so it writes no review metadata";
