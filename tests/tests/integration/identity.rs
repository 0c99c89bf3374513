//! Signing in behind an authenticating proxy (issue 19): the proxy's identity headers are
//! honoured only on connections from a trusted range; with sign-in set up, creating a review
//! needs a person (of an allowed e-mail domain and group, when set), an invite link can require
//! sign-in and joining through it takes the signed-in name, and the sessions a person joins are
//! theirs to find again (`GET /api/me`). Without sign-in, nothing changes. Another client is
//! another loopback address (`127.0.0.2`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use debrief_server::reviews::identity::{Cidr, SignIn, TrustedHeaders};
use debrief_server::Config;
use debrief_tests::api::{Raw, Reply};
use debrief_tests::TestServer;
use serde_json::{json, Value};

/// The trusted proxy's address in these tests.
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Another client on the same machine, not a proxy.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// oauth2-proxy's header names (`--pass-user-headers`).
fn proxy_headers() -> TrustedHeaders {
    TrustedHeaders {
        identity: "x-forwarded-user".into(),
        name: Some("x-forwarded-preferred-username".into()),
        email: Some("x-forwarded-email".into()),
        groups: Some("x-forwarded-groups".into()),
    }
}

async fn server_trusting(ranges: &[&str], rules: impl FnOnce(&mut SignIn)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sign_in = SignIn {
        trusted: Some(proxy_headers()),
        proxies: ranges
            .iter()
            .map(|r| Cidr::parse(r).expect("range"))
            .collect(),
        ..SignIn::default()
    };
    rules(&mut sign_in);
    let config = Config {
        sign_in,
        ..Config::new(dir.path().join("data"))
    };
    TestServer::start_with(dir, config).await
}

/// A person as the proxy names them.
struct As<'a> {
    user: &'a str,
    name: &'a str,
    email: &'a str,
    groups: &'a str,
}

const ANA: As = As {
    user: "u-ana",
    name: "Ana Lima",
    email: "ana@example.com",
    groups: "sre,platform",
};
const BO: As = As {
    user: "u-bo",
    name: "Bo Berg",
    email: "bo@example.com",
    groups: "",
};

async fn call(
    addr: SocketAddr,
    from: IpAddr,
    person: Option<&As<'_>>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    call_with(addr, from, person, None, method, path, body).await
}

async fn call_with(
    addr: SocketAddr,
    from: IpAddr,
    person: Option<&As<'_>>,
    bearer: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let headers = person.map(identity_headers).unwrap_or_default();
    send(addr, from, &headers, bearer, method, path, body).await
}

/// The headers the proxy names `p` in.
fn identity_headers<'a>(p: &As<'a>) -> Vec<(&'static str, &'a str)> {
    vec![
        ("X-Forwarded-User", p.user),
        ("X-Forwarded-Preferred-Username", p.name),
        ("X-Forwarded-Email", p.email),
        ("X-Forwarded-Groups", p.groups),
    ]
}

/// One request from `from` with these header lines.
async fn send(
    addr: SocketAddr,
    from: IpAddr,
    headers: &[(&str, &str)],
    bearer: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string());
    let (reply, _) = Raw {
        method,
        path,
        bearer,
        body: body.as_deref(),
        from: Some(from),
        headers,
        ..Raw::default()
    }
    .reply(addr)
    .await;
    reply
}

