//! The backend trait a queued writer (or the coordinator's immediate path)
//! appends through, and its contract.

use std::future::Future;
use std::pin::Pin;

use super::{Message, StreamId};

/// One backend call: append `messages`, in order, to `stream`.
#[derive(Debug, Clone, Copy)]
pub struct BackendCall<'a> {
    /// The stream every message of the call goes to.
    pub stream: StreamId,
    /// The messages, in order.
    pub messages: &'a [Message],
    /// 1 for the call's first attempt, then 2, 3, … (for the backend's logs;
    /// idempotency is by message id, not by attempt).
    pub attempt: u32,
}

/// What the backend says about one message of a successful call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Appended by this call, at `position` in the backend's log.
    Appended {
        /// Position in the backend's log (1, 2, 3, …).
        position: u64,
    },
    /// Already there (an earlier attempt applied it): not appended again.
    AlreadyApplied {
        /// Where the earlier attempt put it.
        position: u64,
    },
}

impl Receipt {
    /// The message's position in the backend's log.
    pub fn position(&self) -> u64 {
        match *self {
            Receipt::Appended { position } | Receipt::AlreadyApplied { position } => position,
        }
    }
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Worth retrying (busy, unavailable, timed out). The call may or may
    /// not have been applied.
    #[error("transient backend error: {0}")]
    Transient(String),
    /// Retrying cannot help (rejected, not authorised, stream closed). The
    /// call was not applied by this attempt.
    #[error("permanent backend error: {0}")]
    Permanent(String),
}

/// The future of one backend call: one receipt per message, in call order.
pub type BackendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Receipt>, BackendError>> + Send + 'a>>;

/// A store that messages are appended to.
///
/// Contract (what the writer's exactly-once landing relies on):
/// - a call is **atomic**: all of its messages are applied, in order, or
///   none;
/// - a call is **idempotent per message id**: a message already applied is
///   not applied again, and its receipt says [`Receipt::AlreadyApplied`]
///   with the original position;
/// - success returns exactly one receipt per message, in call order;
/// - [`BackendError::Transient`] may follow an applied call (the answer was
///   lost), [`BackendError::Permanent`] never does.
///
/// Calls may take any amount of (simulated) time; the future may be
/// dropped at any await point (a writer crash), which must leave the call
/// applied or not, never half.
pub trait Backend: Send + Sync {
    /// Append `call.messages` to `call.stream`.
    fn append<'a>(&'a self, call: BackendCall<'a>) -> BackendFuture<'a>;
}
