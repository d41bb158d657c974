//! Cascaded windows: a coarser tumbling window built from a finer stage's results
//! (5m from 1m, 1h from 5m) rather than from the raw events.
//!
//! It is the window operator over the finer results: the state of a coarse window is
//! the finer results by start, and a finer window corrected within its lateness
//! replaces its earlier result, so corrections flow up the cascade without counting
//! anything twice. A coarse window is final when the partition's watermark passes its
//! end plus lateness, which comes after its last finer window was final.

use timely::dataflow::Stream;

use super::window::{windowed, Aggregate, WindowConfig};
use super::Time;
use crate::event::{Event, Item};
use crate::key::WindowKey;
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

/// A coarse window's state: the latest result of each finer window, by start. A vector,
/// not a map: a coarse window has a handful of parts, and a B-tree leaf reserves room for
/// eleven (kilobytes per key).
struct Cascade<C>(C);

impl<C: Combine> Aggregate for Cascade<C> {
    type Value = C::Output;
    type State = Vec<(i64, C::Output)>;
    type Output = C::Output;

    fn new_state(&self) -> Self::State {
        Vec::new()
    }

    fn add(&self, parts: &mut Self::State, start: i64, value: &C::Output) {
        match parts.binary_search_by_key(&start, |p| p.0) {
            Ok(i) => parts[i].1 = value.clone(),
            Err(i) => parts.insert(i, (start, value.clone())),
        }
    }

    fn merge(&self, into: &mut Self::State, from: Self::State) {
        for (start, v) in from {
            self.add(into, start, &v);
        }
    }

    fn prefetch(&self, parts: &Self::State) {
        // A finer window's result usually follows the last part: `add` writes there.
        super::window::prefetch(parts.as_ptr().wrapping_add(parts.len()));
    }

    fn finish(&self, parts: &Self::State, window: Window) -> C::Output {
        let parts: Vec<&C::Output> = parts.iter().map(|p| &p.1).collect();
        self.0.combine(&parts, window)
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
    K: WindowKey,
    V: Clone + 'static,
    O: Clone + 'static,
{
    fn rewindow<C>(self, cfg: RewindowConfig, combine: C) -> Stream<'s, Time, Vec<Item<K, V, O>>>
    where
        C: Combine<Output = O>,
    {
        let name = format!("Rewindow[{}<-{}]", cfg.stage, cfg.from_stage);
        let from = cfg.from_stage;
        windowed(
            self,
            WindowConfig {
                spec: WindowSpec::tumbling(cfg.size_ms),
                allowed_lateness_ms: cfg.allowed_lateness_ms,
                stage: cfg.stage,
            },
            Cascade(combine),
            &name,
            move |item| match item {
                Item::Result(r) if r.stage == from => Some(&r.key),
                _ => None,
            },
            move |item| match item {
                Item::Result(r) if r.stage == from => {
                    // Finer results are never late themselves: their partition watermark
                    // closes the coarse window only after them.
                    let e = Event {
                        key: r.key.clone(),
                        part: r.part,
                        ts: r.window.start,
                        value: r.output.clone(),
                        part_watermark: None,
                    };
                    (Some(e), Some(Item::Result(r)))
                }
                other => (None, Some(other)),
            },
            |_| None,
        )
    }
}
