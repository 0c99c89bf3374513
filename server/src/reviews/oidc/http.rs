//! The HTTP client of OpenID Connect: discovery, the provider's keys and the token exchange, one
//! HTTP/1.1 request per connection on the server's own hyper and rustls (the roots the webhooks
//! trust). Bounded in time and in the size of the answer; follows no redirect. Plain `http` only
//! to a loopback host, and only when the operator allowed it for testing
//! (`--oidc-allow-insecure-http`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openidconnect::{HttpRequest, HttpResponse};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::reviews::urls::WebUrl;
use crate::reviews::webhooks::deliver::TLS;

/// Longest wait for one request to the provider.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the provider: discovery documents and key sets are a few kilobytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a request to the provider failed (names no secret: URLs and statuses only).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// The client; `insecure_loopback` allows plain `http` to a loopback host.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// See the type.
    pub insecure_loopback: bool,
}

impl Client {
    /// Sends `request` and reads the answer.
    pub async fn call(self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(HttpError(format!(
                "the provider did not answer within {} seconds",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn exchange(self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = request.uri().to_string();
        let target =
            WebUrl::parse(&url).ok_or_else(|| HttpError(format!("{url} is not a web address")))?;
        let allowed = target.tls || (self.insecure_loopback && loopback(&target.host));
        if !allowed {
            return Err(HttpError(format!(
                "{} is not https: the provider is only reached over TLS (plain http is allowed \
                 for a loopback provider with --oidc-allow-insecure-http, for testing)",
                target.shown()
            )));
        }
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                HttpError(format!(
                    "could not connect to {}: {}",
                    target.host,
                    e.kind()
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        if target.tls {
            let config = TLS
                .clone()
                .ok_or_else(|| HttpError("TLS is not available".to_owned()))?;
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|_| HttpError("the host is not a valid TLS server name".to_owned()))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError(format!("TLS with {} failed: {e}", target.host)))?;
            send(TokioIo::new(tls), &target, request).await
        } else {
            send(TokioIo::new(tcp), &target, request).await
        }
    }
}

/// Whether `host` is this machine.
pub fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn send<IO>(io: IO, target: &WebUrl, request: HttpRequest) -> Result<HttpResponse, HttpError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpError(format!("HTTP failed: {e}")))?;
    let driving = tokio::spawn(async move {
        let _ = connection.await;
    });
    let (parts, body) = request.into_parts();
    let mut out = hyper::Request::builder()
        .method(parts.method)
        .uri(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(hyper::header::USER_AGENT, "Debrief-OIDC/1");
    for (name, value) in &parts.headers {
        out = out.header(name, value);
    }
    let out = out
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpError(format!("the request could not be made: {e}")))?;
    let result = async {
        let answer = sender
            .send_request(out)
            .await
            .map_err(|e| HttpError(format!("HTTP failed: {e}")))?;
        let (parts, mut body) = answer.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| HttpError(format!("HTTP failed: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if bytes.len() + data.len() > MAX_ANSWER_BYTES {
                    return Err(HttpError(format!(
                        "the provider's answer is over {MAX_ANSWER_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(data);
            }
        }
        let mut response = HttpResponse::new(bytes);
        *response.status_mut() = parts.status;
        *response.headers_mut() = parts.headers;
        Ok(response)
    }
    .await;
    driving.abort();
    result
}
