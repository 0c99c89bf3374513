//! Issue 17: the embedded browser app is served compressed (brotli or gzip, as the browser
//! accepts), with long-lived caching for its hashed assets and none for the HTML shell.

use std::io::Read as _;

use debrief_tests::client::http_get_bytes;
use debrief_tests::TestServer;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        None => out.extend_from_slice(body),
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("a valid brotli stream");
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("a valid gzip stream");
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}

/// The HTML shell and the JavaScript bundle it names are sent brotli-compressed to a browser that
/// accepts brotli, gzip-compressed to one that accepts only gzip, and as they are to one that
/// accepts neither; each decodes to the same bytes. The bundle is at most a third of its size on
/// the wire, may be cached for a year, and the shell must be revalidated.
#[tokio::test]
async fn issue_17_the_web_app_is_served_compressed_with_caching() {
    let server = TestServer::start().await;
    let (status, headers, shell) = http_get_bytes(server.addr, "/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "content-encoding"), None);
    let shell = String::from_utf8(shell).expect("the shell is UTF-8");
    let bundle = shell
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .unwrap_or_else(|| panic!("the shell names no script bundle (web app not built?): {shell}"))
        .to_owned();

    for path in ["/", bundle.as_str()] {
        let (_, _, identity) = http_get_bytes(server.addr, path, &[]).await;
        for (accept, expected) in [
            (None, None),
            (Some("identity"), None),
            (Some("gzip, deflate, br, zstd"), Some("br")),
            (Some("gzip"), Some("gzip")),
            (Some("br;q=0, gzip;q=0.9"), Some("gzip")),
            (Some("deflate"), None),
        ] {
            let sent: Vec<(&str, &str)> =
                accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
            let (status, headers, body) = http_get_bytes(server.addr, path, &sent).await;
            assert_eq!(status, 200, "{path} with {accept:?}");
            let encoding = header(&headers, "content-encoding");
            assert_eq!(encoding, expected, "{path} with {accept:?}: {headers:?}");
            assert_eq!(
                header(&headers, "vary")
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("accept-encoding"),
                "{path} with {accept:?}"
            );
            assert_eq!(
                header(&headers, "content-length"),
                Some(body.len().to_string().as_str()),
                "{path} with {accept:?}"
            );
            assert!(
                decode(encoding, &body) == identity,
                "{path} with {accept:?} does not decode to the file"
            );
            if path == bundle {
                assert_eq!(
                    header(&headers, "cache-control"),
                    Some("public, max-age=31536000, immutable")
                );
                assert_eq!(
                    header(&headers, "content-type"),
                    Some("text/javascript; charset=utf-8")
                );
                if expected.is_some() {
                    assert!(
                        body.len() * 3 < identity.len(),
                        "{path} as {encoding:?} is {} of {} bytes",
                        body.len(),
                        identity.len()
                    );
                }
            } else {
                assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
            }
        }
    }
}
