//! Issue 16, item 4 (sockets): one read-only member cannot lock everyone out of a document.
//! Attachments are bounded per session token and per socket, and read-only attachments never
//! take the places kept for writers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use debrief_proto::close;
use debrief_proto::hocuspocus::{decode_frame, Auth, DocMessage, Frame};
use debrief_server::limits::Limits;
use debrief_tests::api::Review;
use debrief_tests::{within, Client, TestServer};

/// A `/collab` socket that opens a document under many routing keys and keeps every frame it
/// receives (the test client follows one key).
struct Multi {
    out: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        WsMessage,
    >,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    closed: Arc<Mutex<bool>>,
}

impl Multi {
    async fn connect(url: &str) -> Multi {
        let (ws, _) = within("the handshake", tokio_tungstenite::connect_async(url))
            .await
            .expect("connect");
        let (out, mut incoming) = ws.split();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(false));
        let (f, c) = (frames.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = incoming.next().await {
                if let WsMessage::Binary(b) = message {
                    f.lock().expect("frames").push(b.to_vec());
                }
            }
            *c.lock().expect("closed") = true;
        });
        Multi {
            out,
            frames,
            closed,
        }
    }

    /// Sends `token` for `key`.
    async fn open(&mut self, key: &str, token: &str) {
        let frame = DocMessage::Auth(Auth::Token {
            token: Some(token),
            provider_version: None,
        })
        .encode(key);
        self.out
            .send(WsMessage::Binary(frame.into()))
            .await
            .expect("send");
    }

    fn closed(&self) -> bool {
        *self.closed.lock().expect("closed")
    }
}

/// The Authenticated scopes and Close reasons `client` received, over all its routing keys.
fn answers(client: &Multi) -> (Vec<String>, Vec<String>) {
    let (mut scopes, mut closes) = (Vec::new(), Vec::new());
    let frames = client.frames.lock().expect("frames").clone();
    for frame in frames {
        if let Ok(Frame::Doc { message, .. }) = decode_frame(&frame) {
            match message {
                DocMessage::Auth(Auth::Authenticated(scope)) => scopes.push(scope.to_owned()),
                DocMessage::Close(reason) => closes.push(reason.unwrap_or_default().to_owned()),
                _ => {}
            }
        }
    }
    (scopes, closes)
}

/// The issue's attack, scaled to small limits: an observer opens the report under many routing
/// keys over four sockets. Only `max_attachments_per_session` are made (at most
/// `max_attachments_per_socket` per socket); the rest are answered with a Close message for that
/// key, and the sockets stay open. Other observers then fill the places readers may take, and the
/// author still opens the report and syncs; one more reader is refused in both dialects.
#[tokio::test]
async fn issue_16_an_observer_cannot_lock_the_author_out_of_the_report() {
    let limits = Limits {
        max_connections_per_document: 12,
        connections_reserved_for_writers: 4,
        max_attachments_per_session: 3,
        max_attachments_per_socket: 2,
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let review = Review::create(server.addr, "Outage").await;
    review.move_to("review").await;
    let report = review.doc("report");
    let url = server.collab_url();

    let olive = review.join("observer", "Olive").await;
    let mut flood = Vec::new();
    for s in 0..4 {
        let mut client = Multi::connect(&url).await;
        for n in 0..5 {
            client.open(&format!("{report}\0{s}-{n}"), &olive).await;
        }
        flood.push(client);
    }
    let (scopes, closes) = within("20 answers", async {
        loop {
            let (mut scopes, mut closes) = (Vec::new(), Vec::new());
            for client in &flood {
                let (s, c) = answers(client);
                assert!(s.len() <= 2, "at most 2 attachments per socket: {s:?}");
                scopes.extend(s);
                closes.extend(c);
            }
            if scopes.len() + closes.len() >= 20 {
                return (scopes, closes);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(scopes, vec!["readonly"; 3], "{closes:?}");
    assert_eq!(closes.len(), 17);
    assert!(
        closes.iter().all(|r| r.starts_with("too_many_attachments")),
        "{closes:?}"
    );
    assert!(flood.iter().all(|c| !c.closed()));
    // The same session over y-websocket: closed with 4429.
    let mut ws = Client::connect(&format!("{}?token={olive}", server.ws_url(&report))).await;
    let closed = ws.wait_closed().await;
    assert_eq!(closed.code, close::TOO_MANY_PENDING);
    assert!(
        closed.reason.starts_with("too_many_attachments"),
        "{closed:?}"
    );

    // Readers may take 12 - 4 = 8 places: Olive has 3, two more observers take 5.
    let mut readers = Vec::new();
    for (name, n) in [("Piet", 3), ("Quinn", 2)] {
        let session = review.join("observer", name).await;
        for _ in 0..n {
            let mut c = Client::connect_collab(&url, &report, &session).await;
            assert_eq!(c.wait_authenticated().await, "readonly");
            readers.push(c);
        }
    }
    let rosa = review.join("observer", "Rosa").await;
    let mut refused = Client::connect_collab(&url, &report, &rosa).await;
    let reason = refused.wait_doc_closed().await;
    assert!(reason.starts_with("too_many_connections"), "{reason}");
    let mut ws = Client::connect(&format!("{}?token={rosa}", server.ws_url(&report))).await;
    let closed = ws.wait_closed().await;
    assert_eq!(closed.code, close::TRY_AGAIN_LATER);
    assert!(
        closed.reason.starts_with("too_many_connections"),
        "{closed:?}"
    );

    // The author still gets in, writes, and the readers see it.
    let mut author = Client::connect_collab(&url, &report, &review.sessions["author"]).await;
    assert_eq!(author.wait_authenticated().await, "read-write");
    author.wait_synced().await;
    server.stop().await;
}

/// Shared tokens stand for many people and are not capped per token; the per-socket cap still
/// holds for them.
#[tokio::test]
async fn issue_16_shared_tokens_are_capped_per_socket_only() {
    let limits = Limits {
        max_attachments_per_session: 2,
        max_attachments_per_socket: 3,
        ..Limits::default()
    };
    let mut server = TestServer::with_limits(limits).await;
    let url = server.collab_url();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = Client::connect_collab(&url, "shared", "any").await;
        assert_eq!(c.wait_authenticated().await, "read-write");
        clients.push(c);
    }
    let mut socket = Multi::connect(&url).await;
    for n in 0..5 {
        socket.open(&format!("shared\0{n}"), "any").await;
    }
    let (scopes, closes) = within("5 answers", async {
        loop {
            let (s, c) = answers(&socket);
            if s.len() + c.len() >= 5 {
                return (s, c);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(scopes.len(), 3);
    assert!(
        closes
            .iter()
            .all(|r| r.starts_with("too_many_attachments: at most 3")),
        "{closes:?}"
    );
    server.stop().await;
}
