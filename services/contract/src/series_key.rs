//! The canonical series key: metric name plus labels sorted by name, in Prometheus text
//! form — `cpu_usage{host="a",region="eu"}`, or just `up` without labels. Label values are
//! escaped as in the Prometheus exposition format (`\\`, `\"`, `\n`), so the key is
//! unambiguous and a direct producer in any language can build the same bytes.
use crate::model::Label;
use crate::names::{is_valid_label_name, is_valid_metric_name};

/// A series key, owned. Thin wrapper so signatures say what a string is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey(pub String);

impl SeriesKey {
    /// Builds the key; `labels` must already be sorted by name.
    pub fn new(name: &str, labels: &[Label]) -> Self {
        let mut s = String::new();
        write_key(&mut s, name, labels);
        Self(s)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends the key to `out` (reusable buffer on hot paths). `labels` sorted by name.
pub fn write_key(out: &mut String, name: &str, labels: &[Label]) {
    write_key_parts(
        out,
        name,
        labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
    );
}

/// [`write_key`] over borrowed `(name, value)` pairs, sorted by name.
pub fn write_key_parts<'a>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.push_str(name);
    let mut first = true;
    for (n, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        escape_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

fn escape_value(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Splits a key built by [`write_key`] back into name and labels; `None` if it is not
/// one (names must be valid, so no name can hold a delimiter and what parses writes
/// back to the same key).
pub fn parse_key(key: &str) -> Option<(String, Vec<Label>)> {
    let Some(open) = key.find('{') else {
        return is_valid_metric_name(key).then(|| (key.to_string(), Vec::new()));
    };
    let name = &key[..open];
    if !is_valid_metric_name(name) {
        return None;
    }
    let body = key[open + 1..].strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let mut n = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            n.push(c);
        }
        if !is_valid_label_name(&n) || chars.next()? != '"' {
            return None;
        }
        let mut v = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.push(Label::new(n, v));
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    Some((name.to_string(), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_into_name_and_labels() {
        let labels = vec![Label::new("a", "x,y=\"z\""), Label::new("path", "C:\\\n")];
        let key = SeriesKey::new("m", &labels).0;
        assert_eq!(parse_key(&key), Some(("m".to_string(), labels)));
        assert_eq!(parse_key("up"), Some(("up".to_string(), vec![])));
        assert_eq!(parse_key("m{a=1}"), None);
        // Found by fuzzing: what parses must write back to the same key.
        assert_eq!(parse_key("{}"), None);
        assert_eq!(parse_key(r#"m{a,b="1"}"#), None);
    }

    #[test]
    fn key_without_labels_is_the_name() {
        assert_eq!(SeriesKey::new("up", &[]).0, "up");
    }

    #[test]
    fn key_is_prometheus_text_form() {
        let labels = vec![Label::new("host", "a"), Label::new("region", "eu")];
        assert_eq!(
            SeriesKey::new("cpu_usage", &labels).0,
            r#"cpu_usage{host="a",region="eu"}"#
        );
    }

    #[test]
    fn values_are_escaped() {
        let labels = vec![Label::new("path", "C:\\x \"q\"\nend")];
        assert_eq!(
            SeriesKey::new("m", &labels).0,
            r#"m{path="C:\\x \"q\"\nend"}"#
        );
    }

    #[test]
    fn series_sorts_labels_before_keying() {
        let s = crate::Series::new(
            "m",
            vec![Label::new("b", "2"), Label::new("a", "1")],
            vec![],
        );
        assert_eq!(s.key(), r#"m{a="1",b="2"}"#);
    }
}
