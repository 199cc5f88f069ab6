//! Doing together what concurrent requests ask for one by one: a [`Batcher`] queues the items its
//! callers hand it and processes whatever has queued as one batch (a group commit of withdrawals,
//! one batch verification of proofs), then answers each caller with its own result.
//!
//! Nothing waits on a timer: the first item starts a batch as soon as the tasks already runnable
//! have had their turn (callers woken together, by the batch of an earlier stage, queue together),
//! and what arrives while a batch runs forms the next one, so batches grow with the load and a
//! lone request goes alone, at once. At most `max_in_flight` batches run at a time, each of at
//! most `max_batch` items. Batches run on tasks of their own, so a caller that goes away (a client
//! hanging up) neither stops nor spoils the batch its item is in; an item whose caller went away
//! before its batch began is left out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

/// Processes one batch: one result per item, in the items' order.
pub type Process<T, R> = Arc<dyn Fn(Vec<T>) -> BoxFuture<'static, Vec<R>> + Send + Sync>;

/// Whether the caller of a batched item stopped waiting for its answer (its request timed out, was
/// answered 503 while the database was down, or its client went away). A batch that writes checks
/// it once it holds its connection, so that nothing is done for a request already answered.
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    /// True once the caller stopped waiting.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Held by [`Batcher::call_abandonable`] while it waits: when dropped (also when the caller's
/// future is dropped), its [`Abandoned`] is set.
#[derive(Debug)]
struct Waiting(Arc<AtomicBool>);

impl Waiting {
    /// A caller waiting, and the flag its item carries.
    fn start() -> (Waiting, Abandoned) {
        let flag = Arc::new(AtomicBool::new(false));
        (Waiting(Arc::clone(&flag)), Abandoned(flag))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Why a batched call has no result.
#[derive(Debug, thiserror::Error)]
#[error("the batch this request was in ended without an answer for it")]
pub struct Unanswered;

/// See the module docs.
pub struct Batcher<T, R> {
    inner: Arc<Inner<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher { inner: Arc::clone(&self.inner) }
    }
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("max_batch", &self.inner.max_batch).field("max_in_flight", &self.inner.max_in_flight).finish()
    }
}

struct Inner<T, R> {
    max_batch: usize,
    max_in_flight: usize,
    process: Process<T, R>,
    queue: Mutex<Queue<T, R>>,
}

struct Queue<T, R> {
    waiting: VecDeque<(T, oneshot::Sender<R>)>,
    in_flight: usize,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// A batcher that hands batches of at most `max_batch` items to `process`, at most
    /// `max_in_flight` at a time (both at least one).
    pub fn new(max_batch: usize, max_in_flight: usize, process: Process<T, R>) -> Self {
        let queue = Mutex::new(Queue { waiting: VecDeque::new(), in_flight: 0 });
        Batcher { inner: Arc::new(Inner { max_batch: max_batch.max(1), max_in_flight: max_in_flight.max(1), process, queue }) }
    }

    /// [`Batcher::call`] with the item made from its [`Abandoned`] flag, which is set if this
    /// call's future is dropped before the answer (a batch that writes checks it).
    pub async fn call_abandonable(&self, make: impl FnOnce(Abandoned) -> T) -> Result<R, Unanswered> {
        let (_waiting, abandoned) = Waiting::start();
        self.call(make(abandoned)).await
    }

    /// Queues `item` and waits for its result. Must be called on a Tokio runtime.
    pub async fn call(&self, item: T) -> Result<R, Unanswered> {
        let (answer, answered) = oneshot::channel();
        let start_one = {
            let mut queue = self.inner.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.waiting.push_back((item, answer));
            let start = queue.in_flight < self.inner.max_in_flight;
            if start {
                queue.in_flight += 1;
            }
            start
        };
        if start_one {
            tokio::spawn(drain(Arc::clone(&self.inner)));
        }
        answered.await.map_err(|_| Unanswered)
    }
}

