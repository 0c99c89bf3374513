//! What a document owner is asked to do, and the handle that asks: the commands connections and
//! server code send to an open document ([`DocCommand`]), their answers, and [`DocHandle`], the
//! sending side of the owner's bounded command queue.
//!
//! The commands are plain values: [`crate::documents::core`] decides what each does, without any
//! I/O; [`crate::documents::doc`] runs that core on a task.

use bytes::Bytes;
use debrief_proto::ywire::SyncMessage;
use tokio::sync::oneshot;
use yrs::Doc;

use crate::documents::peer::{ConnId, Peer};
use crate::documents::queue;

/// A message from a connection to a document.
#[derive(Debug)]
pub enum Incoming {
    /// The client's state vector: answer with what it lacks.
    Step1(Bytes),
    /// A step-2 or update payload.
    Update(Bytes),
    /// An awareness update.
    Awareness(Bytes),
    /// A request for every awareness state.
    QueryAwareness,
}

impl Incoming {
    /// The command for a sync message whose payload borrows from `frame`.
    pub fn from_sync(frame: &Bytes, sync: SyncMessage<'_>) -> Incoming {
        match sync {
            SyncMessage::Step1(sv) => Incoming::Step1(frame.slice_ref(sv)),
            SyncMessage::Step2(u) | SyncMessage::Update(u) => Incoming::Update(frame.slice_ref(u)),
        }
    }
}

/// Why a connection could not join a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The document is being unloaded; open it again.
    #[error("document is unloading")]
    Unloading,
    /// The document has the maximum number of connections.
    #[error("too many connections to this document")]
    Full,
    /// A read-only connection, and the places left are kept for read-write ones.
    #[error("the places left on this document are kept for writers")]
    FullForReaders,
    /// The session token has the document open as often as it may.
    #[error("too many attachments of one session to this document")]
    TooManyForSession,
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// It is served nowhere this node can reach now (told to the connection already, which is
    /// closed to come back later); not tried again.
    #[error("document is unavailable now")]
    Unavailable,
}

/// Commands a document owner understands.
#[derive(Debug)]
pub enum DocCommand {
    /// Attach a connection (boxed: a queue slot is as large as its largest command, and every
    /// open document has a queue).
    Join(Box<JoinRequest>),
    /// A message from an attached connection.
    Message {
        /// Who sent it.
        conn: ConnId,
        /// What it said.
        msg: Incoming,
    },
    /// Detach a connection (it closed).
    Leave {
        /// The connection.
        conn: ConnId,
    },
    /// Decide every attached connection's access again (a review changed phase, or sessions
    /// were revoked), and tell each connection whose access changed.
    Reauthorize,
    /// Run server code against the document (see [`DocHandle::run`]); boxed like `Join`.
    Job(Box<JobRequest>),
}

/// A connection asking to attach to a document: the owner tells it the access it is attached with
/// ([`crate::documents::peer::Notice::Opened`]), then sends the server's SyncStep1 and current
/// awareness.
#[derive(Debug)]
pub struct JoinRequest {
    /// The connection.
    pub peer: Peer,
    /// Answered once the connection is attached or refused.
    pub reply: oneshot::Sender<Result<(), JoinError>>,
}

/// Server code to run against a document.
#[derive(Debug)]
pub struct JobRequest {
    /// Reads the document and returns the update it made, if any.
    pub job: Job,
    /// False for a job that only reads, or makes an essential change: it runs even when the
    /// document is at its size limit.
    pub writes: bool,
    /// Answered once the update (if any) is on disk and relayed, or at once with the reason the
    /// job did not run.
    pub done: oneshot::Sender<Result<(), JobError>>,
}

/// Server code run by a document's owner: it may read the document and make one change, and
/// returns that change as an encoded v1 update (`None` when it changed nothing).
pub struct Job(Box<JobFn>);

type JobFn = dyn FnOnce(&Doc) -> Option<Vec<u8>> + Send;

impl Job {
    /// Wraps server code.
    pub fn new(f: impl FnOnce(&Doc) -> Option<Vec<u8>> + Send + 'static) -> Job {
        Job(Box::new(f))
    }

