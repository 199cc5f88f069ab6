//! The ledger over real HTTP: deposits, withdrawals, listings, the summary, concurrency and
//! idempotency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::spawn_app;
use serde_json::json;

#[tokio::test]
async fn deposit_withdraw_and_read_back_the_ledger() {
    let app = spawn_app().await;
    let (id, token) = app.account("rollup-a", "buyer").await;
    let admin = app.admin_token().await;

    let dep = app
        .post("/v1/admin/deposits", Some(&admin), json!({"account_id": id, "amount": "100.25", "reference": "0xabc"}))
        .await;
    assert_eq!(dep.status, 201, "{}", dep.body);
    assert_eq!(dep.body["balances"]["available"], "100.25");

    let wd = app.post("/v1/withdrawals", Some(&token), json!({"amount": "30.000001"})).await;
    assert_eq!(wd.status, 201, "{}", wd.body);
    assert_eq!(wd.body["amount"], "30.000001");
    assert_eq!(wd.body["balances"]["available"], "70.249999");

    let balances = app.balances(&token).await;
    assert_eq!(balances, json!({"available": "70.249999", "escrow": "0", "bonded": "0"}));

    let ledger = app.get("/v1/accounts/me/ledger", Some(&token)).await;
    assert_eq!(ledger.status, 200);
    let entries = ledger.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "withdrawal");
    assert_eq!(entries[0]["amount"], "-30.000001");
    assert_eq!(entries[0]["account"], "available");
    let withdrawal_id = wd.body["withdrawal_id"].as_str().unwrap();
    assert_eq!(entries[0]["reference"], format!("withdrawal:{withdrawal_id}"));
    assert_eq!(entries[1]["kind"], "deposit");
    assert_eq!(entries[1]["amount"], "100.25");
    assert!(entries[1]["reference"].as_str().unwrap().ends_with(":0xabc"));
    assert!(entries[1]["created_at"].as_str().unwrap().contains('T'));

    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true);
    assert_eq!(summary["totals"]["available"], "70.249999");
    assert_eq!(summary["totals"]["external"], "-70.249999");
    assert_eq!(summary["entry_count"], 2);
}

#[tokio::test]
async fn ledger_pages_do_not_lose_or_repeat_lines() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    for i in 1..=7 {
        app.deposit(&id, &i.to_string()).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/accounts/me/ledger?limit=3".to_owned();
    loop {
        let page = app.get(&path, Some(&token)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for e in page.body["entries"].as_array().unwrap() {
            seen.push(e["amount"].as_str().unwrap().to_owned());
        }
        match page.body["next_before"].as_i64() {
            Some(before) => path = format!("/v1/accounts/me/ledger?limit=3&before={before}"),
            None => break,
        }
    }
    assert_eq!(seen, ["7", "6", "5", "4", "3", "2", "1"]);
    app.get("/v1/accounts/me/ledger?limit=0", Some(&token)).await.assert_error(422, "invalid_query");
    app.get("/v1/accounts/me/ledger?limit=abc", Some(&token)).await.assert_error(422, "invalid_query");
}

#[tokio::test]
async fn twenty_concurrent_withdrawals_of_10_from_70_give_exactly_7() {
    let app = spawn_app().await;
    let (id, token) = app.account("racer", "buyer").await;
    app.deposit(&id, "70").await;

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = app.http.clone();
        let url = app.url("/v1/withdrawals");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let r = http.post(url).bearer_auth(token).json(&json!({"amount": "10"})).send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => ok += 1,
            409 => {
                assert_eq!(body["error"]["code"], "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, refused), (7, 13));
    assert_eq!(app.balances(&token).await["available"], "0");
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true);
    assert_eq!(summary["entry_count"], 8);
}

#[tokio::test]
async fn overdraft_is_refused_whole_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    app.deposit(&id, "5").await;
    let reply = app.post("/v1/withdrawals", Some(&token), json!({"amount": "5.000001"})).await;
    reply.assert_error(409, "insufficient_funds");
    assert_eq!(app.balances(&token).await["available"], "5");
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries").fetch_one(&app.db).await.unwrap();
    assert_eq!(entries, 1, "the refused withdrawal must not leave an entry");
}

#[tokio::test]
async fn amounts_with_more_than_six_decimals_or_not_positive_are_422() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    let admin = app.admin_token().await;
    for bad in ["1.0000001", "0", "-5", "1e3", "ten", ""] {
        app.post("/v1/admin/deposits", Some(&admin), json!({"account_id": id, "amount": bad}))
            .await
            .assert_error(422, "invalid_amount");
        app.post("/v1/withdrawals", Some(&token), json!({"amount": bad})).await.assert_error(422, "invalid_amount");
    }
    // A number instead of a decimal string is a typing error.
    app.post("/v1/withdrawals", Some(&token), json!({"amount": 5})).await.assert_error(422, "invalid_body");
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries").fetch_one(&app.db).await.unwrap();
    assert_eq!(entries, 0);
}

