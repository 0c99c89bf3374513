//! The administration socket: `<data-dir>/admin.sock`, a Unix socket through which
//! `debrief backup` asks the running server for an online backup. This module owns the socket
//! and its one-line protocol; the backup itself is [`crate::ops::backup`].
//!
//! Why a Unix socket in the data directory rather than an HTTP endpoint: a backup reads
//! everything, anonymous items waiting for their release included, and writes files wherever it
//! is told. The socket is created with mode 0600 inside the data directory, so exactly the
//! people who could copy the data directory may ask for a backup; there is no token to leak, no
//! port to expose or to forget behind a proxy, and nothing of it is reachable from the network.
//!
//! Protocol: the client sends one line `backup <absolute path>`, the server answers one line,
//! `ok <summary>` or `error <message>`, and closes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

/// Name of the socket in the data directory (declared with the storage layer's list of the
/// data directory's entries).
pub use crate::storage::integrity::ADMIN_SOCKET as SOCKET;

/// Longest request line: a path, with room to spare.
const MAX_REQUEST: u64 = 8 * 1024;

/// Why `debrief backup`, `restore` and `check` refuse a server whose data lives in PostgreSQL.
pub const POSTGRES_BACKUP: &str = "this server keeps its data in PostgreSQL (--postgres): back it \
     up with pg_dump or PostgreSQL's own backups; debrief backup, restore and check work on the \
     embedded sled store only";

/// How long a client may take to send its request: a stuck client must not hold a backup slot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the socket in `data_dir`. Failing to bind is logged, not fatal: backups are then
/// unavailable, and the documents are still served.
pub fn bind(data_dir: &Path) -> Option<UnixListener> {
    let path = data_dir.join(SOCKET);
    // A socket left by a crash: this process holds the store's lock, so no server uses it.
    let _ = std::fs::remove_file(&path);
    match bind_at(&path) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "no administration socket: `debrief backup` cannot reach this server");
            None
        }
    }
}

/// Serves the socket bound by [`bind`] until `shutdown`, backing up `db` (`None` when the data
/// lives in PostgreSQL: backups are then refused); answers run on `tracker`. Removes the socket
/// when done.
pub async fn serve(
    listener: UnixListener,
    db: Option<sled::Db>,
    tracker: TaskTracker,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let path = data_dir.join(SOCKET);
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let db = db.clone();
                    let busy = busy.clone();
                    let data_dir = data_dir.clone();
                    tracker.spawn(async move {
                        if let Err(e) = answer(stream, db.as_ref(), &data_dir, &busy).await {
                            tracing::warn!(error = %e, "administration request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "administration socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn bind_at(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn answer(
    stream: UnixStream,
    db: Option<&sled::Db>,
    data_dir: &Path,
    busy: &tokio::sync::Mutex<()>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(read) => {
            read?;
        }
        Err(_) => return Ok(()),
    }
    if line.is_empty() {
        // A probe (`debrief check` asking whether a server runs here): nothing to answer.
        return Ok(());
    }
    let reply = match line.trim_end().split_once(' ') {
        Some(("backup", _)) if db.is_none() => format!("error {POSTGRES_BACKUP}\n"),
        Some(("backup", to)) if Path::new(to).is_absolute() => {
            let _one_at_a_time = busy.lock().await;
            let Some(db) = db.cloned() else {
                return Ok(());
            };
            let data_dir = data_dir.to_path_buf();
            let to = PathBuf::from(to);
            let started = std::time::Instant::now();
            let done =
                tokio::task::spawn_blocking(move || crate::ops::backup::write(&db, &data_dir, &to))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            match done {
                Ok(summary) => {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        keys = summary.keys,
                        "backup written"
                    );
                    format!("ok {summary}\n")
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup failed");
                    format!("error {e}\n")
                }
            }
        }
        Some(("backup", _)) => "error the backup path must be absolute\n".to_owned(),
        _ => "error unknown request; the only one is `backup <absolute path>`\n".to_owned(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

/// Asks the server running on `data_dir` for a backup into `to`; `Ok(None)` when no server
/// answers on its socket.
pub async fn request_backup(data_dir: &Path, to: &Path) -> Result<Option<String>, String> {
    let mut stream = match UnixStream::connect(data_dir.join(SOCKET)).await {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    let request = format!("backup {}\n", to.display());
    if request.contains('\n') && request.trim_end().contains('\n') {
        return Err("the backup path must not contain a line break".to_owned());
    }
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    match reply.trim_end().split_once(' ') {
        Some(("ok", summary)) => Ok(Some(summary.to_owned())),
        Some(("error", why)) => Err(why.to_owned()),
        _ => Err(format!("unexpected answer from the server: {reply:?}")),
    }
}

/// Whether a server answers on `data_dir`'s socket.
pub fn server_running(data_dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(data_dir.join(SOCKET)).is_ok()
}
