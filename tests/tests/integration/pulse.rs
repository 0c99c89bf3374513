//! The culture pulse (issue 20): answered once a review is closed, once per person who took
//! part, anonymously (held and released like anonymous items), and shown only as aggregates from
//! five answers, per review and per month across a team's reviews.

use std::path::Path;
use std::time::Duration;

use debrief_server::Config;
use debrief_tests::api::{Reply, Review};
use debrief_tests::{ChildServer, TestServer};
use serde_json::{json, Value};

/// Whether every slot of the held-items file is empty (nothing waits for its release).
fn nothing_held(data: &Path) -> bool {
    match std::fs::read(data.join("held").join("slots")) {
        Ok(bytes) => bytes.iter().all(|b| *b == 0),
        Err(_) => true,
    }
}

/// Slots of the held-items file that hold something.
fn held_slots(data: &Path) -> usize {
    let slot = debrief_server::reviews::anonymous::held::SLOT_BYTES;
    std::fs::read(data.join("held").join("slots"))
        .map(|bytes| {
            bytes
                .chunks(slot)
                .filter(|s| s.iter().any(|b| *b != 0))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until everything held was released (the held file is wiped only once a release is
/// durable).
async fn wait_released(data: &Path, patience: Duration) {
    debrief_tests::within_for(patience, "every held answer released", async {
        while !nothing_held(data) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn answer(review: &Review, token: &str, answers: Value) -> Reply {
    let path = format!("/api/reviews/{}/pulse", review.id);
    debrief_tests::api::request(
        review.addr,
        "POST",
        &path,
        Some(token),
        Some(&json!({ "answers": answers })),
    )
    .await
}

async fn pulse_of(review: &Review, token: &str, path: &str) -> Reply {
    let path = format!("/api/reviews/{}/pulse{path}", review.id);
    let reply = debrief_tests::api::request(review.addr, "GET", &path, Some(token), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

/// The team's trend as `token` reads it, with the asker's `others` sessions.
async fn trend_of(review: &Review, token: &str, others: &[&str]) -> Reply {
    let path = format!("/api/reviews/{}/pulse/trend", review.id);
    let body = json!({ "sessions": others });
    let reply =
        debrief_tests::api::request(review.addr, "POST", &path, Some(token), Some(&body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

async fn close(review: &Review) {
    for phase in ["review", "meeting", "closed"] {
        review.move_to(phase).await;
    }
}

#[tokio::test]
async fn the_pulse_is_answered_once_by_those_who_took_part_and_shown_from_five() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        anonymous_cadence: Duration::from_millis(200),
        ..Config::new(dir.path().join("data"))
    };
    let server = TestServer::start_with(dir, config).await;
    let data = server.data_dir();
    let review = Review::create_with(
        server.addr,
        json!({ "title": "Queue backlog", "incident_date": "2026-10-03", "team": "Core" }),
    )
    .await;
    let mut people = vec![
        review.sessions["facilitator"].clone(),
        review.sessions["author"].clone(),
        review.sessions["participant"].clone(),
    ];
    for i in 0..7 {
        people.push(review.join("participant", &format!("Person {i}")).await);
    }

    // Before the close: nothing to answer, nothing shown.
    let refused = answer(&review, &people[0], json!([7, 7, 7, 7, 7])).await;
    assert_eq!(
        refused.assert_error(409, "not_closed"),
        "the pulse opens once the review is closed"
    );
    let before = pulse_of(&review, &people[0], "").await;
    assert_eq!(before.body["results"], Value::Null);
    assert_eq!(before.body["min_answers"], 5);
    assert_eq!(
        before.body["statements"][0],
        "I could say what I thought in this review without fear."
    );
    assert_eq!(
        before.body["you"],
        json!({ "may_answer": false, "answered": false })
    );
    close(&review).await;
    let late = review.join("participant", "Came later").await;

    // Who may not answer, and what an answer must be.
    let refused = answer(
        &review,
        &review.sessions["observer"],
        json!([4, 4, 4, 4, 4]),
    )
    .await;
    assert_eq!(
        refused.assert_error(403, "not_allowed"),
        "the pulse asks the people who took part in the review; observers do not answer it"
    );
    let refused = answer(&review, &late, json!([4, 4, 4, 4, 4])).await;
    assert_eq!(
        refused.assert_error(403, "not_allowed"),
        "the pulse asks the people who took part in the review; this session joined after it closed"
    );
    for bad in [
        json!([4, 4, 4, 4]),
        json!([4, 4, 4, 4, 8]),
        json!([0, 4, 4, 4, 4]),
    ] {
        let refused = answer(&review, &people[0], bad).await;
        assert_eq!(
            refused.assert_error(400, "invalid_answers"),
            "answer each of the 5 statements, in order, with a whole number from 1 (strongly \
             disagree) to 7 (strongly agree)"
        );
    }
    let refused = answer(&review, &people[0], json!([4.5, 4, 4, 4, 4])).await;
    refused.assert_error(400, "invalid_json");
    let observer = pulse_of(&review, &review.sessions["observer"], "").await;
    assert_eq!(observer.body["you"]["may_answer"], false);
    let open = pulse_of(&review, &people[0], "").await;
    assert_eq!(
        open.body["you"],
        json!({ "may_answer": true, "answered": false })
    );

    // Four answers, released: still nothing shown.
    let scores = [
        [7, 6, 5, 4, 3],
        [6, 6, 5, 4, 3],
        [5, 6, 5, 4, 3],
        [4, 6, 5, 4, 1],
        [1, 2, 3, 4, 7],
        [7, 7, 7, 7, 7],
    ];
    for (person, s) in people.iter().zip(&scores).take(4) {
        let held = answer(&review, person, json!(s)).await;
        assert_eq!(held.status, 202, "{}", held.body);
        assert!(held.body["release_after"].as_u64().is_some());
        assert!(held.body["release_by"].as_u64() >= held.body["release_after"].as_u64());
    }
    let again = answer(&review, &people[0], json!([1, 1, 1, 1, 1])).await;
    assert_eq!(
        again.assert_error(409, "already_answered"),
        "you already answered this review's pulse"
    );
    wait_released(&data, Duration::from_secs(10)).await;
    let four = pulse_of(&review, &people[4], "").await;
    assert_eq!(
        four.body["results"],
        Value::Null,
        "four answers are not shown"
    );
    let again = answer(&review, &people[0], json!([1, 1, 1, 1, 1])).await;
    again.assert_error(409, "already_answered");
    let answered = pulse_of(&review, &people[0], "").await;
    assert_eq!(
        answered.body["you"],
        json!({ "may_answer": false, "answered": true })
    );

    // The fifth: shown, to everyone in the review.
    let held = answer(&review, &people[4], json!(scores[4])).await;
    assert_eq!(held.status, 202, "{}", held.body);
    wait_released(&data, Duration::from_secs(10)).await;
    let five = pulse_of(&review, &review.sessions["observer"], "").await;
    let results = &five.body["results"];
    assert_eq!(results["answers"], 5);
    assert_eq!(
        results["statements"][0],
        json!({
            "statement": "I could say what I thought in this review without fear.",
            "count": 5,
            "mean": 4.6,
            "distribution": [1, 0, 0, 1, 1, 1, 1],
        })
    );
    assert_eq!(results["statements"][1]["mean"], 5.2);
    assert_eq!(
        results["statements"][4]["distribution"],
        json!([1, 0, 3, 0, 0, 0, 1])
    );
    // A sixth answer released alone does not change what is shown: set against the five, it
    // would be one person's scores. Results move on once five more answers are in.
    let held = answer(&review, &people[5], json!(scores[5])).await;
    assert_eq!(held.status, 202);
    wait_released(&data, Duration::from_secs(10)).await;
    let six = pulse_of(&review, &people[0], "").await;
    assert_eq!(six.body["results"], five.body["results"]);
    for person in &people[6..9] {
        let held = answer(&review, person, json!([1, 1, 1, 1, 1])).await;
        assert_eq!(held.status, 202);
    }
    wait_released(&data, Duration::from_secs(10)).await;
    let nine = pulse_of(&review, &people[1], "").await;
    assert_eq!(
        nine.body["results"], five.body["results"],
        "nine answers still show the five"
    );
    let held = answer(&review, &people[9], json!([1, 1, 1, 1, 1])).await;
    assert_eq!(held.status, 202);
    wait_released(&data, Duration::from_secs(10)).await;
    let ten = pulse_of(&review, &people[1], "").await;
    assert_eq!(ten.body["results"]["answers"], 10);
    assert_eq!(
        ten.body["results"]["statements"][0]["distribution"],
        json!([5, 0, 0, 1, 1, 1, 2])
    );

    // The team's trend: this review's month; another of the team's reviews with four answers
    // adds nothing; a review without a team has no trend.
    let other = Review::create_with(
        server.addr,
        json!({ "title": "Second", "incident_date": "2026-10-20", "team": "Core" }),
    )
    .await;
    let mut others = vec![
        other.sessions["facilitator"].clone(),
        other.sessions["author"].clone(),
        other.sessions["participant"].clone(),
    ];
    others.push(other.join("participant", "Fourth").await);
    close(&other).await;
    for person in &others {
        let held = answer(&other, person, json!([1, 1, 1, 1, 1])).await;
        assert_eq!(held.status, 202);
    }
    wait_released(&data, Duration::from_secs(10)).await;
    // Someone in both reviews sees the first one's results in the trend; someone only in the
    // second sees nothing more than its own results (none yet), whatever team they name.
    let both = trend_of(&other, &other.sessions["observer"], &[people[0].as_str()]).await;
    assert_eq!(both.body["team"], "Core");
    let months = both.body["months"].as_array().expect("months");
    assert_eq!(months.len(), 1);
    assert_eq!(months[0]["month"], "2026-10");
    assert_eq!(months[0]["reviews"], 1);
    assert_eq!(months[0]["results"]["answers"], 10);
    assert_eq!(months[0]["results"], ten.body["results"]);
    let only_second = trend_of(&other, &other.sessions["observer"], &[]).await;
    assert_eq!(only_second.body, json!({ "team": "Core", "months": [] }));
    let outsider = Review::create_with(
        server.addr,
        json!({ "title": "Not Core's", "team": "Core" }),
    )
    .await;
    let outside = trend_of(
        &outsider,
        &outsider.sessions["facilitator"],
        &["not a session", other.sessions["author"].as_str()],
    )
    .await;
    assert_eq!(outside.body, json!({ "team": "Core", "months": [] }));
    let alone = Review::create(server.addr, "No team").await;
    let trend = trend_of(
        &alone,
        &alone.sessions["participant"],
        &[people[0].as_str()],
    )
    .await;
    assert_eq!(trend.body, json!({ "team": null, "months": [] }));
    let many: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
    let too_many = debrief_tests::api::request(
        review.addr,
        "POST",
        &format!("/api/reviews/{}/pulse/trend", review.id),
        Some(&people[0]),
        Some(&json!({ "sessions": many })),
    )
    .await;
    assert_eq!(
        too_many.assert_error(400, "too_many_sessions"),
        "send at most 100 sessions"
    );
}

#[tokio::test]
async fn a_crash_keeps_held_answers_and_the_once_only_guard() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // Nothing is released before the crash.
    let server = ChildServer::start_with(&data, &["--anonymous-cadence-secs", "86400"], None).await;
    let review = Review::create(server.addr, "Crash").await;
    let mut people = vec![
        review.sessions["facilitator"].clone(),
        review.sessions["author"].clone(),
        review.sessions["participant"].clone(),
    ];
    for i in 0..3 {
        people.push(review.join("participant", &format!("Person {i}")).await);
    }
    close(&review).await;
    for (i, person) in people.iter().take(5).enumerate() {
        let s = i as u8 + 1;
        let held = answer(&review, person, json!([s, s, s, s, s])).await;
        assert_eq!(held.status, 202, "{}", held.body);
    }
    assert_eq!(held_slots(&data), 5, "each answer holds one slot");
    server.kill9().await;

    let server = ChildServer::start_with(&data, &["--anonymous-cadence-secs", "1"], None).await;
    let review = Review {
        addr: server.addr,
        ..review
    };
    // Held, not lost: the second answer is refused before and after the release.
    let again = answer(&review, &people[2], json!([7, 7, 7, 7, 7])).await;
    again.assert_error(409, "already_answered");
    // Who answered was never stored, so the recovered batch waits for two known people or ten
    // boundaries; then all five count, each exactly once.
    wait_released(&data, Duration::from_secs(30)).await;
    let shown = pulse_of(&review, &people[0], "").await;
    let results = &shown.body["results"];
    assert_eq!(results["answers"], 5, "{}", shown.body);
    for statement in results["statements"].as_array().expect("statements") {
        assert_eq!(statement["distribution"], json!([1, 1, 1, 1, 1, 0, 0]));
        assert_eq!(statement["mean"], 3.0);
    }
    let again = answer(&review, &people[2], json!([7, 7, 7, 7, 7])).await;
    again.assert_error(409, "already_answered");

    // A sixth answer, released alone: what is shown stays the five, and so it does after a
    // kill -9 (what was shown is stored, not worked out again from the six).
    let held = answer(&review, &people[5], json!([7, 7, 7, 7, 7])).await;
    assert_eq!(held.status, 202, "{}", held.body);
    wait_released(&data, Duration::from_secs(30)).await;
    assert_eq!(pulse_of(&review, &people[0], "").await.body, shown.body);
    server.kill9().await;
    let server = ChildServer::start_with(&data, &["--anonymous-cadence-secs", "1"], None).await;
    let review = Review {
        addr: server.addr,
        ..review
    };
    let after = pulse_of(&review, &people[1], "").await;
    assert_eq!(after.body["results"], shown.body["results"]);
    server.terminate().await;
}
