//! Rounds: when a feed publishes, the statuses, and each round as EIP-712 typed data signed by the
//! oracle key, so any Ethereum tool can verify it (`eth_signTypedData_v4` takes `typed_data` as is).
//!
//! A new round is published when the price moves more than the deviation threshold from the last
//! round, when the heartbeat has passed, or when the status changes. Amounts in the signed message
//! are integers in micro-units (6 decimals: "1.25" is 1250000); an absent price is 0 and the status
//! says why.

use alloy_primitives::{Address, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{eip712_domain, sol, Eip712Domain, SolStruct};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::aggregate::Estimate;
use crate::METHODOLOGY_VERSION;

/// A feed's status in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedStatus {
    /// Enough fresh sources; the price is current.
    Ok,
    /// The round is past `valid_until` and no newer one exists (set when read).
    Stale,
    /// Fewer accepted sources than required; no price.
    InsufficientSources,
    /// Halted by the operator; no price.
    Halted,
}

impl FeedStatus {
    /// Code in the signed message.
    pub fn code(self) -> u8 {
        match self {
            FeedStatus::Ok => 0,
            FeedStatus::Stale => 1,
            FeedStatus::InsufficientSources => 2,
            FeedStatus::Halted => 3,
        }
    }

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedStatus::Ok => "ok",
            FeedStatus::Stale => "stale",
            FeedStatus::InsufficientSources => "insufficient_sources",
            FeedStatus::Halted => "halted",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        [FeedStatus::Ok, FeedStatus::Stale, FeedStatus::InsufficientSources, FeedStatus::Halted]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// The values of a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundValues {
    /// Feed.
    pub feed_id: String,
    /// Increases by one per published round of the feed.
    pub round_id: u64,
    /// Weighted median price per proof.
    pub price: Option<Decimal>,
    /// Confidence half-width.
    pub conf: Option<Decimal>,
    /// q50, q80, q95, q99.
    pub quantiles: Option<[Decimal; 4]>,
    /// Status.
    pub status: FeedStatus,
    /// When published.
    pub published_at: DateTime<Utc>,
    /// Readers should not use it after this.
    pub valid_until: DateTime<Utc>,
    /// Distinct accepted sources.
    pub n_sources: u16,
    /// Methodology version.
    pub methodology_version: u16,
}

/// The status of a feed now: `halted` by the operator, else `ok` when the estimate has a price,
/// else `insufficient_sources`.
pub fn status(halted: bool, estimate: &Estimate) -> FeedStatus {
    if halted {
        FeedStatus::Halted
    } else if estimate.price.is_some() {
        FeedStatus::Ok
    } else {
        FeedStatus::InsufficientSources
    }
}

/// When feeds publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publication {
    /// A move of the price by more than this fraction publishes.
    pub deviation: Decimal,
    /// A feed publishes at least this often; a round is valid for two heartbeats.
    pub heartbeat: Duration,
}

/// The round `feed_id` publishes at `now` from `estimate`, if it publishes one: numbered right
/// after `last` (1 for the first), with a price only when its status is `ok`.
pub fn next_round(
    feed_id: &str,
    last: Option<&RoundValues>,
    estimate: &Estimate,
    halted: bool,
    now: DateTime<Utc>,
    rule: &Publication,
) -> Option<RoundValues> {
    let status = status(halted, estimate);
    let (price, conf, quantiles) = match status {
        FeedStatus::Ok => (estimate.price, estimate.conf, estimate.quantiles),
        _ => (None, None, None),
    };
    if !should_publish(last, price, status, now, rule.deviation, rule.heartbeat) {
        return None;
    }
    Some(RoundValues {
        feed_id: feed_id.to_owned(),
        round_id: last.map_or(1, |l| l.round_id + 1),
        price,
        conf,
        quantiles,
        status,
        published_at: now,
        valid_until: now + rule.heartbeat * 2,
        n_sources: u16::try_from(estimate.n_sources).unwrap_or(u16::MAX),
        methodology_version: METHODOLOGY_VERSION,
    })
}

