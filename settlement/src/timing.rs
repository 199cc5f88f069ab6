//! How long a prover may hold a job: the ack window and the lease, sized so that the next prover
//! can still make the deadline.
//!
//! # The rule
//! With `prove(p)` the proving time prover `p`'s agents measured for the class (their benchmark),
//! `M` the handover margin (`PCX_HANDOVER_MARGIN_MS`: claim latency, upload, verification) and `T`
//! the scheduler's period (a failure is noticed at most one tick late):
//!
//! - `work(p) = 1.5 × prove(p) + M` — from a claim to a verified proof;
//! - `reserve(next) = T + work(next)` — what the next prover in line needs once a job fails;
//! - a job offered at `t` for a slot due at `deadline` gets
//!   `lease_until = min(deadline, max(deadline − reserve, t + work(holder)))` with
//!   `reserve = min(reserve(next), (deadline − t) / 2)` (just the deadline when nobody comes next:
//!   the open market), and must be claimed by
//!   `ack = min(t + ack_timeout, max(lease_until − work(holder), t + M))`. The holder always keeps
//!   at least half the time left, so a backup that advertises a slow machine cannot squeeze the
//!   primary out of its job;
//! - a claim at `c` holds the job until `min(c + PCX_LEASE_SECS, lease_until)`.
//!
//! So a primary that claims and sits loses the job while its backup still has its own measured
//! time to deliver; the last backup leaves the open market the class's typical time (the median of
//! the live agents' benchmarks). An unknown time counts as zero: only the margins apply.
//!
//! # When the exchange was late
//! A job is *late* when the exchange offers it late: the first job of a slot offered more than
//! `T + M` after the slot opened (the scheduler was behind or the exchange down), or any job
//! offered within `ack_timeout` after an outage ended (agents are still reconnecting). A late job
//! gives its holder the whole ack timeout from the offer, `ack = min(t + ack_timeout, deadline)`,
//! and its claim gets at least the claimer's own work time before the deadline.
//!
//! # Who can be slashed
//! A job is *slashable* unless time was lost before its prover got it: when the holder cannot do
//! its work between the offer and the deadline although it could have from the slot's opening, a
//! failure is not charged to it (the exchange was late, or the provers before it used the time).
//! A prover too slow for the class even from the opening is charged: it sold what it cannot do.
//! A late job is charged for not claiming only if its whole ack timeout and its work fit before the
//! deadline; once claimed, a late (or open-market) job is charged only if the claimer still had its
//! work time before the deadline.

use chrono::{DateTime, Duration, Utc};

/// A measured proving time; `None` when no live agent of the prover benchmarked the class.
pub type ProveTime = Option<Duration>;

/// The settings of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Longest a named prover has to claim its job.
    pub ack_timeout: Duration,
    /// Longest lease of a claimed job.
    pub max_lease: Duration,
    /// The handover margin `M`.
    pub handover: Duration,
    /// The scheduler's period `T`.
    pub tick: Duration,
}

/// Who comes after the holder of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A prover (named backup, or the open market's typical prover) with this measured time.
    Prover(ProveTime),
    /// Nobody: the job is the open market's.
    Nobody,
}

/// The windows of an offered job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Claim by then, or the job fails (`ack_timeout`).
    pub ack_deadline: DateTime<Utc>,
    /// No lease of the job reaches past this (unless a late claim needs its work time).
    pub lease_until: DateTime<Utc>,
    /// Whether a failure of the job is charged to its holder (see the module docs).
    pub slashable: bool,
    /// Offered late by the exchange (see the module docs).
    pub late: bool,
}

impl Timing {
    /// `work(p)`: from a claim to a verified proof.
    pub fn work(&self, prove: ProveTime) -> Duration {
        prove.map_or(Duration::zero(), |p| p * 3 / 2) + self.handover
    }

    /// `reserve(next)`: what the next prover needs once a job fails.
    pub fn reserve(&self, next: ProveTime) -> Duration {
        self.tick + self.work(next)
    }

