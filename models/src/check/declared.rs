//! What the channel and queue checkers share: resources that live in
//! server memory, are declared (with a capacity) before use, and are lost
//! by a crash. [`Declared`] keeps the models by id and reports the two
//! declaration breaches, both D12 backpressure: a capacity of 0, and a
//! record for a resource not declared since the last crash.
//!
//! Does not verify anything about the resources themselves: that is the
//! models' (and their checkers') business.

use std::collections::BTreeMap;

use crate::history::SimTime;
use crate::violation::InvariantId;

use super::Report;

/// The models of the declared resources of one kind, by id.
#[derive(Debug)]
pub(crate) struct Declared<M> {
    /// What the resource is called in messages: `"channel"`, `"queue"`.
    noun: &'static str,
    by_id: BTreeMap<u32, M>,
}

impl<M> Declared<M> {
    /// No resource declared yet; `noun` names them in messages.
    pub(crate) fn new(noun: &'static str) -> Self {
        Self {
            noun,
            by_id: BTreeMap::new(),
        }
    }

    /// Resource `id` is declared with `capacity` (a capacity of 0 is
    /// reported, followed by `capacity_note`); returns the model it
    /// replaces, if any.
    pub(crate) fn declare(
        &mut self,
        time: SimTime,
        id: u32,
        capacity: u32,
        capacity_note: &str,
        model: M,
        report: &mut Report,
    ) -> Option<M> {
        if capacity == 0 {
            let noun = self.noun;
            report.add(
                InvariantId::D12,
                time,
                vec![],
                format!("{noun} {id} is declared with capacity 0{capacity_note}"),
            );
        }
        self.by_id.insert(id, model)
    }

    /// The model of resource `id`; a record for an undeclared one is
    /// reported.
    #[inline]
    pub(crate) fn get_mut(
        &mut self,
        time: SimTime,
        id: u32,
        report: &mut Report,
    ) -> Option<&mut M> {
        let noun = self.noun;
        let found = self.by_id.get_mut(&id);
        if found.is_none() {
            undeclared(time, noun, id, report);
        }
        found
    }

    /// Every declared resource, by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &M)> {
        self.by_id.iter().map(|(id, model)| (*id, model))
    }

    /// A crash loses every resource: they are returned, by id.
    pub(crate) fn take_all(&mut self) -> BTreeMap<u32, M> {
        std::mem::take(&mut self.by_id)
    }
}

#[cold]
fn undeclared(time: SimTime, noun: &str, id: u32, report: &mut Report) {
    report.add(
        InvariantId::D12,
        time,
        vec![],
        format!("malformed history: {noun} {id} is used but not declared (since the last crash)"),
    );
}
