//! Accounts, API-key tokens, roles, and wallet login over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{spawn_app, spawn_app_with, serve_config, JWT_SECRET};
use k256::ecdsa::SigningKey;
use serde_json::json;

#[tokio::test]
async fn registered_account_gets_a_token_with_its_role_and_expiry() {
    let app = spawn_app().await;
    let (id, key) = app.register("rollup-a", "buyer").await;
    assert!(key.starts_with("pcx_"));

    let reply = app.post("/v1/auth/token", None, json!({"api_key": key})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["role"], "buyer");
    assert_eq!(reply.body["account_id"], id.as_str());
    let token = reply.body["token"].as_str().unwrap();

    // The JWT carries sub, role and exp.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["role"], "buyer");
    assert!(claims["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());

    let me = app.get("/v1/accounts/me", Some(token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["account_id"], id.as_str());
    assert_eq!(me.body["name"], "rollup-a");
    assert_eq!(me.body["role"], "buyer");
}

#[tokio::test]
async fn api_keys_are_stored_hashed() {
    let app = spawn_app().await;
    let (_, key) = app.register("prover-1", "prover").await;
    let found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts WHERE api_key_hash = $1 OR encode(api_key_hash, 'escape') LIKE '%' || $2 || '%'",
    )
    .bind(key.as_bytes())
    .bind(&key[4..])
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(found, 0, "the plain API key must not be stored");
}

#[tokio::test]
async fn unknown_api_key_is_401() {
    let app = spawn_app().await;
    let reply = app.post("/v1/auth/token", None, json!({"api_key": "pcx_nope"})).await;
    reply.assert_error(401, "invalid_api_key");
}

#[tokio::test]
async fn missing_forged_tampered_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let (id, token) = app.account("b", "buyer").await;

    app.get("/v1/accounts/me/balances", None).await.assert_error(401, "unauthenticated");

    let now = chrono::Utc::now().timestamp();
    let mint = |secret: &str, role: &str, exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": id, "role": role, "exp": exp, "iat": now}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let forged = mint("not-the-server-secret-at-all", "buyer", now + 600);
    app.get("/v1/accounts/me/balances", Some(&forged)).await.assert_error(401, "invalid_token");

    let expired = mint(JWT_SECRET, "buyer", now - 5);
    let message = app.get("/v1/accounts/me/balances", Some(&expired)).await.assert_error(401, "invalid_token");
    assert!(message.contains("expired"), "{message}");

    // Changing the role inside a genuine token breaks its signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    use base64_like::encode_claims;
    parts[1] = encode_claims(&json!({"sub": id, "role": "admin", "exp": now + 600, "iat": now}));
    let tampered = parts.join(".");
    app.get("/v1/admin/ledger/summary", Some(&tampered)).await.assert_error(401, "invalid_token");

    app.get("/v1/accounts/me/balances", Some("garbage")).await.assert_error(401, "invalid_token");
    let still_ok = app.get("/v1/accounts/me/balances", Some(&token)).await;
    assert_eq!(still_ok.status, 200);
}

/// Base64url without padding, enough to rewrite a JWT's claims in a test.
mod base64_like {
    pub fn encode_claims(value: &serde_json::Value) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = serde_json::to_vec(value).unwrap();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn roles_are_checked_on_every_private_route() {
    let app = spawn_app().await;
    let (buyer_id, buyer) = app.account("b", "buyer").await;
    let admin = app.admin_token().await;

    let reply = app
        .post("/v1/admin/deposits", Some(&buyer), json!({"account_id": buyer_id, "amount": "10"}))
        .await;
    reply.assert_error(403, "forbidden");
    app.get("/v1/admin/ledger/summary", Some(&buyer)).await.assert_error(403, "forbidden");
    // The operator has no account of its own.
    app.get("/v1/accounts/me/balances", Some(&admin)).await.assert_error(403, "forbidden");
    app.post("/v1/withdrawals", Some(&admin), json!({"amount": "1"})).await.assert_error(403, "forbidden");
    // Nothing moved.
    assert_eq!(app.balances(&buyer).await["available"], "0");
}

#[tokio::test]
async fn admin_key_from_configuration_gets_an_admin_token() {
    let app = spawn_app().await;
    let reply = app.post("/v1/auth/token", None, json!({"api_key": common::ADMIN_KEY})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["role"], "admin");
    assert!(reply.body["account_id"].is_null());
}

// ---- wallet login ------------------------------------------------------------------------------

/// An Ethereum key that signs with k256 directly: an implementation independent of the server's
/// alloy-based recovery.
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

    /// `personal_sign`: secp256k1 over keccak256("\x19Ethereum Signed Message:\n" + len + message).
    fn personal_sign(&self, message: &str) -> String {
        let prefixed = format!("\x19Ethereum Signed Message:\n{}{}", message.len(), message);
        let digest = alloy_primitives::keccak256(prefixed.as_bytes());
        let (signature, recovery) = self.key.sign_prehash_recoverable(digest.as_slice()).unwrap();
        let mut bytes = signature.to_bytes().to_vec();
        bytes.push(27 + recovery.to_byte());
        format!("0x{}", hex::encode(bytes))
    }
}

#[tokio::test]
async fn wallet_login_with_a_real_signature_and_a_replayed_nonce() {
    let app = spawn_app().await;
    let wallet = Wallet::random();

    let challenge = app.get(&format!("/v1/auth/nonce?address={}&role=prover", wallet.address()), None).await;
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    let message = challenge.body["message"].as_str().unwrap().to_owned();
    let nonce = challenge.body["nonce"].as_str().unwrap();
    assert!(message.contains(" wants you to sign in with your Ethereum account:\n"));
    assert!(message.contains(&format!("Nonce: {nonce}")));
    assert!(message.to_lowercase().contains(&wallet.address()));

    let signature = wallet.personal_sign(&message);
    let login = app.post("/v1/auth/wallet", None, json!({"message": message, "signature": signature})).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.body["role"], "prover");
    assert_eq!(login.body["address"], wallet.address());
    let token = login.body["token"].as_str().unwrap();
    let me = app.get("/v1/accounts/me", Some(token)).await;
    assert_eq!(me.body["wallet_address"], wallet.address());
    assert_eq!(me.body["role"], "prover");

    // The same signed message again: the nonce is single-use.
    let replay = app.post("/v1/auth/wallet", None, json!({"message": message, "signature": signature})).await;
    let why = replay.assert_error(401, "invalid_signature");
    assert!(why.contains("already used"), "{why}");

    // A second login gets a new nonce and lands on the same account.
    let again = app.get(&format!("/v1/auth/nonce?address={}", wallet.address()), None).await;
    let message2 = again.body["message"].as_str().unwrap().to_owned();
    let login2 = app
        .post("/v1/auth/wallet", None, json!({"message": message2, "signature": wallet.personal_sign(&message2)}))
        .await;
    assert_eq!(login2.status, 200);
    assert_eq!(login2.body["account_id"], login.body["account_id"]);
}

