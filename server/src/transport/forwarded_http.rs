//! Requests of the review API passed from a node that does not serve reviews to the one that does
//! (`docs/cluster.md`, "Reviews on one node at a time"), over a sub-stream of the internal link
//! named [`forward_http::HTTP_STREAM`] that carries the request and its response
//! ([`debrief_proto::forward_http`]).
//!
//! The entry node sends the request as it came (hop-by-hop headers left out) with the address
//! its client connected from; the serving node answers it through its own router, exactly as if
//! the client had connected to it, with that address as the client's (its limits and its trust
//! in proxies apply), and marks it [`Forwarded`] so that it is never passed on again. Nothing of a
//! request is logged or kept on either side beyond answering it: an anonymous submission crosses
//! like any other request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use debrief_proto::forward::{split, Reassembly, PART_BYTES};
use debrief_proto::forward_http::{self, HttpRequest, HttpResponse};
use tower::ServiceExt;

use crate::cluster::link::SubStream;
use crate::cluster::links::CurrentLinks;
use crate::cluster::NodeId;
use crate::error::ApiError;

/// The largest request body passed on (creating a review; every other route takes
/// [`crate::limits::MAX_BODY_BYTES`], and the entry node holds a request to that before it
/// passes it on).
pub const REQUEST_LIMIT: usize = crate::limits::MAX_FORWARDED_REQUEST_BYTES;

/// The largest response body passed back: an export of a large review. Below a sub-stream's
/// byte budget (8 MiB), so a response never overflows it, and [`CONCURRENT`] of them below a
/// link's (64 MiB), so they never close the documents' attachments on the same link.
pub const RESPONSE_LIMIT: usize = 4 << 20;

/// Room for a message's method, target and headers beside its body.
const HEAD_ALLOWANCE: usize = 64 * 1024;

/// How many requests an entry node passes on at once; more wait their turn (within
/// [`PATIENCE`]).
pub const CONCURRENT: usize = 8;

/// How long a request may take to be answered through the link, the serving node's work
/// included.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Marks a request that came over a link: the serving node never passes it on again (if it no
/// longer serves reviews, it answers as any node that does not).
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

/// Headers that belong to one connection, not to the request or response.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Why a request was not answered by the serving node.
#[derive(Debug)]
pub enum NotForwarded {
    /// Nothing reached the serving node: the request may be made again.
    NotSent(String),
    /// The request was sent and no answer came back: it may have been carried out.
    Unknown(String),
}

/// The headers of `map` that cross to the other node (hop-by-hop ones stay).
fn crossing(map: &HeaderMap) -> Vec<(&str, &[u8])> {
    map.iter()
        .filter(|(name, _)| !hop_by_hop(name))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect()
}

/// Adds the headers that crossed to `map` (hop-by-hop ones left out).
fn put_headers(map: &mut HeaderMap, crossed: &[(&str, &[u8])]) -> Result<(), String> {
    for (name, value) in crossed {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        if hop_by_hop(&name) {
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|e| e.to_string())?;
        map.append(name, value);
    }
    Ok(())
}

/// Passes `request`, from a client at `client`, to `node` over this node's link to it, and
/// answers what that node answered. A body over `limit` bytes is answered 413 here.
pub async fn forward(
    links: &CurrentLinks,
    node: &NodeId,
    request: Request,
    client: SocketAddr,
    limit: usize,
) -> Result<Response, NotForwarded> {
    let (parts, body) = request.into_parts();
    let too_large = |detail: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body could not be read (at most {limit} bytes): {detail}"),
        )
        .into_response()
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Ok(too_large("its declared length is larger".to_owned()));
    }
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(e) => return Ok(too_large(e.to_string())),
    };
    let headers = crossing(&parts.headers);
    let client = client.to_string();
    let message = forward_http::encode_request(&HttpRequest {
        client: &client,
        method: parts.method.as_str(),
        target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        headers,
        body: &body,
    });
    let mut sent = false;
    let exchange = async {
        let links = links
            .get()
            .ok_or_else(|| "this node has no links now (it is registering again)".to_owned())?;
        let link = links.get(node).await.map_err(|e| e.to_string())?;
        let mut sub = link
            .open(forward_http::HTTP_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        sent = true;
        for piece in split(message, PART_BYTES) {
            sub.send(piece).await.map_err(|e| e.to_string())?;
        }
        let mut parts = Reassembly::new(RESPONSE_LIMIT + HEAD_ALLOWANCE);
        let answer = loop {
            let payload = sub
                .recv()
                .await
                .map_err(|e| format!("the serving node ended the request: {e}"))?;
            if let Some(whole) = parts.feed(payload).map_err(|e| e.to_string())? {
                break whole;
            }
        };
        sub.close().await;
        let decoded = forward_http::decode_response(&answer).map_err(|e| e.to_string())?;
        response_of(&decoded)
    };
    let answered = tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| Err("the serving node did not answer in time".to_owned()));
    answered.map_err(|why| {
        if sent {
            NotForwarded::Unknown(why)
        } else {
            NotForwarded::NotSent(why)
        }
    })
}

