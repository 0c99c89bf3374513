//! PostgreSQL for the integration tests: `scripts/test` (or `scripts/postgres start`) starts a
//! throwaway PostgreSQL and exports `DEBRIEF_TEST_POSTGRES`, a libpq keyword connection string
//! for a superuser on its Unix socket. Each test creates a fresh database of its own
//! ([`TestDb::create`]) and drops it at the end, so tests run in parallel.

use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The variable that says where the test PostgreSQL listens.
pub const VARIABLE: &str = "DEBRIEF_TEST_POSTGRES";

/// The superuser connection string; a test that needs PostgreSQL fails without it.
pub fn admin() -> String {
    match std::env::var(VARIABLE) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{VARIABLE} is not set: this test needs PostgreSQL. Run the tests through \
             scripts/test, or start one with `dir=$(scripts/postgres start)` and \
             `export {VARIABLE}=$(scripts/postgres env \"$dir\")`"
        ),
    }
}

/// A database that exists while this value lives.
#[derive(Debug)]
pub struct TestDb {
    admin: String,
    name: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> TestDb {
        let admin = admin();
        let name = format!("t_{:016x}", rand::random::<u64>());
        execute(&admin, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating database {name} on {VARIABLE}: {e}"));
        TestDb { admin, name }
    }

    /// The connection string of this database (what the server is given with `--postgres`).
    pub fn url(&self) -> String {
        format!("{} dbname={}", self.admin, self.name)
    }

    /// Runs `query` on this database; the first column of each row, as text.
    pub async fn query(&self, query: &str) -> Vec<String> {
        query_text(&self.url(), query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // On a thread of its own: a runtime may or may not be running here.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(execute(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// Runs `sql` (one or more statements) on a connection made from `conn`.
pub async fn execute(conn: &str, sql: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    result
}

/// Runs `query`; the first column of each row, as text.
pub async fn query_text(conn: &str, query: &str) -> Result<Vec<String>, String> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let rows = client
        .simple_query(query)
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    let _ = task.await;
    Ok(rows
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or_default().to_owned()),
            _ => None,
        })
        .collect())
}