    /// Whether a holder with `prove` is charged for failing a job offered at `offered_at` (see the
    /// module docs).
    pub fn slashable(&self, prove: ProveTime, opens_at: DateTime<Utc>, offered_at: DateTime<Utc>, deadline: DateTime<Utc>) -> bool {
        let work = self.work(prove);
        offered_at + work <= deadline || opens_at + work > deadline
    }

    /// Whether the first job of a slot opening at `opens_at`, offered at `offered_at`, is late.
    pub fn opened_late(&self, opens_at: DateTime<Utc>, offered_at: DateTime<Utc>) -> bool {
        offered_at > opens_at + self.tick + self.handover
    }

    /// The windows of a job offered at `offered_at` to a holder with `holder`'s measured time
    /// (`late`: see the module docs).
    pub fn windows(
        &self,
        opens_at: DateTime<Utc>,
        offered_at: DateTime<Utc>,
        deadline: DateTime<Utc>,
        holder: ProveTime,
        next: Next,
        late: bool,
    ) -> Windows {
        let work = self.work(holder);
        let lease_until = match next {
            Next::Nobody => deadline,
            Next::Prover(next) => {
                let reserve = self.reserve(next).min((deadline - offered_at) / 2);
                (deadline - reserve).max(offered_at + work).min(deadline)
            }
        };
        if late {
            let ack_deadline = (offered_at + self.ack_timeout).min(deadline);
            let slashable = offered_at + self.ack_timeout + work <= deadline;
            return Windows { ack_deadline, lease_until, slashable, late };
        }
        let ack_deadline = (lease_until - work)
            .max(offered_at + self.handover.min(self.ack_timeout))
            .min(offered_at + self.ack_timeout)
            .min(lease_until);
        Windows { ack_deadline, lease_until, slashable: self.slashable(holder, opens_at, offered_at, deadline), late }
    }

    /// When the lease of a job claimed at `claimed_at` by a prover with `claimer`'s measured time
    /// ends: `PCX_LEASE_SECS` at most, not past `lease_until` unless the claimer needs its work
    /// time (a late claim), never past the deadline.
    pub fn lease_on_claim(
        &self,
        claimed_at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        deadline: DateTime<Utc>,
        claimer: ProveTime,
    ) -> DateTime<Utc> {
        (claimed_at + self.max_lease)
            .min(lease_until.max(claimed_at + self.work(claimer)))
            .min(deadline)
            .max(claimed_at)
    }
}

/// One agent's benchmark of a circuit size, as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Circuit name.
    pub circuit: String,
    /// Size benchmarked.
    pub size_log2: u8,
    /// One proof on one worker.
    pub prove: Duration,
}

/// The time a prover's live agents need for a proof of `circuit` at `size_log2`: the fastest
/// benchmark of that size, else of the smallest larger size it benchmarked (an upper bound).
pub fn expected_prove(measured: &[Measured], circuit: &str, size_log2: u8) -> ProveTime {
    let serving = measured.iter().filter(|m| m.circuit == circuit && m.size_log2 >= size_log2);
    let smallest = serving.clone().map(|m| m.size_log2).min()?;
    serving.filter(|m| m.size_log2 == smallest).map(|m| m.prove).min()
}

