//! A small builder for hand-written histories: times in milliseconds,
//! helpers for the common shapes (a write's attempt through one batch, a
//! recovery), and assertions on the ids a check reports.
#![allow(dead_code)]

use durasim_models::*;

pub const MS: SimTime = 1_000_000;

/// The policy every hand-built history declares: step(1) = 1 ms, doubling,
/// capped at 8 ms, jitter 0.5, window 40 ms.
pub const POLICY: BackoffPolicy = BackoffPolicy {
    base_delay: MS,
    max_delay: 8 * MS,
    jitter: 0.5,
    retry_window: 40 * MS,
};

pub struct Builder {
    pub history: History,
    now: SimTime,
}

pub fn w(page: PageId, value: u64) -> PageWrite {
    PageWrite { page, value }
}

pub fn request(
    op: OpId,
    attempt: u32,
    txn_id: TxnId,
    snapshot_seq: CommitSeq,
    writes: &[PageWrite],
) -> BatchRequest {
    BatchRequest {
        origin: Some(AttemptRef { op, attempt }),
        txn_id,
        event_id: Some(op + 100),
        snapshot_seq,
        writes: writes.to_vec(),
        verdict: Verdict::Valid,
    }
}

pub fn conflict(mut request: BatchRequest, reason: &str) -> BatchRequest {
    request.verdict = Verdict::Conflict {
        reason: reason.to_string(),
    };
    request
}

pub fn entry(seq: CommitSeq, request: &BatchRequest) -> LogEntry {
    LogEntry {
        seq,
        txn_id: request.txn_id,
        event_id: request.event_id,
        writes: request.writes.clone(),
    }
}

pub fn transient() -> AttemptResult {
    AttemptResult::Rejected {
        class: RejectionClass::Transient,
        reason: "conflict".into(),
    }
}

pub fn permanent() -> AttemptResult {
    AttemptResult::Rejected {
        class: RejectionClass::Permanent,
        reason: "receipt-exists".into(),
    }
}

impl Builder {
    /// Fault phase, the policy, channel 0 with capacity 4.
    pub fn new() -> Self {
        let mut builder = Self {
            history: History::new(),
            now: 0,
        };
        builder.push(EventKind::Phase(Phase::Fault));
        builder.push(EventKind::BackoffPolicyDeclared(POLICY));
        builder.push(EventKind::ChannelDeclared {
            channel: 0,
            capacity: 4,
        });
        builder
    }

    /// Move the clock to `ms` milliseconds.
    pub fn at(&mut self, ms: u64) -> &mut Self {
        self.now = ms * MS;
        self
    }

    /// Move the clock to `nanos`.
    pub fn at_nanos(&mut self, nanos: SimTime) -> &mut Self {
        self.now = nanos;
        self
    }

    pub fn push(&mut self, kind: EventKind) -> &mut Self {
        self.history.push(self.now, kind);
        self
    }

    /// A write op (event id = op + 100) invoked by process `op`.
    pub fn invoke_write(&mut self, op: OpId) -> &mut Self {
        self.push(EventKind::Invoke {
            op,
            process: op as ProcessId,
            call: Call::Write {
                event_id: Some(op + 100),
            },
        })
    }

    pub fn attempt(&mut self, op: OpId, attempt: u32, delay_before: SimTime) -> &mut Self {
        self.push(EventKind::AttemptStarted {
            op,
            attempt,
            delay_before,
        })
    }

    pub fn attempt_ended(&mut self, op: OpId, attempt: u32, result: AttemptResult) -> &mut Self {
        self.push(EventKind::AttemptEnded {
            op,
            attempt,
            result,
        })
    }

    pub fn complete(&mut self, op: OpId, outcome: Outcome) -> &mut Self {
        self.push(EventKind::Complete { op, outcome })
    }

    pub fn committed(&mut self, op: OpId, commit_seq: CommitSeq) -> &mut Self {
        self.complete(op, Outcome::Ok(OkValue::Committed { commit_seq }))
    }

