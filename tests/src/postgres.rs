//! PostgreSQL for the integration tests: `scripts/test` (or `scripts/postgres start`) starts a
//! throwaway PostgreSQL and exports `DEBRIEF_TEST_POSTGRES`, a libpq keyword connection string
//! for a superuser on its Unix socket. Each test creates a fresh database of its own
//! ([`TestDb::create`]) and drops it at the end, so tests run in parallel.

use std::path::{Path, PathBuf};

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
    /// The write-ahead segment being written when the database was made: none before it holds
    /// anything of it.
    first_wal: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> TestDb {
        let admin = admin();
        let name = format!("t_{:016x}", rand::random::<u64>());
        let first_wal = query_text(
            &admin,
            "SELECT pg_walfile_name(pg_current_wal_insert_lsn())",
        )
        .await
        .unwrap_or_else(|e| panic!("the write-ahead position of {VARIABLE}: {e}"))
        .concat();
        execute(&admin, &format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating database {name} on {VARIABLE}: {e}"));
        TestDb {
            admin,
            name,
            first_wal,
        }
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

/// Where a part of a [`TestDb::copy`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// One row of a table, as `pg_dump` would write it.
    Row,
    /// A file PostgreSQL keeps for this database alone (its tables and indexes).
    DatabaseFile,
    /// A segment of the cluster's write-ahead log (shared with every database of the cluster).
    Wal,
}

impl Part {
    /// The [`Part`] of a path named by [`TestDb::copy`].
    pub fn of(path: &Path) -> Option<Part> {
        let first = path.components().nth(1)?.as_os_str().to_str()?;
        match (path.starts_with("postgres"), first) {
            (true, "rows") => Some(Part::Row),
            (true, "base") => Some(Part::DatabaseFile),
            (true, "wal") => Some(Part::Wal),
            _ => None,
        }
    }
}

impl TestDb {
    /// What a copy of this database shows whoever holds it, as named byte strings:
    /// - every row of every table, in the order its table keeps them on disk (`ctid`, the order
    ///   `pg_dump` writes them in), each column's bytes (binary columns as they are, the others
    ///   as text), named `postgres/rows/<table>/<n>`;
    /// - after a checkpoint, the raw files of this database (`postgres/base/…`: heap, indexes,
    ///   visibility maps) and every segment of the write-ahead log from the one being written
    ///   when the database was made to the one being written now (`postgres/wal/…`, in name
    ///   order; they hold every change of the cluster in commit order, as an archive or a
    ///   standby would). A checkpoint recycles the segments before it, so the finished ones
    ///   come from the archive `scripts/postgres` keeps next to the data directory, and those
    ///   not archived yet (the current one among them) from `pg_wal`.
    ///
    /// Reading PostgreSQL's files needs the test to run as root or as the database's owner, as
    /// `scripts/test` does; a copy that cannot read them, or a PostgreSQL that does not archive
    /// its log (not started by `scripts/postgres`), fails the test.
    pub async fn copy(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let url = self.url();
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
        let task = tokio::spawn(connection);
        let mut out = Vec::new();
        let tables = client
            .query(
                "SELECT c.oid::bigint, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname",
                &[],
            )
            .await
            .expect("list tables");
        for table in tables {
            let (oid, name): (i64, String) = (table.get(0), table.get(1));
            let columns = client
                .query(
                    "SELECT quote_ident(attname::text), atttypid = 'bytea'::regtype \
                     FROM pg_attribute WHERE attrelid = $1::bigint::oid AND attnum > 0 \
                     AND NOT attisdropped ORDER BY attnum",
                    &[&oid],
                )
                .await
                .expect("list columns");
            let select: Vec<String> = columns
                .iter()
                .map(|c| {
                    let (column, binary): (String, bool) = (c.get(0), c.get(1));
                    if binary {
                        column
                    } else {
                        format!("convert_to({column}::text, 'UTF8')")
                    }
                })
                .collect();
            let rows = client
                .query(
                    &format!(
                        "SELECT {} FROM {} ORDER BY ctid",
                        select.join(", "),
                        quote(&name)
                    ),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("reading {name}: {e}"));
            for (n, row) in rows.iter().enumerate() {
                let mut bytes = Vec::new();
                for i in 0..row.len() {
                    bytes.extend(row.get::<_, Option<Vec<u8>>>(i).unwrap_or_default());
                    bytes.push(b'|');
                }
                out.push((PathBuf::from(format!("postgres/rows/{name}/{n:08}")), bytes));
            }
        }
        client
            .batch_execute("CHECKPOINT")
            .await
            .expect("checkpoint");
        let place = client
            .query_one(
                "SELECT current_setting('data_directory'), \
                 (SELECT oid::bigint FROM pg_database WHERE datname = current_database()), \
                 pg_walfile_name(pg_current_wal_insert_lsn()), current_setting('archive_mode')",
                &[],
            )
            .await
            .expect("where the database keeps its files");
        let (root, oid, last_wal, archiving): (String, i64, String, String) =
            (place.get(0), place.get(1), place.get(2), place.get(3));
        drop(client);
        let _ = task.await;
        assert_eq!(
            archiving, "on",
            "{VARIABLE} does not archive its write-ahead log: start it with scripts/postgres"
        );
        let root = PathBuf::from(root);
        for file in files_in(&root.join("base").join(oid.to_string())) {
            let bytes =
                std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let leaf = file.file_name().unwrap_or_default();
            out.push((PathBuf::from("postgres/base").join(leaf), bytes));
        }
        let pg_wal = root.join("pg_wal");
        let archive = root.parent().unwrap_or(&root).join("wal-archive");
        // Segment names sort in the order they were written (one timeline here); names past the
        // one being written are recycled segments, not yet written again.
        let mut segments: Vec<String> = files_in(&pg_wal)
            .into_iter()
            .chain(files_in(&archive))
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
            .filter(|n| {
                n.len() == last_wal.len()
                    && n.bytes().all(|b| b.is_ascii_hexdigit())
                    && *n >= self.first_wal
                    && *n <= last_wal
            })
            .collect();
        segments.sort();
        segments.dedup();
        for segment in segments {
            // A segment may be archived and removed from pg_wal between the listing and here.
            let bytes = std::fs::read(pg_wal.join(&segment))
                .or_else(|_| std::fs::read(archive.join(&segment)))
                .unwrap_or_else(|e| panic!("reading write-ahead segment {segment}: {e}"));
            out.push((PathBuf::from("postgres/wal").join(segment), bytes));
        }
        out
    }
}

/// One row of `held_slots` as a copy of the database shows it without the cluster secret: which
/// piece of which slot it is, where its current version lies on disk (`ctid`: page and line) and
/// the transaction that wrote that version (`xmin`). Its sealed bytes are random to whoever does
/// not hold the secret; [`Backend::unsealed`] opens them for the test's own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRow {
    pub slot: u32,
    pub piece: u16,
    pub page: u32,
    pub line: u16,
    pub xmin: u64,
}

