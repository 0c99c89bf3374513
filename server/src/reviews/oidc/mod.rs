//! OpenID Connect sign-in: the provider found by discovery at start-up, the authorization code
//! flow with PKCE, and the browser sessions it opens.
//!
//! - **Logins under way** are kept in memory, keyed by their `state`, each with its nonce, its
//!   PKCE verifier, the local path to return to, and the hash of a random value set as a
//!   short-lived cookie in the browser that began it (so that a callback from another browser,
//!   a login someone else started, is refused). Bounded in number and in age.
//! - **Browser sessions** are kept in memory too, keyed by the SHA-256 of the cookie's random
//!   value: the person, a CSRF token, and the times that expire them (idle and absolute). A new
//!   session id is made at every sign-in (the one the browser had is ended), and signing out
//!   ends it on the server. A restart signs everyone out. Bounded in number.
//!
//! Nothing here is logged but failures without values: no token, code, cookie or claim.

pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use sha2::{Digest, Sha256};

use crate::reviews::basics::{locked, now_ms, random_hex};
use crate::reviews::identity::Person;
use crate::reviews::problem::{Problem, ProblemKind};
use crate::reviews::urls::WebUrl;

/// Name of the browser session's cookie.
pub const SESSION_COOKIE: &str = "debrief_session";
/// Name of the cookie that ties a login under way to the browser that began it.
pub const LOGIN_COOKIE: &str = "debrief_login";
/// The header that carries a browser session's CSRF token on every state-changing request.
pub const CSRF_HEADER: &str = "x-debrief-csrf";
/// How long a login may take at the provider.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Most logins under way at once: a flood of `/auth/login` cannot grow memory without bound
/// (the oldest is forgotten).
pub const MAX_PENDING_LOGINS: usize = 10_000;
/// Most browser sessions at once (the one unused longest is ended first).
pub const MAX_BROWSER_SESSIONS: usize = 100_000;
/// Browser sessions one person may have open at once (phones, laptops, browsers).
pub const MAX_SESSIONS_PER_PERSON: usize = 20;
/// The least time between two readings of the provider's keys after a refused ID token.
pub const KEYS_READ_AGAIN_AFTER: Duration = Duration::from_secs(60);
/// Idle expiry of a browser session by default: a working day.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Absolute expiry of a browser session by default: a week, whatever its use.
pub const DEFAULT_ABSOLUTE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest local path a login returns to.
const MAX_RETURN_PATH: usize = 512;

/// How the server signs people in with OpenID Connect.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer's URL (discovery reads `/.well-known/openid-configuration` under it).
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret, if the client has one (a confidential client).
    pub client_secret: Option<String>,
    /// The server's public URL, as browsers reach it: the redirect URL registered at the
    /// provider is this with `/auth/callback`; `https` makes the cookies `Secure`.
    pub public_url: String,
    /// Allows an `http` issuer on a loopback host, for tests.
    pub allow_insecure_http: bool,
    /// Idle expiry of a browser session.
    pub idle: Duration,
    /// Absolute expiry of a browser session.
    pub absolute: Duration,
}

impl std::fmt::Debug for OidcSettings {
    // The client secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl OidcSettings {
    /// Checks the URLs: the error says what is wrong. An `http` issuer is refused unless it is
    /// on this machine and `allow_insecure_http` is set.
    pub fn check(&self) -> Result<(), String> {
        let issuer = WebUrl::parse(&self.issuer)
            .ok_or_else(|| format!("--oidc-issuer: {:?} is not a web address", self.issuer))?;
        if !issuer.tls {
            if !self.allow_insecure_http {
                return Err(format!(
                    "--oidc-issuer: {} is not https; a provider is only reached over TLS \
                     (--oidc-allow-insecure-http allows http to a loopback provider, for testing)",
                    self.issuer
                ));
            }
            if !http::loopback(&issuer.host) {
                return Err(format!(
                    "--oidc-allow-insecure-http: {} is not on this machine; plain http is allowed \
                     only to a loopback provider",
                    self.issuer
                ));
            }
        }
        let public = WebUrl::parse(&self.public_url)
            .ok_or_else(|| format!("--public-url: {:?} is not a web address", self.public_url))?;
        if public.path != "/" {
            return Err(format!(
                "--public-url: {:?} must be the server's root (no path)",
                self.public_url
            ));
        }
        if !public.tls && !http::loopback(&public.host) {
            tracing::warn!(
                public_url = %self.public_url,
                "--public-url is plain http on a host other than this machine: the sign-in \
                 cookie then travels unencrypted and without Secure; serve Debrief over https"
            );
        }
        Ok(())
    }

