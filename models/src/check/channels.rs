//! The two-phase channel's guarantees (spec 01), through
//! [`crate::model::channel::TwoPhaseChannel`]:
//!
//! | breach | invariant |
//! |--------|-----------|
//! | more slots held than the capacity; capacity 0; send/abort of a permit not reserved; records for an undeclared channel | D12 backpressure |
//! | permits not numbered 1, 2, 3, … in reservation order; delivery out of reservation order | D4 order |
//! | delivery of a permit never sent (or aborted, or never reserved) | D3 no-phantom |
//! | delivery of a permit twice | D7 exactly-once |
//! | a sent permit still undelivered at quiescence | D6 no-silent-drop |
//!
//! A server crash loses every channel (they are in memory); a system
//! declares its channels again when it restarts.
//!
//! Does not verify: how long a blocked reservation waited, leaked-permit
//! counters (a dropped permit is an abort here).

use crate::history::{ChannelId, PermitSeq, SimTime};
use crate::model::channel::{ChannelBreach, PermitState, TwoPhaseChannel};
use crate::violation::InvariantId;

use super::declared::Declared;
use super::Report;

/// Every declared channel.
#[derive(Debug)]
pub(crate) struct Channels {
    channels: Declared<TwoPhaseChannel>,
}

impl Default for Channels {
    fn default() -> Self {
        Self {
            channels: Declared::new("channel"),
        }
    }
}

impl Channels {
    pub(crate) fn on_declared(
        &mut self,
        time: SimTime,
        channel: ChannelId,
        capacity: u32,
        report: &mut Report,
    ) {
        self.channels.declare(
            time,
            channel,
            capacity,
            " (capacities are clamped to 1..=65535)",
            TwoPhaseChannel::new(capacity),
            report,
        );
    }

    pub(crate) fn on_reserved(
        &mut self,
        time: SimTime,
        channel: ChannelId,
        permit: PermitSeq,
        report: &mut Report,
    ) {
        if let Some(model) = self.channels.get_mut(time, channel, report) {
            model.reserve(permit, |breach| {
                explain(time, channel, permit, breach, report)
            });
        }
    }

    pub(crate) fn on_sent(
        &mut self,
        time: SimTime,
        channel: ChannelId,
        permit: PermitSeq,
        report: &mut Report,
    ) {
        self.step(time, channel, permit, report, TwoPhaseChannel::send);
    }

    pub(crate) fn on_aborted(
        &mut self,
        time: SimTime,
        channel: ChannelId,
        permit: PermitSeq,
        report: &mut Report,
    ) {
        self.step(time, channel, permit, report, TwoPhaseChannel::abort);
    }

    pub(crate) fn on_delivered(
        &mut self,
        time: SimTime,
        channel: ChannelId,
        permit: PermitSeq,
        report: &mut Report,
    ) {
        self.step(time, channel, permit, report, TwoPhaseChannel::deliver);
    }

    /// One step of `permit` on `channel`, its breach explained.
    #[inline]
    fn step(
        &mut self,
        time: SimTime,
        channel: ChannelId,
        permit: PermitSeq,
        report: &mut Report,
        step: impl FnOnce(&mut TwoPhaseChannel, PermitSeq) -> Option<ChannelBreach>,
    ) {
        if let Some(breach) = self
            .channels
            .get_mut(time, channel, report)
            .and_then(|model| step(model, permit))
        {
            explain(time, channel, permit, breach, report);
        }
    }

    pub(crate) fn on_crash(&mut self) {
        self.channels.take_all();
    }

    pub(crate) fn on_quiescence(&mut self, time: SimTime, report: &mut Report) {
        for (channel, model) in self.channels.iter() {
            for permit in model.sent_undelivered() {
                report.add(
                    InvariantId::D6,
                    time,
                    vec![],
                    format!("channel {channel}: permit {permit} was sent but is still undelivered at quiescence"),
                );
            }
        }
    }
}

fn describe(state: Option<PermitState>) -> &'static str {
    match state {
        None => "never reserved",
        Some(PermitState::Reserved) => "reserved but not sent",
        Some(PermitState::Sent) => "sent",
        Some(PermitState::Aborted) => "aborted",
        Some(PermitState::Delivered) => "delivered",
    }
}

#[cold]
fn explain(
    time: SimTime,
    channel: ChannelId,
    permit: PermitSeq,
    breach: ChannelBreach,
    report: &mut Report,
) {
    let (invariant, message) = match breach {
        ChannelBreach::PermitOutOfSequence { expected } => (
            InvariantId::D4,
            format!("channel {channel}: reservation got permit {permit} where permit {expected} comes next"),
        ),
        ChannelBreach::OverCapacity { held, capacity } => (
            InvariantId::D12,
            format!("channel {channel}: permit {permit} is reserved while {held} of {capacity} slots are held"),
        ),
        ChannelBreach::NotReserved { state } => (
            InvariantId::D12,
            format!("channel {channel}: permit {permit} is sent or released while {}", describe(state)),
        ),
        ChannelBreach::DeliveredOutOfOrder { expected } => (
            InvariantId::D4,
            format!("channel {channel}: permit {permit} is delivered before permit {expected}: delivery must follow reservation order"),
        ),
        ChannelBreach::DeliveredUnsent { state } => (
            InvariantId::D3,
            format!("channel {channel}: permit {permit} is delivered although it was {}", describe(state)),
        ),
        ChannelBreach::DeliveredTwice => (
            InvariantId::D7,
            format!("channel {channel}: permit {permit} is delivered twice"),
        ),
    };
    report.add(invariant, time, vec![], message);
}
