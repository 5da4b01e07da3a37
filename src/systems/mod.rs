//! The systems under test, each from a production design in the specs.
//!
//! - [`channel`]: spec 01's two-phase bounded channel.
//! - [`wal_format`], [`wal`]: the write-ahead log on `SimDisk` and its
//!   recovery (spec 01, spec 07).
//! - [`group_commit`]: spec 01's group commit coordinator.
//! - [`record`]: the event recorder every system writes its history into.

pub mod channel;
pub mod group_commit;
pub mod record;
pub mod wal;
pub mod wal_format;
