//! Series selectors as PromQL writes them (`up{job="node",instance=~"10\\..*"}`), for
//! the commands that pick series out of a topic: `weir replay --match`, `weir dlq`.
use promql_parser::label::{Matcher, Matchers};
use promql_parser::parser::{self, Expr};

#[derive(Debug, Clone)]
pub struct Selector {
    /// One set of matchers, or several joined by `or`; a series matches if every
    /// matcher of one set does.
    sets: Vec<Vec<Matcher>>,
    text: String,
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let expr = parser::parse(s).map_err(|e| format!("--match {s:?}: {e}"))?;
        let Expr::VectorSelector(v) = expr else {
            return Err(format!(
                "--match {s:?}: a series selector like up{{job=\"node\"}} is needed, not an expression"
            ));
        };
        let Matchers {
            matchers,
            or_matchers,
        } = v.matchers;
        let mut sets = if or_matchers.is_empty() {
            vec![matchers]
        } else {
            or_matchers
        };
        if let Some(name) = v.name {
            for set in &mut sets {
                if !set.iter().any(|m| m.name == "__name__") {
                    set.push(Matcher::new(
                        promql_parser::label::MatchOp::Equal,
                        "__name__",
                        &name,
                    ));
                }
            }
        }
        Ok(Self {
            sets,
            text: s.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the series `name{labels}` matches; a label not present has value "".
    pub fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let value = |l: &str| -> &str {
            if l == "__name__" {
                return name;
            }
            labels
                .iter()
                .find(|(k, _)| *k == l)
                .map(|(_, v)| *v)
                .unwrap_or("")
        };
        self.sets
            .iter()
            .any(|set| set.iter().all(|m| m.is_match(value(&m.name))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_promql_does() {
        let s = Selector::parse(r#"node_load1{job="node",instance=~"a.*"}"#).unwrap();
        assert!(s.matches("node_load1", &[("instance", "ab"), ("job", "node")]));
        assert!(!s.matches("node_load1", &[("instance", "xb"), ("job", "node")]));
        assert!(!s.matches("node_load5", &[("instance", "ab"), ("job", "node")]));
        let any = Selector::parse(r#"{job!=""}"#).unwrap();
        assert!(any.matches("x", &[("job", "j")]));
        assert!(!any.matches("x", &[]));
        assert!(Selector::parse("rate(x[5m])")
            .unwrap_err()
            .contains("series selector"));
    }
}
