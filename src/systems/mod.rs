//! The systems under test, each from a production design in the specs.
//!
//! - [`channel`]: spec 01's two-phase bounded channel.
//! - [`wal_format`], [`wal`]: the write-ahead log on `SimDisk` and its
//!   recovery (spec 01, spec 07).
//! - [`group_commit`]: spec 01's group commit coordinator.
//! - [`backoff`]: spec 02's backoff policy and retry loop.
//! - [`committed_write`]: spec 02's read-modify-write event handlers.
//! - [`repair`]: spec 03's asynchronous repair workers.
//! - [`queued_writer`]: spec 04's queued (write-behind) writer and its
//!   coordinator.
//! - [`lifecycle`]: spec 06's concurrent install/remove/update-all actors
//!   over a catalog, a lockfile and a file tree.
//! - [`snapshot_persistence`]: spec 05's reliability manager with snapshot
//!   persistence and a pending-write retry queue.
//! - [`record`]: the event recorder every system writes its history into.

pub mod backoff;
pub mod channel;
pub mod committed_write;
pub mod group_commit;
pub mod lifecycle;
pub mod queued_writer;
pub mod record;
pub mod repair;
pub mod snapshot_persistence;
pub mod wal;
pub mod wal_format;
