//! The caps on long-lived requests: oracle SSE subscribers (`PCX_MAX_SSE_SUBSCRIBERS`) and claims
//! waiting for a job (`PCX_MAX_CLAIM_WAITERS`). Past the cap the next one is refused at once with
//! 503 and `Retry-After`; a place frees when a holder goes away or answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{serve_config, spawn_app_with, TestApp};
use serde_json::json;
use uuid::Uuid;

/// Waits (up to 20 s) until `count` reads `want`.
async fn until(what: &str, want: usize, count: impl Fn() -> usize) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    while count() != want {
        assert!(tokio::time::Instant::now() < give_up, "{what}: {} after 20 s, want {want}", count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a refusal with `code`, 503 and a `Retry-After` of whole seconds.
async fn assert_refused(response: reqwest::Response, code: &str) {
    assert_eq!(response.status(), 503);
    let retry_after: u32 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("retry"), "{body}");
}

async fn app_with_caps_of_two() -> TestApp {
    let mut config = serve_config();
    config.max_sse_subscribers = 2;
    config.max_claim_waiters = 2;
    spawn_app_with(config).await
}

#[tokio::test]
async fn a_third_sse_subscriber_is_refused_until_one_of_two_leaves() {
    let app = app_with_caps_of_two().await;
    let stream = || app.http.get(app.url("/v1/oracle/stream")).send();
    let first = stream().await.unwrap();
    let second = stream().await.unwrap();
    for open in [&first, &second] {
        assert_eq!(open.status(), 200);
        assert_eq!(open.headers()["content-type"], "text/event-stream");
    }
    until("subscribers", 2, || app.state.caps.subscribers()).await;
    assert_refused(stream().await.unwrap(), "too_many_subscribers").await;
    // Ordinary oracle routes are not counted.
    assert_eq!(app.get("/v1/oracle/feeds", None).await.status, 200);

    // The first subscriber goes away: the server notices and its place frees.
    drop(first);
    until("subscribers", 1, || app.state.caps.subscribers()).await;
    let third = stream().await.unwrap();
    assert_eq!(third.status(), 200);
    assert_eq!(app.state.caps.subscribers(), 2);
    drop(second);
    drop(third);
    until("subscribers", 0, || app.state.caps.subscribers()).await;
}

#[tokio::test]
async fn a_third_waiting_claim_is_refused_until_one_of_two_answers_or_goes_away() {
    let app = app_with_caps_of_two().await;
    let (_, token) = common::prover(&app, "alice", "100").await;
    let claim = |wait: u32| {
        app.http
            .post(app.url("/v1/agent/jobs/claim"))
            .bearer_auth(&token)
            .json(&json!({"agent_id": Uuid::new_v4(), "wait_secs": wait, "sizes": [10]}))
            .send()
    };
    // Two claims wait: one for 5 s (time enough for the refusal below), one for the longest wait.
    let short = tokio::spawn(claim(5));
    let long = tokio::spawn(claim(30));
    until("waiting claims", 2, || app.state.caps.waiting_claims()).await;
    assert_refused(claim(5).await.unwrap(), "too_many_waiting_claims").await;
    // A claim that does not wait is not counted.
    let now = claim(0).await.unwrap();
    assert_eq!(now.status(), 200);
    assert_eq!(now.json::<serde_json::Value>().await.unwrap()["job"], serde_json::Value::Null);

    // The short one answers (no job) and frees its place.
    let answered = short.await.unwrap().unwrap();
    assert_eq!(answered.status(), 200);
    until("waiting claims", 1, || app.state.caps.waiting_claims()).await;
    let again = tokio::spawn(claim(30));
    until("waiting claims", 2, || app.state.caps.waiting_claims()).await;
    assert_refused(claim(1).await.unwrap(), "too_many_waiting_claims").await;

    // An agent that hangs up while waiting frees its place too.
    long.abort();
    until("waiting claims", 1, || app.state.caps.waiting_claims()).await;
    again.abort();
    until("waiting claims", 0, || app.state.caps.waiting_claims()).await;
}
