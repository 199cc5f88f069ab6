//! Every kind of bad input gets the error envelope with a 4xx and a stable code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::spawn_app;
use serde_json::json;

#[tokio::test]
async fn malformed_bodies_get_the_envelope_not_plain_text() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    app.post_raw("/v1/accounts", None, json_ct, "{not json").await.assert_error(400, "malformed_json");
    app.post_raw("/v1/accounts", None, None, r#"{"name":"a","role":"buyer"}"#)
        .await
        .assert_error(415, "unsupported_media_type");

    let unknown_field = app.post("/v1/accounts", None, json!({"name": "a", "role": "buyer", "extra": 1})).await;
    let why = unknown_field.assert_error(422, "invalid_body");
    assert!(why.contains("extra"), "the message names the field: {why}");

    let bad_enum = app.post("/v1/accounts", None, json!({"name": "a", "role": "admin"})).await;
    let why = bad_enum.assert_error(422, "invalid_body");
    assert!(why.contains("buyer") && why.contains("prover"), "the message lists the choices: {why}");

    app.post("/v1/accounts", None, json!({"name": 5, "role": "buyer"})).await.assert_error(422, "invalid_body");
    app.post("/v1/accounts", None, json!({"role": "buyer"})).await.assert_error(422, "invalid_body");
    app.post("/v1/accounts", None, json!({"name": "   ", "role": "buyer"})).await.assert_error(422, "invalid_input");

    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE role <> 'exchange'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(accounts, 0, "no bad request created anything");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let app = spawn_app().await;
    app.get("/v1/nope", None).await.assert_error(404, "route_not_found");
    app.get("/v1/withdrawals", None).await.assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn bad_idempotency_keys_are_422() {
    let app = spawn_app().await;
    let (_, token) = app.account("b", "buyer").await;
    let long = "k".repeat(300);
    app.post_with_key("/v1/withdrawals", Some(&token), Some(&long), json!({"amount": "1"}))
        .await
        .assert_error(422, "invalid_idempotency_key");
}