    /// Attempt `attempt` of `op` is acknowledged as `commit_seq`, and the
    /// write completes with it.
    pub fn acked(&mut self, op: OpId, attempt: u32, commit_seq: CommitSeq) -> &mut Self {
        self.attempt_ended(op, attempt, AttemptResult::Committed { commit_seq })
            .committed(op, commit_seq)
    }

    /// Permit `permit` of channel 0 is reserved.
    pub fn reserve(&mut self, permit: PermitSeq) -> &mut Self {
        self.push(EventKind::PermitReserved { channel: 0, permit })
    }

    /// Permit `permit` of channel 0 is sent.
    pub fn send(&mut self, permit: PermitSeq) -> &mut Self {
        self.push(EventKind::PermitSent { channel: 0, permit })
    }

    /// Permit `permit` of channel 0 is aborted.
    pub fn abort(&mut self, permit: PermitSeq) -> &mut Self {
        self.push(EventKind::PermitAborted { channel: 0, permit })
    }

    /// Permit `permit` of channel 0 is delivered.
    pub fn deliver(&mut self, permit: PermitSeq) -> &mut Self {
        self.push(EventKind::PermitDelivered { channel: 0, permit })
    }

    /// Channel permit reserved, sent and delivered in one go.
    pub fn through_channel(&mut self, permit: PermitSeq) -> &mut Self {
        self.reserve(permit).send(permit).deliver(permit)
    }

    /// Repair lifecycle event `event_seq` of commit `commit_seq`.
    pub fn repair(
        &mut self,
        commit_seq: CommitSeq,
        event_seq: u32,
        kind: RepairEventKind,
    ) -> &mut Self {
        self.push(EventKind::Repair {
            commit_seq,
            event_seq,
            kind,
        })
    }

    /// A batch through all four phases; `commit_seqs` for its valid requests.
    pub fn batch(
        &mut self,
        batch: BatchId,
        requests: Vec<BatchRequest>,
        commit_seqs: &[CommitSeq],
    ) -> &mut Self {
        let any_valid = requests.iter().any(|r| r.verdict == Verdict::Valid);
        self.push(EventKind::BatchValidated { batch, requests });
        if any_valid {
            self.push(EventKind::WalAppended { batch, ok: true })
                .push(EventKind::FsyncReturned { batch, ok: true })
                .push(EventKind::Published {
                    batch,
                    commit_seqs: commit_seqs.to_vec(),
                });
        }
        self
    }

    pub fn crash(&mut self) -> &mut Self {
        self.push(EventKind::ServerCrash {
            process: 0,
            during_recovery: false,
        })
    }

    pub fn recovered(&mut self, log: Vec<LogEntry>, state: Option<Vec<PageVersion>>) -> &mut Self {
        self.push(EventKind::Recovered(Box::new(Recovery {
            process: 0,
            log,
            state,
            corruption_reported_from: None,
        })))
    }

    pub fn quiescence(&mut self) -> &mut Self {
        self.push(EventKind::Phase(Phase::Quiescence))
    }

    pub fn build(&self) -> History {
        self.history.clone()
    }
}

/// The ids `check` reports, in report order.
pub fn ids(history: &History) -> Vec<InvariantId> {
    check(history).into_iter().map(|v| v.invariant).collect()
}

/// Violations as display lines, for snapshots.
pub fn render(history: &History) -> String {
    let lines: Vec<String> = check(history).iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The fixed history (`history(false)`) passes; the broken one
/// (`history(true)`) is rejected, and only with `invariant`. Returns the
/// broken history (for a snapshot of its report).
pub fn assert_only(invariant: InvariantId, history: impl Fn(bool) -> History) -> History {
    assert_eq!(
        check(&history(false)),
        vec![],
        "the fixed history must pass"
    );
    let broken = history(true);
    let reported = ids(&broken);
    assert!(!reported.is_empty(), "the broken history must be rejected");
    assert!(
        reported.iter().all(|id| *id == invariant),
        "only {invariant:?} expected, got:\n{}",
        render(&broken)
    );
    broken
}