impl TestDb {
    /// The rows `query` answers on this database.
    async fn rows(&self, query: &str) -> Vec<tokio_postgres::Row> {
        let (client, connection) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name));
        let task = tokio::spawn(connection);
        let rows = client
            .query(query, &[])
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        drop(client);
        let _ = task.await;
        rows
    }

    /// Every row of `held_slots` (a node of a cluster keeps its held anonymous items there), in
    /// their order on disk.
    pub async fn held_rows(&self) -> Vec<HeldRow> {
        let rows = self
            .rows(
                "SELECT slot::bigint, piece::bigint, (h.ctid::text::point)[0]::bigint, \
                 (h.ctid::text::point)[1]::bigint, h.xmin::text::bigint \
                 FROM held_slots h ORDER BY h.ctid",
            )
            .await;
        rows.iter()
            .map(|r| {
                let n = |i: usize| r.get::<_, i64>(i);
                HeldRow {
                    slot: u32::try_from(n(0)).expect("slot"),
                    piece: u16::try_from(n(1)).expect("piece"),
                    page: u32::try_from(n(2)).expect("page"),
                    line: u16::try_from(n(3)).expect("line"),
                    xmin: u64::try_from(n(4)).expect("xmin"),
                }
            })
            .collect()
    }

    /// Each slot of `held_slots` (or only those of `only`) with its pieces joined in order, as
    /// sealed.
    async fn held_sealed(&self, only: Option<&[u32]>) -> Vec<(u32, Vec<u8>)> {
        let only = only.map_or(String::new(), |slots| {
            let list: Vec<String> = slots.iter().map(u32::to_string).collect();
            format!("WHERE slot = ANY('{{{}}}'::int[])", list.join(","))
        });
        let rows = self
            .rows(&format!(
                "SELECT slot, sealed FROM held_slots {only} ORDER BY slot, piece"
            ))
            .await;
        let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
        for row in rows {
            let slot = u32::try_from(row.get::<_, i32>(0)).expect("slot");
            let piece: &[u8] = row.get(1);
            match out.last_mut() {
                Some((last, bytes)) if *last == slot => bytes.extend_from_slice(piece),
                _ => out.push((slot, piece.to_vec())),
            }
        }
        out
    }
}

