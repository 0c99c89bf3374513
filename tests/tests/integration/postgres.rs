//! The PostgreSQL backend (`--postgres`, issue 18) behind the real server, on a fresh database of
//! a real PostgreSQL per test: stock-protocol clients converge through it, `kill -9` loses nothing
//! a client saw, the database's own durability settings are on, and start-up, `/readyz` and the
//! sled-only commands say plainly what is wrong.

mod links;
mod node;

use debrief_tests::postgres::TestDb;
use debrief_tests::server::run_binary;
use debrief_tests::{client, within, Client, TestServer};

/// Two y-websocket clients of one document and two Hocuspocus clients of another converge, and
/// what they wrote is in the database's tables (no sled store is made) and back after a restart.
#[tokio::test]
async fn stock_clients_converge_on_ws_and_collab() {
    let db = TestDb::create().await;
    let server = TestServer::with_postgres(&db.url()).await;

    let mut a = Client::connect(&server.ws_url("pg-ws")).await;
    let mut b = Client::connect(&server.ws_url("pg-ws")).await;
    a.wait_synced().await;
    b.wait_synced().await;
    a.insert("t", 0, "Impact: 12 minutes of 502s. ");
    b.wait_text("t", "Impact: 12 minutes of 502s. ").await;
    b.insert("t", 28, "Detection: 3 minutes.");
    a.wait_text("t", "Impact: 12 minutes of 502s. Detection: 3 minutes.")
        .await;

    let collab = server.collab_url();
    let mut c = Client::connect_collab(&collab, "pg-collab", "any").await;
    let mut d = Client::connect_collab(&collab, "pg-collab", "any").await;
    c.wait_synced().await;
    d.wait_synced().await;
    c.insert("t", 0, "Action: alert on queue depth");
    d.wait_text("t", "Action: alert on queue depth").await;
    d.insert("t", 0, "1. ");
    c.wait_text("t", "1. Action: alert on queue depth").await;
    // Hocuspocus acknowledges each update once it is committed.
    c.wait_acks(1).await;
    d.wait_acks(1).await;

    let records = db
        .query(
            "SELECT count(*) > 0 FROM records WHERE name IN ('pg-ws', 'pg-collab') GROUP BY name",
        )
        .await;
    assert_eq!(records, vec!["t", "t"], "both documents have rows");
    assert!(
        !server.data_dir().join("db").exists(),
        "no sled store is made in the data directory"
    );
    assert!(server.metric("debrief_postgres_commits_total").await >= 4);
    let (status, ready) = client::http_get(server.addr, "/readyz").await;
    assert_eq!((status, ready.contains("ready")), (200, true), "{ready}");

    for c in [a, b, c, d] {
        c.close().await;
    }
    let server = server.restart().await;
    let mut again = Client::connect(&server.ws_url("pg-ws")).await;
    again
        .wait_text("t", "Impact: 12 minutes of 502s. Detection: 3 minutes.")
        .await;
    let mut again = Client::connect_collab(&server.collab_url(), "pg-collab", "any").await;
    again
        .wait_text("t", "1. Action: alert on queue depth")
        .await;
}

/// The sled test's burst and `kill -9`, on PostgreSQL: what an observer received was committed.
#[tokio::test]
async fn kill_9_loses_nothing_any_client_has_seen() {
    let db = TestDb::create().await;
    let url = db.url();
    super::durability::kill_9_mid_burst(&["--open-access", "--postgres", &url]).await;
    // The clean stop at the end folded the log into a snapshot.
    let stored = db
        .query(
            "SELECT (SELECT count(*) FROM records WHERE name = 'crash') \
             + (SELECT count(*) FROM snapshots WHERE name = 'crash') > 0",
        )
        .await;
    assert_eq!(stored, vec!["t"], "the document is in the database");
}

