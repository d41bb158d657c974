//! The text exposition formats a scrape reads: Prometheus text 0.0.4 and OpenMetrics
//! 1.0, told apart by the response's `Content-Type` as Prometheus does.
//!
//! Written here rather than taken from a crate: the crates found (`prometheus-parse`,
//! `openmetrics-parser`) build an owned map of every family per exposition, a string per
//! label, where a scrape of a thousand targets a second wants to borrow from the body and
//! allocate nothing per sample; and neither checks OpenMetrics' `# EOF`.
use std::borrow::Cow;
use std::collections::HashMap;

use weir_contract::MetricType;

/// Which grammar a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything not OpenMetrics, as Prometheus reads it).
    Text,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// The format of a response with this `Content-Type`.
    pub fn of_content_type(ct: Option<&str>) -> Self {
        match ct {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => {
                Self::OpenMetrics
            }
            _ => Self::Text,
        }
    }
}

/// What Prometheus 2.42 asks a target for: OpenMetrics first, text 0.0.4 after.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A line that does not parse: the whole scrape fails, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// One sample line, borrowed from the body where no escape had to be undone.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    /// Milliseconds, as written (OpenMetrics' seconds converted).
    pub timestamp: Option<i64>,
    pub metric_type: MetricType,
    pub unit: Option<&'a str>,
}

/// Reads sample lines one at a time, remembering `# TYPE` and `# UNIT` of the families.
pub struct Parser<'a> {
    rest: &'a str,
    format: Format,
    line: usize,
    families: HashMap<&'a str, (MetricType, Option<&'a str>)>,
    eof: bool,
}

/// Suffixes of a family's samples (`foo_bucket` is of family `foo`).
const SUFFIXES: [&str; 8] = [
    "_total", "_bucket", "_count", "_sum", "_created", "_info", "_gcount", "_gsum",
];

