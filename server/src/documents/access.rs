//! Who may open which document, and how: the [`Authorizer`] seam.
//!
//! Both WebSocket dialects ask the same authorizer with the token the client presented (the
//! Hocuspocus Auth message, or `?token=` on `/ws/{doc}`) and the document name, and apply the
//! decision the same way. The review domain decides review documents
//! (`crate::reviews::ReviewAuthorizer`); any other document is decided by [`StaticTokens`]
//! (open access or shared tokens, configured from the command line) or refused ([`ReviewsOnly`]).

use std::fmt::Debug;

/// What a connection may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and change it.
    ReadWrite,
    /// Read it and be present (awareness), but not change it.
    ReadOnly,
}

impl Access {
    /// Whether this access allows changes.
    pub fn writable(self) -> bool {
        self == Access::ReadWrite
    }
}

/// Why access was refused. `code` is stable and machine-readable; it goes to the client in
/// `PermissionDenied` and in close reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Stable name of the refusal, e.g. `invalid_token`.
    /// Borrowed for the server's own refusals; owned when it came from another node's.
    pub code: std::borrow::Cow<'static, str>,
    /// One human sentence.
    pub message: String,
}

impl Denied {
    /// The reason as sent to a client: `code: message`.
    pub fn reason(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

/// Maps a token and a document name to an access level or a refusal. Called on the connection's
/// task for every authentication, so it must not block for long.
pub trait Authorizer: Send + Sync + Debug {
    /// The decision for `token` on `document`.
    fn authorize(&self, token: &str, document: &str) -> Result<Access, Denied>;

    /// Whether a grant for `document` is only provisional: the node that serves the document
    /// decides the token again when the connection reaches it, and only its decision counts (a
    /// review's document on a cluster node that does not serve reviews). Such a connection is
    /// not authenticated for this node's budgets until that node opened the document for it
    /// ([`crate::transport::admission::Confirming`]).
    fn provisional(&self, document: &str) -> bool {
        let _ = document;
        false
    }
}

/// Access by shared tokens, until the review domain decides per person:
///
/// - the read-only token (when configured) gives read-only access to every document;
/// - the read-write token (when configured) gives read-write access to every document;
/// - in open mode any other token, the empty one included, gives read-write access;
/// - otherwise the token is refused with `invalid_token`.
#[derive(Clone)]
pub struct StaticTokens {
    open: bool,
    read_write: Option<String>,
    read_only: Option<String>,
}

impl Debug for StaticTokens {
    // Tokens are secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokens")
            .field("open", &self.open)
            .field("read_write", &self.read_write.is_some())
            .field("read_only", &self.read_only.is_some())
            .finish()
    }
}

impl StaticTokens {
    /// Tokens as configured; `open` lets any other token in with read-write access.
    pub fn new(open: bool, read_write: Option<String>, read_only: Option<String>) -> Self {
        StaticTokens {
            open,
            read_write: read_write.filter(|t| !t.is_empty()),
            read_only: read_only.filter(|t| !t.is_empty()),
        }
    }

    /// Open mode: any token is read-write.
    pub fn open() -> Self {
        StaticTokens::new(true, None, None)
    }
}

impl Authorizer for StaticTokens {
    fn authorize(&self, token: &str, _document: &str) -> Result<Access, Denied> {
        if self.read_only.as_deref().is_some_and(|t| same(t, token)) {
            return Ok(Access::ReadOnly);
        }
        if self.open || self.read_write.as_deref().is_some_and(|t| same(t, token)) {
            return Ok(Access::ReadWrite);
        }
        Err(Denied {
            code: "invalid_token".into(),
            message: "the token does not grant access to this document".to_owned(),
        })
    }
}

/// Documents outside reviews when neither open access nor a shared token is configured: every
/// such document is refused with `unknown_document`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReviewsOnly;

impl Authorizer for ReviewsOnly {
    fn authorize(&self, _token: &str, _document: &str) -> Result<Access, Denied> {
        Err(Denied {
            code: "unknown_document".into(),
            message:
                "this server serves only review documents (start it with --open-access for others)"
                    .to_owned(),
        })
    }
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
pub fn same_secret(expected: &str, given: &str) -> bool {
    same(expected, given)
}

fn same(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tokens_decide_as_documented() {
        let closed = StaticTokens::new(false, Some("rw".into()), Some("ro".into()));
        assert_eq!(closed.authorize("rw", "d"), Ok(Access::ReadWrite));
        assert_eq!(closed.authorize("ro", "d"), Ok(Access::ReadOnly));
        assert_eq!(
            closed
                .authorize("nope", "d")
                .map_err(|d| d.code.into_owned()),
            Err("invalid_token".to_owned())
        );
        assert!(closed.authorize("", "d").is_err());
        assert!(closed.authorize("r", "d").is_err());

        let open = StaticTokens::new(true, None, Some("ro".into()));
        assert_eq!(open.authorize("", "d"), Ok(Access::ReadWrite));
        assert_eq!(open.authorize("anything", "d"), Ok(Access::ReadWrite));
        assert_eq!(open.authorize("ro", "d"), Ok(Access::ReadOnly));
    }

    #[test]
    fn debug_output_hides_tokens() {
        let t = StaticTokens::new(false, Some("secret-rw".into()), Some("secret-ro".into()));
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
