//! Which replica runs the background work. Any number of `pcx serve` processes may share one
//! database; the settlement scheduler, oracle publication and purges run only on the one that
//! holds the worker lease (a row of `worker_leases`, migration 0010).
//!
//! - Each process draws a random holder id at start. Its keeper takes or renews the lease every
//!   third of [`Lease::ttl`]; a lease its holder has not renewed for `ttl` is taken by the next
//!   replica that tries, so background work resumes within `ttl` plus a third of it after its
//!   holder dies (`PCX_WORKER_LEASE_SECS`, 15 s: within 20 s).
//! - Fencing: a background transaction starts with [`Lease::check`], which reads the lease row
//!   FOR SHARE and refuses unless this holding (holder and fence) is still current by the
//!   database's clock. A replica that lost its lease (paused, cut off, killed mid-tick) commits
//!   nothing afterwards, and a takeover waits until its running transactions have ended.
//! - A process that shuts down gives its lease up, so another takes over at its next attempt.
//!
//! Transitions made by requests (an agent's claim or proof, a buyer's input) are not background
//! work: they run on whichever replica the request reached, guarded by the rows they lock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store;

/// The lease of the settlement scheduler, the oracle's publication and the purges.
pub const BACKGROUND: &str = "background";

/// This process's view of one lease.
#[derive(Debug)]
pub struct Lease {
    name: &'static str,
    holder: Uuid,
    ttl: Duration,
    /// The fence of the current holding, 0 while not held.
    fence: AtomicI64,
    /// When the holding lapses unless renewed first (measured from the start of the renewal that
    /// succeeded, so it never outlasts the database's view).
    until: std::sync::Mutex<Option<Instant>>,
}

impl Lease {
    /// This process's holder id (also its id in `replicas`).
    pub fn holder(&self) -> Uuid {
        self.holder
    }

    /// A lease `name` for a new holder id, with time to live `ttl`.
    pub fn new(name: &'static str, ttl: Duration) -> Arc<Lease> {
        Arc::new(Lease {
            name,
            holder: Uuid::new_v4(),
            ttl,
            fence: AtomicI64::new(0),
            until: std::sync::Mutex::new(None),
        })
    }

    /// The fence of the current holding, if this process holds the lease now.
    pub fn fence(&self) -> Option<i64> {
        let until = *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fence = self.fence.load(Ordering::SeqCst);
        (fence > 0 && until.is_some_and(|u| Instant::now() < u)).then_some(fence)
    }

    /// Whether this process holds the lease now.
    pub fn is_held(&self) -> bool {
        self.fence().is_some()
    }

    /// One attempt to take or renew the lease. Returns whether it is held afterwards and whether
    /// this attempt took it (a new holding, whose fence differs from any before).
    pub async fn refresh(&self, db: &PgPool) -> ApiResult<(bool, bool)> {
        let started = Instant::now();
        let before = self.fence();
        let taken = store::leases::take_or_renew(&mut *db.acquire().await?, self.name, self.holder, self.ttl.as_secs_f64()).await;
        let mut until = self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match taken {
            Ok(Some(fence)) => {
                self.fence.store(fence, Ordering::SeqCst);
                *until = Some(started + self.ttl);
                Ok((true, before != Some(fence)))
            }
            Ok(None) => {
                self.fence.store(0, Ordering::SeqCst);
                *until = None;
                Ok((false, false))
            }
            // The holding stands until `until` (the database may still count it).
            Err(err) => Err(err.into()),
        }
    }

    /// Refuses unless this process still holds the lease with the fence it had when the
    /// transaction on `conn` started; locks the lease row shared until that transaction ends.
    pub async fn check(&self, conn: &mut PgConnection) -> ApiResult<()> {
        let Some(fence) = self.fence() else { return Err(not_held(self.name)) };
        match store::leases::holds(conn, self.name, self.holder, fence).await? {
            true => Ok(()),
            false => {
                self.fence.store(0, Ordering::SeqCst);
                Err(not_held(self.name))
            }
        }
    }

    /// Gives the lease up, if held.
    pub async fn release(&self, db: &PgPool) {
        if self.fence.swap(0, Ordering::SeqCst) == 0 {
            return;
        }
        match db.acquire().await {
            Ok(mut conn) => {
                if let Err(err) = store::leases::release(&mut conn, self.name, self.holder).await {
                    tracing::warn!(error = %err, lease = self.name, "could not give the lease up; it lapses by itself");
                }
            }
            Err(err) => tracing::warn!(error = %err, lease = self.name, "could not give the lease up; it lapses by itself"),
        }
    }
}

fn not_held(name: &str) -> ApiError {
    ApiError::new(ErrorCode::Unavailable, format!("this replica does not hold the {name} lease"))
}

/// Keeps trying to take or renew `lease` every third of its time to live until `shutdown`,
/// then gives it up. `on_taken` runs each time this process takes it anew (before any
/// background work of that holding: the oracle reloads its latest rounds, the scheduler
/// treats the time since the last tick as downtime).
pub async fn keep(lease: Arc<Lease>, db: PgPool, mut shutdown: tokio::sync::watch::Receiver<bool>, on_taken: impl Fn() + Send) {
    let mut interval = tokio::time::interval(lease.ttl / 3);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_held = false;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        match lease.refresh(&db).await {
            Ok((held, taken)) => {
                if taken {
                    tracing::info!(lease = lease.name, holder = %lease.holder, fence = ?lease.fence(), "took the lease: background work runs here");
                    on_taken();
                } else if was_held && !held {
                    tracing::warn!(lease = lease.name, "lost the lease to another replica: background work stops here");
                }
                was_held = held;
            }
            Err(err) => tracing::warn!(error = %err, lease = lease.name, "could not renew the lease; retrying"),
        }
    }
    lease.release(&db).await;
}