#[tokio::test]
async fn deposit_to_an_unknown_account_is_404() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.post(
        "/v1/admin/deposits",
        Some(&admin),
        json!({"account_id": uuid::Uuid::new_v4(), "amount": "1"}),
    )
    .await
    .assert_error(404, "not_found");
    app.post("/v1/admin/deposits", Some(&admin), json!({"account_id": "not-a-uuid", "amount": "1"}))
        .await
        .assert_error(422, "invalid_body");
}

#[tokio::test]
async fn idempotency_key_replays_the_stored_response_and_moves_money_once() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    app.deposit(&id, "50").await;

    let first = app.post_with_key("/v1/withdrawals", Some(&token), Some("wd-1"), json!({"amount": "10"})).await;
    assert_eq!(first.status, 201);
    let again = app.post_with_key("/v1/withdrawals", Some(&token), Some("wd-1"), json!({"amount": "10"})).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "a replay returns the stored response");
    assert_eq!(app.balances(&token).await["available"], "40");

    let other = app.post_with_key("/v1/withdrawals", Some(&token), Some("wd-1"), json!({"amount": "11"})).await;
    other.assert_error(422, "idempotency_key_reused");
    assert_eq!(app.balances(&token).await["available"], "40");

    // Keys are scoped per caller: another account may use the same key.
    let (id2, token2) = app.account("c", "buyer").await;
    app.deposit(&id2, "10").await;
    let theirs = app.post_with_key("/v1/withdrawals", Some(&token2), Some("wd-1"), json!({"amount": "10"})).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.body["withdrawal_id"], first.body["withdrawal_id"]);
}

#[tokio::test]
async fn a_failed_request_stores_nothing_under_its_key() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    let refused = app.post_with_key("/v1/withdrawals", Some(&token), Some("k"), json!({"amount": "10"})).await;
    refused.assert_error(409, "insufficient_funds");
    app.deposit(&id, "10").await;
    let retried = app.post_with_key("/v1/withdrawals", Some(&token), Some("k"), json!({"amount": "10"})).await;
    assert_eq!(retried.status, 201, "{}", retried.body);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_move_money_once() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    let admin = app.admin_token().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let http = app.http.clone();
        let url = app.url("/v1/admin/deposits");
        let admin = admin.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(admin)
                .header("Idempotency-Key", "dep-42")
                .json(&json!({"account_id": id, "amount": "25"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 201, "{body}");
        bodies.push(body["deposit_id"].clone());
    }
    bodies.dedup();
    assert_eq!(bodies.len(), 1, "every replay names the one deposit");
    assert_eq!(app.balances(&token).await["available"], "25");
    assert_eq!(app.summary().await["balanced"], true);
}

