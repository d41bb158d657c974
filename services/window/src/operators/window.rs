//! Keyed event-time windows with allowed lateness.
//!
//! A window fires when the frontier (the watermark) passes its end, and fires again,
//! corrected, for each later record that arrives within the allowed lateness; its state
//! is dropped once the frontier passes end plus lateness. Whether a record is too late
//! is judged against its own partition's watermark (carried on the event), so the
//! decision depends on the log alone and a replay decides the same way.
use std::collections::BTreeMap;
use std::hash::Hash;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

use super::{frontier_ms, KeyMap, Time};
use crate::event::{Event, Item, WindowResult};
use crate::spec::{Window, WindowSpec};

/// What a window computes from the values that fall into it.
pub trait Aggregate: 'static {
    type Value: Clone + 'static;
    type State: 'static;
    type Output: Clone + 'static;

    fn new_state(&self) -> Self::State;
    fn add(&self, state: &mut Self::State, ts: i64, value: &Self::Value);
    /// Joins two states of one key (session windows that an event bridged).
    fn merge(&self, into: &mut Self::State, from: Self::State);
    fn finish(&self, state: &Self::State, window: Window) -> Self::Output;
}

/// One windowing stage.
#[derive(Debug, Clone, Copy)]
pub struct WindowConfig {
    pub spec: WindowSpec,
    pub allowed_lateness_ms: i64,
    /// Tags this stage's results (a pipeline may window the same stream several times).
    pub stage: u8,
}

struct Open<S> {
    window: Window,
    state: S,
    dirty: bool,
    revision: u32,
}

struct KeyWindows<S> {
    part: u32,
    open: Vec<Open<S>>,
}

/// Keyed windows and the indexes that find what is due without scanning every key.
struct Windows<K, A: Aggregate> {
    cfg: WindowConfig,
    agg: A,
    keys: KeyMap<K, KeyWindows<A::State>>,
    /// Keys with a window ending at this time (may be stale; checked when popped).
    due: BTreeMap<i64, Vec<K>>,
    /// Per partition, keys with a window whose lateness ends at this time.
    expiry: KeyMap<u32, BTreeMap<i64, Vec<K>>>,
    /// Keys updated after their window fired: emit the correction.
    refire: Vec<K>,
}

