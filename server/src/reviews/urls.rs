//! Web addresses people give Debrief: an action item's tracker link and a webhook's target. One
//! reading of an `http`/`https` URL serves both, and the address ranges a webhook may not reach
//! unless the operator allows it (see the README's "Webhooks" section).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most bytes of a URL.
pub const MAX_URL_BYTES: usize = 2000;

/// An `http://` or `https://` URL with a host, read apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebUrl {
    /// Over TLS (`https`).
    pub tls: bool,
    /// Host name, lower-cased, or address (IPv6 without brackets).
    pub host: String,
    /// Port, the scheme's when none is written.
    pub port: u16,
    /// Path and query, at least `/`; the fragment is dropped.
    pub path: String,
    /// Host and port as written, lower-cased (the `Host` header).
    pub authority: String,
}

impl WebUrl {
    /// Reads `url`: a scheme `http` or `https` (any case), `//`, a host of letters, digits, dots
    /// and hyphens (or an IPv6 address in brackets), an optional port from 1 to 65535, then `/`,
    /// `?`, `#` or the end; no user information, whitespace or control characters, at most
    /// [`MAX_URL_BYTES`]. `None` for anything else.
    pub fn parse(url: &str) -> Option<WebUrl> {
        if url.len() > MAX_URL_BYTES || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else {
            (false, strip_prefix_ci(url, "http://")?)
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return None,
            };
            addr.parse::<Ipv6Addr>().ok()?;
            (addr.to_ascii_lowercase(), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let host = valid_host_name(host)?;
            // A last label that is a number makes the host an IPv4 address in one of the forms
            // browsers and resolvers accept (`127.1`, `2130706433`, `0x7f.0.0.1`): written out
            // in dotted decimal, so it is checked as the address it is.
            let host = if host.rsplit('.').next().is_some_and(numeric_label) {
                ipv4_number_form(&host)?.to_string()
            } else {
                host
            };
            (host, port)
        };
        let port = match port {
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|p| *p != 0)?
            }
            Some(_) => return None,
            None if tls => 443,
            None => 80,
        };
        let path = path.split('#').next().unwrap_or("");
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Some(WebUrl {
            tls,
            host,
            port,
            path,
            authority: authority.to_ascii_lowercase(),
        })
    }

    /// The host as written in a URL: an IPv6 address in brackets.
    pub fn host_in_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The URL as shown in lists: scheme, host and port, and the path's first segment when it is
    /// short; anything further (where services such as Slack put the secret part) is an
    /// ellipsis.
    pub fn shown(&self) -> String {
        const SHOWN_SEGMENT: usize = 16;
        let scheme = if self.tls { "https" } else { "http" };
        let first = self.path[1..].split(['/', '?']).next().unwrap_or("");
        let mut shown = format!("{scheme}://{}/", self.authority);
        if first.len() <= SHOWN_SEGMENT {
            shown.push_str(first);
            if self.path.len() > first.len() + 1 {
                shown.push_str("/…");
            }
        } else {
            shown.push('…');
        }
        shown
    }

    /// The host as an address, when it is one.
    pub fn address(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// `host` lower-cased when it is a DNS name (or IPv4 address): labels of 1–63 letters, digits and
/// hyphens, not starting or ending with a hyphen, at most 253 bytes in all.
fn valid_host_name(host: &str) -> Option<String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then(|| host.to_ascii_lowercase())
}

