//! The link over real TCP on loopback: the handshake, sub-streams, a slow reader, a silent peer,
//! broken peers and shutdown. Every wait is on an event, bounded by [`WAIT`].

use std::time::Instant;

use base64::Engine as _;

use tokio::net::TcpListener;

use super::*;

/// The longest any event is waited for.
const WAIT: Duration = Duration::from_secs(10);

/// Small bounds, with time limits long enough that a loaded 2-core machine never closes a link
/// for silence or a slow handshake in a test that is not about them.
fn settings() -> LinkSettings {
    LinkSettings {
        handshake_limit: Duration::from_secs(5),
        heartbeat_every: Duration::from_millis(50),
        silent_after: Duration::from_secs(5),
        stream_queue: 4,
        stream_queue_bytes: 4096,
        link_queue_bytes: 16384,
        incoming_queue_bytes: 4096,
        max_streams: 64,
        max_handshakes: 8,
        max_payload: 1024,
    }
}

/// The settings of the tests about the handshake limit and silence, short so that they are
/// waited for quickly: a handshake must finish within 500 ms, a peer is silent after 400 ms.
fn quick() -> LinkSettings {
    LinkSettings {
        handshake_limit: Duration::from_millis(500),
        silent_after: Duration::from_millis(400),
        ..settings()
    }
}

struct Cluster {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    fn node(&self, secret: u8) -> Endpoint {
        self.node_with(secret, settings())
    }

    fn node_with(&self, secret: u8, settings: LinkSettings) -> Endpoint {
        Endpoint::new(
            NodeId::random(),
            &ClusterSecret::new(vec![secret; 32]).expect("long enough"),
            settings,
            self.tracker.clone(),
            self.shutdown.clone(),
        )
        .expect("endpoint")
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(t) => t,
        Err(_) => panic!("{what} did not happen within {WAIT:?}"),
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    (listener, addr)
}

/// `b` accepts what `dial` does against its listener; both results.
async fn with_acceptor<T, F: std::future::Future<Output = T>>(
    b: &Endpoint,
    dial: impl FnOnce(SocketAddr) -> F,
) -> (T, Result<Link, LinkError>) {
    let (listener, addr) = listener().await;
    let accept = async {
        let (tcp, _) = listener.accept().await?;
        b.accept(tcp).await
    };
    within("the handshake", async { tokio::join!(dial(addr), accept) }).await
}

async fn pair(a: &Endpoint, b: &Endpoint) -> (Result<Link, LinkError>, Result<Link, LinkError>) {
    with_acceptor(b, |addr| Box::pin(a.connect(addr, b.id()))).await
}

async fn linked(a: &Endpoint, b: &Endpoint) -> (Link, Link) {
    let (la, lb) = pair(a, b).await;
    (la.expect("a's link"), lb.expect("b's link"))
}

async fn recv(s: &mut SubStream) -> Result<Vec<u8>, StreamClosed> {
    within("a message", s.recv()).await
}

#[tokio::test]
async fn two_nodes_exchange_on_several_sub_streams_both_ways() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(7), cluster.node(7));
    let (mut la, mut lb) = linked(&a, &b).await;
    assert_eq!(la.peer(), b.id());
    assert_eq!(lb.peer(), a.id());

    let documents = ["r1/body", "r1/discussion", "r2/body"];
    let mut from_a = Vec::new();
    for d in documents {
        from_a.push(la.open(d).await.expect("open"));
    }
    let mut at_b = Vec::new();
    for _ in documents {
        at_b.push(
            within("an incoming sub-stream", lb.accept_stream())
                .await
                .expect("accepted"),
        );
    }
    let names: Vec<&str> = at_b.iter().map(SubStream::document).collect();
    assert_eq!(names, documents);
    let mut from_b = lb.open("r3/body").await.expect("open");
    let mut at_a = within("an incoming sub-stream", la.accept_stream())
        .await
        .expect("accepted");
    assert_eq!(at_a.document(), "r3/body");

    for n in 0..3 {
        for (s, d) in from_a.iter().zip(documents) {
            s.send(format!("{d} #{n}").into_bytes())
                .await
                .expect("send");
        }
    }
    for (s, d) in at_b.iter_mut().zip(documents) {
        for n in 0..3 {
            assert_eq!(recv(s).await, Ok(format!("{d} #{n}").into_bytes()));
        }
    }
    // Answers on the same sub-streams, and a sub-stream B opened.
    at_b[1].send(b"answer".to_vec()).await.expect("send");
    assert_eq!(recv(&mut from_a[1]).await, Ok(b"answer".to_vec()));
    from_b.send(b"from b".to_vec()).await.expect("send");
    assert_eq!(recv(&mut at_a).await, Ok(b"from b".to_vec()));
    at_a.send(b"back".to_vec()).await.expect("send");
    assert_eq!(recv(&mut from_b).await, Ok(b"back".to_vec()));

    // Closing from either side: what was sent before the close still arrives.
    from_a[0].send(b"last".to_vec()).await.expect("send");
    from_a[0].close().await;
    assert_eq!(recv(&mut at_b[0]).await, Ok(b"last".to_vec()));
    assert_eq!(recv(&mut at_b[0]).await, Err(StreamClosed::ByPeer));
    assert_eq!(
        at_b[0]
            .send(b"late".to_vec())
            .await
            .expect_err("closed")
            .to_string(),
        "the sub-stream is closed: closed by the peer"
    );
    at_b[2].close().await;
    assert_eq!(recv(&mut from_a[2]).await, Err(StreamClosed::ByPeer));
    assert_eq!(recv(&mut at_b[2]).await, Err(StreamClosed::Local));

    // The others still flow.
    from_a[1].send(b"still".to_vec()).await.expect("send");
    assert_eq!(recv(&mut at_b[1]).await, Ok(b"still".to_vec()));
    assert_eq!(
        from_a[1]
            .send(vec![0; 1025])
            .await
            .expect_err("too large")
            .to_string(),
        "a payload of 1025 bytes exceeds the link's limit of 1024 bytes"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_on_both_sides() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(1), cluster.node(2));
    let (ra, rb) = pair(&a, &b).await;
    // The acceptor finds the dialer's proof wrong and closes without proving itself.
    assert_eq!(
        ra.expect_err("refused").to_string(),
        "link handshake: the peer closed the connection after this node's proof (most likely a different cluster secret)"
    );
    assert_eq!(
        rb.expect_err("refused").to_string(),
        "link handshake: the peer's proof is wrong (it does not hold this cluster's secret)"
    );
}

