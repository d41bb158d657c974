//! Cascaded windows: a coarser tumbling window built from a finer stage's results
//! (5m from 1m, 1h from 5m) rather than from the raw events.
//!
//! A finer window that is corrected within its lateness replaces its earlier result in
//! the coarser window (results are kept per finer window start), so corrections flow up
//! the cascade without counting anything twice.
use std::collections::BTreeMap;
use std::hash::Hash;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

use super::{frontier_ms, KeyMap, Time};
use crate::event::{Item, WindowResult};
use crate::spec::{Window, WindowSpec};

/// Combines finer windows' results, in time order, into a coarser window's.
pub trait Combine: 'static {
    type Output: Clone + 'static;
    fn combine(&self, parts: &[&Self::Output], window: Window) -> Self::Output;
}

#[derive(Debug, Clone, Copy)]
pub struct RewindowConfig {
    pub size_ms: i64,
    pub allowed_lateness_ms: i64,
    /// The stage whose results this one is built from.
    pub from_stage: u8,
    pub stage: u8,
}

struct Coarse<O> {
    window: Window,
    /// Finer results by start, ascending. A vector, not a map: a coarse window has a
    /// handful of parts, and a B-tree leaf reserves room for eleven (kilobytes per key).
    parts: Vec<(i64, O)>,
    dirty: bool,
    revision: u32,
}

struct KeyCoarse<O> {
    part: u32,
    open: Vec<Coarse<O>>,
}

struct Rewindows<K, C: Combine> {
    cfg: RewindowConfig,
    combine: C,
    keys: KeyMap<K, KeyCoarse<C::Output>>,
    due: BTreeMap<i64, Vec<K>>,
    /// Per partition, keys with a window whose lateness ends at this time.
    expiry: KeyMap<u32, BTreeMap<i64, Vec<K>>>,
    refire: Vec<K>,
}

impl<K: Clone + Hash + Eq + 'static, C: Combine> Rewindows<K, C> {
    fn add(&mut self, r: &WindowResult<K, C::Output>, frontier: i64) {
        let spec = WindowSpec::tumbling(self.cfg.size_ms);
        let mut w = Window::new(0, 0);
        spec.assign(r.window.start, |x| w = x);
        let closes = w.end.saturating_add(self.cfg.allowed_lateness_ms);
        if !self.keys.contains_key(&r.key) {
            self.keys.insert(
                r.key.clone(),
                KeyCoarse {
                    part: r.part,
                    open: Vec::with_capacity(2),
                },
            );
        }
        let Some(kc) = self.keys.get_mut(&r.key) else {
            return;
        };
        let c = match kc.open.iter_mut().position(|c| c.window == w) {
            Some(i) => &mut kc.open[i],
            None => {
                self.due.entry(w.end).or_default().push(r.key.clone());
                self.expiry
                    .entry(r.part)
                    .or_default()
                    .entry(closes)
                    .or_default()
                    .push(r.key.clone());
                kc.open.push(Coarse {
                    window: w,
                    parts: Vec::new(),
                    dirty: false,
                    revision: 0,
                });
                kc.open.last_mut().expect("just pushed")
            }
        };
        match c.parts.binary_search_by_key(&r.window.start, |p| p.0) {
            Ok(i) => c.parts[i].1 = r.output.clone(),
            Err(i) => c.parts.insert(i, (r.window.start, r.output.clone())),
        }
        if !c.dirty && w.end <= frontier {
            self.refire.push(r.key.clone());
        }
        c.dirty = true;
    }

    fn emit_key(&mut self, key: &K, frontier: i64, out: &mut Vec<WindowResult<K, C::Output>>) {
        let Some(kc) = self.keys.get_mut(key) else {
            return;
        };
        for c in kc.open.iter_mut() {
            if c.dirty && c.window.end <= frontier {
                let parts: Vec<&C::Output> = c.parts.iter().map(|p| &p.1).collect();
                out.push(WindowResult {
                    key: key.clone(),
                    part: kc.part,
                    window: c.window,
                    output: self.combine.combine(&parts, c.window),
                    revision: c.revision,
                    stage: self.cfg.stage,
                });
                c.dirty = false;
                c.revision += 1;
            }
        }
    }

    fn advance(&mut self, frontier: i64, out: &mut Vec<WindowResult<K, C::Output>>) {
        for key in std::mem::take(&mut self.refire) {
            self.emit_key(&key, frontier, out);
        }
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > frontier {
                break;
            }
            for key in entry.remove() {
                self.emit_key(&key, frontier, out);
            }
        }
    }

    /// Emits what changed in the coarse windows of `part` its watermark made final, then
    /// drops them.
    fn expire(&mut self, part: u32, watermark: i64, out: &mut Vec<WindowResult<K, C::Output>>) {
        let lateness = self.cfg.allowed_lateness_ms;
        let Some(expiry) = self.expiry.get_mut(&part) else {
            return;
        };
        while let Some(entry) = expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let Some(kc) = self.keys.get_mut(&key) else {
                    continue;
                };
                for c in kc.open.iter_mut() {
                    if c.dirty && c.window.end.saturating_add(lateness) <= watermark {
                        let parts: Vec<&C::Output> = c.parts.iter().map(|p| &p.1).collect();
                        out.push(WindowResult {
                            key: key.clone(),
                            part: kc.part,
                            window: c.window,
                            output: self.combine.combine(&parts, c.window),
                            revision: c.revision,
                            stage: self.cfg.stage,
                        });
                        c.dirty = false;
                        c.revision += 1;
                    }
                }
                kc.open
                    .retain(|c| c.window.end.saturating_add(lateness) > watermark);
                if kc.open.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
    }
}

