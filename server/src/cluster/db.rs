//! Connections to PostgreSQL: one session that reconnects when the server closed it.
//!
//! Without TLS: the cluster's database is reached over a Unix socket or a private network in
//! phase 1 (`docs/cluster.md`, "What the operator provides").

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, Config, NoTls};

/// Opens a connection and drives it on a task of its own, which ends when the client is dropped
/// or the server closes the connection (the client's next call then fails, and
/// [`Session::client`] opens a new one).
pub(crate) async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "cluster: a database connection ended");
        }
    });
    Ok(client)
}

/// One database session used by one caller at a time (a transaction needs `&mut Client`).
pub(crate) struct Session {
    config: Config,
    /// Run on every new connection of the session.
    setup: String,
    client: Mutex<Client>,
}

impl Session {
    /// Connects now, so that a wrong configuration is reported at once. A transaction of this
    /// session left idle for longer than `idle_limit` (a node paused mid-transaction) is ended by
    /// the server, so the row locks it holds never keep a claimer waiting for longer than that.
    pub(crate) async fn open(
        config: Config,
        idle_limit: std::time::Duration,
    ) -> Result<Session, tokio_postgres::Error> {
        let setup = format!(
            "SET idle_in_transaction_session_timeout = {}",
            idle_limit.as_millis().max(1)
        );
        let client = connect(&config).await?;
        client.batch_execute(&setup).await?;
        Ok(Session {
            config,
            setup,
            client: Mutex::new(client),
        })
    }

    /// The session's client, connected again first if the server closed it.
    pub(crate) async fn client(&self) -> Result<MutexGuard<'_, Client>, tokio_postgres::Error> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            let fresh = connect(&self.config).await?;
            fresh.batch_execute(&self.setup).await?;
            *client = fresh;
        }
        Ok(client)
    }

    /// The configuration sessions are opened with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration may hold a password: never printed.
        f.debug_struct("Session").finish_non_exhaustive()
    }
}
