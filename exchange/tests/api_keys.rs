//! API keys over real HTTP: listing (prefix and times only), creation and its cap, revocation
//! (the key and its tokens stop at once, on every replica), rotation, other accounts' keys, wallet
//! accounts, and the keys copied by migration 0008 from `accounts.api_key_hash`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve_config, spawn_app, spawn_on, Client, JWT_SECRET};
use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const KEYS: &str = "/v1/accounts/me/api_keys";

/// The claims of a token, checked with the test secret.
fn claims(token: &str) -> Value {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()), &validation)
        .unwrap()
        .claims
}

/// Creates a key with `token`; returns (key_id, api_key).
async fn create_key(app: &Client, token: &str) -> (String, String) {
    let reply = app.post(KEYS, Some(token), json!({})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["key_id"].as_str().unwrap().to_owned(), reply.body["api_key"].as_str().unwrap().to_owned())
}

async fn list(app: &Client, token: &str) -> Value {
    let reply = app.get(KEYS, Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn mint(app: &Client, api_key: &str) -> common::Reply {
    app.post("/v1/auth/token", None, json!({"api_key": api_key})).await
}

#[tokio::test]
async fn the_listing_shows_prefix_and_times_never_the_key_or_its_hash() {
    let app = spawn_app().await;
    let (_, first_key) = app.register("b", "buyer").await;
    let token = app.token(&first_key).await;
    let (second_id, second_key) = create_key(&app, &token).await;

    let reply = app.get(KEYS, Some(&token)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let text = reply.body.to_string();
    for key in [&first_key, &second_key] {
        assert!(!text.contains(key.as_str()), "the key is listed: {text}");
        assert!(!text.contains(&key[12..]), "the secret part of a key is listed: {text}");
        let hash = Sha256::digest(key.as_bytes());
        assert!(!text.contains(&hex::encode(hash)), "a key's hash is listed: {text}");
    }
    let keys = reply.body["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(reply.body["live"], 2);
    assert_eq!(reply.body["max_live"], 20);
    for key in keys {
        let mut fields: Vec<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["created_at", "key_id", "last_used_at", "prefix", "revoked_at"]);
        assert!(key["revoked_at"].is_null());
    }
    // Oldest first; the prefix is the key's first 12 characters; only the first key minted a token.
    assert_eq!(keys[0]["prefix"], first_key[..12]);
    assert!(keys[0]["last_used_at"].is_string(), "{}", keys[0]);
    assert_eq!(keys[1]["key_id"], second_id.as_str());
    assert_eq!(keys[1]["prefix"], second_key[..12]);
    assert!(keys[1]["last_used_at"].is_null());

    // Nor does the database hold a key, only its hash and prefix.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE key_hash = $1 OR prefix = $2 OR encode(key_hash, 'escape') LIKE '%' || $3 || '%'",
    )
    .bind(second_key.as_bytes())
    .bind(&second_key)
    .bind(&second_key[12..])
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    let hashed: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE key_hash = $1")
        .bind(Sha256::digest(second_key.as_bytes()).to_vec())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(hashed, 1);
}

#[tokio::test]
async fn a_new_key_mints_tokens_that_name_it() {
    let app = spawn_app().await;
    let (id, key) = app.register("p", "prover").await;
    let token = app.token(&key).await;
    let reply = app.post(KEYS, Some(&token), json!({})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let new_key = reply.body["api_key"].as_str().unwrap();
    assert!(new_key.starts_with("pcx_") && new_key.len() == 68);
    assert_eq!(reply.body["prefix"], new_key[..12]);
    assert!(reply.body["created_at"].is_string());

    let minted = mint(&app, new_key).await;
    assert_eq!(minted.status, 200, "{}", minted.body);
    assert_eq!(minted.body["account_id"], id.as_str());
    assert_eq!(minted.body["role"], "prover");
    let new_token = minted.body["token"].as_str().unwrap();
    assert_eq!(claims(new_token)["key_id"], reply.body["key_id"]);
    let me = app.get("/v1/accounts/me", Some(new_token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["account_id"], id.as_str());

    // The registration's key is listed too, and the registration answer named it.
    let listed = list(&app, new_token).await;
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 2);
    assert!(listed["api_keys"][1]["last_used_at"].is_string());
}

#[tokio::test]
async fn a_revoked_key_mints_nothing_and_its_tokens_stop_at_once_on_every_replica() {
    let app = spawn_app().await;
    // A second exchange on the same database, as a replica behind a load balancer.
    let replica = spawn_on(app.db.clone(), serve_config()).await;
    let (_, key_a) = app.register("b", "buyer").await;
    let token_a = app.token(&key_a).await;
    let (id_b, key_b) = create_key(&app, &token_a).await;
    let token_b = app.token(&key_b).await;
    let token_b_elsewhere = replica.token(&key_b).await;
    assert_eq!(replica.get("/v1/accounts/me", Some(&token_b)).await.status, 200);

    let revoked = app.delete(&format!("{KEYS}/{id_b}"), Some(&token_a)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["key_id"], id_b.as_str());
    assert!(revoked.body["revoked_at"].is_string());
    assert_eq!(revoked.body["live_keys_left"], 1);
    assert_eq!(revoked.body["this_token_revoked"], false);

    // The key mints nothing, with the very answer an unknown key gets.
    let refused = mint(&app, &key_b).await.assert_error(401, "invalid_api_key");
    let unknown = mint(&app, &format!("pcx_{}", "0".repeat(64))).await.assert_error(401, "invalid_api_key");
    assert_eq!(refused, unknown, "a revoked and an unknown key must be indistinguishable");
    mint(&replica, &key_b).await.assert_error(401, "invalid_api_key");

    // Its tokens are refused at once, on both exchanges, whichever minted them.
    for (exchange, token) in [(&app, &token_b), (&replica, &token_b), (&app, &token_b_elsewhere)] {
        let why = exchange.get("/v1/accounts/me/balances", Some(token)).await.assert_error(401, "invalid_token");
        assert!(why.contains("revoked"), "{why}");
    }
    // The other key and its token are untouched.
    assert_eq!(app.get("/v1/accounts/me/balances", Some(&token_a)).await.status, 200);
    assert_eq!(mint(&replica, &key_a).await.status, 200);

    // Revoking again changes nothing.
    let again = app.delete(&format!("{KEYS}/{id_b}"), Some(&token_a)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"]);
    let listed = list(&app, &token_a).await;
    assert_eq!(listed["live"], 1);
    assert_eq!(listed["api_keys"][1]["revoked_at"], revoked.body["revoked_at"]);
}

/// A withdrawal leaves its key check to its own statement (one round trip fewer), so this is the
/// same rule on that path: a revoked key's token moves nothing, alone or in a group, with an
/// `Idempotency-Key` or without, and gets no stored answer replayed.
#[tokio::test]
async fn a_revoked_key_s_token_withdraws_nothing_and_replays_nothing() {
    let app = spawn_app().await;
    let (id, key_a) = app.register("w", "buyer").await;
    app.deposit(&id, "100").await;
    let token_a = app.token(&key_a).await;
    let (id_b, key_b) = create_key(&app, &token_a).await;
    let token_b = app.token(&key_b).await;
    assert_eq!(app.post("/v1/withdrawals", Some(&token_b), json!({"amount": "1"})).await.status, 201);
    let keyed = app.post_with_key("/v1/withdrawals", Some(&token_b), Some("w-1"), json!({"amount": "2"})).await;
    assert_eq!(keyed.status, 201, "{}", keyed.body);
    assert_eq!(app.delete(&format!("{KEYS}/{id_b}"), Some(&token_a)).await.status, 200);

    for key in [None, Some("w-1"), Some("w-2")] {
        let reply = app.post_with_key("/v1/withdrawals", Some(&token_b), key, json!({"amount": "2"})).await;
        let why = reply.assert_error(401, "invalid_token");
        assert!(why.contains("revoked"), "{why}");
    }
    // Several at once, beside another account's withdrawals (they share statements with them).
    let (other, token_other) = app.account("other", "buyer").await;
    app.deposit(&other, "100").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (client, token) = (app.http.clone(), if i % 3 == 0 { token_other.clone() } else { token_b.clone() });
        let url = app.url("/v1/withdrawals");
        tasks.push(tokio::spawn(async move {
            let reply = client.post(url).bearer_auth(token).json(&json!({"amount": "1"})).send().await.unwrap();
            reply.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|&&s| s == 401).count(), 8, "{statuses:?}");

    // 100 - 1 - 2 before the revocation and nothing after it; the other account's 4 went.
    assert_eq!(app.balances(&token_a).await["available"], "97");
    assert_eq!(app.balances(&token_other).await["available"], "96");
    let summary = app.summary().await;
    assert_eq!(summary["balanced"], true);
    assert_eq!(summary["entry_count"], 2 + 2 + 4);
}

#[tokio::test]
async fn a_key_revoked_with_its_own_token_says_so() {
    let app = spawn_app().await;
    let (_, key_a) = app.register("b", "buyer").await;
    let token_a = app.token(&key_a).await;
    let (id_b, key_b) = create_key(&app, &token_a).await;
    let token_b = app.token(&key_b).await;
    let reply = app.delete(&format!("{KEYS}/{id_b}"), Some(&token_b)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["this_token_revoked"], true);
    app.get(KEYS, Some(&token_b)).await.assert_error(401, "invalid_token");
}

#[tokio::test]
async fn rotation_revokes_the_old_key_and_returns_a_working_new_one() {
    let app = spawn_app().await;
    let (id, old_key) = app.register("p", "prover").await;
    let old_token = app.token(&old_key).await;
    let old_id = list(&app, &old_token).await["api_keys"][0]["key_id"].as_str().unwrap().to_owned();

    let rotated = app.post(&format!("{KEYS}/{old_id}/rotate"), Some(&old_token), json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let new_key = rotated.body["api_key"].as_str().unwrap().to_owned();
    let new_id = rotated.body["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    assert_ne!(new_id, old_id);
    assert_eq!(rotated.body["prefix"], new_key[..12]);
    assert_eq!(rotated.body["revoked"]["key_id"], old_id.as_str());
    assert!(rotated.body["revoked"]["revoked_at"].is_string());
    assert_eq!(rotated.body["this_token_revoked"], true);

    mint(&app, &old_key).await.assert_error(401, "invalid_api_key");
    app.get("/v1/accounts/me", Some(&old_token)).await.assert_error(401, "invalid_token");
    let new_token = app.token(&new_key).await;
    let me = app.get("/v1/accounts/me", Some(&new_token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["account_id"], id.as_str());

    // A revoked key has nothing left to rotate.
    let why = app
        .post(&format!("{KEYS}/{old_id}/rotate"), Some(&new_token), json!({}))
        .await
        .assert_error(409, "api_key_revoked");
    assert!(why.contains("already revoked"), "{why}");
    let listed = list(&app, &new_token).await;
    assert_eq!(listed["live"], 1);
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn other_accounts_keys_are_not_found_and_untouched() {
    let app = spawn_app().await;
    let (_, owner_key) = app.register("owner", "buyer").await;
    let owner = app.token(&owner_key).await;
    let (owner_extra_id, owner_extra_key) = create_key(&app, &owner).await;
    let (_, intruder) = app.account("intruder", "buyer").await;

    let why = app.delete(&format!("{KEYS}/{owner_extra_id}"), Some(&intruder)).await.assert_error(404, "not_found");
    let unknown = uuid::Uuid::new_v4();
    let why_unknown = app.delete(&format!("{KEYS}/{unknown}"), Some(&intruder)).await.assert_error(404, "not_found");
    assert_eq!(why.replace(&owner_extra_id, "ID"), why_unknown.replace(&unknown.to_string(), "ID"));
    app.post(&format!("{KEYS}/{owner_extra_id}/rotate"), Some(&intruder), json!({}))
        .await
        .assert_error(404, "not_found");
    // The intruder's listing has its own key only; the owner's key still works.
    let listed = list(&app, &intruder).await;
    assert_eq!(listed["api_keys"].as_array().unwrap().len(), 1);
    assert_ne!(listed["api_keys"][0]["key_id"], owner_extra_id.as_str());
    assert_eq!(mint(&app, &owner_extra_key).await.status, 200);
    assert_eq!(list(&app, &owner).await["live"], 2);

    // Not a key id at all; the operator, who has no account; no token.
    app.delete(&format!("{KEYS}/nope"), Some(&owner)).await.assert_error(422, "invalid_path");
    let admin = app.admin_token().await;
    app.get(KEYS, Some(&admin)).await.assert_error(403, "forbidden");
    app.post(KEYS, Some(&admin), json!({})).await.assert_error(403, "forbidden");
    app.get(KEYS, None).await.assert_error(401, "unauthenticated");
}

#[tokio::test]
async fn live_keys_are_capped_at_twenty_even_when_requests_race() {
    let app = spawn_app().await;
    let (_, key) = app.register("b", "buyer").await;
    let token = app.token(&key).await;
    for _ in 0..14 {
        create_key(&app, &token).await;
    }
    // 15 live; ten creations race for the 5 places left.
    let replies = futures_util::future::join_all((0..10).map(|_| app.post(KEYS, Some(&token), json!({})))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 5, "{:?}", replies.iter().map(|r| r.body.to_string()).collect::<Vec<_>>());
    for refused in replies.iter().filter(|r| r.status != 201) {
        let why = refused.assert_error(409, "too_many_api_keys");
        assert!(why.contains("20"), "{why}");
    }
    let listed = list(&app, &token).await;
    assert_eq!(listed["live"], 20);

    let hint = app.post(KEYS, Some(&token), json!({})).await;
    hint.assert_error(409, "too_many_api_keys");
    assert!(hint.body["error"]["hint"].as_str().unwrap().contains("revoke"), "{}", hint.body);

    // Revoking one makes room for one; revoked keys do not count.
    let some_id = listed["api_keys"][5]["key_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("{KEYS}/{some_id}"), Some(&token)).await.status, 200);
    create_key(&app, &token).await;
    app.post(KEYS, Some(&token), json!({})).await.assert_error(409, "too_many_api_keys");
    let listed = list(&app, &token).await;
    assert_eq!((listed["live"].as_u64(), listed["api_keys"].as_array().unwrap().len()), (Some(20), 21));
}

#[tokio::test]
async fn the_last_key_of_an_account_without_a_wallet_takes_force() {
    let app = spawn_app().await;
    let (_, key) = app.register("b", "buyer").await;
    let token = app.token(&key).await;
    let key_id = list(&app, &token).await["api_keys"][0]["key_id"].as_str().unwrap().to_owned();

    let refused = app.delete(&format!("{KEYS}/{key_id}"), Some(&token)).await;
    let why = refused.assert_error(409, "last_api_key");
    assert!(why.contains("last live API key"), "{why}");
    assert!(refused.body["error"]["hint"].as_str().unwrap().contains("force=true"), "{}", refused.body);
    // Nothing changed.
    assert_eq!(mint(&app, &key).await.status, 200);
    assert_eq!(list(&app, &token).await["live"], 1);
    app.delete(&format!("{KEYS}/{key_id}?force=maybe"), Some(&token)).await.assert_error(422, "invalid_query");

    let forced = app.delete(&format!("{KEYS}/{key_id}?force=true"), Some(&token)).await;
    assert_eq!(forced.status, 200, "{}", forced.body);
    assert_eq!(forced.body["live_keys_left"], 0);
    assert_eq!(forced.body["this_token_revoked"], true);
    mint(&app, &key).await.assert_error(401, "invalid_api_key");
    app.get("/v1/accounts/me", Some(&token)).await.assert_error(401, "invalid_token");
}

// ---- wallet accounts ---------------------------------------------------------------------------

/// An Ethereum key signing with k256 (as in tests/auth.rs).
struct Wallet {
    key: SigningKey,
}

impl Wallet {
    fn random() -> Self {
        Self { key: SigningKey::random(&mut rand::thread_rng()) }
    }

    fn address(&self) -> String {
        let point = self.key.verifying_key().to_encoded_point(false);
        let hash = alloy_primitives::keccak256(&point.as_bytes()[1..]);
        format!("0x{}", hex::encode(&hash[12..]))
    }

    fn personal_sign(&self, message: &str) -> String {
        let prefixed = format!("\x19Ethereum Signed Message:\n{}{}", message.len(), message);
        let digest = alloy_primitives::keccak256(prefixed.as_bytes());
        let (signature, recovery) = self.key.sign_prehash_recoverable(digest.as_slice()).unwrap();
        let mut bytes = signature.to_bytes().to_vec();
        bytes.push(27 + recovery.to_byte());
        format!("0x{}", hex::encode(bytes))
    }

    /// Logs in; returns (account_id, token).
    async fn login(&self, app: &Client, role: &str) -> (String, String) {
        let challenge = app.get(&format!("/v1/auth/nonce?address={}&role={role}", self.address()), None).await;
        let message = challenge.body["message"].as_str().unwrap().to_owned();
        let login =
            app.post("/v1/auth/wallet", None, json!({"message": message, "signature": self.personal_sign(&message)})).await;
        assert_eq!(login.status, 200, "{}", login.body);
        (login.body["account_id"].as_str().unwrap().to_owned(), login.body["token"].as_str().unwrap().to_owned())
    }
}

#[tokio::test]
async fn a_wallet_account_makes_keys_and_may_revoke_its_last_one() {
    let app = spawn_app().await;
    let wallet = Wallet::random();
    let (id, wallet_token) = wallet.login(&app, "prover").await;
    assert!(claims(&wallet_token).get("key_id").is_none(), "a wallet login's token names no key");
    let listed = list(&app, &wallet_token).await;
    assert_eq!((listed["live"].as_u64(), listed["api_keys"].as_array().unwrap().len()), (Some(0), 0));

    let (key_id, key) = create_key(&app, &wallet_token).await;
    let minted = mint(&app, &key).await;
    assert_eq!(minted.status, 200, "{}", minted.body);
    assert_eq!(minted.body["account_id"], id.as_str());
    assert_eq!(minted.body["role"], "prover");
    let key_token = minted.body["token"].as_str().unwrap().to_owned();

    // Its only key needs no force: the wallet still signs in.
    let revoked = app.delete(&format!("{KEYS}/{key_id}"), Some(&wallet_token)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["live_keys_left"], 0);
    mint(&app, &key).await.assert_error(401, "invalid_api_key");
    app.get("/v1/accounts/me", Some(&key_token)).await.assert_error(401, "invalid_token");
    // The wallet's own token is not tied to any key.
    assert_eq!(app.get("/v1/accounts/me", Some(&wallet_token)).await.status, 200);
    let (again, _) = wallet.login(&app, "prover").await;
    assert_eq!(again, id);
}

// ---- keys from before migration 0008 -----------------------------------------------------------

/// A database migrated up to (not including) `version`, from copies of those migration files.
async fn database_migrated_before(version: i64) -> sqlx::PgPool {
    use sqlx::Connection;
    let server: sqlx::postgres::PgConnectOptions = common::server_url().parse().unwrap();
    let mut admin = sqlx::PgConnection::connect_with(&server).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let name = format!("pcx_test_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(24).connect_with(server.database(&name)).await.unwrap();

    let dir = std::env::temp_dir().join(format!("pcx-migrations-before-{version}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let number: i64 = file.split('_').next().unwrap().parse().unwrap();
        if number < version {
            std::fs::copy(&path, dir.join(&file)).unwrap();
        }
    }
    let earlier = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    assert_eq!(earlier.iter().count() as i64, version - 1);
    earlier.run(&pool).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    pool
}

#[tokio::test]
async fn keys_made_before_migration_0008_still_mint_tokens_and_can_be_revoked() {
    let db = database_migrated_before(8).await;
    // An account registered the old way: its key's hash on its own row.
    let old_key = format!("pcx_{}", hex::encode(rand::random::<[u8; 32]>()));
    let account: uuid::Uuid = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO accounts (id, name, role, api_key_hash) VALUES ($1, 'veteran', 'buyer', $2)")
        .bind(account)
        .bind(Sha256::digest(old_key.as_bytes()).to_vec())
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ledger_accounts (owner_id, kind) SELECT $1, k FROM unnest(ARRAY['available', 'escrow', 'bonded']) AS k",
    )
    .bind(account)
    .execute(&db)
    .await
    .unwrap();

    pcx_exchange::db::MIGRATOR.run(&db).await.unwrap();
    // The hash moved: the old column is empty and stays so.
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE api_key_hash IS NOT NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let write_old_column = sqlx::query("UPDATE accounts SET api_key_hash = $2 WHERE id = $1")
        .bind(account)
        .bind(vec![0u8; 32])
        .execute(&db)
        .await;
    assert!(write_old_column.is_err(), "accounts.api_key_hash is retired");

    let app = spawn_on(db, serve_config()).await;
    let minted = mint(&app, &old_key).await;
    assert_eq!(minted.status, 200, "{}", minted.body);
    assert_eq!(minted.body["account_id"], account.to_string());
    let token = minted.body["token"].as_str().unwrap().to_owned();
    let created_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM accounts WHERE id = $1").bind(account).fetch_one(&app.db).await.unwrap();

    let listed = list(&app, &token).await;
    let keys = listed["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0]["prefix"].is_null(), "the prefix of a key made before listing is unknown: {}", keys[0]);
    let listed_created: chrono::DateTime<chrono::Utc> = keys[0]["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(listed_created, created_at);
    assert!(keys[0]["last_used_at"].is_string());
    assert_eq!(claims(&token)["key_id"], keys[0]["key_id"]);

    // It rotates like any key.
    let old_id = keys[0]["key_id"].as_str().unwrap();
    let rotated = app.post(&format!("{KEYS}/{old_id}/rotate"), Some(&token), json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert!(rotated.body["revoked"]["prefix"].is_null());
    mint(&app, &old_key).await.assert_error(401, "invalid_api_key");
    assert_eq!(mint(&app, rotated.body["api_key"].as_str().unwrap()).await.status, 200);
}

#[tokio::test]
async fn a_registered_account_s_first_key_is_listed_and_named_in_the_answer() {
    let app = spawn_app().await;
    let reply = app.post("/v1/accounts", None, json!({"name": "rollup-a", "role": "buyer"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let key = reply.body["api_key"].as_str().unwrap();
    let token = app.token(key).await;
    let listed = list(&app, &token).await;
    assert_eq!(listed["api_keys"][0]["key_id"], reply.body["key_id"]);
    assert_eq!(listed["api_keys"][0]["prefix"], key[..12]);
    assert_eq!(claims(&token)["key_id"], reply.body["key_id"]);
}
