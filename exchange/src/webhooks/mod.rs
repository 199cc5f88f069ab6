//! Webhooks' rules, without I/O: the events an account is told of ([`EventType`], [`Event`]),
//! Standard Webhooks signatures ([`signing`]), endpoint secrets sealed at rest ([`sealing`]),
//! which URLs may receive events ([`check_url`]) and when a failed delivery is tried again
//! ([`retry_delay`]).
//!
//! The shell is `service::webhooks` (registration, the outbox, delivery) over
//! `store::webhooks`; the outbox's guarantees are in migration 0012's comments.

pub mod sealing;
pub mod settlement;
pub mod signing;

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use pcx_domain::AccountId;

/// An event's type: the body's `type`, and what an endpoint subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// A buyer's slot got its proof, verified (`data.proof_url` fetches it).
    #[serde(rename = "slot.delivered")]
    SlotDelivered,
    /// A prover of a buyer's slot failed and the slot went on to the next one.
    #[serde(rename = "slot.failed_over")]
    SlotFailedOver,
    /// A buyer's slot ended without a proof and was refunded (`data.reason` says why).
    #[serde(rename = "slot.missed")]
    SlotMissed,
    /// A buyer's slot opened without its input: paid anyway (take-or-pay).
    #[serde(rename = "slot.unused")]
    SlotUnused,
    /// A buyer's contract was suspended: its escrow window could not be funded.
    #[serde(rename = "contract.suspended")]
    ContractSuspended,
    /// A suspended contract is funded and running again.
    #[serde(rename = "contract.resumed")]
    ContractResumed,
    /// Every slot of a buyer's contract is settled.
    #[serde(rename = "contract.completed")]
    ContractCompleted,
    /// After a top-up, the buyer's available balance does not cover the contract's next one.
    #[serde(rename = "escrow.low")]
    EscrowLow,
    /// A prover is offered a job.
    #[serde(rename = "job.offered")]
    JobOffered,
    /// A prover's job ended without its proof: not claimed, lease over, deadline passed, or the
    /// exchange's own outage (`data.failure` says which; an outage charges nobody).
    #[serde(rename = "job.expired")]
    JobExpired,
    /// A prover's bond was slashed for a failed job.
    #[serde(rename = "stake.slashed")]
    StakeSlashed,
    /// A prover was paid for a delivered proof.
    #[serde(rename = "payment.received")]
    PaymentReceived,
}

impl EventType {
    /// Every type, in the order of the documentation.
    pub const ALL: &'static [EventType] = &[
        EventType::SlotDelivered,
        EventType::SlotFailedOver,
        EventType::SlotMissed,
        EventType::SlotUnused,
        EventType::ContractSuspended,
        EventType::ContractResumed,
        EventType::ContractCompleted,
        EventType::EscrowLow,
        EventType::JobOffered,
        EventType::JobExpired,
        EventType::StakeSlashed,
        EventType::PaymentReceived,
    ];

    /// The stable name (`slot.delivered`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SlotDelivered => "slot.delivered",
            EventType::SlotFailedOver => "slot.failed_over",
            EventType::SlotMissed => "slot.missed",
            EventType::SlotUnused => "slot.unused",
            EventType::ContractSuspended => "contract.suspended",
            EventType::ContractResumed => "contract.resumed",
            EventType::ContractCompleted => "contract.completed",
            EventType::EscrowLow => "escrow.low",
            EventType::JobOffered => "job.offered",
            EventType::JobExpired => "job.expired",
            EventType::StakeSlashed => "stake.slashed",
            EventType::PaymentReceived => "payment.received",
        }
    }

    /// Parses a stable name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == name)
    }

    /// Whose event it is: buyers hear of their slots and contracts, provers of their jobs,
    /// stake and payments.
    pub fn role(self) -> pcx_domain::Role {
        match self {
            EventType::JobOffered | EventType::JobExpired | EventType::StakeSlashed | EventType::PaymentReceived => {
                pcx_domain::Role::Prover
            }
            _ => pcx_domain::Role::Buyer,
        }
    }
}

/// An event as its transition writes it to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Who is told.
    pub account: AccountId,
    /// What happened.
    pub kind: EventType,
    /// What its deliveries to one endpoint are ordered within (a slot, a contract): an event is
    /// sent only after every earlier one of the same subject was delivered or given up.
    pub subject: String,
    /// When the transition happened (the market's clock).
    pub occurred_at: DateTime<Utc>,
    /// The body's `data`: names the contract, slot or job, its state and reason.
    pub data: Value,
}