/// Whether a feed whose last round is `last` publishes a round with `price` and `status` at `now`.
pub fn should_publish(
    last: Option<&RoundValues>,
    price: Option<Decimal>,
    status: FeedStatus,
    now: DateTime<Utc>,
    deviation: Decimal,
    heartbeat: Duration,
) -> bool {
    let Some(last) = last else { return true };
    if last.status != status || now - last.published_at >= heartbeat {
        return true;
    }
    match (last.price, price) {
        (Some(old), Some(new)) if !old.is_zero() => ((new - old) / old).abs() > deviation,
        (old, new) => old != new,
    }
}

sol! {
    /// One oracle round, as signed.
    #[derive(Debug)]
    struct PriceRound {
        string feedId;
        uint64 roundId;
        uint256 price;
        uint256 conf;
        uint256 q50;
        uint256 q80;
        uint256 q95;
        uint256 q99;
        uint8 status;
        uint64 publishedAt;
        uint64 validUntil;
        uint16 nSources;
        uint16 methodologyVersion;
    }
}

fn micro(value: Option<Decimal>) -> U256 {
    let units = value
        .map(|v| (v * Decimal::from(1_000_000)).trunc())
        .and_then(|v| u128::try_from(v).ok())
        .unwrap_or(0);
    U256::from(units)
}

fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// Why an oracle key is refused.
#[derive(Debug, thiserror::Error)]
#[error("the oracle key must be 32 bytes of hex (a secp256k1 private key): {0}")]
pub struct KeyError(String);

/// The oracle's signing key and EIP-712 domain.
#[derive(Debug, Clone)]
pub struct OracleSigner {
    signer: PrivateKeySigner,
    domain: Eip712Domain,
    chain_id: u64,
}

/// A signed round: the typed data exactly as `eth_signTypedData_v4` takes it, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRound {
    /// `{types, primaryType, domain, message}`.
    pub typed_data: Value,
    /// 65 bytes (r, s, v with v in {27, 28}) as 0x hex.
    pub signature: String,
}

impl OracleSigner {
    /// The name in the EIP-712 domain.
    pub const DOMAIN_NAME: &'static str = "pcx oracle";
    /// The version in the EIP-712 domain.
    pub const DOMAIN_VERSION: &'static str = "1";

    /// A signer from a hex private key.
    pub fn from_hex(key: &str, chain_id: u64) -> Result<Self, KeyError> {
        let signer: PrivateKeySigner = key.trim().parse().map_err(|e| KeyError(format!("{e}")))?;
        Ok(Self::new(signer, chain_id))
    }

    /// A new random key, as hex (to persist).
    pub fn generate_key_hex() -> String {
        let signer = PrivateKeySigner::random();
        format!("0x{}", alloy_primitives::hex::encode(signer.to_bytes()))
    }

    fn new(signer: PrivateKeySigner, chain_id: u64) -> Self {
        let domain = eip712_domain! {
            name: Self::DOMAIN_NAME,
            version: Self::DOMAIN_VERSION,
            chain_id: chain_id,
            verifying_contract: Address::ZERO,
        };
        Self { signer, domain, chain_id }
    }

