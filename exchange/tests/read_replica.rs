//! `DATABASE_READ_URL`: the public reads that may lag a moment (the book, oracle history) go to
//! the read replica, everything else to the primary. The "replica" here is a second database that
//! never receives the primary's changes, so each answer shows where it was read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{class_with, offer_class, prover_with_key, Client};

#[tokio::test]
async fn the_book_and_oracle_history_are_read_from_the_read_replica() {
    let (primary, primary_url) = common::fresh_database_with_url().await;
    let (replica, replica_url) = common::fresh_database_with_url().await;
    pcx_exchange::db::MIGRATOR.run(&replica).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = common::pcx_serve(port)
        .env("DATABASE_URL", &primary_url)
        .env("DATABASE_READ_URL", &replica_url)
        .env("PCX_JWT_SECRET", common::JWT_SECRET)
        .env("PCX_DEV_KEYS", "true")
        .env("PCX_ORACLE_TICK_MS", "200")
        .spawn()
        .unwrap();
    let client = Client { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
    let give_up = Instant::now() + Duration::from_secs(60);
    while client.http.get(client.url("/health")).send().await.map_or(0, |r| r.status().as_u16()) != 200 {
        assert!(Instant::now() < give_up, "pcx serve did not come up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Writes go to the primary; the book is read from the replica, which has not seen them.
    let (_prover, token, _) = prover_with_key(&client, "alice", "1000").await;
    offer_class(&client, &token, class_with(10, 600), "0.01", 10, 2).await;
    let in_primary: i64 = sqlx::query_scalar("SELECT count(*) FROM offers").fetch_one(&primary).await.unwrap();
    assert_eq!(in_primary, 1);
    let book = client.get("/v1/offers", None).await;
    assert_eq!((book.status.as_u16(), book.body["offers"].as_array().map(Vec::len)), (200, Some(0)), "{}", book.body);

    // The oracle publishes into the primary; its history is read from the replica.
    let feed = "groth16-bn254:hash-chain:10:600";
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let rounds: i64 = sqlx::query_scalar("SELECT count(*) FROM oracle_rounds WHERE feed_id = $1")
            .bind(feed)
            .fetch_one(&primary)
            .await
            .unwrap();
        if rounds > 0 {
            break;
        }
        assert!(Instant::now() < give_up, "no round published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let history = client.get(&format!("/v1/oracle/history?feed={feed}"), None).await;
    assert_eq!((history.status.as_u16(), history.body["rounds"].as_array().map(Vec::len)), (200, Some(0)), "{}", history.body);
    // The latest price is the oracle's own (memory), not a replica read.
    let latest = client.get(&format!("/v1/oracle/prices/latest?feed={feed}"), None).await;
    assert_eq!(latest.status, 200, "{}", latest.body);

    // Everything else reads the primary: the prover sees its offer in its own view of the market.
    let me = client.get("/v1/accounts/me", Some(&token)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let _ = child.kill();
    let _ = child.wait();
}