#[tokio::test]
async fn the_database_refuses_unbalanced_entries_and_rewrites_of_history() {
    let app = spawn_app().await;
    let (id, _) = app.account("b", "buyer").await;
    app.deposit(&id, "10").await;
    let mut tx = app.db.begin().await.unwrap();
    let entry: i64 = sqlx::query_scalar("INSERT INTO journal_entries (kind, reference) VALUES ('deposit', 'x') RETURNING id")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let posted = sqlx::query("INSERT INTO postings (entry_id, ledger_account_id, amount) SELECT $1, id, 5 FROM ledger_accounts WHERE kind = 'available' LIMIT 1")
        .bind(entry)
        .execute(&mut *tx)
        .await;
    let refused = posted.expect_err("an entry that does not sum to zero is refused when its statement ends");
    assert!(pcx_exchange::store::is_constraint_violation(&refused, "postings_entry_balanced"), "{refused}");
    // Its transaction is aborted: committing it rolls back, and nothing of the entry remains.
    let _ = tx.commit().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE id = $1").bind(entry).fetch_one(&app.db).await.unwrap();
    assert_eq!(left, 0, "nothing half-written stays behind");
    // Two statements that each leave the entry unbalanced are refused too, at the first.
    let mut tx = app.db.begin().await.unwrap();
    let entry: i64 = sqlx::query_scalar("INSERT INTO journal_entries (kind, reference) VALUES ('deposit', 'y') RETURNING id")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let half = sqlx::query("INSERT INTO postings (entry_id, ledger_account_id, amount) SELECT $1, id, -5 FROM ledger_accounts WHERE kind = 'external' LIMIT 1")
        .bind(entry)
        .execute(&mut *tx)
        .await;
    assert!(half.is_err(), "half an entry is refused");
    drop(tx);

    let rewrite = sqlx::query("UPDATE postings SET amount = amount * 2").execute(&app.db).await;
    assert!(rewrite.is_err(), "the journal is append-only");
    assert_eq!(app.summary().await["balanced"], true);
}

