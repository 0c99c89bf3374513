//! A fresh PostgreSQL database for each unit test of the cluster room: the storage backend's
//! test database (`storage/postgres/testdb.rs`, on the server that `DEBRIEF_TEST_POSTGRES` names)
//! with the storage schema applied, since ownership lives in its `documents` table.

use tokio_postgres::{Client, Config};

use super::db;
use crate::storage::postgres::testdb;

/// The storage backend's tables, `documents` among them.
const STORAGE_SCHEMA: &str = include_str!("../storage/postgres/schema.sql");

/// A database of its own, dropped (with every connection to it closed) when this is dropped.
#[derive(Debug)]
pub(crate) struct TestDb {
    admin: Config,
    name: String,
    config: Config,
    // Dropped last: it drops the database.
    _db: testdb::TestDb,
}

fn parse(conninfo: &str) -> Config {
    match conninfo.parse() {
        Ok(config) => config,
        Err(e) => panic!("{} is not a libpq connection string: {e}", testdb::VARIABLE),
    }
}

impl TestDb {
    /// Creates `t_<random hex>` with the storage schema.
    pub(crate) async fn create() -> TestDb {
        let created = tokio::task::spawn_blocking(testdb::TestDb::create)
            .await
            .expect("create the test database");
        let config = parse(&created.url());
        let name = config
            .get_dbname()
            .expect("the test database's name")
            .to_owned();
        let db = TestDb {
            admin: parse(&testdb::admin()),
            name,
            config,
            _db: created,
        };
        db.client()
            .await
            .batch_execute(STORAGE_SCHEMA)
            .await
            .expect("apply the storage schema");
        db
    }

    /// The connection configuration of this database.
    pub(crate) fn config(&self) -> Config {
        self.config.clone()
    }

    /// The libpq connection string of this database (for a storage backend under test).
    pub(crate) fn url(&self) -> String {
        self._db.url()
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
