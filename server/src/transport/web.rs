//! The browser app, embedded at build time from `web/dist` (see `build.rs`): the HTML shell for
//! every app route (never cached without asking again), and the hashed assets with long-lived
//! caching. Both are served brotli- or gzip-compressed when the client accepts it; the
//! compressed forms were made at build time.

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file: its URL path, its bytes, and its compressed forms when they are smaller.
#[derive(Debug)]
pub struct Asset {
    path: &'static str,
    identity: &'static [u8],
    brotli: Option<&'static [u8]>,
    gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Shown when the binary was built without the web app.
const NOT_BUILT: &str = include_str!("../../../web/not-built.html");

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// Whether the web app is embedded in this binary.
pub fn built() -> bool {
    find("/index.html").is_some()
}

/// The app's HTML shell: the app routes itself from the URL. It names the hashed assets of this
/// build, so a browser must ask again each time (`no-cache`).
pub async fn shell(request: HeaderMap) -> Response {
    let not_built = Asset {
        path: "/index.html",
        identity: NOT_BUILT.as_bytes(),
        brotli: None,
        gzip: None,
    };
    let asset = find("/index.html").unwrap_or(&not_built);
    serve(asset, &request, "no-cache")
}

/// `GET /assets/{*file}`: file names carry a content hash, so they may be cached for good.
/// A path that does not percent-decode to UTF-8 names no asset (and gets the JSON 404, not the
/// extractor's plain-text rejection).
pub async fn asset(file: Result<Path<String>, PathRejection>, request: HeaderMap) -> Response {
    let file = file.map(|Path(file)| file).unwrap_or_default();
    let path = format!("/assets/{file}");
    let Some(asset) = find(&path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset {path}"),
        )
        .into_response();
    };
    serve(asset, &request, "public, max-age=31536000, immutable")
}

/// The response for `asset` in the best encoding the request accepts.
fn serve(asset: &Asset, request: &HeaderMap, cache_control: &'static str) -> Response {
    let accepted = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let (body, encoding) = match choose_encoding(&accepted, asset) {
        Encoding::Brotli => (asset.brotli.unwrap_or(asset.identity), Some("br")),
        Encoding::Gzip => (asset.gzip.unwrap_or(asset.identity), Some("gzip")),
        Encoding::Identity => (asset.identity, None),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(encoding) = encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// Picks the encoding of `asset` that `accept_encoding` (an `Accept-Encoding` value) ranks
/// highest, preferring brotli to gzip at equal rank (it is smaller). Only forms the asset has are
/// considered; identity is the answer when neither is accepted (even when the header refuses
/// identity: every client understands it, and a 406 for a stylesheet helps nobody).
fn choose_encoding(accept_encoding: &str, asset: &Asset) -> Encoding {
    let mut brotli = None;
    let mut gzip = None;
    let mut any = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut quality = 1.0_f32;
        for parameter in parts {
            if let Some((key, value)) = parameter.split_once('=') {
                if key.trim().eq_ignore_ascii_case("q") {
                    quality = value.trim().parse().unwrap_or(0.0);
                }
            }
        }
        match name.as_str() {
            "br" => brotli = Some(quality),
            "gzip" | "x-gzip" => gzip = Some(quality),
            "*" => any = Some(quality),
            _ => {}
        }
    }
    let brotli = brotli
        .or(any)
        .filter(|_| asset.brotli.is_some())
        .unwrap_or(0.0);
    let gzip = gzip.or(any).filter(|_| asset.gzip.is_some()).unwrap_or(0.0);
    if brotli > 0.0 && brotli >= gzip {
        Encoding::Brotli
    } else if gzip > 0.0 {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
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

#[cfg(test)]
mod tests {
    use super::{choose_encoding, Asset, Encoding};

    const BOTH: Asset = Asset {
        path: "/assets/app.js",
        identity: b"identity",
        brotli: Some(b"br"),
        gzip: Some(b"gz"),
    };
    const GZIP_ONLY: Asset = Asset {
        path: "/assets/app.js",
        identity: b"identity",
        brotli: None,
        gzip: Some(b"gz"),
    };

    #[test]
    fn the_best_accepted_encoding_is_chosen() {
        for (header, asset, expected) in [
            ("gzip, deflate, br, zstd", &BOTH, Encoding::Brotli),
            ("gzip", &BOTH, Encoding::Gzip),
            ("br", &BOTH, Encoding::Brotli),
            ("", &BOTH, Encoding::Identity),
            ("identity", &BOTH, Encoding::Identity),
            ("br;q=0, gzip", &BOTH, Encoding::Gzip),
            ("br;q=0.5, gzip;q=0.8", &BOTH, Encoding::Gzip),
            ("BR;Q=1, GZIP;q=1", &BOTH, Encoding::Brotli),
            ("*", &BOTH, Encoding::Brotli),
            ("*;q=0", &BOTH, Encoding::Identity),
            ("gzip;q=0, *", &BOTH, Encoding::Brotli),
            ("br", &GZIP_ONLY, Encoding::Identity),
            ("br, gzip;q=0.1", &GZIP_ONLY, Encoding::Gzip),
            ("deflate", &BOTH, Encoding::Identity),
            ("gzip;q=nonsense", &BOTH, Encoding::Identity),
        ] {
            assert_eq!(choose_encoding(header, asset), expected, "{header:?}");
        }
    }
}