#[tokio::test]
async fn wallet_login_refuses_other_signers_edited_messages_and_garbage() {
    let app = spawn_app().await;
    let wallet = Wallet::random();
    let thief = Wallet::random();
    let challenge = app.get(&format!("/v1/auth/nonce?address={}", wallet.address()), None).await;
    let message = challenge.body["message"].as_str().unwrap().to_owned();

    let other = app
        .post("/v1/auth/wallet", None, json!({"message": message, "signature": thief.personal_sign(&message)}))
        .await;
    other.assert_error(401, "invalid_signature");

    let edited = message.replace("Sign in to the pcx", "Sign in to the evil");
    let edited_reply = app
        .post("/v1/auth/wallet", None, json!({"message": edited, "signature": wallet.personal_sign(&edited)}))
        .await;
    edited_reply.assert_error(401, "invalid_signature");

    app.post("/v1/auth/wallet", None, json!({"message": message, "signature": "0x1234"}))
        .await
        .assert_error(401, "invalid_signature");

    // None of the failures used the nonce up: the rightful signer still logs in.
    let ok = app
        .post("/v1/auth/wallet", None, json!({"message": message, "signature": wallet.personal_sign(&message)}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    app.get("/v1/auth/nonce?address=0x1234", None).await.assert_error(422, "invalid_input");
    app.get("/v1/auth/nonce", None).await.assert_error(422, "invalid_query");
}

#[tokio::test]
async fn wallet_nonces_expire() {
    let mut config = serve_config();
    config.nonce_ttl_secs = 1;
    let app = spawn_app_with(config).await;
    let wallet = Wallet::random();
    let challenge = app.get(&format!("/v1/auth/nonce?address={}", wallet.address()), None).await;
    let message = challenge.body["message"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let late = app
        .post("/v1/auth/wallet", None, json!({"message": message, "signature": wallet.personal_sign(&message)}))
        .await;
    let why = late.assert_error(401, "invalid_signature");
    assert!(why.contains("expired"), "{why}");
}
