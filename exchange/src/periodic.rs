//! Background loops of `pcx serve` (settlement scheduler, oracle): run a tick every period until
//! shutdown, logging a failed tick and carrying on.

use std::future::Future;
use std::time::Duration;

/// Calls `tick` every `period` (a late tick is delayed, never bunched) until `shutdown` turns true.
pub async fn every<F, Fut>(period: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        tick().await;
    }
}