    /// The oracle's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The domain as JSON (as in `typed_data.domain`).
    pub fn domain_json(&self) -> Value {
        json!({
            "name": Self::DOMAIN_NAME,
            "version": Self::DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": format!("{:#x}", Address::ZERO),
        })
    }

    /// Signs a round.
    pub fn sign(&self, round: &RoundValues) -> Result<SignedRound, alloy_signer::Error> {
        let [q50, q80, q95, q99] = round.quantiles.map_or([None; 4], |q| q.map(Some));
        let message = PriceRound {
            feedId: round.feed_id.clone(),
            roundId: round.round_id,
            price: micro(round.price),
            conf: micro(round.conf),
            q50: micro(q50),
            q80: micro(q80),
            q95: micro(q95),
            q99: micro(q99),
            status: round.status.code(),
            publishedAt: unix(round.published_at),
            validUntil: unix(round.valid_until),
            nSources: round.n_sources,
            methodologyVersion: round.methodology_version,
        };
        let hash = message.eip712_signing_hash(&self.domain);
        let signature = self.signer.sign_hash_sync(&hash)?;
        let typed_data = json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "PriceRound": [
                    {"name": "feedId", "type": "string"},
                    {"name": "roundId", "type": "uint64"},
                    {"name": "price", "type": "uint256"},
                    {"name": "conf", "type": "uint256"},
                    {"name": "q50", "type": "uint256"},
                    {"name": "q80", "type": "uint256"},
                    {"name": "q95", "type": "uint256"},
                    {"name": "q99", "type": "uint256"},
                    {"name": "status", "type": "uint8"},
                    {"name": "publishedAt", "type": "uint64"},
                    {"name": "validUntil", "type": "uint64"},
                    {"name": "nSources", "type": "uint16"},
                    {"name": "methodologyVersion", "type": "uint16"},
                ],
            },
            "primaryType": "PriceRound",
            "domain": self.domain_json(),
            "message": {
                "feedId": message.feedId,
                "roundId": message.roundId.to_string(),
                "price": message.price.to_string(),
                "conf": message.conf.to_string(),
                "q50": message.q50.to_string(),
                "q80": message.q80.to_string(),
                "q95": message.q95.to_string(),
                "q99": message.q99.to_string(),
                "status": message.status,
                "publishedAt": message.publishedAt.to_string(),
                "validUntil": message.validUntil.to_string(),
                "nSources": message.nSources,
                "methodologyVersion": message.methodologyVersion,
            },
        });
        Ok(SignedRound { typed_data, signature: format!("0x{}", alloy_primitives::hex::encode(signature.as_bytes())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_dyn_abi::TypedData;
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

    fn round() -> RoundValues {
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        RoundValues {
            feed_id: "groth16-bn254:hash-chain:12:600".into(),
            round_id: 7,
            price: Some("1.25".parse().unwrap()),
            conf: Some("0.05".parse().unwrap()),
            quantiles: Some(["1.25", "1.3", "1.4", "1.5"].map(|p| p.parse().unwrap())),
            status: FeedStatus::Ok,
            published_at: t,
            valid_until: t + Duration::seconds(120),
            n_sources: 5,
            methodology_version: crate::METHODOLOGY_VERSION,
        }
    }

    /// Recovers the signer of a signed round through another code path than the signing one: the
    /// typed-data JSON parsed by alloy-dyn-abi (dynamic EIP-712 encoding), and k256 recovery.
    fn recover(signed: &SignedRound) -> Option<Address> {
        let typed: TypedData = serde_json::from_value(signed.typed_data.clone()).ok()?;
        let hash = typed.eip712_signing_hash().ok()?;
        let bytes = alloy_primitives::hex::decode(&signed.signature).ok()?;
        let signature = Signature::from_slice(&bytes[..64]).ok()?;
        let recovery = RecoveryId::from_byte(bytes[64].checked_sub(27)?)?;
        let key = VerifyingKey::recover_from_prehash(hash.as_slice(), &signature, recovery).ok()?;
        let point = key.to_encoded_point(false);
        Some(Address::from_slice(&alloy_primitives::keccak256(&point.as_bytes()[1..])[12..]))
    }

    #[test]
    fn a_round_verifies_from_its_typed_data_json_alone() {
        let signer = OracleSigner::from_hex(&OracleSigner::generate_key_hex(), 1).unwrap();
        let signed = signer.sign(&round()).unwrap();
        assert_eq!(recover(&signed), Some(signer.address()));
        assert_eq!(signed.typed_data["message"]["price"], "1250000");
    }

    #[test]
    fn tampering_with_the_message_changes_the_signer() {
        let signer = OracleSigner::from_hex(&OracleSigner::generate_key_hex(), 1).unwrap();
        let mut signed = signer.sign(&round()).unwrap();
        signed.typed_data["message"]["price"] = json!("1");
        assert_ne!(recover(&signed), Some(signer.address()));
    }

    #[test]
    fn publication_on_deviation_heartbeat_or_status_change() {
        let last = round();
        let at = last.published_at + Duration::seconds(10);
        let hb = Duration::seconds(60);
        let dev = Decimal::new(1, 2);
        assert!(!should_publish(Some(&last), Some("1.255".parse().unwrap()), FeedStatus::Ok, at, dev, hb));
        assert!(should_publish(Some(&last), Some("1.27".parse().unwrap()), FeedStatus::Ok, at, dev, hb));
        assert!(should_publish(Some(&last), Some("1.25".parse().unwrap()), FeedStatus::Ok, at + hb, dev, hb));
        assert!(should_publish(Some(&last), None, FeedStatus::InsufficientSources, at, dev, hb));
        assert!(should_publish(None, None, FeedStatus::InsufficientSources, at, dev, hb));
    }
}
