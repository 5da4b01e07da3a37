//! The lock on the lockfile that serialises the actors of one machine
//! incarnation (like `flock`: it lives in the kernel of the running
//! machine, and a dead holder's lock is released).
//!
//! Acquisition retries within a budget of simulated time: the holder
//! being busy is expected contention, and so is the contention the fault
//! scheduler injects at [`LOCK_CONTENDED`] (another process holding the
//! lock for a moment). Running out of budget is an error the caller sees.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::{buggify, choose_between, clock, Site};

use crate::systems::record::lock_recovering;

/// Injected contention: this acquisition attempt finds the lock taken.
pub const LOCK_CONTENDED: Site = Site::fault("lifecycle.lock_contended", "lock-contention");
/// The pause between acquisition attempts, µs.
const LOCK_BACKOFF_US: Site = Site::value("lifecycle.lock_backoff_us");

/// The lock.
#[derive(Debug, Default)]
pub struct LockfileLock {
    holder: Mutex<Option<u32>>,
}

/// A held lock; dropping it releases the lock (also when the holder's
/// task dies at a crash point).
#[derive(Debug)]
pub struct LockGuard {
    lock: Arc<LockfileLock>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        *lock_recovering(&self.lock.holder) = None;
    }
}

/// The budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockBudgetExhausted;

impl LockfileLock {
    /// A free lock.
    pub fn new() -> Arc<LockfileLock> {
        Arc::new(LockfileLock::default())
    }

    /// Take the lock for `actor`, retrying until `budget` of simulated
    /// time has passed since the first attempt. `inject` lets the fault
    /// scheduler contend.
    pub async fn acquire(
        self: &Arc<Self>,
        actor: u32,
        budget: Duration,
        inject: bool,
    ) -> Result<LockGuard, LockBudgetExhausted> {
        let start = clock::now();
        loop {
            let contended = inject && buggify(&LOCK_CONTENDED);
            if !contended {
                let mut holder = lock_recovering(&self.holder);
                if holder.is_none() {
                    *holder = Some(actor);
                    return Ok(LockGuard { lock: self.clone() });
                }
            }
            if clock::now().since(start) >= budget {
                return Err(LockBudgetExhausted);
            }
            let pause = choose_between(&LOCK_BACKOFF_US, 200, 3000);
            clock::sleep(Duration::from_micros(pause)).await;
        }
    }

    /// The current holder.
    pub fn holder(&self) -> Option<u32> {
        *lock_recovering(&self.holder)
    }
}
