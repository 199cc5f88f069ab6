//! The settlement scheduler (and the oracle) query through a pool of their own: with every
//! connection of the requests' pool held by clients, a scheduler tick still settles a slot, and a
//! request meanwhile is answered 503 `unavailable` within the pool's acquire timeout rather than
//! left hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{class_with, rfc, serve_config, spawn_on_clock};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

/// Connections of the requests' pool in this test: few, so that holding them all is cheap.
const MAIN_CONNECTIONS: u32 = 3;

/// A Monday morning in 2031, far from any real clock.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 3, 7, 0, 0).unwrap()
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

#[tokio::test]
async fn a_tick_settles_on_the_background_pool_while_requests_hold_every_main_connection() {
    let (setup, url) = common::fresh_database_with_url().await;
    // The requests' pool: small, and quick to give up (the exchange's own waits 10 s).
    let main = PgPoolOptions::new()
        .max_connections(MAIN_CONNECTIONS)
        .acquire_timeout(StdDuration::from_secs(1))
        .connect(&url)
        .await
        .unwrap();
    let mut config = serve_config();
    config.market.discounts = Some(r#"{"volume": [], "term": [], "max_total_bps": 0}"#.into());
    let clock = Arc::new(pcx_exchange::clock::ManualClock::new(t0()));
    let app = spawn_on_clock(main.clone(), config.clone(), Some(clock)).await;
    let background = pcx_exchange::db::background_pool(&main, config.db.background_connections);
    assert_eq!(background.options().get_max_connections(), 4, "PCX_BACKGROUND_DB_CONNECTIONS of the test config");
    let scheduler = app.state.for_background(background.clone());

    // A one-slot contract opening at t0 + 60 s, with no input: at opening it is settled as
    // unused and the prover paid.
    let class = class_with(10, 30);
    let (_, prover_token) = common::prover(&app, "alice", "1000").await;
    let offer = app
        .post(
            "/v1/offers",
            Some(&prover_token),
            json!({"proof_class": class, "window_start": rfc(t0() - secs(3600)), "window_end": rfc(t0() + Duration::days(2)),
                   "proofs_per_hour": 360, "price_per_proof": "0.01"}),
        )
        .await;
    assert_eq!(offer.status, 201, "{}", offer.body);
    let (buyer_id, buyer_token) = app.account("rollup", "buyer").await;
    app.deposit(&buyer_id, "10").await;
    let quote = app
        .post(
            "/v1/quotes",
            Some(&buyer_token),
            json!({"proof_class": class, "schedule": {"start": rfc(t0() + secs(60)), "end": rfc(t0() + secs(80)), "every_secs": 20},
                   "redundancy": 0}),
        )
        .await;
    assert_eq!(quote.status, 201, "{}", quote.body);
    let bought = app.post("/v1/contracts", Some(&buyer_token), json!({"quote_id": quote.body["quote_id"]})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    let contract = bought.body["contract_id"].as_str().unwrap().to_owned();
    // A healthy exchange up to just before the opening (no outage at the next tick).
    app.run_until(t0() + secs(58), secs(1)).await;

    // Clients take every connection of the requests' pool and keep them.
    let mut held = Vec::new();
    for _ in 0..MAIN_CONNECTIONS {
        held.push(main.acquire().await.unwrap());
    }
    assert_eq!(main.num_idle(), 0);

    // A request meanwhile: refused once the acquire timeout runs out, not left hanging.
    let started = Instant::now();
    let refused = app.get(&format!("/v1/contracts/{contract}/slots"), Some(&buyer_token)).await;
    refused.assert_error(503, "unavailable");
    assert!(started.elapsed() < StdDuration::from_secs(5), "answered after {:?}", started.elapsed());

    // The scheduler's tick does not need any of them.
    app.jump_to(t0() + secs(60));
    let ticked = tokio::time::timeout(StdDuration::from_secs(20), pcx_exchange::service::settlement::tick(&scheduler, app.now()))
        .await
        .expect("the tick waited for the requests' pool")
        .unwrap();
    assert_eq!(ticked.opened, 1, "{ticked:?}");
    assert!(!ticked.outage, "{ticked:?}");
    let (state, reason): (String, Option<String>) =
        sqlx::query_as("SELECT state, reason FROM slots WHERE contract_id = $1::uuid AND n = 0")
            .bind(&contract)
            .fetch_one(&setup)
            .await
            .unwrap();
    assert_eq!((state.as_str(), reason.as_deref()), ("unused", Some("no_input")));

    // The clients let go: requests are served again and see the settled slot.
    drop(held);
    let slots = app.get(&format!("/v1/contracts/{contract}/slots"), Some(&buyer_token)).await;
    assert_eq!(slots.status, 200, "{}", slots.body);
    assert_eq!(slots.body["slots"][0]["state"], "unused", "{}", slots.body);
    let paid: rust_decimal::Decimal = app.balances(&prover_token).await["available"].as_str().unwrap().parse().unwrap();
    assert_eq!(paid, rust_decimal::Decimal::new(99, 4), "paid, less the 1% fee");
    background.close().await;
    setup.close().await;
}
