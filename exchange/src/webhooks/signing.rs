//! Standard Webhooks (<https://www.standardwebhooks.com>): the secret's form, the signature, the
//! headers. Pure: no I/O, no clock (the caller passes the timestamp).
//!
//! A secret is `whsec_` + base64 of 32 random bytes; the signature of a message is
//! `v1,` + base64(HMAC-SHA256(secret bytes, "{webhook-id}.{webhook-timestamp}.{body}")), which is
//! what the specification's verifier libraries (PyPI and npm `standardwebhooks`, svix) check.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing secret (the raw bytes; shown once as [`SigningSecret::to_text`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// A new secret of 32 bytes from the operating system's generator.
    pub fn generate() -> SigningSecret {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SigningSecret(bytes)
    }

    /// From its raw bytes (as stored, decrypted).
    pub fn from_bytes(bytes: Vec<u8>) -> SigningSecret {
        SigningSecret(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_<base64>`, the form receivers configure.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` header of a message: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        #[allow(clippy::expect_used)]
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}