impl Event {
    /// The subject of a slot's events (and of its jobs').
    pub fn slot_subject(contract: uuid::Uuid, n: u64) -> String {
        format!("slot:{contract}:{n}")
    }

    /// The subject of a contract's own events.
    pub fn contract_subject(contract: uuid::Uuid) -> String {
        format!("contract:{contract}")
    }
}

/// The JSON body of an event: `{"type", "timestamp", "data"}`.
pub fn body(kind: EventType, occurred_at: DateTime<Utc>, data: &Value) -> Vec<u8> {
    let body = serde_json::json!({
        "type": kind.as_str(),
        "timestamp": occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    });
    body.to_string().into_bytes()
}

/// Why a URL may not receive events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not a URL.
    #[error("not a URL: {0}")]
    Malformed(String),
    /// A scheme other than http and https.
    #[error("only http and https URLs receive events, not {0}:")]
    Scheme(String),
    /// Credentials in the URL would be sent to every redirect and logged by proxies.
    #[error("the URL must not carry a user name or password")]
    Credentials,
    /// The exchange itself.
    #[error("the URL points at this exchange")]
    Exchange,
    /// Loopback, private, link-local (cloud metadata) or unspecified addresses, unless allowed.
    #[error("the URL's address {0} is not a public one (set PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow)")]
    Private(IpAddr),
}

/// Where events may not go: the exchange's own addresses, and unless `allow_private` any address
/// that is not public.
#[derive(Debug, Clone, Default)]
pub struct UrlRules {
    /// The exchange's own `host:port`s (its listen address, its public URL).
    pub exchange: Vec<(String, u16)>,
    /// Allow loopback and private networks (tests, one-machine setups).
    pub allow_private: bool,
}

/// Checks an endpoint URL as registered: scheme, credentials, and (when the host is an address
/// or `localhost`) where it points. Names are resolved and checked again at each delivery.
pub fn check_url(url: &str, rules: &UrlRules) -> Result<reqwest::Url, UrlRefusal> {
    let parsed = reqwest::Url::parse(url).map_err(|err| UrlRefusal::Malformed(err.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlRefusal::Scheme(parsed.scheme().to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let host = parsed.host_str().ok_or_else(|| UrlRefusal::Malformed("no host".into()))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let address = match host.as_str() {
        "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        other => other.parse::<IpAddr>().ok(),
    };
    if let Some(address) = address {
        check_address(address, port, rules)?;
    }
    if rules.exchange.iter().any(|(h, p)| *p == port && h.eq_ignore_ascii_case(&host)) {
        return Err(UrlRefusal::Exchange);
    }
    Ok(parsed)
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it reaches.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Checks one address an endpoint resolves to. An unspecified address (`0.0.0.0`, `::`) is never
/// a destination (connecting to it reaches this machine); a loopback address on the port of an
/// exchange listening on loopback or on every address is the exchange.
pub fn check_address(address: IpAddr, port: u16, rules: &UrlRules) -> Result<(), UrlRefusal> {
    let address = canonical(address);
    let own = rules.exchange.iter().any(|(h, p)| {
        *p == port
            && h.parse::<IpAddr>().map(canonical).is_ok_and(|a| {
                a == address || ((a.is_unspecified() || a.is_loopback()) && (address.is_loopback() || address.is_unspecified()))
            })
    });
    if own {
        return Err(UrlRefusal::Exchange);
    }
    if address.is_unspecified() || (!rules.allow_private && !is_public(address)) {
        return Err(UrlRefusal::Private(address));
    }
    Ok(())
}

fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // 100.64.0.0/10
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| !is_public(IpAddr::V4(v4))))
        }
    }
}

