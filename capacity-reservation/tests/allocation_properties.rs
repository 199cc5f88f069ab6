//! Property tests of the allocation and the quote arithmetic over random books.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use rand::SeedableRng;
use rust_decimal::Decimal;

use pcx_capacity_reservation::allocation::{
    allocate, allocate_within, Allocation, AllocationError, CollateralTerms, ContractRequest, Held, OfferSnapshot, ReservationRole,
};
use pcx_capacity_reservation::capacity::SlotRun;
use pcx_capacity_reservation::discounts::DiscountSchedule;
use pcx_capacity_reservation::pricing::{times, TieredPrice};
use pcx_capacity_reservation::quote::price_allocation;
use pcx_domain::{AccountId, Money, ProofClass, ProofSystem, Schedule};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_800, 0).unwrap()
}

fn class() -> ProofClass {
    ProofClass { system: ProofSystem::Groth16Bn254, circuit: "hash-chain".into(), size_log2: 12, deadline_secs: 600 }
}

#[derive(Debug, Clone)]
struct OfferSpec {
    prover: usize,
    start_h: i64,
    len_h: i64,
    pph: u32,
    price_cents: i64,
    /// Existing reservations: (primary?, start in minutes, cadence, slots, proofs per slot).
    held: Vec<(bool, i64, u32, u64, u32)>,
}

fn cadences() -> Vec<u32> {
    vec![600, 1500, 1800, 3600, 5400, 7200, 86_400]
}

fn offer_spec() -> impl Strategy<Value = OfferSpec> {
    let held = (any::<bool>(), 0i64..18_000, prop::sample::select(cadences()), 1u64..100, 1u32..3);
    (0usize..5, 0i64..48, 1i64..400, 1u32..8, 50i64..300, prop::collection::vec(held, 0..3))
        .prop_map(|(prover, start_h, len_h, pph, price_cents, held)| OfferSpec { prover, start_h, len_h, pph, price_cents, held })
}

fn run(start: DateTime<Utc>, every: u32, slots: u64, pps: u32) -> SlotRun {
    let schedule = Schedule { start, end: start + Duration::seconds(i64::from(every) * slots as i64), every_secs: every };
    SlotRun::of(&schedule, 0..slots, pps).unwrap()
}

fn build(specs: &[OfferSpec], provers: &[AccountId]) -> Vec<OfferSnapshot> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| OfferSnapshot {
            offer_id: i as i64 + 1,
            prover_id: provers[s.prover],
            class: class(),
            window_start: t0() + Duration::hours(s.start_h),
            window_end: t0() + Duration::hours(s.start_h + s.len_h),
            proofs_per_hour: s.pph,
            price: TieredPrice::new(Money::from_decimal(Decimal::new(s.price_cents, 2)).unwrap(), vec![]).unwrap(),
            reputation: Decimal::ONE,
            held: s
                .held
                .iter()
                .map(|(primary, from_m, every, slots, pps)| Held {
                    role: if *primary { ReservationRole::Primary } else { ReservationRole::Backup },
                    run: run(t0() + Duration::minutes(*from_m), *every, *slots, *pps),
                })
                .filter(|h| h.run.peak_hourly() <= u64::from(s.pph))
                .collect(),
        })
        .collect()
}

/// Collateral terms in which every prover has ample stake.
fn collateral(provers: &[AccountId]) -> CollateralTerms {
    CollateralTerms {
        now: t0(),
        window: Duration::hours(24),
        slash_multiplier: Decimal::TWO,
        headroom: provers.iter().map(|p| (*p, Decimal::from(1_000_000))).collect::<HashMap<_, _>>(),
    }
}

static ALLOCATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Every offer's load at every hour, with the allocation added, stays within capacity (an hour
/// the existing reservations already fill takes nothing more), and every slot it serves lies in
/// its window.
fn assert_never_overbooked(offers: &[OfferSnapshot], request: &ContractRequest, allocation: &Allocation) {
    for offer in offers {
        for role in [ReservationRole::Primary, ReservationRole::Backup] {
            let existing: Vec<SlotRun> = offer.held.iter().filter(|h| h.role == role).map(|h| h.run).collect();
            let added: Vec<SlotRun> = allocation
                .blocks
                .iter()
                .filter(|b| match role {
                    ReservationRole::Primary => b.primary.offer_id == offer.offer_id,
                    ReservationRole::Backup => b.backups.iter().any(|a| a.offer_id == offer.offer_id),
                })
                .map(|b| SlotRun::of(&request.schedule, b.first_slot..b.end_slot, request.proofs_per_slot).unwrap())
                .collect();
            for r in &added {
                assert!(offer.window_start <= r.first_at() && r.last_at() < offer.window_end, "offer {} serves outside its window", offer.offer_id);
            }
            let (Some(from), Some(to)) = (added.iter().map(|r| r.first_hour()).min(), added.iter().map(|r| r.end_hour()).max()) else { continue };
            let mut h = from;
            while h < to {
                let add: u64 = added.iter().map(|r| r.proofs_in_hour(h)).sum();
                let have: u64 = existing.iter().map(|r| r.proofs_in_hour(h)).sum();
                assert!(add == 0 || have + add <= u64::from(offer.proofs_per_hour), "offer {} {role:?} overbooked at {h}: {have} + {add}", offer.offer_id);
                h += Duration::hours(1);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A deadline only stops the allocator: one it meets changes nothing (same choices, same draws),
    /// one already past answers `BudgetExceeded` and no partial allocation.
    #[test]
    fn a_deadline_met_changes_nothing_and_one_passed_gives_up(
        specs in prop::collection::vec(offer_spec(), 1..8),
        len_h in 1i64..300,
        every in prop::sample::select(cadences()),
        redundancy in 0u8..3,
        seed in any::<u64>(),
    ) {
        let provers: Vec<AccountId> = (0..5).map(|_| AccountId::new_random()).collect();
        let offers = build(&specs, &provers);
        let request = ContractRequest {
            class: class(),
            schedule: Schedule { start: t0(), end: t0() + Duration::hours(len_h), every_secs: every },
            proofs_per_slot: 1,
            redundancy,
            max_price_per_proof: None,
            min_reputation: None,
        };
        let plain = allocate(&request, &offers, &mut collateral(&provers), &mut rand::rngs::StdRng::seed_from_u64(seed));
        let far = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let timed = allocate_within(&request, &offers, &mut collateral(&provers), &mut rand::rngs::StdRng::seed_from_u64(seed), Some(far));
        prop_assert_eq!(plain, timed);
        let passed = allocate_within(&request, &offers, &mut collateral(&provers), &mut rand::rngs::StdRng::seed_from_u64(seed), Some(std::time::Instant::now()));
        prop_assert!(matches!(passed, Err(AllocationError::BudgetExceeded { done: 0, .. })), "{:?}", passed);
    }

    #[test]
    fn allocations_cover_every_slot_with_distinct_backups_and_never_overbook(
        specs in prop::collection::vec(offer_spec(), 1..8),
        start_h in 0i64..24,
        len_h in 1i64..300,
        every in prop::sample::select(cadences()),
        redundancy in 0u8..3,
        seed in any::<u64>(),
    ) {
        let provers: Vec<AccountId> = (0..5).map(|_| AccountId::new_random()).collect();
        let offers = build(&specs, &provers);
        let request = ContractRequest {
            class: class(),
            schedule: Schedule { start: t0() + Duration::hours(start_h), end: t0() + Duration::hours(start_h + len_h), every_secs: every },
            proofs_per_slot: 1,
            redundancy,
            max_price_per_proof: None,
            min_reputation: None,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let Ok(allocation) = allocate(&request, &offers, &mut collateral(&provers), &mut rng) else { return Ok(()); };
        ALLOCATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        // The blocks partition the slots, in order.
        let mut next = 0;
        for b in &allocation.blocks {
            prop_assert_eq!(b.first_slot, next);
            prop_assert!(b.end_slot > b.first_slot);
            next = b.end_slot;
            prop_assert_eq!(b.backups.len(), usize::from(redundancy));
            let mut provers_in_block = vec![b.primary.prover_id];
            for backup in &b.backups {
                prop_assert!(!provers_in_block.contains(&backup.prover_id), "backups distinct from each other and the primary");
                provers_in_block.push(backup.prover_id);
            }
            for n in [b.first_slot, b.end_slot - 1] {
                let open = request.schedule.slot_opens_at(n).unwrap();
                prop_assert!(b.starts_at <= open && open < b.ends_at);
            }
        }
        prop_assert_eq!(next, request.schedule.slot_count());
        assert_never_overbooked(&offers, &request, &allocation);

        // Totals add up exactly; escrow is part of the total; the average is within the asks.
        let terms = price_allocation(&request, &allocation, &offers, &DiscountSchedule::default(), 100, Duration::hours(24)).unwrap();
        let mut sum = Money::ZERO;
        for b in &allocation.blocks {
            sum = sum.checked_add(times(terms.locked_prices[&b.primary.offer_id], b.end_slot - b.first_slot).unwrap()).unwrap();
        }
        prop_assert_eq!(sum, terms.total);
        prop_assert!(terms.escrow_required <= terms.total);
        let max_ask = offers.iter().map(|o| o.price.base()).max().unwrap();
        prop_assert!(terms.price_per_proof <= max_ask);
        prop_assert!(terms.fee <= terms.total);
    }
}

#[test]
fn the_random_books_allocate_often_enough_to_mean_something() {
    allocations_cover_every_slot_with_distinct_backups_and_never_overbook();
    let allocated = ALLOCATED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(allocated >= 30, "only {allocated} of the random requests were allocated");
}

#[test]
fn a_year_goes_to_the_cheapest_prover_in_one_block_with_a_backup() {
    let provers: Vec<AccountId> = (0..3).map(|_| AccountId::new_random()).collect();
    let year = |prover: usize, price: &str, id: i64| OfferSnapshot {
        offer_id: id,
        prover_id: provers[prover],
        class: class(),
        window_start: t0(),
        window_end: t0() + Duration::days(400),
        proofs_per_hour: 2,
        price: TieredPrice::new(Money::parse(price).unwrap(), vec![]).unwrap(),
        reputation: Decimal::ONE,
        held: vec![],
    };
    let offers = vec![year(0, "1.2", 1), year(1, "0.9", 2), year(2, "1.0", 3)];
    let request = ContractRequest {
        class: class(),
        schedule: Schedule { start: t0(), end: t0() + Duration::days(365), every_secs: 3600 },
        proofs_per_slot: 1,
        redundancy: 1,
        max_price_per_proof: None,
        min_reputation: None,
    };
    let allocation = allocate(&request, &offers, &mut collateral(&provers), &mut rand::rngs::StdRng::seed_from_u64(7)).unwrap();
    assert_eq!(allocation.blocks.len(), 1);
    assert_eq!(allocation.blocks[0].primary.offer_id, 2);
    assert_eq!(allocation.blocks[0].backups[0].offer_id, 3);
    let terms = price_allocation(&request, &allocation, &offers, &DiscountSchedule::default(), 100, Duration::hours(24)).unwrap();
    assert_eq!(terms.discount_bps, 1_200);
    assert_eq!(terms.price_per_proof, Money::parse("0.792").unwrap());
    assert_eq!(terms.total, Money::parse("6937.92").unwrap());
    assert_eq!(terms.escrow_required, Money::parse("19.008").unwrap());
}

#[test]
fn when_one_prover_cannot_cover_the_term_it_is_split() {
    let provers: Vec<AccountId> = (0..2).map(|_| AccountId::new_random()).collect();
    let offer = |prover: usize, from_days: i64, to_days: i64, id: i64, price: &str| OfferSnapshot {
        offer_id: id,
        prover_id: provers[prover],
        class: class(),
        window_start: t0() + Duration::days(from_days),
        window_end: t0() + Duration::days(to_days),
        proofs_per_hour: 1,
        price: TieredPrice::new(Money::parse(price).unwrap(), vec![]).unwrap(),
        reputation: Decimal::ONE,
        held: vec![],
    };
    let offers = vec![offer(0, 0, 10, 1, "1"), offer(1, 0, 30, 2, "2")];
    let request = ContractRequest {
        class: class(),
        schedule: Schedule { start: t0(), end: t0() + Duration::days(20), every_secs: 3600 },
        proofs_per_slot: 1,
        redundancy: 0,
        max_price_per_proof: None,
        min_reputation: None,
    };
    let allocation = allocate(&request, &offers, &mut collateral(&provers), &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
    let primaries: Vec<(i64, u64, u64)> =
        allocation.blocks.iter().map(|b| (b.primary.offer_id, b.first_slot, b.end_slot)).collect();
    assert_eq!(primaries, vec![(1, 0, 240), (2, 240, 480)]);
}

#[test]
fn collateral_headroom_limits_primaries_in_the_window() {
    let prover = AccountId::new_random();
    let offers = vec![OfferSnapshot {
        offer_id: 1,
        prover_id: prover,
        class: class(),
        window_start: t0(),
        window_end: t0() + Duration::days(30),
        proofs_per_hour: 5,
        price: TieredPrice::new(Money::parse("1").unwrap(), vec![]).unwrap(),
        reputation: Decimal::ONE,
        held: vec![],
    }];
    let request = ContractRequest {
        class: class(),
        schedule: Schedule { start: t0(), end: t0() + Duration::days(2), every_secs: 3600 },
        proofs_per_slot: 1,
        redundancy: 0,
        max_price_per_proof: None,
        min_reputation: None,
    };
    // 24 slots in the window x price 1 x multiplier 2 = 48 needed.
    let mut terms = collateral(&[]);
    terms.headroom.insert(prover, Decimal::from(47));
    assert!(allocate(&request, &offers, &mut terms, &mut rand::rngs::StdRng::seed_from_u64(1)).is_err());
    terms.headroom.insert(prover, Decimal::from(48));
    assert!(allocate(&request, &offers, &mut terms, &mut rand::rngs::StdRng::seed_from_u64(1)).is_ok());
}

#[test]
fn equal_asks_share_the_work_by_a_fair_draw() {
    let provers: Vec<AccountId> = (0..2).map(|_| AccountId::new_random()).collect();
    let offers: Vec<OfferSnapshot> = (0..2)
        .map(|i| OfferSnapshot {
            offer_id: i as i64 + 1,
            prover_id: provers[i],
            class: class(),
            window_start: t0(),
            window_end: t0() + Duration::days(30),
            proofs_per_hour: 1,
            price: TieredPrice::new(Money::parse("1").unwrap(), vec![]).unwrap(),
            reputation: Decimal::ONE,
            held: vec![],
        })
        .collect();
    let request = ContractRequest {
        class: class(),
        schedule: Schedule { start: t0(), end: t0() + Duration::days(7), every_secs: 3600 },
        proofs_per_slot: 1,
        redundancy: 0,
        max_price_per_proof: None,
        min_reputation: None,
    };
    let mut wins = [0u32; 2];
    for seed in 0..200 {
        let allocation =
            allocate(&request, &offers, &mut collateral(&provers), &mut rand::rngs::StdRng::seed_from_u64(seed)).unwrap();
        assert_eq!(allocation.blocks.len(), 1, "a tie is drawn once, then kept for the whole term");
        wins[usize::try_from(allocation.blocks[0].primary.offer_id - 1).unwrap()] += 1;
    }
    assert!(wins[0] > 60 && wins[1] > 60, "both equal asks win about half the draws: {wins:?}");
}
