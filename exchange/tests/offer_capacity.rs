//! Offers bounded by what the prover's agents measured (`PCX_OFFER_CAPACITY_CHECK=measured`), over
//! real HTTP on a fresh database and a clock the test moves: the sum of the live agents' rates for
//! exactly the offer's circuit and size, less the prover's other active offers overlapping the
//! window; for the built-in hash-chain and for registered circuits alike.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;


use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use common::{class, rfc, serve_config, spawn_manual, Client, TestApp};
use pcx_exchange::config::{OfferCapacityCheck, ServeConfig};
use serde_json::{json, Value};
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 3, 7, 0, 0).unwrap()
}

fn days(d: i64) -> Duration {
    Duration::days(d)
}

/// The test harness's exchange with the capacity check on.
async fn app() -> TestApp {
    let mut config = serve_config();
    config.market.offer_capacity_check = OfferCapacityCheck::Measured;
    spawn_manual(config, t0()).await
}

/// An agent's heartbeat advertising `capabilities` as (circuit, size_log2, proofs_per_hour).
async fn heartbeat(app: &Client, token: &str, agent: Uuid, capabilities: &[(&str, u8, u64)]) {
    let capabilities: Vec<Value> = capabilities
        .iter()
        .map(|(circuit, size, pph)| {
            json!({"system": "groth16-bn254", "circuit": circuit, "size_log2": size, "prove_ms": 500, "proofs_per_hour": pph})
        })
        .collect();
    let r = app
        .post("/v1/agent/heartbeat", Some(token), json!({"agent_id": agent, "workers": 2, "backend": "cpu", "capabilities": capabilities}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Posts an offer of `class` over `[from, to)` (days after t0).
async fn post(app: &Client, token: &str, class: &Value, pph: u32, from: i64, to: i64) -> common::Reply {
    app.post(
        "/v1/offers",
        Some(token),
        json!({"proof_class": class, "window_start": rfc(t0() + days(from)), "window_end": rfc(t0() + days(to)),
               "proofs_per_hour": pph, "price_per_proof": "0.01"}),
    )
    .await
}

async fn accepted(app: &Client, token: &str, class: &Value, pph: u32, from: i64, to: i64) -> Value {
    let r = post(app, token, class, pph, from, to).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn refused(app: &Client, token: &str, class: &Value, pph: u32, from: i64, to: i64) -> String {
    post(app, token, class, pph, from, to).await.assert_error(422, "exceeds_measured_capacity")
}

#[tokio::test]
async fn hash_chain_offers_fit_in_what_the_live_agents_measured_for_that_size() {
    let app = app().await;
    let (_, alice) = common::prover(&app, "alice", "1000").await;
    let c10 = class(10);

    // No agent yet: nothing measured.
    let message = refused(&app, &alice, &c10, 1, 0, 1).await;
    assert!(message.contains("measured 0 proofs/hour for hash-chain 2^10"), "{message}");
    assert!(message.contains("at most 0"), "{message}");

    // One agent: 100/h at 2^10 (and more at 2^11, which does not count for 2^10).
    let agent = Uuid::new_v4();
    heartbeat(&app, &alice, agent, &[("hash-chain", 10, 100), ("hash-chain", 11, 500)]).await;
    accepted(&app, &alice, &c10, 100, 0, 1).await;
    let message = refused(&app, &alice, &c10, 1, 0, 2).await;
    assert!(message.contains("measured 100 proofs/hour for hash-chain 2^10"), "{message}");
    assert!(message.contains("(100 proofs/hour)") && message.contains("at most 0"), "{message}");
    // A window after the first offer's: the full rate again.
    let later = accepted(&app, &alice, &c10, 100, 1, 2).await;
    // A size no agent advertises.
    let message = refused(&app, &alice, &class(12), 1, 0, 1).await;
    assert!(message.contains("measured 0 proofs/hour for hash-chain 2^12"), "{message}");
    accepted(&app, &alice, &class(11), 500, 0, 1).await;

    // Another prover's agent does not count for alice.
    let (_, bob) = common::prover(&app, "bob", "1000").await;
    heartbeat(&app, &bob, Uuid::new_v4(), &[("hash-chain", 10, 1000)]).await;
    refused(&app, &alice, &c10, 1, 0, 1).await;

    // A second agent of alice's: the rates add up.
    let second = Uuid::new_v4();
    heartbeat(&app, &alice, second, &[("hash-chain", 10, 50)]).await;
    accepted(&app, &alice, &c10, 50, 0, 1).await;
    let message = refused(&app, &alice, &c10, 1, 0, 1).await;
    assert!(message.contains("measured 150 proofs/hour") && message.contains("(150 proofs/hour)"), "{message}");

    // A cancelled offer no longer takes capacity.
    let id = later["offer_id"].as_i64().unwrap();
    let r = app.delete(&format!("/v1/offers/{id}"), Some(&alice)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    accepted(&app, &alice, &c10, 150, 1, 2).await;

    // Heartbeats at most 60 s old count; older ones do not.
    app.jump_to(t0() + Duration::seconds(60));
    accepted(&app, &alice, &c10, 150, 2, 3).await;
    app.run_until(t0() + Duration::seconds(61), Duration::seconds(1)).await;
    let message = refused(&app, &alice, &c10, 1, 3, 4).await;
    assert!(message.contains("measured 0 proofs/hour") && message.contains("last 60 s"), "{message}");
    // One agent comes back.
    heartbeat(&app, &alice, agent, &[("hash-chain", 10, 100)]).await;
    accepted(&app, &alice, &c10, 100, 3, 4).await;
    let message = refused(&app, &alice, &c10, 1, 3, 4).await;
    assert!(message.contains("measured 100 proofs/hour"), "{message}");
}

#[tokio::test]
async fn an_offer_that_ended_takes_no_capacity_from_one_starting_before_now() {
    let app = app().await;
    let (_, alice) = common::prover(&app, "alice", "1000").await;
    heartbeat(&app, &alice, Uuid::new_v4(), &[("hash-chain", 10, 100)]).await;
    // An offer over the next hour; then, two hours on, one whose window began yesterday.
    let r = app
        .post(
            "/v1/offers",
            Some(&alice),
            json!({"proof_class": class(10), "window_start": rfc(t0()), "window_end": rfc(t0() + Duration::hours(1)),
                   "proofs_per_hour": 100, "price_per_proof": "0.01"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.jump_to(t0() + Duration::hours(2));
    heartbeat(&app, &alice, Uuid::new_v4(), &[("hash-chain", 10, 100)]).await;
    accepted(&app, &alice, &class(10), 100, -1, 1).await;
}

/// Registers the multiplier fixture; returns its circuit id.
async fn register_multiplier(app: &Client, token: &str) -> String {
    use common::circuit_upload::{parts_of, upload};
    let reply = upload(app, Some(token), &parts_of("multiplier")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["size_log2"], 4, "{}", reply.body);
    reply.body["circuit_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_registered_circuit_counts_the_capabilities_advertised_for_it() {
    let app = app().await;
    let (_, buyer) = app.account("rollup", "buyer").await;
    let id = register_multiplier(&app, &buyer).await;
    let (_, alice) = common::prover(&app, "alice", "1000").await;
    // The size is left out: the exchange fills in the circuit's own (2^4), and checks that.
    let registered = json!({"system": "groth16-bn254", "circuit": id, "deadline_secs": 30});

    // hash-chain, even at the same size, is another circuit.
    let agent = Uuid::new_v4();
    heartbeat(&app, &alice, agent, &[("hash-chain", 4, 1000), ("hash-chain", 10, 1000)]).await;
    let message = refused(&app, &alice, &registered, 1, 0, 1).await;
    assert!(message.contains(&format!("measured 0 proofs/hour for {id} 2^4")), "{message}");

    heartbeat(&app, &alice, agent, &[("hash-chain", 4, 1000), ("hash-chain", 10, 1000), (&id, 4, 300)]).await;
    let posted = accepted(&app, &alice, &registered, 300, 0, 1).await;
    assert_eq!(posted["proof_class"]["size_log2"], 4);
    let message = refused(&app, &alice, &registered, 1, 0, 1).await;
    assert!(message.contains(&format!("measured 300 proofs/hour for {id} 2^4")) && message.contains("at most 0"), "{message}");
    // The hash-chain capacity is untouched by the registered circuit's offer.
    accepted(&app, &alice, &class(10), 1000, 0, 1).await;
}

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    serve: ServeConfig,
}

#[test]
fn the_check_is_on_by_default_and_can_be_turned_off() {
    let parse = |args: &[&str]| Serve::try_parse_from(std::iter::once("pcx").chain(args.iter().copied()));
    if std::env::var_os("PCX_OFFER_CAPACITY_CHECK").is_none() {
        assert_eq!(parse(&[]).unwrap().serve.market.offer_capacity_check, OfferCapacityCheck::Measured);
    }
    let off = parse(&["--offer-capacity-check", "off"]).unwrap();
    assert_eq!(off.serve.market.offer_capacity_check, OfferCapacityCheck::Off);
    assert_eq!(off.serve.market.resolve().unwrap().offer_capacity_check, OfferCapacityCheck::Off);
    let measured = parse(&["--offer-capacity-check", "measured"]).unwrap();
    assert_eq!(measured.serve.market.offer_capacity_check, OfferCapacityCheck::Measured);
    assert!(parse(&["--offer-capacity-check", "sometimes"]).is_err());
}