impl<K: Clone + Hash + Eq + 'static, A: Aggregate> Windows<K, A> {
    /// Adds an event; `false` if it is too late for every window it belongs to.
    fn add(&mut self, e: &Event<K, A::Value>, frontier: i64) -> bool {
        let lateness = self.cfg.allowed_lateness_ms;
        let mut accepted = false;
        if let WindowSpec::Session { gap_ms } = self.cfg.spec {
            return self.add_session(e, gap_ms, frontier);
        }
        let Self {
            cfg,
            agg,
            keys,
            due,
            expiry,
            refire,
        } = self;
        cfg.spec.assign(e.ts, |w| {
            let closes = w.end.saturating_add(lateness);
            let too_late = e.part_watermark.is_some_and(|pw| pw >= closes);
            if too_late {
                return;
            }
            accepted = true;
            // Look up before inserting: `entry` needs an owned key, and cloning it per
            // sample (a reference count up and down) was a measurable share of the
            // per-sample cost.
            if !keys.contains_key(&e.key) {
                keys.insert(
                    e.key.clone(),
                    KeyWindows {
                        part: e.part,
                        open: Vec::with_capacity(2),
                    },
                );
            }
            let Some(kw) = keys.get_mut(&e.key) else {
                return;
            };
            let open = match kw.open.iter_mut().position(|o| o.window == w) {
                Some(i) => &mut kw.open[i],
                None => {
                    due.entry(w.end).or_default().push(e.key.clone());
                    expiry
                        .entry(e.part)
                        .or_default()
                        .entry(closes)
                        .or_default()
                        .push(e.key.clone());
                    kw.open.push(Open {
                        window: w,
                        state: agg.new_state(),
                        dirty: false,
                        revision: 0,
                    });
                    kw.open.last_mut().expect("just pushed")
                }
            };
            agg.add(&mut open.state, e.ts, &e.value);
            if !open.dirty && w.end <= frontier {
                refire.push(e.key.clone());
            }
            open.dirty = true;
        });
        accepted
    }

    fn add_session(&mut self, e: &Event<K, A::Value>, gap: i64, frontier: i64) -> bool {
        let lateness = self.cfg.allowed_lateness_ms;
        let proto = Window::new(e.ts, e.ts + gap);
        let touches = |o: &Window| o.start <= proto.end && proto.start <= o.end;
        // Open sessions of a key never touch each other, so the sessions the event's own
        // touches are all it merges.
        let mut w = proto;
        if let Some(kw) = self.keys.get(&e.key) {
            for o in kw.open.iter().filter(|o| touches(&o.window)) {
                w = Window::new(w.start.min(o.window.start), w.end.max(o.window.end));
            }
        }
        let closes = w.end.saturating_add(lateness);
        if e.part_watermark.is_some_and(|pw| pw >= closes) {
            return false;
        }
        let kw = self
            .keys
            .entry(e.key.clone())
            .or_insert_with(|| KeyWindows {
                part: e.part,
                open: Vec::new(),
            });
        let mut state = self.agg.new_state();
        let mut revision = 0;
        let mut i = 0;
        while i < kw.open.len() {
            if touches(&kw.open[i].window) {
                let o = kw.open.swap_remove(i);
                revision = revision.max(o.revision);
                self.agg.merge(&mut state, o.state);
            } else {
                i += 1;
            }
        }
        self.agg.add(&mut state, e.ts, &e.value);
        self.due.entry(w.end).or_default().push(e.key.clone());
        self.expiry
            .entry(e.part)
            .or_default()
            .entry(closes)
            .or_default()
            .push(e.key.clone());
        if w.end <= frontier {
            self.refire.push(e.key.clone());
        }
        kw.open.push(Open {
            window: w,
            state,
            dirty: true,
            revision,
        });
        true
    }

    fn emit_key(&mut self, key: &K, frontier: i64, out: &mut Vec<WindowResult<K, A::Output>>) {
        let Some(kw) = self.keys.get_mut(key) else {
            return;
        };
        for o in kw.open.iter_mut() {
            if o.dirty && o.window.end <= frontier {
                out.push(WindowResult {
                    key: key.clone(),
                    part: kw.part,
                    window: o.window,
                    output: self.agg.finish(&o.state, o.window),
                    revision: o.revision,
                    stage: self.cfg.stage,
                });
                o.dirty = false;
                o.revision += 1;
            }
        }
    }

    /// Emits what the frontier made due and drops what it made final.
    fn advance(&mut self, frontier: i64, out: &mut Vec<WindowResult<K, A::Output>>) {
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

    /// Emits what changed in the windows of `part` that its watermark made final, then
    /// drops them.
    fn expire(&mut self, part: u32, watermark: i64, out: &mut Vec<WindowResult<K, A::Output>>) {
        let lateness = self.cfg.allowed_lateness_ms;
        let Some(expiry) = self.expiry.get_mut(&part) else {
            return;
        };
        while let Some(entry) = expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for key in entry.remove() {
                let Some(kw) = self.keys.get_mut(&key) else {
                    continue;
                };
                for o in kw.open.iter_mut() {
                    if o.dirty && o.window.end.saturating_add(lateness) <= watermark {
                        out.push(WindowResult {
                            key: key.clone(),
                            part: kw.part,
                            window: o.window,
                            output: self.agg.finish(&o.state, o.window),
                            revision: o.revision,
                            stage: self.cfg.stage,
                        });
                        o.dirty = false;
                        o.revision += 1;
                    }
                }
                kw.open
                    .retain(|o| o.window.end.saturating_add(lateness) > watermark);
                if kw.open.is_empty() {
                    self.keys.remove(&key);
                }
            }
        }
    }

    fn revoke(&mut self, part: u32) {
        self.keys.retain(|_, kw| kw.part != part);
        self.expiry.remove(&part);
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

pub trait WindowExt<'s, K, V, O> {
    /// Windows the stream's events by key. Events are consumed; results, late events and
    /// partition notices flow on.
    fn window<A>(self, cfg: WindowConfig, agg: A) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        A: Aggregate<Value = V, Output = O>;
}

impl<'s, K, V, O> WindowExt<'s, K, V, O> for Stream<'s, Time, Vec<Item<K, V, O>>>
where
    K: Clone + Hash + Eq + 'static,
    V: Clone + 'static,
    O: Clone + 'static,
{
    fn window<A>(self, cfg: WindowConfig, agg: A) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        A: Aggregate<Value = V, Output = O>,
    {
        let name = format!("Window[{}]", cfg.stage);
        self.unary_frontier::<CapacityContainerBuilder<Vec<Item<K, V, O>>>, _, _, _>(
            Pipeline,
            &name,
            move |_cap, _info| {
                let mut windows = Windows {
                    cfg,
                    agg,
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
                                Item::Event(e) => {
                                    if !windows.add(&e, f) {
                                        session.give(Item::Late(e));
                                    }
                                }
                                Item::Revoked(p) => {
                                    windows.revoke(p);
                                    session.give(Item::Revoked(p));
                                }
                                Item::Watermark(p, wm) => {
                                    // Final results before the watermark that made them
                                    // final, so later stages see them before it.
                                    windows.expire(p, wm, &mut expired);
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
                    if f != last_frontier || !windows.refire.is_empty() {
                        last_frontier = f;
                        windows.advance(f, &mut results);
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
                    if windows.is_empty() || f == i64::MAX {
                        held = None;
                    }
                }
            },
        )
    }
}
