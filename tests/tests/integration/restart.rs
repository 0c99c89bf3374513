//! Restarts in the middle of reviews (issue 16): the real binary on one data directory, stopped
//! cleanly (SIGTERM) or killed (`kill -9`) between steps, and every step checked to work again
//! afterwards with everything done before it still there.

use std::path::PathBuf;

use base64::Engine;
use debrief_tests::api::{Reply, Review};
use debrief_tests::{ChildServer, Client};
use serde_json::{json, Value};
use tempfile::TempDir;
use yrs::types::xml::{XmlFragment, XmlOut};
use yrs::updates::encoder::Encode;
use yrs::{Assoc, GetString, IndexedSequence, Transact};

/// The report's fragment (`docs/schema.md`).
const FRAGMENT: &str = "default";

/// How a restart ends the running server.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGTERM: sockets closed, store flushed and compacted, exit 0.
    Clean,
    /// SIGKILL: whatever was acknowledged must be there after the restart.
    Kill9,
}

/// The real binary on one data directory, restarted on demand.
struct Restarting {
    _dir: TempDir,
    data: PathBuf,
    args: Vec<&'static str>,
    server: Option<ChildServer>,
}

impl Restarting {
    async fn start(args: &[&'static str]) -> Restarting {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let server = ChildServer::start_with(&data, args, None).await;
        Restarting {
            _dir: dir,
            data,
            args: args.to_vec(),
            server: Some(server),
        }
    }

    fn server(&self) -> &ChildServer {
        self.server.as_ref().expect("the server runs")
    }

    /// Stops the server the way `stop` says, starts it again on the same data, and points
    /// `review` at the new address.
    async fn restart(&mut self, stop: Stop, review: &mut Review) {
        let server = self.server.take().expect("the server runs");
        match stop {
            Stop::Clean => {
                let status = server.terminate().await;
                assert!(status.success(), "a clean stop exits 0: {status}");
            }
            Stop::Kill9 => server.kill9().await,
        }
        let server = ChildServer::start_with(&self.data, &self.args, None).await;
        review.addr = server.addr;
        self.server = Some(server);
    }

    async fn terminate(mut self) {
        if let Some(server) = self.server.take() {
            assert!(server.terminate().await.success());
        }
    }
}

/// A y-websocket client of one of the review's documents as `role`, synced.
async fn open(review: &Review, kind: &str, role: &str) -> Client {
    let url = format!(
        "ws://{}/ws/{}?token={}",
        review.addr,
        review.doc(kind),
        review.sessions[role]
    );
    let mut client = Client::connect(&url).await;
    client.wait_synced().await;
    client
}

/// An anchor around `text` in the report as `role`'s freshly loaded client encodes it (base64
/// of Yjs relative positions), with the quote: what the browser sends for a selection.
async fn anchor_on(review: &Review, role: &str, text: &str) -> Value {
    let client = open(review, "report", role).await;
    let fragment = client.doc.get_or_insert_xml_fragment(FRAGMENT);
    let anchor = {
        let txn = client.doc.transact();
        let (t, at) = fragment
            .children(&txn)
            .find_map(|n| {
                let XmlOut::Element(e) = n else { return None };
                let Some(XmlOut::Text(t)) = e.get(&txn, 0) else {
                    return None;
                };
                let at = t.get_string(&txn).find(text)?;
                Some((t, at as u32))
            })
            .unwrap_or_else(|| panic!("{text:?} is in the report"));
        let b64 =
            |p: yrs::StickyIndex| base64::engine::general_purpose::STANDARD.encode(p.encode_v1());
        let start = t.sticky_index(&txn, at, Assoc::After).expect("start");
        let end = t
            .sticky_index(&txn, at + text.len() as u32, Assoc::Before)
            .expect("end");
        json!({ "start": b64(start), "end": b64(end), "quote": text })
    };
    client.close().await;
    anchor
}

/// Posts an anchored comment as `role`; the reply.
async fn comment_on(review: &Review, role: &str, anchor: &Value, body: &str) -> Reply {
    review
        .call(
            role,
            "POST",
            "/threads",
            Some(json!({ "body": body, "anchor": anchor })),
        )
        .await
}

/// Issue 16: after any restart, every comment on selected text in a review that existed before
/// it was refused with 422 `anchor_not_in_report` (the reloaded report's root type was not
/// known as XML to the anchor check).
#[tokio::test]
async fn anchored_comments_work_after_a_clean_stop_and_after_kill_9() {
    let mut run = Restarting::start(&[]).await;
    let mut review = Review::create(run.server().addr, "Anchors after restarts").await;
    review.move_to("review").await;
    let before = anchor_on(&review, "author", "Two or three").await;
    let made = comment_on(&review, "participant", &before, "Before any restart").await;
    assert_eq!(made.status, 201, "{}", made.body);

    for stop in [Stop::Clean, Stop::Kill9, Stop::Clean] {
        run.restart(stop, &mut review).await;
        // From a page loaded after the restart, on text nobody touched, for every commenter;
        // and an anchor made before the restart still points into the same report.
        let fresh = anchor_on(&review, "participant", "Two or three").await;
        assert_eq!(fresh, before, "the same text gives the same positions");
        for role in ["facilitator", "author", "participant"] {
            let made = comment_on(&review, role, &fresh, &format!("{role} after {stop:?}")).await;
            assert_eq!(made.status, 201, "{role} after {stop:?}: {}", made.body);
        }
    }
    // A general comment worked all along, and still does; an anchor into another review's
    // report is still refused.
    let general = review
        .call(
            "participant",
            "POST",
            "/threads",
            Some(json!({ "body": "general" })),
        )
        .await;
    assert_eq!(general.status, 201, "{}", general.body);
    let other = Review::create(run.server().addr, "Other").await;
    let foreign = anchor_on(&other, "author", "Two or three").await;
    comment_on(&review, "participant", &foreign, "elsewhere")
        .await
        .assert_error(422, "anchor_not_in_report");
    run.terminate().await;
}