    fn redirect_url(&self) -> String {
        format!("{}/auth/callback", self.public_url.trim_end_matches('/'))
    }

    fn secure_cookies(&self) -> bool {
        self.public_url.to_ascii_lowercase().starts_with("https://")
    }
}

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Pending {
    nonce: Nonce,
    verifier: PkceCodeVerifier,
    return_to: String,
    browser: [u8; 32],
    started: u64,
}

struct BrowserSession {
    person: Person,
    csrf: String,
    created: u64,
    last_seen: u64,
}

/// The provider and the sign-in state.
pub struct Oidc {
    settings: OidcSettings,
    /// The client made from the provider's discovery document and keys; replaced when the keys
    /// are read again ([`Oidc::read_keys_again`]).
    client: Mutex<Arc<Client>>,
    /// When the provider's configuration and keys were last read (ms since the epoch).
    read_at: Mutex<u64>,
    http: http::Client,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<BrowserSessions>,
}

/// The open browser sessions, with their expiry; times are passed in (ms since the epoch).
struct BrowserSessions {
    open: HashMap<[u8; 32], BrowserSession>,
    idle: u64,
    absolute: u64,
    max: usize,
}

impl BrowserSessions {
    fn new(idle: Duration, absolute: Duration, max: usize) -> Self {
        BrowserSessions {
            open: HashMap::new(),
            idle: idle.as_millis() as u64,
            absolute: absolute.as_millis() as u64,
            max,
        }
    }

    fn live(&self, s: &BrowserSession, now: u64) -> bool {
        now.saturating_sub(s.last_seen) < self.idle && now.saturating_sub(s.created) < self.absolute
    }

    /// Opens a session for `person` under a new id, ending `previous`; returns the id.
    fn open(&mut self, person: Person, previous: Option<&str>, now: u64) -> String {
        if let Some(previous) = previous {
            self.open.remove(&digest(previous));
        }
        let idle = self.idle;
        let absolute = self.absolute;
        self.open.retain(|_, s| {
            now.saturating_sub(s.last_seen) < idle && now.saturating_sub(s.created) < absolute
        });
        // One person (who may sign in without end through the provider) cannot push out
        // everyone else's sessions: past their own bound, their own idlest one ends.
        let theirs = |s: &BrowserSession| {
            s.person.issuer == person.issuer && s.person.subject == person.subject
        };
        if self.open.values().filter(|s| theirs(s)).count() >= MAX_SESSIONS_PER_PERSON {
            self.end_idlest(theirs);
        }
        if self.open.len() >= self.max {
            self.end_idlest(|_| true);
        }
        let cookie = random_hex(32);
        self.open.insert(
            digest(&cookie),
            BrowserSession {
                person,
                csrf: random_hex(32),
                created: now,
                last_seen: now,
            },
        );
        cookie
    }

    /// The person and CSRF token of `cookie`'s session, if it is open and not expired; using it
    /// renews its idle time.
    fn get(&mut self, cookie: &str, now: u64) -> Option<(Person, String)> {
        let key = digest(cookie);
        let live = self.live(self.open.get(&key)?, now);
        if !live {
            self.open.remove(&key);
            return None;
        }
        let session = self.open.get_mut(&key)?;
        session.last_seen = now;
        Some((session.person.clone(), session.csrf.clone()))
    }

    fn end(&mut self, cookie: &str) {
        self.open.remove(&digest(cookie));
    }

    /// Ends the least recently used session of those `which` picks.
    fn end_idlest(&mut self, which: impl Fn(&BrowserSession) -> bool) {
        let idlest = self
            .open
            .iter()
            .filter(|(_, s)| which(s))
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| *k);
        if let Some(idlest) = idlest {
            self.open.remove(&idlest);
        }
    }
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A login begun: where to send the browser, and the cookie that ties the login to it.
pub struct Begun {
    /// The provider's authorization URL.
    pub redirect: String,
    /// The value of [`LOGIN_COOKIE`].
    pub browser: String,
}

