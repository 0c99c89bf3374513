//! A small JSON-over-HTTP client for the review API, and helpers that set up a review with one
//! session per role, the way the browser app will.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer: status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

impl Reply {
    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts an error status and code, and returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "body: {}",
            self.body
        );
        let message = self.body["message"].as_str().unwrap_or("").to_owned();
        assert!(!message.is_empty(), "an error carries a message");
        message
    }
}

/// Sends one request with an optional bearer token and JSON body (`raw` bodies are sent as is).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let body = body.map(|b| b.to_string());
    send(addr, method, path, bearer, body.as_deref()).await
}

/// Sends one request with a raw body.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let (status, body) = raw(addr, method, path, bearer, body).await;
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("non-JSON body {body:?}: {e}"))
    };
    Reply { status, body }
}

/// A GET with a bearer token, returning the status and the body as text (exports are not JSON).
pub async fn get_text(addr: SocketAddr, path: &str, bearer: &str) -> (u16, String) {
    raw(addr, "GET", path, Some(bearer), None).await
}

/// One HTTP/1.1 request on a fresh connection; the status and the body as text.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let request = Raw {
        method,
        path,
        bearer,
        body,
        ..Raw::default()
    };
    let (status, _, body) = request.send(addr).await;
    (status, body)
}

/// A request with everything a test may want to vary: the client's own loopback address (to
/// be another client for per-address limits) and the content type.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a> {
    /// Method.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// Session token or secret.
    pub bearer: Option<&'a str>,
    /// Body.
    pub body: Option<&'a str>,
    /// `Content-Type` (none when `None`).
    pub content_type: Option<&'a str>,
    /// Local address to connect from, e.g. `127.0.0.2`.
    pub from: Option<std::net::IpAddr>,
    /// More header lines, as (name, value).
    pub headers: &'a [(&'a str, &'a str)],
}

impl Default for Raw<'_> {
    fn default() -> Self {
        Raw {
            method: "GET",
            path: "/",
            bearer: None,
            body: None,
            content_type: Some("application/json"),
            from: None,
            headers: &[],
        }
    }
}

impl Raw<'_> {
    /// Sends it; the status, the response head's lines, and the body as text.
    pub async fn send(self, addr: SocketAddr) -> (u16, Vec<String>, String) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(from) = self.from {
            socket
                .bind(SocketAddr::new(from, 0))
                .expect("bind the client address");
        }
        let stream = socket.connect(addr).await.expect("connect for HTTP");
        self.exchange(addr, stream).await
    }

    /// Like [`Raw::send`], answering a [`Reply`] with its JSON body and the response head.
    pub async fn reply(self, addr: SocketAddr) -> (Reply, Vec<String>) {
        let (status, head, body) = self.send(addr).await;
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("non-JSON body {body:?}: {e}"))
        };
        (Reply { status, body }, head)
    }

    async fn exchange(
        self,
        addr: SocketAddr,
        mut stream: tokio::net::TcpStream,
    ) -> (u16, Vec<String>, String) {
        let method = self.method;
        let path = self.path;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(token) = self.bearer {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(t) = self.content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        for (name, value) in self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.unwrap_or("");
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body.as_bytes()).await.expect("send body");
        let mut raw = Vec::new();
        crate::within("an HTTP response", stream.read_to_end(&mut raw))
            .await
            .expect("read response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (
            status,
            head.lines().skip(1).map(str::to_owned).collect(),
            body.to_owned(),
        )
    }
}

/// A review created through the API, with one joined session per role.
#[derive(Debug, Clone)]
pub struct Review {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The review id.
    pub id: String,
    /// Invite token per role.
    pub invites: HashMap<String, String>,
    /// Session token per role.
    pub sessions: HashMap<String, String>,
}

/// The four roles, in the order the API lists them.
pub const ROLES: [&str; 4] = ["facilitator", "author", "participant", "observer"];

impl Review {
    /// Creates a review titled `title` and joins once with each role.
    pub async fn create(addr: SocketAddr, title: &str) -> Review {
        Review::create_with(addr, json!({ "title": title })).await
    }

    /// Creates a review from the request body `body` and joins once with each role.
    pub async fn create_with(addr: SocketAddr, body: Value) -> Review {
        let created = request(addr, "POST", "/api/reviews", None, Some(&body)).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let id = created.body["review"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let invites: HashMap<String, String> = ROLES
            .iter()
            .map(|r| {
                let token = created.body["invites"][r]["token"]
                    .as_str()
                    .expect("invite token");
                (r.to_string(), token.to_owned())
            })
            .collect();
        let mut review = Review {
            addr,
            id,
            invites,
            sessions: HashMap::new(),
        };
        for role in ROLES {
            let session = review.join(role, &format!("{role} person")).await;
            review.sessions.insert(role.to_owned(), session);
        }
        review
    }

    /// Joins with the invite of `role`; returns the session token.
    pub async fn join(&self, role: &str, name: &str) -> String {
        let joined = request(
            self.addr,
            "POST",
            "/api/join",
            None,
            Some(&json!({ "invite": self.invites[role], "name": name })),
        )
        .await;
        assert_eq!(joined.status, 201, "{}", joined.body);
        assert_eq!(joined.body["review"]["you"]["role"], role);
        joined.body["session"].as_str().expect("session").to_owned()
    }

    /// The name of one of the review's documents (`report`, `discussion`, `notes`).
    pub fn doc(&self, kind: &str) -> String {
        format!("review.{}.{kind}", self.id)
    }

    /// A request as `role`.
    pub async fn call(&self, role: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let path = format!("/api/reviews/{}{path}", self.id);
        request(
            self.addr,
            method,
            &path,
            Some(&self.sessions[role]),
            body.as_ref(),
        )
        .await
    }

    /// Moves the review to `phase` as the facilitator; the move must succeed.
    pub async fn move_to(&self, phase: &str) {
        let moved = self
            .call(
                "facilitator",
                "POST",
                "/phase",
                Some(json!({ "phase": phase })),
            )
            .await;
        assert_eq!(moved.status, 200, "{}", moved.body);
        assert_eq!(moved.body["phase"], phase);
    }

    /// Publishes the review to the library as the facilitator; the publishing must succeed.
    pub async fn publish(&self) {
        let published = self
            .call(
                "facilitator",
                "POST",
                "/publish",
                Some(json!({ "published": true })),
            )
            .await;
        assert_eq!(published.status, 200, "{}", published.body);
    }

    /// The review's library entry, as anyone (no session) reads it.
    pub async fn library_entry(&self) -> Reply {
        let path = format!("/api/library/{}", self.id);
        request(self.addr, "GET", &path, None, None).await
    }
}
