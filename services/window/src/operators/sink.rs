//! The end of a pipeline: hands what arrives to a callback, in arrival order, with the
//! frontier at that moment.
//!
//! Not only once the frontier passed an item's time: a stream whose input stops (the
//! end of a replay, a fleet gone quiet) holds its frontier where it is, and results
//! emitted at that time would otherwise wait for data that may never come. Arrival order
//! is what the operators upstream rely on: each emits a partition's final results before
//! the watermark that made them final.
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::Stream;

use super::{frontier_ms, Time};

pub trait SinkExt<D> {
    /// Calls `flush(items, frontier)` with everything that arrived since the last call,
    /// whenever something arrived or the frontier moved (`i64::MAX` once the input is
    /// done): everything stamped before `frontier` has then been handed over.
    fn sink_frontier<F>(self, name: &str, flush: F)
    where
        F: FnMut(Vec<D>, i64) + 'static;
}

impl<'s, D: Clone + 'static> SinkExt<D> for Stream<'s, Time, Vec<D>> {
    fn sink_frontier<F>(self, name: &str, mut flush: F)
    where
        F: FnMut(Vec<D>, i64) + 'static,
    {
        let mut last = i64::MIN;
        self.sink(Pipeline, name, move |(input, frontier)| {
            let mut ready = Vec::new();
            input.for_each(|_cap, data| ready.append(data));
            let f = frontier_ms(frontier);
            if ready.is_empty() && f == last {
                return;
            }
            last = f;
            flush(ready, f);
        });
    }
}