impl std::fmt::Debug for Begun {
    // The URL carries the state; the cookie is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Begun").finish_non_exhaustive()
    }
}

/// A browser session opened at sign-in.
pub struct Opened {
    /// The value of [`SESSION_COOKIE`].
    pub cookie: String,
    /// The local path to return to.
    pub return_to: String,
}

impl std::fmt::Debug for Opened {
    // The cookie is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

impl Oidc {
    /// Reads the provider's configuration and keys (discovery). A provider that cannot be
    /// reached is tried again for up to `patience` (it may be starting beside the server); one
    /// that answers with a broken configuration is not. The error says what failed.
    pub async fn discover(settings: OidcSettings, patience: Duration) -> Result<Oidc, String> {
        settings.check()?;
        let http = http::Client {
            insecure_loopback: settings.allow_insecure_http,
        };
        let issuer =
            IssuerUrl::new(settings.issuer.clone()).map_err(|e| format!("--oidc-issuer: {e}"))?;
        let deadline = tokio::time::Instant::now() + patience;
        let mut wait = Duration::from_millis(250);
        let metadata = loop {
            let call = |request| http.call(request);
            match CoreProviderMetadata::discover_async(issuer.clone(), &call).await {
                Ok(m) => break m,
                Err(openidconnect::DiscoveryError::Request(e))
                    if tokio::time::Instant::now() + wait < deadline =>
                {
                    tracing::warn!(error = %e, "the OpenID provider cannot be reached yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(format!(
                        "OpenID Connect discovery at {} failed: {}",
                        settings.issuer,
                        describe(&e)
                    ))
                }
            }
        };
        let client = client_of(&settings, metadata)?;
        Ok(Oidc {
            sessions: Mutex::new(BrowserSessions::new(
                settings.idle,
                settings.absolute,
                MAX_BROWSER_SESSIONS,
            )),
            settings,
            client: Mutex::new(Arc::new(client)),
            // The first refused token may read them at once.
            read_at: Mutex::new(0),
            http,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The client as it stands.
    fn client(&self) -> Arc<Client> {
        locked(&self.client).clone()
    }

    /// Reads the provider's configuration and keys again, at most once a minute, after an ID
    /// token did not pass its checks: providers rotate their signing keys, and a token signed
    /// with a new key must not fail until the server restarts. The new client, if read.
    async fn read_keys_again(&self) -> Option<Arc<Client>> {
        {
            let mut read_at = locked(&self.read_at);
            let now = now_ms();
            if now.saturating_sub(*read_at) < KEYS_READ_AGAIN_AFTER.as_millis() as u64 {
                return None;
            }
            *read_at = now;
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).ok()?;
        let call = |request| self.http.call(request);
        let metadata = match CoreProviderMetadata::discover_async(issuer, &call).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %describe(&e), "the OpenID provider's keys could not be read again");
                return None;
            }
        };
        let client = Arc::new(client_of(&self.settings, metadata).ok()?);
        *locked(&self.client) = client.clone();
        tracing::info!("the OpenID provider's configuration and keys were read again");
        Some(client)
    }

