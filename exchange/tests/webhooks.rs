//! Webhooks: endpoints registered over HTTP, events written in the transitions' transactions and
//! delivered by the exchange to a real receiver on 127.0.0.1, signed as Standard Webhooks say;
//! in causal order per slot; every event after a receiver comes back; an endpoint that never
//! answers disabled with a reason; URLs that may not receive events refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::played::{buy, buyer, post_offer, put_input, slots, Agent};
use common::receiver::{Received, Receiver};
use common::{class_with, serve_config, spawn_manual, Client};
use serde_json::{json, Value};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2031, 3, 3, 7, 0, 0).unwrap()
}

fn config() -> pcx_exchange::config::ServeConfig {
    let mut config = serve_config();
    config.market.discounts = Some(r#"{"volume": [], "term": [], "max_total_bps": 0}"#.into());
    config.settlement.ack_timeout_secs = 30;
    config.settlement.lease_secs = 300;
    config
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// A prover with 1000 bonded offering 360 proofs/h of hash-chain 2^10 around [`t0`]; (id, token).
async fn offering_prover(app: &Client, name: &str, price: &str) -> (String, String) {
    let (id, token) = common::prover(app, name, "1000").await;
    post_offer(app, &token, class_with(10, 30), price, 360, t0() - secs(3600), t0() + chrono::Duration::days(2)).await;
    (id, token)
}

/// Registers `url` for `events`; returns (webhook id, secret).
async fn register(app: &Client, token: &str, url: &str, events: &[&str]) -> (String, String) {
    let r = app.post("/v1/webhooks", Some(token), json!({"url": url, "events": events})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (r.body["webhook_id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned())
}

const BUYER_EVENTS: &[&str] = &[
    "slot.delivered", "slot.failed_over", "slot.missed", "slot.unused", "contract.suspended", "contract.resumed",
    "contract.completed", "escrow.low",
];
const PROVER_EVENTS: &[&str] = &["job.offered", "job.expired", "stake.slashed", "payment.received"];

/// (type, slot) of each event, in arrival order.
fn kinds(events: &[Received]) -> Vec<(String, Option<u64>)> {
    events.iter().map(|r| (r.json()["type"].as_str().unwrap().to_owned(), r.json()["data"]["slot"].as_u64())).collect()
}

#[tokio::test]
async fn a_buyer_and_its_provers_hear_each_slot_signed_and_in_order() {
    let app = spawn_manual(config(), t0()).await;
    let (mallory, mallory_token) = offering_prover(&app, "mallory", "0.008").await;
    let (bob, bob_token) = offering_prover(&app, "bob", "0.01").await;
    let mallory_agent = Agent::start(&app, &mallory_token, 400).await;
    let bob_agent = Agent::start(&app, &bob_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let (buyer_hook, mallory_hook, bob_hook) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let (buyer_webhook, buyer_secret) = register(&app, &buyer_token, &buyer_hook.url, BUYER_EVENTS).await;
    let (_, mallory_secret) = register(&app, &mallory_token, &mallory_hook.url, PROVER_EVENTS).await;
    let (_, bob_secret) = register(&app, &bob_token, &bob_hook.url, PROVER_EVENTS).await;

    // Two slots with a backup: mallory (primary) sits on each job, bob delivers.
    let contract = buy(&app, &buyer_token, class_with(10, 30), t0() + secs(60), 20, 2, 1).await;
    let id = contract["contract_id"].as_str().unwrap();
    for n in 0..2 {
        put_input(&app, &buyer_token, id, n, &(1000 + n).to_string()).await;
    }
    while app.now() < t0() + secs(60 + 2 * 20 + 30) {
        app.run_until(app.now() + secs(1), secs(1)).await;
        while mallory_agent.claim().await.is_some() {}
        if let Some(job) = bob_agent.claim().await {
            assert_eq!(bob_agent.deliver(&job).await.body["accepted"], true);
        }
    }
    assert!(slots(&app, &buyer_token, id).await.iter().all(|s| s["state"] == "delivered"));

    let within = Duration::from_secs(30);
    let to_buyer = buyer_hook.wait_for(within, "the buyer's events", |r| r.len() >= 5).await;
    let to_mallory = mallory_hook.wait_for(within, "mallory's events", |r| r.len() >= 6).await;
    let to_bob = bob_hook.wait_for(within, "bob's events", |r| r.len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(buyer_hook.accepted_once().len(), 5, "nothing more: {:?}", kinds(&buyer_hook.accepted_once()));

    // Signed with each endpoint's own secret, by the Standard Webhooks scheme.
    for (events, secret, other) in [(&to_buyer, &buyer_secret, &bob_secret), (&to_mallory, &mallory_secret, &buyer_secret),
                                    (&to_bob, &bob_secret, &mallory_secret)] {
        for event in events.iter() {
            assert!(event.id.starts_with("msg_"), "{}", event.id);
            assert!(event.verifies(secret), "signature of {}", event.id);
            assert!(!event.verifies(other), "another endpoint's secret does not verify {}", event.id);
            assert!(event.json()["timestamp"].as_str().is_some_and(|t| t.starts_with("2031-03-03T07:")), "{}", event.json());
        }
    }
    // Each slot's events in the order they happened.
    let per_slot = |events: &[Received], n: u64| -> Vec<String> {
        kinds(events).into_iter().filter(|(_, slot)| *slot == Some(n)).map(|(kind, _)| kind).collect()
    };
    for n in 0..2 {
        assert_eq!(per_slot(&to_buyer, n), ["slot.failed_over", "slot.delivered"], "buyer, slot {n}");
        assert_eq!(per_slot(&to_mallory, n), ["job.offered", "job.expired", "stake.slashed"], "mallory, slot {n}");
        assert_eq!(per_slot(&to_bob, n), ["job.offered", "payment.received"], "bob, slot {n}");
    }
    assert_eq!(kinds(&to_buyer).last().unwrap().0, "contract.completed");

    // What the events say.
    let delivered = to_buyer.iter().map(Received::json).find(|e| e["type"] == "slot.delivered").unwrap();
    assert_eq!(delivered["data"]["contract_id"], id);
    assert_eq!(delivered["data"]["reason"], "delivered_by_backup");
    assert_eq!(delivered["data"]["delivered_by"], bob.as_str());
    let proof_url = delivered["data"]["proof_url"].as_str().unwrap();
    assert_eq!(app.get(proof_url, Some(&buyer_token)).await.status, 200, "the event says where the proof is");
    let failed_over = to_buyer.iter().map(Received::json).find(|e| e["type"] == "slot.failed_over").unwrap();
    assert_eq!((failed_over["data"]["from"].as_str(), failed_over["data"]["to"].as_str()), (Some(mallory.as_str()), Some(bob.as_str())));
    assert_eq!(failed_over["data"]["failure"], "lease_expired");
    let slashed = to_mallory.iter().map(Received::json).find(|e| e["type"] == "stake.slashed").unwrap();
    assert_eq!(slashed["data"]["amount"], "0.016");
    let paid = to_bob.iter().map(Received::json).find(|e| e["type"] == "payment.received").unwrap();
    assert_eq!(paid["data"]["amount"], "0.01192", "0.008 less the 1% fee, plus the 0.004 step-in bonus");

    // Each attempt is on record.
    let attempts = app.get(&format!("/v1/webhooks/{buyer_webhook}/deliveries"), Some(&buyer_token)).await;
    assert_eq!(attempts.status, 200, "{}", attempts.body);
    let attempts = attempts.body["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 5);
    assert!(attempts.iter().all(|a| a["status"] == 200 && a["delivery_state"] == "delivered" && a["error"].is_null()), "{attempts:?}");
    // Another account sees none of it.
    app.get(&format!("/v1/webhooks/{buyer_webhook}/deliveries"), Some(&bob_token)).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_every_event_after_it_comes_back_in_order() {
    let app = spawn_manual(config(), t0()).await;
    let (_, alice_token) = offering_prover(&app, "alice", "0.01").await;
    let alice = Agent::start(&app, &alice_token, 400).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let hook = Receiver::start().await;
    let (webhook, secret) = register(&app, &buyer_token, &hook.url, BUYER_EVENTS).await;
    hook.set_down(true);
    let contract = buy(&app, &buyer_token, class_with(10, 30), t0() + secs(60), 20, 3, 0).await;
    let id = contract["contract_id"].as_str().unwrap();
    put_input(&app, &buyer_token, id, 0, "7").await;
    put_input(&app, &buyer_token, id, 2, "9").await;
    // Slot 1 has no input: unused. The others are delivered.
    while app.now() < t0() + secs(60 + 3 * 20 + 30) {
        app.run_until(app.now() + secs(1), secs(1)).await;
        if let Some(job) = alice.claim().await {
            assert_eq!(alice.deliver(&job).await.body["accepted"], true);
        }
    }
    // Refused while down, and tried again.
    hook_refused_at_least(&hook, 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    hook.set_down(false);
    let events = hook.wait_for(Duration::from_secs(60), "every event after the receiver came back", |r| r.len() >= 4).await;
    let kinds: Vec<(String, Option<u64>)> = kinds(&events);
    let mut by_subject: HashMap<Option<u64>, Vec<String>> = HashMap::new();
    for (kind, slot) in &kinds {
        by_subject.entry(*slot).or_default().push(kind.clone());
    }
    assert_eq!(by_subject[&Some(0)], ["slot.delivered"]);
    assert_eq!(by_subject[&Some(1)], ["slot.unused"]);
    assert_eq!(by_subject[&Some(2)], ["slot.delivered"]);
    assert_eq!(by_subject[&None], ["contract.completed"]);
    assert!(events.iter().all(|e| e.verifies(&secret)));
    // Retries carry the same webhook-id (receivers deduplicate by it); nothing was invented.
    let ids: std::collections::HashSet<String> = hook.received().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 4, "four events, however many attempts");
    let attempts = app.get(&format!("/v1/webhooks/{webhook}/deliveries?limit=500"), Some(&buyer_token)).await.body;
    let attempts = attempts["attempts"].as_array().unwrap().clone();
    assert!(attempts.iter().any(|a| a["status"] == 503 && a["error"].as_str().is_some_and(|e| e.contains("503"))), "{attempts:?}");
    assert_eq!(attempts.iter().filter(|a| a["status"] == 200).count(), 4);
}

#[tokio::test]
async fn a_buyer_is_warned_of_low_escrow_then_told_of_the_suspension_the_resumption_and_the_end() {
    let mut config = config();
    config.market.escrow_window_secs = 600;
    let app = spawn_manual(config, t0()).await;
    let (_, prover_token) = common::prover(&app, "p", "1000").await;
    let class = class_with(10, 600);
    post_offer(&app, &prover_token, class.clone(), "0.01", 360, t0() - secs(3600), t0() + chrono::Duration::days(2)).await;
    let (buyer_id, buyer_token) = app.account("b", "buyer").await;
    app.deposit(&buyer_id, "0.1").await; // exactly the first 600 s: 10 slots at 0.01
    let hook = Receiver::start().await;
    register(&app, &buyer_token, &hook.url, &["contract.suspended", "contract.resumed", "contract.completed", "escrow.low"]).await;
    let contract = buy(&app, &buyer_token, class, t0() + secs(60), 60, 20, 0).await;
    let id = contract["contract_id"].as_str().unwrap().to_owned();

    app.run_until(t0() + secs(60 + 12 * 60 + 30), secs(10)).await;
    hook.wait_for(Duration::from_secs(30), "low escrow, then the suspension", |r| r.len() >= 2).await;
    app.deposit(&buyer_id, "1").await;
    app.run_until(t0() + secs(60 + 20 * 60 + 10), secs(30)).await;
    let events = hook.wait_for(Duration::from_secs(30), "the resumption and the end", |r| r.len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let told: Vec<Value> = hook.accepted_once().iter().map(Received::json).collect();
    let types: Vec<&str> = told.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["escrow.low", "contract.suspended", "contract.resumed", "contract.completed"], "{told:?}");
    assert!(told.iter().all(|e| e["data"]["contract_id"] == id.as_str()));
    // At the purchase: nothing left for slot 10, the first past the locked window.
    let low = &told[0]["data"];
    assert_eq!((low["available"].as_str(), low["next_top_up"].as_str()), (Some("0"), Some("0.01")), "{low}");
    assert_eq!(low["next_top_up_at"], "2031-03-03T07:11:00Z");
    assert_eq!(told[1]["data"]["reason"], "escrow_underfunded");
    assert_eq!(told[3]["data"]["status"], "completed");
    assert_eq!(events.len(), 4);
}

async fn hook_refused_at_least(hook: &Receiver, n: usize) {
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while hook.received().iter().filter(|r| !r.accepted).count() < n {
        assert!(std::time::Instant::now() < give_up, "the exchange kept trying: {}", hook.received().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_endpoint_that_never_answers_for_the_horizon_is_disabled_with_a_reason() {
    let mut config = config();
    config.webhooks.webhook_retry_horizon_secs = 2;
    let app = spawn_manual(config, t0()).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (webhook, _) = register(&app, &buyer_token, &format!("http://{closed}/hook"), &["contract.completed", "slot.unused"]).await;
    let (_, alice_token) = offering_prover(&app, "alice", "0.01").await;
    let contract = buy(&app, &buyer_token, class_with(10, 30), t0() + secs(60), 20, 1, 0).await;
    let _ = contract;
    app.run_until(t0() + secs(60 + 20 + 30), secs(1)).await;
    let _ = alice_token;
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    let view = loop {
        let view = app.get(&format!("/v1/webhooks/{webhook}"), Some(&buyer_token)).await.body;
        if !view["disabled_at"].is_null() {
            break view;
        }
        assert!(std::time::Instant::now() < give_up, "not disabled: {view}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = view["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("no event was delivered") && reason.contains("could not connect"), "{reason}");
    let attempts = app.get(&format!("/v1/webhooks/{webhook}/deliveries"), Some(&buyer_token)).await.body;
    let attempts = attempts["attempts"].as_array().unwrap().clone();
    assert!(!attempts.is_empty() && attempts.iter().all(|a| a["status"].is_null() && a["delivery_state"] == "expired"), "{attempts:?}");
}

#[tokio::test]
async fn endpoints_are_the_owners_secrets_are_shown_once_and_bad_urls_or_events_are_refused() {
    let mut config = config();
    config.webhooks.webhook_allow_private_networks = false;
    let app = spawn_manual(config, t0()).await;
    let (_, buyer_token) = buyer(&app, "rollup", "10").await;
    let (_, prover_token) = common::prover(&app, "alice", "10").await;
    let post = |token: String, body: Value| {
        let app = &app;
        async move { app.post("/v1/webhooks", Some(&token), body).await }
    };
    for (url, why) in [
        ("ftp://hooks.example.org/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("https://user:pw@hooks.example.org/", "user name or password"),
        ("http://127.0.0.1:9/hook", "not a public one"),
        ("http://169.254.169.254/latest/meta-data", "not a public one"),
        ("not a url", "not a URL"),
    ] {
        let r = post(buyer_token.clone(), json!({"url": url, "events": ["slot.delivered"]})).await;
        let message = r.assert_error(422, "invalid_webhook_url");
        assert!(message.contains(why), "{url}: {message}");
    }
    let long = format!("https://hooks.example.org/{}", "a".repeat(2048));
    post(buyer_token.clone(), json!({"url": long, "events": ["slot.delivered"]})).await.assert_error(422, "invalid_webhook_url");
    let own = app.url("/v1/accounts/me");
    let r = post(buyer_token.clone(), json!({"url": own, "events": ["slot.delivered"]})).await;
    r.assert_error(422, "invalid_webhook_url");
    for events in [json!([]), json!(["slot.exploded"]), json!(["job.offered"]), json!(["slot.delivered", "slot.delivered"])] {
        post(buyer_token.clone(), json!({"url": "https://hooks.example.org/pcx", "events": events})).await.assert_error(422, "invalid_webhook_events");
    }
    post(prover_token.clone(), json!({"url": "https://hooks.example.org/pcx", "events": ["slot.delivered"]}))
        .await
        .assert_error(422, "invalid_webhook_events");

    // A public URL: registered; the secret is shown once, sealed at rest, and rotates.
    let r = post(buyer_token.clone(), json!({"url": "https://hooks.example.org/pcx", "events": ["slot.delivered"]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["webhook_id"].as_str().unwrap().to_owned();
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = app.get("/v1/webhooks", Some(&buyer_token)).await.body;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret[6..]), "the listing shows no secret");
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &secret[6..]).unwrap();
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret_sealed FROM webhooks").fetch_one(&app.db).await.unwrap();
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()), "the secret is not in the table");
    let rotated = app.post(&format!("/v1/webhooks/{id}/rotate_secret"), Some(&buyer_token), json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_ne!(rotated.body["secret"].as_str().unwrap(), secret);

    // Someone else's endpoint is not there for them.
    app.get(&format!("/v1/webhooks/{id}"), Some(&prover_token)).await.assert_error(404, "not_found");
    app.delete(&format!("/v1/webhooks/{id}"), Some(&prover_token)).await.assert_error(404, "not_found");
    let deleted = app.delete(&format!("/v1/webhooks/{id}"), Some(&buyer_token)).await;
    assert_eq!((deleted.status.as_u16(), &deleted.body["deleted"]), (200, &json!(true)));
    app.get(&format!("/v1/webhooks/{id}"), Some(&buyer_token)).await.assert_error(404, "not_found");
    app.get("/v1/webhooks", None).await.assert_error(401, "unauthenticated");
}

/// The real `pcx serve` on `port` and `database_url`, its data directory (and so its generated
/// webhook key) kept across restarts.
fn serve(port: u16, database_url: &str, data_dir: &std::path::Path) -> std::process::Child {
    common::pcx_serve(port)
        .env("DATABASE_URL", database_url)
        .env("PCX_DATA_DIR", data_dir)
        .env("PCX_JWT_SECRET", common::JWT_SECRET)
        .env_remove("PCX_WEBHOOK_KEY")
        .env("PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        .env("PCX_WEBHOOK_TICK_MS", "100")
        .env("PCX_MIN_CADENCE_SECS", "10")
        .env("PCX_SETTLEMENT_TICK_MS", "200")
        .env("PCX_ORACLE_TICK_MS", "0")
        .env("PCX_DEV_KEYS", "true")
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &Client) {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while client.http.get(client.url("/health")).send().await.map_or(true, |r| r.status() != 200) {
        assert!(std::time::Instant::now() < give_up, "pcx serve did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_transitions_and_their_delivery_loses_no_event() {
    let (db, url) = common::fresh_database_with_url().await;
    let data_dir = std::env::temp_dir().join(format!("pcx-webhooks-{}", uuid::Uuid::new_v4()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut exchange = serve(port, &url, &data_dir);
    let client = Client { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
    wait_healthy(&client).await;

    let class = class_with(10, 20);
    let (_, _, alice_key) = common::prover_with_key(&client, "alice", "1000").await;
    common::offer_class(&client, &client.token(&alice_key).await, class.clone(), "0.01", 360, 2).await;
    let (buyer_id, buyer) = client.account("rollup", "buyer").await;
    client.deposit(&buyer_id, "10").await;
    let hook = Receiver::start().await;
    let (_, secret) = register(&client, &buyer, &hook.url, BUYER_EVENTS).await;
    hook.set_down(true);
    let agent = common::run_test_agent(&client.base, &alice_key, None, common::common_keys_dir());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let contract = common::buy_short_contract(&client, &buyer, &class, Utc::now() + secs(4), 10, 3, 0).await;
    let list = common::wait_all_slots_final(&client, &buyer, &contract, 3, Duration::from_secs(90)).await;

    // Every slot and the contract settled; their events wait in the outbox for a receiver that
    // refuses them. Then the exchange dies, and comes back.
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
            .fetch_one(&db)
            .await
            .unwrap();
        if pending == 4 {
            break;
        }
        assert!(std::time::Instant::now() < give_up, "4 events pending, not {pending}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!hook.received().is_empty(), "the exchange tried before it died");
    exchange.kill().unwrap(); // SIGKILL
    exchange.wait().unwrap();
    hook.set_down(false);
    let mut exchange = serve(port, &url, &data_dir);
    wait_healthy(&client).await;

    let events = hook.wait_for(Duration::from_secs(60), "every event after the restart", |r| r.len() >= 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.accepted_once().len(), 4, "none invented: {:?}", kinds(&hook.accepted_once()));
    assert!(events.iter().all(|e| e.verifies(&secret)), "signed with the same secret after the restart");
    for slot in &list {
        let n = slot["n"].as_u64().unwrap();
        let told: Vec<Value> = events.iter().map(Received::json).filter(|e| e["data"]["slot"].as_u64() == Some(n)).collect();
        assert_eq!(told.len(), 1, "slot {n}: {told:?}");
        let expected = match slot["state"].as_str().unwrap() {
            "delivered" => "slot.delivered",
            "missed" => "slot.missed",
            other => panic!("slot {n} ended {other}"),
        };
        assert_eq!(told[0]["type"], expected, "slot {n}");
        assert_eq!(told[0]["data"]["reason"], slot["reason"], "slot {n}");
    }
    assert!(events.iter().any(|e| e.json()["type"] == "contract.completed"));
    drop(agent);
    let _ = exchange.kill();
    let _ = exchange.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
}
