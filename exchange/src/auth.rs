//! Authentication rules, free of HTTP and SQL: API keys, access tokens (JWT), and wallet login
//! (EIP-4361 messages signed with `personal_sign`).
//!
//! Invariants:
//! - API keys are 256-bit random strings; only their SHA-256 is stored.
//! - A token names its subject (`sub`: an account id or `admin`), its `role` and its expiry (`exp`);
//!   it is HS256-signed with the server secret and checked, expiry included, on every private route.
//!   A token minted from an API key also names that key (`key_id`), so that revoking the key
//!   ends its tokens at once (the `Caller` extractor checks the key is live).
//! - A wallet-login message is the exact text handed out with its nonce; the signature must recover
//!   the address that message names.

use alloy_primitives::{Address, Signature};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use pcx_domain::{AccountId, Role};

/// Prefix of every API key, so that a leaked key is recognisable.
pub const API_KEY_PREFIX: &str = "pcx_";

/// Subject of the operator's tokens.
pub const ADMIN_SUBJECT: &str = "admin";

/// A new random API key: `pcx_` and 64 hex digits.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_hex(32))
}

/// Characters of a key kept to recognise it by (`pcx_` and 8 hex digits: 32 of its 256 bits).
pub const API_KEY_SHOWN_CHARS: usize = API_KEY_PREFIX.len() + 8;

/// The recognisable start of an API key, as listed to its owner: enough to tell keys apart,
/// far too little to use one.
pub fn api_key_prefix(key: &str) -> String {
    key.chars().take(API_KEY_SHOWN_CHARS).collect()
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is stored for an API key.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A buyer or prover account.
    Account(AccountId),
    /// The operator.
    Admin,
}