impl<'a> Parser<'a> {
    pub fn new(body: &'a str, format: Format) -> Self {
        Self {
            rest: body,
            format,
            line: 0,
            families: HashMap::new(),
            eof: false,
        }
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            message: message.into(),
        }
    }

    /// Parses the next sample into `out`; `Ok(false)` at the end of the body.
    pub fn next_into(&mut self, out: &mut Line<'a>) -> Result<bool, ParseError> {
        loop {
            if self.rest.is_empty() {
                if self.format == Format::OpenMetrics && !self.eof {
                    return Err(self.err("data does not end with # EOF"));
                }
                return Ok(false);
            }
            let (line, rest) = match self.rest.find('\n') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            self.line += 1;
            if self.eof {
                return Err(self.err("content after # EOF"));
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                self.comment(line)?;
                continue;
            }
            let trimmed = line.trim_matches(|c| c == ' ' || c == '\t');
            if trimmed.is_empty() {
                if self.format == Format::OpenMetrics {
                    return Err(self.err("empty line"));
                }
                continue;
            }
            self.sample(trimmed, out)?;
            return Ok(true);
        }
    }

    fn comment(&mut self, line: &'a str) -> Result<(), ParseError> {
        let mut words = line[1..].trim_start().splitn(3, [' ', '\t']);
        let kind = words.next().unwrap_or("");
        match kind {
            "EOF" if self.format == Format::OpenMetrics => {
                self.eof = true;
                Ok(())
            }
            "TYPE" => {
                let (Some(name), Some(t)) = (words.next(), words.next()) else {
                    return Err(self.err("# TYPE needs a metric name and a type"));
                };
                let t = match t.trim() {
                    "counter" => MetricType::Counter,
                    "gauge" | "info" | "stateset" => MetricType::Gauge,
                    "histogram" | "gaugehistogram" => MetricType::Histogram,
                    "summary" => MetricType::Summary,
                    "untyped" | "unknown" => MetricType::Unknown,
                    other => return Err(self.err(format!("unknown metric type {other:?}"))),
                };
                self.families.entry(name).or_insert((t, None)).0 = t;
                Ok(())
            }
            "UNIT" if self.format == Format::OpenMetrics => {
                if let (Some(name), Some(unit)) = (words.next(), words.next()) {
                    let unit = unit.trim();
                    if !unit.is_empty() {
                        self.families.entry(name).or_default().1 = Some(unit);
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn family_of(&self, name: &str) -> (MetricType, Option<&'a str>) {
        if let Some(f) = self.families.get(name) {
            return *f;
        }
        for s in SUFFIXES {
            if let Some(base) = name.strip_suffix(s) {
                if let Some(f) = self.families.get(base) {
                    return *f;
                }
            }
        }
        (MetricType::Unknown, None)
    }

    fn sample(&self, line: &'a str, out: &mut Line<'a>) -> Result<(), ParseError> {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
            i += 1;
        }
        let name = &line[..i];
        if name.is_empty() || b[0].is_ascii_digit() {
            return Err(self.err(format!("invalid metric name in {:?}", cut(line))));
        }
        out.name = name;
        out.labels.clear();
        let mut rest = &line[i..];
        if let Some(r) = rest.strip_prefix('{') {
            rest = self.labels(r, &mut out.labels)?;
        }
        let (value, rest) = token(rest);
        if value.is_empty() {
            return Err(self.err(format!("no value after {name}")));
        }
        out.value = parse_value(value)
            .ok_or_else(|| self.err(format!("value {:?} is not a number", cut(value))))?;
        out.timestamp = None;
        let (mut after, tail) = token(rest);
        if self.format == Format::OpenMetrics && after == "#" {
            after = ""; // An exemplar, no timestamp.
        } else if !tail.is_empty() && (self.format == Format::Text || !tail.starts_with('#')) {
            return Err(self.err(format!("unexpected {:?} after the timestamp", cut(tail))));
        }
        if !after.is_empty() {
            out.timestamp = Some(match self.format {
                Format::Text => after.parse::<i64>().map_err(|_| {
                    self.err(format!("timestamp {:?} is not an integer", cut(after)))
                })?,
                Format::OpenMetrics => {
                    let s: f64 = after
                        .parse()
                        .ok()
                        .filter(|f: &f64| f.is_finite())
                        .ok_or_else(|| {
                            self.err(format!("timestamp {:?} is not a number", cut(after)))
                        })?;
                    (s * 1000.0) as i64
                }
            });
        }
        let (t, unit) = self.family_of(name);
        out.metric_type = t;
        out.unit = unit;
        Ok(())
    }

    /// Reads `name="value",...}`; returns what follows the `}`.
    fn labels(
        &self,
        mut s: &'a str,
        out: &mut Vec<(&'a str, Cow<'a, str>)>,
    ) -> Result<&'a str, ParseError> {
        loop {
            s = s.trim_start_matches([' ', '\t']);
            if let Some(r) = s.strip_prefix('}') {
                return Ok(r);
            }
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .ok_or_else(|| self.err("labels are not closed by }"))?;
            let label = &s[..end];
            if label.is_empty() || label.as_bytes()[0].is_ascii_digit() {
                return Err(self.err(format!("invalid label name at {:?}", cut(s))));
            }
            s = s[end..].trim_start_matches([' ', '\t']);
            s = s
                .strip_prefix('=')
                .ok_or_else(|| self.err(format!("label {label:?} needs =\"value\"")))?
                .trim_start_matches([' ', '\t']);
            s = s
                .strip_prefix('"')
                .ok_or_else(|| self.err(format!("label {label:?}: its value must be quoted")))?;
            let (value, r) = self.quoted(s)?;
            out.push((label, value));
            s = r.trim_start_matches([' ', '\t']);
            if let Some(r) = s.strip_prefix(',') {
                s = r;
            } else if !s.starts_with('}') {
                return Err(self.err(format!("expected , or }} after label {label:?}")));
            }
        }
    }

    /// A label value up to its closing quote, escapes undone (`\\`, `\"`, `\n`; any
    /// other escape is kept as written, as Prometheus' text parser keeps it).
    fn quoted(&self, s: &'a str) -> Result<(Cow<'a, str>, &'a str), ParseError> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut owned: Option<String> = None;
        let mut start = 0;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    let value = match owned {
                        Some(mut o) => {
                            o.push_str(&s[start..i]);
                            Cow::Owned(o)
                        }
                        None => Cow::Borrowed(&s[..i]),
                    };
                    return Ok((value, &s[i + 1..]));
                }
                b'\\' if i + 1 < b.len() => {
                    let o = owned.get_or_insert_with(String::new);
                    o.push_str(&s[start..i]);
                    match b[i + 1] {
                        b'n' => o.push('\n'),
                        b'\\' => o.push('\\'),
                        b'"' => o.push('"'),
                        _ => {
                            // Kept as written; the next character may be multi-byte.
                            o.push('\\');
                            start = i + 1;
                            i += 1;
                            continue;
                        }
                    }
                    i += 2;
                    start = i;
                }
                _ => i += 1,
            }
        }
        Err(self.err("a label value is not closed by a quote"))
    }
}

