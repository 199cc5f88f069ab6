//! Endpoint secrets at rest: sealed with ChaCha20-Poly1305 under the exchange's webhook key,
//! which lives where the exchange's other secrets do (environment, a named file, or a generated
//! 0600 file; never the database). The webhook's id is the associated data, so a sealed secret
//! copied onto another row does not open.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use uuid::Uuid;

/// The key that seals and opens endpoint secrets.
pub struct Sealer {
    key: LessSafeKey,
    fingerprint: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// A sealed secret does not open: another key, another row, or altered bytes.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret does not open with this exchange's webhook key (PCX_WEBHOOK_KEY differs between replicas?)")]
pub struct Unsealable;

impl Sealer {
    /// From a key of 32 bytes, given as 64 hex digits.
    pub fn from_hex(key_hex: &str) -> anyhow::Result<Sealer> {
        let bytes = hex::decode(key_hex.trim()).map_err(|_| anyhow::anyhow!("the webhook key must be 64 hex digits"))?;
        anyhow::ensure!(bytes.len() == 32, "the webhook key must be 32 bytes (64 hex digits), got {}", bytes.len());
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| anyhow::anyhow!("the webhook key is not usable"))?;
        Ok(Sealer { key: LessSafeKey::new(key), fingerprint: crate::auth::secret_fingerprint(&bytes) })
    }

    /// Tells keys apart without revealing them (replicas compare it: see `replicas`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `nonce ‖ ciphertext ‖ tag` of `secret`, bound to `webhook`.
    pub fn seal(&self, webhook: Uuid, secret: &[u8]) -> Vec<u8> {
        use rand::RngCore;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut sealed = secret.to_vec();
        #[allow(clippy::expect_used)]
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(webhook.as_bytes()), &mut sealed)
            .expect("sealing a short secret cannot fail");
        [nonce.as_slice(), &sealed].concat()
    }

    /// The secret sealed by [`Sealer::seal`] for `webhook`.
    pub fn open(&self, webhook: Uuid, sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut body = body.to_vec();
        let opened = self.key.open_in_place(nonce, Aad::from(webhook.as_bytes()), &mut body).map_err(|_| Unsealable)?;
        Ok(opened.to_vec())
    }
}