impl Principal {
    /// Stable text form: the account id or `admin` (token `sub`, idempotency scope).
    pub fn subject(&self) -> String {
        match self {
            Principal::Account(id) => id.to_string(),
            Principal::Admin => ADMIN_SUBJECT.to_owned(),
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Account id, or `admin`.
    pub sub: String,
    /// The role the token grants.
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// The API key the token was minted from; absent for wallet logins and the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
}

/// A verified caller: who, and in which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// In which role.
    pub role: Role,
    /// The API key its token was minted from (`None`: wallet login, the operator, or a token
    /// issued before keys were named in tokens).
    pub key_id: Option<Uuid>,
}

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp`.
    #[error("the token has expired; get a new one from POST /v1/auth/token")]
    Expired,
    /// Bad signature, bad encoding, bad claims.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The secret before the last rotation, still accepted until the Unix time given (its
    /// tokens were issued before the rotation and live at most one token lifetime).
    previous: Option<(DecodingKey, i64)>,
    /// [`secret_fingerprint`]s of the secret and of the previous one: replicas compare them.
    fingerprint: String,
    previous_fingerprint: Option<String>,
}

/// Tells JWT secrets apart without revealing them: SHA-256 (hex) over a fixed label and the
/// secret (no more use to a guesser than any token the secret signs).
pub fn secret_fingerprint(secret: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"pcx jwt secret fingerprint v1\n");
    hash.update(secret);
    hex::encode(hash.finalize())
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Keys from a secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            previous: None,
            fingerprint: secret_fingerprint(secret),
            previous_fingerprint: None,
        }
    }

    /// The secret's [`secret_fingerprint`], and the previous secret's while it is accepted.
    pub fn fingerprints(&self) -> (&str, Option<&str>) {
        (&self.fingerprint, self.previous_fingerprint.as_deref())
    }

    /// Also accepts tokens signed with `previous` until `until` (a rotation's grace period).
    pub fn with_previous(mut self, previous: &[u8], until: DateTime<Utc>) -> Self {
        self.previous = Some((DecodingKey::from_secret(previous), until.timestamp()));
        self.previous_fingerprint = Some(secret_fingerprint(previous));
        self
    }

    /// A signed token for `caller`, valid until `expires_at`.
    pub fn issue(&self, caller: Caller, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> String {
        let claims = Claims {
            sub: caller.principal.subject(),
            role: caller.role,
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            key_id: caller.key_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies signature, algorithm and expiry, and that `sub` agrees with `role`.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let decoded = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation);
        let decoded = match (&decoded, &self.previous) {
            (Err(err), Some((previous, until)))
                if matches!(err.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature)
                    && Utc::now().timestamp() < *until =>
            {
                jsonwebtoken::decode::<Claims>(token, previous, &validation)
            }
            _ => decoded,
        };
        let data = decoded.map_err(|err| match err.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(err.to_string()),
        })?;
        let claims = data.claims;
        let principal = match (claims.role, claims.sub.as_str()) {
            (Role::Admin, ADMIN_SUBJECT) => Principal::Admin,
            (Role::Buyer | Role::Prover, sub) => Principal::Account(
                sub.parse().map_err(|_| TokenError::Invalid("sub is not an account id".into()))?,
            ),
            _ => return Err(TokenError::Invalid("sub does not match role".into())),
        };
        Ok(Caller { principal, role: claims.role, key_id: claims.key_id })
    }
}

/// Parses a `0x` address (any case, checksummed or not).
pub fn parse_address(text: &str) -> Option<Address> {
    let hex_part = text.strip_prefix("0x")?;
    if hex_part.len() != 40 || !hex_part.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    text.parse().ok()
}

/// Lowercase `0x` form, as stored.
pub fn address_key(address: &Address) -> String {
    format!("{address:#x}")
}

/// The EIP-4361 ("Sign-In with Ethereum") message a wallet signs to log in.
pub fn siwe_message(
    public_url: &str,
    address: &Address,
    nonce: &str,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> String {
    let domain = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or(public_url);
    // EIP-55 checksummed address, as the standard requires.
    let address = address.to_checksum(None);
    format!(
        "{domain} wants you to sign in with your Ethereum account:\n\
         {address}\n\
         \n\
         Sign in to the pcx proof-capacity exchange.\n\
         \n\
         URI: {public_url}\n\
         Version: 1\n\
         Chain ID: 1\n\
         Nonce: {nonce}\n\
         Issued At: {}\n\
         Expiration Time: {}",
        issued_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The `Nonce:` line of a wallet-login message.
pub fn siwe_nonce(message: &str) -> Option<&str> {
    message.lines().find_map(|line| line.strip_prefix("Nonce: ")).map(str::trim)
}

/// Recovers the signer of a `personal_sign` (EIP-191) signature over `message`.
pub fn recover_personal_sign(message: &str, signature_hex: &str) -> Option<Address> {
    let bytes = hex::decode(signature_hex.strip_prefix("0x").unwrap_or(signature_hex)).ok()?;
    let signature = Signature::try_from(bytes.as_slice()).ok()?;
    signature.recover_address_from_msg(message.as_bytes()).ok()
}

impl Caller {
    /// The caller's account; 403 for the operator, who has none.
    pub fn account(&self) -> Result<AccountId, crate::error::ApiError> {
        match self.principal {
            Principal::Account(id) => Ok(id),
            Principal::Admin => Err(crate::error::ApiError::wrong_role("buyer and prover accounts", self.role)),
        }
    }

    /// The caller's account when its role is `role`; 403 otherwise.
    pub fn account_with_role(&self, role: Role) -> Result<AccountId, crate::error::ApiError> {
        match self.principal {
            Principal::Account(id) if self.role == role => Ok(id),
            _ => Err(crate::error::ApiError::wrong_role(
                match role {
                    Role::Buyer => "buyers",
                    Role::Prover => "provers",
                    Role::Admin => "the operator (admin)",
                },
                self.role,
            )),
        }
    }

    /// Ok for the operator; 403 otherwise.
    pub fn require_admin(&self) -> Result<(), crate::error::ApiError> {
        match self.principal {
            Principal::Admin => Ok(()),
            Principal::Account(_) => Err(crate::error::ApiError::wrong_role("the operator (admin)", self.role)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_expire() {
        let keys = TokenKeys::from_secret(b"secret");
        let caller = Caller { principal: Principal::Account(AccountId::new_random()), role: Role::Buyer, key_id: None };
        let now = Utc::now();
        let token = keys.issue(caller, now, now + chrono::Duration::seconds(60));
        assert_eq!(keys.verify(&token).unwrap(), caller);
        let keyed = Caller { key_id: Some(Uuid::new_v4()), ..caller };
        assert_eq!(keys.verify(&keys.issue(keyed, now, now + chrono::Duration::seconds(60))).unwrap(), keyed);
        let old = keys.issue(caller, now, now - chrono::Duration::seconds(1));
        assert!(matches!(keys.verify(&old), Err(TokenError::Expired)));
        let other = TokenKeys::from_secret(b"other");
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn admin_role_needs_admin_subject() {
        let keys = TokenKeys::from_secret(b"secret");
        let now = Utc::now();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims { sub: AccountId::new_random().to_string(), role: Role::Admin, exp: now.timestamp() + 60, iat: 0, key_id: None },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(keys.verify(&forged).is_err());
    }

    #[test]
    fn api_keys_are_long_random_and_hashed() {
        let a = generate_api_key();
        assert!(a.starts_with(API_KEY_PREFIX) && a.len() == 4 + 64);
        assert_ne!(a, generate_api_key());
        assert_eq!(hash_api_key(&a).len(), 32);
        assert_eq!(api_key_prefix(&a), a[..12]);
    }

    #[test]
    fn siwe_message_carries_its_nonce() {
        let address = parse_address("0x52908400098527886E0F7030069857D2E4169EE7").unwrap();
        let now = Utc::now();
        let msg = siwe_message("http://127.0.0.1:8080", &address, "abc123", now, now);
        assert!(msg.starts_with("127.0.0.1:8080 wants you to sign in with your Ethereum account:\n0x52908400098527886E0F7030069857D2E4169EE7\n"));
        assert_eq!(siwe_nonce(&msg), Some("abc123"));
        assert!(parse_address("0x1234").is_none());
    }
}
