//! What the background loops (the settlement scheduler, the oracle) share with the rest of the
//! exchange: when each last completed a tick, so `/health` can say when one has stalled; periodic
//! checks that run at most every so often; and verifying keys made ready ahead of the first proof.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use pcx_domain::ProofClass;
use pcx_prover_pool::circuit::Circuit;
use crate::service::setups::Setups;

/// The settlement scheduler's name in [`Background`].
pub const SCHEDULER: &str = "settlement_scheduler";
/// The oracle's name in [`Background`].
pub const ORACLE: &str = "oracle";

#[derive(Debug, Clone, Copy)]
struct Beat {
    started: Instant,
    last_tick: Option<Instant>,
}

/// A background loop as `/health` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LoopHealth {
    /// `settlement_scheduler` or `oracle`.
    pub name: String,
    /// Milliseconds since its last completed tick (since it started, before the first).
    pub last_tick_age_ms: u64,
    /// True when that is more than the bound (`PCX_HEALTH_STALL_SECS`).
    pub stalled: bool,
}

/// The loops' beats and the periodic checks' last runs.
#[derive(Debug, Default)]
pub struct Background {
    beats: Mutex<HashMap<&'static str, Beat>>,
    checks: Mutex<HashMap<&'static str, DateTime<Utc>>>,
    ticked_since_start: std::sync::atomic::AtomicBool,
    lease: std::sync::OnceLock<std::sync::Arc<crate::lease::Lease>>,
}

impl Background {
    /// The worker lease this process competes for (`pcx serve` with a role that runs background work).
    pub fn compete_for(&self, lease: std::sync::Arc<crate::lease::Lease>) {
        let _ = self.lease.set(lease);
    }

    /// Whether this process holds the worker lease now; `None` when it does not compete for it.
    pub fn holds_worker_lease(&self) -> Option<bool> {
        self.lease.get().map(|lease| lease.is_held())
    }

    /// True for the first settlement tick of this process: whatever the gap since the last tick
    /// recorded in the database, the exchange was not running in it (a crash, a restart, a lease
    /// handed over), so it is an outage however short.
    pub fn first_tick_of_process(&self) -> bool {
        !self.ticked_since_start.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// This replica took the worker lease: its next settlement tick is a first one again (the
    /// time since the last tick anywhere was spent without a scheduler, however short).
    pub fn holding_started(&self) {
        self.ticked_since_start.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// A loop starts: from now on it is expected to tick.
    pub fn started(&self, name: &'static str) {
        self.beats.lock().unwrap_or_else(PoisonError::into_inner).insert(name, Beat { started: Instant::now(), last_tick: None });
    }

    /// A loop completed a tick.
    pub fn ticked(&self, name: &'static str) {
        let mut beats = self.beats.lock().unwrap_or_else(PoisonError::into_inner);
        let beat = beats.entry(name).or_insert(Beat { started: Instant::now(), last_tick: None });
        beat.last_tick = Some(Instant::now());
    }

    /// A loop stopped (shutdown): it is no longer expected to tick.
    pub fn stopped(&self, name: &'static str) {
        self.beats.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }

    /// Every running loop, and whether it has stalled past `bound`.
    pub fn health(&self, bound: Duration) -> Vec<LoopHealth> {
        let beats = self.beats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<LoopHealth> = beats
            .iter()
            .map(|(name, beat)| {
                let age = beat.last_tick.unwrap_or(beat.started).elapsed();
                LoopHealth {
                    name: (*name).to_owned(),
                    last_tick_age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    stalled: age > bound,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// True (and noted) when `check` last ran more than `every` before `now` on the caller's clock.
    pub fn due(&self, check: &'static str, now: DateTime<Utc>, every: chrono::Duration) -> bool {
        let mut checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        match checks.get(check) {
            Some(last) if now >= *last && now - *last < every => false,
            _ => {
                checks.insert(check, now);
                true
            }
        }
    }
}

/// Makes verifying keys ready in the background, once per class: at start for the classes still
/// traded, and as contracts' slots are materialised, so no proof waits for its key. The built-in
/// circuit's keys come from its [`Setups`] (made once per exchange); registered circuits carry
/// theirs and are loaded by the catalogue on first use.
#[derive(Debug)]
pub struct KeyWarmer {
    setups: Arc<Setups>,
    /// (circuit, size) of the classes started.
    started: Mutex<HashSet<(String, u8)>>,
}

impl KeyWarmer {
    /// A warmer over `setups`.
    pub fn new(setups: Arc<Setups>) -> KeyWarmer {
        KeyWarmer { setups, started: Mutex::new(HashSet::new()) }
    }

    /// Starts making `class`'s verifying key ready, unless that already started.
    pub fn warm(&self, class: &ProofClass) {
        let Ok(Circuit::HashChain { size_log2 }) = Circuit::for_class(class) else { return };
        let key = (class.circuit.clone(), size_log2);
        if !self.started.lock().unwrap_or_else(PoisonError::into_inner).insert(key) {
            return;
        }
        self.setups.warm(size_log2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_ticking_is_reported_stalled() {
        let background = Background::default();
        background.started(SCHEDULER);
        assert!(!background.health(Duration::from_secs(60))[0].stalled);
        assert!(background.health(Duration::ZERO)[0].stalled);
        background.ticked(SCHEDULER);
        assert!(!background.health(Duration::from_secs(60))[0].stalled);
        background.stopped(SCHEDULER);
        assert!(background.health(Duration::ZERO).is_empty());
    }

    #[test]
    fn periodic_checks_run_at_most_every_period() {
        let background = Background::default();
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let every = chrono::Duration::seconds(30);
        assert!(background.due("c", t, every));
        assert!(!background.due("c", t + chrono::Duration::seconds(10), every));
        assert!(background.due("c", t + chrono::Duration::seconds(30), every));
        assert!(background.due("c", t, every), "a clock moved back runs it again");
        assert!(background.due("zero", t, chrono::Duration::zero()) && background.due("zero", t, chrono::Duration::zero()));
    }
}