/// Another node taking a document over (its epoch raised in the `documents` table, as a takeover
/// does) fences this node: its next commit of the document writes nothing, the document's
/// connections are closed, and a client that connects again gets the document loaded afresh,
/// with what was committed before.
#[tokio::test]
async fn a_document_taken_over_in_the_database_is_fenced() {
    let db = TestDb::create().await;
    let server = TestServer::with_postgres(&db.url()).await;
    let mut writer = Client::connect(&server.ws_url("fenced")).await;
    let mut reader = Client::connect(&server.ws_url("fenced")).await;
    writer.wait_synced().await;
    reader.wait_synced().await;
    writer.insert("t", 0, "committed. ");
    reader.wait_text("t", "committed. ").await;

    db.query("UPDATE documents SET owner = 'another node', epoch = epoch + 1 WHERE name = 'fenced' RETURNING epoch")
        .await;
    writer.insert("t", 11, "after the takeover");
    let closed = writer.wait_closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1011, "storage_error")
    );
    let closed = reader.wait_closed().await;
    assert_eq!(
        closed.code, 1011,
        "every connection of the document is closed"
    );
    assert_eq!(
        reader.text("t"),
        "committed. ",
        "nothing of the fenced commit was relayed"
    );
    assert_eq!(
        server.metric("debrief_postgres_fenced_commits_total").await,
        1
    );
    let rows = db
        .query("SELECT count(*) FROM records WHERE name = 'fenced'")
        .await;
    assert_eq!(
        rows,
        vec!["1"],
        "only the commit before the takeover is stored"
    );

    let mut again = Client::connect(&server.ws_url("fenced")).await;
    again.wait_text("t", "committed. ").await;
    again.insert("t", 11, "served again");
    again.round_trip().await;
    let mut check = Client::connect(&server.ws_url("fenced")).await;
    check.wait_text("t", "committed. served again").await;
    let owner = db
        .query("SELECT owner <> 'another node' FROM documents WHERE name = 'fenced'")
        .await;
    assert_eq!(owner, vec!["t"], "loading claimed it back (single node)");
}

/// `kill -9` cannot show that a commit reached the disk; PostgreSQL's settings say it does.
#[tokio::test]
async fn the_test_database_syncs_every_commit() {
    let db = TestDb::create().await;
    assert_eq!(db.query("SHOW fsync").await, vec!["on"]);
    assert_eq!(db.query("SHOW synchronous_commit").await, vec!["on"]);
}

/// `/readyz` fails while the database cannot be reached (here: it was dropped under the server).
#[tokio::test]
async fn readyz_fails_while_the_database_is_gone() {
    let db = TestDb::create().await;
    let server = TestServer::with_postgres(&db.url()).await;
    let mut writer = Client::connect(&server.ws_url("gone")).await;
    writer.insert("t", 0, "before");
    writer.round_trip().await;
    let (status, _) = client::http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200);
    drop(db);
    let body = within("/readyz to fail", async {
        loop {
            let (status, body) = client::http_get(server.addr, "/readyz").await;
            if status == 503 {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(body.contains("store_unavailable"), "{body}");
    assert_eq!(server.metric("debrief_postgres_up").await, 0);
}

/// A connection string that does not parse, or a database that cannot be reached within the
/// patience, stops the server at start-up with status 1 and one line saying why.
#[tokio::test]
async fn an_unusable_database_stops_the_server_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let bad = run_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--postgres",
        "postgres://localhost:notaport/debrief",
    ])
    .await;
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    let said = error_line(&bad.stderr);
    assert!(
        said.starts_with("error: postgres: the connection string does not parse: "),
        "{said}"
    );

    let nowhere = format!("host={} user=nobody dbname=none", dir.path().display());
    let unreachable = run_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--postgres",
        &nowhere,
        "--postgres-patience-secs",
        "1",
    ])
    .await;
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stderr);
    let said = error_line(&unreachable.stderr);
    assert!(
        said.starts_with(&format!(
            "error: postgres: cannot reach PostgreSQL at {} database none as nobody (tried for 1 s): ",
            dir.path().display()
        )),
        "{said}"
    );
}

/// `debrief backup`, `restore` and `check` work on sled's files; with `--postgres` they refuse
/// and point at PostgreSQL's own backups.
#[tokio::test]
async fn sled_commands_refuse_a_postgres_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let to = dir.path().join("backup");
    let to = to.to_str().expect("utf-8 path");
    let url = "host=/nonexistent dbname=debrief";
    for command in [
        vec!["--postgres", url, "backup", "--data-dir", data, "--to", to],
        vec![
            "--postgres",
            url,
            "restore",
            "--from",
            to,
            "--data-dir",
            data,
        ],
        vec!["--postgres", url, "check", "--data-dir", data],
    ] {
        let refused = run_binary(&command).await;
        assert_eq!(refused.code, Some(2), "{command:?}: {}", refused.stderr);
        assert_eq!(
            refused.stderr,
            "error: this server keeps its data in PostgreSQL (--postgres): back it up with \
             pg_dump or PostgreSQL's own backups; debrief backup, restore and check work on the \
             embedded sled store only\n",
            "{command:?}"
        );
    }
}

fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"))
}
