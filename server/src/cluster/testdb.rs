//! A fresh PostgreSQL database for each unit test of the cluster room, on the server that
//! `DEBRIEF_TEST_POSTGRES` names (`scripts/test` starts one and sets it).

use tokio_postgres::{Client, Config};

use super::db;

/// The `documents` table as far as ownership reads it. The storage backend's schema creates the
/// full table in a running server; these tests need only its name, owner and epoch.
const DOCUMENTS: &str = "CREATE TABLE documents (\
     name text PRIMARY KEY, owner text, epoch bigint NOT NULL DEFAULT 0)";

/// A database of its own, dropped (with every connection to it closed) when this is dropped.
#[derive(Debug)]
pub(crate) struct TestDb {
    admin: Config,
    name: String,
    config: Config,
}

fn admin_config() -> Config {
    let Ok(conninfo) = std::env::var("DEBRIEF_TEST_POSTGRES") else {
        panic!(
            "DEBRIEF_TEST_POSTGRES is not set: these tests need PostgreSQL. Run them through \
             scripts/test, or start PostgreSQL with scripts/postgres and export the connection \
             string it prints as DEBRIEF_TEST_POSTGRES"
        );
    };
    match conninfo.parse() {
        Ok(config) => config,
        Err(e) => panic!("DEBRIEF_TEST_POSTGRES is not a libpq connection string: {e}"),
    }
}

impl TestDb {
    /// Creates `t_<random hex>` with a `documents` table.
    pub(crate) async fn create() -> TestDb {
        let admin = admin_config();
        let name = format!("t_{}", hex::encode(rand::random::<[u8; 8]>()));
        let client = db::connect(&admin)
            .await
            .expect("connect to DEBRIEF_TEST_POSTGRES");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let mut config = admin.clone();
        config.dbname(&name);
        let db = TestDb {
            admin,
            name,
            config,
        };
        db.client()
            .await
            .batch_execute(DOCUMENTS)
            .await
            .expect("create the documents table");
        db
    }

    /// The connection configuration of this database.
    pub(crate) fn config(&self) -> Config {
        self.config.clone()
    }

    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to this database.
    pub(crate) async fn client(&self) -> Client {
        db::connect(&self.config)
            .await
            .expect("connect to the test database")
    }

    /// A new connection to the server's administrative database (which stays reachable when
    /// this one refuses connections).
    pub(crate) async fn admin(&self) -> Client {
        db::connect(&self.admin)
            .await
            .expect("connect to DEBRIEF_TEST_POSTGRES")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: drop the database
        // from a thread with a runtime of its own.
        let admin = self.admin.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = db::connect(&admin).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}
