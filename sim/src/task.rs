//! Spawning tasks inside a run, so that the run's end can drop them.
//!
//! madsim drops the tasks of a killed node, but a task on the supervisor's
//! own node that is still waiting when the run ends (a fault scheduler
//! asleep past the end, a reaper waiting for a notification, a client
//! waiting for a reply) is never polled again and never dropped: its waker
//! lives on inside the task itself, so the runtime's drop cannot free it.
//! Such a task usually holds the world, and through it the run's disk
//! contents, trace and tape: a sweep leaked about a megabyte per seed.
//!
//! [`spawn`] is `madsim::task::spawn` plus a note of the task, and the run
//! aborts every noted task when it ends (see `world::run`), after the trace
//! digest is final. Noting a task draws nothing and schedules nothing, so a
//! seed's run is the same whichever spawn it uses.

use std::cell::RefCell;
use std::future::Future;

use madsim::task::{AbortHandle, JoinHandle};

thread_local! {
    /// The tasks spawned in the run on this thread.
    static SPAWNED: RefCell<Vec<AbortHandle>> = const { RefCell::new(Vec::new()) };
}

/// Spawn `future` as a task on the current node (as `madsim::task::spawn`
/// does), to be aborted when the run ends if it has not finished by then.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The one place that spawns through madsim directly.
    #[allow(clippy::disallowed_methods)]
    let handle = madsim::task::spawn(future);
    SPAWNED.with(|spawned| {
        let mut spawned = spawned.borrow_mut();
        // Forget finished tasks before the list would grow, so a long run
        // that spawns many short tasks keeps only the live ones.
        if spawned.len() == spawned.capacity() {
            spawned.retain(|task| !task.is_finished());
        }
        spawned.push(handle.abort_handle());
    });
    handle
}

/// Start noting the tasks of a new run; returns the list of the run this
/// thread was in before (runs can nest), for [`end_run`] to restore.
pub(crate) fn begin_run() -> Vec<AbortHandle> {
    SPAWNED.with(|spawned| std::mem::take(&mut *spawned.borrow_mut()))
}

/// Abort every task spawned in the run now ending and restore the enclosing
/// run's list. The aborted tasks are dropped the next time the runtime runs
/// its ready tasks.
pub(crate) fn end_run(previous: Vec<AbortHandle>) {
    let spawned = SPAWNED.with(|spawned| std::mem::replace(&mut *spawned.borrow_mut(), previous));
    for task in spawned {
        task.abort();
    }
}
