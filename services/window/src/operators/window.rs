//! Keyed event-time windows with allowed lateness.
//!
//! A window fires when the frontier (the watermark) passes its end, and fires again,
//! corrected, for each later record that arrives within the allowed lateness. Whether a
//! record is too late, and when a window is final (its state dropped), is judged against
//! the record's own partition's watermark, so the decisions depend on the log alone and a
//! replay decides the same way (see the crate docs).
//!
//! [`WindowExt::window`] windows raw events; the cascade ([`super::rewindow`]) runs the
//! same operator over a finer stage's results.
use std::collections::BTreeMap;

use hashbrown::hash_map::RawEntryMut;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::Stream;

use super::{frontier_ms, KeyMap, Time};
use crate::event::{Event, Item, WindowResult};
use crate::key::WindowKey;
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
    /// Asks the CPU to fetch the memory `add` and `finish` will touch next; the window
    /// operator calls it for a batch of keys ahead of using them.
    fn prefetch(&self, _state: &Self::State) {}
}

/// Hints the CPU to bring `p`'s cache line in, without waiting for it.
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
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

/// Keys warmed at a time: enough for the CPU to overlap their misses, few enough that
/// what was fetched is still in cache when it is used.
const WARM_CHUNK: usize = 256;

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

impl<K: WindowKey, A: Aggregate> Windows<K, A> {
    fn new(cfg: WindowConfig, agg: A) -> Self {
        Self {
            cfg,
            agg,
            keys: KeyMap::default(),
            due: BTreeMap::new(),
            expiry: KeyMap::default(),
            refire: Vec::new(),
        }
    }