/// Fires `withdrawals` (token, amount, Idempotency-Key) at once; answers in the same order.
async fn withdraw_together(app: &common::TestApp, withdrawals: Vec<(String, &str, Option<&str>)>) -> Vec<(u16, serde_json::Value)> {
    let mut tasks = Vec::new();
    for (token, amount, key) in withdrawals {
        let (http, url) = (app.http.clone(), app.url("/v1/withdrawals"));
        let (amount, key) = (amount.to_owned(), key.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            let mut request = http.post(url).bearer_auth(token).json(&json!({ "amount": amount }));
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            let reply = request.send().await.unwrap();
            (reply.status().as_u16(), reply.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn decimal(value: &serde_json::Value) -> rust_decimal::Decimal {
    value.as_str().unwrap().parse().unwrap()
}

/// Withdrawals that arrive together are written by one transaction (group commit), and each is
/// still answered as if alone: its own entry, its account's balances right after it, and a
/// refused overdraft holds nobody else back.
#[tokio::test]
async fn concurrent_withdrawals_are_committed_together_and_each_answered_as_alone() {
    let app = spawn_app().await;
    let mut tokens = Vec::new();
    for i in 0..12 {
        let (id, token) = app.account(&format!("w{i}"), "buyer").await;
        app.deposit(&id, "10").await;
        tokens.push(token);
    }
    // Eight withdrawals of 3 from each balance of 10: three are paid, five refused, per account.
    let burst: Vec<(String, &str, Option<&str>)> =
        tokens.iter().flat_map(|t| std::iter::repeat_n((t.clone(), "3", None), 8)).collect();
    let answers = withdraw_together(&app, burst).await;
    let mut entry_ids = std::collections::HashSet::new();
    for (account, answers) in answers.chunks(8).enumerate() {
        let mut after: Vec<rust_decimal::Decimal> = Vec::new();
        for (status, body) in answers {
            match status {
                201 => {
                    assert!(entry_ids.insert(body["entry_id"].as_i64().unwrap()), "one entry per withdrawal: {body}");
                    assert_eq!(decimal(&body["amount"]), rust_decimal::Decimal::from(3));
                    after.push(decimal(&body["balances"]["available"]));
                }
                409 => assert_eq!(body["error"]["code"], "insufficient_funds"),
                other => panic!("account {account}: unexpected {other}: {body}"),
            }
        }
        after.sort();
        let expected: Vec<rust_decimal::Decimal> = [1, 4, 7].into_iter().map(rust_decimal::Decimal::from).collect();
        assert_eq!(after, expected, "account {account}: each answer shows the balance right after its own withdrawal");
        assert_eq!(decimal(&app.balances(&tokens[account]).await["available"]), rust_decimal::Decimal::ONE);
    }
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true);
    assert_eq!(summary["entry_count"], 12 + 36);
    // Fewer transactions than withdrawals: they were committed in groups.
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM journal_entries WHERE kind = 'withdrawal'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(transactions < 36, "36 withdrawals in {transactions} transactions");
}

#[tokio::test]
async fn concurrent_withdrawals_with_one_key_move_money_once() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;
    app.deposit(&id, "50").await;
    let answers = withdraw_together(&app, (0..10).map(|_| (token.clone(), "10", Some("same"))).collect()).await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["withdrawal_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the one withdrawal");
    assert_eq!(decimal(&app.balances(&token).await["available"]), rust_decimal::Decimal::from(40));
    assert_eq!(app.summary().await["balanced"], true);
}

/// A key reused with another amount is refused within a group, alone; the others are paid.
#[tokio::test]
async fn a_reused_key_in_a_group_is_refused_alone() {
    let app = spawn_app().await;
    let (id, token) = app.account("reuser", "buyer").await;
    app.deposit(&id, "10").await;
    let first = app.post_with_key("/v1/withdrawals", Some(&token), Some("k1"), json!({"amount": "1"})).await;
    assert_eq!(first.status, 201);
    let mut burst = vec![(token.clone(), "2", Some("k1")), (token.clone(), "1", Some("k1"))];
    let mut others = Vec::new();
    for i in 0..6 {
        let (id, other) = app.account(&format!("o{i}"), "buyer").await;
        app.deposit(&id, "5").await;
        burst.push((other.clone(), "5", Some("k1")));
        others.push(other);
    }
    let answers = withdraw_together(&app, burst).await;
    assert_eq!(answers[0].0, 422, "{}", answers[0].1);
    assert_eq!(answers[0].1["error"]["code"], "idempotency_key_reused");
    assert_eq!((answers[1].0, &answers[1].1), (201, &first.body), "the same request again gets the stored answer");
    for (status, body) in &answers[2..] {
        assert_eq!(*status, 201, "{body}");
    }
    assert_eq!(decimal(&app.balances(&token).await["available"]), rust_decimal::Decimal::from(9));
    for other in &others {
        assert_eq!(decimal(&app.balances(other).await["available"]), rust_decimal::Decimal::ZERO);
    }
}

/// A group whose transaction fails before its commit (here: another transaction stores one of
/// its keys first) is run again withdrawal by withdrawal, and each is answered as alone.
#[tokio::test]
async fn a_group_that_fails_before_its_commit_is_run_again_one_by_one() {
    let app = spawn_app().await;
    let (id, token) = app.account("raced", "buyer").await;
    app.deposit(&id, "10").await;
    let mut others = Vec::new();
    for i in 0..4 {
        let (id, other) = app.account(&format!("p{i}"), "buyer").await;
        app.deposit(&id, "10").await;
        others.push(other);
    }
    // Another request's answer under the same key, stored by a transaction still open.
    let mut racer = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response) VALUES ($1, 'race', $2, 201, '{}')",
    )
    .bind(&id)
    .bind(vec![0u8; 32])
    .execute(&mut *racer)
    .await
    .unwrap();
    let burst: Vec<(String, &str, Option<&str>)> = std::iter::once((token.clone(), "4", Some("race")))
        .chain(others.iter().map(|o| (o.clone(), "4", None)))
        .collect();
    let answers = {
        let group = withdraw_together(&app, burst);
        tokio::pin!(group);
        // The group waits on the open transaction's key; let it commit.
        tokio::select! {
            _ = &mut group => panic!("the group cannot commit before the racing key does"),
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
        racer.commit().await.unwrap();
        group.await
    };
    assert_eq!(answers[0].0, 422, "{}", answers[0].1);
    assert_eq!(answers[0].1["error"]["code"], "idempotency_key_reused");
    for (status, body) in &answers[1..] {
        assert_eq!(*status, 201, "{body}");
    }
    assert_eq!(decimal(&app.balances(&token).await["available"]), rust_decimal::Decimal::from(10), "the raced key moved nothing");
    for other in &others {
        assert_eq!(decimal(&app.balances(other).await["available"]), rust_decimal::Decimal::from(6));
    }
    assert_eq!(app.summary().await["balanced"], true);
}
