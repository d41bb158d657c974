//! The end of a pipeline: hands everything whose time the frontier passed to a callback,
//! in time order, together with that frontier, so the callback can acknowledge up to it
//! once what it wrote is durable.
use std::collections::BTreeMap;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

use super::{frontier_ms, Time};

pub trait SinkExt<D> {
    /// Calls `flush(items, frontier)` with the items stamped before `frontier` each time
    /// the frontier advances (`i64::MAX` once the input is done). Items stay buffered
    /// until then: a time's items are complete only when the frontier passed it.
    fn sink_frontier<F>(self, name: &str, flush: F)
    where
        F: FnMut(Vec<D>, i64) + 'static;
}

impl<'s, D: Clone + 'static> SinkExt<D> for Stream<'s, Time, Vec<D>> {
    fn sink_frontier<F>(self, name: &str, mut flush: F)
    where
        F: FnMut(Vec<D>, i64) + 'static,
    {
        let mut pending: BTreeMap<Time, Vec<D>> = BTreeMap::new();
        let mut last = i64::MIN;
        self.sink(Pipeline, name, move |(input, frontier)| {
            input.for_each(|cap, data| {
                pending
                    .entry(cap.least().copied().unwrap_or(0))
                    .or_default()
                    .append(data);
            });
            let f = frontier_ms(frontier);
            if f == last {
                return;
            }
            last = f;
            let mut ready = Vec::new();
            while let Some(entry) = pending.first_entry() {
                if f != i64::MAX && *entry.key() >= f as Time {
                    break;
                }
                ready.append(&mut entry.remove());
            }
            flush(ready, f);
        });
    }
}