#[tokio::test]
async fn the_dialer_refuses_a_node_other_than_the_one_it_expects() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(4), cluster.node(4));
    let someone = NodeId::random();
    let (ra, rb) = with_acceptor(&b, |addr| Box::pin(a.connect(addr, &someone))).await;
    assert_eq!(
        ra.expect_err("another node").to_string(),
        format!(
            "link handshake: the node at this address is {}, not {someone}",
            b.id()
        )
    );
    // The dialer left before proving anything.
    assert!(rb.is_err(), "the acceptor linked to a dialer that left");
}

#[test]
fn node_ids_are_32_lowercase_hex_digits() {
    assert!(valid_node_id(NodeId::random().as_str()));
    for bad in [
        "",
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "0123456789ABCDEF0123456789abcdef",
        "0123456789abcdef0123456789abcdeg",
        "../../../../../../../../etc/pass",
    ] {
        assert!(!valid_node_id(bad), "{bad:?}");
    }
    let e = Endpoint::new(
        NodeId("node-1".to_owned()),
        &ClusterSecret::new(vec![1; 32]).expect("long enough"),
        settings(),
        TaskTracker::new(),
        CancellationToken::new(),
    )
    .expect_err("a bad id");
    assert_eq!(e.to_string(), "a node id must be 32 lowercase hex digits");
}

#[tokio::test]
async fn sub_stream_ids_never_wrap_onto_an_open_one() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(6), cluster.node(6));
    let (la, mut lb) = linked(&a, &b).await;
    let first = la.open("r1/body").await.expect("open");
    let mut first_b = within("an incoming sub-stream", lb.accept_stream())
        .await
        .expect("accepted");
    assert_eq!(first.id(), 1);
    // The dialer's last odd id.
    la.shared
        .next_id
        .store(u64::from(u32::MAX), Ordering::Relaxed);
    let last = la.open("r2/body").await.expect("open");
    assert_eq!(last.id(), u32::MAX);
    // The first sub-stream still works both ways while ids are left.
    first.send(b"still here".to_vec()).await.expect("send");
    assert_eq!(recv(&mut first_b).await, Ok(b"still here".to_vec()));
    first_b.send(b"yes".to_vec()).await.expect("send");
    let mut first = first;
    assert_eq!(recv(&mut first).await, Ok(b"yes".to_vec()));
    // An id already open is never registered again.
    assert_eq!(
        la.shared
            .register(1, Arc::new(OnceLock::new()))
            .expect_err("in use")
            .to_string(),
        "sub-stream id 1 is already open on this link"
    );
    // With no id left the link closes, so that a new one is dialled.
    assert_eq!(
        la.open("r3/body").await.expect_err("no ids").to_string(),
        "the link has no sub-stream ids left; open a new link"
    );
    assert_eq!(
        within("the link to close", la.closed()).await,
        LinkClosed::OutOfIds
    );
    assert!(
        la.open("r4/body").await.is_err(),
        "a closed link opens nothing"
    );
}

/// What an acceptor makes of a dialer that does `act` on plain TCP, and how long it took.
async fn accepting_raw_tcp(
    b: &Endpoint,
    act: impl FnOnce(TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = TcpStream>>>,
) -> (LinkError, Duration) {
    let started = Instant::now();
    let (_held, rb) = with_acceptor(b, |addr| {
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            act(tcp).await
        })
    })
    .await;
    (rb.expect_err("refused"), started.elapsed())
}

/// The same after a TLS handshake with the acceptor (as the dialer would make it).
async fn accepting_raw_tls(a: &Endpoint, b: &Endpoint, bytes: Vec<u8>) -> (LinkError, Duration) {
    accepting_tls_as(a.client.clone(), b, bytes).await
}

/// The same with a TLS client of this configuration.
async fn accepting_tls_as(
    client: Arc<rustls::ClientConfig>,
    b: &Endpoint,
    bytes: Vec<u8>,
) -> (LinkError, Duration) {
    let started = Instant::now();
    let (_held, rb) = with_acceptor(b, move |addr| {
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from(TLS_NAME).expect("name");
            let mut tls = TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .expect("TLS");
            tls.write_all(&bytes).await.expect("write");
            tls.flush().await.expect("flush");
            tls
        })
    })
    .await;
    (rb.expect_err("refused"), started.elapsed())
}

