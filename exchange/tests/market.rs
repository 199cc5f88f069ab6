//! Capacity forwards over real HTTP: stake, offers, discounts, quotes, contracts, slots, and the
//! race for the last units of capacity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::{class, hour, offer, prover, rfc, serve_config, spawn_app, spawn_app_with};
use serde_json::{json, Value};

async fn quote(app: &common::Client, token: &str, days: i64, every: u32, redundancy: u8) -> common::Reply {
    app.post(
        "/v1/quotes",
        Some(token),
        json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(days * 24)), "every_secs": every},
               "redundancy": redundancy}),
    )
    .await
}

fn dec(v: &Value) -> rust_decimal::Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn stake_and_unstake_move_funds_between_available_and_bonded() {
    let app = spawn_app().await;
    let (id, token) = app.account("p", "prover").await;
    app.deposit(&id, "1000").await;
    let r = app.post("/v1/provers/stake", Some(&token), json!({"amount": "600"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["balances"], json!({"available": "400", "escrow": "0", "bonded": "600"}));
    let r = app.post("/v1/provers/unstake", Some(&token), json!({"amount": "100"})).await;
    assert_eq!(r.body["balances"], json!({"available": "500", "escrow": "0", "bonded": "500"}));
    app.post("/v1/provers/unstake", Some(&token), json!({"amount": "501"})).await.assert_error(409, "stake_locked");
    app.post("/v1/provers/stake", Some(&token), json!({"amount": "501"})).await.assert_error(409, "insufficient_funds");

    let (_, buyer) = app.account("b", "buyer").await;
    app.post("/v1/provers/stake", Some(&buyer), json!({"amount": "1"})).await.assert_error(403, "forbidden");
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn offers_are_validated_backed_by_stake_and_listed_in_the_public_book() {
    let app = spawn_app().await;
    let (prover_id, token) = prover(&app, "p", "1000").await;
    let good = json!({"proof_class": class(14), "window_start": rfc(hour(0)), "window_end": rfc(hour(24 * 30)),
                      "proofs_per_hour": 2, "price_per_proof": "1.25",
                      "tiers": [{"from_proofs": 100, "price_per_proof": "1.1"}, {"from_proofs": 1000, "price_per_proof": "1"}]});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases = [
        (with("proof_class", json!({"system": "groth16-bn254", "circuit": "sha256", "size_log2": 12, "deadline_secs": 600})), 422, "invalid_proof_class"),
        (with("proof_class", class(21)), 422, "invalid_proof_class"),
        (with("proof_class", json!({"system": "plonk", "circuit": "hash-chain", "size_log2": 12, "deadline_secs": 600})), 422, "invalid_body"),
        (with("window_end", json!(rfc(hour(-1)))), 422, "invalid_window"),
        (with("window_end", json!(rfc(hour(24 * 365 * 6)))), 422, "invalid_window"),
        (json!({"proof_class": class(14), "window_start": rfc(hour(-30)), "window_end": rfc(hour(-10)), "proofs_per_hour": 1, "price_per_proof": "1"}), 422, "window_in_past"),
        (with("price_per_proof", json!("0")), 422, "invalid_amount"),
        (with("price_per_proof", json!("1.0000001")), 422, "invalid_amount"),
        (with("proofs_per_hour", json!(0)), 422, "invalid_input"),
        (with("tiers", json!([{"from_proofs": 100, "price_per_proof": "1.5"}])), 422, "invalid_tiers"),
        (with("proofs_per_hour", json!(50)), 409, "insufficient_stake"),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v1/offers", Some(&token), body.clone()).await;
        r.assert_error(status, code);
    }
    let (_, buyer) = app.account("b", "buyer").await;
    app.post("/v1/offers", Some(&buyer), good.clone()).await.assert_error(403, "forbidden");

    let created = app.post("/v1/offers", Some(&token), good.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["price_per_proof"], "1.25");
    assert_eq!(created.body["tiers"][1]["price_per_proof"], "1");
    let id = created.body["offer_id"].as_i64().unwrap();

    let book = app.get("/v1/offers?circuit=hash-chain&size_log2=14", None).await;
    assert_eq!(book.status, 200);
    let offers = book.body["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["prover_id"], prover_id.as_str());
    assert_eq!(app.get("/v1/offers?size_log2=12", None).await.body["offers"].as_array().unwrap().len(), 0);
    app.get("/v1/offers?size_log2=x", None).await.assert_error(422, "invalid_query");

    let (_, other) = prover(&app, "q", "10").await;
    app.http.delete(app.url(&format!("/v1/offers/{id}"))).bearer_auth(&other).send().await.unwrap();
    let still = app.get("/v1/offers", None).await;
    assert_eq!(still.body["offers"].as_array().unwrap().len(), 1, "another prover cannot cancel it");
    let cancelled = app.http.delete(app.url(&format!("/v1/offers/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(cancelled.json::<Value>().await.unwrap()["status"], "cancelled");
    assert_eq!(app.get("/v1/offers", None).await.body["offers"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_year_quotes_lower_per_proof_than_a_week_and_no_higher_than_the_cheapest_ask() {
    let app = spawn_app().await;
    for (name, price) in [("p1", "1.5"), ("p2", "1.2"), ("p3", "1.35")] {
        let (_, token) = prover(&app, name, "1000").await;
        offer(&app, &token, price, 2, 400).await;
    }
    let (_, buyer) = app.account("b", "buyer").await;
    let discounts = app.get("/v1/discounts", None).await;
    assert_eq!(discounts.status, 200);
    assert!(!discounts.body["volume"].as_array().unwrap().is_empty());

    let week = quote(&app, &buyer, 7, 3600, 1).await;
    assert_eq!(week.status, 201, "{}", week.body);
    let year = quote(&app, &buyer, 365, 3600, 1).await;
    assert_eq!(year.status, 201, "{}", year.body);
    assert_eq!(week.body["slot_count"], 168);
    assert_eq!(year.body["slot_count"], 8760);
    let (week_price, year_price) = (dec(&week.body["price_per_proof"]), dec(&year.body["price_per_proof"]));
    assert!(year_price < week_price, "year {year_price} vs week {week_price}");
    assert!(week_price <= "1.2".parse().unwrap(), "no higher than the cheapest ask: {week_price}");
    assert!(year.body["discount_bps"].as_u64().unwrap() > week.body["discount_bps"].as_u64().unwrap());

    // One prover covers the year: one block, the cheapest as primary, the next cheapest as backup.
    let allocation = year.body["allocation"].as_array().unwrap();
    assert_eq!(allocation.len(), 1);
    assert_eq!(allocation[0]["first_slot"], 0);
    assert_eq!(allocation[0]["end_slot"], 8760);
    // Totals add up: total = locked price x proofs; escrow is the first 24 hourly slots.
    let locked = dec(&allocation[0]["price_per_proof"]);
    assert_eq!(dec(&year.body["total"]), locked * rust_decimal::Decimal::from(8760));
    assert_eq!(dec(&year.body["escrow_required"]), locked * rust_decimal::Decimal::from(24));
    assert!(DateTime::parse_from_rfc3339(year.body["valid_until"].as_str().unwrap()).unwrap() > Utc::now());
}

#[tokio::test]
async fn buying_a_year_reserves_capacity_locks_escrow_and_computes_slots() {
    let app = spawn_app().await;
    let (p1, t1) = prover(&app, "p1", "1000").await;
    let (p2, t2) = prover(&app, "p2", "1000").await;
    offer(&app, &t1, "1", 1, 400).await;
    offer(&app, &t2, "1.1", 1, 400).await;
    let (buyer_id, buyer) = app.account("b", "buyer").await;
    app.deposit(&buyer_id, "100").await;

    let q = quote(&app, &buyer, 365, 3600, 1).await;
    assert_eq!(q.status, 201, "{}", q.body);
    let quote_id = q.body["quote_id"].as_str().unwrap().to_owned();
    let bought = app.post_with_key("/v1/contracts", Some(&buyer), Some("buy-1"), json!({"quote_id": quote_id})).await;
    assert_eq!(bought.status, 201, "{}", bought.body);
    assert_eq!(bought.body["slot_count"], 8760);
    assert_eq!(bought.body["status"], "active");
    assert_eq!(bought.body["price_per_proof"], q.body["price_per_proof"]);
    let replay = app.post_with_key("/v1/contracts", Some(&buyer), Some("buy-1"), json!({"quote_id": quote_id})).await;
    assert_eq!(replay.body, bought.body, "an Idempotency-Key replay returns the same contract");
    app.post("/v1/contracts", Some(&buyer), json!({"quote_id": quote_id})).await.assert_error(409, "quote_already_accepted");

    let escrow = dec(&q.body["escrow_required"]);
    let balances = app.balances(&buyer).await;
    assert_eq!(dec(&balances["escrow"]), escrow);
    assert_eq!(dec(&balances["available"]), rust_decimal::Decimal::from(100) - escrow);
    let ledger = app.get("/v1/accounts/me/ledger", Some(&buyer)).await;
    let contract_id = bought.body["contract_id"].as_str().unwrap();
    assert!(ledger.body["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "escrow_lock"
        && e["reference"] == format!("contract:{contract_id}")));

    // Storage is per allocation block, not per slot.
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM contract_blocks) + (SELECT count(*) FROM reservations)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(rows, 3, "one block, one primary and one backup reservation");
    let rows_of_contract = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM contracts").fetch_one(&app.db).await.unwrap();
    assert_eq!(rows_of_contract, 1);

    let slots = app.get(&format!("/v1/contracts/{contract_id}/slots?from=0&limit=3"), Some(&buyer)).await;
    assert_eq!(slots.status, 200, "{}", slots.body);
    let list = slots.body["slots"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[1]["n"], 1);
    assert_eq!(list[0]["opens_at"].as_str().unwrap(), rfc(hour(0)).replace("+00:00", "Z"));
    let opens = DateTime::parse_from_rfc3339(list[1]["opens_at"].as_str().unwrap()).unwrap();
    let deadline = DateTime::parse_from_rfc3339(list[1]["deadline"].as_str().unwrap()).unwrap();
    assert_eq!((deadline - opens).num_seconds(), 600);
    assert_eq!(list[0]["primary"], p1.as_str());
    assert_eq!(list[0]["backups"], json!([p2]));
    assert_eq!(list[0]["state"], "scheduled");
    assert_eq!(slots.body["next_from"], 3);
    let last = app.get(&format!("/v1/contracts/{contract_id}/slots?from=8759&limit=10"), Some(&buyer)).await;
    assert_eq!(last.body["slots"].as_array().unwrap().len(), 1);
    assert!(last.body["next_from"].is_null());

    // Who may see it: its buyer, its provers, the operator; nobody else.
    let (_, stranger) = app.account("s", "buyer").await;
    app.get(&format!("/v1/contracts/{contract_id}"), Some(&stranger)).await.assert_error(404, "not_found");
    assert_eq!(app.get(&format!("/v1/contracts/{contract_id}"), Some(&t2)).await.status, 200);
    let admin = app.admin_token().await;
    assert_eq!(app.get(&format!("/v1/contracts/{contract_id}"), Some(&admin)).await.status, 200);
    let mine = app.get("/v1/contracts", Some(&buyer)).await;
    assert_eq!(mine.body["contracts"].as_array().unwrap().len(), 1);
    assert_eq!(app.get("/v1/contracts", Some(&stranger)).await.body["contracts"].as_array().unwrap().len(), 0);

    // p1's primary capacity is taken (each offer sells 1/h once as primary and once as backup), so
    // the same schedule again can only swap the roles; a third is beyond the book.
    let again = quote(&app, &buyer, 365, 3600, 1).await;
    assert_eq!(again.body["allocation"][0]["primary"]["prover_id"], p2.as_str());
    assert_eq!(again.body["allocation"][0]["backups"][0]["prover_id"], p1.as_str());
    app.deposit(&buyer_id, "100").await;
    let second = app.post("/v1/contracts", Some(&buyer), json!({"quote_id": again.body["quote_id"]})).await;
    assert_eq!(second.status, 201, "{}", second.body);
    quote(&app, &buyer, 365, 3600, 1).await.assert_error(409, "insufficient_capacity");
    quote(&app, &buyer, 365, 3600, 0).await.assert_error(409, "insufficient_capacity");
    // And p1's stake is locked by what it secures in the next 24 h: 2 x 24 slots x its locked price
    // as primary of the first contract, 2 x 24 x the second contract's price as its backup, and
    // 2 x 24 h x 1/h x 1.00 to back its offer.
    let first_price = dec(&q.body["allocation"][0]["price_per_proof"]);
    let second_price = dec(&again.body["allocation"][0]["price_per_proof"]);
    let locked = rust_decimal::Decimal::from(48) * (first_price + second_price) + rust_decimal::Decimal::from(48);
    let free = rust_decimal::Decimal::from(1000) - locked;
    let r = app.post("/v1/provers/unstake", Some(&t1), json!({"amount": (free + rust_decimal::Decimal::new(1, 6)).to_string()})).await;
    let message = r.assert_error(409, "stake_locked");
    assert!(message.contains(&format!("only {free} ")), "{message}");
    let r = app.post("/v1/provers/unstake", Some(&t1), json!({"amount": free.to_string()})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn a_purchase_that_cannot_pay_its_escrow_fails_whole() {
    let app = spawn_app().await;
    let (_, t1) = prover(&app, "p1", "1000").await;
    offer(&app, &t1, "1", 1, 30).await;
    let (buyer_id, buyer) = app.account("b", "buyer").await;
    app.deposit(&buyer_id, "5").await;
    let q = quote(&app, &buyer, 7, 3600, 0).await;
    let r = app.post("/v1/contracts", Some(&buyer), json!({"quote_id": q.body["quote_id"]})).await;
    r.assert_error(409, "insufficient_funds");
    assert!(r.body["error"]["hint"].as_str().unwrap().contains("deposit"));
    let rows: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM contracts) + (SELECT count(*) FROM reservations)")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing half-written stays behind");
    assert_eq!(app.balances(&buyer).await["available"], "5");
    // With funds, the same quote goes through.
    app.deposit(&buyer_id, "100").await;
    let ok = app.post("/v1/contracts", Some(&buyer), json!({"quote_id": q.body["quote_id"]})).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
}

#[tokio::test]
async fn an_expired_quote_is_refused_with_a_hint() {
    let mut config = serve_config();
    config.market.quote_ttl_secs = 1;
    let app = spawn_app_with(config).await;
    let (_, t1) = prover(&app, "p1", "1000").await;
    offer(&app, &t1, "1", 1, 30).await;
    let (buyer_id, buyer) = app.account("b", "buyer").await;
    app.deposit(&buyer_id, "100").await;
    let q = quote(&app, &buyer, 7, 3600, 0).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let r = app.post("/v1/contracts", Some(&buyer), json!({"quote_id": q.body["quote_id"]})).await;
    r.assert_error(409, "quote_expired");
    assert!(r.body["error"]["hint"].as_str().unwrap().contains("POST /v1/quotes"));
    app.post("/v1/contracts", Some(&buyer), json!({"quote_id": uuid::Uuid::new_v4()})).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn ten_buyers_racing_for_five_units_get_five_contracts_and_five_clean_409s() {
    let app = spawn_app().await;
    let (_, t1) = prover(&app, "p1", "10000").await;
    offer(&app, &t1, "1", 5, 30).await;
    let mut quotes = Vec::new();
    for i in 0..10 {
        let (id, token) = app.account(&format!("b{i}"), "buyer").await;
        app.deposit(&id, "100").await;
        let q = quote(&app, &token, 7, 3600, 0).await;
        assert_eq!(q.status, 201, "quotes reserve nothing, so all ten are quoted: {}", q.body);
        quotes.push((token, q.body["quote_id"].clone()));
    }
    let mut tasks = Vec::new();
    for (token, quote_id) in quotes {
        let http = app.http.clone();
        let url = app.url("/v1/contracts");
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).bearer_auth(token).json(&json!({"quote_id": quote_id})).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut won = 0;
    let mut lost = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => won += 1,
            409 => {
                assert_eq!(body["error"]["code"], "capacity_gone", "{body}");
                lost += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!((won, lost), (5, 5));
    let peak: i64 = sqlx::query_scalar(
        "SELECT max(load) FROM (SELECT sum(units_per_hour) AS load FROM reservations r
           JOIN generate_series((SELECT min(starts_at) FROM reservations), (SELECT max(ends_at) FROM reservations), interval '1 hour') h
             ON r.starts_at <= h AND h < r.ends_at GROUP BY h) loads",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(peak, 5);
    let escrowed: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_accounts WHERE kind = 'escrow' AND balance > 0")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(escrowed, 5, "only the winners have escrow locked");
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn malformed_quote_requests_say_what_to_fix() {
    let app = spawn_app().await;
    let (_, t1) = prover(&app, "p1", "1000").await;
    offer(&app, &t1, "1", 2, 30).await;
    let (_, buyer) = app.account("b", "buyer").await;
    let body = |start: DateTime<Utc>, end: DateTime<Utc>, every: u32| {
        json!({"proof_class": class(12), "schedule": {"start": rfc(start), "end": rfc(end), "every_secs": every}})
    };
    let cases = [
        (body(hour(5), hour(1), 3600), 422, "invalid_schedule"),
        (body(hour(0), hour(24), 5), 422, "cadence_too_short"),
        (body(hour(0), hour(24 * 365 * 6), 3600), 422, "term_too_long"),
        (body(hour(-48), hour(24), 3600), 422, "start_in_past"),
        (json!({"proof_class": class(22), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}}), 422, "invalid_proof_class"),
        (json!({"proof_class": class(12), "schedule": {"start": "yesterday", "end": rfc(hour(5)), "every_secs": 3600}}), 422, "invalid_body"),
        (json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "redundancy": 9}), 422, "invalid_input"),
        (json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "max_price_per_proof": "-1"}), 422, "invalid_amount"),
        (json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "min_reputation": "2"}), 422, "invalid_input"),
        // Capacity the book cannot give: a backup from a second prover, a price cap, a reputation bar.
        (json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "redundancy": 1}), 409, "insufficient_capacity"),
        (json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "redundancy": 0, "max_price_per_proof": "0.5"}), 409, "insufficient_capacity"),
        (json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "redundancy": 0, "min_reputation": "0.9"}), 409, "insufficient_capacity"),
        (json!({"proof_class": class(16), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "redundancy": 0}), 409, "insufficient_capacity"),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v1/quotes", Some(&buyer), body.clone()).await;
        let message = r.assert_error(status, code);
        assert!(!message.is_empty(), "{body}");
    }
    let ok = json!({"proof_class": class(12), "schedule": {"start": rfc(hour(0)), "end": rfc(hour(5)), "every_secs": 3600}, "redundancy": 0, "min_reputation": "0.5"});
    assert_eq!(app.post("/v1/quotes", Some(&buyer), ok.clone()).await.status, 201);
    app.post("/v1/quotes", Some(&t1), ok).await.assert_error(403, "forbidden");
}