/// Runs batches until the queue is empty. The in-flight count it holds is given back when it
/// stops; a panic in `process` answers that batch's callers with [`Unanswered`], and the items
/// queued behind it get a drain of their own (they would otherwise wait for the next call).
async fn drain<T: Send + 'static, R: Send + 'static>(inner: Arc<Inner<T, R>>) {
    /// Held while the drain runs; dropped with `counted` still set only by a panic.
    struct Counted<T: Send + 'static, R: Send + 'static> {
        inner: Arc<Inner<T, R>>,
        counted: bool,
    }
    impl<T: Send + 'static, R: Send + 'static> Drop for Counted<T, R> {
        fn drop(&mut self) {
            if !self.counted {
                return;
            }
            let mut queue = self.inner.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if queue.waiting.is_empty() {
                queue.in_flight -= 1;
            } else {
                drop(queue);
                tokio::spawn(drain(Arc::clone(&self.inner)));
            }
        }
    }
    let mut this = Counted { inner, counted: true };
    loop {
        // The tasks already runnable go first: callers woken together (by one batch of an
        // earlier stage) queue their items before this batch is taken, instead of the first of
        // them going alone because a task just spawned runs before those woken with it.
        tokio::task::yield_now().await;
        let batch: Vec<(T, oneshot::Sender<R>)> = {
            let mut queue = this.inner.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = queue.waiting.len().min(this.inner.max_batch);
            if n == 0 {
                // Decided under the lock, so an item queued from now on starts a drain of its own.
                queue.in_flight -= 1;
                drop(queue);
                this.counted = false;
                return;
            }
            // A caller that went away before its batch began (its request timed out, its client
            // hung up) is left out: nothing is done for an answer nobody waits for.
            queue.waiting.drain(..n).filter(|(_, answer)| !answer.is_closed()).collect()
        };
        if batch.is_empty() {
            continue;
        }
        let (items, answers): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
        let results = (this.inner.process)(items).await;
        debug_assert_eq!(results.len(), answers.len(), "a batch must answer every item");
        for (answer, result) in answers.into_iter().zip(results) {
            // A caller that went away no longer wants its answer.
            let _ = answer.send(result);
        }
    }
}

/// Why a batch's transaction failed before it committed (it wrote nothing): its items are then
/// done one by one, each in a transaction of its own, which answers each as it would be alone.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unwritten {
    /// A statement failed or the connection did (kept unconverted: a key stored first by a
    /// concurrent request is not an incident, the one-by-one run answers it).
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// The ledger refused the batch's postings.
    #[error("the ledger refused the batch's postings: {0}")]
    Ledger(#[from] crate::store::ledger::PostError),
    /// A row the batch locked was not in the state its guard expects (a concurrent transition).
    #[error("{0} changed under the batch")]
    Raced(&'static str),
}

impl Unwritten {
    /// The answer for every item of the batch when the database does not answer (one by one
    /// would only wait out each connection attempt); `None` when it does.
    pub(crate) fn unavailable(&self) -> Option<crate::error::ApiError> {
        use crate::store::ledger::PostError;
        let err = match self {
            Unwritten::Db(err) | Unwritten::Ledger(PostError::Db(err)) => err,
            Unwritten::Ledger(_) | Unwritten::Raced(_) => return None,
        };
        crate::error::database_unavailable(err).then(crate::error::ApiError::database_unavailable)
    }
}

/// The answers of a batch, each filled in (a gap is the exchange's error, never a silent one).
pub(crate) fn all_answered<T>(answers: Vec<Option<crate::error::ApiResult<T>>>) -> Vec<crate::error::ApiResult<T>> {
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(crate::error::ApiError::internal("a request of the batch was left unanswered"))))
        .collect()
}

