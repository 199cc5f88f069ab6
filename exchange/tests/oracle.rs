//! The pricing oracle over HTTP: signed rounds verified by an independent implementation,
//! manipulation resistance, staleness, too few sources, failing external providers, history,
//! halts, the curve and the SSE stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use alloy_dyn_abi::TypedData;
use chrono::Utc;
use common::{offer, prover, serve_config, spawn_app, spawn_app_with, TestApp};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use pcx_exchange::service::oracle::tick;
use serde_json::{json, Value};

const FEED: &str = "groth16-bn254:hash-chain:12:600";

/// Provers with asks at these prices (2^14, 600 s: they serve the 2^12/600 s feed).
async fn asks(app: &TestApp, prices: &[&str]) {
    for (i, price) in prices.iter().enumerate() {
        let (_, token) = prover(app, &format!("p{i}"), "100000").await;
        offer(app, &token, price, 1, 30).await;
    }
}

async fn latest(app: &TestApp) -> Value {
    let r = app.get(&format!("/v1/oracle/prices/latest?feed={FEED}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn dec(v: &Value) -> rust_decimal::Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// Recovers the signer of a round from its typed data and signature, with alloy-dyn-abi's dynamic
/// EIP-712 encoder and k256: not the code path that signed it.
fn recover(round: &Value) -> String {
    let typed: TypedData = serde_json::from_value(round["typed_data"].clone()).unwrap();
    let hash = typed.eip712_signing_hash().unwrap();
    let bytes = hex::decode(round["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let signature = Signature::from_slice(&bytes[..64]).unwrap();
    let key = VerifyingKey::recover_from_prehash(hash.as_slice(), &signature, RecoveryId::from_byte(bytes[64] - 27).unwrap()).unwrap();
    let point = key.to_encoded_point(false);
    let address = alloy_primitives::keccak256(&point.as_bytes()[1..]);
    format!("0x{}", hex::encode(&address[12..]))
}

#[tokio::test]
async fn rounds_are_signed_verifiable_and_resist_manipulation() {
    let app = spawn_app().await;
    asks(&app, &["1.00", "1.02", "1.05", "1.08", "0.001", "900"]).await;
    tick(&app.state, Utc::now()).await.unwrap();
    let round = latest(&app).await;
    assert_eq!(round["status"], "ok", "{round}");
    let price = dec(&round["price"]);
    assert!(price >= "1.00".parse().unwrap() && price <= "1.08".parse().unwrap(), "manipulators moved the price: {price}");
    assert_eq!(round["n_sources"], 4);
    for q in ["50", "80", "95", "99"] {
        assert!(round["quantiles"][q].is_string(), "{round}");
    }
    assert!(dec(&round["quantiles"]["99"]) >= dec(&round["quantiles"]["50"]));
    assert_eq!(round["methodology_version"], 2);
    assert_eq!(round["typed_data"]["primaryType"], "PriceRound");

    let signer = app.get("/v1/oracle/signer", None).await.body;
    assert_eq!(recover(&round), signer["address"].as_str().unwrap().to_lowercase());
    assert_eq!(signer["domain"], round["typed_data"]["domain"]);

    let sources = app.get(&format!("/v1/oracle/sources?feed={FEED}"), None).await.body;
    let quotes = sources["sources"]["quotes"].as_array().unwrap();
    let outliers = quotes.iter().filter(|q| q["excluded"] == "outlier").count();
    assert_eq!(outliers, 2, "{sources}");

    let curve = app.get(&format!("/v1/oracle/curve?feed={FEED}"), None).await.body;
    let points = curve["points"].as_array().unwrap();
    let tenors: Vec<&str> = points.iter().map(|p| p["tenor"].as_str().unwrap()).collect();
    assert_eq!(tenors, ["spot", "1w", "1m", "3m", "1y"]);
    // The asks run 30 days: no capacity for 3 months or a year.
    assert!(points[1]["price"].is_string() && points[4]["price"].is_null(), "{curve}");

    // Unchanged inputs within the heartbeat: no new round. A move past 1%: a new round.
    tick(&app.state, Utc::now()).await.unwrap();
    assert_eq!(latest(&app).await["round_id"], round["round_id"]);
    asks(&app, &["1.5", "1.5", "1.5", "1.5", "1.5"]).await;
    tick(&app.state, Utc::now()).await.unwrap();
    let moved = latest(&app).await;
    assert_eq!(moved["round_id"].as_i64().unwrap(), round["round_id"].as_i64().unwrap() + 1);
    let history = app.get(&format!("/v1/oracle/history?feed={FEED}"), None).await.body;
    assert_eq!(history["rounds"].as_array().unwrap().len(), 2);
    let at = round["published_at"].as_str().unwrap();
    let then = app.get(&format!("/v1/oracle/history?feed={FEED}&at={}", at.replace('+', "%2B")), None).await.body;
    assert_eq!(then["rounds"][0]["round_id"], round["round_id"]);
}

#[tokio::test]
async fn too_few_sources_publish_no_price_and_unknown_feeds_are_404() {
    let app = spawn_app().await;
    app.get(&format!("/v1/oracle/prices/latest?feed={FEED}"), None).await.assert_error(404, "not_found");
    asks(&app, &["1.0", "1.1"]).await;
    tick(&app.state, Utc::now()).await.unwrap();
    let round = latest(&app).await;
    assert_eq!(round["status"], "insufficient_sources");
    assert!(round["price"].is_null());
    assert_eq!(round["typed_data"]["message"]["status"], 2);
    assert_eq!(round["typed_data"]["message"]["price"], "0");
    let feeds = app.get("/v1/oracle/feeds", None).await.body;
    let feed = feeds["feeds"].as_array().unwrap().iter().find(|f| f["feed_id"] == FEED).unwrap().clone();
    assert_eq!(feed["status"], "insufficient_sources");
    app.get("/v1/oracle/prices/latest?feed=nope", None).await.assert_error(404, "not_found");
    app.get("/v1/oracle/prices/latest", None).await.assert_error(422, "invalid_query");
}

#[tokio::test]
async fn a_round_past_valid_until_reads_stale_and_halted_feeds_carry_no_price() {
    let mut config = serve_config();
    config.oracle.oracle_heartbeat_secs = 1;
    let app = spawn_app_with(config).await;
    asks(&app, &["1.0", "1.01", "1.02"]).await;
    tick(&app.state, Utc::now()).await.unwrap();
    assert_eq!(latest(&app).await["status"], "ok");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let stale = latest(&app).await;
    assert_eq!(stale["status"], "stale", "nobody published for two heartbeats: {stale}");

    let admin = app.admin_token().await;
    let r = app.post("/v1/admin/oracle/halt", Some(&admin), json!({"feed_id": FEED, "halted": true, "reason": "incident"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    tick(&app.state, Utc::now()).await.unwrap();
    let halted = latest(&app).await;
    assert_eq!(halted["status"], "halted");
    assert!(halted["price"].is_null());
    let (_, buyer) = app.account("b", "buyer").await;
    app.post("/v1/admin/oracle/halt", Some(&buyer), json!({"feed_id": FEED, "halted": false})).await.assert_error(403, "forbidden");
}

/// A provider's price-list server on 127.0.0.1, failing in every way on purpose.
async fn provider_server() -> String {
    use axum::routing::get;
    let list = json!({"machines": [
        {"id": "h100", "hardware": "1x H100", "hourly_usd": "3.60", "proofs_per_hour": {"12": 3000, "14": 900}},
        {"id": "4090", "hourly_usd": "0.80", "proofs_per_hour": {"12": 700}}
    ]});
    let app = axum::Router::new()
        .route("/ok", get(move || async move { axum::Json(list.clone()) }))
        .route("/slow", get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "{}"
        }))
        .route("/malformed", get(|| async { "{\"machines\": [{\"id\": 5}" }))
        .route("/error", get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn failing_providers_are_excluded_with_a_reason_while_the_feed_keeps_publishing() {
    let base = provider_server().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = std::env::temp_dir().join(format!("pcx-providers-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &file,
        json!({"providers": [
            {"name": "good", "kind": "http", "url": format!("{base}/ok")},
            {"name": "slow", "kind": "http", "url": format!("{base}/slow")},
            {"name": "garbled", "kind": "http", "url": format!("{base}/malformed")},
            {"name": "broken", "kind": "http", "url": format!("{base}/error")},
            {"name": "down", "kind": "http", "url": format!("http://127.0.0.1:{closed}/prices")},
            {"name": "list", "kind": "static", "machines": [{"id": "a100", "hourly_usd": "1.10", "proofs_per_hour": {"12": 1000}}]}
        ]})
        .to_string(),
    )
    .unwrap();
    let mut config = serve_config();
    config.oracle.oracle_providers = Some(file.clone());
    let app = spawn_app_with(config).await;
    asks(&app, &["0.0011", "0.0013"]).await;
    tick(&app.state, Utc::now()).await.unwrap();
    let round = latest(&app).await;
    assert_eq!(round["status"], "ok", "{round}");
    let sources = app.get(&format!("/v1/oracle/sources?feed={FEED}"), None).await.body;
    let providers = sources["sources"]["providers"].as_array().unwrap();
    let reason = |name: &str| {
        let p = providers.iter().find(|p| p["provider"] == name).unwrap();
        (p["status"].as_str().unwrap().to_owned(), p["reason"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(reason("good").0, "ok");
    assert_eq!(reason("list").0, "ok");
    assert!(reason("slow").1.starts_with("timeout"), "{:?}", reason("slow"));
    assert!(reason("garbled").1.starts_with("malformed"), "{:?}", reason("garbled"));
    assert_eq!(reason("broken").1, "http status 500");
    assert!(reason("down").1.starts_with("unreachable"), "{:?}", reason("down"));
    // 3.60 / 3000 = 0.0012 per proof from the H100 line: normalised to a price per proof.
    let quotes = sources["sources"]["quotes"].as_array().unwrap();
    assert!(quotes.iter().any(|q| q["quote"]["source"] == "external:good/h100" && q["quote"]["price"] == "0.0012"), "{sources}");
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn subscribers_receive_rounds_over_sse() {
    let app = spawn_app().await;
    asks(&app, &["1.0", "1.01", "1.02"]).await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let response = app.http.get(app.url("/v1/oracle/stream")).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        subscribers.push(response);
    }
    tick(&app.state, Utc::now()).await.unwrap();
    for mut response in subscribers {
        let mut seen = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !seen.contains(&format!("\"feed_id\":\"{FEED}\"")) {
            let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("no round within 10 s").unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(seen.contains("event: round"), "{seen}");
    }
}