#[tokio::test]
async fn the_proxys_header_is_honoured_only_from_a_trusted_address() {
    let server = server_trusting(&["127.0.0.1/32"], |_| {}).await;
    let addr = server.addr;
    let create = json!({ "title": "Queue outage", "sign_in_required": ["participant"] });

    // Nobody signed in: creating needs a person.
    let r = call(
        addr,
        PROXY,
        None,
        "POST",
        "/api/reviews",
        Some(create.clone()),
    )
    .await;
    assert_eq!(
        r.assert_error(401, "sign_in_required"),
        "creating a review on this server needs you to sign in"
    );
    // The same header from an address that is not the proxy is ignored.
    let r = call(
        addr,
        ELSEWHERE,
        Some(&ANA),
        "POST",
        "/api/reviews",
        Some(create.clone()),
    )
    .await;
    r.assert_error(401, "sign_in_required");
    let r = call(addr, ELSEWHERE, Some(&ANA), "GET", "/api/me", None).await;
    assert_eq!(
        r.assert_error(401, "not_signed_in"),
        "nobody is signed in on this request"
    );

    // Through the proxy, Ana creates a review whose participant link needs sign-in.
    let created = call(
        addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/reviews",
        Some(create),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["review"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let invites = &created.body["invites"];
    assert_eq!(invites["participant"]["sign_in_required"], true);
    for role in ["facilitator", "author", "observer"] {
        assert_eq!(invites[role].get("sign_in_required"), None, "{role}");
    }
    let invite = |role: &str| invites[role]["token"].as_str().expect("token").to_owned();

    // The join page learns that the link needs sign-in.
    let looked = call(
        addr,
        ELSEWHERE,
        None,
        "POST",
        "/api/invite",
        Some(json!({ "invite": invite("participant") })),
    )
    .await;
    assert_eq!(looked.status, 200, "{}", looked.body);
    assert_eq!(looked.body["sign_in_required"], true);

    // Joining through it needs a person: not without one, not with a header from elsewhere.
    let join = json!({ "invite": invite("participant"), "name": "Someone Else" });
    let expected =
        "this invite link needs you to sign in first; your name is then the one your sign-in gives";
    let r = call(addr, PROXY, None, "POST", "/api/join", Some(join.clone())).await;
    assert_eq!(r.assert_error(401, "sign_in_required"), expected);
    let r = call(
        addr,
        ELSEWHERE,
        Some(&ANA),
        "POST",
        "/api/join",
        Some(join.clone()),
    )
    .await;
    assert_eq!(r.assert_error(401, "sign_in_required"), expected);

    // Signed in, the typed name is ignored: the session carries the provider's name.
    let joined = call(addr, PROXY, Some(&ANA), "POST", "/api/join", Some(join)).await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.body["review"]["you"]["name"], "Ana Lima");
    assert_eq!(joined.body["review"]["you"]["role"], "participant");

    // Bo joins through the facilitator's link, which needs no sign-in: his typed name stays,
    // and the session is his to find again since he was signed in.
    let joined = call(
        addr,
        PROXY,
        Some(&BO),
        "POST",
        "/api/join",
        Some(json!({ "invite": invite("facilitator"), "name": "Bo (facilitating)" })),
    )
    .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.body["review"]["you"]["name"], "Bo (facilitating)");
    let bo_session = joined.body["session"].as_str().expect("session").to_owned();

    // Each person's sessions, from any browser: the proxy names them again.
    let me = call(addr, PROXY, Some(&ANA), "GET", "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["source"], "proxy");
    assert_eq!(me.body["name"], "Ana Lima");
    assert_eq!(me.body["email"], "ana@example.com");
    assert_eq!(me.body["groups"], json!(["sre", "platform"]));
    let reviews = me.body["reviews"].as_array().expect("reviews");
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0]["id"], id.as_str());
    assert_eq!(reviews[0]["title"], "Queue outage");
    assert_eq!(reviews[0]["role"], "participant");
    assert_eq!(reviews[0]["name"], "Ana Lima");
    let me = call(addr, PROXY, Some(&BO), "GET", "/api/me", None).await;
    let reviews = me.body["reviews"].as_array().expect("reviews");
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0]["role"], "facilitator");
    assert_eq!(me.body["groups"], json!([]));

    // The home page of a browser that holds no session lists each person's reviews.
    let home = call(
        addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/home",
        Some(json!({ "sessions": [] })),
    )
    .await;
    assert_eq!(home.status, 200, "{}", home.body);
    let listed = home.body["reviews"].as_array().expect("reviews");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["you"]["role"], "participant");
    assert_eq!(listed[0]["you"]["name"], "Ana Lima");
    // Not from an address that is not the proxy.
    let home = call(
        addr,
        ELSEWHERE,
        Some(&ANA),
        "POST",
        "/api/home",
        Some(json!({ "sessions": [] })),
    )
    .await;
    assert_eq!(home.body["reviews"], json!([]));
    // A session the browser holds and the person's link to it are one review.
    let home = call(
        addr,
        PROXY,
        Some(&BO),
        "POST",
        "/api/home",
        Some(json!({ "sessions": [bo_session] })),
    )
    .await;
    let listed = home.body["reviews"].as_array().expect("reviews");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["you"]["role"], "facilitator");

    // The facilitator replaces the participant link with one that needs no sign-in; then anyone
    // joins with a typed name, as without sign-in.
    let path = format!("/api/reviews/{id}/invites/participant");
    let rotated = call_with(
        addr,
        ELSEWHERE,
        None,
        Some(&bo_session),
        "POST",
        &path,
        Some(json!({ "sign_in_required": false })),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["invite"].get("sign_in_required"), None);
    let open = rotated.body["invite"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let joined = call(
        addr,
        ELSEWHERE,
        None,
        "POST",
        "/api/join",
        Some(json!({ "invite": open, "name": "Cy" })),
    )
    .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.body["review"]["you"]["name"], "Cy");
    // …and back: a rotation without the field keeps what the link required.
    let rotated = call_with(
        addr,
        ELSEWHERE,
        None,
        Some(&bo_session),
        "POST",
        &format!("/api/reviews/{id}/invites/observer"),
        Some(json!({ "sign_in_required": true })),
    )
    .await;
    assert_eq!(rotated.body["invite"]["sign_in_required"], true);
    let rotated = call_with(
        addr,
        ELSEWHERE,
        None,
        Some(&bo_session),
        "POST",
        &format!("/api/reviews/{id}/invites/observer"),
        None,
    )
    .await;
    assert_eq!(rotated.body["invite"]["sign_in_required"], true);

    // A restart keeps the links' requirement and the people's sessions.
    let server = server.restart().await;
    let me = call(server.addr, PROXY, Some(&ANA), "GET", "/api/me", None).await;
    assert_eq!(me.body["reviews"].as_array().map(Vec::len), Some(1));
    let observer = rotated.body["invite"]["token"].as_str().expect("token");
    let r = call(
        server.addr,
        PROXY,
        None,
        "POST",
        "/api/join",
        Some(json!({ "invite": observer, "name": "Dee" })),
    )
    .await;
    r.assert_error(401, "sign_in_required");
}

