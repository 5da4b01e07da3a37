//! The simulated network between processes: typed, unreliable datagrams.
//!
//! Model: each message gets a latency (µs, from the profile's span) and,
//! per message, fault decisions on the tape: lost, duplicated (the copy gets
//! its own extra delay), or held back (delivered after later messages:
//! reordering). A message is also dropped when its link is blocked by a
//! partition, either when it is sent or when it would be delivered, and
//! when its destination is down or restarts before delivery (in-flight
//! messages die with the incarnation they were sent to, like a reset
//! connection). Delivery order between two processes is by delivery time,
//! so jitter alone also reorders.
//!
//! Resolution: a receiver that is already waiting wakes on a madsim timer,
//! which fires no earlier than 1 ms after it was set, so sub-millisecond
//! latencies are observed as up to 1 ms when the receiver was idle.
//!
//! madsim's own network has no duplication and no per-message decisions,
//! hence this thin transport of our own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{self, SimTime};
use crate::tape::Site;
use crate::trace::EventKind;
use crate::world::{try_with_state, ProcessCtx, ProcessId};

/// Decision sites of the network.
pub mod sites {
    use crate::tape::Site;
    /// Latency of each message.
    pub const LATENCY: Site = Site::value("net.latency");
    /// A message is lost.
    pub const LOSS: Site = Site::fault("net.loss", "network-loss");
    /// A message is delivered twice (value: 1 + extra delay of the copy, µs).
    pub const DUPLICATE: Site = Site::fault("net.duplicate", "network-duplicate");
    /// A message is held back (value: 1 + extra delay, ms).
    pub const REORDER: Site = Site::fault("net.reorder", "network-reorder");
}

struct Pending<M> {
    from: ProcessId,
    msg_id: u64,
    /// The destination incarnation the message was sent to.
    incarnation: u32,
    payload: M,
}

struct Mailbox<M> {
    /// Ordered by (delivery time, message number, copy).
    queue: BTreeMap<(SimTime, u64, u8), Pending<M>>,
    notify: Arc<Notify>,
}

impl<M> Default for Mailbox<M> {
    fn default() -> Self {
        Mailbox {
            queue: BTreeMap::new(),
            notify: Arc::new(Notify::new()),
        }
    }
}

struct NetState<M> {
    mailboxes: BTreeMap<ProcessId, Mailbox<M>>,
    next_msg: u64,
}

/// A network carrying messages of type `M` between the processes of a run.
pub struct Net<M> {
    state: Arc<Mutex<NetState<M>>>,
}

impl<M> Clone for Net<M> {
    fn clone(&self) -> Self {
        Net {
            state: self.state.clone(),
        }
    }
}

impl<M> Default for Net<M> {
    fn default() -> Self {
        Net {
            state: Arc::new(Mutex::new(NetState {
                mailboxes: BTreeMap::new(),
                next_msg: 1,
            })),
        }
    }
}

/// A process's attachment to a [`Net`], valid for one incarnation.
pub struct Endpoint<M> {
    net: Net<M>,
    me: ProcessId,
    incarnation: u32,
}

/// How one message is to be delivered.
struct Plan {
    lost: bool,
    delays_us: Vec<u64>,
}