/// The database's capacity trigger counts slots with its own SQL (`run_slots_between`,
/// `run_change_hours`); the allocator with `Schedule` and `SlotRun`. They must agree exactly, or
/// quotes would promise what purchases refuse (or the trigger let through an overbooking).
#[tokio::test]
async fn the_database_counts_slots_per_hour_as_the_allocator_does() {
    use pcx_capacity_reservation::capacity::SlotRun;
    use rand::{Rng, SeedableRng};
    let pool = common::fresh_database().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let base = chrono::DateTime::from_timestamp(1_900_000_800, 0).unwrap();
    for _ in 0..300 {
        let every: u32 = [10, 60, 420, 900, 1500, 3600, 5400, 7200, 86_400][rng.gen_range(0..9)];
        let slots: u64 = rng.gen_range(1..200);
        let start = base + chrono::Duration::milliseconds(rng.gen_range(0..20_000_000));
        let schedule = pcx_domain::Schedule {
            start,
            end: start + chrono::Duration::seconds(i64::from(every) * slots as i64),
            every_secs: every,
        };
        let run = SlotRun::of(&schedule, 0..slots, 1).unwrap();
        let from = start + chrono::Duration::seconds(rng.gen_range(-7200..200_000));
        let to = from + chrono::Duration::seconds(rng.gen_range(0..400_000));
        let counted: i64 = sqlx::query_scalar("SELECT run_slots_between($1, $2, $3, $4, $5)")
            .bind(start)
            .bind(i32::try_from(every).unwrap())
            .bind(slots as i64)
            .bind(from)
            .bind(to)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(counted as u64, run.proofs_opening_in(from, to), "slots of {schedule:?} in [{from}, {to})");
        let (h0, h1) = (pcx_capacity_reservation::capacity::floor_hour(from), pcx_capacity_reservation::capacity::floor_hour(to));
        let sql: Vec<DateTime<Utc>> =
            sqlx::query_scalar("SELECT h FROM run_change_hours($1, $2, $3, $4, $5) h ORDER BY h")
                .bind(start)
                .bind(i32::try_from(every).unwrap())
                .bind(slots as i64)
                .bind(h0)
                .bind(h1)
                .fetch_all(&pool)
                .await
                .unwrap();
        let mut rust = run.changes(h0, h1);
        rust.sort();
        rust.dedup();
        assert_eq!(sql, rust, "change hours of {schedule:?} in [{h0}, {h1})");
    }
}
