//! A bounded multi-producer, single-consumer queue, for the two queues every open document and
//! every connection has: a document owner's commands and a connection's outbox.
//!
//! Why not `tokio::sync::mpsc`: a tokio channel allocates its first block of 32 slots when it is
//! created and keeps it, plus a 512-byte shared part, so an idle connection on its own document
//! paid about 3.5 KiB for two empty queues. Here the items live in a `VecDeque` that holds no
//! memory while the queue is empty.
//!
//! The semantics are those of the tokio channel this replaces, and capacity is counted by the
//! same fair semaphore: `send` waits for a free slot, `try_send` fails when the queue is full,
//! a closed receiver fails every send while the items already queued can still be received, and
//! `recv` returns `None` once the queue is empty and every sender is gone. `reserve_many(n)` waits
//! until `n` slots are free at once without taking any: it is not a semaphore waiter, because a
//! waiter collects the slots freed while it waits, and `try_send` would then fail on a queue that
//! is far from full (issue 16: a client closed as a slow consumer with its outbox half empty).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};

use tokio::sync::{Semaphore, TryAcquireError};

/// Why [`Sender::try_send`] failed; the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// Every slot is taken.
    Full(T),
    /// The receiver closed or is gone.
    Closed(T),
}

/// Why [`Receiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing is queued now.
    Empty,
    /// Nothing is queued and nothing can be any more.
    Disconnected,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Free slots. Closed when the receiver closes.
    slots: Semaphore,
    senders: AtomicUsize,
    capacity: usize,
}

struct State<T> {
    /// Each item with the tag of the sender that queued it.
    items: VecDeque<(u64, T)>,
    receiver: Option<Waker>,
    /// Tasks waiting in [`Sender::reserve_many`]: how many free slots each waits for.
    room: Vec<(usize, Waker)>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The lock is only held for queue operations that cannot panic halfway.
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Wakes every task waiting for room whose wait is over: enough slots are free, or the queue
    /// closed (`all`).
    fn wake_room(&self, state: &mut State<T>, all: bool) {
        if state.room.is_empty() {
            return;
        }
        let free = self.slots.available_permits();
        state.room.retain(|(n, waker)| {
            let over = all || *n <= free;
            if over {
                waker.wake_by_ref();
            }
            !over
        });
        if state.room.is_empty() {
            state.room = Vec::new();
        }
    }

    fn wake_receiver(&self) {
        let waker = self.lock().receiver.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A queue of at most `capacity` items (`capacity` ≥ 1).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            receiver: None,
            room: Vec::new(),
        }),
        slots: Semaphore::new(capacity),
        senders: AtomicUsize::new(1),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
            tag: 0,
        },
        Receiver { shared },
    )
}

/// The sending side; clone it for more senders.
///
/// Every item is queued with its sender's tag (0 unless the sender was made by
/// [`Sender::tagged`]), which [`Receiver::recv_tagged`] gives back: senders that share one
/// queue (the forwarded attachments of one entry node share one outbox) stay told apart, and
/// what they queued stays in one order.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    tag: u64,
}

