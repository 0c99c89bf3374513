//! Integration tests: the real server on an ephemeral port with a fresh data directory, driven by
//! real clients over WebSockets. One test binary; one module per area.

mod integration {
    mod actions;
    mod adversary;
    mod anonymity;
    mod attachments;
    mod cluster;
    mod cluster_reviews;
    mod collab;
    mod damage;
    mod diskspace;
    mod durability;
    mod failures;
    mod guessing;
    mod hardening;
    mod home;
    mod identity;
    mod learning;
    mod limits;
    mod malformed;
    mod meeting;
    mod postgres;
    mod postgres_failover;
    mod pulse;
    mod restart;
    mod reviews;
    mod sync;
    mod unauthenticated;
    mod web_app;
    mod webhooks;
}
