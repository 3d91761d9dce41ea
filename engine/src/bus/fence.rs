//! Revocation with a fence: a partition the group takes away is not applied by this member
//! once the revocation completes.
//!
//! Each partition has a generation, bumped by every revocation. A worker applies a
//! partition's events only while holding a [`Lease`] of the generation its events came in;
//! a lease is refused once the partition was revoked, and a worker checks its lease before
//! every attempt and wakes from its backoff when a revocation comes. [`Revoker::revoke`]
//! bumps the generations, tells the apply loop, and waits until every lease on them is
//! released (a write in progress finishes; nothing new starts), so the next owner never
//! applies a partition's events while this member still does.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// Partitions' generations and leases, shared by the group's callback and the workers.
#[derive(Clone, Default)]
pub struct Fence {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per partition: its generation, and the leases held on it.
    state: Mutex<HashMap<i32, (u64, usize)>>,
    /// Signalled when a lease is released.
    released: Condvar,
    /// Wakes workers waiting out a backoff when a revocation comes.
    revoked: Notify,
}

/// A worker's right to apply events of one partition's generation; released on drop.
pub struct Lease {
    fence: Fence,
    partition: i32,
    generation: u64,
}

impl Fence {
    fn state(&self) -> MutexGuard<'_, HashMap<i32, (u64, usize)>> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current generation of `partition`: what its newly read events belong to.
    pub fn generation(&self, partition: i32) -> u64 {
        self.state().get(&partition).map_or(0, |(g, _)| *g)
    }

    /// A lease on `partition` at `generation`, or `None` once the partition was revoked since.
    pub fn lease(&self, partition: i32, generation: u64) -> Option<Lease> {
        let mut state = self.state();
        let (current, held) = state.entry(partition).or_default();
        let fenced = !crate::mistakes::on(crate::mistakes::Mistake::WritesAfterRevocation);
        (*current == generation || !fenced).then(|| {
            *held += 1;
            Lease {
                fence: self.clone(),
                partition,
                generation,
            }
        })
    }

    /// Resolves at the next revocation (of any partition), counting from this call, so a
    /// caller takes it, then checks [`Lease::holds`], then waits on it without missing one.
    pub fn revocation(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.revoked.notified()
    }

    /// Bumps the generations of `partitions` and wakes workers in a backoff.
    fn bump(&self, partitions: &[i32]) {
        let mut state = self.state();
        for p in partitions {
            state.entry(*p).or_default().0 += 1;
        }
        drop(state);
        self.inner.revoked.notify_waiters();
    }

    /// Leases held on `partitions`.
    pub fn held(&self, partitions: &[i32]) -> usize {
        if crate::mistakes::on(crate::mistakes::Mistake::WritesAfterRevocation) {
            return 0;
        }
        let state = self.state();
        partitions
            .iter()
            .filter_map(|p| state.get(p))
            .map(|(_, held)| held)
            .sum()
    }

    /// Blocks until no lease on `partitions` is held, or `timeout` passed; the leases still
    /// held.
    fn wait_released(&self, partitions: &[i32], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            let held: usize = partitions
                .iter()
                .filter_map(|p| state.get(p))
                .map(|(_, held)| held)
                .sum();
            let left = deadline.saturating_duration_since(Instant::now());
            if held == 0 || left.is_zero() {
                return held;
            }
            state = self
                .inner
                .released
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }
}

impl Lease {
    /// Whether the partition is still this member's, in the lease's generation.
    pub fn holds(&self) -> bool {
        if crate::mistakes::on(crate::mistakes::Mistake::WritesAfterRevocation) {
            return true;
        }
        self.fence.generation(self.partition) == self.generation
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.fence.state();
        if let Some((_, held)) = state.get_mut(&self.partition) {
            *held = held.saturating_sub(1);
        }
        drop(state);
        self.fence.inner.released.notify_all();
    }
}

/// The bus's side of revocations: fences the partitions and tells the apply loop.
pub struct Revoker {
    fence: Fence,
    loop_side: mpsc::UnboundedSender<Vec<i32>>,
}

/// The apply loop's side: partitions taken away, and the fence its workers lease from.
pub struct Revocations {
    /// What workers lease.
    pub fence: Fence,
    partitions: mpsc::UnboundedReceiver<Vec<i32>>,
}

impl Revocations {
    /// The next partitions taken away; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<Vec<i32>> {
        self.partitions.recv().await
    }
}

/// A connected revoker and its receiving side.
pub fn revocations() -> (Revoker, Revocations) {
    let fence = Fence::default();
    let (loop_side, partitions) = mpsc::unbounded_channel();
    (
        Revoker {
            fence: fence.clone(),
            loop_side,
        },
        Revocations { fence, partitions },
    )
}

impl Revoker {
    /// Fences `partitions` and tells the apply loop, without waiting for its workers.
    pub fn revoke_now(&self, partitions: &[i32]) {
        self.fence.bump(partitions);
        let _ = self.loop_side.send(partitions.to_vec());
    }

    /// Fences `partitions`, tells the apply loop, and blocks until their workers released
    /// their leases (each finishes the write it is in, and starts no other), at most
    /// `timeout`. Called from the group's rebalance callback, which librdkafka runs on the
    /// thread polling the consumer, so the revocation completes only after this returns.
    pub fn revoke(&self, partitions: &[i32], timeout: Duration) {
        self.revoke_now(partitions);
        let wait = || self.fence.wait_released(partitions, timeout);
        // The workers are tasks of the same runtime: on a worker thread of a multi-threaded
        // runtime, hand its other tasks over before blocking.
        let held = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            Ok(_) => self.fence.held(partitions),
            Err(_) => wait(),
        };
        if held > 0 {
            warn!(
                partitions = ?partitions,
                workers = held,
                ?timeout,
                "Revoked partitions still had workers applying after the wait; the next owner may apply their events too (conditional writes keep the records right)."
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_refused_and_lost_once_its_partition_is_revoked() {
        let (revoker, revocations) = revocations();
        let fence = &revocations.fence;
        let generation = fence.generation(3);
        let lease = fence
            .lease(3, generation)
            .expect("a lease before the revocation");
        assert!(lease.holds());
        revoker.revoke_now(&[3]);
        assert!(!lease.holds(), "the revocation ends the lease's generation");
        assert!(fence.lease(3, generation).is_none(), "no new lease on it");
        assert!(
            fence.lease(4, fence.generation(4)).is_some(),
            "others unaffected"
        );
        assert!(
            fence.lease(3, fence.generation(3)).is_some(),
            "the next assignment's"
        );
    }

    #[test]
    fn a_revocation_waits_for_the_leases_on_its_partitions() {
        let (revoker, revocations) = revocations();
        let fence = revocations.fence.clone();
        let lease = fence.lease(0, 0).expect("lease");
        let holder = std::thread::spawn(move || {
            // The revocation below must still be waiting when this lease goes.
            std::thread::sleep(Duration::from_millis(100));
            // Taken while the lease is still held: the revocation must return after it.
            let still_held = Instant::now();
            drop(lease);
            still_held
        });
        revoker.revoke(&[0], Duration::from_secs(10));
        let returned = Instant::now();
        let released = holder.join().expect("holder");
        assert!(
            returned >= released,
            "returned before the lease was released"
        );
        assert_eq!(fence.held(&[0]), 0);
    }

    #[test]
    fn a_revocation_gives_up_after_its_timeout() {
        let (revoker, revocations) = revocations();
        let _lease = revocations.fence.lease(0, 0).expect("lease");
        let started = Instant::now();
        revoker.revoke(&[0], Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(revocations.fence.held(&[0]), 1);
    }
}