    /// The key's windows, created on first sight. Looked up by reference: cloning the
    /// key (a reference count up and down) per sample was a measurable share of the
    /// per-sample cost.
    fn key_windows<'a>(
        keys: &'a mut KeyMap<K, KeyWindows<A::State>>,
        key: &K,
        part: u32,
    ) -> &'a mut KeyWindows<A::State> {
        match keys.raw_entry_mut().from_key(key) {
            RawEntryMut::Occupied(o) => o.into_mut(),
            RawEntryMut::Vacant(v) => {
                v.insert(
                    key.clone(),
                    KeyWindows {
                        part,
                        open: Vec::with_capacity(2),
                    },
                )
                .1
            }
        }
    }

    /// Brings the state of a batch's keys into cache before they are used (events added,
    /// windows emitted or dropped). Each key's
    /// state is a chain of cache misses (table slot, open windows, aggregate state) over
    /// a working set far larger than the cache; resolved one event after another they
    /// are paid in series, while this short loop lets the CPU overlap the chains of many
    /// events.
    fn warm<'k>(&self, keys: impl Iterator<Item = &'k K>)
    where
        K: 'k,
    {
        for key in keys {
            key.prefetch();
            if let Some(kw) = self.keys.get(key) {
                for o in &kw.open {
                    self.agg.prefetch(&o.state);
                }
            }
        }
    }

    /// Runs `f` on each key, warming a chunk at a time; each key is dropped right after
    /// its use, while it is still in cache.
    fn each_warm(&mut self, keys: Vec<K>, mut f: impl FnMut(&mut Self, K)) {
        let mut keys = keys.into_iter();
        while !keys.as_slice().is_empty() {
            let n = keys.len().min(WARM_CHUNK);
            self.warm(keys.as_slice()[..n].iter());
            for key in keys.by_ref().take(n) {
                f(self, key);
            }
        }
    }

    /// Indexes a new window of `key`: due at its end, final at `closes`.
    fn schedule(
        due: &mut BTreeMap<i64, Vec<K>>,
        expiry: &mut KeyMap<u32, BTreeMap<i64, Vec<K>>>,
        key: &K,
        part: u32,
        end: i64,
        closes: i64,
    ) {
        due.entry(end).or_default().push(key.clone());
        expiry
            .entry(part)
            .or_default()
            .entry(closes)
            .or_default()
            .push(key.clone());
    }

    /// Adds an event; `false` if it is too late for every window it belongs to.
    fn add(&mut self, e: &Event<K, A::Value>, frontier: i64) -> bool {
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
        let lateness = cfg.allowed_lateness_ms;
        let mut accepted = false;
        cfg.spec.assign(e.ts, |w| {
            let closes = w.end.saturating_add(lateness);
            if e.part_watermark.is_some_and(|pw| pw >= closes) {
                return;
            }
            accepted = true;
            let kw = Self::key_windows(keys, &e.key, e.part);
            let open = match kw.open.iter().position(|o| o.window == w) {
                Some(i) => &mut kw.open[i],
                None => {
                    Self::schedule(due, expiry, &e.key, e.part, w.end, closes);
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
        let proto = Window::new(e.ts, e.ts.saturating_add(gap));
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
        let kw = Self::key_windows(&mut self.keys, &e.key, e.part);
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
        kw.open.push(Open {
            window: w,
            state,
            dirty: true,
            revision,
        });
        Self::schedule(
            &mut self.due,
            &mut self.expiry,
            &e.key,
            e.part,
            w.end,
            closes,
        );
        if w.end <= frontier {
            self.refire.push(e.key.clone());
        }
        true
    }

    /// Emits the key's changed windows that `ready` says may go out.
    fn emit_key(
        &mut self,
        key: &K,
        ready: impl Fn(&Window) -> bool,
        out: &mut Vec<WindowResult<K, A::Output>>,
    ) {
        let Some(kw) = self.keys.get_mut(key) else {
            return;
        };
        for o in kw.open.iter_mut() {
            if o.dirty && ready(&o.window) {
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

    /// Emits what the frontier made due, and corrections.
    fn advance(&mut self, frontier: i64, out: &mut Vec<WindowResult<K, A::Output>>) {
        let ready = |w: &Window| w.end <= frontier;
        let refire = std::mem::take(&mut self.refire);
        self.each_warm(refire, |w, key| w.emit_key(&key, ready, out));
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > frontier {
                break;
            }
            let keys = entry.remove();
            self.each_warm(keys, |w, key| w.emit_key(&key, ready, out));
        }
    }

    /// Emits what changed in the windows of `part` that its watermark made final, then
    /// drops them.
    fn expire(&mut self, part: u32, watermark: i64, out: &mut Vec<WindowResult<K, A::Output>>) {
        let lateness = self.cfg.allowed_lateness_ms;
        let is_final = |w: &Window| w.end.saturating_add(lateness) <= watermark;
        let Some(expiry) = self.expiry.get_mut(&part) else {
            return;
        };
        let mut keys = Vec::new();
        while let Some(entry) = expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            keys.extend(entry.remove());
        }
        self.each_warm(keys, |w, key| {
            w.emit_key(&key, is_final, out);
            if let Some(kw) = w.keys.get_mut(&key) {
                kw.open.retain(|o| !is_final(&o.window));
                if kw.open.is_empty() {
                    w.keys.remove(&key);
                }
            }
        });
    }

    fn revoke(&mut self, part: u32) {
        self.keys.retain(|_, kw| kw.part != part);
        self.expiry.remove(&part);
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What a stage takes from an input item: an event to window (if any) and the item to
/// pass on (if any).
pub(crate) type Intake<K, V, O, W> = (Option<Event<K, W>>, Option<Item<K, V, O>>);

/// The windowing operator both stages share. `take` picks the events a stage windows;
/// `late` says what to pass on for an event too late for every window; `peek` names the
/// key `take` would window an item under, so a batch's state is warmed before use.
/// Revocations drop a partition's state, partition watermarks make its windows final;
/// both flow on, each watermark after the final results it released so later stages see
/// those first.
pub(crate) fn windowed<'s, K, V, O, A, T, L, P>(
    stream: Stream<'s, Time, Vec<Item<K, V, O>>>,
    cfg: WindowConfig,
    agg: A,
    name: &str,
    peek: P,
    mut take: T,
    late: L,
) -> Stream<'s, Time, Vec<Item<K, V, O>>>
where
    K: WindowKey,
    V: Clone + 'static,
    O: Clone + 'static,
    A: Aggregate<Output = O>,
    T: FnMut(Item<K, V, O>) -> Intake<K, V, O, A::Value> + 'static,
    L: Fn(Event<K, A::Value>) -> Option<Item<K, V, O>> + 'static,
    P: Fn(&Item<K, V, O>) -> Option<&K> + 'static,
{
    stream.unary_frontier::<CapacityContainerBuilder<Vec<Item<K, V, O>>>, _, _, _>(
        Pipeline,
        name,
        move |_cap, _info| {
            let mut windows = Windows::new(cfg, agg);
            let mut held: Option<Capability<Time>> = None;
            let mut results = Vec::new();
            let mut expired = Vec::new();
            let mut last_frontier = i64::MIN;
            move |(input, frontier), output| {
                let f = frontier_ms(frontier);
                let port = output.output_index();
                input.for_each(|cap, data| {
                    let mut session = output.session(&cap);
                    let mut items = data.drain(..);
                    while !items.as_slice().is_empty() {
                        let next = &items.as_slice()[..items.len().min(WARM_CHUNK)];
                        windows.warm(next.iter().filter_map(&peek));
                        for item in items.by_ref().take(WARM_CHUNK) {
                            match item {
                                Item::Revoked(p) => {
                                    windows.revoke(p);
                                    session.give(Item::Revoked(p));
                                }
                                Item::Watermark(p, wm) => {
                                    windows.expire(p, wm, &mut expired);
                                    session.give_iterator(expired.drain(..).map(Item::Result));
                                    session.give(Item::Watermark(p, wm));
                                }
                                item => {
                                    let (event, pass) = take(item);
                                    if let Some(pass) = pass {
                                        session.give(pass);
                                    }
                                    if let Some(e) = event {
                                        if !windows.add(&e, f) {
                                            if let Some(l) = late(e) {
                                                session.give(l);
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    drop(items);
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

pub trait WindowExt<'s, K, V, O> {
    /// Windows the stream's events by key. Events are consumed; results, late events and
    /// partition notices flow on.
    fn window<A>(self, cfg: WindowConfig, agg: A) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        A: Aggregate<Value = V, Output = O>;
}

impl<'s, K, V, O> WindowExt<'s, K, V, O> for Stream<'s, Time, Vec<Item<K, V, O>>>
where
    K: WindowKey,
    V: Clone + 'static,
    O: Clone + 'static,
{
    fn window<A>(self, cfg: WindowConfig, agg: A) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        A: Aggregate<Value = V, Output = O>,
    {
        let name = format!("Window[{}]", cfg.stage);
        windowed(
            self,
            cfg,
            agg,
            &name,
            |item| match item {
                Item::Event(e) => Some(&e.key),
                _ => None,
            },
            |item| match item {
                Item::Event(e) => (Some(e), None),
                other => (None, Some(other)),
            },
            |e| Some(Item::Late(e)),
        )
    }
}