/// How long after failed attempt `attempt` (1 for the first) the next one is made: 5 s doubling
/// to at most an hour, with jitter (a random point in the upper half), so that endpoints coming
/// back are not hit by every retry at once. `unit` is a number in [0, 1) the caller draws.
pub fn retry_delay(attempt: u32, unit: f64) -> Duration {
    let base = 5u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(20)).min(3600);
    let unit = unit.clamp(0.0, 1.0);
    // base/2 + unit × base/2, in milliseconds.
    let millis = base * 500 + (unit * (base * 500) as f64) as u64;
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip_and_match_serde() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(*kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        assert_eq!(EventType::parse("slot.exploded"), None);
    }

    #[test]
    fn urls_of_other_schemes_credentials_the_exchange_or_private_networks_are_refused() {
        let rules = UrlRules { exchange: vec![("127.0.0.1".into(), 8080), ("pcx.example.com".into(), 443)], allow_private: false };
        assert!(check_url("https://hooks.example.org/pcx", &rules).is_ok());
        assert!(matches!(check_url("ftp://hooks.example.org/", &rules), Err(UrlRefusal::Scheme(_))));
        assert!(matches!(check_url("file:///etc/passwd", &rules), Err(UrlRefusal::Scheme(_))));
        assert!(matches!(check_url("https://user:pw@hooks.example.org/", &rules), Err(UrlRefusal::Credentials)));
        assert!(matches!(check_url("https://pcx.example.com/v1/accounts", &rules), Err(UrlRefusal::Exchange)));
        assert!(matches!(check_url("http://127.0.0.1:8080/health", &rules), Err(UrlRefusal::Exchange)));
        for private in ["http://10.0.0.5/", "http://169.254.169.254/latest/meta-data", "http://[::1]:9000/", "http://localhost:9000/",
            "http://[fd00::1]/", "http://[::ffff:192.168.1.1]/", "http://0.0.0.0:9000/"] {
            assert!(matches!(check_url(private, &rules), Err(UrlRefusal::Private(_))), "{private}");
        }
        assert!(matches!(check_url("not a url", &rules), Err(UrlRefusal::Malformed(_))));
        let open = UrlRules { allow_private: true, ..rules };
        assert!(check_url("http://127.0.0.1:9000/hook", &open).is_ok());
        assert!(matches!(check_url("http://127.0.0.1:8080/hook", &open), Err(UrlRefusal::Exchange)));
        assert!(matches!(check_url("http://localhost:8080/", &open), Err(UrlRefusal::Exchange)));
        // Other spellings of this machine on the exchange's port.
        for own in ["http://0.0.0.0:8080/v1/accounts", "http://[::ffff:127.0.0.1]:8080/v1/accounts", "http://[::1]:8080/", "http://127.0.0.2:8080/"] {
            assert!(matches!(check_url(own, &open), Err(UrlRefusal::Exchange)), "{own}");
        }
        assert!(matches!(check_url("http://0.0.0.0:9000/", &open), Err(UrlRefusal::Private(_))), "never a destination");
        assert!(matches!(check_url("http://[::]:9000/", &open), Err(UrlRefusal::Private(_))));
        assert!(check_url("http://[::1]:9000/hook", &open).is_ok());
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_an_hour() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_millis(2500));
        assert_eq!(retry_delay(1, 0.999_999).as_secs(), 4);
        assert_eq!(retry_delay(2, 0.0), Duration::from_secs(5));
        assert_eq!(retry_delay(4, 0.0), Duration::from_secs(20));
        assert_eq!(retry_delay(30, 0.0), Duration::from_secs(1800));
        assert!(retry_delay(30, 0.99) <= Duration::from_secs(3600));
        let mut previous = Duration::ZERO;
        for attempt in 1..15 {
            let low = retry_delay(attempt, 0.0);
            assert!(low >= previous, "never shorter than the last one's lower bound");
            previous = low;
        }
    }

    #[test]
    fn signatures_are_standard_webhooks_v1() {
        // The Standard Webhooks specification's example (its libraries' tests use the same).
        let secret = signing::SigningSecret::from_bytes(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
        );
        let signature = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(secret.to_text().starts_with("whsec_"));
    }

    #[test]
    fn sealed_secrets_open_with_their_key_and_row_only() {
        let sealer = sealing::Sealer::from_hex(&"ab".repeat(32)).unwrap();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let sealed = sealer.seal(a, b"secret bytes");
        assert_ne!(&sealed[12..], b"secret bytes");
        assert_eq!(sealer.open(a, &sealed).unwrap(), b"secret bytes");
        assert!(sealer.open(b, &sealed).is_err(), "another row");
        let other = sealing::Sealer::from_hex(&"cd".repeat(32)).unwrap();
        assert!(other.open(a, &sealed).is_err(), "another key");
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(sealer.open(a, &altered).is_err(), "altered");
        assert!(sealing::Sealer::from_hex("abcd").is_err());
    }
}
