//! One line of a VictoriaMetrics (or Prometheus-compatible) `/api/v1/export` file:
//! `{"metric":{"__name__":"up","job":"node"},"values":[1,0],"timestamps":[1700000000000,1700000015000]}`.
use serde::Deserialize;

use super::Parsed;

#[derive(Deserialize)]
struct Line {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<Value>,
    timestamps: Vec<i64>,
}

/// VictoriaMetrics writes NaN and infinities as JSON strings or bare numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    Number(f64),
    Text(String),
}

impl Value {
    fn get(&self) -> Result<f64, String> {
        match self {
            Value::Number(v) => Ok(*v),
            Value::Text(s) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Inf" | "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                _ => s
                    .parse()
                    .map_err(|_| format!("value {s:?} is not a number")),
            },
        }
    }
}

/// Parses one line; `Ok(None)` for a blank one.
pub fn parse_line(line: &str) -> Result<Option<Parsed>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(line).map_err(|e| format!("not an export line: {e}"))?;
    if l.values.len() != l.timestamps.len() {
        return Err(format!(
            "{} values but {} timestamps",
            l.values.len(),
            l.timestamps.len()
        ));
    }
    let samples = l
        .timestamps
        .iter()
        .zip(&l.values)
        .map(|(t, v)| Ok((*t, v.get()?)))
        .collect::<Result<Vec<_>, String>>()?;
    Parsed::from_labels(l.metric.into_iter().collect(), samples).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_parse_and_bad_ones_are_named() {
        let p = parse_line(r#"{"metric":{"__name__":"up","job":"node","empty":""},"values":[1,"NaN"],"timestamps":[1000,2000]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "up");
        assert_eq!(p.labels, vec![("job".to_string(), "node".to_string())]);
        assert_eq!(p.samples[0], (1000, 1.0));
        assert!(p.samples[1].1.is_nan());
        assert_eq!(parse_line("  ").unwrap(), None);
        assert!(
            parse_line(r#"{"metric":{"job":"x"},"values":[],"timestamps":[]}"#)
                .unwrap_err()
                .contains("__name__")
        );
        assert!(
            parse_line(r#"{"metric":{"__name__":"x"},"values":[1],"timestamps":[]}"#)
                .unwrap_err()
                .contains("1 values but 0 timestamps")
        );
        assert!(parse_line("{").unwrap_err().contains("not an export line"));
    }
}