    /// Runs it with panics contained: a panic inside yrs may leave the document half-changed, so
    /// `Err` tells the caller to discard the document and load it again.
    pub(crate) fn run_guarded(self, doc: &Doc) -> Result<Option<Vec<u8>>, ()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.0)(doc))).map_err(|_| ())
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job(..)")
    }
}

/// Why server code could not run against a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The document's owner stopped (shutdown, or a storage failure).
    #[error("the document is not available")]
    Unavailable,
    /// The document is past its size limit: server code may not grow it either.
    #[error("the document is at its size limit")]
    TooLarge,
    /// The document's review is past its storage quota (see [`crate::documents::quota`]).
    #[error("the review is at its storage quota")]
    QuotaExceeded,
}

/// Sender side of a document owner's command queue.
#[derive(Debug, Clone)]
pub struct DocHandle {
    tx: queue::Sender<DocCommand>,
}

impl DocHandle {
    /// The handle of the owner that reads `tx`'s queue.
    pub fn new(tx: queue::Sender<DocCommand>) -> DocHandle {
        DocHandle { tx }
    }

    /// Whether the owner stopped taking commands (it is unloading or gone).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Attaches `peer`; `Err(Unloading)` also covers an owner that already stopped.
    pub async fn join(&self, peer: Peer) -> Result<(), JoinError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(DocCommand::Join(Box::new(JoinRequest { peer, reply })))
            .await
            .map_err(|_| JoinError::Unloading)?;
        rx.await.unwrap_or(Err(JoinError::Unloading))
    }

    /// Sends a message; `false` when the owner is gone.
    pub async fn send(&self, conn: ConnId, msg: Incoming) -> bool {
        self.tx
            .send(DocCommand::Message { conn, msg })
            .await
            .is_ok()
    }

    /// Detaches a connection. An owner that already stopped needs no notice.
    pub async fn leave(&self, conn: ConnId) {
        let _ = self.tx.send(DocCommand::Leave { conn }).await;
    }

    /// Asks the owner to decide its connections' access again. An owner that stopped has none.
    pub async fn reauthorize(&self) {
        let _ = self.tx.send(DocCommand::Reauthorize).await;
    }

    /// Runs `f` on the owner's task, against the built document. `f` returns its result and the
    /// update it made (from its own transaction, written with the server's client id); the
    /// result comes back once that update is durably stored and relayed to every connection,
    /// like a client's update. `f` must be quick: the document waits for it.
    pub async fn run<R, F>(&self, f: F) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> (R, Option<Vec<u8>>) + Send + 'static,
    {
        self.job(f, true).await
    }

    /// Like [`DocHandle::run`], but for writes that must pass even a document at its size limit
    /// (moderation, the phase, releasing held items): small, server-chosen changes.
    pub async fn run_essential<R, F>(&self, f: F) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> (R, Option<Vec<u8>>) + Send + 'static,
    {
        self.job(f, false).await
    }

    /// Runs `f` on the owner's task to read the document (it may not change it); it runs even
    /// when the document is at its size limit.
    pub async fn read<R, F>(&self, f: F) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> R + Send + 'static,
    {
        self.job(move |doc| (f(doc), None), false).await
    }

    async fn job<R, F>(&self, f: F, writes: bool) -> Result<R, JobError>
    where
        R: Send + 'static,
        F: FnOnce(&Doc) -> (R, Option<Vec<u8>>) + Send + 'static,
    {
        let (result_tx, result_rx) = oneshot::channel();
        let job = Job::new(move |doc| {
            let (result, update) = f(doc);
            let _ = result_tx.send(result);
            update
        });
        let (done, done_rx) = oneshot::channel();
        self.tx
            .send(DocCommand::Job(Box::new(JobRequest { job, writes, done })))
            .await
            .map_err(|_| JobError::Unavailable)?;
        done_rx.await.map_err(|_| JobError::Unavailable)??;
        result_rx.await.map_err(|_| JobError::Unavailable)
    }
}
