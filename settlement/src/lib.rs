//! Settlement: lazy slot materialisation, dispatch of jobs to prover agents, proof verification,
//! payment, slashing with failover to backups, and reputation.
//!
//! Not built yet: this crate is filled by the settlement issue. It exists now so that the workspace
//! has its final shape and dependencies point the right way (towards `pcx-domain`).