/// The first blank-separated word of `s` and what follows it, blanks skipped on both
/// sides (the formats allow runs of spaces and tabs).
fn token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A value as Go's `strconv.ParseFloat` reads the exposition's: decimal or exponent
/// notation, `NaN`, `+Inf`, `-Inf`, `Inf` in any case.
fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(body: &str, f: Format) -> Result<Vec<Line<'_>>, ParseError> {
        let mut p = Parser::new(body, f);
        let mut out = Vec::new();
        let mut l = Line::default();
        while p.next_into(&mut l)? {
            out.push(l.clone());
        }
        Ok(out)
    }

    #[test]
    fn text_format_with_types_escapes_and_timestamps() {
        let body = "# HELP http_requests_total The total.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"post\",code=\"200\",} 1027 1395066363000\nhttp_requests_total{method=\"a\\\"b\\\\c\\nd\"} 3\n\n# TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2\nlat_sum 1.5e3\nup NaN\nx -Inf\n";
        let l = all(body, Format::Text).unwrap();
        assert_eq!(l.len(), 6);
        assert_eq!(l[0].name, "http_requests_total");
        assert_eq!(
            l[0].labels,
            vec![("method", "post".into()), ("code", "200".into())]
        );
        assert_eq!(l[0].timestamp, Some(1_395_066_363_000));
        assert_eq!(l[0].metric_type, MetricType::Counter);
        assert_eq!(l[1].labels[0].1, "a\"b\\c\nd");
        assert_eq!(l[2].metric_type, MetricType::Histogram);
        assert_eq!(l[3].value, 1500.0);
        assert!(l[4].value.is_nan());
        assert_eq!(l[5].value, f64::NEG_INFINITY);
    }

    #[test]
    fn openmetrics_units_exemplars_seconds_and_eof() {
        let body = "# TYPE req counter\n# UNIT req seconds\nreq_total{a=\"b\"} 1 1700000000.5 # {trace_id=\"x\"} 1\nreq_created 1700000000\n# EOF\n";
        let l = all(body, Format::OpenMetrics).unwrap();
        assert_eq!(l[0].timestamp, Some(1_700_000_000_500));
        assert_eq!(l[0].unit, Some("seconds"));
        assert_eq!(l[0].metric_type, MetricType::Counter);
        assert_eq!(l[1].name, "req_created");
        let e = all("a 1\n", Format::OpenMetrics).unwrap_err();
        assert!(e.message.contains("# EOF"), "{e}");
        let e = all("# EOF\na 1\n", Format::OpenMetrics).unwrap_err();
        assert!(e.message.contains("after # EOF"), "{e}");
    }

    #[test]
    fn bad_lines_name_the_line() {
        for (body, want) in [
            ("a{b=\"c} 1\n", "not closed"),
            ("a{b=c} 1\n", "must be quoted"),
            ("a\n", "no value"),
            ("a x\n", "not a number"),
            ("a 1 1.5\n", "not an integer"),
            ("1a 1\n", "invalid metric name"),
            ("# TYPE a bogus\n", "unknown metric type"),
        ] {
            let e = all(body, Format::Text).unwrap_err();
            assert!(e.message.contains(want), "{body:?}: {e}");
            assert_eq!(e.line, 1);
        }
    }

    #[test]
    fn content_type_picks_the_parser() {
        assert_eq!(
            Format::of_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::of_content_type(Some("text/plain; version=0.0.4")),
            Format::Text
        );
        assert_eq!(Format::of_content_type(None), Format::Text);
    }
}
