//! [`Signal`]: a flag that is raised once and can be awaited by any number of tasks.
//!
//! The agent uses two: `shutdown` (stop claiming; finish or release the jobs in hand) and `drain
//! expired` (the bounded wait for workers is over; stop retrying submissions). A raised signal
//! stays raised; raising it again does nothing.

use tokio::sync::watch;

/// A one-way flag shared by clones.
#[derive(Debug, Clone)]
pub(crate) struct Signal {
    raised: watch::Sender<bool>,
}

impl Signal {
    /// A flag that is down.
    pub(crate) fn new() -> Signal {
        Signal { raised: watch::channel(false).0 }
    }

    /// Raises the flag; true when this call raised it (it was down).
    pub(crate) fn raise(&self) -> bool {
        self.raised.send_if_modified(|raised| !std::mem::replace(raised, true))
    }

    /// Whether the flag is up.
    pub(crate) fn is_raised(&self) -> bool {
        *self.raised.borrow()
    }

    /// Resolves once the flag is up (at once if it already is).
    pub(crate) async fn raised(&self) {
        let mut receiver = self.raised.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = receiver.wait_for(|raised| *raised).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn raising_wakes_waiters_once_and_for_all() {
        let signal = Signal::new();
        assert!(!signal.is_raised());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.raised().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(signal.raise());
        assert!(!signal.raise());
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert!(signal.is_raised());
        tokio::time::timeout(Duration::from_secs(1), signal.raised()).await.unwrap();
    }
}