pub trait RewindowExt<'s, K, V, O> {
    /// Builds a coarser tumbling stage from the results of `cfg.from_stage`; every item
    /// (including those results) flows on.
    fn rewindow<C>(self, cfg: RewindowConfig, combine: C) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        C: Combine<Output = O>;
}

impl<'s, K, V, O> RewindowExt<'s, K, V, O> for Stream<'s, Time, Vec<Item<K, V, O>>>
where
    K: Clone + Hash + Eq + 'static,
    V: Clone + 'static,
    O: Clone + 'static,
{
    fn rewindow<C>(self, cfg: RewindowConfig, combine: C) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        C: Combine<Output = O>,
    {
        let name = format!("Rewindow[{}<-{}]", cfg.stage, cfg.from_stage);
        self.unary_frontier::<CapacityContainerBuilder<Vec<Item<K, V, O>>>, _, _, _>(
            Pipeline,
            &name,
            move |_cap, _info| {
                let mut state = Rewindows {
                    cfg,
                    combine,
                    keys: KeyMap::default(),
                    due: BTreeMap::new(),
                    expiry: KeyMap::default(),
                    refire: Vec::new(),
                };
                let mut held: Option<Capability<Time>> = None;
                let mut results = Vec::new();
                let mut expired = Vec::new();
                let mut last_frontier = i64::MIN;
                move |(input, frontier), output| {
                    let f = frontier_ms(frontier);
                    let port = output.output_index();
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        for item in data.drain(..) {
                            match item {
                                Item::Result(r) if r.stage == cfg.from_stage => {
                                    state.add(&r, f);
                                    session.give(Item::Result(r));
                                }
                                Item::Revoked(p) => {
                                    state.keys.retain(|_, kc| kc.part != p);
                                    state.expiry.remove(&p);
                                    session.give(Item::Revoked(p));
                                }
                                Item::Watermark(p, wm) => {
                                    state.expire(p, wm, &mut expired);
                                    session.give_iterator(expired.drain(..).map(Item::Result));
                                    session.give(Item::Watermark(p, wm));
                                }
                                other => session.give(other),
                            }
                        }
                        drop(session);
                        if let Some(&t) = cap.least() {
                            if held.as_ref().is_none_or(|h| t < *h.time()) {
                                held = cap.retain_least(port);
                            }
                        }
                    });
                    if f != last_frontier || !state.refire.is_empty() {
                        last_frontier = f;
                        state.advance(f, &mut results);
                        if let Some(h) = held.as_mut() {
                            if !results.is_empty() {
                                let at = if f == i64::MAX {
                                    h.clone()
                                } else {
                                    h.delayed(&(f as Time).max(*h.time()))
                                };
                                output
                                    .session(&at)
                                    .give_iterator(results.drain(..).map(Item::Result));
                            }
                            if f != i64::MAX && (f as Time) > *h.time() {
                                h.downgrade(&(f as Time));
                            }
                        }
                        results.clear();
                    }
                    if state.keys.is_empty() || f == i64::MAX {
                        held = None;
                    }
                }
            },
        )
    }
}
