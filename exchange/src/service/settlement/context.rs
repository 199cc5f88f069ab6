//! What settlement decisions read besides the rows they change: the outages the scheduler saw and
//! the live agents' measured proving times. A tick loads them once; a single transition (a
//! submission, a release) loads them for the provers it concerns.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use pcx_domain::{AccountId, ProofClass};
use pcx_settlement::outage::Outage;
use pcx_settlement::slot::{ProveTimes, Slot};
use pcx_settlement::timing::{expected_prove, typical, Measured};

use crate::store;

/// An agent counts as live while its last heartbeat is at most this old (agents beat every 10 s).
pub const AGENT_LIVE: Duration = Duration::seconds(60);
/// Outages older than this no longer concern any live job.
const OUTAGE_MEMORY: Duration = Duration::days(7);

/// Outages and measured times.
#[derive(Debug, Default)]
pub struct Context {
    /// Outages that ended in the last week.
    pub outages: Vec<Outage>,
    measured: HashMap<AccountId, Vec<Measured>>,
}

impl Context {
    /// Everything, for a tick at `now`.
    pub async fn load(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Context, sqlx::Error> {
        Ok(Context {
            outages: store::scheduler::outages_since(conn, now - OUTAGE_MEMORY).await?,
            measured: store::agents::measured_since(conn, None, now - AGENT_LIVE).await?,
        })
    }

    /// The prove times of a slot's provers and of the open market for `class`.
    pub fn times(&self, slot: &Slot, class: &ProofClass) -> ProveTimes {
        let expected = |prover: &AccountId| {
            self.measured.get(prover).and_then(|m| expected_prove(m, &class.circuit, class.size_log2))
        };
        let named = std::iter::once(&slot.primary)
            .chain(&slot.backups)
            .filter_map(|p| expected(p).map(|t| (*p, t)))
            .collect();
        let everyone: Vec<Duration> = self.measured.keys().filter_map(expected).collect();
        ProveTimes { named, open_market: typical(&everyone) }
    }
}
