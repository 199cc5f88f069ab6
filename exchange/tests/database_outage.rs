//! A database outage under a running market: the real `pcx serve` on a private PostgreSQL
//! cluster (its own, started by pcx under a temporary data directory, so the machine's shared
//! server is untouched), a prover agent and a buyer's 10 s-cadence contract. The test stops the
//! cluster for a while and starts it again. Meanwhile the API answers 503 `unavailable` with
//! `Retry-After` at once (not after the pool's 10 s acquire timeout), `/health` says the database
//! does not answer, and the latest oracle price is still served from memory; afterwards pcx
//! recovers by itself (the same process), every slot ends once, nobody is slashed for the
//! exchange's downtime, and the ledger balances.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{class_with, offer_class, prover_with_key, Client};
use serde_json::Value;

const EVERY: i64 = 10;
const SLOTS: i64 = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Exchange {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // SIGTERM lets pcx stop its private cluster.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let give_up = Instant::now() + Duration::from_secs(30);
        while Instant::now() < give_up && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("pg_ctl").exists()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    versions.pop().expect("PostgreSQL's binaries under /usr/lib/postgresql")
}

/// Runs `pg_ctl` on the private cluster as the user it runs as (`postgres` when we are root).
fn pg_ctl(cluster: &Path, args: &[&str]) {
    let pg_ctl = postgres_bin_dir().join("pg_ctl");
    let mut command = match nix_is_root() {
        true => {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        }
        false => Command::new(&pg_ctl),
    };
    let status = command.arg("-D").arg(cluster).args(args).stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "pg_ctl {args:?} failed");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The status of `/health`, 0 while nothing answers.
async fn health(http: &reqwest::Client, client: &Client) -> u16 {
    http.get(client.url("/health")).timeout(Duration::from_secs(10)).send().await.map_or(0, |r| r.status().as_u16())
}

async fn status_of(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let mut request = http.get(url).timeout(Duration::from_secs(30));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body, started.elapsed())
}

