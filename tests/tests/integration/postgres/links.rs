//! A node's internal link listener (`--cluster-listen`, issue 18, `docs/cluster.md`): its flags
//! are checked at start-up with their exact errors, the node registers the address it really
//! bound, a peer holding the cluster secret links to it and shows in `/metrics`, one without the
//! secret is refused and counted, and SIGTERM closes the link before the server exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use debrief_server::cluster::link::{
    ClusterSecret, Endpoint, Link, LinkClosed, LinkError, LinkSettings, StreamClosed, SubStream,
};
use debrief_server::cluster::NodeId;
use debrief_server::limits::SHUTDOWN_GRACE;
use debrief_tests::postgres::TestDb;
use debrief_tests::server::refused_with as refused;
use debrief_tests::{within, ChildServer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The cluster secret of these tests: 32 bytes of 0x5a, as hex.
const SECRET_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Writes `text` to `name` in `dir` with `mode`.
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// An endpoint of a node this test plays, holding `secret` (32 bytes of it).
fn endpoint(secret: u8, tracker: &TaskTracker, shutdown: &CancellationToken) -> Endpoint {
    Endpoint::new(
        NodeId::random(),
        &ClusterSecret::new(vec![secret; 32]).expect("long enough"),
        LinkSettings {
            // A loaded machine finishes the handshake and hears a heartbeat within these.
            handshake_limit: Duration::from_secs(5),
            silent_after: Duration::from_secs(5),
            ..LinkSettings::default()
        },
        tracker.clone(),
        shutdown.clone(),
    )
    .expect("an endpoint")
}

/// Waits until `/metrics` of `server` shows `name` at `value`.
async fn metric_reaches(server: &ChildServer, name: &str, value: u64) {
    server.wait_metric(name, |v| v == value).await;
}

/// Bad link flags stop the server before it serves, each with its own one-line error, and
/// nothing is registered.
#[tokio::test]
async fn bad_link_flags_are_refused_at_start_up() {
    let db = TestDb::create().await;
    let url = db.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(dir.path(), "secret", SECRET_HEX, 0o600);
    let secret = secret.to_string_lossy().into_owned();

    assert_eq!(
        refused(&["--cluster-listen", "127.0.0.1:0"]).await,
        (
            Some(2),
            "error: --cluster-listen and --cluster-secret-file need --postgres\n".to_owned()
        )
    );
    assert_eq!(
        refused(&["--postgres", &url, "--cluster-listen", "127.0.0.1:0"]).await,
        (
            Some(2),
            "error: --cluster-listen needs the cluster secret: give --cluster-secret-file or set \
             DEBRIEF_CLUSTER_SECRET\n"
                .to_owned()
        )
    );
    assert_eq!(
        refused(&[
            "--postgres",
            &url,
            "--cluster-listen",
            "0.0.0.0:0",
            "--cluster-secret-file",
            &secret
        ])
        .await,
        (
            Some(2),
            "error: --cluster-listen 0.0.0.0:0 listens on every interface, an address other nodes \
             cannot dial: give --cluster-advertise HOST:PORT, where they reach this node\n"
                .to_owned()
        )
    );
    assert_eq!(
        refused(&[
            "--postgres",
            &url,
            "--cluster-listen",
            "localhost:4100",
            "--cluster-secret-file",
            &secret
        ])
        .await,
        (
            Some(2),
            "error: --cluster-listen: \"localhost:4100\" is not IP:PORT (an IP address, a colon \
             and a port; port 0 picks a free one)\n"
                .to_owned()
        )
    );
    // The secret is read before anything is opened: a file others may read stops the server.
    let open = secret_file(dir.path(), "open", SECRET_HEX, 0o644);
    let open = open.to_string_lossy().into_owned();
    let (code, stderr) = refused(&[
        "--postgres",
        &url,
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret-file",
        &open,
    ])
    .await;
    // Its last line: the server has started logging by then.
    assert_eq!(
        (code, stderr.lines().last()),
        (
            Some(1),
            Some(
                format!(
                    "error: the cluster secret file {open} has mode 0644, open to its group or \
                     others: it must be readable by its owner only (chmod 600 {open})"
                )
                .as_str()
            )
        )
    );
    assert_eq!(
        db.query("SELECT count(*) FROM pg_tables WHERE tablename = 'nodes'")
            .await,
        vec!["0"],
        "nothing was registered"
    );
}

/// A node started with `--cluster-listen 127.0.0.1:0` registers the port it bound; a peer with
/// the cluster secret that dials it by the id in `nodes` gets a link (`debrief_cluster_links`
/// 1), whose sub-streams the node serves as forwarded attachments; a peer with another
/// secret is refused and counted; and SIGTERM closes the link and the server exits well within
/// its grace.
#[tokio::test]
async fn a_listening_node_registers_its_bound_address_and_links_only_with_the_secret() {
    let db = TestDb::create().await;
    let url = db.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(dir.path(), "secret", SECRET_HEX, 0o600);
    let secret = secret.to_string_lossy().into_owned();
    let args = [
        "--open-access",
        "--postgres",
        &url,
        "--cluster-lease-ms",
        "10000",
        "--cluster-renew-ms",
        "500",
        "--cluster-listen",
        "127.0.0.1:0",
        "--cluster-secret-file",
        &secret,
    ];
    let server = ChildServer::start_with(&dir.path().join("data"), &args, None).await;

    let nodes = db.query("SELECT id || ' ' || address FROM nodes").await;
    assert_eq!(nodes.len(), 1, "one node: {nodes:?}");
    let (id, address) = nodes[0].split_once(' ').expect("id and address");
    let id = NodeId::parse(id).expect("a node id");
    let address: SocketAddr = address.parse().expect("the registered address is IP:PORT");
    assert_eq!(address.ip().to_string(), "127.0.0.1");
    assert_ne!(address.port(), 0, "the bound port, not the one asked for");
    assert_ne!(address.port(), server.addr.port(), "not the HTTP port");
    assert_eq!(server.metric("debrief_cluster_links").await, 0);
    assert_eq!(
        server.metric("debrief_cluster_link_refusals_total").await,
        0
    );

    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let peer = endpoint(0x5a, &tracker, &shutdown);
    let link = within("the link", peer.connect(address, &id))
        .await
        .expect("a link with the right secret");
    assert_eq!(link.peer(), &id);
    metric_reaches(&server, "debrief_cluster_links", 1).await;

    // A sub-stream is one forwarded attachment, served by the node as the document's owner.
    forwarded_attachment(&link, &server).await;

    // A document another node owns: a lane for it is not passed on again (its records were
    // stale), but refused as "unloading", so that the node that sent it looks the owner up.
    let other = ChildServer::start_with(&dir.path().join("other"), &args, None).await;
    let mut owner_client = debrief_tests::Client::connect(&other.ws_url("elsewhere")).await;
    owner_client.wait_synced().await;
    metric_reaches(&other, "debrief_documents_loaded", 1).await;
    stale_route(&link, &server).await;
    assert_eq!(other.metric("debrief_forwarded_lanes_open").await, 0);
    drop(owner_client);
    let status = other.terminate().await;
    assert!(status.success(), "{status:?}");

    let stranger = endpoint(0x11, &tracker, &shutdown);
    let refused = within("the refusal", stranger.connect(address, &id))
        .await
        .expect_err("another secret is refused");
    assert!(
        matches!(refused, LinkError::ProofRefused),
        "refused with {refused}"
    );
    assert_eq!(
        refused.to_string(),
        "link handshake: the peer closed the connection after this node's proof (most likely a \
         different cluster secret)"
    );
    metric_reaches(&server, "debrief_cluster_link_refusals_total", 1).await;
    assert_eq!(server.metric("debrief_cluster_links").await, 1);
    assert!(!link.is_closed(), "the good link is untouched");

    let stopping = Instant::now();
    let status = server.terminate().await;
    let stopped = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    let why = within("the link to close", link.closed()).await;
    assert!(
        matches!(why, LinkClosed::PeerClosed | LinkClosed::Io(_)),
        "the node closed the link: {why}"
    );
    println!(
        "SIGTERM: the server exited {} ms later",
        stopped.as_millis()
    );
    assert!(
        stopped < SHUTDOWN_GRACE,
        "the server took {stopped:?} to exit (grace {SHUTDOWN_GRACE:?})"
    );
    assert_eq!(
        db.query("SELECT count(*) FROM nodes").await,
        vec!["0"],
        "the node left"
    );
    shutdown.cancel();
    tracker.close();
    within("the test's link tasks to end", tracker.wait()).await;
}

/// A lane to `server` for a document another node owns: the member's join is answered
/// "unloading", and nothing is forwarded on.
async fn stale_route(link: &Link, server: &ChildServer) {
    use debrief_proto::forward::{self, FromOwner, JoinFailure, Said};

    let mut stream = link.open("elsewhere").await.expect("open a sub-stream");
    stream
        .send(forward::encode_join(1, ""))
        .await
        .expect("send the join");
    let answer = next_from_owner(&mut stream).await;
    assert_eq!(
        forward::decode_from_owner(&answer),
        Ok(FromOwner::To {
            member: 1,
            said: Said::JoinFailed(JoinFailure::Unloading)
        })
    );
    assert_eq!(server.metric("debrief_forwarded_attachments_open").await, 0);
    stream.close().await;
}

/// The next message the owner sends on `stream`, decoded.
async fn next_from_owner(stream: &mut SubStream) -> Vec<u8> {
    within("a message from the owner", stream.recv())
        .await
        .expect("the sub-stream is open")
}

/// What the owner side of forwarding does with a lane (`transport/forwarded.rs`): members
/// joining with their tokens, y-protocols messages both ways, acknowledgements behind the commit
/// to the member that wrote, a relay crossing once for the whole lane, a member that is refused,
/// a member that leaves, and a lane whose first message is not a join.
async fn forwarded_attachment(link: &Link, server: &ChildServer) {
    use debrief_proto::forward::{self, FromOwner, Notice, Said, WireAccess};
    use debrief_proto::ywire::{Message, SyncMessage};
    use yrs::{ReadTxn, Text, Transact};

    let mut stream = link.open("forwarded").await.expect("open a sub-stream");
    // Two members on one lane, each told it is attached, then sent the owner's SyncStep1.
    for member in [1, 2] {
        stream
            .send(forward::encode_join(member, ""))
            .await
            .expect("send the join");
        let opened = next_from_owner(&mut stream).await;
        assert_eq!(
            forward::decode_from_owner(&opened),
            Ok(FromOwner::To {
                member,
                said: Said::Notice(Notice::Opened(WireAccess::ReadWrite))
            })
        );
        let step1 = next_from_owner(&mut stream).await;
        assert!(
            matches!(forward::decode_from_owner(&step1), Ok(FromOwner::To { member: m, said: Said::Message(b) }) if m == member && b.starts_with(&[0, 0])),
            "{step1:?}"
        );
    }
    metric_reaches(server, "debrief_forwarded_attachments_open", 2).await;
    metric_reaches(server, "debrief_forwarded_lanes_open", 1).await;
    // An update of member 1 is acknowledged to it behind its commit, and relayed once for the
    // lane, to every member but 1; a client of the node itself receives it.
    let mut local = debrief_tests::Client::connect(&server.ws_url("forwarded")).await;
    local.wait_synced().await;
    let doc = yrs::Doc::new();
    doc.get_or_insert_text("t")
        .insert(&mut doc.transact_mut(), 0, "forwarded and committed");
    let update = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    stream
        .send(forward::encode_frame(
            1,
            &Message::Sync(SyncMessage::Update(&update)).encode(),
        ))
        .await
        .expect("send the update");
    let (mut applied, mut relayed) = (false, 0);
    while !(applied && relayed > 0) {
        let message = next_from_owner(&mut stream).await;
        match forward::decode_from_owner(&message).expect("a message the owner may send") {
            FromOwner::To {
                member: 1,
                said: Said::Notice(Notice::Applied),
            } => applied = true,
            FromOwner::All {
                except: Some(1),
                message: [0, 2, ..],
            } => relayed += 1,
            // Presence of the local client, to one member or all of them.
            FromOwner::To {
                said: Said::Message(_),
                ..
            }
            | FromOwner::All { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(relayed, 1, "one relay for the lane");
    local.wait_text("t", "forwarded and committed").await;
    // A member that leaves is detached; the lane goes on for the other.
    stream
        .send(forward::encode_leave(2))
        .await
        .expect("send the leave");
    metric_reaches(server, "debrief_forwarded_attachments_open", 1).await;
    stream.close().await;
    metric_reaches(server, "debrief_forwarded_attachments_open", 0).await;
    metric_reaches(server, "debrief_forwarded_lanes_open", 0).await;

    // A first message that is not a join ends the lane with a protocol error.
    let mut stream = link.open("forwarded").await.expect("open a sub-stream");
    stream
        .send(forward::encode_frame(
            1,
            &Message::Sync(SyncMessage::Step1(&[0])).encode(),
        ))
        .await
        .expect("send");
    let refusal = next_from_owner(&mut stream).await;
    assert_eq!(
        forward::decode_from_owner(&refusal),
        Ok(FromOwner::Close {
            code: 1002,
            reason: "lane_without_join"
        })
    );
    assert_eq!(
        within("the close", stream.recv()).await,
        Err(StreamClosed::ByPeer)
    );

    // A review's document with a token of no session is refused, as a client would be.
    let mut stream = link
        .open("review.r1.report")
        .await
        .expect("open a sub-stream");
    stream
        .send(forward::encode_join(5, "dbs_nobody"))
        .await
        .expect("send the join");
    let refusal = next_from_owner(&mut stream).await;
    match forward::decode_from_owner(&refusal) {
        Ok(FromOwner::To {
            member: 5,
            said: Said::Notice(Notice::Withdrawn { code, .. }),
        }) => {
            assert_eq!(code, "unknown_review")
        }
        other => panic!("unexpected {other:?}"),
    }
}
