//! Where a document is served in a cluster, as the documents room sees it: a [`Router`] the
//! composition root gives (over the cluster's ownership and links; this room never names the
//! cluster) answers "here" or "through that node", and a [`Remote`] node opens
//! [`Attachment`]s, one per connection, which [`crate::documents::remote`] serves.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

/// Where documents are served, asked before a document is opened on this node.
pub trait Router: Send + Sync + fmt::Debug {
    /// Where `doc` is served now.
    fn route<'a>(&'a self, doc: &'a str) -> BoxFuture<'a, Route>;
}

/// Where a document is served.
#[derive(Debug)]
pub enum Route {
    /// Here: this node loads and owns it (claiming it).
    Here,
    /// By another node, reached through this.
    There(Arc<dyn Remote>),
    /// Neither here nor by a node this one can reach now (in a cluster, a review's document
    /// while no node serves reviews): the connections are asked to come back later.
    Unavailable(String),
}

/// Another node that owns documents.
pub trait Remote: Send + Sync + fmt::Debug {
    /// The node's id (for logs).
    fn node(&self) -> &str;

    /// Opens a new attachment to `doc` on that node.
    fn open<'a>(&'a self, doc: &'a str) -> BoxFuture<'a, Result<Box<dyn Attachment>, String>>;
}

/// One attachment's messages to and from the owning node (a sub-stream of the link); dropping
/// it ends the attachment.
pub trait Attachment: Send + fmt::Debug {
    /// Sends one message; `Err` once the attachment or its link is gone.
    fn send(&self, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;

    /// Something that sends on the attachment while its receiving goes on elsewhere.
    fn sender(&self) -> Arc<dyn AttachmentSender>;

    /// The next message from the owner; `None` once the attachment ended.
    fn recv(&mut self) -> BoxFuture<'_, Option<Vec<u8>>>;

    /// Ends the attachment after what was sent on it.
    fn close(&mut self) -> BoxFuture<'_, ()>;
}

/// Sends on an attachment ([`Attachment::sender`]).
pub trait AttachmentSender: Send + Sync + fmt::Debug {
    /// Sends one message; `Err` once the attachment or its link is gone.
    fn send(&self, message: Vec<u8>) -> BoxFuture<'_, Result<(), String>>;
}
