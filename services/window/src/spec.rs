//! Window shapes over event time, in milliseconds.
use serde::Deserialize;

/// A half-open event-time interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    pub fn contains(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// How events are grouped into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size` aligned to the epoch.
    Tumbling { size_ms: i64 },
    /// Windows of `size` starting every `slide`, aligned to the epoch; an event belongs to
    /// `size / slide` of them (Prometheus' range selectors evaluated every step).
    Hopping { size_ms: i64, slide_ms: i64 },
    /// Per key, a window that lasts while events arrive less than `gap` apart.
    Session { gap_ms: i64 },
}

impl WindowSpec {
    pub fn tumbling(size_ms: i64) -> Self {
        WindowSpec::Tumbling { size_ms }
    }

    pub fn hopping(size_ms: i64, slide_ms: i64) -> Self {
        WindowSpec::Hopping { size_ms, slide_ms }
    }

    pub fn session(gap_ms: i64) -> Self {
        WindowSpec::Session { gap_ms }
    }

    /// Checks the shape makes sense, naming what does not.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            WindowSpec::Tumbling { size_ms } if size_ms <= 0 => Err(format!(
                "tumbling window size must be positive, got {size_ms} ms"
            )),
            WindowSpec::Hopping { size_ms, slide_ms } if size_ms <= 0 || slide_ms <= 0 => {
                Err(format!(
                    "hopping window size and slide must be positive, got {size_ms}/{slide_ms} ms"
                ))
            }
            WindowSpec::Hopping { size_ms, slide_ms } if size_ms % slide_ms != 0 => Err(format!(
                "hopping window size ({size_ms} ms) must be a multiple of its slide ({slide_ms} ms)"
            )),
            WindowSpec::Session { gap_ms } if gap_ms <= 0 => {
                Err(format!("session gap must be positive, got {gap_ms} ms"))
            }
            _ => Ok(()),
        }
    }

    /// The windows an event at `ts` belongs to, earliest first. For sessions this is the
    /// event's own proto-session `[ts, ts + gap)`, which the operator merges with the
    /// key's neighbouring sessions. Consumers cut event times outside the epoch and the
    /// future bound before they get here (`weir_runtime::input_checks`); the arithmetic
    /// saturates all the same, so no time can overflow it.
    pub fn assign(&self, ts: i64, mut each: impl FnMut(Window)) {
        match *self {
            WindowSpec::Tumbling { size_ms } => {
                let start = ts.div_euclid(size_ms).saturating_mul(size_ms);
                each(Window::new(start, start.saturating_add(size_ms)));
            }
            WindowSpec::Hopping { size_ms, slide_ms } => {
                let last = ts.div_euclid(slide_ms).saturating_mul(slide_ms);
                let mut start = last.saturating_sub(size_ms).saturating_add(slide_ms);
                while start <= last {
                    each(Window::new(start, start.saturating_add(size_ms)));
                    match start.checked_add(slide_ms) {
                        Some(s) => start = s,
                        None => break,
                    }
                }
            }
            WindowSpec::Session { gap_ms } => each(Window::new(ts, ts.saturating_add(gap_ms))),
        }
    }

    /// The latest end of any window `ts` can belong to (sessions: as far as this event
    /// alone reaches).
    pub fn last_end(&self, ts: i64) -> i64 {
        let mut end = i64::MIN;
        self.assign(ts, |w| end = end.max(w.end));
        end
    }

    pub fn is_session(&self) -> bool {
        matches!(self, WindowSpec::Session { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(spec: WindowSpec, ts: i64) -> Vec<Window> {
        let mut v = Vec::new();
        spec.assign(ts, |w| v.push(w));
        v
    }

    #[test]
    fn extreme_times_never_overflow() {
        for spec in [
            WindowSpec::tumbling(3_600_000),
            WindowSpec::Hopping {
                size_ms: 300_000,
                slide_ms: 60_000,
            },
            WindowSpec::Session { gap_ms: 60_000 },
        ] {
            for ts in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
                let w = all(spec, ts);
                assert!(w.iter().all(|w| w.start <= w.end));
                let _ = spec.last_end(ts);
            }
        }
    }

    #[test]
    fn tumbling_windows_are_aligned_and_half_open() {
        let s = WindowSpec::tumbling(60_000);
        assert_eq!(all(s, 0), vec![Window::new(0, 60_000)]);
        assert_eq!(all(s, 59_999), vec![Window::new(0, 60_000)]);
        assert_eq!(all(s, 60_000), vec![Window::new(60_000, 120_000)]);
        assert_eq!(all(s, -1), vec![Window::new(-60_000, 0)]);
    }

    #[test]
    fn hopping_windows_cover_an_event_size_over_slide_times() {
        let s = WindowSpec::hopping(60_000, 15_000);
        let w = all(s, 70_000);
        assert_eq!(w.len(), 4);
        assert!(w.iter().all(|w| w.contains(70_000)));
        assert_eq!(w[0], Window::new(15_000, 75_000));
        assert_eq!(w[3], Window::new(60_000, 120_000));
        assert_eq!(s.last_end(70_000), 120_000);
    }

    #[test]
    fn invalid_shapes_are_named() {
        assert!(WindowSpec::hopping(60_000, 7_000)
            .validate()
            .unwrap_err()
            .contains("multiple"));
        assert!(WindowSpec::tumbling(0).validate().is_err());
        assert!(WindowSpec::session(1).validate().is_ok());
    }
}
