//! Damage is never silent (issue 16, item 7): a damaged sled file, a missing or truncated store
//! and a damaged write-ahead segment are refused with what is damaged, and the damaged files are
//! kept; `debrief check` says the same offline; `debrief backup` under load and `debrief
//! restore` keep every acknowledged update.

use std::path::{Path, PathBuf};

use debrief_server::storage::wal;
use debrief_tests::api::{request, Review};
use debrief_tests::server::{refused_start, run_binary};
use debrief_tests::{ChildServer, Client};

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The folders under `<data>/damaged/` (not the scratch ones).
fn kept(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(data.join("damaged")) {
        Ok(entries) => entries
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Starts the binary on `data`, creates five reviews and stops it cleanly.
async fn five_reviews_then_clean_stop(data: &Path) {
    let server = ChildServer::start(data).await;
    for i in 0..5 {
        Review::create(server.addr, &format!("Cache stampede number {i}")).await;
    }
    assert!(server.terminate().await.success());
}

/// `debrief check --data-dir data`.
async fn check(data: &Path) -> debrief_tests::server::Finished {
    run_binary(&["check", "--data-dir", &text(data)]).await
}

#[tokio::test]
async fn a_flipped_byte_in_sleds_file_after_a_clean_stop_is_refused_and_kept() {
    const TITLE: &[u8] = b"Cache stampede number 2";
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    five_reviews_then_clean_stop(&data).await;
    let db = data.join("db");
    let mut bytes = std::fs::read(&db).expect("read db");
    let at = bytes
        .windows(TITLE.len())
        .position(|w| w == TITLE)
        .expect("the third title is in sled's file");
    bytes[at + 3] ^= 0x01;
    std::fs::write(&db, &bytes).expect("write db");

    let refused = refused_start(&data).await;
    assert_eq!(refused.code, Some(1), "stderr: {}", refused.stderr);
    let folders = kept(&data);
    assert_eq!(folders.len(), 1, "one copy kept: {folders:?}");
    assert!(
        refused.stderr.contains(&format!(
            "the data directory is damaged; copies of the damaged files are kept in {}\n  \
             damaged: sled file db differs from the last clean stop (same size, different SHA-256)\n  \
             damaged: ",
            folders[0].display()
        )),
        "{}",
        refused.stderr
    );
    let report = std::fs::read_to_string(folders[0].join("REPORT")).expect("report");
    assert!(
        report.starts_with(
            "sled file db differs from the last clean stop (same size, different SHA-256)\n"
        ),
        "{report}"
    );
    assert!(
        report
            .lines()
            .skip(1)
            .any(|l| l.starts_with("tree ") || l.starts_with("sled cannot")),
        "the report names the damaged trees: {report}"
    );
    // Neither the store nor the copy was touched by sled.
    assert_eq!(
        std::fs::read(&db).expect("db"),
        bytes,
        "the store was not changed"
    );
    assert_eq!(
        std::fs::read(folders[0].join("store").join("db")).expect("kept db"),
        bytes
    );
    assert!(folders[0].join("manifest").is_file());

    // The same damage found again keeps no second copy.
    let again = refused_start(&data).await;
    assert_eq!(again.code, Some(1));
    assert_eq!(kept(&data), folders);

    let checked = check(&data).await;
    assert_eq!(checked.code, Some(1), "{checked:?}");
    let expected: String = report.lines().map(|l| format!("damaged: {l}\n")).collect();
    assert_eq!(checked.stdout, expected);

    // Read-only on request: served, says so, refuses changes.
    let server =
        ChildServer::start_with(&data, &["--open-access", "--on-damage", "read-only"], None).await;
    let ready = request(server.addr, "GET", "/readyz", None, None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "read-only");
    assert_eq!(
        ready.body["damaged"][0],
        "sled file db differs from the last clean stop (same size, different SHA-256)"
    );
    let created = request(
        server.addr,
        "POST",
        "/api/reviews",
        None,
        Some(&serde_json::json!({"title": "after the damage"})),
    )
    .await;
    created.assert_error(503, "read_only");
    assert!(server.terminate().await.success());
    // Read-only never blesses the damage: a normal start still refuses.
    assert_eq!(refused_start(&data).await.code, Some(1));
}

#[tokio::test]
async fn a_deleted_or_truncated_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    five_reviews_then_clean_stop(&data).await;
    let db = data.join("db");
    let original = std::fs::read(&db).expect("db");

    // Truncated to half after a clean stop.
    let half = original.len() / 2;
    std::fs::write(&db, &original[..half]).expect("truncate");
    let refused = refused_start(&data).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "\n  damaged: sled file db is {half} bytes; it was {} at the last clean stop\n",
            original.len()
        )),
        "{}",
        refused.stderr
    );

    // Deleted.
    std::fs::remove_file(&db).expect("delete");
    let refused = refused_start(&data).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("\n  damaged: sled file db is missing (the manifest records generation "),
        "{}",
        refused.stderr
    );
    assert!(!db.exists(), "no empty store was created in its place");

    // Emptied after a crash (the manifest of a running server).
    std::fs::write(&db, &original).expect("put back");
    let server = ChildServer::start(&data).await;
    assert_eq!(
        request(server.addr, "GET", "/readyz", None, None)
            .await
            .status,
        200
    );
    server.kill9().await;
    std::fs::write(&db, b"").expect("empty the store");
    let refused = refused_start(&data).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "\n  damaged: sled cannot open the store: Read corrupted data at file offset "
        ),
        "{}",
        refused.stderr
    );
    let last = kept(&data).pop().expect("kept");
    assert_eq!(
        std::fs::read(last.join("store").join("db")).expect("kept db"),
        b"",
        "the store as it was found, before sled opened it"
    );
}