#[tokio::test]
async fn broken_peers_are_closed_within_the_handshake_limit() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node_with(3, quick()), cluster.node_with(3, quick()));
    let limit = quick().handshake_limit;

    // Garbage instead of TLS.
    let (e, took) = accepting_raw_tcp(&b, |mut tcp| {
        Box::pin(async move {
            tcp.write_all(b"GET / HTTP/1.1\r\n\r\n")
                .await
                .expect("write");
            tcp
        })
    })
    .await;
    assert!(
        matches!(&e, LinkError::Io(io) if io.kind() == io::ErrorKind::InvalidData),
        "{e}"
    );
    assert!(took < limit, "refused after {took:?}");

    // A dialer that connects and says nothing.
    let (e, took) = accepting_raw_tcp(&b, |tcp| Box::pin(async move { tcp })).await;
    assert_eq!(e.to_string(), "link handshake did not finish within 500 ms");
    assert!(
        took >= limit && took < limit + Duration::from_secs(2),
        "{took:?}"
    );

    // TLS, then nothing.
    let (e, took) = accepting_raw_tls(&a, &b, Vec::new()).await;
    assert_eq!(e.to_string(), "link handshake did not finish within 500 ms");
    assert!(
        took >= limit && took < limit + Duration::from_secs(2),
        "{took:?}"
    );

    // TLS, then a hello announcing more than a handshake message may hold.
    let (e, took) = accepting_raw_tls(&a, &b, vec![0, 0, 1, 0]).await;
    assert_eq!(
        e.to_string(),
        format!(
            "link frame: link frame of 256 bytes exceeds the limit of {HANDSHAKE_MAX_BODY} bytes"
        )
    );
    assert!(took < limit, "refused after {took:?}");

    // TLS, then a frame of no known kind.
    let (e, _) = accepting_raw_tls(&a, &b, vec![0, 0, 0, 7, 99, 0, 0, 0, 0, 0, 0]).await;
    assert_eq!(e.to_string(), "link frame: unknown link frame kind 99");

    // TLS, then a data frame where the hello belongs.
    let mut data = Vec::new();
    Frame::bare(Kind::Data, 1)
        .encode(&mut data)
        .expect("encodes");
    let (e, _) = accepting_raw_tls(&a, &b, data).await;
    assert_eq!(e.to_string(), "link handshake: expected a hello");
}

#[tokio::test]
async fn a_tls_peer_without_the_link_alpn_is_refused() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(3), cluster.node(3));
    let mut client = (*a.client).clone();
    client.alpn_protocols.clear();
    let (e, _) = accepting_tls_as(Arc::new(client), &b, Vec::new()).await;
    assert_eq!(
        e.to_string(),
        "link handshake: the peer did not agree on the ALPN protocol debrief-link/1"
    );
    // Another protocol is refused by TLS itself.
    let mut client = (*a.client).clone();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let (listener, addr) = listener().await;
    let (dialled, accepted) = within("the handshake", async {
        tokio::join!(
            async {
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let name = ServerName::try_from(TLS_NAME).expect("name");
                TlsConnector::from(Arc::new(client))
                    .connect(name, tcp)
                    .await
            },
            async {
                let (tcp, _) = listener.accept().await.expect("accept");
                b.accept(tcp).await
            }
        )
    })
    .await;
    assert!(dialled.is_err(), "TLS went through with ALPN h2");
    assert!(accepted.is_err(), "the acceptor took a peer with ALPN h2");
}

#[tokio::test]
async fn every_link_runs_a_full_tls_handshake() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(3), cluster.node(3));
    assert_eq!(b.server.send_tls13_tickets, 0);
    for n in 0..3 {
        let (raw, lb) = with_acceptor(&b, |addr| Box::pin(a.dial(addr, b.id()))).await;
        let (raw, _) = raw.expect("handshake");
        let _lb = lb.expect("b's link");
        let TlsStream::Client(raw) = raw else {
            panic!("the dialer's stream is a client's");
        };
        assert_eq!(
            raw.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "link {n}"
        );
        assert_eq!(raw.get_ref().1.alpn_protocol(), Some(ALPN));
    }
}

/// A link at `b` whose other end is `a`'s raw authenticated stream, which the test drives.
async fn raw_peer(a: &Endpoint, b: &Endpoint) -> (TlsStream<TcpStream>, Link) {
    let (raw, lb) = with_acceptor(b, |addr| Box::pin(a.dial(addr, b.id()))).await;
    let (raw, peer) = raw.expect("handshake");
    assert_eq!(&peer, b.id());
    (raw, lb.expect("b's link"))
}

#[tokio::test]
async fn oversized_or_garbage_frames_close_the_link_and_its_sub_streams() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(5), cluster.node(5));
    let max_body = settings().max_body();

    for (bytes, why) in [
        (
            (max_body as u32 + 1).to_be_bytes().to_vec(),
            format!(
                "link frame: link frame of {} bytes exceeds the limit of {max_body} bytes",
                max_body + 1
            ),
        ),
        (
            vec![0, 0, 0, 7, 99, 0, 0, 0, 0, 0, 0],
            "link frame: unknown link frame kind 99".to_owned(),
        ),
        (
            {
                let mut v = Vec::new();
                Frame::bare(Kind::Proof, 0).encode(&mut v).expect("encodes");
                v
            },
            "a handshake message after the handshake".to_owned(),
        ),
    ] {
        let (mut raw, mut lb) = raw_peer(&a, &b).await;
        let mut open = Vec::new();
        Frame {
            kind: Kind::Open,
            stream: 1,
            name: "r1/body".to_owned(),
            payload: Vec::new(),
        }
        .encode(&mut open)
        .expect("encodes");
        raw.write_all(&open).await.expect("write");
        raw.flush().await.expect("flush");
        let mut theirs = within("the raw peer's sub-stream", lb.accept_stream())
            .await
            .expect("accepted");
        let mut mine = lb.open("r2/body").await.expect("open");

        raw.write_all(&bytes).await.expect("write");
        raw.flush().await.expect("flush");
        let closed = LinkClosed::Protocol(why);
        assert_eq!(within("the link's close", lb.closed()).await, closed);
        assert_eq!(
            recv(&mut theirs).await,
            Err(StreamClosed::Link(closed.clone()))
        );
        assert_eq!(
            recv(&mut mine).await,
            Err(StreamClosed::Link(closed.clone()))
        );
        assert_eq!(
            mine.send(b"x".to_vec())
                .await
                .expect_err("closed")
                .to_string(),
            format!("the sub-stream is closed: the link closed: {closed}")
        );
    }
}