/// The files directly in `dir`, in name order; a directory that cannot be read fails the test.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "reading {}: {e} (run the tests as root or as PostgreSQL's owner)",
                dir.display()
            )
        })
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Where a server started by a test keeps its data, for tests that run on both backends.
#[derive(Debug)]
pub enum Backend {
    /// sled, in the server's data directory (the default).
    Sled,
    /// A fresh database of the test PostgreSQL (`--postgres`).
    Postgres(TestDb),
    /// A fresh database shared by nodes of a cluster: `--postgres` with a link listener on
    /// loopback and a cluster secret (in a file of this directory), so held anonymous items are
    /// kept sealed in the database, not in the data directory.
    Cluster(TestDb, tempfile::TempDir),
}

impl Backend {
    /// A fresh database of the test PostgreSQL.
    pub async fn postgres() -> Backend {
        Backend::Postgres(TestDb::create().await)
    }

    /// A fresh database for nodes of a cluster, and their secret.
    pub async fn cluster() -> Backend {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("cluster-secret");
        std::fs::write(&secret, hex::encode(rand::random::<[u8; 32]>())).expect("write secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the secret");
        Backend::Cluster(TestDb::create().await, dir)
    }

    /// The flags that start a server on this backend.
    pub fn args(&self) -> Vec<String> {
        match self {
            Backend::Sled => Vec::new(),
            Backend::Postgres(db) => vec!["--postgres".to_owned(), db.url()],
            Backend::Cluster(db, dir) => vec![
                "--postgres".to_owned(),
                db.url(),
                "--cluster-listen".to_owned(),
                "127.0.0.1:0".to_owned(),
                "--cluster-secret-file".to_owned(),
                dir.path()
                    .join("cluster-secret")
                    .to_string_lossy()
                    .into_owned(),
            ],
        }
    }

    /// The database, on PostgreSQL.
    pub fn db(&self) -> Option<&TestDb> {
        match self {
            Backend::Sled => None,
            Backend::Postgres(db) | Backend::Cluster(db, _) => Some(db),
        }
    }

    /// On a node of a cluster, every held slot opened with the cluster's secret (which the
    /// test holds, and an attacker with a copy of the database does not): its bytes in the held
    /// file's layout, all zero when empty. A slot that does not open fails the test.
    pub async fn unsealed(&self) -> Option<Vec<(u32, Vec<u8>)>> {
        self.unsealed_only(None).await
    }

    /// [`Backend::unsealed`] for the slots of `only` alone (all of them for `None`): a test that
    /// knows which slots changed need not read and open the 20 MiB of the others.
    pub async fn unsealed_only(&self, only: Option<&[u32]>) -> Option<Vec<(u32, Vec<u8>)>> {
        use debrief_server::reviews::anonymous::sealed::{unseal, HeldKey};
        let Backend::Cluster(db, dir) = self else {
            return None;
        };
        let secret = debrief_server::cluster::link::ClusterSecret::read(Some(
            &dir.path().join("cluster-secret"),
        ))
        .expect("read the cluster secret");
        let key = HeldKey::new(secret.held_key());
        let slots = db.held_sealed(only).await;
        Some(
            slots
                .into_iter()
                .map(|(slot, sealed)| {
                    let plain = unseal(&key, slot, &sealed)
                        .unwrap_or_else(|| panic!("held slot {slot} does not unseal"));
                    (slot, plain.to_vec())
                })
                .collect(),
        )
    }

    /// What a copy of everything the server stored shows: the files of its data directory
    /// ([`files_under`]), then, on PostgreSQL, the copy of its database ([`TestDb::copy`]).
    pub async fn copy(&self, data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = files_under(data);
        if let Some(db) = self.db() {
            out.extend(db.copy().await);
        }
        out
    }
}

/// Every file under `dir` with its bytes, in path order.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A PostgreSQL primary with a synchronous standby, both of this test's own (the shared test
/// cluster must not be killed), made by `scripts/postgres start` and `scripts/postgres standby`
/// on Unix sockets in temporary directories, and removed when this value is dropped. Every
/// commit on the primary waits until the standby has it on disk.
#[derive(Debug)]
pub struct PrimaryAndStandby {
    // Stopped in this order when dropped: the standby, then the primary.
    standby: Started,
    primary: Started,
}

/// A PostgreSQL made by `scripts/postgres`, stopped (and its directory removed) when dropped,
/// so one started before a later step fails is not left running.
#[derive(Debug)]
struct Started(PathBuf);