/// A `/collab` writer that has sent `n` one-character updates, each acknowledged.
async fn acknowledged_writes(server: &ChildServer, doc: &str, n: u64) -> String {
    let mut writer = Client::connect_collab(&server.collab_url(), doc, "any").await;
    writer.wait_authenticated().await;
    writer.wait_synced().await;
    writer.round_trip().await;
    let base = writer.acks();
    let mut expected = String::new();
    for i in 0..n {
        let c = char::from(b'a' + (i % 26) as u8);
        writer.insert("t", i as u32, &c.to_string());
        expected.push(c);
        writer.wait_acks(base + i + 1).await;
    }
    expected
}

fn only_segment(data: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .expect("wal folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().expect("one segment")
}

#[tokio::test]
async fn a_flipped_byte_in_the_middle_of_a_write_ahead_segment_is_refused_and_the_segment_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ChildServer::start(&data).await;
    acknowledged_writes(&server, "wal-damage", 60).await;
    server.kill9().await;
    let segment = only_segment(&data);
    let mut bytes = std::fs::read(&segment).expect("segment");
    let records = wal::decode(&bytes).0.len();
    assert!(records > 10, "{records} records");
    // Inside the first record's payload (after its 8-byte header).
    bytes[12] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("flip");

    let refused = refused_start(&data).await;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let line = format!(
        "write-ahead segment wal/{name}: the record at byte 0 is damaged, and {} acknowledged \
         records follow it",
        records - 1
    );
    assert!(
        refused.stderr.contains(&format!("\n  damaged: {line}")),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read(&segment).expect("the segment is still there"),
        bytes,
        "nothing was erased"
    );
    let folders = kept(&data);
    assert_eq!(
        std::fs::read(folders[0].join("wal").join(&name)).expect("kept segment"),
        bytes
    );
    let checked = check(&data).await;
    assert_eq!(
        (checked.code, checked.stdout.as_str()),
        (Some(1), format!("damaged: {line}\n").as_str())
    );
}

#[tokio::test]
async fn a_torn_write_ahead_tail_after_kill_9_is_still_replayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ChildServer::start(&data).await;
    let expected = acknowledged_writes(&server, "torn", 40).await;
    server.kill9().await;
    let segment = only_segment(&data);
    let mut bytes = std::fs::read(&segment).expect("segment");
    let (records, intact) = wal::decode(&bytes);
    assert!(intact);
    let mut end = 0;
    for r in &records {
        let mut one = Vec::new();
        wal::encode(&mut one, &r.name, r.seq, &r.record);
        end += one.len();
    }
    // The last record cut short, as a crash in the middle of its write leaves it.
    bytes[end - 3..end].fill(0);
    std::fs::write(&segment, &bytes).expect("tear");

    let checked = check(&data).await;
    assert_eq!((checked.code, checked.stdout.as_str()), (Some(0), "ok\n"));
    let server = ChildServer::start(&data).await;
    let mut reader = Client::connect(&server.ws_url("torn")).await;
    reader.wait_synced().await;
    let recovered = reader.text("t");
    assert!(
        expected.starts_with(&recovered) && recovered.len() + 5 >= expected.len(),
        "recovered {recovered:?} of {expected:?}"
    );
    assert!(server.terminate().await.success());
    assert!(kept(&data).is_empty(), "a torn tail is not damage");
}

