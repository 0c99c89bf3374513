//! Who is signed in, when the server is set up for sign-in, and what being signed in allows.
//!
//! A [`Person`] comes from one of two sources: an authenticating proxy in front of the server
//! (oauth2-proxy, Pomerium, Cloudflare Access) that names the person in a request header
//! ([`TrustedHeaders`], honoured only when the connection comes from one of the
//! [`Cidr`] ranges of `--trusted-proxy`), or the server's own OpenID Connect sign-in. This file
//! knows no HTTP: the API hands it a way to read a header and the connection's address.
//!
//! A person's claims (subject, name, e-mail, groups) are what the provider says; they are kept
//! only in the people's own trees (`people.rs`), never beside anonymous items, and never logged:
//! [`Person`]'s `Debug` shows nothing of them.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::reviews::problem::{Problem, ProblemKind};

/// Longest display name kept from a provider, in characters (the review domain's name limit).
pub const MAX_NAME_CHARS: usize = 60;
/// Longest subject, e-mail address or group name taken from a provider, in bytes; a longer
/// value is not a person (a misconfigured proxy, or someone testing the bound).
pub const MAX_CLAIM_BYTES: usize = 256;
/// Most groups kept of one person; more are left out (only membership of the required group is
/// ever asked, and it is checked against the kept ones).
pub const MAX_GROUPS: usize = 64;

/// A signed-in person, as their provider describes them.
#[derive(Clone, PartialEq, Eq)]
pub struct Person {
    /// Where the identity comes from: the OpenID issuer's URL, or `trusted-header` for a proxy.
    pub issuer: String,
    /// The provider's stable id of the person (OpenID `sub`, or the proxy's user header).
    pub subject: String,
    /// Display name: the provider's name, else the e-mail address, else the subject; at most
    /// [`MAX_NAME_CHARS`] characters.
    pub name: String,
    /// E-mail address, when the provider gives one.
    pub email: Option<String>,
    /// Groups, when the provider gives them.
    pub groups: Vec<String>,
}

impl std::fmt::Debug for Person {
    // Claims never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person").finish_non_exhaustive()
    }
}

impl Person {
    /// A person from the provider's claims; `None` when the subject is empty or any claim is
    /// over [`MAX_CLAIM_BYTES`].
    pub fn new(
        issuer: &str,
        subject: &str,
        name: Option<&str>,
        email: Option<&str>,
        groups: Vec<String>,
    ) -> Option<Person> {
        let clean = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && s.len() <= MAX_CLAIM_BYTES && !s.chars().any(char::is_control))
                .then(|| s.to_owned())
        };
        let subject = clean(subject)?;
        let email = email.and_then(clean);
        let name = name
            .and_then(clean)
            .or_else(|| email.clone())
            .unwrap_or_else(|| subject.clone());
        let name: String = name.chars().take(MAX_NAME_CHARS).collect();
        let groups = groups
            .iter()
            .filter_map(|g| clean(g))
            .take(MAX_GROUPS)
            .collect();
        Some(Person {
            issuer: issuer.to_owned(),
            subject,
            name,
            email,
            groups,
        })
    }

    /// The key of the person's records: SHA-256 of the issuer and the subject, as hex. The same
    /// person signs in to the same key from any browser.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"person\0");
        h.update(self.issuer.as_bytes());
        h.update([0]);
        h.update(self.subject.as_bytes());
        hex::encode(h.finalize())
    }

    /// The domain of the e-mail address, in lower case.
    fn email_domain(&self) -> Option<String> {
        let (_, domain) = self.email.as_deref()?.rsplit_once('@')?;
        Some(domain.to_ascii_lowercase())
    }
}

