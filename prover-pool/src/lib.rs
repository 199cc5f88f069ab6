//! The prover pool: the built-in circuit registry, the Groth16 prover with its MSM backends (CPU,
//! ICICLE on GPUs), and the `pcx prover` agent.
//!
//! Not built yet: this crate is filled by the capacity-forwards, settlement and GPU issues. It
//! exists now so that the workspace has its final shape and dependencies point the right way
//! (towards `pcx-domain`).
