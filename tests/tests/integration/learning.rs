//! Learning across reviews (issue 20): contributing factors tagged on a review by its
//! facilitator and authors, its team, the library showing each published review's factors and
//! action kinds, and the recurring factors per month over the library.

use debrief_tests::api::{request, Review};
use debrief_tests::TestServer;
use serde_json::{json, Value};

async fn set_factors(review: &Review, role: &str, factors: Value) -> debrief_tests::api::Reply {
    review
        .call(
            role,
            "POST",
            "/factors",
            Some(json!({ "factors": factors })),
        )
        .await
}

async fn add_action(review: &Review, what: &str, kind: &str) {
    let added = review
        .call(
            "author",
            "POST",
            "/actions",
            Some(json!({
                "what": what, "why": "it came back", "kind": kind, "owner": "Payments SRE"
            })),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
}

#[tokio::test]
async fn factors_are_tagged_by_facilitator_and_authors_from_the_list_or_free() {
    let server = TestServer::start().await;
    let review = Review::create_with(
        server.addr,
        json!({ "title": "Queue backlog", "team": "  Payments   SRE " }),
    )
    .await;
    let read = review.call("participant", "GET", "", None).await;
    assert_eq!(read.body["team"], "Payments SRE");
    assert_eq!(read.body["factors"], json!([]));
    assert_eq!(read.body["factor_choices"][0], "alerting gap");
    assert_eq!(read.body["factor_choices"][7], "knowledge silo");

    // An author tags from the list and adds a free tag; the facilitator changes them.
    let tagged = set_factors(
        &review,
        "author",
        json!(["Alerting Gap", "  night-time  paging ", "alerting gap"]),
    )
    .await;
    assert_eq!(tagged.status, 200, "{}", tagged.body);
    assert_eq!(
        tagged.body["factors"],
        json!(["alerting gap", "night-time paging"])
    );
    let tagged = set_factors(&review, "facilitator", json!(["capacity", "alerting gap"])).await;
    assert_eq!(tagged.body["factors"], json!(["capacity", "alerting gap"]));
    let seen = review.call("observer", "GET", "", None).await;
    assert_eq!(seen.body["factors"], json!(["capacity", "alerting gap"]));

    // Participants and observers do not tag.
    for role in ["participant", "observer"] {
        let refused = set_factors(&review, role, json!(["capacity"])).await;
        let message = refused.assert_error(403, "not_allowed");
        assert_eq!(
            message,
            format!("only the facilitator and authors tag contributing factors; {role}s cannot")
        );
    }
    // What a tag may be, and how many.
    let refused = set_factors(&review, "author", json!(["<script>"])).await;
    assert_eq!(
        refused.assert_error(400, "invalid_factor"),
        "a contributing factor is 1 to 40 characters: letters, digits, spaces and - / & ' . ( )"
    );
    let refused = set_factors(&review, "author", json!(["x".repeat(41)])).await;
    refused.assert_error(400, "invalid_factor");
    let refused = set_factors(&review, "author", json!(["   "])).await;
    refused.assert_error(400, "invalid_factor");
    let many: Vec<String> = (0..13).map(|i| format!("factor {i}")).collect();
    let refused = set_factors(&review, "author", json!(many)).await;
    assert_eq!(
        refused.assert_error(400, "too_many_factors"),
        "a review has at most 12 contributing factors"
    );
    let refused = review
        .call(
            "author",
            "POST",
            "/factors",
            Some(json!({ "factors": [], "extra": 1 })),
        )
        .await;
    refused.assert_error(400, "invalid_json");
    // Nothing refused changed what was tagged.
    let seen = review.call("author", "GET", "", None).await;
    assert_eq!(seen.body["factors"], json!(["capacity", "alerting gap"]));

    // The team: the facilitator sets and clears it, validated; nobody else.
    let team = review
        .call(
            "facilitator",
            "POST",
            "/team",
            Some(json!({ "team": "Core" })),
        )
        .await;
    assert_eq!(team.status, 200, "{}", team.body);
    assert_eq!(team.body["team"], "Core");
    let refused = review
        .call("author", "POST", "/team", Some(json!({ "team": "Mine" })))
        .await;
    refused.assert_error(403, "not_allowed");
    let refused = review
        .call(
            "facilitator",
            "POST",
            "/team",
            Some(json!({ "team": "  " })),
        )
        .await;
    assert_eq!(
        refused.assert_error(400, "invalid_team"),
        "a team is 1 to 60 characters, without control characters"
    );
    let cleared = review
        .call(
            "facilitator",
            "POST",
            "/team",
            Some(json!({ "team": null })),
        )
        .await;
    assert_eq!(cleared.body["team"], Value::Null);
    let refused = request(
        server.addr,
        "POST",
        "/api/reviews",
        None,
        Some(&json!({ "title": "T", "team": "a\u{7}b" })),
    )
    .await;
    refused.assert_error(400, "invalid_team");
}

#[tokio::test]
async fn the_library_shows_factors_and_action_kinds_and_counts_factors_per_month() {
    let server = TestServer::start().await;
    let empty = request(server.addr, "GET", "/api/library/factors", None, None).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(
        empty.body,
        json!({ "months": [], "factors": [], "reviews": 0 })
    );

    let october = Review::create_with(
        server.addr,
        json!({ "title": "October outage", "incident_date": "2026-10-03" }),
    )
    .await;
    let december = Review::create_with(
        server.addr,
        json!({ "title": "December outage", "incident_date": "2026-12-24" }),
    )
    .await;
    let unpublished = Review::create_with(
        server.addr,
        json!({ "title": "Never published", "incident_date": "2026-11-11" }),
    )
    .await;
    set_factors(&october, "author", json!(["alerting gap", "capacity"])).await;
    set_factors(&december, "author", json!(["alerting gap", "runbook gap"])).await;
    set_factors(&unpublished, "author", json!(["alerting gap"])).await;
    for review in [&october, &december, &unpublished] {
        review.move_to("review").await;
    }
    add_action(&october, "Alert on queue depth", "detect").await;
    add_action(&october, "Shed load at the edge", "mitigate").await;
    add_action(&october, "Page the owner, not the channel", "detect").await;
    add_action(&december, "Write the failover runbook", "process").await;
    for review in [&october, &december, &unpublished] {
        review.move_to("meeting").await;
        review.move_to("closed").await;
    }
    october.publish().await;
    december.publish().await;

    let entry = october.library_entry().await;
    assert_eq!(entry.status, 200, "{}", entry.body);
    assert_eq!(entry.body["factors"], json!(["alerting gap", "capacity"]));
    assert_eq!(
        entry.body["action_kinds"],
        json!({ "prevent": 0, "detect": 2, "mitigate": 1, "process": 0 })
    );
    let list = request(server.addr, "GET", "/api/library", None, None).await;
    let listed: Vec<&Value> = list.body["reviews"]
        .as_array()
        .expect("reviews")
        .iter()
        .collect();
    assert_eq!(listed.len(), 2);
    let dec = listed
        .iter()
        .find(|r| r["title"] == "December outage")
        .expect("listed");
    assert_eq!(dec["factors"], json!(["alerting gap", "runbook gap"]));
    assert_eq!(
        dec["action_kinds"],
        json!({ "prevent": 0, "detect": 0, "mitigate": 0, "process": 1 })
    );

    let counts = request(server.addr, "GET", "/api/library/factors", None, None).await;
    assert_eq!(
        counts.body,
        json!({
            "months": ["2026-10", "2026-11", "2026-12"],
            "factors": [
                { "factor": "alerting gap", "total": 2, "counts": [1, 0, 1] },
                { "factor": "capacity", "total": 1, "counts": [1, 0, 0] },
                { "factor": "runbook gap", "total": 1, "counts": [0, 0, 1] },
            ],
            "reviews": 2,
        })
    );

    // Tagged again after publishing: the library follows at once.
    set_factors(&december, "facilitator", json!(["capacity"])).await;
    let entry = december.library_entry().await;
    assert_eq!(entry.body["factors"], json!(["capacity"]));
    let counts = request(server.addr, "GET", "/api/library/factors", None, None).await;
    assert_eq!(
        counts.body["factors"],
        json!([
            { "factor": "capacity", "total": 2, "counts": [1, 0, 1] },
            { "factor": "alerting gap", "total": 1, "counts": [1, 0, 0] },
        ])
    );
    // Taken out of the library, its factors no longer count.
    let out = october
        .call(
            "facilitator",
            "POST",
            "/publish",
            Some(json!({ "published": false })),
        )
        .await;
    assert_eq!(out.status, 200);
    let counts = request(server.addr, "GET", "/api/library/factors", None, None).await;
    assert_eq!(
        counts.body,
        json!({
            "months": ["2026-12"],
            "factors": [{ "factor": "capacity", "total": 1, "counts": [1] }],
            "reviews": 1,
        })
    );
}
