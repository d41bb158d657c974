//! Naming rules of the data contract, as Prometheus defines them. Every series on
//! `metrics.raw` follows them, whoever produced it.

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Label names starting with `__` are reserved for Prometheus internals.
pub fn is_reserved_label_name(s: &str) -> bool {
    s.starts_with("__")
}

/// Maps any string onto a valid metric name, replacing what is not allowed with `_`
/// (for sources whose own naming rules are looser, such as Influx).
pub fn sanitize_metric_name(s: &str) -> String {
    sanitize(s, true)
}

/// Maps any string onto a valid label name.
pub fn sanitize_label_name(s: &str) -> String {
    sanitize(s, false)
}

fn sanitize(s: &str, colon_ok: bool) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphabetic()
            || c == '_'
            || (colon_ok && c == ':')
            || (i > 0 && c.is_ascii_digit());
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
            out.push(c);
        } else {
            out.push(if ok { c } else { '_' });
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// How a series breaks the naming rules of the data contract (docs/producing.md), for
/// consumers that check what direct producers wrote: a short kind and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: &'static str,
    pub message: String,
}

/// Checks a decoded series against the contract's rules: a valid metric name, valid and
/// unreserved label names, sorted by name and unique, no empty values. These rules are
/// also what makes the series key unambiguous: no label name can hold the characters
/// that delimit the key.
pub fn check_series<'a>(
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Violation> {
    let v = |kind, message: String| Err(Violation { kind, message });
    if !is_valid_metric_name(name) {
        return v(
            "invalid_metric_name",
            format!("invalid metric name {:?}", cut(name)),
        );
    }
    let mut prev: Option<&str> = None;
    for (n, value) in labels {
        if !is_valid_label_name(n) {
            return v(
                "invalid_label_name",
                format!("invalid label name {:?}", cut(n)),
            );
        }
        if is_reserved_label_name(n) {
            return v(
                "reserved_label_name",
                format!("reserved label name {:?}", cut(n)),
            );
        }
        if value.is_empty() {
            return v(
                "empty_label_value",
                format!("label {n:?} has an empty value"),
            );
        }
        match prev {
            Some(p) if p == n => {
                return v("duplicate_label", format!("label {n:?} given twice"));
            }
            Some(p) if p > n => {
                return v(
                    "unsorted_labels",
                    format!("label {n:?} after {p:?}: labels must be sorted by name"),
                );
            }
            _ => {}
        }
        prev = Some(n);
    }
    Ok(())
}

/// The first 128 bytes of `s` (on a character boundary), to name it in a message.
pub fn cut(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for ok in ["up", "a:b_c", "_x", "node_cpu_seconds_total", ":recorded"] {
            assert!(is_valid_metric_name(ok), "{ok}");
        }
        for bad in ["", "1up", "cpu-usage", "a.b", "ü", "a b"] {
            assert!(!is_valid_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn series_checks_name_each_kind() {
        assert_eq!(check_series("m", [("a", "1"), ("b", "2")]), Ok(()));
        for (name, labels, kind) in [
            ("1m", vec![], "invalid_metric_name"),
            ("m", vec![("a-b", "1")], "invalid_label_name"),
            ("m", vec![("__name__", "x")], "reserved_label_name"),
            ("m", vec![("a", "")], "empty_label_value"),
            ("m", vec![("a", "1"), ("a", "2")], "duplicate_label"),
            ("m", vec![("b", "1"), ("a", "2")], "unsorted_labels"),
        ] {
            assert_eq!(check_series(name, labels).unwrap_err().kind, kind);
        }
    }

    #[test]
    fn label_names() {
        assert!(is_valid_label_name("host_1"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name("9x"));
        assert!(is_reserved_label_name("__name__"));
    }

    #[test]
    fn sanitizing_yields_valid_names() {
        assert_eq!(sanitize_metric_name("disk.io-time"), "disk_io_time");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        for s in ["", "ü", "a b", "1"] {
            assert!(is_valid_metric_name(&sanitize_metric_name(s)));
            assert!(is_valid_label_name(&sanitize_label_name(s)));
        }
    }
}
