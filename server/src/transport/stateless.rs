//! Stateless messages: application commands that travel on a document's channel of the
//! Hocuspocus dialect but are not CRDT changes. The review domain will route its commands
//! through a [`StatelessHandler`]; the server itself knows none, so by default every payload is
//! answered with a JSON error.
//!
//! Errors are one JSON object: `{"type":"error","code":"…","message":"…"}`, where `code` is
//! stable (`invalid_payload`, `unknown_command`, `broadcast_stateless_not_allowed`,
//! `unknown_message_type`, `unexpected_message_type`).

use std::fmt::Debug;

use futures_util::future::BoxFuture;

use crate::documents::access::Access;

/// One stateless message from a connection.
#[derive(Debug, Clone, Copy)]
pub struct StatelessRequest<'a> {
    /// The document it was sent on.
    pub document: &'a str,
    /// The sender's access to that document.
    pub access: Access,
    /// The payload as sent.
    pub payload: &'a str,
}

/// Handles stateless messages; the returned string, if any, is sent back to the sender as a
/// stateless message on the same document.
pub trait StatelessHandler: Send + Sync + Debug {
    /// Handles one message.
    fn handle<'a>(&'a self, request: StatelessRequest<'a>) -> BoxFuture<'a, Option<String>>;
}

/// The handler while no domain is installed: a payload must be a JSON object with a `type`, and
/// no type is known.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCommands;

impl StatelessHandler for NoCommands {
    fn handle<'a>(&'a self, request: StatelessRequest<'a>) -> BoxFuture<'a, Option<String>> {
        let reply = match command_type(request.payload) {
            Err(e) => e,
            Ok(kind) => error_json(
                "unknown_command",
                &format!("no command named {kind:?} is known"),
            ),
        };
        Box::pin(std::future::ready(Some(reply)))
    }
}

/// The `type` of a command payload, or the JSON error to send back when there is none.
pub fn command_type(payload: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(payload).map_err(|_| {
        error_json(
            "invalid_payload",
            "a stateless payload is a JSON object with a string \"type\"",
        )
    })?;
    match value.get("type").and_then(|t| t.as_str()) {
        Some(kind) => Ok(kind.to_owned()),
        None => Err(error_json(
            "invalid_payload",
            "a stateless payload is a JSON object with a string \"type\"",
        )),
    }
}

/// A stateless error reply.
pub fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({ "type": "error", "code": code, "message": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_and_invalid_payloads_get_json_errors() {
        let ask = |payload| async move {
            let reply = NoCommands
                .handle(StatelessRequest {
                    document: "d",
                    access: Access::ReadWrite,
                    payload,
                })
                .await
                .expect("a reply");
            serde_json::from_str::<serde_json::Value>(&reply).expect("json")
        };
        let unknown = ask(r#"{"type":"launch"}"#).await;
        assert_eq!(unknown["type"], "error");
        assert_eq!(unknown["code"], "unknown_command");
        assert_eq!(ask("not json").await["code"], "invalid_payload");
        assert_eq!(ask(r#"{"kind":1}"#).await["code"], "invalid_payload");
    }
}