#[tokio::test]
async fn a_database_restart_is_503_with_retry_after_then_recovered_without_a_restart() {
    let data_dir = std::env::temp_dir().join(format!("pcx-outage-{}-{}", std::process::id(), Utc::now().timestamp_micros()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let (port, pg_port) = (free_port(), free_port());
    let child = common::pcx_serve(port)
        .env_remove("DATABASE_URL")
        // Nothing answers there: pcx makes its own cluster under the data directory.
        .env("PCX_EMBEDDED_PROBE", format!("127.0.0.1:{}", free_port()))
        .env("PCX_EMBEDDED_PORT", pg_port.to_string())
        .env("PCX_DATA_DIR", &data_dir)
        .env("PCX_JWT_SECRET", common::JWT_SECRET)
        .env("PCX_MIN_CADENCE_SECS", "10")
        .env("PCX_SETTLEMENT_TICK_MS", "200")
        .env("PCX_OUTAGE_AFTER_SECS", "3")
        .env("PCX_ORACLE_TICK_MS", "500")
        .env("PCX_ORACLE_HEARTBEAT_SECS", "5")
        .env("PCX_DEV_KEYS", "true")
        .spawn()
        .unwrap();
    let mut exchange = Exchange { child, data_dir: data_dir.clone() };
    let cluster = data_dir.join("postgres");
    let http = reqwest::Client::new();
    let client = Client { base: format!("http://127.0.0.1:{port}"), http: http.clone() };
    let give_up = Instant::now() + Duration::from_secs(120);
    while health(&http, &client).await != 200 {
        assert!(exchange.child.try_wait().unwrap().is_none(), "pcx serve exited");
        assert!(Instant::now() < give_up, "pcx serve did not come up on its private cluster");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let class = class_with(10, 20);
    let (_alice, _, alice_key) = prover_with_key(&client, "alice", "1000").await;
    offer_class(&client, &client.token(&alice_key).await, class.clone(), "0.01", 360, 2).await;
    let (buyer_id, buyer) = client.account("rollup", "buyer").await;
    client.deposit(&buyer_id, "10").await;
    let _a = common::run_test_agent(&client.base, &alice_key, None, common::common_keys_dir());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let contract = common::buy_short_contract(&client, &buyer, &class, Utc::now() + chrono::Duration::seconds(5), EVERY, SLOTS, 0).await;
    let feed = "groth16-bn254:hash-chain:10:60";

    // The first slot is delivered; then the database goes away for a while.
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client.get(&format!("/v1/contracts/{contract}/slots?limit=1"), Some(&buyer)).await;
        if r.body["slots"][0]["state"] == "delivered" {
            break;
        }
        assert!(Instant::now() < give_up, "no delivery before the outage: {}", r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pg_ctl(&cluster, &["-m", "fast", "-w", "stop"]);
    // Requests sent before pcx notices wait for a connection the pool cannot open: they are
    // answered 503 as soon as pcx notices, not when the database returns or the pool gives up.
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, buyer) = (http.clone(), client.url("/v1/accounts/me/balances"), buyer.clone());
            tokio::spawn(async move { status_of(&http, &url, Some(&buyer)).await })
        })
        .collect();
    // Withdrawals too (group-committed): answered 503, they must move nothing, also when their
    // group gets a connection after the database returns.
    let withdrawals: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, buyer) = (http.clone(), client.url("/v1/withdrawals"), buyer.clone());
            tokio::spawn(async move {
                let reply = http.post(url).bearer_auth(buyer).json(&serde_json::json!({"amount": "0.5"})).send().await.unwrap();
                (reply.status().as_u16(), reply.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // pcx notices (it probes every 500 ms) and says so on /health.
    let give_up = Instant::now() + Duration::from_secs(10);
    while health(&http, &client).await != 503 {
        assert!(Instant::now() < give_up, "/health did not notice the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for request in in_flight {
        let (status, retry_after, body, took) = request.await.unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "in flight at the outage: {body}");
        assert!(retry_after.is_some() && took < Duration::from_secs(5), "in flight at the outage: {took:?}, {retry_after:?}");
    }
    for withdrawal in withdrawals {
        let (status, body) = withdrawal.await.unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "a withdrawal at the outage: {body}");
    }
    let (status, retry_after, body, took) = status_of(&http, &client.url("/v1/accounts/me/balances"), Some(&buyer)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(retry_after.is_some(), "a 503 says when to retry");
    // Not after the pool's 10 s acquire timeout: the outage is known, the answer immediate.
    assert!(took < Duration::from_secs(5), "the 503 came after {took:?}");
    let (status, retry_after, body, _) = status_of(&http, &client.url("/health"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some());
    assert!(body["error"]["message"].as_str().unwrap().contains("database does not answer"), "{body}");
    let (status, _, body, _) = status_of(&http, &client.url(&format!("/v1/oracle/prices/latest?feed={feed}")), None).await;
    assert_eq!(status, 200, "the latest price is served from memory: {body}");
    for page in ["/", "/assets/app.js"] {
        let (status, ..) = status_of(&http, &client.url(page), None).await;
        assert_eq!(status, 200, "the market page's {page} is served from memory");
    }
    let metrics = http.get(client.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("\npcx_database_up 0\n"), "the outage shows on /metrics: {metrics}");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(exchange.child.try_wait().unwrap().is_none(), "pcx serve survived the outage");

    // The database returns; pcx recovers by itself.
    pg_ctl(&cluster, &["-l", &cluster.join("server.log").to_string_lossy(), "-o",
                       &format!("-c listen_addresses=127.0.0.1 -p {pg_port} -k {}", cluster.display()), "-w", "-t", "60", "start"]);
    let give_up = Instant::now() + Duration::from_secs(60);
    while health(&http, &client).await != 200 {
        assert!(Instant::now() < give_up, "pcx did not recover after the database returned");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, _, body, _) = status_of(&http, &client.url("/v1/accounts/me/balances"), Some(&buyer)).await;
    assert_eq!(status, 200, "{body}");
    // The lease is renewed at the lease loop's next turn (a third of its TTL), not at the first
    // answer from the database: wait for it, within a bound.
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http.get(client.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains("\npcx_database_up 1\n") && metrics.contains("\npcx_worker_lease_held 1\n") {
            break;
        }
        assert!(Instant::now() < give_up, "the lease was not held again 30 s after recovery: {metrics}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Every slot ends once; the slots the outage took are the exchange's, not the prover's.
    let list = common::wait_all_slots_final(&client, &buyer, &contract, SLOTS, Duration::from_secs(120)).await;
    let mut delivered = 0;
    for slot in &list {
        match (slot["state"].as_str().unwrap(), slot["reason"].as_str().unwrap()) {
            ("delivered", _) => delivered += 1,
            ("missed", "exchange_late" | "exchange_down") => {}
            (state, reason) => panic!("slot ended {state} ({reason}); only the outage may take a slot: {slot}"),
        }
    }
    assert!(delivered >= 2, "deliveries before and after the outage: {list:?}");
    let admin = client.admin_token().await;
    let summary = client.get("/v1/admin/ledger/summary", Some(&admin)).await;
    assert_eq!(summary.body["balanced"], true, "{}", summary.body);
    // Exactly once, straight from the ledger (pcx's private cluster, with the password it generated).
    let password = std::fs::read_to_string(data_dir.join("secrets/postgres_password")).unwrap();
    let url = format!("postgres://postgres:{}@127.0.0.1:{pg_port}/postgres", password.trim());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    common::assert_settled_once_without_slashes(&pool, SLOTS, delivered, "a database outage").await;
    let withdrawn: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_entries WHERE kind = 'withdrawal'").fetch_one(&pool).await.unwrap();
    assert_eq!(withdrawn, 0, "withdrawals answered 503 moved money");
    pool.close().await;
}
