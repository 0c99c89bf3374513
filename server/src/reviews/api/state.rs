//! What the review API's handlers share: the review domain and the open documents. Built by the
//! composition root (`lib.rs`) beside the transport's own state, which knows none of it.

use std::sync::Arc;

use crate::documents::peer::Credential;
use crate::documents::registry::Registry;
use crate::reviews::actions::ActionIndex;
use crate::reviews::anonymous::release::Releases;
use crate::reviews::anonymous::Anonymity;
use crate::reviews::identity::SignIn;
use crate::reviews::oidc::Oidc;
use crate::reviews::people::People;
use crate::reviews::records::Records;
use crate::reviews::sessions::Reviews;
use crate::reviews::trackers::Trackers;
use crate::reviews::webhooks::Webhooks;

/// The state of every review API handler.
#[derive(Debug)]
pub struct ApiState {
    /// Open documents.
    pub registry: Arc<Registry>,
    /// Reviews and sessions.
    pub reviews: Arc<Reviews>,
    /// The anonymous-item queue.
    pub anonymity: Arc<Anonymity>,
    /// Pinned versions, read marks and the library.
    pub records: Arc<Records>,
    /// Secret needed to create a review, if any; it also sets up webhooks for every review.
    pub creation_secret: Option<Credential>,
    /// Every review's action items, for the action items page.
    pub actions: Arc<ActionIndex>,
    /// Patterns that turn issue keys into tracker links.
    pub trackers: Arc<Trackers>,
    /// Webhooks, their outbox and the due days of action items.
    pub webhooks: Arc<Webhooks>,
    /// The contributing factors the server offers for tagging (`--factor-tags`).
    pub factor_tags: Vec<String>,
    /// How people sign in, and what it allows.
    pub sign_in: SignIn,
    /// Signed-in people and the sessions they joined.
    pub people: People,
    /// OpenID Connect sign-in, when set up.
    pub oidc: Option<Arc<Oidc>>,
}

impl ApiState {
    /// What releasing held anonymous items needs.
    pub fn releases(&self) -> Releases {
        Releases {
            anonymity: self.anonymity.clone(),
            reviews: self.reviews.clone(),
            registry: self.registry.clone(),
        }
    }
}
