//! The canonical series key: metric name plus labels sorted by name, in Prometheus text
//! form — `cpu_usage{host="a",region="eu"}`, or just `up` without labels. Label values are
//! escaped as in the Prometheus exposition format (`\\`, `\"`, `\n`), so the key is
//! unambiguous and a direct producer in any language can build the same bytes.
use crate::model::Label;

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

#[cfg(test)]
mod tests {
    use super::*;

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