/// Whether a label is a number: decimal digits, or `0x` and hexadecimal digits.
fn numeric_label(label: &str) -> bool {
    match label.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Reads an IPv4 address written as one to four numbers (decimal, `0x` hexadecimal or
/// `0`-led octal), the last one filling the remaining bytes, as the WHATWG URL standard and
/// `inet_aton` do; `None` when a part is not a number or too large.
fn ipv4_number_form(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        let n = if let Some(hex) = part.strip_prefix("0x") {
            if hex.is_empty() {
                0
            } else {
                u64::from_str_radix(hex, 16).ok()?
            }
        } else if part.len() > 1 && part.starts_with('0') {
            u64::from_str_radix(&part[1..], 8).ok()?
        } else {
            part.parse::<u64>().ok()?
        };
        numbers.push(n);
    }
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) || *last >= 1u64 << (8 * (5 - numbers.len())) {
        return None;
    }
    let mut value = *last;
    for (i, n) in leading.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Whether `host` names this machine or a private network by its name alone (`localhost` and the
/// names under it, RFC 6761), before any lookup.
pub fn local_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether `ip` is an address of the public internet: not this machine (loopback, unspecified),
/// not a private, shared (carrier-grade NAT), link-local (cloud metadata services live there) or
/// unique-local network, not multicast, broadcast, documentation or reserved, also when an IPv4
/// address is written inside an IPv6 one.
pub fn public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            let v4_at = |i: usize| Ipv4Addr::from((u32::from(s[i]) << 16) | u32::from(s[i + 1]));
            // NAT64 (64:ff9b::/96) and IPv4-translated (::ffff:0:0:0/96) addresses carry an IPv4
            // address in their last 32 bits, 6to4 (2002::/16) in the 32 after the first 16.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
                return public_v4(v4_at(6));
            }
            if s[0] == 0x2002 {
                return public_v4(v4_at(1));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: a tunnel to an address it hides
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64, RFC 8215
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible, deprecated
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_apart() {
        let u = WebUrl::parse("https://Hooks.example.com/services/x?y=1#frag").expect("parses");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.com", 443, "/services/x?y=1")
        );
        let u = WebUrl::parse("HTTP://Tracker.Example:8080").expect("parses");
        assert_eq!(
            (
                u.tls,
                u.host.as_str(),
                u.port,
                u.path.as_str(),
                u.authority.as_str()
            ),
            (false, "tracker.example", 8080, "/", "tracker.example:8080")
        );
        let u = WebUrl::parse("http://[::1]:8080?q").expect("parses");
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.path.as_str(),
                u.host_in_url().as_str()
            ),
            ("::1", 8080, "/?q", "[::1]")
        );
        for bad in [
            "javascript:alert(1)",
            "gopher://a/",
            "ftp://example.com/",
            "https://",
            "https:///path",
            "https://user:pw@evil.example/",
            "http://u@a/",
            "https://exa mple.com",
            "https://-bad-.example/",
            "https://a..b/",
            "https://example.com:99999999/",
            "http://a:0/",
            "http://a:/",
            "http://[::1/",
            "http://[not-v6]/",
            "example.com/hook",
            "",
        ] {
            assert_eq!(WebUrl::parse(bad), None, "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(WebUrl::parse(&long), None);
        // IPv4 addresses in the forms resolvers accept are read as the address they are.
        let host = |u: &str| WebUrl::parse(u).map(|u| u.host);
        for (written, address) in [
            ("http://127.1/", "127.0.0.1"),
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f.0.0.1/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
            ("http://10.0.258/", "10.0.1.2"),
            ("http://8.8.8.8/", "8.8.8.8"),
        ] {
            assert_eq!(host(written).as_deref(), Some(address), "{written}");
        }
        for bad in [
            "http://256.1.1.1/",
            "http://1.2.3.4.5/",
            "http://4294967296/",
            "http://09.1/",
        ] {
            assert_eq!(host(bad), None, "{bad}");
        }
        assert_eq!(host("http://1a.example/").as_deref(), Some("1a.example"));
        let shown = |u: &str| WebUrl::parse(u).map(|u| u.shown());
        assert_eq!(
            shown("https://hooks.slack.com/services/T000/B000/XXXXsecret").as_deref(),
            Some("https://hooks.slack.com/services/…")
        );
        assert_eq!(
            shown("http://127.0.0.1:9/hook").as_deref(),
            Some("http://127.0.0.1:9/hook")
        );
        assert_eq!(
            shown("https://x.example/hook?token=abc").as_deref(),
            Some("https://x.example/hook/…")
        );
        assert_eq!(
            shown("https://x.example/0123456789abcdef0123").as_deref(),
            Some("https://x.example/…")
        );
        assert_eq!(
            shown("https://x.example").as_deref(),
            Some("https://x.example/")
        );
    }

    #[test]
    fn private_addresses_are_told_apart() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = private.parse().expect("address");
            assert!(!public_address(ip), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = public.parse().expect("address");
            assert!(public_address(ip), "{public}");
        }
        assert!(local_name("localhost") && local_name("api.localhost"));
        assert!(!local_name("localhost.example.com"));
    }
}