/// The response `decoded` describes.
fn response_of(decoded: &HttpResponse<'_>) -> Result<Response, String> {
    let mut response = Response::new(Body::from(decoded.body.to_vec()));
    *response.status_mut() =
        StatusCode::from_u16(decoded.status).map_err(|e| format!("bad status: {e}"))?;
    put_headers(response.headers_mut(), &decoded.headers)?;
    Ok(response)
}

/// Serves one request a peer passed on, through `router` (this node's whole HTTP router), and
/// sends the response back; at `shutdown` it stops (the entry node answers its client). Runs
/// on the server's task tracker.
pub async fn serve<S>(router: S, mut sub: SubStream, shutdown: tokio_util::sync::CancellationToken)
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    let exchange = async {
        let mut parts = Reassembly::new(REQUEST_LIMIT + HEAD_ALLOWANCE);
        let message = loop {
            let payload = sub.recv().await.ok()?;
            match parts.feed(payload) {
                Ok(Some(whole)) => break whole,
                Ok(None) => {}
                Err(_) => return None,
            }
        };
        let request = match request_of(&message) {
            Ok(request) => request,
            Err(why) => {
                tracing::debug!(error = %why, "a request passed on by a peer could not be read");
                return None;
            }
        };
        let response = match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (head, body) = response.into_parts();
        let (head, body) = match axum::body::to_bytes(body, RESPONSE_LIMIT).await {
            Ok(body) => (head, body),
            Err(_) => {
                let refused = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "response_too_large",
                    format!(
                        "the answer is larger than one node passes to another ({RESPONSE_LIMIT} \
                         bytes); ask the node serving reviews directly"
                    ),
                )
                .into_response();
                let (head, body) = refused.into_parts();
                (head, axum::body::to_bytes(body, RESPONSE_LIMIT).await.ok()?)
            }
        };
        let headers = crossing(&head.headers);
        let message = forward_http::encode_response(&HttpResponse {
            status: head.status.as_u16(),
            headers,
            body: &body,
        });
        for piece in split(message, PART_BYTES) {
            sub.send(piece).await.ok()?;
        }
        Some(())
    };
    // A request that cannot be answered in time, or at shutdown, ends with its sub-stream; the
    // entry node answers its client.
    tokio::select! {
        _ = tokio::time::timeout(PATIENCE, exchange) => {}
        () = shutdown.cancelled() => {}
    }
    sub.close().await;
}

/// The request a peer passed on, with the client's address and the [`Forwarded`] mark.
fn request_of(message: &[u8]) -> Result<Request, String> {
    let decoded = forward_http::decode_request(message).map_err(|e| e.to_string())?;
    let client: SocketAddr = decoded
        .client
        .parse()
        .map_err(|e| format!("bad client address: {e}"))?;
    let method = Method::from_bytes(decoded.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = Request::new(Body::from(decoded.body.to_vec()));
    *request.method_mut() = method;
    *request.uri_mut() = decoded
        .target
        .parse()
        .map_err(|e| format!("bad target: {e}"))?;
    put_headers(request.headers_mut(), &decoded.headers)?;
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(client));
    request.extensions_mut().insert(Forwarded);
    Ok(request)
}
