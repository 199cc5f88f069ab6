//! Running a transaction again when it lost to a concurrent one.
//!
//! A deadlock or serialisation failure (`40P01`, `40001`) aborts a transaction before it wrote
//! anything, so running it again is safe: every transition re-reads what it changes under lock
//! and is guarded by the state it expects. Settlement transitions and the agents' writes go through
//! [`contended`], so a lost race costs a retry, never a lost batch or an error to a client; only
//! contention that outlasts every attempt reaches the caller (503 `contention`).

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{ApiResult, ErrorCode};

/// Attempts before giving up.
pub const ATTEMPTS: u32 = 8;

/// Runs `attempt` until it does not fail with contention, at most [`ATTEMPTS`] times, pausing a
/// jittered, doubling moment (5 ms to 320 ms) between tries.
pub async fn contended<T, F, Fut>(what: &str, mut attempt: F) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(err) if err.code == ErrorCode::Contention && tries < ATTEMPTS => {
                let base = 5u64 << tries.min(6);
                let pause = rand::thread_rng().gen_range(base / 2..=base);
                tracing::debug!(what, tries, pause_ms = pause, "lost to a concurrent transaction; retrying");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    #[tokio::test]
    async fn contention_is_retried_and_other_errors_are_not() {
        let mut calls = 0;
        let done = contended("test", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(ApiError::new(ErrorCode::Contention, "again")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(done, Ok(3));
        let mut calls = 0;
        let failed: ApiResult<()> = contended("test", || {
            calls += 1;
            async { Err(ApiError::new(ErrorCode::NotFound, "no")) }
        })
        .await;
        assert_eq!((failed.unwrap_err().code, calls), (ErrorCode::NotFound, 1));
        let mut calls = 0;
        let gave_up: ApiResult<()> = contended("test", || {
            calls += 1;
            async { Err(ApiError::new(ErrorCode::Contention, "always")) }
        })
        .await;
        assert_eq!((gave_up.unwrap_err().code, calls), (ErrorCode::Contention, ATTEMPTS));
    }
}
