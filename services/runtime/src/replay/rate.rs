//! `--max-rate`: a token bucket of samples per second, with a second of burst.
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimit {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(per_sec: u64) -> Self {
        Self {
            per_sec: per_sec.max(1) as f64,
            tokens: per_sec.max(1) as f64,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.per_sec);
    }

    /// Counts `n` samples read. A record is never split, so the bucket may go below zero;
    /// reading waits until it is back above.
    pub fn take(&mut self, n: usize) {
        self.refill(Instant::now());
        self.tokens -= n as f64;
    }

    /// On a reading thread: if over the rate, waits a little (up to 100 ms) and returns
    /// `true` — read nothing this time. Pacing, not a wait for an outcome.
    pub fn pace_blocking(&mut self) -> bool {
        let w = self.wait();
        if w.is_zero() {
            return false;
        }
        std::thread::park_timeout(w.min(Duration::from_millis(100)));
        true
    }

    /// How long to wait before reading more (zero when allowed now).
    pub fn wait(&mut self) -> Duration {
        self.refill(Instant::now());
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_past_the_budget_makes_the_next_wait() {
        let mut r = RateLimit::new(1000);
        assert_eq!(r.wait(), Duration::ZERO);
        r.take(1500);
        let w = r.wait();
        assert!(
            w > Duration::from_millis(400) && w <= Duration::from_millis(500),
            "{w:?}"
        );
    }
}
