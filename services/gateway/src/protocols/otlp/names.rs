//! OTLP names to Prometheus names, as Prometheus' OTLP receiver builds them (its
//! `otlptranslator`, after the OpenTelemetry "Prometheus and OpenMetrics compatibility"
//! specification). Written here rather than taken from a crate: none on crates.io
//! implements these rules, and they are a few string functions.
//!
//! - metric names: split into words at every character outside `[a-zA-Z0-9:]` (so runs
//!   of `_`, `.`, `-` become one `_`); the unit's word appended unless the name has it
//!   already (`ms` → `milliseconds`, `By/s` → `bytes_per_second`, `{request}` → nothing);
//!   `_total` for monotonic sums (moved to the end if the name has it), `_ratio` for
//!   gauges of unit `1`; `_` in front of a leading digit;
//! - label names: every character outside `[a-zA-Z0-9_]` becomes `_`; `key_` in front of
//!   a leading digit, `key` in front of a single leading `_`.

/// How names are translated (Prometheus' `otlp.translation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `UnderscoreEscapingWithSuffixes`, Prometheus' default: unit and type suffixes.
    WithSuffixes,
    /// `UnderscoreEscapingWithoutSuffixes`: characters escaped, no suffix added.
    WithoutSuffixes,
}

/// What a metric is, as far as its name goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// A monotonic cumulative sum.
    Counter,
    Histogram,
    Summary,
}

fn metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The Prometheus name of an OTLP metric (without `_bucket`/`_sum`/`_count`).
pub fn metric_name(name: &str, unit: &str, kind: Kind, strategy: Strategy) -> String {
    let mut out = match strategy {
        Strategy::WithoutSuffixes => name
            .split(|c: char| !metric_char(c) && c != '_')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("_"),
        Strategy::WithSuffixes => {
            let mut words: Vec<String> = name
                .split(|c: char| !metric_char(c))
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let (main, per) = unit_words(unit);
            if let Some(main) = main.filter(|m| !words.iter().any(|w| w == m)) {
                words.push(main);
            }
            if let Some(per) = per {
                let per = format!("per_{per}");
                if !words.join("_").ends_with(&per) {
                    words.push(per);
                }
            }
            if kind == Kind::Counter {
                words.retain(|w| w != "total");
                words.push("total".into());
            }
            if unit == "1" && kind == Kind::Gauge {
                words.retain(|w| w != "ratio");
                words.push("ratio".into());
            }
            words.join("_")
        }
    };
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The words a unit adds: its main unit and its "per" unit (`By/s` → `bytes`, `second`).
/// Annotations (`{request}`) and the dimensionless `1` add none.
fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    let mut parts = unit.splitn(2, '/');
    let main = parts
        .next()
        .map(str::trim)
        .filter(|u| !u.is_empty() && !u.contains(['{', '}']))
        .map(|u| main_unit(u).map_or_else(|| clean_unit(u), str::to_string))
        .filter(|u| !u.is_empty());
    let per = parts
        .next()
        .map(str::trim)
        .filter(|u| !u.is_empty() && !u.contains(['{', '}']))
        .map(|u| per_unit(u).map_or_else(|| clean_unit(u), str::to_string))
        .filter(|u| !u.is_empty());
    (main, per)
}

/// A unit without a word of its own, made name-safe.
fn clean_unit(u: &str) -> String {
    u.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

fn main_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The Prometheus name of an attribute key; `None` for an empty key.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, unit: &str, kind: Kind) -> String {
        metric_name(name, unit, kind, Strategy::WithSuffixes)
    }

    #[test]
    fn metric_names_follow_prometheus_otlp_translation() {
        // Cases from the compatibility specification and Prometheus' translator tests.
        assert_eq!(
            with("http.server.duration", "ms", Kind::Histogram),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            with("system.io", "By", Kind::Counter),
            "system_io_bytes_total"
        );
        assert_eq!(
            with("network.transmit", "By/s", Kind::Gauge),
            "network_transmit_bytes_per_second"
        );
        assert_eq!(
            with("requests", "{request}", Kind::Counter),
            "requests_total"
        );
        assert_eq!(with("requests_total", "1", Kind::Counter), "requests_total");
        assert_eq!(with("total_requests", "", Kind::Counter), "requests_total");
        assert_eq!(
            with("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            with("queue..depth__now", "", Kind::Gauge),
            "queue_depth_now"
        );
        assert_eq!(
            with("latency_seconds", "s", Kind::Histogram),
            "latency_seconds"
        );
        assert_eq!(
            with("2xx.responses", "", Kind::Counter),
            "_2xx_responses_total"
        );
        assert_eq!(with("temp", "Cel", Kind::Gauge), "temp_celsius");
        assert_eq!(with("weird", "foo/bar", Kind::Gauge), "weird_foo_per_bar");
        assert_eq!(
            metric_name(
                "http.server.duration",
                "ms",
                Kind::Histogram,
                Strategy::WithoutSuffixes
            ),
            "http_server_duration"
        );
        assert_eq!(
            metric_name("requests", "1", Kind::Counter, Strategy::WithoutSuffixes),
            "requests"
        );
    }

    #[test]
    fn label_names_follow_prometheus_otlp_translation() {
        assert_eq!(label_name("http.method").as_deref(), Some("http_method"));
        assert_eq!(label_name("2xx").as_deref(), Some("key_2xx"));
        assert_eq!(label_name("_private").as_deref(), Some("key_private"));
        assert_eq!(label_name("__reserved").as_deref(), Some("__reserved"));
        assert_eq!(label_name("k8s.pod.name").as_deref(), Some("k8s_pod_name"));
        assert_eq!(label_name(""), None);
    }
}