#[tokio::test]
async fn a_slow_reader_loses_its_sub_stream_while_another_keeps_flowing() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(9), cluster.node(9));
    let (la, mut lb) = linked(&a, &b).await;
    let mut slow_out = la.open("slow").await.expect("open");
    let fast_out = la.open("fast").await.expect("open");
    let mut slow_in = within("a sub-stream", lb.accept_stream())
        .await
        .expect("accepted");
    let mut fast_in = within("a sub-stream", lb.accept_stream())
        .await
        .expect("accepted");
    assert_eq!(slow_in.document(), "slow");

    // The queues hold 4; the fifth message finds the slow one full. Nobody reads `slow_in`,
    // while `fast_in` is read as messages come.
    for n in 0..5u8 {
        slow_out.send(vec![n]).await.expect("send");
        fast_out.send(vec![n]).await.expect("send");
        assert_eq!(recv(&mut fast_in).await, Ok(vec![n]));
    }
    assert_eq!(recv(&mut slow_out).await, Err(StreamClosed::PeerSlowReader));
    assert_eq!(
        slow_out
            .send(vec![9])
            .await
            .expect_err("closed")
            .to_string(),
        "the sub-stream is closed: its reader on the peer did not keep up"
    );
    fast_out.send(b"after".to_vec()).await.expect("send");
    assert_eq!(recv(&mut fast_in).await, Ok(b"after".to_vec()));
    // What had been queued is still read, then why it closed.
    for n in 0..4u8 {
        assert_eq!(recv(&mut slow_in).await, Ok(vec![n]));
    }
    assert_eq!(recv(&mut slow_in).await, Err(StreamClosed::SlowReader));
}

#[tokio::test]
async fn a_silent_peer_is_detected_by_the_heartbeat_timeout() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node_with(4, quick()), cluster.node_with(4, quick()));
    // The raw peer completed the handshake and then neither reads nor writes. The silence is
    // counted from when the link's reader starts, inside the handshake, so the time is taken
    // before it.
    let started = Instant::now();
    let (_raw, lb) = raw_peer(&a, &b).await;
    let mut s1 = lb.open("r1/body").await.expect("open");
    let mut s2 = lb.open("r1/discussion").await.expect("open");
    let silent = LinkClosed::Silent(quick().silent_after);
    assert_eq!(recv(&mut s1).await, Err(StreamClosed::Link(silent.clone())));
    assert_eq!(recv(&mut s2).await, Err(StreamClosed::Link(silent.clone())));
    let took = started.elapsed();
    let at_most = quick().silent_after + quick().handshake_limit + Duration::from_secs(2);
    assert!(
        took >= quick().silent_after && took < at_most,
        "closed after {took:?}"
    );
    assert_eq!(lb.closed().await, silent);
    assert_eq!(silent.to_string(), "the peer was silent for 400 ms");

    // Heartbeats keep an idle link that both ends serve open past the same time.
    let (la, lb) = linked(&a, &b).await;
    let idle = tokio::time::timeout(quick().silent_after * 3, la.closed()).await;
    assert!(idle.is_err(), "an idle link closed: {idle:?}");
    drop(lb);
    assert_eq!(
        within("the peer's close", la.closed()).await,
        LinkClosed::PeerClosed
    );
}

#[tokio::test]
async fn shutdown_ends_every_task() {
    let cluster = Cluster::new();
    let (a, b, c) = (cluster.node(6), cluster.node(6), cluster.node(6));
    let (lab, mut lba) = linked(&a, &b).await;
    let (lac, _lca) = linked(&a, &c).await;
    let mut s1 = lab.open("r1/body").await.expect("open");
    let mut s1_at_b = within("a sub-stream", lba.accept_stream())
        .await
        .expect("accepted");
    let mut s2 = lac.open("r2/body").await.expect("open");
    assert!(cluster.tracker.len() >= 8, "reader and writer per link end");

    cluster.shutdown.cancel();
    cluster.tracker.close();
    within("every link task to end", cluster.tracker.wait()).await;
    let shut = StreamClosed::Link(LinkClosed::Shutdown);
    assert_eq!(recv(&mut s1).await, Err(shut.clone()));
    assert_eq!(recv(&mut s1_at_b).await, Err(shut.clone()));
    assert_eq!(recv(&mut s2).await, Err(shut));
    assert_eq!(
        lba.accept_stream().await.expect_err("closed"),
        LinkClosed::Shutdown
    );
    assert_eq!(
        a.connect(SocketAddr::from(([127, 0, 0, 1], 9)), &NodeId::random())
            .await
            .expect_err("shut down")
            .to_string(),
        "the link is closed: this node is shutting down"
    );
}

/// Writes a secret file with this mode.
fn secret_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let file = dir.join("secret");
    std::fs::write(&file, text).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    file
}

fn read_err(file: Option<&Path>, env: Option<&str>) -> String {
    ClusterSecret::read_from(file, env.map(OsString::from))
        .expect_err("refused")
        .to_string()
}