impl<M: Clone + Send + 'static> Net<M> {
    /// A new, empty network.
    pub fn new() -> Net<M> {
        Net::default()
    }

    /// Attach the process of `ctx` (its current incarnation).
    pub fn endpoint(&self, ctx: &ProcessCtx) -> Endpoint<M> {
        Endpoint {
            net: self.clone(),
            me: ctx.id(),
            incarnation: ctx.incarnation(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NetState<M>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Decide the fate of message `msg_id` from `from` to `to`; `None` when it
/// cannot be sent at all (outside a run, blocked link, destination down).
fn plan(from: ProcessId, to: ProcessId, msg_id: u64) -> Option<(Plan, u32)> {
    try_with_state(|s| {
        s.stats.messages += 1;
        s.emit(Some(from), EventKind::NetSend { to, msg: msg_id });
        let dest = s.processes.get(to as usize)?;
        let incarnation = dest.incarnation;
        if !s.is_live(to, incarnation) || s.blocked.contains(&(from, to)) {
            return None;
        }
        let mut net = s.faults.net.clone();
        if s.phase != crate::trace::Phase::Fault {
            // Outside the fault phase the network is healthy: latency only.
            net.loss = 0.0;
            net.duplicate = 0.0;
            net.reorder = 0.0;
        }
        // Every link has its own streams: removing a fault on one link
        // leaves the decisions of the others where they were.
        let link = (u64::from(from) << 32 | u64::from(to)) + 1;
        let label = || format!("{from}->{to}");
        let span = net.latency_us.hi.saturating_sub(net.latency_us.lo);
        let latency = net.latency_us.lo
            + s.chooser
                .draw_keyed(&sites::LATENCY, link, label, span + 1, |rng| {
                    use rand::Rng;
                    rng.gen_range(0..=span)
                });
        if s.chooser.chance_keyed(&sites::LOSS, link, label, net.loss) {
            let detail = format!("message {msg_id} {from} -> {to} lost");
            s.fault_fired(Some(from), &sites::LOSS, 1, detail);
            return Some((
                Plan {
                    lost: true,
                    delays_us: Vec::new(),
                },
                incarnation,
            ));
        }
        let mut delays_us = vec![latency];
        let span = net.reorder_delay_ms;
        let reorder = draw_extra(s, &sites::REORDER, link, net.reorder, span.lo, span.hi);
        if reorder > 0 {
            let extra_ms = span.lo + (reorder - 1) % (span.hi - span.lo + 1);
            delays_us[0] += extra_ms * 1000;
            let detail = format!("message {msg_id} {from} -> {to} held back {extra_ms} ms");
            s.fault_fired(Some(from), &sites::REORDER, reorder, detail);
        }
        let dup = draw_extra(s, &sites::DUPLICATE, link, net.duplicate, 0, 5000);
        if dup > 0 {
            let extra_us = (dup - 1) % 5001;
            delays_us.push(latency + extra_us);
            let detail = format!("message {msg_id} {from} -> {to} duplicated (+{extra_us} µs)");
            s.fault_fired(Some(from), &sites::DUPLICATE, dup, detail);
        }
        Some((
            Plan {
                lost: false,
                delays_us,
            },
            incarnation,
        ))
    })
    .flatten()
}

/// A fault with probability `p` whose value is 1 + a uniform extra in
/// `lo..=hi`, on `link`'s stream.
fn draw_extra(
    s: &mut crate::world::State,
    site: &Site,
    link: u64,
    p: f64,
    lo: u64,
    hi: u64,
) -> u64 {
    let (from, to) = ((link - 1) >> 32, (link - 1) & 0xffff_ffff);
    let label = || format!("{from}->{to}");
    s.chooser.draw_keyed(site, link, label, u64::MAX, |rng| {
        use rand::Rng;
        if p > 0.0 && rng.gen::<f64>() < p {
            1 + rng.gen_range(lo..=hi.max(lo)) - lo
        } else {
            0
        }
    })
}

impl<M: Clone + Send + 'static> Endpoint<M> {
    /// This endpoint's process.
    pub fn id(&self) -> ProcessId {
        self.me
    }

    /// Send `payload` to process `to`. Never blocks and never fails: an
    /// unreliable network just loses what it cannot deliver.
    pub fn send(&self, to: ProcessId, payload: M) {
        let msg_id = {
            let mut st = self.net.state();
            let id = st.next_msg;
            st.next_msg += 1;
            id
        };
        let Some((plan, incarnation)) = plan(self.me, to, msg_id) else {
            return;
        };
        if plan.lost {
            return;
        }
        let now = clock::now();
        let mut st = self.net.state();
        let mailbox = st.mailboxes.entry(to).or_default();
        // Every copy but the last gets a clone; the last takes the payload.
        let mut payload = Some(payload);
        let copies = plan.delays_us.len();
        for (copy, &delay) in plan.delays_us.iter().enumerate() {
            let at = now.plus(Duration::from_micros(delay));
            let payload = if copy + 1 == copies {
                payload.take()
            } else {
                payload.clone()
            };
            let Some(payload) = payload else { break };
            mailbox.queue.insert(
                (at, msg_id, copy as u8),
                Pending {
                    from: self.me,
                    msg_id,
                    incarnation,
                    payload,
                },
            );
        }
        mailbox.notify.notify_one();
    }

    /// Pop the next deliverable message, or say when the next one is due.
    fn poll_mailbox(&self) -> Result<(ProcessId, M), (Option<SimTime>, Arc<Notify>)> {
        let now = clock::now();
        let mut st = self.net.state();
        let mailbox = st.mailboxes.entry(self.me).or_default();
        loop {
            let Some((&key, _)) = mailbox.queue.iter().next() else {
                return Err((None, mailbox.notify.clone()));
            };
            if key.0 > now {
                return Err((Some(key.0), mailbox.notify.clone()));
            }
            let Some(msg) = mailbox.queue.remove(&key) else {
                continue;
            };
            if msg.incarnation != self.incarnation {
                continue; // sent to an earlier incarnation: died with it
            }
            let deliverable = try_with_state(|s| {
                let ok = !s.blocked.contains(&(msg.from, self.me));
                if ok {
                    s.emit(
                        Some(self.me),
                        EventKind::NetDeliver {
                            from: msg.from,
                            msg: msg.msg_id,
                        },
                    );
                }
                ok
            })
            .unwrap_or(false);
            if deliverable {
                return Ok((msg.from, msg.payload));
            }
        }
    }

    /// Receive the next message (waits in simulated time).
    pub async fn recv(&self) -> (ProcessId, M) {
        loop {
            match self.poll_mailbox() {
                Ok(got) => return got,
                Err((Some(due), notify)) => {
                    let wait = due.since(clock::now());
                    let _ = crate::clock::timeout(wait, notify.notified()).await;
                }
                Err((None, notify)) => notify.notified().await,
            }
        }
    }

    /// Receive the next message, or `None` after `timeout` of simulated time.
    pub async fn recv_timeout(&self, timeout: Duration) -> Option<(ProcessId, M)> {
        crate::clock::timeout(timeout, self.recv()).await.ok()
    }
}

/// Number of messages queued for `to` (test helper).
pub fn queued<M: Clone + Send + 'static>(net: &Net<M>, to: ProcessId) -> usize {
    net.state().mailboxes.get(&to).map_or(0, |m| m.queue.len())
}