#[tokio::test]
async fn loopback_is_no_proxy_unless_it_is_trusted() {
    let server = server_trusting(&["10.0.0.0/8"], |_| {}).await;
    let r = call(
        server.addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/reviews",
        Some(json!({ "title": "Not from the proxy" })),
    )
    .await;
    r.assert_error(401, "sign_in_required");
    let r = call(server.addr, PROXY, Some(&ANA), "GET", "/api/me", None).await;
    r.assert_error(401, "not_signed_in");
}

#[tokio::test]
async fn an_ipv4_proxy_may_be_written_as_ipv6() {
    for range in ["::ffff:127.0.0.1", "::ffff:127.0.0.0/104"] {
        let server = server_trusting(&[range], |_| {}).await;
        let me = call(server.addr, PROXY, Some(&ANA), "GET", "/api/me", None).await;
        assert_eq!(me.status, 200, "{range}: {}", me.body);
        assert_eq!(me.body["name"], "Ana Lima", "{range}");
    }
    let server = server_trusting(&["::ffff:127.0.0.1"], |_| {}).await;
    let r = call(server.addr, ELSEWHERE, Some(&ANA), "GET", "/api/me", None).await;
    r.assert_error(401, "not_signed_in");
}

#[tokio::test]
async fn behind_the_proxy_each_client_has_its_own_limits() {
    let server = server_trusting(&["127.0.0.1"], |_| {}).await;
    let addr = server.addr;
    let created = call(
        addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/reviews",
        Some(json!({ "title": "Shared proxy" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let invite = created.body["invites"]["participant"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let wrong = json!({ "invite": format!("dbi_{}", "0".repeat(64)), "name": "Eve" });
    let right = json!({ "invite": invite, "name": "Pat" });
    let limited =
        "too many joins or wrong invite links from this address; wait before trying again";
    let join = |from: IpAddr, forwarded: &'static str, body: &Value| {
        let body = body.clone();
        async move {
            let headers = [("X-Forwarded-For", forwarded)];
            send(addr, from, &headers, None, "POST", "/api/join", Some(body)).await
        }
    };

    // Through the proxy, one person guessing invites is held back...
    for _ in 0..10 {
        join(PROXY, "203.0.113.1", &wrong)
            .await
            .assert_error(401, "invalid_invite");
    }
    let r = join(PROXY, "203.0.113.1", &wrong).await;
    assert_eq!(r.assert_error(429, "rate_limited"), limited);
    // ...also when they put another address in front of what the proxy appends...
    let r = join(PROXY, "198.51.100.7, 203.0.113.1", &right).await;
    assert_eq!(r.assert_error(429, "rate_limited"), limited);
    // ...while a colleague behind the same proxy joins.
    let r = join(PROXY, "203.0.113.2", &right).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Straight from a client, the header is its own word: ignored, so both share a limit.
    for _ in 0..10 {
        join(ELSEWHERE, "203.0.113.3", &wrong)
            .await
            .assert_error(401, "invalid_invite");
    }
    let r = join(ELSEWHERE, "203.0.113.3", &wrong).await;
    assert_eq!(r.assert_error(429, "rate_limited"), limited);
    let r = join(ELSEWHERE, "203.0.113.4", &right).await;
    assert_eq!(r.assert_error(429, "rate_limited"), limited);
}

#[tokio::test]
async fn an_identity_header_sent_twice_signs_nobody_in() {
    let server = server_trusting(&["127.0.0.1"], |_| {}).await;
    let addr = server.addr;
    let nobody = "nobody is signed in on this request";
    // A proxy that appends to the browser's own header.
    let mut appended = identity_headers(&BO);
    appended.push(("X-Forwarded-User", ANA.user));
    let r = send(addr, PROXY, &appended, None, "GET", "/api/me", None).await;
    assert_eq!(r.assert_error(401, "not_signed_in"), nobody);
    let r = send(
        addr,
        PROXY,
        &appended,
        None,
        "POST",
        "/api/reviews",
        Some(json!({ "title": "Smuggled" })),
    )
    .await;
    r.assert_error(401, "sign_in_required");
    // An optional header the browser adds beside the proxy's.
    let mut extra = identity_headers(&BO);
    extra.push(("X-Forwarded-Groups", "sre"));
    let r = send(addr, PROXY, &extra, None, "GET", "/api/me", None).await;
    assert_eq!(r.assert_error(401, "not_signed_in"), nobody);
    // Each header once: Bo, as the proxy says.
    let r = send(
        addr,
        PROXY,
        &identity_headers(&BO),
        None,
        "GET",
        "/api/me",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Bo Berg");
}

#[tokio::test]
async fn creating_needs_an_allowed_email_domain_and_the_required_group() {
    let server = server_trusting(&["127.0.0.0/8"], |s| {
        s.allowed_email_domains = vec!["example.com".into()];
        s.required_group = Some("sre".into());
    })
    .await;
    let create = Some(json!({ "title": "Rules" }));
    let outsider = As {
        email: "ana@elsewhere.org",
        ..ANA
    };
    let r = call(
        server.addr,
        PROXY,
        Some(&outsider),
        "POST",
        "/api/reviews",
        create.clone(),
    )
    .await;
    assert_eq!(
        r.assert_error(403, "email_domain_not_allowed"),
        "creating a review on this server needs an e-mail address in one of its allowed domains"
    );
    // A look-alike domain is not the domain.
    let look_alike = As {
        email: "ana@example.com.evil.org",
        ..ANA
    };
    let r = call(
        server.addr,
        PROXY,
        Some(&look_alike),
        "POST",
        "/api/reviews",
        create.clone(),
    )
    .await;
    r.assert_error(403, "email_domain_not_allowed");
    let r = call(
        server.addr,
        PROXY,
        Some(&BO),
        "POST",
        "/api/reviews",
        create.clone(),
    )
    .await;
    assert_eq!(
        r.assert_error(403, "group_required"),
        "creating a review on this server needs membership of the group \"sre\""
    );
    let r = call(
        server.addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/reviews",
        create,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn without_sign_in_nothing_changes_and_no_link_can_require_it() {
    let server = TestServer::start().await;
    let addr = server.addr;
    // The proxy's headers mean nothing to a server without sign-in.
    let r = call(addr, PROXY, Some(&ANA), "GET", "/api/me", None).await;
    r.assert_error(401, "not_signed_in");
    let r = call(
        addr,
        PROXY,
        None,
        "POST",
        "/api/reviews",
        Some(json!({ "title": "Locked", "sign_in_required": ["author"] })),
    )
    .await;
    let expected = "this server has no sign-in set up (--oidc-issuer or --trusted-identity-header), so no invite link can require it";
    assert_eq!(r.assert_error(409, "sign_in_not_configured"), expected);
    let created = call(
        addr,
        PROXY,
        None,
        "POST",
        "/api/reviews",
        Some(json!({ "title": "Open" })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["invites"]["author"].get("sign_in_required"),
        None
    );
    let facilitator = created.body["invites"]["facilitator"]["token"]
        .as_str()
        .expect("token");
    let joined = call(
        addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/join",
        Some(json!({ "invite": facilitator, "name": "Typed" })),
    )
    .await;
    assert_eq!(joined.body["review"]["you"]["name"], "Typed");
    let session = joined.body["session"].as_str().expect("session");
    let id = created.body["review"]["id"].as_str().expect("id");
    let r = call_with(
        addr,
        PROXY,
        None,
        Some(session),
        "POST",
        &format!("/api/reviews/{id}/invites/author"),
        Some(json!({ "sign_in_required": true })),
    )
    .await;
    assert_eq!(r.assert_error(409, "sign_in_not_configured"), expected);
}

/// Runs the binary with `args` until it exits (it must, within the patience): its status and
/// what it wrote on stderr.
async fn exits_with(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = tokio::process::Command::new(debrief_tests::server::binary_path());
    command
        .args(args)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let output = debrief_tests::within("the server to exit", command.output())
        .await
        .expect("run the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_provider_that_is_not_one_stops_the_server_at_start_up() {
    // Debrief itself is no OpenID provider: its discovery document is not there.
    let other = TestServer::start().await;
    let issuer = format!("http://{}", other.addr);
    let (status, stderr) = exits_with(&[
        "--oidc-issuer",
        &issuer,
        "--oidc-client-id",
        "debrief",
        "--public-url",
        "http://127.0.0.1:4000",
        "--oidc-allow-insecure-http",
    ])
    .await;
    assert_eq!(status, Some(1), "{stderr}");
    let said = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert_eq!(
        said,
        format!("error: OpenID Connect discovery at {issuer} failed: the provider answered HTTP 404 Not Found")
    );
    // Plain http to a provider elsewhere is refused, flag or not, before anything starts.
    let (status, stderr) = exits_with(&[
        "--oidc-issuer",
        "http://id.example.com",
        "--oidc-client-id",
        "debrief",
        "--public-url",
        "https://debrief.example.com",
        "--oidc-allow-insecure-http",
    ])
    .await;
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: --oidc-allow-insecure-http: http://id.example.com is not on this machine; plain http is allowed only to a loopback provider"
    );
    let (status, stderr) = exits_with(&[
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--oidc-client-id",
        "debrief",
        "--public-url",
        "https://debrief.example.com",
    ])
    .await;
    assert_eq!(status, Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: --oidc-issuer: http://127.0.0.1:9 is not https; a provider is only reached over TLS (--oidc-allow-insecure-http allows http to a loopback provider, for testing)"
    );
}

#[tokio::test]
async fn a_proxy_header_without_a_trusted_proxy_is_warned_about_at_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let server = debrief_tests::ChildServer::start_with(
        &dir.path().join("data"),
        &["--trusted-identity-header", "X-Forwarded-User"],
        Some(&log),
    )
    .await;
    let logged = std::fs::read_to_string(&log).expect("read the log");
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("--trusted-identity-header is set without --trusted-proxy"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    // And the header is ignored indeed, even from loopback.
    let r = call(server.addr, PROXY, Some(&ANA), "GET", "/api/me", None).await;
    r.assert_error(401, "not_signed_in");
    server.terminate().await;
}

#[tokio::test]
async fn without_openid_connect_the_sign_in_routes_say_so() {
    let server = TestServer::start().await;
    let offer = call(server.addr, PROXY, None, "GET", "/api/sign-in", None).await;
    assert_eq!(
        offer.body,
        json!({ "oidc": false, "proxy": false, "required_to_create": false })
    );
    for (method, path) in [
        ("GET", "/auth/login?return=/"),
        ("GET", "/auth/callback?code=x&state=y"),
        ("POST", "/auth/logout"),
    ] {
        let r = call(server.addr, PROXY, None, method, path, None).await;
        assert_eq!(
            r.assert_error(404, "oidc_not_configured"),
            "this server has no OpenID Connect sign-in set up",
            "{method} {path}"
        );
    }
    let proxied = server_trusting(&["127.0.0.1"], |_| {}).await;
    let offer = call(proxied.addr, PROXY, None, "GET", "/api/sign-in", None).await;
    assert_eq!(
        offer.body,
        json!({ "oidc": false, "proxy": true, "required_to_create": true })
    );
}

/// What a join through the proxy links to the person is on disk when the join answers: after
/// `kill -9`, the person still finds the review (and the link still needs sign-in).
#[tokio::test]
async fn a_persons_reviews_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let args = [
        "--trusted-identity-header",
        "X-Forwarded-User",
        "--trusted-name-header",
        "X-Forwarded-Preferred-Username",
        "--trusted-email-header",
        "X-Forwarded-Email",
        "--trusted-groups-header",
        "X-Forwarded-Groups",
        "--trusted-proxy",
        "127.0.0.1",
    ];
    let server = debrief_tests::ChildServer::start_with(&data, &args, None).await;
    let created = call(
        server.addr,
        PROXY,
        Some(&ANA),
        "POST",
        "/api/reviews",
        Some(json!({ "title": "Killed", "sign_in_required": ["participant"] })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["review"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let joined = call(
        server.addr,
        PROXY,
        Some(&BO),
        "POST",
        "/api/join",
        Some(json!({
            "invite": created.body["invites"]["participant"]["token"],
            "name": "typed"
        })),
    )
    .await;
    assert_eq!(joined.status, 201, "{}", joined.body);
    server.kill9().await;
    let server = debrief_tests::ChildServer::start_with(&data, &args, None).await;
    let me = call(server.addr, PROXY, Some(&BO), "GET", "/api/me", None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let reviews: Vec<(&Value, &Value, &Value)> = me.body["reviews"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|r| (&r["id"], &r["role"], &r["name"]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        reviews,
        [(&json!(id), &json!("participant"), &json!("Bo Berg"))]
    );
    let again = call(
        server.addr,
        PROXY,
        None,
        "POST",
        "/api/join",
        Some(json!({ "invite": created.body["invites"]["participant"]["token"], "name": "Dee" })),
    )
    .await;
    again.assert_error(401, "sign_in_required");
    server.terminate().await;
}