    /// The issuer's URL, as people signed in through it are recorded.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Begins a login that returns to `return_to` (a local path; anything else returns home).
    pub fn begin(&self, return_to: Option<&str>) -> Begun {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client()
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".to_owned()))
            .add_scope(Scope::new("email".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        let browser = random_hex(32);
        let now = now_ms();
        let mut pending = locked(&self.pending);
        let timeout = LOGIN_TIMEOUT.as_millis() as u64;
        pending.retain(|_, p| now.saturating_sub(p.started) < timeout);
        if pending.len() >= MAX_PENDING_LOGINS {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                nonce,
                verifier,
                return_to: local_path(return_to),
                browser: digest(&browser),
                started: now,
            },
        );
        Begun {
            redirect: url.to_string(),
            browser,
        }
    }

    /// Completes a login: the provider's `state` and `code`, from the browser whose login
    /// cookie is `browser`. Exchanges the code (with the PKCE verifier), checks the ID token
    /// (signature, issuer, audience, expiry, nonce), and opens a browser session for the person,
    /// ending `previous` (the session cookie the browser had, if any).
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
        browser: Option<&str>,
        previous: Option<&str>,
    ) -> Result<Opened, Problem> {
        let pending = locked(&self.pending).remove(state);
        let Some(pending) = pending else {
            return Err(login_failed(
                "this sign-in is unknown or took longer than ten minutes; sign in again",
            ));
        };
        if now_ms().saturating_sub(pending.started) >= LOGIN_TIMEOUT.as_millis() as u64 {
            return Err(login_failed(
                "this sign-in is unknown or took longer than ten minutes; sign in again",
            ));
        }
        if browser.map(digest) != Some(pending.browser) {
            return Err(login_failed(
                "this sign-in was begun in another browser; sign in again from this one",
            ));
        }
        let call = |request| self.http.call(request);
        let client = self.client();
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| login_failed("the provider has no token endpoint"))?
            .set_pkce_verifier(pending.verifier);
        let tokens = exchange.request_async(&call).await.map_err(|e| {
            tracing::warn!(error = %token_error(&e), "an OpenID sign-in's code exchange failed");
            login_failed("the provider did not accept this sign-in; sign in again")
        })?;
        let _ = tokens.access_token();
        let Some(id_token) = tokens.id_token() else {
            return Err(login_failed("the provider sent no ID token"));
        };
        let refused = |e: openidconnect::ClaimsVerificationError| {
            // Only the kind of failure: the message may quote the token's claims.
            let kind = format!("{e:?}");
            let kind = kind.split('(').next().unwrap_or("").to_owned();
            tracing::warn!(error = kind, "an OpenID sign-in's ID token was refused");
            login_failed("the provider's ID token did not pass its checks; sign in again")
        };
        let checked = id_token
            .claims(&client.id_token_verifier(), &pending.nonce)
            .cloned();
        let claims = match checked {
            Ok(claims) => claims,
            // Perhaps signed with a key the provider has rotated in since the keys were read.
            Err(e) => match self.read_keys_again().await {
                Some(fresh) => id_token
                    .claims(&fresh.id_token_verifier(), &pending.nonce)
                    .cloned()
                    .map_err(refused)?,
                None => return Err(refused(e)),
            },
        };
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()));
        let email = claims
            .email()
            .filter(|_| claims.email_verified() != Some(false))
            .map(|e| e.as_str().to_owned());
        let groups = groups_of(&id_token.to_string());
        let person = Person::new(
            &self.settings.issuer,
            claims.subject().as_str(),
            name.as_deref(),
            email.as_deref(),
            groups,
        )
        .ok_or_else(|| login_failed("the provider's ID token names nobody usable"))?;
        let cookie = self.open(person, previous);
        Ok(Opened {
            cookie,
            return_to: pending.return_to,
        })
    }

    /// Opens a browser session for `person` with a new id, ending `previous`.
    fn open(&self, person: Person, previous: Option<&str>) -> String {
        locked(&self.sessions).open(person, previous, now_ms())
    }

    /// The person and CSRF token of the browser session `cookie`, if it is open and not
    /// expired; using it renews its idle time.
    pub fn session(&self, cookie: &str) -> Option<(Person, String)> {
        locked(&self.sessions).get(cookie, now_ms())
    }

    /// Ends the browser session `cookie` on the server.
    pub fn end(&self, cookie: &str) {
        locked(&self.sessions).end(cookie);
    }

    /// The `Set-Cookie` value that stores `value` under `name` for `max_age`.
    pub fn set_cookie(&self, name: &str, value: &str, max_age: Duration, path: &str) -> String {
        let secure = if self.settings.secure_cookies() {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            max_age.as_secs()
        )
    }

    /// The `Set-Cookie` value of the browser session cookie.
    pub fn session_cookie(&self, value: &str) -> String {
        self.set_cookie(
            self.session_cookie_name(),
            value,
            self.settings.absolute,
            "/",
        )
    }

    /// The name of the browser session cookie: over https `__Host-` before [`SESSION_COOKIE`],
    /// which browsers accept only from this host, `Secure`, for `/`, so that a neighbouring
    /// subdomain cannot set one for it (and sign the browser in as someone else).
    pub fn session_cookie_name(&self) -> &'static str {
        if self.settings.secure_cookies() {
            "__Host-debrief_session"
        } else {
            SESSION_COOKIE
        }
    }

    /// The name of the login cookie: over https `__Secure-` before [`LOGIN_COOKIE`] (it is for
    /// `/auth` only, which `__Host-` does not allow).
    pub fn login_cookie_name(&self) -> &'static str {
        if self.settings.secure_cookies() {
            "__Secure-debrief_login"
        } else {
            LOGIN_COOKIE
        }
    }

    /// The `Set-Cookie` value that removes cookie `name`.
    pub fn clear_cookie(&self, name: &str, path: &str) -> String {
        self.set_cookie(name, "", Duration::ZERO, path)
    }
}

