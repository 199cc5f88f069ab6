//! Three `pcx serve` replicas on one fresh database, behind a small load balancer (a TCP proxy
//! that sends each connection to a live replica, as any balancer would), with real prover agents
//! and a buyer's 10 s-cadence contract. Replicas are killed with `kill -9` at random moments (the
//! worker-lease holder among them) and restarted. Every slot ends in one final state, each payment
//! and refund happens once, nobody is slashed, the ledger balances, the oracle's round ids run
//! without gaps or duplicates, and every replica's SSE subscribers receive the rounds whichever
//! replica published them.
//!
//! The same again with the replicas reaching PostgreSQL through PgBouncer in transaction mode
//! (`max_prepared_statements` set; their migrations and `LISTEN` on `DATABASE_DIRECT_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{class_with, offer_class, prover_with_key, Client};
use rand::Rng;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EVERY: i64 = 10;
const DEADLINE: u32 = 20;
const SLOTS: i64 = 10;
const REPLICAS: usize = 3;

struct Replica {
    port: u16,
    database_url: String,
    /// Set when `database_url` goes through a pooler: the database itself.
    direct_url: Option<String>,
    /// Shared by the replicas (as on one machine): the JWT secret and the oracle key they
    /// generate there on the fresh database's first start, racing.
    data_dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn start(&mut self) {
        let child = common::pcx_serve(self.port)
            .env("DATABASE_URL", &self.database_url)
            .env("DATABASE_DIRECT_URL", self.direct_url.as_deref().unwrap_or(""))
            .env_remove("PCX_JWT_SECRET")
            .env_remove("PCX_ORACLE_KEY")
            .env("PCX_DATA_DIR", &self.data_dir)
            .env("PCX_MIN_CADENCE_SECS", "10")
            .env("PCX_SETTLEMENT_TICK_MS", "200")
            .env("PCX_OUTAGE_AFTER_SECS", "3")
            .env("PCX_WORKER_LEASE_SECS", "3")
            .env("PCX_ORACLE_TICK_MS", "250")
            .env("PCX_ORACLE_HEARTBEAT_SECS", "2")
            .env("PCX_DEV_KEYS", "true")
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The load balancer: each connection goes to the next replica that accepts it.
async fn balancer(ports: Vec<u16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { continue };
            let start = next;
            next = next.wrapping_add(1);
            let ports = ports.clone();
            tokio::spawn(async move {
                for i in 0..ports.len() {
                    let port = ports[(start + i) % ports.len()];
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
                let _ = inbound.shutdown().await;
            });
        }
    });
    port
}

/// What one SSE connection to one replica received: (feed, round id) in order, and when it
/// connected and ended.
#[derive(Debug, Clone)]
struct Subscription {
    replica: usize,
    connected: DateTime<Utc>,
    ended: Option<DateTime<Utc>>,
    rounds: Vec<(String, i64)>,
}