#[tokio::test]
async fn check_says_ok_for_a_healthy_directory_and_refuses_a_running_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    five_reviews_then_clean_stop(&data).await;
    let checked = check(&data).await;
    assert_eq!(
        (
            checked.code,
            checked.stdout.as_str(),
            checked.stderr.as_str()
        ),
        (Some(0), "ok\n", "")
    );
    let server = ChildServer::start(&data).await;
    let running = check(&data).await;
    assert_eq!(running.code, Some(2));
    assert_eq!(
        running.stderr,
        format!(
            "error: a server is running on {}; stop it first (or take a backup with `debrief \
             backup`)\n",
            data.display()
        )
    );
    server.kill9().await;
    let after_crash = check(&data).await;
    assert_eq!(
        (after_crash.code, after_crash.stdout.as_str()),
        (Some(0), "ok\n")
    );
    let missing = check(&dir.path().join("nowhere")).await;
    assert_eq!(missing.code, Some(2));
}

/// Writers keep editing while `debrief backup` runs; every update acknowledged before it began is
/// in the restored data directory.
#[tokio::test]
async fn a_backup_under_load_restores_every_update_acknowledged_before_it_began() {
    const WRITERS: usize = 3;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ChildServer::start(&data).await;
    let review = Review::create(server.addr, "Backed up while written").await;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = server.collab_url();
        let stop = stop.clone();
        let (acked_tx, acked_rx) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let doc = format!("load-{w}");
            let mut writer = Client::connect_collab(&url, &doc, "any").await;
            writer.wait_authenticated().await;
            writer.wait_synced().await;
            writer.round_trip().await;
            let base = writer.acks();
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                // Several updates in flight, acknowledged in order.
                for _ in 0..5 {
                    writer.insert(
                        "t",
                        sent as u32,
                        &char::from(b'a' + (sent % 26) as u8).to_string(),
                    );
                    sent += 1;
                }
                writer.wait_acks(base + sent).await;
                acked_tx.send_replace(sent);
            }
            writer.close().await;
        });
        writers.push((task, acked_rx));
    }
    for (_, acked) in &mut writers {
        let mut acked = acked.clone();
        debrief_tests::within("writers under way", acked.wait_for(|n| *n >= 50))
            .await
            .expect("writer running");
    }
    // Everything acknowledged up to here must be in the backup.
    let before: Vec<u64> = writers.iter().map(|(_, a)| *a.borrow()).collect();
    let backup = dir.path().join("backup");
    let done = run_binary(&["backup", "--data-dir", &text(&data), "--to", &text(&backup)]).await;
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(
        done.stdout
            .starts_with(&format!("backup written to {}: ", backup.display())),
        "{}",
        done.stdout
    );
    let during: Vec<u64> = writers.iter().map(|(_, a)| *a.borrow()).collect();
    assert!(
        during.iter().zip(&before).any(|(d, b)| d > b),
        "the writers kept writing during the backup: {before:?} → {during:?}"
    );
    stop.cancel();
    for (task, _) in writers {
        task.await.expect("writer");
    }
    assert!(server.terminate().await.success());

    let restored = dir.path().join("restored");
    let done = run_binary(&[
        "restore",
        "--from",
        &text(&backup),
        "--data-dir",
        &text(&restored),
    ])
    .await;
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done
        .stdout
        .starts_with(&format!("restored into {}: ", restored.display())));
    let checked = check(&restored).await;
    assert_eq!((checked.code, checked.stdout.as_str()), (Some(0), "ok\n"));

    let server = ChildServer::start(&restored).await;
    for (w, acked) in before.iter().enumerate() {
        let mut reader = Client::connect(&server.ws_url(&format!("load-{w}"))).await;
        reader.wait_synced().await;
        let text = reader.text("t");
        let expected: String = (0..*acked)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        assert!(
            text.starts_with(&expected),
            "writer {w}: {acked} acknowledged before the backup, restored {}",
            text.len()
        );
    }
    let got = Review {
        addr: server.addr,
        ..review
    }
    .call("facilitator", "GET", "", None)
    .await;
    assert_eq!(got.status, 200, "the review is restored: {}", got.body);
    assert!(server.terminate().await.success());

    // A damaged backup is refused.
    let store = backup.join("store");
    let mut bytes = std::fs::read(&store).expect("backup store");
    bytes[40] ^= 0x01;
    std::fs::write(&store, &bytes).expect("flip");
    let refused = run_binary(&[
        "restore",
        "--from",
        &text(&backup),
        "--data-dir",
        &text(&dir.path().join("again")),
    ])
    .await;
    assert_eq!(refused.code, Some(1));
    assert!(
        refused
            .stderr
            .starts_with("error: the backup is damaged: store is "),
        "{}",
        refused.stderr
    );
}