#[test]
fn the_secret_is_hex_or_base64_from_a_file_or_the_environment_and_must_be_long() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bytes: Vec<u8> = (0..40).map(|n| n * 5 + 1).collect();
    let hex_text = hex::encode(&bytes);
    let padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert!(padded.ends_with('='), "the test's base64 is padded");
    // Hex (either case) and base64 (padded or not), whitespace around them trimmed.
    for text in [
        format!("{hex_text}\n"),
        format!("  {}\r\n", hex_text.to_uppercase()),
        format!("{padded}\n"),
        format!("\t{}\n\n", padded.trim_end_matches('=')),
    ] {
        let file = secret_file(dir.path(), &text, 0o600);
        let secret = ClusterSecret::read_from(Some(&file), None).expect("read");
        assert_eq!(*secret.0, bytes, "{text:?}");
    }
    let file = secret_file(dir.path(), &hex_text, 0o400);
    assert_eq!(
        *ClusterSecret::read_from(Some(&file), None).expect("read").0,
        bytes
    );
    let from_env = ClusterSecret::read_from(None, Some(OsString::from(format!("{padded}\n"))));
    assert_eq!(*from_env.expect("from the environment").0, bytes);
    // The file wins over the environment.
    let file = secret_file(dir.path(), &hex_text, 0o600);
    let both = ClusterSecret::read_from(Some(&file), Some(OsString::from("not a secret")));
    assert_eq!(*both.expect("from the file").0, bytes);

    // Neither form, as a passphrase or raw bytes would be.
    let file = secret_file(
        dir.path(),
        "correct horse battery staple, 32+ bytes\n",
        0o600,
    );
    assert_eq!(
        read_err(Some(&file), None),
        format!(
            "the cluster secret file {} is neither hex nor base64: it must hold at least 32 random bytes as hex or base64 (such as `openssl rand -hex 32` prints)",
            file.display()
        )
    );
    let file = secret_file(dir.path(), &format!("{hex_text}0\n"), 0o600);
    assert!(
        read_err(Some(&file), None).ends_with(" is neither hex nor base64: it must hold at least 32 random bytes as hex or base64 (such as `openssl rand -hex 32` prints)"),
        "an odd number of hex digits is not base64 either"
    );
    assert_eq!(
        read_err(None, Some("ab cd")),
        "DEBRIEF_CLUSTER_SECRET is neither hex nor base64: it must hold at least 32 random bytes as hex or base64 (such as `openssl rand -hex 32` prints)"
    );
    // Too short once decoded.
    let file = secret_file(dir.path(), &format!("{}\n", hex::encode([7; 31])), 0o600);
    assert_eq!(
        read_err(Some(&file), None),
        format!(
            "the cluster secret file {} holds 31 bytes once decoded; it must hold at least 32 random bytes (64 hex digits or 44 base64 characters)",
            file.display()
        )
    );
    let file = secret_file(dir.path(), " \n", 0o600);
    assert!(read_err(Some(&file), None).ends_with(" holds 0 bytes once decoded; it must hold at least 32 random bytes (64 hex digits or 44 base64 characters)"));
    assert_eq!(
        read_err(None, Some("c2hvcnQ")),
        "DEBRIEF_CLUSTER_SECRET holds 5 bytes once decoded; it must hold at least 32 random bytes (64 hex digits or 44 base64 characters)"
    );
    assert_eq!(
        ClusterSecret::new(vec![1; 5])
            .expect_err("short")
            .to_string(),
        "the cluster secret is 5 bytes; it must be at least 32 random bytes"
    );

    // A file its group or others may read or write is refused, whatever it holds.
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
        let file = secret_file(dir.path(), &hex_text, mode);
        assert_eq!(
            read_err(Some(&file), None),
            format!(
                "the cluster secret file {path} has mode {mode:04o}, open to its group or others: it must be readable by its owner only (chmod 600 {path})",
                path = file.display()
            )
        );
    }

    let missing = "no cluster secret: give a secret file or set DEBRIEF_CLUSTER_SECRET (at least 32 random bytes as hex or base64)";
    assert_eq!(read_err(None, None), missing);
    assert_eq!(read_err(None, Some("")), missing);
    let gone = dir.path().join("gone");
    assert!(read_err(Some(&gone), None).starts_with(&format!(
        "cannot read the cluster secret file {}: ",
        gone.display()
    )));
}

#[test]
fn secrets_and_keys_never_show_their_bytes() {
    let secret = ClusterSecret::new(vec![0xab; 32]).expect("secret");
    let key = secret.link_key();
    let shown = [
        format!("{secret:?}"),
        format!("{key:?}"),
        format!("{:?}", SecretError::TooShort(3)),
    ];
    assert_eq!(shown[0], "ClusterSecret(32 bytes)");
    assert_eq!(shown[1], "LinkKey(..)");
    let endpoint = Endpoint::new(
        NodeId::random(),
        &secret,
        settings(),
        TaskTracker::new(),
        CancellationToken::new(),
    )
    .expect("endpoint");
    let endpoint = format!("{endpoint:?}");
    let key_hex = hex::encode(*key.0);
    let key_list = format!("{:?}", *key.0);
    for text in shown.iter().chain([&endpoint]) {
        for bytes in ["171, 171", "abab", "ABAB", &key_hex, &key_list[1..12]] {
            assert!(!text.contains(bytes), "{text} shows {bytes}");
        }
    }
}

#[test]
fn the_link_key_is_hkdf_sha256() {
    // RFC 5869, test case 3 (no salt, no info): the first 32 bytes of its output.
    let okm = hkdf_sha256(&[0x0b; 22], b"");
    assert_eq!(
        hex::encode(okm),
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
    );
}