/// The client for `metadata` (the provider's discovery document and keys).
fn client_of(settings: &OidcSettings, metadata: CoreProviderMetadata) -> Result<Client, String> {
    let redirect =
        RedirectUrl::new(settings.redirect_url()).map_err(|e| format!("--public-url: {e}"))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(settings.client_id.clone()),
        settings.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

/// `return_to` when it is a path on this server; `/` for anything else (another host, a
/// scheme, `//host`, backslashes, control or non-ASCII characters, `.` or `..` segments, too
/// long).
pub fn local_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= MAX_RETURN_PATH
                && p.bytes().all(|b| b.is_ascii_graphic())
                && !p
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("")
                    .split('/')
                    .any(|segment| segment == "." || segment == "..") =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The `groups` claim of a verified ID token (a JSON array of strings), read from its payload.
fn groups_of(jwt: &str) -> Vec<String> {
    let Some(payload) = jwt.split('.').nth(1) else {
        return Vec::new();
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    value["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// 400 `sign_in_failed`, with why.
fn login_failed(message: &str) -> Problem {
    Problem::new(ProblemKind::BadInput, "sign_in_failed", message)
}

fn describe<E: std::error::Error>(e: &openidconnect::DiscoveryError<E>) -> String {
    use openidconnect::DiscoveryError as D;
    match e {
        D::Request(e) => format!("the provider cannot be reached: {e}"),
        D::Response(status, _, _) => format!("the provider answered HTTP {status}"),
        D::Parse(e) => format!("its configuration is not valid: {e}"),
        D::Validation(e) => format!("its configuration does not match: {e}"),
        D::UrlParse(e) => format!("the URL is not valid: {e}"),
        D::Other(e) => e.clone(),
        _ => "unknown error".to_owned(),
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    use openidconnect::RequestTokenError as R;
    match e {
        // The error code only: a description may quote what was sent.
        R::ServerResponse(r) => format!("the provider refused: {:?}", r.error()),
        R::Request(e) => format!("the provider cannot be reached: {e}"),
        R::Parse(_, _) => "the provider's answer is not valid".to_owned(),
        R::Other(e) => e.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_returns_only_to_a_path_of_this_server() {
        assert_eq!(local_path(Some("/review/abc?x=1#y")), "/review/abc?x=1#y");
        for outside in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "/a b",
            "/\u{7}",
            "",
        ] {
            assert_eq!(local_path(Some(outside)), "/", "{outside:?}");
        }
        assert_eq!(local_path(None), "/");
        for outside in ["/..//evil.example", "/a/../b", "/./x", "/café"] {
            assert_eq!(local_path(Some(outside)), "/", "{outside:?}");
        }
        assert_eq!(local_path(Some("/join?x=..")), "/join?x=..");
        assert_eq!(local_path(Some(&format!("/{}", "a".repeat(600)))), "/");
    }

    #[test]
    fn an_http_issuer_needs_the_flag_and_a_loopback_host() {
        let settings = |issuer: &str, allow: bool| OidcSettings {
            issuer: issuer.to_owned(),
            client_id: "c".into(),
            client_secret: None,
            public_url: "https://debrief.example".into(),
            allow_insecure_http: allow,
            idle: DEFAULT_IDLE,
            absolute: DEFAULT_ABSOLUTE,
        };
        assert!(settings("https://id.example", false).check().is_ok());
        assert_eq!(
            settings("http://id.example", false)
                .check()
                .expect_err("http"),
            "--oidc-issuer: http://id.example is not https; a provider is only reached over TLS \
             (--oidc-allow-insecure-http allows http to a loopback provider, for testing)"
        );
        assert_eq!(
            settings("http://id.example", true)
                .check()
                .expect_err("not loopback"),
            "--oidc-allow-insecure-http: http://id.example is not on this machine; plain http is \
             allowed only to a loopback provider"
        );
        assert!(settings("http://127.0.0.1:9000", true).check().is_ok());
        assert!(settings("http://localhost:9000/oidc", true).check().is_ok());
        let mut with_path = settings("https://id.example", false);
        with_path.public_url = "https://debrief.example/app".into();
        assert!(with_path.check().is_err());
    }

    #[test]
    fn browser_sessions_expire_idle_and_absolute_and_a_sign_in_ends_the_previous_one() {
        let hour = 3_600_000;
        let person =
            || Person::new("https://id.example", "u1", Some("Ana"), None, vec![]).expect("person");
        let mut sessions = BrowserSessions::new(
            Duration::from_secs(2 * 3600),
            Duration::from_secs(5 * 3600),
            3,
        );
        let a = sessions.open(person(), None, 0);
        let (who, csrf) = sessions.get(&a, hour).expect("open");
        assert_eq!(who.name, "Ana");
        assert_eq!(csrf.len(), 64);
        // Used every 1.5 hours it stays open, until five hours after sign-in whatever its use.
        assert!(sessions.get(&a, 2 * hour + hour / 2).is_some());
        assert!(sessions.get(&a, 4 * hour).is_some());
        assert!(sessions.get(&a, 5 * hour).is_none(), "absolute expiry");
        // Two idle hours end it.
        let b = sessions.open(person(), None, 10 * hour);
        assert!(sessions.get(&b, 12 * hour).is_none(), "idle expiry");
        // Signing in again makes a new id and ends the one the browser had.
        let c = sessions.open(person(), None, 20 * hour);
        let d = sessions.open(person(), Some(&c), 20 * hour);
        assert_ne!(c, d);
        assert!(sessions.get(&c, 20 * hour).is_none());
        assert!(sessions.get(&d, 20 * hour).is_some());
        sessions.end(&d);
        assert!(sessions.get(&d, 20 * hour).is_none(), "signed out");
        // Bounded: the one unused longest goes first.
        let e = sessions.open(person(), None, 30 * hour);
        let f = sessions.open(person(), None, 30 * hour + 1);
        let g = sessions.open(person(), None, 30 * hour + 2);
        let h = sessions.open(person(), None, 30 * hour + 3);
        assert!(sessions.get(&e, 30 * hour + 4).is_none());
        for x in [&f, &g, &h] {
            assert!(sessions.get(x, 30 * hour + 4).is_some());
        }
    }

    /// One person signing in again and again ends their own idlest session, not others'.
    #[test]
    fn one_person_cannot_push_out_everyone_elses_sessions() {
        let who =
            |sub: &str| Person::new("https://id.example", sub, None, None, vec![]).expect("person");
        let mut sessions =
            BrowserSessions::new(Duration::from_secs(3600), Duration::from_secs(3600), 1000);
        let other = sessions.open(who("bo"), None, 0);
        let first = sessions.open(who("eve"), None, 1);
        let mut theirs = vec![first.clone()];
        for t in 2..(MAX_SESSIONS_PER_PERSON as u64 + 5) {
            theirs.push(sessions.open(who("eve"), None, t));
        }
        assert!(
            sessions.get(&other, 100).is_some(),
            "another person's session stays"
        );
        assert!(sessions.get(&first, 100).is_none(), "their idlest ended");
        let open = theirs
            .iter()
            .filter(|c| sessions.get(c, 100).is_some())
            .count();
        assert_eq!(open, MAX_SESSIONS_PER_PERSON);
    }

    #[test]
    fn groups_come_from_the_id_tokens_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1","groups":["sre","ops",3]}"#);
        assert_eq!(groups_of(&format!("h.{payload}.s")), ["sre", "ops"]);
        assert!(groups_of("not a token").is_empty());
    }
}