impl Drop for Started {
    fn drop(&mut self) {
        let stopped = std::process::Command::new(script())
            .arg("stop")
            .arg(&self.0)
            .status();
        if !matches!(stopped, Ok(s) if s.success()) {
            eprintln!(
                "could not stop the PostgreSQL in {}: {stopped:?}",
                self.0.display()
            );
        }
    }
}

impl Started {
    /// A connection string to its database `db`, on its socket.
    fn url(&self, db: &str) -> String {
        format!("host={} user=postgres dbname={db}", self.0.display())
    }

    /// Runs `sql` on its database `db`.
    async fn execute(&self, db: &str, sql: &str) {
        execute(&self.url(db), sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Sends each of `signals` in turn to the postmaster and every process of it.
    fn signal(&self, signals: &[&str]) {
        let pid_file = self.0.join("data").join("postmaster.pid");
        let postmaster = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", pid_file.display()));
        let postmaster = postmaster.lines().next().unwrap_or("").trim().to_owned();
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Field 4, the parent, follows the command name in parentheses.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        for signal in signals {
            for pid in &pids {
                let out = std::process::Command::new("kill")
                    .arg(signal)
                    .arg(pid)
                    .output()
                    .expect("run kill");
                // A child may have exited since the list was made (an autovacuum worker, a
                // session's backend): it needs no signal. The postmaster must get each.
                let gone = pid != &postmaster && !Path::new("/proc").join(pid).exists();
                assert!(
                    out.status.success() || gone,
                    "kill {signal} {pid} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// A PostgreSQL of this test's own (the shared test cluster must keep answering the other
/// tests), made by `scripts/postgres start` and removed when this value is dropped; it can be
/// frozen, as a hung host or a network partition would leave it.
#[derive(Debug)]
pub struct OwnPostgres(Started);

impl OwnPostgres {
    /// Starts it.
    pub fn start() -> OwnPostgres {
        OwnPostgres(Started(PathBuf::from(run_script(&["start"]))))
    }

    /// A connection string to its database `db`.
    pub fn url(&self, db: &str) -> String {
        self.0.url(db)
    }

    /// Runs `sql` on its database `db`.
    pub async fn execute(&self, db: &str, sql: &str) {
        self.0.execute(db, sql).await;
    }

    /// Stops every process of it (SIGSTOP): connections stay open and nothing answers.
    pub fn freeze(&self) {
        self.0.signal(&["-STOP"]);
    }

    /// Lets it run again (SIGCONT).
    pub fn thaw(&self) {
        self.0.signal(&["-CONT"]);
    }
}

/// `scripts/postgres` of this checkout.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("postgres")
}

/// Runs `scripts/postgres args`; what it printed.
fn run_script(args: &[&str]) -> String {
    let out = std::process::Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running scripts/postgres {args:?}: {e}"));
    assert!(
        out.status.success(),
        "scripts/postgres {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl PrimaryAndStandby {
    /// Starts both and waits until the primary counts the standby as synchronous.
    pub fn start() -> PrimaryAndStandby {
        let primary = Started(PathBuf::from(run_script(&["start"])));
        let standby = Started(PathBuf::from(run_script(&[
            "standby",
            &primary.0.to_string_lossy(),
        ])));
        PrimaryAndStandby { standby, primary }
    }

    /// A connection string to database `db` on whichever of the two accepts writes: libpq's
    /// list of hosts, tried in order, with `target_session_attrs=read-write`, so that a client
    /// reconnecting after the primary died reaches the standby once it is promoted.
    pub fn url(&self, db: &str) -> String {
        format!(
            "host={},{} user=postgres dbname={db} target_session_attrs=read-write",
            self.primary.0.display(),
            self.standby.0.display()
        )
    }

    /// Runs `sql` on the primary's database `db`.
    pub async fn execute_on_primary(&self, db: &str, sql: &str) {
        self.primary.execute(db, sql).await;
    }

    /// Runs `query` on the primary's database `db`; the first column of each row.
    pub async fn query_primary(&self, db: &str, query: &str) -> Vec<String> {
        query_text(&self.primary.url(db), query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// Kills the primary as a power cut would: its postmaster and every process of it are
    /// stopped at once (SIGSTOP, so none can finish a commit while the others die), then
    /// killed (SIGKILL).
    pub fn kill_primary(&self) {
        self.primary.signal(&["-STOP", "-KILL"]);
    }

    /// Promotes the standby to primary and waits until it accepts writes.
    pub async fn promote(&self) {
        let promoted = query_text(&self.standby.url("postgres"), "SELECT pg_promote(true, 60)")
            .await
            .unwrap_or_else(|e| panic!("promoting the standby: {e}"));
        assert_eq!(promoted, vec!["t"], "the standby was promoted");
    }
}

/// `name` as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
