//! Background loops of `pcx serve` (settlement scheduler, oracle): run a tick every period until
//! shutdown. Each tick runs in a task of its own, so a tick that panics is logged and the loop
//! goes on; a tick that fails logs its own error.

use std::future::Future;
use std::time::Duration;

/// Calls `tick` every `period` (a late tick is delayed, never bunched) until `shutdown` turns
/// true. A panicking tick is logged as an error of `name` and the next one runs as planned.
pub async fn supervised<F, Fut>(name: &'static str, period: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
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
        if let Err(err) = tokio::spawn(tick()).await {
            if err.is_panic() {
                tracing::error!(loop_name = name, error = %err, "a tick panicked; the loop goes on");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_tick_does_not_stop_the_loop() {
        let ticks = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let counted = ticks.clone();
        let looping = tokio::spawn(supervised("test", Duration::from_millis(5), stopped, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("the first tick fails");
                }
            }
        }));
        let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
        while ticks.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < give_up, "the loop died with its first tick");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        looping.await.expect("the loop itself never panics");
    }
}
