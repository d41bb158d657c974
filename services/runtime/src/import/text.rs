//! Sample lines of the text exposition formats with timestamps:
//! `http_requests_total{code="200",method="get"} 1027 1700000000000` (Prometheus text,
//! milliseconds) or `... 1027 1700000000.000` (OpenMetrics, seconds). Comments, `# TYPE`,
//! `# HELP`, `# UNIT` and `# EOF` lines are skipped; every sample must carry a timestamp
//! (an import without one has no time to put it at).
//!
//! Written here rather than with a parser crate: the crates found (e.g.
//! `openmetrics-parser`) parse a whole exposition into one in-memory map of families,
//! while an import file holds days of samples and is read line by line.
use super::{Format, Parsed};

/// One sample line, its timestamp as written (for format detection).
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub parsed: Parsed,
    pub raw_timestamp: Option<&'a str>,
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| format!("value {s:?} is not a number")),
    }
}

/// Reads a label value in double quotes starting at `b[0] == '"'`; returns it and the
/// rest after the closing quote.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => return Err(format!("unknown escape \\{other} in a label value")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("a label value is not closed by a quote".into())
}

/// Parses one line: `Ok(None)` for blank lines and comments.
pub fn parse_line(line: &str, format: Format) -> Result<Option<Line<'_>>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample line needs a value after the metric name")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut pairs = vec![("__name__".to_string(), name.to_string())];
    if rest.starts_with('{') {
        rest = rest[1..].trim_start();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("a label needs =\"value\"")?;
            let label = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start();
            if !after.starts_with('"') {
                return Err(format!("label {label:?}: its value must be quoted"));
            }
            let (value, r) = quoted(after)?;
            pairs.push((label.to_string(), value));
            rest = r.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            } else if !rest.starts_with('}') {
                return Err("labels must be separated by commas and closed by }".into());
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?)?;
    let raw = fields.next();
    if fields.next().is_some() {
        return Err(
            "more than a value and a timestamp after the series (exemplars are not imported)"
                .into(),
        );
    }
    let raw_ts = raw.ok_or("no timestamp: every imported sample needs one")?;
    let ts = match format {
        Format::OpenMetrics => {
            let secs: f64 = raw_ts
                .parse()
                .map_err(|_| format!("timestamp {raw_ts:?} is not a number of seconds"))?;
            if !secs.is_finite() || secs.abs() > 9.0e15 {
                return Err(format!("timestamp {raw_ts:?} is out of range"));
            }
            (secs * 1000.0).round() as i64
        }
        _ => raw_ts
            .parse::<i64>()
            .map_err(|_| format!("timestamp {raw_ts:?} is not a whole number of milliseconds"))?,
    };
    let parsed = Parsed::from_labels(pairs, vec![(ts, value)])?;
    Ok(Some(Line {
        parsed,
        raw_timestamp: Some(raw_ts),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_lines_of_both_formats() {
        let l = parse_line(
            r#"http_requests_total{method="get",code="200"} 1027 1700000000000"#,
            Format::PrometheusText,
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.parsed.name, "http_requests_total");
        assert_eq!(l.parsed.labels[0], ("code".into(), "200".into()));
        assert_eq!(l.parsed.samples, vec![(1_700_000_000_000, 1027.0)]);
        let l = parse_line(
            r#"up{job="a\"b\\c"} +Inf 1700000000.5"#,
            Format::OpenMetrics,
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.parsed.labels[0].1, "a\"b\\c");
        assert_eq!(l.parsed.samples[0].0, 1_700_000_000_500);
        assert_eq!(
            parse_line("# TYPE up gauge", Format::OpenMetrics).unwrap(),
            None
        );
        assert!(parse_line("up 1", Format::OpenMetrics)
            .unwrap_err()
            .contains("no timestamp"));
        assert!(parse_line(r#"up{job=a} 1 2"#, Format::OpenMetrics)
            .unwrap_err()
            .contains("quoted"));
        assert!(parse_line(r#"up{job="a} 1 2"#, Format::OpenMetrics)
            .unwrap_err()
            .contains("not closed"));
        assert!(parse_line("9up 1 2", Format::OpenMetrics)
            .unwrap_err()
            .contains("metric name"));
    }

    #[test]
    fn the_format_is_told_by_its_timestamps() {
        assert_eq!(super::super::detect("{\"metric\":{}}"), Format::VmJson);
        assert_eq!(
            super::super::detect("# HELP x\nx 1 1700000000000\n"),
            Format::PrometheusText
        );
        assert_eq!(
            super::super::detect("x 1 1700000000.25\n# EOF\n"),
            Format::OpenMetrics
        );
        assert_eq!(
            super::super::detect("x 1 1700000000\n"),
            Format::OpenMetrics
        );
    }
}