/// The answers of a batch read with one statement: `each` turns the rows into one answer per
/// item, in the items' order; a read that failed (or found no connection) is every item's error.
pub(crate) fn answers_of_read<T, R>(
    read: Result<T, sqlx::Error>,
    items: usize,
    each: impl FnOnce(T) -> Vec<R>,
) -> Vec<crate::error::ApiResult<R>> {
    match read {
        Ok(rows) => each(rows).into_iter().map(Ok).collect(),
        Err(err) => {
            let err = crate::error::ApiError::from(err);
            (0..items).map(|_| Err(err.clone())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn doubling(sizes: Arc<Mutex<Vec<usize>>>, running: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> Process<u64, u64> {
        Arc::new(move |items: Vec<u64>| {
            let (sizes, running, most) = (sizes.clone(), running.clone(), most.clone());
            Box::pin(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                sizes.lock().unwrap().push(items.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                items.into_iter().map(|i| i * 2).collect()
            })
        })
    }

    #[tokio::test]
    async fn concurrent_callers_are_batched_and_each_gets_its_own_answer() {
        let (sizes, running, most) = (Arc::default(), Arc::default(), Arc::default());
        let batcher = Batcher::new(16, 1, doubling(Arc::clone(&sizes), running, Arc::clone(&most)));
        let calls: Vec<_> = (0..100u64).map(|i| { let b = batcher.clone(); tokio::spawn(async move { (i, b.call(i).await.unwrap()) }) }).collect();
        for call in calls {
            let (i, doubled) = call.await.unwrap();
            assert_eq!(doubled, i * 2);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| n <= 16), "{sizes:?}");
        assert!(sizes.len() < 100, "nothing was batched: {sizes:?}");
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // A lone call after the queue emptied goes alone, at once.
        assert_eq!(batcher.call(7).await.unwrap(), 14);
    }

    /// The shape of a pipeline's stages: the callers an earlier batch answers wake together, and
    /// their items must form one batch, not a batch of the first alone and one of the rest.
    /// (A task spawned by a worker runs before the tasks woken with it: the drain waits its turn.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn callers_woken_together_are_one_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sizes);
        let process: Process<u64, u64> = Arc::new(move |items: Vec<u64>| {
            record.lock().unwrap().push(items.len());
            Box::pin(async move { items })
        });
        let batcher = Batcher::new(16, 1, process);
        let gate = Arc::new(tokio::sync::RwLock::new(()));
        let closed = gate.clone().write_owned().await;
        let parked = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..8u64)
            .map(|i| {
                let (b, gate, parked) = (batcher.clone(), Arc::clone(&gate), Arc::clone(&parked));
                tokio::spawn(async move {
                    // Counted in the poll that parks it: the one worker finishes that poll first.
                    parked.fetch_add(1, Ordering::SeqCst);
                    let _open = gate.read().await;
                    b.call(i).await.unwrap()
                })
            })
            .collect();
        // Every caller is parked at the gate, then all wake at once, woken by a task on the
        // worker (as a batch answers its callers).
        tokio::time::timeout(Duration::from_secs(10), async {
            while parked.load(Ordering::SeqCst) < 8 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the callers never reached the gate");
        tokio::spawn(async move { drop(closed) }).await.unwrap();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), i as u64);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![8]);
    }

    #[tokio::test]
    async fn batches_run_side_by_side_up_to_the_bound() {
        let (sizes, running, most) = (Arc::default(), Arc::default(), Arc::default());
        let batcher = Batcher::new(1, 3, doubling(sizes, running, Arc::clone(&most)));
        let calls: Vec<_> = (0..12u64).map(|i| { let b = batcher.clone(); tokio::spawn(async move { b.call(i).await.unwrap() }) }).collect();
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_panicking_batch_answers_nobody_and_the_batcher_goes_on() {
        let process: Process<u64, u64> = Arc::new(|items: Vec<u64>| {
            Box::pin(async move {
                assert!(!items.contains(&13), "unlucky");
                items
            })
        });
        let batcher = Batcher::new(1, 1, process);
        assert!(batcher.call(13).await.is_err());
        assert_eq!(batcher.call(5).await.unwrap(), 5);
        // Items queued behind a panicking batch are still answered, with no call after them.
        let calls: Vec<_> = [13, 6, 7].into_iter().map(|i| { let b = batcher.clone(); tokio::spawn(async move { b.call(i).await.ok() }) }).collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(tokio::time::timeout(Duration::from_secs(5), call).await.expect("an item was stranded").unwrap());
        }
        assert_eq!(answers, [None, Some(6), Some(7)]);
    }

    #[tokio::test]
    async fn a_caller_gone_before_its_batch_began_is_left_out() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let process: Process<u64, u64> = Arc::new(move |items: Vec<u64>| {
            let record = Arc::clone(&record);
            Box::pin(async move {
                record.lock().unwrap().extend(items.iter().copied());
                tokio::time::sleep(Duration::from_millis(50)).await;
                items
            })
        });
        let batcher = Batcher::new(8, 1, process);
        let busy = { let b = batcher.clone(); tokio::spawn(async move { b.call(1).await }) };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Queued behind the running batch, then given up on.
        let gone = tokio::time::timeout(Duration::from_millis(5), batcher.call(2)).await;
        assert!(gone.is_err());
        assert_eq!(batcher.call(3).await.unwrap(), 3);
        busy.await.unwrap().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![1, 3]);
    }

    #[test]
    fn an_item_is_abandoned_once_its_caller_stops_waiting() {
        let (waiting, abandoned) = Waiting::start();
        assert!(!abandoned.is_set());
        drop(waiting);
        assert!(abandoned.is_set());
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_stop_its_batch() {
        let done = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&done);
        let process: Process<u64, u64> = Arc::new(move |items: Vec<u64>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                seen.fetch_add(items.len(), Ordering::SeqCst);
                items
            })
        });
        let batcher = Batcher::new(8, 1, process);
        let gone = tokio::time::timeout(Duration::from_millis(5), batcher.call(1)).await;
        assert!(gone.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
