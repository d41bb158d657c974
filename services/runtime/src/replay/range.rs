//! Event-time ranges as a replay's arguments give them.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, `from` inclusive and `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl EventRange {
    pub fn new(from_ms: i64, to_ms: i64) -> Result<Self, String> {
        if to_ms <= from_ms {
            return Err(format!(
                "the range is empty: --to ({}) is not after --from ({})",
                show(to_ms),
                show(from_ms)
            ));
        }
        Ok(Self { from_ms, to_ms })
    }

    pub fn contains(&self, ts: i64) -> bool {
        ts >= self.from_ms && ts < self.to_ms
    }

    /// Whether `[start, end)` lies wholly inside the range.
    pub fn covers(&self, start: i64, end: i64) -> bool {
        start >= self.from_ms && end <= self.to_ms
    }
}

/// `2026-11-30T10:00:00Z` (RFC 3339), `now`, or relative to now: `-6h`, `-90m`, `-1d2h`.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("{s:?}: not a relative time like -6h ({e})"))?;
        return Ok(now_ms.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64));
    }
    let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
        format!(
            "{s:?}: not an RFC 3339 time like 2026-11-30T10:00:00Z, nor relative like -6h ({e})"
        )
    })?;
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("{s:?}: before 1970"))?
        .as_millis();
    Ok(ms.min(i64::MAX as u128) as i64)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// A time for messages: RFC 3339 in UTC, to the second.
pub fn show(ms: i64) -> String {
    if ms < 0 {
        return format!("{ms} ms");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_times() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("-6h", now), Ok(now - 6 * 3_600_000));
        assert_eq!(parse_time("-1h30m", now), Ok(now - 90 * 60_000));
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(
            parse_time("2026-11-30T10:00:00Z", now),
            Ok(1_796_032_800_000)
        );
        assert!(parse_time("yesterday", now)
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(EventRange::new(5, 5).unwrap_err().contains("empty"));
        let r = EventRange::new(60_000, 180_000).unwrap();
        assert!(r.covers(60_000, 120_000) && !r.covers(0, 60_001) && r.contains(179_999));
    }
}
