//! Rate limits on the routes a stranger can reach and on the expensive ones, with `governor`'s
//! GCRA limiters (one state per key, kept in memory per process): past a limit the answer is
//! 429 `rate_limited` in the usual envelope with `Retry-After`.
//!
//! | group | routes | key | setting (default) |
//! |---|---|---|---|
//! | sign-up and sign-in | `POST /v1/accounts`, `/v1/auth/*` | client address | `PCX_RATE_AUTH_PER_MIN` (30, burst 10) |
//! | oracle reads | `GET /v1/oracle/*` | client address | `PCX_RATE_ORACLE_PER_SEC` (50, burst 100) |
//! | quotes | `POST /v1/quotes` | the token's account, else the address | `PCX_RATE_QUOTES_PER_MIN` (60, burst 20) |
//!
//! The client address is the TCP peer (behind a proxy, every client shares the proxy's: put the
//! limits there, or raise these). The quote key is the account named in the bearer token,
//! read without verifying it: a forged token only spends its own key's budget and is refused
//! by authentication anyway. Several replicas each count their own share.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// Keys kept before idle ones are dropped (an address that went quiet costs nothing).
const RETAIN_ABOVE: usize = 100_000;

/// The limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// Sign-ups and sign-ins per minute per address.
    pub auth_per_min: u32,
    /// Oracle reads per second per address.
    pub oracle_per_sec: u32,
    /// Quotes per minute per account.
    pub quotes_per_min: u32,
}

/// The limiters of one process.
pub struct RateLimits {
    auth: DefaultKeyedRateLimiter<IpAddr>,
    oracle: DefaultKeyedRateLimiter<IpAddr>,
    quotes: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimits(..)")
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    /// Limiters for `settings`.
    pub fn new(settings: RateSettings) -> RateLimits {
        let per_min = |n: u32, burst: u32| Quota::per_minute(nonzero(n)).allow_burst(nonzero(burst.min(n.max(1))));
        RateLimits {
            auth: DefaultKeyedRateLimiter::keyed(per_min(settings.auth_per_min, 10)),
            oracle: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(nonzero(settings.oracle_per_sec)).allow_burst(nonzero(settings.oracle_per_sec.saturating_mul(2))),
            ),
            quotes: DefaultKeyedRateLimiter::keyed(per_min(settings.quotes_per_min, 20)),
            clock: DefaultClock::default(),
        }
    }
}

/// Which limit a request counts against.
enum Group {
    Auth,
    Oracle,
    Quotes,
}

fn group(route: &str, method: &Method) -> Option<Group> {
    match (route, method) {
        ("/v1/accounts", &Method::POST) => Some(Group::Auth),
        (r, _) if r.starts_with("/v1/auth/") => Some(Group::Auth),
        (r, &Method::GET) if r.starts_with("/v1/oracle/") => Some(Group::Oracle),
        ("/v1/quotes", &Method::POST) => Some(Group::Quotes),
        _ => None,
    }
}

/// Whether a request to `route` (its template) with `method` counts against a rate limit.
pub(crate) fn is_rate_limited(route: &str, method: &Method) -> bool {
    group(route, method).is_some()
}

/// The `sub` of a bearer token, unverified (see the module docs).
fn token_subject(request: &Request) -> Option<String> {
    let header = request.headers().get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = header.strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// Middleware: counts the request against its group's limiter; 429 past it.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let Some(group) = group(&route, request.method()) else { return next.run(request).await };
    // Without a peer (a test driving the router directly) there is nobody to count.
    let Some(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
        return next.run(request).await;
    };
    let limits = &state.rate_limits;
    let (outcome, whom) = match group {
        Group::Auth => (limits.auth.check_key(&peer), "this address"),
        Group::Oracle => (limits.oracle.check_key(&peer), "this address"),
        Group::Quotes => {
            let key = token_subject(&request).unwrap_or_else(|| peer.to_string());
            (limits.quotes.check_key(&key), "this account")
        }
    };
    for limiter_len in [limits.auth.len(), limits.oracle.len()] {
        if limiter_len > RETAIN_ABOVE {
            limits.auth.retain_recent();
            limits.oracle.retain_recent();
        }
    }
    if limits.quotes.len() > RETAIN_ABOVE {
        limits.quotes.retain_recent();
    }
    match outcome {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(limits.clock.now());
            let secs = u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
            ApiError::new(
                ErrorCode::RateLimited,
                format!("too many requests to {route} from {whom}; retry in {secs} s"),
            )
            .with_retry_after(secs)
            .into_response()
        }
    }
}
