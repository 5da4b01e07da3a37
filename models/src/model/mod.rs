//! Reference models: small, sequential, obviously correct descriptions of
//! what each system may do. Checkers replay a history through them.

pub mod backoff;
pub mod channel;
pub mod durable_log;
pub mod lifecycle;
pub mod page_store;
pub mod queue;
pub mod repair;
pub mod snapshot;