impl<T> Sender<T> {
    /// Queues `item`, waiting for a free slot; gives it back if the receiver closed.
    pub async fn send(&self, item: T) -> Result<(), T> {
        match self.shared.slots.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(item),
        }
        self.push(self.tag, item);
        Ok(())
    }

    /// Queues `item` if a slot is free now.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.try_send_as(self.tag, item)
    }

    /// Queues `item` under `tag` instead of this sender's own, if a slot is free now.
    pub fn try_send_as(&self, tag: u64, item: T) -> Result<(), TrySendError<T>> {
        match self.shared.slots.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(item)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(item)),
        }
        self.push(tag, item);
        Ok(())
    }

    /// Another sender on the same queue whose items carry `tag`.
    pub fn tagged(&self, tag: u64) -> Sender<T> {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
            tag,
        }
    }

    /// The tag this sender's items carry.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    fn push(&self, tag: u64, item: T) {
        let waker = {
            let mut state = self.shared.lock();
            state.items.push_back((tag, item));
            state.receiver.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits until `n` slots (at most the capacity) are free at the same time, without taking
    /// them: slots freed meanwhile stay free for every sender. `Err` once the receiver closed.
    pub async fn reserve_many(&self, n: usize) -> Result<(), ()> {
        let n = n.clamp(1, self.shared.capacity);
        poll_fn(|cx| {
            // Checked and registered under the lock that `Receiver::take` frees slots under, so
            // no wake-up is lost in between.
            let mut state = self.shared.lock();
            if self.shared.slots.is_closed() {
                return Poll::Ready(Err(()));
            }
            if self.shared.slots.available_permits() >= n {
                return Poll::Ready(Ok(()));
            }
            let waker = cx.waker();
            match state.room.iter_mut().find(|(_, w)| w.will_wake(waker)) {
                Some(entry) => *entry = (n, waker.clone()),
                None => state.room.push((n, waker.clone())),
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the receiver closed or is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.slots.is_closed()
    }

    /// The number of slots.
    pub fn max_capacity(&self) -> usize {
        self.shared.capacity
    }

    /// A handle that does not keep the queue open.
    pub fn downgrade(&self) -> WeakSender<T> {
        WeakSender {
            shared: Arc::downgrade(&self.shared),
            tag: self.tag,
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.tagged(self.tag)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a waiting receiver must see the end.
            self.shared.wake_receiver();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

/// A sender that does not count as one: the queue ends when only these are left.
pub struct WeakSender<T> {
    shared: Weak<Shared<T>>,
    tag: u64,
}

impl<T> WeakSender<T> {
    /// A sender, if any other sender still exists.
    pub fn upgrade(&self) -> Option<Sender<T>> {
        let shared = self.shared.upgrade()?;
        let mut count = shared.senders.load(Ordering::Acquire);
        loop {
            if count == 0 {
                return None;
            }
            match shared.senders.compare_exchange_weak(
                count,
                count + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Sender {
                        shared,
                        tag: self.tag,
                    })
                }
                Err(now) => count = now,
            }
        }
    }
}

impl<T> Clone for WeakSender<T> {
    fn clone(&self) -> Self {
        WeakSender {
            shared: self.shared.clone(),
            tag: self.tag,
        }
    }
}

impl<T> std::fmt::Debug for WeakSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakSender(..)")
    }
}

/// The receiving side.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and can get nothing more (every sender is
    /// gone, or the queue was closed).
    pub async fn recv(&mut self) -> Option<T> {
        self.recv_tagged().await.map(|(_, item)| item)
    }

    /// The next item and the tag it was queued with ([`Sender::tagged`]).
    pub async fn recv_tagged(&mut self) -> Option<(u64, T)> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(item) = self.take(&mut state) {
                return Poll::Ready(Some(item));
            }
            if self.ended() {
                return Poll::Ready(None);
            }
            match &mut state.receiver {
                Some(waker) => waker.clone_from(cx.waker()),
                slot @ None => *slot = Some(cx.waker().clone()),
            }
            drop(state);
            // The last sender may have left between the check and storing the waker.
            if self.ended() {
                return Poll::Ready(self.take(&mut self.shared.lock()));
            }
            Poll::Pending
        })
        .await
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match self.take(&mut state) {
            Some((_, item)) => Ok(item),
            None if self.ended() => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    /// Refuses every further send; what is queued can still be received.
    pub fn close(&mut self) {
        let mut state = self.shared.lock();
        self.shared.slots.close();
        self.shared.wake_room(&mut state, true);
    }

    fn ended(&self) -> bool {
        self.shared.senders.load(Ordering::Acquire) == 0 || self.shared.slots.is_closed()
    }

    fn take(&self, state: &mut State<T>) -> Option<(u64, T)> {
        let item = state.items.pop_front()?;
        if state.items.is_empty() {
            // Most queues are empty most of the time: hold no memory then. Refilling costs
            // one small allocation, far less than the frame being queued.
            state.items = VecDeque::new();
        }
        if !self.shared.slots.is_closed() {
            self.shared.slots.add_permits(1);
            self.shared.wake_room(state, false);
        }
        Some(item)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            self.shared.slots.close();
            self.shared.wake_room(&mut state, true);
            std::mem::take(&mut state.items)
        };
        drop(items);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn items_arrive_in_order_and_the_queue_ends_with_its_last_sender() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.send(1).await.expect("open");
        tx2.send(2).await.expect("open");
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert!(!tx2.is_closed());
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        drop(tx2);
        let got = tokio::time::timeout(WAIT, waiting).await.expect("woken");
        assert_eq!(got.expect("task"), None);
    }

    #[tokio::test]
    async fn tagged_senders_share_one_order_and_are_told_apart() {
        let (tx, mut rx) = channel(8);
        let one = tx.tagged(1);
        let two = one.tagged(2);
        one.try_send('a').expect("room");
        tx.try_send('b').expect("room");
        two.send('c').await.expect("open");
        two.try_send_as(9, 'd').expect("room");
        // A clone keeps its tag; so does a weak sender made from it.
        one.clone().try_send('e').expect("room");
        let weak = two.downgrade();
        weak.upgrade()
            .expect("senders left")
            .try_send('f')
            .expect("room");
        assert_eq!(rx.recv_tagged().await, Some((1, 'a')));
        assert_eq!(rx.recv_tagged().await, Some((0, 'b')));
        assert_eq!(rx.recv().await, Some('c'));
        assert_eq!(rx.recv_tagged().await, Some((9, 'd')));
        assert_eq!(rx.recv_tagged().await, Some((1, 'e')));
        assert_eq!(rx.recv_tagged().await, Some((2, 'f')));
        // Tagged senders count as senders: the queue ends with the last of them.
        drop((tx, one));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(two);
        assert_eq!(rx.recv_tagged().await, None);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_try_send_and_makes_send_wait() {
        let (tx, mut rx) = channel(2);
        tx.try_send('a').expect("room");
        tx.try_send('b').expect("room");
        assert_eq!(tx.try_send('c'), Err(TrySendError::Full('c')));
        let sender = tx.clone();
        let blocked = tokio::spawn(async move { sender.send('c').await });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        assert_eq!(rx.recv().await, Some('a'));
        let sent = tokio::time::timeout(WAIT, blocked).await.expect("freed");
        assert_eq!(sent.expect("task"), Ok(()));
        assert_eq!(rx.recv().await, Some('b'));
        assert_eq!(rx.recv().await, Some('c'));
    }

    #[tokio::test]
    async fn reserve_many_waits_for_room_without_taking_it() {
        let (tx, mut rx) = channel(4);
        for i in 0..3 {
            tx.send(i).await.expect("open");
        }
        let waiter = tx.clone();
        let reserve = tokio::spawn(async move { waiter.reserve_many(2).await });
        tokio::task::yield_now().await;
        assert!(!reserve.is_finished(), "one slot free, two asked");
        assert_eq!(rx.recv().await, Some(0));
        let reserved = tokio::time::timeout(WAIT, reserve).await.expect("room");
        assert_eq!(reserved.expect("task"), Ok(()));
        // The slots were given back.
        tx.try_send(3).expect("room");
        tx.try_send(4).expect("room");
        assert_eq!(tx.try_send(5), Err(TrySendError::Full(5)));
    }

    /// Issue 16: a connection's reader waits for half its outbox to be free while the owner fills
    /// the outbox with `try_send`; slots freed meanwhile must stay free for the owner, or the
    /// client is closed as a slow consumer with its outbox half full.
    #[tokio::test]
    async fn issue_16_waiting_for_room_leaves_free_slots_to_try_send() {
        let (tx, mut rx) = channel(8);
        for i in 0..6 {
            tx.try_send(i).expect("room");
        }
        let waiter = tx.clone();
        let reserve = tokio::spawn(async move { waiter.reserve_many(4).await });
        tokio::task::yield_now().await;
        assert!(!reserve.is_finished(), "two slots free, four asked");
        assert_eq!(rx.recv().await, Some(0));
        tokio::task::yield_now().await;
        assert!(!reserve.is_finished(), "three slots free, four asked");
        // Every free slot can still be taken, up to the real bound.
        for i in 6..9 {
            tx.try_send(i).expect("a free slot");
        }
        assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
        for i in 1..5 {
            assert_eq!(rx.recv().await, Some(i));
        }
        let reserved = tokio::time::timeout(WAIT, reserve).await.expect("room");
        assert_eq!(reserved.expect("task"), Ok(()));
        for i in 9..13 {
            tx.try_send(i).expect("the room is still there");
        }
    }

    #[tokio::test]
    async fn closing_refuses_sends_but_keeps_what_is_queued() {
        let (tx, mut rx) = channel(4);
        tx.send("kept").await.expect("open");
        let waiter = tx.clone();
        let reserve = tokio::spawn(async move { waiter.reserve_many(4).await });
        tokio::task::yield_now().await;
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(tx.try_send("late"), Err(TrySendError::Closed("late")));
        assert_eq!(tx.send("later").await, Err("later"));
        let reserved = tokio::time::timeout(WAIT, reserve).await.expect("woken");
        assert_eq!(reserved.expect("task"), Err(()));
        assert!(!rx.is_empty());
        assert_eq!(rx.recv().await, Some("kept"));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_dropped_receiver_fails_senders_and_weak_senders_do_not_keep_it_open() {
        let (tx, rx) = channel::<u8>(1);
        let weak = tx.downgrade();
        let strong = weak.upgrade().expect("a sender exists");
        drop(strong);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(1).await, Err(1));
        drop(tx);
        assert!(weak.upgrade().is_none(), "no sender left");

        let (tx, mut rx) = channel::<u8>(1);
        let weak = tx.downgrade();
        drop(tx);
        assert!(weak.upgrade().is_none());
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_drained_burst_gives_its_memory_back() {
        let (tx, mut rx) = channel(1024);
        for i in 0..1000 {
            tx.try_send(i).expect("room");
        }
        assert!(rx.shared.lock().items.capacity() >= 1000);
        for i in 0..1000 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_on_other_threads_lose_nothing() {
        let (tx, mut rx) = channel(16);
        let mut tasks = Vec::new();
        for s in 0..4u64 {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..2000u64 {
                    tx.send(s * 10_000 + i).await.expect("open");
                }
            }));
        }
        drop(tx);
        let mut last = [None::<u64>; 4];
        let mut count = 0;
        while let Some(v) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("progress")
        {
            let s = (v / 10_000) as usize;
            assert!(last[s].is_none_or(|l| l < v), "per-sender order kept");
            last[s] = Some(v);
            count += 1;
        }
        assert_eq!(count, 8000);
        for t in tasks {
            t.await.expect("sender");
        }
    }
}
