//! Capacity reservation: prover offers (asks), firm quotes with the published volume discounts, and
//! the allocation of every slot of a forward contract to a primary prover and its backups without
//! overbooking.
//!
//! Not built yet: this crate is filled by the capacity-forwards issue. It exists now so that the
//! workspace has its final shape and dependencies point the right way (towards `pcx-domain`).
