//! Every number a client sends is bounded before use: extremes of deadlines, dates, slot numbers,
//! amounts, limits and proofs per slot answer a 422 that says the bound, never a panic or a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{class_with, hour, rfc, spawn_app};
use serde_json::json;

#[tokio::test]
async fn extreme_numbers_and_dates_are_422_with_the_bound() {
    let app = spawn_app().await;
    let (prover_id, prover) = common::prover(&app, "p", "100000").await;
    let (buyer_id, buyer) = app.account("b", "buyer").await;
    app.deposit(&buyer_id, "100").await;
    let _ = prover_id;

    // deadline_secs past any sensible bound (it was clamped to i32::MAX silently).
    let offer = |class: serde_json::Value, from: String, to: String| {
        json!({"proof_class": class, "window_start": from, "window_end": to, "proofs_per_hour": 10, "price_per_proof": "0.01"})
    };
    let message = app
        .post("/v1/offers", Some(&prover), offer(class_with(10, u32::MAX), rfc(hour(-1)), rfc(hour(24))))
        .await
        .assert_error(422, "invalid_proof_class");
    assert!(message.contains("deadline_secs"), "{message}");

    // Dates near the ends of what chrono represents.
    let far = "+262142-12-31T23:59:59Z".to_owned();
    let past = "-262143-01-01T00:00:00Z".to_owned();
    let message = app
        .post("/v1/offers", Some(&prover), offer(class_with(10, 600), rfc(hour(-1)), far.clone()))
        .await
        .assert_error(422, "invalid_window");
    assert!(message.contains("window"), "{message}");
    let quote = |start: String, end: String| {
        json!({"proof_class": class_with(10, 600), "schedule": {"start": start, "end": end, "every_secs": 3600}, "redundancy": 0})
    };
    let r = app.post("/v1/quotes", Some(&buyer), quote(rfc(hour(1)), far.clone())).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    let r = app.post("/v1/quotes", Some(&buyer), quote(far.clone(), far.clone())).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    let r = app.post("/v1/quotes", Some(&buyer), quote(past.clone(), rfc(hour(2)))).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);

    // Oracle history at the ends of time.
    let feed = "groth16-bn254:hash-chain:10:600";
    for (from, to) in [(past.as_str(), past.as_str()), (past.as_str(), far.as_str()), ("2026-01-01T00:00:00Z", far.as_str())] {
        let r = app.get(&format!("/v1/oracle/history?feed={feed}&from={from}&to={to}"), None).await;
        assert_eq!(r.status.as_u16(), 422, "history {from}..{to}: {}", r.body);
    }
    let r = app.get(&format!("/v1/oracle/history?feed={feed}&to={past}"), None).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
    let r = app.get(&format!("/v1/oracle/history?feed={feed}&at={far}"), None).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);

    // Slot numbers beyond i64, on a real contract.
    common::offer_class(&app, &prover, class_with(10, 600), "0.01", 10, 2).await;
    let quote = app.post("/v1/quotes", Some(&buyer), quote(rfc(hour(1)), rfc(hour(3)))).await;
    assert_eq!(quote.status.as_u16(), 201, "{}", quote.body);
    let contract = app.post("/v1/contracts", Some(&buyer), json!({"quote_id": quote.body["quote_id"]})).await;
    assert_eq!(contract.status.as_u16(), 201, "{}", contract.body);
    let id = contract.body["contract_id"].as_str().unwrap();
    let r = app.get(&format!("/v1/contracts/{id}/slots?from=9223372036854775808"), Some(&buyer)).await;
    assert_eq!((r.status.as_u16(), r.body["slots"].as_array().map(Vec::len)), (200, Some(0)), "{}", r.body);
    app.get(&format!("/v1/contracts/{id}/slots/9223372036854775808/proof"), Some(&buyer)).await.assert_error(404, "not_found");
    app.put(&format!("/v1/contracts/{id}/slots/18446744073709551615/input"), Some(&buyer), json!({"public_input": "1"}))
        .await
        .assert_error(404, "not_found");

    // Amounts that overflow the stored numeric.
    let admin = app.admin_token().await;
    let r = app.post("/v1/admin/deposits", Some(&admin), json!({"account_id": buyer_id, "amount": "99999999999999.999999"})).await;
    let message = r.assert_error(422, "invalid_amount");
    assert!(message.contains("at most"), "{message}");
    // Deposits each within the bound until the balance itself would overflow: 422, not 500.
    let mut refused = None;
    for i in 0..101 {
        let r = app.post("/v1/admin/deposits", Some(&admin), json!({"account_id": buyer_id, "amount": "1000000000000"})).await;
        if r.status.as_u16() != 201 {
            refused = Some((i, r.assert_error(422, "invalid_amount")));
            break;
        }
    }
    let (at, message) = refused.expect("the ledger's balance bound is reached");
    assert_eq!(at, 99, "balances hold less than 10^14");
    assert!(message.contains("exceeds"), "{message}");

    // Limits and proofs per slot.
    app.get("/v1/accounts/me/ledger?limit=100000", Some(&buyer)).await.assert_error(422, "invalid_query");
    app.get("/v1/accounts/me/ledger?limit=-1", Some(&buyer)).await.assert_error(422, "invalid_query");
    let r = app
        .post(
            "/v1/quotes",
            Some(&buyer),
            json!({"proof_class": class_with(10, 600), "schedule": {"start": rfc(hour(1)), "end": rfc(hour(3)), "every_secs": 3600},
                   "proofs_per_slot": u32::MAX, "redundancy": 0}),
        )
        .await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);
}
