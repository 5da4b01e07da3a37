//! The coordinator: fans each append out to its registered backends.
//!
//! Registrations are served in priority order (highest first; equal
//! priorities in registration order). An `Immediate` registration is
//! called inline, with spec 02's backoff on transient errors; a `Queued`
//! one gets its own [`QueuedWriter`] and the append only waits for the
//! enqueue. A `Required` registration's failure (its call failing for
//! good, or its queue refusing the message) ends the append with an
//! error naming it: registrations of lower priority do not get the
//! message, higher ones keep it (there is no rollback). A `BestEffort`
//! registration's failure is listed in the append's report and in its
//! health, and the fan-out goes on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use durasim_sim::clock;

use super::backend::{Backend, BackendCall, BackendError};
use super::health::{HealthReport, HealthTracker};
use super::writer::{EnqueueError, FlushError, QueuedWriter, QueuedWriterConfig};
use super::{FailureMode, Message, Overflow, StreamId};
use crate::systems::backoff::BackoffPolicy;
use crate::systems::record::lock_recovering;

/// How appends reach a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePolicy {
    /// Called inline by `append`.
    Immediate,
    /// Queued; a writer task drains the queue in batches.
    Queued {
        /// How long the writer collects after the first queued message.
        batch_window: Duration,
        /// Most messages queued at once.
        capacity: usize,
        /// What an enqueue does when the queue is full.
        overflow: Overflow,
    },
}

/// A backend's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Name, unique per coordinator.
    pub name: String,
    /// How appends reach it.
    pub policy: WritePolicy,
    /// Whether its failures are the caller's errors.
    pub failure_mode: FailureMode,
    /// Fan-out order: higher first.
    pub priority: i32,
}

/// A `Required` registration did not take the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Its immediate call failed for good.
    #[error("backend `{backend}` failed: {error}")]
    Backend {
        /// The registration.
        backend: String,
        /// What went wrong.
        error: String,
    },
    /// Its queue refused the message.
    #[error("backend `{backend}` refused the message: {error}")]
    Refused {
        /// The registration.
        backend: String,
        /// Why.
        error: EnqueueError,
    },
}

/// What an append did besides succeeding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// `BestEffort` registrations that did not take the message, with why.
    pub skipped: Vec<(String, String)>,
}

/// `Required` queued registrations whose messages failed terminally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} backend(s) reported terminal failures, first `{}`: {}", failures.len(), failures[0].0, failures[0].1)]
pub struct CoordinatorError {
    /// Per registration, its failures (never empty).
    pub failures: Vec<(String, FlushError)>,
}

enum Target {
    Immediate {
        backend: Arc<dyn Backend>,
        health: Mutex<HealthTracker>,
    },
    Queued(QueuedWriter),
}

struct Registered {
    registration: Registration,
    target: Target,
}

/// Fans appends out to registered backends.
pub struct Coordinator {
    retry: BackoffPolicy,
    writer_defaults: QueuedWriterConfig,
    registered: Vec<Registered>,
}

impl Coordinator {
    /// A coordinator with no backends; transient errors are retried with
    /// `retry`.
    pub fn new(retry: BackoffPolicy) -> Coordinator {
        Coordinator {
            retry,
            writer_defaults: QueuedWriterConfig::default(),
            registered: Vec::new(),
        }
    }

    /// Settings for queued writers registered from now on, besides what
    /// their registration fixes (window, capacity, overflow, failure mode)
    /// and the coordinator's backoff.
    pub fn with_writer_defaults(mut self, config: QueuedWriterConfig) -> Coordinator {
        self.writer_defaults = config;
        self
    }

    /// Register `backend` (a queued one starts its writer now, so this
    /// must run inside a simulation).
    pub fn register(&mut self, registration: Registration, backend: Arc<dyn Backend>) {
        let target = match registration.policy {
            WritePolicy::Immediate => Target::Immediate {
                backend,
                health: Mutex::new(HealthTracker::new(self.writer_defaults.unhealthy_after)),
            },
            WritePolicy::Queued {
                batch_window,
                capacity,
                overflow,
            } => {
                let config = QueuedWriterConfig {
                    batch_window,
                    capacity,
                    overflow,
                    failure_mode: registration.failure_mode,
                    retry: self.retry,
                    ..self.writer_defaults.clone()
                };
                Target::Queued(QueuedWriter::start(backend, config))
            }
        };
        let at = self
            .registered
            .iter()
            .position(|r| r.registration.priority < registration.priority)
            .unwrap_or(self.registered.len());
        self.registered.insert(
            at,
            Registered {
                registration,
                target,
            },
        );
    }