/// The open market's typical time: the median of the provers' expected times (the lower middle).
pub fn typical(times: &[Duration]) -> ProveTime {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    fn timing() -> Timing {
        Timing {
            ack_timeout: Duration::seconds(30),
            max_lease: Duration::seconds(300),
            handover: Duration::seconds(2),
            tick: Duration::seconds(1),
        }
    }

    #[test]
    fn a_primary_leaves_its_backup_the_time_the_backup_measured() {
        let t = timing();
        let prove = Some(Duration::milliseconds(400));
        // A 30 s deadline: the backup needs 1 s (tick) + 0.6 s + 2 s.
        let w = t.windows(at(0), at(0), at(30), prove, Next::Prover(prove), false);
        assert_eq!(w.lease_until, at(30) - Duration::milliseconds(3600));
        assert_eq!(w.ack_deadline, w.lease_until - Duration::milliseconds(2600));
        assert!(w.slashable);
        // Claimed at once: the lease ends there, not 300 s later.
        assert_eq!(t.lease_on_claim(at(0), w.lease_until, at(30), prove), w.lease_until);
        // The backup's own job, offered when the primary's lease ran out plus a tick.
        let b = t.windows(at(0), at(27), at(30), prove, Next::Prover(prove), false);
        assert_eq!(b.lease_until, at(27) + Duration::milliseconds(2600), "the holder keeps its own time");
        assert!(b.slashable);
    }

    #[test]
    fn long_deadlines_use_the_ack_timeout_and_the_lease_cap() {
        let t = timing();
        let w = t.windows(at(0), at(0), at(3600), Some(Duration::seconds(10)), Next::Prover(None), false);
        assert_eq!(w.ack_deadline, at(30));
        assert_eq!(w.lease_until, at(3600) - Duration::seconds(3));
        assert_eq!(t.lease_on_claim(at(10), w.lease_until, at(3600), Some(Duration::seconds(10))), at(310));
        let open = t.windows(at(0), at(100), at(3600), None, Next::Nobody, false);
        assert_eq!(open.lease_until, at(3600));
    }

    #[test]
    fn time_lost_before_the_offer_is_not_charged_but_slowness_is() {
        let t = timing();
        let prove = Some(Duration::seconds(4)); // work = 8 s
        assert!(t.slashable(prove, at(0), at(0), at(30)));
        assert!(!t.slashable(prove, at(0), at(25), at(30)), "offered 25 s late: 5 s left for 8 s of work");
        assert!(t.slashable(Some(Duration::seconds(40)), at(0), at(25), at(30)), "too slow even on time");
        let w = t.windows(at(0), at(25), at(30), prove, Next::Prover(prove), false);
        assert_eq!(w.lease_until, at(30));
        assert!(w.ack_deadline > at(25) && w.ack_deadline <= at(30));
    }

    #[test]
    fn a_late_job_gets_the_whole_ack_timeout_and_is_charged_only_when_that_fits() {
        let t = timing();
        let prove = Some(Duration::milliseconds(400)); // work 2.6 s
        assert!(!t.opened_late(at(0), at(3)));
        assert!(t.opened_late(at(0), at(4)));
        let tight = t.windows(at(0), at(10), at(30), prove, Next::Prover(prove), true);
        assert_eq!(tight.ack_deadline, at(30));
        assert!(!tight.slashable, "10 + 30 s of ack + 2.6 s of work do not fit a 30 s deadline");
        let roomy = t.windows(at(0), at(10), at(600), prove, Next::Prover(prove), true);
        assert_eq!(roomy.ack_deadline, at(40));
        assert!(roomy.slashable);
        // A late claim still gets its work time, not past the deadline.
        let lease = t.lease_on_claim(at(29), tight.lease_until, at(30), prove);
        assert_eq!(lease, at(30));
        assert_eq!(t.lease_on_claim(at(20), tight.lease_until, at(30), prove), tight.lease_until);
    }

    #[test]
    fn a_backup_claiming_a_slow_machine_cannot_squeeze_the_primary() {
        let t = timing();
        let w = t.windows(at(0), at(0), at(30), Some(Duration::milliseconds(400)), Next::Prover(Some(Duration::days(1))), false);
        assert_eq!(w.lease_until, at(15), "the primary keeps half the time");
        assert_eq!(w.ack_deadline, at(15) - Duration::milliseconds(2600));
    }

    #[test]
    fn expected_times_come_from_the_closest_benchmark() {
        let m = |size, ms| Measured { circuit: "hash-chain".into(), size_log2: size, prove: Duration::milliseconds(ms) };
        let measured = [m(10, 70), m(12, 180), m(12, 150), m(14, 600)];
        assert_eq!(expected_prove(&measured, "hash-chain", 12), Some(Duration::milliseconds(150)));
        assert_eq!(expected_prove(&measured, "hash-chain", 11), Some(Duration::milliseconds(150)));
        assert_eq!(expected_prove(&measured, "hash-chain", 15), None);
        assert_eq!(expected_prove(&measured, "other", 10), None);
        assert_eq!(typical(&[Duration::seconds(3), Duration::seconds(1), Duration::seconds(2)]), Some(Duration::seconds(2)));
        assert_eq!(typical(&[]), None);
    }
}
