//! Strangers cannot flood registration, sign-in, the oracle or quotes: past each limit the
//! answer is 429 `rate_limited` with `Retry-After`, counted per client address (per account for
//! quotes), while other clients and other routes go on being served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{class_with, hour, rfc, spawn_app_with, Client};
use serde_json::json;

fn client_from(base: &str, address: [u8; 4]) -> Client {
    let http = reqwest::Client::builder().local_address(std::net::IpAddr::from(address)).build().unwrap();
    Client { base: base.to_owned(), http }
}

#[tokio::test]
async fn floods_are_429_per_address_and_per_account_with_retry_after() {
    let mut config = common::serve_config();
    config.rate_auth_per_min = 5;
    config.rate_oracle_per_sec = 2;
    config.rate_quotes_per_min = 3;
    let app = spawn_app_with(config).await;
    let register = |client: &Client, i: usize| {
        let client = Client { base: client.base.clone(), http: client.http.clone() };
        async move { client.post("/v1/accounts", None, json!({"name": format!("n{i}"), "role": "buyer"})).await }
    };

    // Sign-ups: five, then 429 with Retry-After for this address only.
    for i in 0..5 {
        assert_eq!(register(&app, i).await.status, 201);
    }
    let refused = app
        .http
        .post(app.url("/v1/accounts"))
        .json(&json!({"name": "six", "role": "buyer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    app.post("/v1/auth/token", None, json!({"api_key": "pcx_nope"})).await.assert_error(429, "rate_limited");
    let neighbour = client_from(&app.base, [127, 0, 0, 2]);
    assert_eq!(register(&neighbour, 99).await.status, 201, "another address has its own budget");
    assert_eq!(app.get("/health", None).await.status, 200, "other routes are not limited");

    // Oracle reads: a burst of four, then 429.
    let feeds = (0..4).map(|_| app.get("/v1/oracle/feeds", None));
    for reply in futures_util::future::join_all(feeds).await {
        assert_eq!(reply.status, 200);
    }
    app.get("/v1/oracle/feeds", None).await.assert_error(429, "rate_limited");

    // Quotes: per account, whatever the address.
    let (_, first) = neighbour.account("quoter-1", "buyer").await;
    let (_, second) = neighbour.account("quoter-2", "buyer").await;
    let quote = json!({"proof_class": class_with(10, 600), "schedule": {"start": rfc(hour(1)), "end": rfc(hour(3)), "every_secs": 3600}, "redundancy": 0});
    for _ in 0..3 {
        let r = neighbour.post("/v1/quotes", Some(&first), quote.clone()).await;
        assert_ne!(r.status.as_u16(), 429, "{}", r.body);
    }
    neighbour.post("/v1/quotes", Some(&first), quote.clone()).await.assert_error(429, "rate_limited");
    let other = neighbour.post("/v1/quotes", Some(&second), quote).await;
    assert_ne!(other.status.as_u16(), 429, "another account has its own budget: {}", other.body);
}