    /// The registration names in fan-out order.
    pub fn fan_out_order(&self) -> Vec<String> {
        self.registered
            .iter()
            .map(|r| r.registration.name.clone())
            .collect()
    }

    /// Append `message` to `stream` on every registered backend.
    pub async fn append(
        &self,
        stream: StreamId,
        message: Message,
    ) -> Result<AppendReport, AppendError> {
        let mut report = AppendReport::default();
        for r in &self.registered {
            let name = &r.registration.name;
            let required = r.registration.failure_mode == FailureMode::Required;
            let failure =
                match &r.target {
                    Target::Immediate { backend, health } => {
                        call_immediate(&**backend, health, &self.retry, stream, &message)
                            .await
                            .err()
                            .map(|error| AppendError::Backend {
                                backend: name.clone(),
                                error,
                            })
                    }
                    Target::Queued(writer) => writer
                        .enqueue(stream, message.clone())
                        .await
                        .err()
                        .map(|error| AppendError::Refused {
                            backend: name.clone(),
                            error,
                        }),
                };
            match failure {
                None => {}
                Some(error) if required => return Err(error),
                Some(error) => report.skipped.push((name.clone(), error.to_string())),
            }
        }
        Ok(report)
    }

    /// Flush every queued registration; the terminal failures of the
    /// `Required` ones, if any.
    pub async fn flush(&self) -> Result<(), CoordinatorError> {
        let mut failures = Vec::new();
        for (name, writer) in self.writers() {
            if let Err(error) = writer.flush().await {
                failures.push((name.to_string(), error));
            }
        }
        into_result(failures)
    }

    /// Shut every queued registration down (each flushes first); the
    /// terminal failures of the `Required` ones, if any.
    pub async fn shutdown(&self) -> Result<(), CoordinatorError> {
        let mut failures = Vec::new();
        for (name, writer) in self.writers() {
            if let Err(error) = writer.shutdown().await {
                failures.push((name.to_string(), error));
            }
        }
        into_result(failures)
    }

    /// A registration's health.
    pub fn health(&self, name: &str) -> Option<HealthReport> {
        let r = self
            .registered
            .iter()
            .find(|r| r.registration.name == name)?;
        Some(match &r.target {
            Target::Immediate { health, .. } => lock_recovering(health).report(),
            Target::Queued(writer) => writer.health(),
        })
    }

    /// A queued registration's writer.
    pub fn writer(&self, name: &str) -> Option<&QueuedWriter> {
        self.writers().find(|(n, _)| *n == name).map(|(_, w)| w)
    }

    fn writers(&self) -> impl Iterator<Item = (&str, &QueuedWriter)> {
        self.registered.iter().filter_map(|r| match &r.target {
            Target::Queued(writer) => Some((r.registration.name.as_str(), writer)),
            Target::Immediate { .. } => None,
        })
    }
}

fn into_result(failures: Vec<(String, FlushError)>) -> Result<(), CoordinatorError> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CoordinatorError { failures })
    }
}

/// One immediate append with spec 02's backoff on transient errors (same
/// window rule as the queued writer). Returns the message's position.
async fn call_immediate(
    backend: &dyn Backend,
    health: &Mutex<HealthTracker>,
    policy: &BackoffPolicy,
    stream: StreamId,
    message: &Message,
) -> Result<u64, String> {
    let messages = std::slice::from_ref(message);
    let first = clock::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let call = BackendCall {
            stream,
            messages,
            attempt,
        };
        let error = match backend.append(call).await {
            Ok(receipts) if receipts.len() == 1 => {
                lock_recovering(health).succeeded();
                return Ok(receipts[0].position());
            }
            Ok(receipts) => BackendError::Transient(format!(
                "backend answered {} receipt(s) for 1 message",
                receipts.len()
            )),
            Err(error) => error,
        };
        lock_recovering(health).failed(&error.to_string());
        let elapsed = clock::now().since(first);
        match error {
            BackendError::Permanent(reason) => return Err(format!("rejected: {reason}")),
            BackendError::Transient(reason) if elapsed > policy.retry_window => {
                return Err(format!(
                    "retry window exhausted after {attempt} attempt(s) in {elapsed:?}: {reason}"
                ))
            }
            BackendError::Transient(_) => clock::sleep(policy.delay(attempt)).await,
        }
    }
}
