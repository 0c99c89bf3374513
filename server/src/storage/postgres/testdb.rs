//! A fresh database per test, on the PostgreSQL that `scripts/test` (or `scripts/postgres`)
//! started: `DEBRIEF_TEST_POSTGRES` holds a libpq keyword connection string for a superuser.
//! Each test creates its own database (`t_<random hex>`) and drops it at the end, so tests run in
//! parallel.

use tokio_postgres::NoTls;

/// The variable that says where the test PostgreSQL listens.
pub(crate) const VARIABLE: &str = "DEBRIEF_TEST_POSTGRES";

/// A database that exists while this value lives.
#[derive(Debug)]
pub(crate) struct TestDb {
    admin: String,
    name: String,
}

/// The superuser connection string; a test that needs PostgreSQL fails without it.
pub(crate) fn admin() -> String {
    match std::env::var(VARIABLE) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{VARIABLE} is not set: this test needs PostgreSQL. Run the tests through \
             scripts/test, or start one with `dir=$(scripts/postgres start)` and \
             `export {VARIABLE}=$(scripts/postgres env \"$dir\")`"
        ),
    }
}

/// Runs `sql` on a connection made from `conn` (on a thread of its own, so that it works from
/// synchronous tests, async tests and `Drop` alike).
pub(crate) fn execute(conn: &str, sql: &str) -> Result<(), String> {
    let (conn, sql) = (conn.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&conn, NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(connection);
            let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = task.await;
            result
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

/// Runs `query` and returns the first column of its rows as text.
pub(crate) fn query_text(conn: &str, query: &str) -> Result<Vec<String>, String> {
    let (conn, query) = (conn.to_owned(), query.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&conn, NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let task = tokio::spawn(connection);
            let rows = client
                .simple_query(&query)
                .await
                .map_err(|e| e.to_string())?;
            drop(client);
            let _ = task.await;
            Ok(rows
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or_default().to_owned())
                    }
                    _ => None,
                })
                .collect())
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_owned())?
}

impl TestDb {
    /// Creates a fresh database.
    pub(crate) fn create() -> TestDb {
        let admin = admin();
        let name = format!("t_{:016x}", rand::random::<u64>());
        execute(&admin, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating database {name} on {VARIABLE}: {e}"));
        TestDb { admin, name }
    }

    /// The connection string of this database.
    pub(crate) fn url(&self) -> String {
        format!("{} dbname={}", self.admin, self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = execute(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// A transaction another session keeps open (holding the locks its statements took) until
/// [`Holder::release`] or drop, on a thread of its own.
#[derive(Debug)]
pub(crate) struct Holder {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Holder {
    /// Runs `BEGIN` and `sql` on a new connection; returns once they ran. The transaction is
    /// rolled back at release.
    pub(crate) fn begin(conn: &str, sql: &str) -> Holder {
        let (conn, shown, sql) = (conn.to_owned(), sql.to_owned(), sql.to_owned());
        let (began_tx, began) = std::sync::mpsc::channel::<Result<(), String>>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = began_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async {
                let (client, connection) = match tokio_postgres::connect(&conn, NoTls).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = began_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let task = tokio::spawn(connection);
                let ran = client
                    .batch_execute(&format!("BEGIN; {sql}"))
                    .await
                    .map_err(|e| e.to_string());
                let ok = ran.is_ok();
                let _ = began_tx.send(ran);
                if ok {
                    // Until released (or the test's end drops the sender).
                    let _ = tokio::task::spawn_blocking(move || released.recv()).await;
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                drop(client);
                let _ = task.await;
            });
        });
        match began.recv() {
            Ok(Ok(())) => Holder {
                release: Some(release),
                thread: Some(thread),
            },
            Ok(Err(e)) => panic!("holding {shown}: {e}"),
            Err(_) => panic!("holding {shown}: the thread stopped"),
        }
    }

    /// Ends the transaction and waits until it has.
    pub(crate) fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.end();
    }
}

/// The owner of a store under test: the only node there is, so it takes every document it
/// claims (epoch raised) and holds it while owner and epoch are still its own. The cluster's
/// lease-aware claim and fence (`cluster::member::Member`) replace it in the server; this layer's
/// tests only need a node that never loses a claim to another.
#[derive(Debug)]
pub(crate) struct TestOwner {
    id: String,
    /// Why the node is fenced, once a test fences it.
    fenced: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// Fences a [`TestOwner`]'s node: set to the reason.
pub(crate) type Fence = std::sync::Arc<std::sync::Mutex<Option<String>>>;

impl TestOwner {
    pub(crate) fn ownership() -> super::owner::Ownership {
        Self::fenceable().0
    }

    /// An ownership whose node the test can fence.
    pub(crate) fn fenceable() -> (super::owner::Ownership, Fence) {
        let fence = Fence::default();
        let ownership = super::owner::Ownership {
            owner: std::sync::Arc::new(TestOwner {
                id: format!("{:016x}", rand::random::<u64>()),
                fenced: fence.clone(),
            }),
            group: |name| vec![name.to_owned()],
        };
        (ownership, fence)
    }
}

impl super::owner::Owner for TestOwner {
    fn node(&self) -> String {
        self.id.clone()
    }

    fn fenced(&self) -> Option<String> {
        self.fenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn patience(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn poll(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn idle_limit(&self) -> Option<std::time::Duration> {
        None
    }

    fn lock_limit(&self) -> Option<std::time::Duration> {
        None
    }

    /// Resolves once a test fences the node (looked at every few milliseconds).
    fn until_fenced(&self) -> super::owner::Sent<'static, String> {
        let fenced = self.fenced.clone();
        Box::pin(async move {
            loop {
                if let Some(why) = fenced.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                    return why;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    }

    fn claim<'a>(
        &'a self,
        client: &'a mut tokio_postgres::Client,
        names: &'a [&'a str],
    ) -> super::owner::Sent<'a, Result<super::owner::Claimed, super::owner::ClaimError>> {
        Box::pin(async move {
            let rows = client
                .query(
                    "INSERT INTO documents (name, owner, epoch) SELECT n, $2, 1 FROM unnest($1::text[]) AS n \
                     ON CONFLICT (name) DO UPDATE SET owner = $2, epoch = documents.epoch + 1 \
                     RETURNING name, epoch",
                    &[&names, &self.id],
                )
                .await
                .map_err(super::owner::ClaimError::Db)?;
            Ok(super::owner::Claimed::Won(
                rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
            ))
        })
    }

    fn fence<'a>(
        &'a self,
        tx: &'a tokio_postgres::Transaction<'_>,
        name: &'a str,
        epoch: i64,
    ) -> super::owner::Local<'a, Result<bool, tokio_postgres::Error>> {
        Box::pin(async move {
            let row = tx
                .query_opt(
                    "SELECT 1 FROM documents WHERE name = $1 AND owner = $2 AND epoch = $3 FOR SHARE",
                    &[&name, &self.id, &epoch],
                )
                .await?;
            Ok(row.is_some())
        })
    }

    fn lost(&self, _name: &str, _epoch: i64) {}

    fn render_metrics(&self) -> String {
        String::new()
    }
}
