//! The browser app, embedded at build time from `web/dist` (see `build.rs`): the HTML shell for
//! every app route, and the hashed assets with long-lived caching.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Shown when the binary was built without the web app.
const NOT_BUILT: &str = include_str!("../../../web/not-built.html");

fn find(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

/// Whether the web app is embedded in this binary.
pub fn built() -> bool {
    find("/index.html").is_some()
}

/// The app's HTML shell: the app routes itself from the URL.
pub async fn shell() -> Response {
    let body: &'static [u8] = find("/index.html").unwrap_or(NOT_BUILT.as_bytes());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /assets/{*file}`: file names carry a content hash, so they may be cached for good.
/// A path that does not percent-decode to UTF-8 names no asset (and gets the JSON 404, not the
/// extractor's plain-text rejection).
pub async fn asset(file: Result<Path<String>, PathRejection>) -> Response {
    let file = file.map(|Path(file)| file).unwrap_or_default();
    let path = format!("/assets/{file}");
    let Some(body) = find(&path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset {path}"),
        )
        .into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}
