//! The window operators in a real timely dataflow over the in-memory log: tumbling,
//! hopping and session windows, corrections within the allowed lateness, late events
//! beyond it, and the frontier following the watermark.
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_window::memory::MemoryLog;
use weir_window::{
    log_source, Aggregate, HashedKey, Item, PeerWatermarks, SinkExt, SourceConfig, SourceHandles,
    Window, WindowConfig, WindowExt, WindowSpec,
};

/// Counts values and keeps their sum.
struct CountSum;

impl Aggregate for CountSum {
    type Value = f64;
    type State = (u64, f64);
    type Output = (u64, f64);

    fn new_state(&self) -> Self::State {
        (0, 0.0)
    }
    fn add(&self, s: &mut Self::State, _ts: i64, v: &f64) {
        s.0 += 1;
        s.1 += v;
    }
    fn merge(&self, into: &mut Self::State, from: Self::State) {
        into.0 += from.0;
        into.1 += from.1;
    }
    fn finish(&self, s: &Self::State, _w: Window) -> Self::Output {
        *s
    }
}

type Rec = Vec<(HashedKey, i64, f64)>;

/// (key, window start, window end).
type ResultKey = (String, i64, i64);

#[derive(Debug, Default)]
struct Seen {
    /// Every emission per key and window: (revision, count, sum).
    results: BTreeMap<ResultKey, Vec<(u32, u64, f64)>>,
    late: Vec<(String, i64)>,
}

/// Runs one worker over `parts` with `spec`, out-of-orderness 0, the given lateness.
fn run(parts: Vec<(u32, Vec<Rec>)>, spec: WindowSpec, lateness_ms: i64) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    timely::execute_directly(move |worker| {
        let log = MemoryLog::new(parts, 1);
        let handles = SourceHandles::new(PeerWatermarks::new(1));
        let cfg = SourceConfig {
            out_of_orderness: Duration::ZERO,
            idle_timeout: Duration::from_secs(60),
            max_future: Duration::from_secs(600),
            release_at: Rc::new(move |ts| ts + 3_600_000),
        };
        worker.dataflow::<weir_window::Time, _, _>(|scope| {
            log_source::<HashedKey, f64, (u64, f64), _>(scope, "Source", log, cfg, handles)
                .window(
                    WindowConfig {
                        spec,
                        allowed_lateness_ms: lateness_ms,
                        stage: 0,
                    },
                    CountSum,
                )
                .sink_frontier("Collect", move |items, _f| {
                    let mut s = out.lock().unwrap();
                    for i in items {
                        match i {
                            Item::Result(r) => s
                                .results
                                .entry((r.key.to_string(), r.window.start, r.window.end))
                                .or_default()
                                .push((r.revision, r.output.0, r.output.1)),
                            Item::Late(e) => s.late.push((e.key.to_string(), e.ts)),
                            _ => {}
                        }
                    }
                });
        });
    });
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

fn rec(key: &str, samples: &[(i64, f64)]) -> Rec {
    let k = HashedKey::from(key);
    samples.iter().map(|(t, v)| (k.clone(), *t, *v)).collect()
}

fn last(seen: &Seen, key: &str, start: i64, end: i64) -> (u64, f64) {
    let v = &seen.results[&(key.to_string(), start, end)];
    let l = v.last().unwrap();
    (l.1, l.2)
}

#[test]
fn tumbling_windows_fire_with_the_watermark_and_correct_within_lateness() {
    // One partition: 10 s windows; a sample for [0, 10) arrives after the watermark
    // passed 10 s (corrected), another after it passed 10 s + lateness (late).
    let p0 = vec![
        rec("a", &[(1_000, 1.0), (2_000, 2.0)]),
        rec("a", &[(12_000, 5.0)]), // watermark 12 s: [0, 10) fires
        rec("b", &[(13_000, 1.0)]), // (progress reaches the window a step later)
        rec("b", &[(14_000, 1.0)]),
        rec("a", &[(3_000, 4.0)]), // within lateness (closes at 15 s): corrected
        rec("a", &[(26_000, 1.0)]), // watermark 26 s: [10, 20) fires, [0, 10) final
        rec("a", &[(4_000, 8.0)]), // beyond: late
    ];
    let seen = run(vec![(0, p0)], WindowSpec::tumbling(10_000), 5_000);
    let first = &seen.results[&("a".to_string(), 0, 10_000)];
    assert_eq!(first[0], (0, 2, 3.0), "fired at the watermark");
    assert_eq!(
        *first.last().unwrap(),
        (1, 3, 7.0),
        "corrected, next revision"
    );
    assert_eq!(last(&seen, "a", 10_000, 20_000), (1, 5.0));
    assert_eq!(seen.late, vec![("a".to_string(), 4_000)]);
}

#[test]
fn hopping_windows_count_an_event_in_every_window_it_falls_in() {
    let p0 = vec![rec("h", &[(5_000, 1.0), (15_000, 1.0), (25_000, 1.0)])];
    let seen = run(vec![(0, p0)], WindowSpec::hopping(20_000, 10_000), 0);
    assert_eq!(last(&seen, "h", -10_000, 10_000), (1, 1.0));
    assert_eq!(last(&seen, "h", 0, 20_000), (2, 2.0));
    assert_eq!(last(&seen, "h", 10_000, 30_000), (2, 2.0));
    assert_eq!(last(&seen, "h", 20_000, 40_000), (1, 1.0));
}

#[test]
fn session_windows_merge_events_closer_than_the_gap() {
    // Gap 5 s: 1, 3, 6 s form one session [1, 11); 20 s starts another.
    let p0 = vec![
        rec("s", &[(1_000, 1.0), (6_000, 1.0)]),
        rec("s", &[(3_000, 1.0)]),
        rec("s", &[(20_000, 1.0)]),
        rec("s", &[(40_000, 1.0)]),
    ];
    let seen = run(vec![(0, p0)], WindowSpec::session(5_000), 0);
    assert_eq!(last(&seen, "s", 1_000, 11_000), (3, 3.0));
    assert_eq!(last(&seen, "s", 20_000, 25_000), (1, 1.0));
}

#[test]
fn keys_and_partitions_are_windowed_apart() {
    let p0 = vec![
        rec("x", &[(1_000, 1.0)]),
        rec("y", &[(2_000, 10.0)]),
        rec("x", &[(30_000, 1.0)]),
    ];
    let p1 = vec![rec("z", &[(3_000, 100.0)]), rec("z", &[(30_000, 1.0)])];
    let seen = run(vec![(0, p0), (1, p1)], WindowSpec::tumbling(10_000), 0);
    assert_eq!(last(&seen, "x", 0, 10_000), (1, 1.0));
    assert_eq!(last(&seen, "y", 0, 10_000), (1, 10.0));
    assert_eq!(last(&seen, "z", 0, 10_000), (1, 100.0));
}