/// An address range, written `ADDR/PREFIX` (or a lone address: the whole prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `::1/128`, `127.0.0.1`; the error says what is wrong. An IPv4
    /// address written as IPv6 (`::ffff:10.0.0.0/104`) is the IPv4 range it maps (`10.0.0.0/8`),
    /// so its prefix length must cover the 96 bits of the `::ffff:` part.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address range such as 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length is 0 to {max}"))?,
        };
        let (addr, prefix) = match canonical(addr) {
            IpAddr::V4(v4) if addr.is_ipv6() => {
                let prefix = prefix.checked_sub(MAPPED_PREFIX).ok_or_else(|| {
                    format!(
                        "{text:?}: an IPv4 range written as IPv6 (::ffff:…) needs a prefix \
                         length of {MAPPED_PREFIX} to 128; write it as IPv4 (10.0.0.0/8)"
                    )
                })?;
                (IpAddr::V4(v4), prefix)
            }
            same => (same, prefix),
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `addr` lies in the range (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                prefix_match(&net.octets(), &a.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                prefix_match(&net.octets(), &a.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The bits of `::ffff:` in front of an IPv4 address mapped into IPv6.
const MAPPED_PREFIX: u8 = 96;

/// Whether the first `prefix` bits of `net` and `addr` agree; a prefix longer than the shorter
/// of the two compares what they have (never past their end).
fn prefix_match(net: &[u8], addr: &[u8], prefix: u8) -> bool {
    let len = net.len().min(addr.len());
    let prefix = usize::from(prefix).min(len * 8);
    let (whole, rest) = (prefix / 8, prefix % 8);
    if net.get(..whole) != addr.get(..whole) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (net.get(whole), addr.get(whole)) {
        (Some(n), Some(a)) => n & mask == a & mask,
        _ => false,
    }
}

/// The request headers an authenticating proxy names the person in (lower-case names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedHeaders {
    /// The person's stable id (oauth2-proxy: `x-forwarded-user`).
    pub identity: String,
    /// Display name (oauth2-proxy: `x-forwarded-preferred-username`), if configured.
    pub name: Option<String>,
    /// E-mail address (oauth2-proxy: `x-forwarded-email`), if configured.
    pub email: Option<String>,
    /// Groups, comma-separated (oauth2-proxy: `x-forwarded-groups`), if configured.
    pub groups: Option<String>,
}

/// One request header as a request carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header<'a> {
    /// Not sent, or not text.
    Absent,
    /// Sent once, with this value.
    Once(&'a str),
    /// Sent more than once.
    Repeated,
}

/// A configured identity header (its lower-case name) that a request sends more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedHeader(pub String);

/// The issuer recorded for people named by a proxy's header.
pub const TRUSTED_HEADER_ISSUER: &str = "trusted-header";

/// How the server knows who is signed in, and whom that lets create reviews.
#[derive(Debug, Clone, Default)]
pub struct SignIn {
    /// The headers of an authenticating proxy, if one is set up.
    pub trusted: Option<TrustedHeaders>,
    /// The addresses the proxy's headers (identity, and `X-Forwarded-For` for the client's
    /// address) are honoured from; from any other they are ignored.
    pub proxies: Vec<Cidr>,
    /// When not empty: creating a review needs an e-mail address in one of these domains
    /// (lower case).
    pub allowed_email_domains: Vec<String>,
    /// When set: creating a review needs membership of this group.
    pub required_group: Option<String>,
    /// Whether the server's own OpenID Connect sign-in is set up.
    pub oidc: bool,
}

impl SignIn {
    /// Whether any way of signing in is configured: then creating a review needs a person, and
    /// invite links may require sign-in.
    pub fn enabled(&self) -> bool {
        self.trusted.is_some() || self.oidc
    }

    /// Whether `peer` is in one of the `--trusted-proxy` ranges.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.proxies.iter().any(|range| range.contains(peer))
    }

    /// The address of the client a request comes from, for the per-address limits: the
    /// connection's `peer`, except when that is a trusted proxy; then the right-most address of
    /// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
    /// was reached from, so what lies to the left of the first untrusted one may be made up).
    /// `forwarded` gives the header's values in the order they were sent (a proxy may send one
    /// line with commas or several lines). An entry that is not a bare address (`unknown`, a
    /// port, an empty one, text that is not UTF-8 as `None`) ends the walk, and so does a header
    /// of trusted addresses only: then the peer is the client.
    pub fn client_addr<'a, I>(&self, peer: IpAddr, forwarded: I) -> IpAddr
    where
        I: IntoIterator<Item = Option<&'a str>>,
        I::IntoIter: DoubleEndedIterator,
    {
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        for value in forwarded.into_iter().rev() {
            let Some(value) = value else {
                return peer;
            };
            for entry in value.rsplit(',') {
                let Ok(addr) = entry.trim().parse::<IpAddr>() else {
                    return peer;
                };
                if !self.is_trusted_proxy(addr) {
                    return canonical(addr);
                }
            }
        }
        peer
    }

    /// The person a proxy names in the request's headers, when the connection comes from a
    /// trusted proxy (`peer`); `header` reads one header by its lower-case name. A request on
    /// which any configured header comes more than once names nobody ([`RepeatedHeader`]): a
    /// proxy that appends to what the browser sent, instead of replacing it, would otherwise
    /// let the browser's value through.
    pub fn from_proxy<'a>(
        &self,
        peer: IpAddr,
        header: impl Fn(&str) -> Header<'a>,
    ) -> Result<Option<Person>, RepeatedHeader> {
        let Some(trusted) = self.trusted.as_ref() else {
            return Ok(None);
        };
        if !self.is_trusted_proxy(peer) {
            return Ok(None);
        }
        let configured = std::iter::once(&trusted.identity)
            .chain(&trusted.name)
            .chain(&trusted.email)
            .chain(&trusted.groups);
        for name in configured {
            if header(name) == Header::Repeated {
                return Err(RepeatedHeader(name.clone()));
            }
        }
        let read = |name: &str| match header(name) {
            Header::Once(value) => Some(value),
            Header::Absent | Header::Repeated => None,
        };
        let Some(subject) = read(&trusted.identity) else {
            return Ok(None);
        };
        let optional = |name: &Option<String>| name.as_deref().and_then(&read);
        let groups = optional(&trusted.groups)
            .map(|g| g.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Person::new(
            TRUSTED_HEADER_ISSUER,
            subject,
            optional(&trusted.name),
            optional(&trusted.email),
            groups,
        ))
    }

    /// Whether `person` may create a review: anyone when sign-in is not configured; otherwise a
    /// signed-in person, in an allowed e-mail domain and the required group when those are set.
    pub fn may_create(&self, person: Option<&Person>) -> Result<(), Problem> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(person) = person else {
            return Err(sign_in_required(
                "creating a review on this server needs you to sign in",
            ));
        };
        if !self.allowed_email_domains.is_empty() {
            let allowed = person
                .email_domain()
                .is_some_and(|d| self.allowed_email_domains.contains(&d));
            if !allowed {
                return Err(Problem::new(
                    ProblemKind::Forbidden,
                    "email_domain_not_allowed",
                    "creating a review on this server needs an e-mail address in one of its \
                     allowed domains",
                ));
            }
        }
        if let Some(group) = &self.required_group {
            if !person.groups.contains(group) {
                return Err(Problem::new(
                    ProblemKind::Forbidden,
                    "group_required",
                    format!(
                        "creating a review on this server needs membership of the group {group:?}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// 401 `sign_in_required`, with why.
pub fn sign_in_required(message: &str) -> Problem {
    Problem::new(ProblemKind::Unauthenticated, "sign_in_required", message)
}

/// 409 `sign_in_not_configured`: an invite link cannot require a sign-in the server does not
/// offer.
pub fn sign_in_not_configured() -> Problem {
    Problem::new(
        ProblemKind::Conflict,
        "sign_in_not_configured",
        "this server has no sign-in set up (--oidc-issuer or --trusted-identity-header), so no \
         invite link can require it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_their_prefix_covers() {
        let net = Cidr::parse("10.1.0.0/16").expect("range");
        assert!(net.contains("10.1.200.3".parse().expect("addr")));
        assert!(!net.contains("10.2.0.1".parse().expect("addr")));
        let odd = Cidr::parse("192.168.4.0/22").expect("range");
        assert!(odd.contains("192.168.7.255".parse().expect("addr")));
        assert!(!odd.contains("192.168.8.0".parse().expect("addr")));
        let one = Cidr::parse("127.0.0.1").expect("address");
        assert!(one.contains("127.0.0.1".parse().expect("addr")));
        assert!(one.contains("::ffff:127.0.0.1".parse().expect("mapped")));
        assert!(!one.contains("127.0.0.2".parse().expect("addr")));
        let v6 = Cidr::parse("fd00::/8").expect("range");
        assert!(v6.contains("fd12::1".parse().expect("addr")));
        assert!(!v6.contains("10.0.0.1".parse().expect("addr")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains("8.8.8.8".parse().expect("addr")));
        assert_eq!(
            Cidr::parse("10.0.0.0/33").expect_err("too long"),
            "\"10.0.0.0/33\": the prefix length is 0 to 32"
        );
        assert_eq!(
            Cidr::parse("example.com").expect_err("no address"),
            "\"example.com\" is not an address range such as 10.0.0.0/8"
        );
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn an_ipv4_range_written_as_ipv6_is_that_ipv4_range() {
        let range = Cidr::parse("::ffff:10.0.0.0/104").expect("mapped range");
        assert_eq!(range, Cidr::parse("10.0.0.0/8").expect("range"));
        assert!(range.contains(ip("10.200.3.4")));
        assert!(range.contains(ip("::ffff:10.200.3.4")));
        assert!(!range.contains(ip("11.0.0.1")));
        let one = Cidr::parse("::ffff:127.0.0.1").expect("mapped address");
        assert_eq!(one, Cidr::parse("127.0.0.1/32").expect("address"));
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        assert!(Cidr::parse("::ffff:0.0.0.0/96")
            .expect("all of IPv4")
            .contains(ip("8.8.8.8")));
        // A peer that comes as IPv4 mapped into IPv6 (a dual-stack listener) is its IPv4
        // address for an IPv4 range.
        let net = Cidr::parse("192.168.4.0/22").expect("range");
        assert!(net.contains(ip("::ffff:192.168.7.1")));
        assert!(!net.contains(ip("::ffff:192.168.8.1")));
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.0/80").expect_err("shorter than the mapping"),
            "\"::ffff:10.0.0.0/80\": an IPv4 range written as IPv6 (::ffff:…) needs a prefix \
             length of 96 to 128; write it as IPv4 (10.0.0.0/8)"
        );
    }

    #[test]
    fn a_prefix_longer_than_the_address_compares_the_whole_address() {
        assert!(prefix_match(&[10, 0, 0, 1], &[10, 0, 0, 1], 104));
        assert!(!prefix_match(&[10, 0, 0, 1], &[10, 0, 0, 2], 104));
        assert!(prefix_match(&[10, 0, 0, 1], &[10, 0, 0, 1, 7], 36));
        assert!(!prefix_match(&[10, 0, 0, 1], &[10, 0, 0, 2, 7], 255));
        assert!(prefix_match(&[], &[1], 8));
    }

    fn behind(proxies: &[&str]) -> SignIn {
        SignIn {
            proxies: proxies
                .iter()
                .map(|p| Cidr::parse(p).expect("range"))
                .collect(),
            ..SignIn::default()
        }
    }

    #[test]
    fn the_client_is_the_right_most_forwarded_address_that_is_not_a_proxy() {
        let sign_in = behind(&["10.0.0.0/8", "::1"]);
        let proxy = ip("10.0.0.5");
        let client = |values: &[Option<&str>]| sign_in.client_addr(proxy, values.iter().copied());
        assert_eq!(client(&[Some("203.0.113.9")]), ip("203.0.113.9"));
        // What a client sent itself lies to the left of what the proxies appended.
        assert_eq!(
            client(&[Some("6.6.6.6, 203.0.113.9, 10.0.0.7")]),
            ip("203.0.113.9")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            client(&[Some("6.6.6.6"), Some("203.0.113.9 , 10.1.1.1"), Some("::1")]),
            ip("203.0.113.9")
        );
        assert_eq!(client(&[Some("::ffff:198.51.100.2")]), ip("198.51.100.2"));
        assert_eq!(client(&[Some("2001:db8::7")]), ip("2001:db8::7"));
        // No header, only proxies, or an entry that is not a bare address: the proxy.
        assert_eq!(client(&[]), proxy);
        assert_eq!(client(&[Some("10.9.9.9, 10.0.0.7")]), proxy);
        for odd in ["unknown", "203.0.113.9:443", "", "203.0.113.9,", "_hidden"] {
            assert_eq!(client(&[Some(odd)]), proxy, "{odd:?}");
        }
        assert_eq!(
            client(&[Some("203.0.113.9"), Some("junk, 10.0.0.7")]),
            proxy
        );
        assert_eq!(client(&[Some("203.0.113.9"), None]), proxy);
        // From anywhere but a proxy the header is the client's own word: ignored.
        let elsewhere = ip("192.0.2.1");
        assert_eq!(
            sign_in.client_addr(elsewhere, [Some("203.0.113.9")]),
            elsewhere
        );
        assert_eq!(
            SignIn::default().client_addr(proxy, [Some("203.0.113.9")]),
            proxy
        );
    }

    #[test]
    fn a_repeated_identity_header_names_nobody() {
        let sign_in = SignIn {
            trusted: Some(TrustedHeaders {
                identity: "x-user".into(),
                name: None,
                email: Some("x-email".into()),
                groups: None,
            }),
            ..behind(&["127.0.0.1"])
        };
        let proxy = ip("127.0.0.1");
        let once = |name: &str| match name {
            "x-user" => Header::Once("u1"),
            "x-email" => Header::Once("ana@example.com"),
            _ => Header::Absent,
        };
        let person = sign_in.from_proxy(proxy, once).expect("one of each");
        assert_eq!(
            person.and_then(|p| p.email).as_deref(),
            Some("ana@example.com")
        );
        let repeated = |which: &'static str| {
            move |name: &str| {
                if name == which {
                    Header::Repeated
                } else {
                    once(name)
                }
            }
        };
        for which in ["x-user", "x-email"] {
            assert_eq!(
                sign_in.from_proxy(proxy, repeated(which)),
                Err(RepeatedHeader(which.to_owned()))
            );
        }
        // A header that is not configured may come twice; from elsewhere nothing is read.
        assert!(matches!(
            sign_in.from_proxy(proxy, repeated("x-groups")),
            Ok(Some(_))
        ));
        assert_eq!(
            sign_in.from_proxy(ip("127.0.0.2"), repeated("x-user")),
            Ok(None)
        );
    }

    #[test]
    fn a_persons_name_falls_back_to_the_email_then_the_subject() {
        let p = Person::new("i", "u1", None, Some("ana@example.com"), vec![]).expect("person");
        assert_eq!(p.name, "ana@example.com");
        let p = Person::new("i", "u1", Some("  "), None, vec![]).expect("person");
        assert_eq!(p.name, "u1");
        let long = "x".repeat(100);
        let p = Person::new("i", "u1", Some(&long), None, vec![]).expect("person");
        assert_eq!(p.name.chars().count(), MAX_NAME_CHARS);
        assert!(Person::new("i", " ", Some("Ana"), None, vec![]).is_none());
        assert!(Person::new("i", &"s".repeat(MAX_CLAIM_BYTES + 1), None, None, vec![]).is_none());
        assert_eq!(format!("{p:?}"), "Person { .. }");
        let other_issuer = Person::new("j", "u1", None, None, vec![]).expect("person");
        assert_ne!(p.key(), other_issuer.key());
    }
}