#[test]
fn the_held_key_is_the_same_on_every_node_and_none_of_the_link_key() {
    let one = ClusterSecret::new(vec![7; 32]).expect("secret");
    let again = ClusterSecret::new(vec![7; 32]).expect("secret");
    let other = ClusterSecret::new(vec![8; 32]).expect("secret");
    assert_eq!(*one.held_key(), *again.held_key());
    assert_ne!(*one.held_key(), *other.held_key());
    assert_ne!(*one.held_key(), *one.link_key().0);
    assert_eq!(
        *one.held_key(),
        *hkdf_sha256(&[7; 32], b"debrief held anonymous slots key v1")
    );
}

#[test]
fn proofs_differ_by_role_secret_and_session() {
    let key = ClusterSecret::new(vec![1; 32]).expect("secret").link_key();
    let other = ClusterSecret::new(vec![2; 32]).expect("secret").link_key();
    let (n1, n2, x1, x2) = ([1; 32], [2; 32], [3; 32], [4; 32]);
    let t = |exporter| Transcript {
        dialer: "a",
        acceptor: "b",
        dialer_nonce: &n1,
        acceptor_nonce: &n2,
        exporter,
    };
    let p = |key, role, exporter| proof(key, role, &t(exporter)).finalize().into_bytes();
    let base = p(&key, Role::Dialer, &x1);
    assert_eq!(base, p(&key, Role::Dialer, &x1));
    assert_ne!(
        base,
        p(&key, Role::Acceptor, &x1),
        "a proof cannot be reflected"
    );
    assert_ne!(base, p(&other, Role::Dialer, &x1));
    assert_ne!(base, p(&key, Role::Dialer, &x2), "bound to the TLS session");
}

/// Hello frame of node `id` with `nonce`.
fn hello(id: &NodeId, nonce: [u8; 32]) -> Frame {
    Frame {
        kind: Kind::Hello,
        stream: 0,
        name: id.as_str().to_owned(),
        payload: nonce.to_vec(),
    }
}

/// A proof frame made with `key` for `role`.
fn proof_frame(key: &LinkKey, role: Role, t: &Transcript<'_>) -> Frame {
    Frame {
        kind: Kind::Proof,
        stream: 0,
        name: String::new(),
        payload: proof(key, role, t).finalize().into_bytes().to_vec(),
    }
}

/// Every byte the stream yields until it ends (or fails).
async fn read_to_close<R: AsyncRead + Unpin>(io: &mut R) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 256];
    while let Ok(n @ 1..) = io.read(&mut buf).await {
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test]
async fn the_acceptor_proves_itself_only_to_a_dialer_that_proved_first() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.node(1), cluster.node(2));
    // A dialer with a wrong secret, by hand: hellos, then its proof, then whatever comes back.
    let dialer = &a;
    let (after_proof, rb) = with_acceptor(&b, |addr| {
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = ServerName::try_from(TLS_NAME).expect("name");
            let mut tls = TlsConnector::from(dialer.client.clone())
                .connect(name, tcp)
                .await
                .expect("TLS");
            let mut exporter = [0; 32];
            tls.get_ref()
                .1
                .export_keying_material(&mut exporter, EXPORTER_LABEL, None)
                .expect("exporter");
            let nonce = [9; 32];
            write_frame(&mut tls, &hello(dialer.id(), nonce))
                .await
                .expect("hello");
            let theirs = read_frame(&mut tls, HANDSHAKE_MAX_BODY)
                .await
                .expect("b's hello");
            let their_nonce = <[u8; 32]>::try_from(theirs.payload.as_slice()).expect("nonce");
            let t = Transcript {
                dialer: dialer.id().as_str(),
                acceptor: &theirs.name,
                dialer_nonce: &nonce,
                acceptor_nonce: &their_nonce,
                exporter: &exporter,
            };
            write_frame(&mut tls, &proof_frame(&dialer.key, Role::Dialer, &t))
                .await
                .expect("proof");
            read_to_close(&mut tls).await
        })
    })
    .await;
    assert_eq!(
        rb.expect_err("refused").to_string(),
        "link handshake: the peer's proof is wrong (it does not hold this cluster's secret)"
    );
    assert!(
        after_proof.is_empty(),
        "the acceptor sent {} bytes after a wrong proof",
        after_proof.len()
    );

    // An acceptor that takes any proof and answers with one made from another secret: the
    // dialer still refuses it.
    let impostor = cluster.node(2);
    let (listener, addr) = listener().await;
    let (ra, ()) = within("the handshake", async {
        tokio::join!(a.connect(addr, impostor.id()), async {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = TlsAcceptor::from(impostor.server.clone())
                .accept(tcp)
                .await
                .expect("TLS");
            let mut exporter = [0; 32];
            tls.get_ref()
                .1
                .export_keying_material(&mut exporter, EXPORTER_LABEL, None)
                .expect("exporter");
            let nonce = [8; 32];
            write_frame(&mut tls, &hello(impostor.id(), nonce))
                .await
                .expect("hello");
            let theirs = read_frame(&mut tls, HANDSHAKE_MAX_BODY)
                .await
                .expect("hello");
            let _ = read_frame(&mut tls, HANDSHAKE_MAX_BODY)
                .await
                .expect("the dialer's proof");
            let their_nonce = <[u8; 32]>::try_from(theirs.payload.as_slice()).expect("nonce");
            let t = Transcript {
                dialer: &theirs.name,
                acceptor: impostor.id().as_str(),
                dialer_nonce: &their_nonce,
                acceptor_nonce: &nonce,
                exporter: &exporter,
            };
            write_frame(&mut tls, &proof_frame(&impostor.key, Role::Acceptor, &t))
                .await
                .expect("proof");
            let _ = read_to_close(&mut tls).await;
        })
    })
    .await;
    assert_eq!(
        ra.expect_err("refused").to_string(),
        "link handshake: the peer's proof is wrong (it does not hold this cluster's secret)"
    );
}

