//! Guessing and flooding the REST API (issue 16): per-address limits with backoff on joins,
//! wrong invites, creations and wrong creation secrets; per-invite limits on joins; JSON bodies
//! only. Another client is another loopback address (`127.0.0.2`), so one client's flood is shown
//! not to block others.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use debrief_tests::api::{Raw, Reply, Review};
use debrief_tests::TestServer;
use serde_json::json;

const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn post_from(
    addr: SocketAddr,
    from: Option<IpAddr>,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (Reply, Vec<String>) {
    Raw {
        method: "POST",
        path,
        bearer,
        body: Some(body),
        from,
        ..Raw::default()
    }
    .reply(addr)
    .await
}

fn retry_after(head: &[String]) -> u64 {
    head.iter()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("retry-after")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Retry-After in {head:?}"))
}

#[tokio::test]
async fn wrong_invites_are_throttled_per_address_with_backoff() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Guessing").await;
    let wrong = json!({ "invite": format!("dbi_{}", "0".repeat(64)), "name": "Eve" }).to_string();
    for _ in 0..10 {
        let (r, _) = post_from(server.addr, None, "/api/join", None, &wrong).await;
        r.assert_error(401, "invalid_invite");
    }
    let (r, head) = post_from(server.addr, None, "/api/join", None, &wrong).await;
    let message = r.assert_error(429, "rate_limited");
    assert_eq!(
        message,
        "too many joins or wrong invite links from this address; wait before trying again"
    );
    assert!((59..=60).contains(&retry_after(&head)), "{head:?}");
    // Even a right invite waits now, from this address; another address is not affected.
    let right = json!({ "invite": review.invites["participant"], "name": "Pat" }).to_string();
    let (r, _) = post_from(server.addr, None, "/api/join", None, &right).await;
    r.assert_error(429, "rate_limited");
    let (r, _) = post_from(server.addr, Some(OTHER), "/api/join", None, &right).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn one_invite_link_cannot_fill_a_review_in_a_minute() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Flood").await;
    // Review::create joined once per role already.
    let observer = json!({ "invite": review.invites["observer"], "name": "Bot" }).to_string();
    for i in 1..30 {
        let from = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, i as u8)));
        let (r, _) = post_from(server.addr, from, "/api/join", None, &observer).await;
        assert_eq!(r.status, 201, "join {i}: {}", r.body);
    }
    let (r, head) = post_from(server.addr, Some(OTHER), "/api/join", None, &observer).await;
    let message = r.assert_error(429, "rate_limited");
    assert_eq!(
        message,
        "this invite link was used to join 30 times in the last minute; try again shortly"
    );
    assert!(retry_after(&head) >= 59);
    // The review's other links still work.
    let participant = json!({ "invite": review.invites["participant"], "name": "Pat" }).to_string();
    let (r, _) = post_from(server.addr, Some(OTHER), "/api/join", None, &participant).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn creations_are_limited_per_address_not_for_everyone() {
    let server = TestServer::start().await;
    let body = json!({ "title": "Mine" }).to_string();
    for i in 0..10 {
        let (r, _) = post_from(server.addr, None, "/api/reviews", None, &body).await;
        assert_eq!(r.status, 201, "creation {i}: {}", r.body);
    }
    let (r, head) = post_from(server.addr, None, "/api/reviews", None, &body).await;
    let message = r.assert_error(429, "rate_limited");
    assert_eq!(
        message,
        "this address created 10 reviews in the last minute; try again shortly"
    );
    assert!(retry_after(&head) >= 59);
    let (r, _) = post_from(server.addr, Some(OTHER), "/api/reviews", None, &body).await;
    assert_eq!(r.status, 201, "another client still creates: {}", r.body);
}

#[tokio::test]
async fn wrong_creation_secrets_are_throttled_per_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = debrief_server::Config::new("unused");
    config.creation_secret = Some(debrief_server::documents::peer::Credential::new(
        "s3cret-of-the-team",
    ));
    let server = TestServer::start_with(dir, config).await;
    let body = json!({ "title": "Secret" }).to_string();
    for _ in 0..5 {
        let (r, _) = post_from(server.addr, None, "/api/reviews", Some("guess"), &body).await;
        r.assert_error(401, "creation_not_allowed");
    }
    let (r, _) = post_from(server.addr, None, "/api/reviews", Some("guess"), &body).await;
    r.assert_error(429, "rate_limited");
    // Even the right secret waits now, from this address; another address is not affected.
    let (r, head) = post_from(
        server.addr,
        None,
        "/api/reviews",
        Some("s3cret-of-the-team"),
        &body,
    )
    .await;
    let message = r.assert_error(429, "rate_limited");
    assert_eq!(
        message,
        "too many wrong creation secrets from this address; wait before trying again"
    );
    assert!(retry_after(&head) >= 59);
    let (r, _) = post_from(
        server.addr,
        Some(OTHER),
        "/api/reviews",
        Some("s3cret-of-the-team"),
        &body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn state_changing_requests_take_json_bodies_only() {
    let server = TestServer::start().await;
    let review = Review::create(server.addr, "Forms").await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        for (path, bearer) in [
            ("/api/reviews".to_owned(), None),
            (
                format!("/api/reviews/{}/threads", review.id),
                Some(review.sessions["participant"].as_str()),
            ),
        ] {
            let (r, _) = Raw {
                method: "POST",
                path: &path,
                bearer,
                body: Some(r#"{"title":"Cross-site","body":"x"}"#),
                content_type,
                from: None,
                headers: &[],
            }
            .reply(server.addr)
            .await;
            let message = r.assert_error(415, "unsupported_media_type");
            assert_eq!(
                message,
                "send the request body as JSON, with `Content-Type: application/json`"
            );
        }
    }
    // JSON with a charset parameter is JSON; a request without a body needs no type.
    let (r, _) = Raw {
        method: "POST",
        path: "/api/reviews",
        body: Some(r#"{"title":"Fine"}"#),
        content_type: Some("application/json; charset=utf-8"),
        ..Raw::default()
    }
    .reply(server.addr)
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = format!("/api/reviews/{}/read", review.id);
    let (r, _) = Raw {
        method: "POST",
        path: &path,
        bearer: Some(&review.sessions["author"]),
        content_type: None,
        ..Raw::default()
    }
    .reply(server.addr)
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