/// Subscribes to `replica`'s stream again and again (it is killed now and then) until `stop`.
fn watch(replica: usize, port: u16, log: Arc<Mutex<Vec<Subscription>>>, stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        while !*stop.borrow() {
            let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if stream.write_all(b"GET /v1/oracle/stream HTTP/1.1\r\nHost: x\r\n\r\n").await.is_err() {
                continue;
            }
            let index = {
                let mut log = log.lock().unwrap();
                log.push(Subscription { replica, connected: Utc::now(), ended: None, rounds: Vec::new() });
                log.len() - 1
            };
            let mut lines = BufReader::new(stream).lines();
            let mut event = String::new();
            loop {
                let line = tokio::select! {
                    line = lines.next_line() => line,
                    () = tokio::time::sleep(Duration::from_secs(5)) => Ok(None),
                };
                let Ok(Some(line)) = line else { break };
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    if event == "round" {
                        let round: Value = serde_json::from_str(data).unwrap();
                        let entry = (round["feed_id"].as_str().unwrap().to_owned(), round["round_id"].as_i64().unwrap());
                        log.lock().unwrap()[index].rounds.push(entry);
                    }
                }
                if *stop.borrow() {
                    break;
                }
            }
            log.lock().unwrap()[index].ended = Some(Utc::now());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

async fn healthy(http: &reqwest::Client, replica: &Replica) -> Option<Value> {
    let r = http.get(replica.url("/health")).timeout(Duration::from_secs(2)).send().await.ok()?;
    (r.status() == 200).then_some(())?;
    r.json().await.ok()
}

async fn wait_healthy(http: &reqwest::Client, replica: &Replica) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while healthy(http, replica).await.is_none() {
        assert!(Instant::now() < give_up, "replica on {} did not come up", replica.port);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// PgBouncer in transaction mode in front of the test server, run as the `postgres` user when
/// the tests run as root (it refuses root). The settings pcx needs are the ones docs/DEPLOY.md
/// names: `pool_mode = transaction`, `max_prepared_statements` (sqlx prepares every query), and
/// `ignore_startup_parameters = extra_float_digits` (sqlx sends it at connect).
struct Pgbouncer {
    port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Pgbouncer {
    /// The binary: `PCX_TEST_PGBOUNCER` (`.ci/run` builds 1.24.1 with `.ci/pgbouncer.sh`), else
    /// what that script left in `target/`. `None` when there is none (outside CI the test says
    /// so and skips; in CI it fails).
    fn binary() -> Option<std::path::PathBuf> {
        let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ci-tools/pgbouncer/bin/pgbouncer");
        std::env::var_os("PCX_TEST_PGBOUNCER").map(std::path::PathBuf::from).or(Some(built)).filter(|p| p.is_file())
    }

    fn start(binary: &std::path::Path, database: &str) -> Pgbouncer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("pcx-pgbouncer-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let server: reqwest::Url = common::server_url().parse().unwrap();
        let config = format!(
            "[databases]\n{database} = host={} port={} dbname={database} user={}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = any\n\
             admin_users = {user}\npool_mode = transaction\nmax_prepared_statements = 200\n\
             ignore_startup_parameters = extra_float_digits\ndefault_pool_size = 20\nmax_client_conn = 500\n",
            server.host_str().unwrap(),
            server.port().unwrap_or(5432),
            server.username(),
            user = server.username(),
        );
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, config).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut command = std::process::Command::new(binary);
        if pcx_exchange::db::running_as_root() {
            // As the user itself (not through runuser, which a kill would not pass on).
            use std::os::unix::process::CommandExt;
            let name = std::ffi::CString::new("postgres").unwrap();
            #[allow(unsafe_code)]
            // SAFETY: getpwnam with a valid C string; the entry is read at once, before any other call.
            let (uid, gid) = unsafe {
                let entry = libc::getpwnam(name.as_ptr());
                assert!(!entry.is_null(), "no postgres user to run PgBouncer as");
                ((*entry).pw_uid, (*entry).pw_gid)
            };
            command.uid(uid).gid(gid);
        }
        let child = command.arg(&ini).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let give_up = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < give_up, "pgbouncer did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pgbouncer { port, dir, child }
    }

    /// `SHOW STATS` of `database` from the admin console: (transactions, server-side Parse messages,
    /// client Parse messages).
    fn stats(&self, database: &str) -> (u64, u64, u64) {
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "pgbouncer", "-A", "-F", "\t"])
            .args(["-c", "SHOW STATS"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let columns: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
        let row: Vec<&str> = lines.find(|l| l.starts_with(&format!("{database}\t"))).unwrap_or_default().split('\t').collect();
        let field = |name: &str| {
            let at = columns.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no {name} in SHOW STATS: {text}"));
            row.get(at).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        (field("total_xact_count"), field("total_server_parse_count"), field("total_client_parse_count"))
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_at_random_settle_every_slot_once_and_serve_the_same_rounds() {
    replicas_killed_at_random(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_through_pgbouncer_in_transaction_mode_settle_every_slot_once() {
    let Some(binary) = Pgbouncer::binary() else {
        assert!(std::env::var_os("CI").is_none(), "CI runs this test: .ci/run builds PgBouncer (.ci/pgbouncer.sh)");
        eprintln!("skipped: no PgBouncer (run .ci/pgbouncer.sh, or set PCX_TEST_PGBOUNCER)");
        return;
    };
    replicas_killed_at_random(Some(&binary)).await;
}

/// Starts three replicas (through PgBouncer started from `pgbouncer`, if given), kills them at
/// random under a running contract and checks the invariants of the module docs.
async fn replicas_killed_at_random(pgbouncer: Option<&std::path::Path>) {
    let (pool, url) = common::fresh_database_with_url().await;
    let database = url.rsplit('/').next().unwrap().to_owned();
    let pooler = pgbouncer.map(|binary| Pgbouncer::start(binary, &database));
    let (database_url, direct_url) = match &pooler {
        Some(pooler) => (format!("postgres://postgres@127.0.0.1:{}/{database}", pooler.port), Some(url.clone())),
        None => (url.clone(), None),
    };
    let http = reqwest::Client::new();
    let data_dir = std::env::temp_dir().join(format!("pcx-replicas-{}", uuid::Uuid::new_v4()));
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| Replica {
            port: free_port(),
            database_url: database_url.clone(),
            direct_url: direct_url.clone(),
            data_dir: data_dir.clone(),
            child: None,
        })
        .collect();
    // All three start at once on the fresh database: they race through the migrations, the
    // generated secrets, the setups and the lease.
    for replica in replicas.iter_mut() {
        replica.start();
    }
    for replica in &replicas {
        wait_healthy(&http, replica).await;
    }
    // One JWT secret and one oracle key for all: a token from one replica works on another, and
    // every replica signs rounds as the same oracle.
    let signers: Vec<Value> = futures_util::future::join_all(
        replicas.iter().map(|r| async { http.get(r.url("/v1/oracle/signer")).send().await.unwrap().json::<Value>().await.unwrap() }),
    )
    .await;
    assert!(signers.iter().all(|s| s["address"] == signers[0]["address"]), "one oracle signer: {signers:?}");
    let token = reqwest::Client::new()
        .post(replicas[0].url("/v1/auth/token"))
        .json(&json!({"api_key": common::ADMIN_KEY}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for replica in &replicas[1..] {
        let r = http.get(replica.url("/v1/admin/ledger/summary")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "a token from replica 0 works on {}", replica.port);
    }
    let balanced = balancer(replicas.iter().map(|r| r.port).collect()).await;
    let client = Client { base: format!("http://127.0.0.1:{balanced}"), http: http.clone() };

    let (stop_watching, watching) = tokio::sync::watch::channel(false);
    let subscriptions = Arc::new(Mutex::new(Vec::new()));
    for (i, replica) in replicas.iter().enumerate() {
        watch(i, replica.port, Arc::clone(&subscriptions), watching.clone());
    }

    let class = class_with(10, DEADLINE);
    let (_alice, _, alice_key) = prover_with_key(&client, "alice", "1000").await;
    let (_bob, _, bob_key) = prover_with_key(&client, "bob", "1000").await;
    for (key, price) in [(&alice_key, "0.008"), (&bob_key, "0.01")] {
        offer_class(&client, &client.token(key).await, class.clone(), price, 360, 2).await;
    }
    let (buyer_id, buyer) = client.account("rollup", "buyer").await;
    client.deposit(&buyer_id, "10").await;
    let _a = common::run_test_agent(&client.base, &alice_key, None, common::common_keys_dir());
    let _b = common::run_test_agent(&client.base, &bob_key, None, common::common_keys_dir());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Utc::now() + chrono::Duration::seconds(6);
    let end = start + chrono::Duration::seconds(EVERY * SLOTS);
    let contract = common::buy_short_contract(&client, &buyer, &class, start, EVERY, SLOTS, 1).await;

    // Kill a replica every few seconds while the contract runs: every other time the one that
    // holds the worker lease. Each comes back after a moment.
    let mut kills = Vec::new();
    let mut round = 0;
    while Utc::now() < end - chrono::Duration::seconds(5) {
        let pause = rand::thread_rng().gen_range(4_000..9_000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let mut holder = None;
        for (i, replica) in replicas.iter().enumerate() {
            if healthy(&http, replica).await.is_some_and(|h| h["holds_worker_lease"] == true) {
                holder = Some(i);
            }
        }
        let victim = match (round % 2, holder) {
            (0, Some(holder)) => holder,
            _ => rand::thread_rng().gen_range(0..REPLICAS),
        };
        replicas[victim].kill_9();
        kills.push((victim, holder == Some(victim), Utc::now()));
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(500..3_000))).await;
        replicas[victim].start();
        round += 1;
    }
    assert!(kills.iter().any(|(_, was_holder, _)| *was_holder), "the lease holder was killed at least once: {kills:?}");

    // Every slot settles, once.
    let list = common::wait_all_slots_final(&client, &buyer, &contract, SLOTS, Duration::from_secs(120)).await;
    for replica in &replicas {
        wait_healthy(&http, replica).await;
    }
    // Let every replica's subscribers hear rounds for a while after the last restart, then stop.
    let last_restart = kills.last().map_or(Utc::now(), |(_, _, at)| *at) + chrono::Duration::seconds(3);
    let listen_until = (last_restart + chrono::Duration::seconds(8)).max(Utc::now() + chrono::Duration::seconds(3));
    tokio::time::sleep((listen_until - Utc::now()).to_std().unwrap_or_default()).await;
    let stopped_at = Utc::now();
    stop_watching.send(true).unwrap();

    let mut delivered = 0;
    for slot in &list {
        match (slot["state"].as_str().unwrap(), slot["reason"].as_str().unwrap()) {
            ("delivered", _) => delivered += 1,
            ("missed", "exchange_late" | "exchange_down") => {}
            (state, reason) => panic!("slot ended {state} ({reason}) with two honest provers: {slot}; kills {kills:?}"),
        }
    }
    assert!(delivered >= SLOTS / 2, "most slots delivered through the kills: {list:?}");
    common::assert_settled_once_without_slashes(&pool, SLOTS, delivered, &format!("kills {kills:?}")).await;
    let summary = client.get("/v1/admin/ledger/summary", Some(&client.admin_token().await)).await;
    assert_eq!(summary.body["balanced"], true, "{}", summary.body);
    assert_eq!(dec(&summary.body["totals"]["escrow"]), Decimal::ZERO, "all escrow paid out or refunded");

    // The oracle: per feed, round ids 1, 2, 3, ... with no gap (no duplicate: the primary key), in
    // publication order, whichever replica published them.
    let feeds: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT feed_id, count(*), min(round_id), max(round_id) FROM oracle_rounds GROUP BY feed_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!feeds.is_empty());
    for (feed, count, min, max) in &feeds {
        assert_eq!((*min, *max), (1, *count), "{feed}: round ids run 1..={count} without a gap");
    }
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT published_at < lag(published_at) OVER (PARTITION BY feed_id ORDER BY round_id) AS back
                                 FROM oracle_rounds) r WHERE back",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(out_of_order, 0, "a later round id was published earlier");

    // Every subscriber: rounds in order without repeats; and the last subscription of each replica
    // (after its last restart) heard every round published while it listened.
    let subscriptions = subscriptions.lock().unwrap().clone();
    for sub in &subscriptions {
        let mut last: HashMap<&str, i64> = HashMap::new();
        for (feed, id) in &sub.rounds {
            let previous = last.insert(feed, *id);
            assert!(previous.is_none_or(|p| p < *id), "replica {}: {feed} round {id} after {previous:?}", sub.replica);
        }
    }
    let published: Vec<(String, i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT feed_id, round_id, published_at FROM oracle_rounds").fetch_all(&pool).await.unwrap();
    for replica in 0..REPLICAS {
        let sub = subscriptions.iter().rev().find(|s| s.replica == replica).unwrap();
        let heard: std::collections::HashSet<(&str, i64)> = sub.rounds.iter().map(|(f, r)| (f.as_str(), *r)).collect();
        let from = sub.connected + chrono::Duration::seconds(2);
        let to = sub.ended.unwrap_or(stopped_at).min(stopped_at) - chrono::Duration::seconds(1);
        let missed: Vec<_> = published
            .iter()
            .filter(|(_, _, at)| *at > from && *at < to)
            .filter(|(f, r, _)| !heard.contains(&(f.as_str(), *r)))
            .collect();
        let expected = published.iter().filter(|(_, _, at)| *at > from && *at < to).count();
        let last_published = published.iter().map(|(_, _, at)| *at).max();
        assert!(
            expected > 0,
            "replica {replica}'s last subscription ({} .. {:?}, {} rounds heard) heard no round published; the last \
             round was published at {last_published:?}; stopped at {stopped_at}",
            sub.connected,
            sub.ended,
            sub.rounds.len()
        );
        assert!(missed.is_empty(), "replica {replica}'s subscriber missed {} of {expected} rounds: {:?}", missed.len(), &missed[..missed.len().min(5)]);
    }
    drop(replicas);
    let _ = std::fs::remove_dir_all(&data_dir);

    // The replicas' work did go through the pooler, in transaction mode, with prepared statements.
    if let Some(pooler) = &pooler {
        let (transactions, server_prepares, client_parses) = pooler.stats(&database);
        assert!(transactions > 1000, "the replicas' transactions went through PgBouncer: {transactions}");
        assert!(server_prepares > 0 && client_parses > 0, "prepared statements through PgBouncer: {server_prepares} / {client_parses}");
        eprintln!("through PgBouncer: {transactions} transactions, {client_parses} client parses, {server_prepares} server prepares");
    }
}