#[tokio::test]
async fn a_frame_trickled_byte_by_byte_closes_the_link() {
    let cluster = Cluster::new();
    // A silence limit long enough that the first byte surely comes before it on a loaded machine.
    let limit = Duration::from_millis(1200);
    let s = LinkSettings {
        silent_after: limit,
        ..settings()
    };
    let (a, b) = (cluster.node(4), cluster.node_with(4, s));
    let (mut raw, lb) = raw_peer(&a, &b).await;
    let mut frame = Vec::new();
    Frame {
        kind: Kind::Data,
        stream: 1,
        name: String::new(),
        payload: vec![0; 100],
    }
    .encode(&mut frame)
    .expect("encodes");
    // A byte four times per silence limit: bytes keep arriving, the frame never completes
    // (it would take 27 limits).
    let mut every = tokio::time::interval(limit / 4);
    let started = Instant::now();
    let mut bytes = frame.iter();
    let closed = within("the link's close", async {
        loop {
            tokio::select! {
                why = lb.closed() => break why,
                _ = every.tick() => {
                    let byte = *bytes.next().expect("closed before the frame was complete");
                    raw.write_all(&[byte]).await.expect("write");
                    raw.flush().await.expect("flush");
                }
            }
        }
    })
    .await;
    let took = started.elapsed();
    assert_eq!(closed, LinkClosed::SlowFrame(limit));
    assert_eq!(
        closed.to_string(),
        "a frame from the peer did not arrive in full within 1200 ms of its first byte"
    );
    assert!(
        took >= limit && took < limit + Duration::from_secs(2),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn handshakes_past_the_bound_are_refused_at_once() {
    let cluster = Cluster::new();
    let a = cluster.node_with(3, quick());
    let b = cluster.node_with(
        3,
        LinkSettings {
            max_handshakes: 2,
            ..quick()
        },
    );
    let (listener, addr) = listener().await;
    // Two connections that never say anything hold both permits.
    let mut silent = Vec::new();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut accept = Box::pin(b.accept(tcp));
        assert!(futures_util::poll!(&mut accept).is_pending());
        stalled.push(accept);
    }
    let started = Instant::now();
    for _ in 0..3 {
        let mut dialer = TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        assert_eq!(
            within("the refusal", b.accept(tcp))
                .await
                .expect_err("refused")
                .to_string(),
            "link: 2 handshakes are in progress already; the connection was refused"
        );
        let mut buf = [0; 16];
        let read = within("the refused connection's end", dialer.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let took = started.elapsed();
    assert!(took < quick().handshake_limit, "refused after {took:?}");
    // The stalled ones end at the handshake limit and give their permits back.
    for accept in stalled {
        assert_eq!(
            within("the stalled handshake's end", accept)
                .await
                .expect_err("timed out")
                .to_string(),
            "link handshake did not finish within 500 ms"
        );
    }
    drop(silent);
    let (la, lb) = pair(&a, &b).await;
    assert_eq!(la.expect("a's link").peer(), b.id());
    assert_eq!(lb.expect("b's link").peer(), a.id());
}

/// A link from `a` to `b` and the sub-streams `documents` opened by `a`, as both sides see them.
async fn streams_from_a(
    la: &Link,
    lb: &mut Link,
    documents: &[&str],
) -> (Vec<SubStream>, Vec<SubStream>) {
    let mut out = Vec::new();
    let mut ins = Vec::new();
    for d in documents {
        out.push(la.open(d).await.expect("open"));
        let s = within("a sub-stream", lb.accept_stream())
            .await
            .expect("accepted");
        assert_eq!(s.document(), *d);
        ins.push(s);
    }
    (out, ins)
}

/// 1,000 bytes starting with `n`.
fn kilo(n: u8) -> Vec<u8> {
    let mut v = vec![0; 1000];
    v[0] = n;
    v
}

#[tokio::test]
async fn a_sub_stream_whose_queued_bytes_would_pass_its_budget_is_closed() {
    let cluster = Cluster::new();
    // Queues of 64 messages, but 2,500 bytes: the third message of 1,000 bytes does not fit.
    let s = LinkSettings {
        stream_queue: 64,
        stream_queue_bytes: 2500,
        ..settings()
    };
    let (a, b) = (cluster.node_with(9, s), cluster.node_with(9, s));
    let (la, mut lb) = linked(&a, &b).await;
    let (mut out, mut ins) = streams_from_a(&la, &mut lb, &["slow", "fast"]).await;
    for n in 0..3 {
        out[0].send(kilo(n)).await.expect("send");
        out[1].send(kilo(n)).await.expect("send");
        assert_eq!(recv(&mut ins[1]).await, Ok(kilo(n)));
    }
    assert_eq!(recv(&mut out[0]).await, Err(StreamClosed::PeerSlowReader));
    for n in 0..2 {
        assert_eq!(recv(&mut ins[0]).await, Ok(kilo(n)));
    }
    assert_eq!(recv(&mut ins[0]).await, Err(StreamClosed::SlowReader));
    // The fast one goes on, and its reader keeps its budget free.
    for n in 3..8 {
        out[1].send(kilo(n)).await.expect("send");
        assert_eq!(recv(&mut ins[1]).await, Ok(kilo(n)));
    }
    assert_eq!(b_queued(&lb), 0, "read and closed queues count nothing");
}

fn b_queued(link: &Link) -> usize {
    link.shared.queued.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_link_whose_queued_bytes_would_pass_its_budget_closes_the_sub_stream_it_is_for() {
    let cluster = Cluster::new();
    // Each sub-stream may hold 2,500 bytes, all of them together 4,500.
    let s = LinkSettings {
        stream_queue: 64,
        stream_queue_bytes: 2500,
        link_queue_bytes: 4500,
        ..settings()
    };
    let (a, b) = (cluster.node_with(9, s), cluster.node_with(9, s));
    let (la, mut lb) = linked(&a, &b).await;
    let (mut out, mut ins) = streams_from_a(&la, &mut lb, &["r1", "r2", "r3"]).await;
    for n in 0..2 {
        out[0].send(kilo(n)).await.expect("send");
        out[1].send(kilo(n)).await.expect("send");
    }
    // 4,000 bytes wait at B; 1,000 more for the third would make 5,000.
    out[2].send(kilo(9)).await.expect("send");
    assert_eq!(recv(&mut out[2]).await, Err(StreamClosed::PeerSlowReader));
    assert_eq!(recv(&mut ins[2]).await, Err(StreamClosed::SlowReader));
    assert_eq!(b_queued(&lb), 4000);
    // Reading frees the link's budget: the first sub-stream takes more again.
    for n in 0..2 {
        assert_eq!(recv(&mut ins[0]).await, Ok(kilo(n)));
    }
    out[0].send(kilo(5)).await.expect("send");
    assert_eq!(recv(&mut ins[0]).await, Ok(kilo(5)));
    // Dropping a sub-stream with messages queued frees them too.
    drop(ins.remove(1));
    assert_eq!(recv(&mut out[1]).await, Err(StreamClosed::ByPeer));
    assert_eq!(b_queued(&lb), 0);
}

#[tokio::test]
async fn a_sub_stream_past_the_cap_is_refused_and_the_link_goes_on() {
    let cluster = Cluster::new();
    let a = cluster.node_with(
        5,
        LinkSettings {
            max_streams: 10,
            ..settings()
        },
    );
    let b = cluster.node_with(
        5,
        LinkSettings {
            max_streams: 3,
            ..settings()
        },
    );
    let (la, mut lb) = linked(&a, &b).await;
    let (out, mut ins) = streams_from_a(&la, &mut lb, &["r1", "r2", "r3"]).await;
    // The fourth is one more than B lets A have open.
    let mut fourth = la.open("r4").await.expect("opened here");
    assert_eq!(recv(&mut fourth).await, Err(StreamClosed::Refused));
    assert_eq!(
        StreamClosed::Refused.to_string(),
        "the peer refused it (too many sub-streams)"
    );
    // The link and its sub-streams go on.
    out[0].send(b"still".to_vec()).await.expect("send");
    assert_eq!(recv(&mut ins[0]).await, Ok(b"still".to_vec()));
    // B's own sub-streams are counted apart, under the same cap.
    let mine: Vec<SubStream> = {
        let mut v = Vec::new();
        for d in ["b1", "b2", "b3"] {
            v.push(lb.open(d).await.expect("open"));
        }
        v
    };
    assert_eq!(
        lb.open("b4").await.expect_err("capped").to_string(),
        "the link has 3 sub-streams of this node open already; close one first"
    );
    drop(mine);
    // One closed makes room for another; the refused one never reached B's accept.
    ins[2].close().await;
    let mut fifth = la.open("r5").await.expect("open");
    let at_b = within("a sub-stream", lb.accept_stream())
        .await
        .expect("accepted");
    assert_eq!(at_b.document(), "r5");
    at_b.send(b"welcome".to_vec()).await.expect("send");
    assert_eq!(recv(&mut fifth).await, Ok(b"welcome".to_vec()));
}

#[tokio::test]
async fn data_for_sub_streams_not_yet_accepted_has_a_budget_of_its_own() {
    let cluster = Cluster::new();
    let s = LinkSettings {
        stream_queue: 64,
        incoming_queue_bytes: 1500,
        ..settings()
    };
    let (a, b) = (cluster.node_with(2, s), cluster.node_with(2, s));
    let (la, mut lb) = linked(&a, &b).await;
    // Nobody at B has taken this one: its second 1,000 bytes would make 2,000 waiting.
    let mut parked = la.open("parked").await.expect("open");
    parked.send(kilo(0)).await.expect("send");
    parked.send(kilo(1)).await.expect("send");
    assert_eq!(recv(&mut parked).await, Err(StreamClosed::PeerSlowReader));
    let mut parked_at_b = within("a sub-stream", lb.accept_stream())
        .await
        .expect("accepted");
    assert_eq!(recv(&mut parked_at_b).await, Ok(kilo(0)));
    assert_eq!(recv(&mut parked_at_b).await, Err(StreamClosed::SlowReader));
    // Once taken, a sub-stream has its own budget (4,096 bytes) instead.
    let mut taken = la.open("taken").await.expect("open");
    taken.send(kilo(2)).await.expect("send");
    let mut taken_at_b = within("a sub-stream", lb.accept_stream())
        .await
        .expect("accepted");
    for n in 3..6 {
        taken.send(kilo(n)).await.expect("send");
    }
    for n in 2..6 {
        assert_eq!(recv(&mut taken_at_b).await, Ok(kilo(n)));
    }
    taken_at_b.send(b"ok".to_vec()).await.expect("send");
    assert_eq!(recv(&mut taken).await, Ok(b"ok".to_vec()));
}
