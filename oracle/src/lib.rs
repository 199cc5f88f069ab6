//! The pricing oracle: sources (resting asks, executed prices, deliveries, external price lists),
//! aggregation into quantiles and a forward curve, EIP-712 signed rounds, history and streaming.
//!
//! Not built yet: this crate is filled by the oracle issue. It exists now so that the workspace has
//! its final shape and dependencies point the right way (towards `pcx-domain`).
