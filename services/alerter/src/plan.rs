//! The streaming subset of PromQL: an expression parsed by `promql-parser` is compiled
//! into a [`Plan`] the engine evaluates per series and per step, or rejected with the
//! construct it cannot evaluate.
//!
//! Every plan has one of three shapes, which decide where it is evaluated:
//! - per series: a selector, optionally a range function, then scalar operations —
//!   evaluated where the series' partition is read;
//! - an aggregation (`sum|avg|min|max|count` by/without) over a per-series expression,
//!   then scalar operations — partial aggregates per group key are merged in a second
//!   stage;
//! - `absent_over_time(selector[range])`, then scalar operations — present or not is
//!   known only once every partition has spoken, so it is decided in the second stage too.
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{self, Expr};

use crate::labels::{Labels, METRIC_NAME};

/// Prometheus' default lookback for instant selectors.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("cannot parse: {0}")]
    Parse(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

fn unsupported(what: impl Into<String>) -> PlanError {
    PlanError::Unsupported(what.into())
}

/// Series selection: every matcher, the metric name among them.
#[derive(Debug, Clone)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.is_match(labels.get(&m.name)))
    }

    /// The metric name when it is matched exactly: rules are indexed by it.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.as_str())
    }

    /// Labels of an equality matcher (not the name): what `absent_over_time` returns.
    fn equality_labels(&self) -> Labels {
        let mut pairs = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut dup: Vec<&str> = Vec::new();
        for m in &self.matchers {
            if m.name == METRIC_NAME {
                continue;
            }
            if seen.contains(&m.name.as_str()) {
                dup.push(&m.name);
            }
            seen.push(&m.name);
            if matches!(m.op, MatchOp::Equal) {
                pairs.push((m.name.clone(), m.value.clone()));
            }
        }
        // A label matched twice gets no value (Prometheus cannot know which one).
        pairs.retain(|(n, _)| !dup.contains(&n.as_str()));
        Labels::new(pairs)
    }
}

/// Functions over a range of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeFn {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
    Quantile(f64),
    Rate,
    Increase,
}

/// What one series yields before scalar operations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inner {
    /// The newest sample within the lookback.
    Instant,
    Range {
        func: RangeFn,
        range_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

/// One operation between a vector and a scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Arith {
        op: ArithOp,
        scalar: f64,
        scalar_left: bool,
    },
    /// A filter, or with `bool` a 0/1 value.
    Cmp {
        op: CmpOp,
        scalar: f64,
        scalar_left: bool,
        bool_mod: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

impl Grouping {
    /// The group's labels of an element (`without` drops the metric name too).
    pub fn key(&self, labels: &Labels) -> Labels {
        match self {
            Grouping::By(names) => labels.keep(names),
            Grouping::Without(names) => {
                let mut l = labels.drop(names);
                l.remove(METRIC_NAME);
                l
            }
        }
    }
}

/// Per-series part of every shape.
#[derive(Debug, Clone)]
pub struct SeriesExpr {
    pub selector: Selector,
    pub inner: Inner,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Plan {
    Series(SeriesExpr),
    Aggregate {
        series: SeriesExpr,
        op: AggOp,
        grouping: Grouping,
        steps: Vec<Step>,
    },
    Absent {
        selector: Selector,
        range_ms: i64,
        labels: Labels,
        steps: Vec<Step>,
    },
}

impl Plan {
    pub fn parse(expr: &str) -> Result<Plan, PlanError> {
        let ast = parser::parse(expr).map_err(PlanError::Parse)?;
        match compile(&ast)? {
            Node::Plan(p) => Ok(p),
            Node::Scalar(_) => Err(unsupported(
                "an expression without a selector (a plain number)",
            )),
        }
    }

    /// Scopes the plan to one tenant: its selector also requires `label="tenant"`, and
    /// `absent` results carry it.
    pub fn scope_to(&mut self, label: &str, tenant: &str) {
        let selector = match self {
            Plan::Series(s) | Plan::Aggregate { series: s, .. } => &mut s.selector,
            Plan::Absent {
                selector, labels, ..
            } => {
                labels.set(label, tenant);
                selector
            }
        };
        selector
            .matchers
            .push(Matcher::new(MatchOp::Equal, label, tenant));
    }

    pub fn selector(&self) -> &Selector {
        match self {
            Plan::Series(s) | Plan::Aggregate { series: s, .. } => &s.selector,
            Plan::Absent { selector, .. } => selector,
        }
    }

    /// The range of its range selector; 0 for an instant selector (only the latest
    /// sample is read).
    pub fn range_ms(&self) -> i64 {
        match self {
            Plan::Series(s) | Plan::Aggregate { series: s, .. } => match s.inner {
                Inner::Instant => 0,
                Inner::Range { range_ms, .. } => range_ms,
            },
            Plan::Absent { range_ms, .. } => *range_ms,
        }
    }

    /// How far back from an evaluation time samples are read.
    pub fn lookback_ms(&self) -> i64 {
        match self {
            Plan::Series(s) | Plan::Aggregate { series: s, .. } => match s.inner {
                Inner::Instant => LOOKBACK_MS,
                Inner::Range { range_ms, .. } => range_ms,
            },
            Plan::Absent { range_ms, .. } => *range_ms,
        }
    }
}

enum Node {
    Plan(Plan),
    Scalar(f64),
}

fn selector(vs: &parser::VectorSelector) -> Result<Selector, PlanError> {
    if vs.offset.is_some() {
        return Err(unsupported("the `offset` modifier"));
    }
    if vs.at.is_some() {
        return Err(unsupported("the `@` modifier"));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(unsupported("`or` inside a selector"));
    }
    let mut matchers = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        if !matchers.iter().any(|m| m.name == METRIC_NAME) {
            matchers.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
    }
    Ok(Selector { matchers })
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn range_fn(name: &str) -> Option<RangeFn> {
    Some(match name {
        "avg_over_time" => RangeFn::Avg,
        "min_over_time" => RangeFn::Min,
        "max_over_time" => RangeFn::Max,
        "sum_over_time" => RangeFn::Sum,
        "count_over_time" => RangeFn::Count,
        "last_over_time" => RangeFn::Last,
        "quantile_over_time" => RangeFn::Quantile(0.0),
        "rate" => RangeFn::Rate,
        "increase" => RangeFn::Increase,
        _ => return None,
    })
}

fn matrix(e: &Expr, func: &str) -> Result<(Selector, i64), PlanError> {
    match e {
        Expr::MatrixSelector(m) => Ok((selector(&m.vs)?, ms(m.range))),
        Expr::Paren(p) => matrix(&p.expr, func),
        Expr::Subquery(_) => Err(unsupported(format!("a subquery inside `{func}`"))),
        other => Err(unsupported(format!(
            "`{func}` over `{other}` (a range selector such as `x[5m]` is required)"
        ))),
    }
}

fn arith(op: TokenType) -> Option<ArithOp> {
    Some(match op.id() {
        token::T_ADD => ArithOp::Add,
        token::T_SUB => ArithOp::Sub,
        token::T_MUL => ArithOp::Mul,
        token::T_DIV => ArithOp::Div,
        token::T_MOD => ArithOp::Mod,
        token::T_POW => ArithOp::Pow,
        _ => return None,
    })
}

fn cmp(op: TokenType) -> Option<CmpOp> {
    Some(match op.id() {
        token::T_EQLC => CmpOp::Eq,
        token::T_NEQ => CmpOp::Ne,
        token::T_GTR => CmpOp::Gt,
        token::T_LSS => CmpOp::Lt,
        token::T_GTE => CmpOp::Ge,
        token::T_LTE => CmpOp::Le,
        _ => return None,
    })
}

fn compile(e: &Expr) -> Result<Node, PlanError> {
    match e {
        Expr::NumberLiteral(n) => Ok(Node::Scalar(n.val)),
        Expr::Paren(p) => compile(&p.expr),
        Expr::Unary(u) => match compile(&u.expr)? {
            Node::Scalar(v) => Ok(Node::Scalar(-v)),
            Node::Plan(p) => Ok(Node::Plan(push_step(
                p,
                Step::Arith {
                    op: ArithOp::Sub,
                    scalar: 0.0,
                    scalar_left: true,
                },
            ))),
        },
        Expr::VectorSelector(vs) => Ok(Node::Plan(Plan::Series(SeriesExpr {
            selector: selector(vs)?,
            inner: Inner::Instant,
            steps: Vec::new(),
        }))),
        Expr::MatrixSelector(m) => Err(unsupported(format!(
            "a range selector `{m}` outside a function (alerts need an instant vector)"
        ))),
        Expr::Call(c) => call(c),
        Expr::Aggregate(a) => aggregate(a),
        Expr::Binary(b) => binary(b),
        Expr::Subquery(s) => Err(unsupported(format!("the subquery `{s}`"))),
        Expr::StringLiteral(s) => Err(unsupported(format!("the string literal {:?}", s.val))),
        Expr::Extension(_) => Err(unsupported("an extension expression")),
    }
}

fn call(c: &parser::Call) -> Result<Node, PlanError> {
    let name = c.func.name;
    let args = &c.args.args;
    if name == "absent_over_time" {
        let (selector, range_ms) = matrix(&args[0], name)?;
        let labels = selector.equality_labels();
        return Ok(Node::Plan(Plan::Absent {
            selector,
            range_ms,
            labels,
            steps: Vec::new(),
        }));
    }
    let Some(mut func) = range_fn(name) else {
        return Err(unsupported(format!("the function `{name}`")));
    };
    let range_arg = if let RangeFn::Quantile(_) = func {
        let phi = match compile(&args[0])? {
            Node::Scalar(v) => v,
            Node::Plan(_) => {
                return Err(unsupported(
                    "a `quantile_over_time` whose quantile is not a number",
                ))
            }
        };
        func = RangeFn::Quantile(phi);
        &args[1]
    } else {
        &args[0]
    };
    let (selector, range_ms) = matrix(range_arg, name)?;
    Ok(Node::Plan(Plan::Series(SeriesExpr {
        selector,
        inner: Inner::Range { func, range_ms },
        steps: Vec::new(),
    })))
}

fn aggregate(a: &parser::AggregateExpr) -> Result<Node, PlanError> {
    let op = match a.op.id() {
        token::T_SUM => AggOp::Sum,
        token::T_AVG => AggOp::Avg,
        token::T_MIN => AggOp::Min,
        token::T_MAX => AggOp::Max,
        token::T_COUNT => AggOp::Count,
        _ => return Err(unsupported(format!("the aggregation `{}`", a.op))),
    };
    let grouping = match &a.modifier {
        None => Grouping::By(Vec::new()),
        Some(m) => {
            let names = m.labels().labels.clone();
            if m.is_include() {
                Grouping::By(names)
            } else {
                Grouping::Without(names)
            }
        }
    };
    match compile(&a.expr)? {
        Node::Plan(Plan::Series(series)) => Ok(Node::Plan(Plan::Aggregate {
            series,
            op,
            grouping,
            steps: Vec::new(),
        })),
        Node::Plan(Plan::Aggregate { .. }) => Err(unsupported(format!(
            "an aggregation of an aggregation (`{a}`)"
        ))),
        Node::Plan(Plan::Absent { .. }) => Err(unsupported(format!(
            "an aggregation of `absent_over_time` (`{a}`)"
        ))),
        Node::Scalar(_) => Err(unsupported(format!("an aggregation of a number (`{a}`)"))),
    }
}

fn push_step(p: Plan, step: Step) -> Plan {
    match p {
        Plan::Series(mut s) => {
            s.steps.push(step);
            Plan::Series(s)
        }
        Plan::Aggregate {
            series,
            op,
            grouping,
            mut steps,
        } => {
            steps.push(step);
            Plan::Aggregate {
                series,
                op,
                grouping,
                steps,
            }
        }
        Plan::Absent {
            selector,
            range_ms,
            labels,
            mut steps,
        } => {
            steps.push(step);
            Plan::Absent {
                selector,
                range_ms,
                labels,
                steps,
            }
        }
    }
}

fn binary(b: &parser::BinaryExpr) -> Result<Node, PlanError> {
    if b.op.is_set_operator() {
        return Err(unsupported(format!("the set operator `{}`", b.op)));
    }
    if b.op.id() == token::T_ATAN2 {
        return Err(unsupported("the operator `atan2`"));
    }
    let bool_mod = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = compile(&b.lhs)?;
    let rhs = compile(&b.rhs)?;
    let (plan, scalar, scalar_left) = match (lhs, rhs) {
        (Node::Scalar(l), Node::Scalar(r)) => {
            let v = if let Some(op) = arith(b.op) {
                apply_arith(op, l, r)
            } else if let (Some(op), true) = (cmp(b.op), bool_mod) {
                if compare(op, l, r) {
                    1.0
                } else {
                    0.0
                }
            } else {
                return Err(unsupported(format!(
                    "a comparison between two numbers without `bool` (`{b}`)"
                )));
            };
            return Ok(Node::Scalar(v));
        }
        (Node::Plan(p), Node::Scalar(s)) => (p, s, false),
        (Node::Scalar(s), Node::Plan(p)) => (p, s, true),
        (Node::Plan(_), Node::Plan(_)) => {
            return Err(unsupported(format!(
                "the binary operation `{}` between two vectors (`{b}`); only a vector and a number",
                b.op
            )))
        }
    };
    let step = if let Some(op) = arith(b.op) {
        Step::Arith {
            op,
            scalar,
            scalar_left,
        }
    } else if let Some(op) = cmp(b.op) {
        Step::Cmp {
            op,
            scalar,
            scalar_left,
            bool_mod,
        }
    } else {
        return Err(unsupported(format!("the operator `{}`", b.op)));
    };
    Ok(Node::Plan(push_step(plan, step)))
}

pub fn apply_arith(op: ArithOp, l: f64, r: f64) -> f64 {
    match op {
        ArithOp::Add => l + r,
        ArithOp::Sub => l - r,
        ArithOp::Mul => l * r,
        ArithOp::Div => l / r,
        // Go's math.Mod: the sign of the dividend, as Rust's `%` on floats.
        ArithOp::Mod => l % r,
        ArithOp::Pow => l.powf(r),
    }
}

pub fn compare(op: CmpOp, l: f64, r: f64) -> bool {
    match op {
        CmpOp::Eq => l == r,
        CmpOp::Ne => l != r,
        CmpOp::Gt => l > r,
        CmpOp::Lt => l < r,
        CmpOp::Ge => l >= r,
        CmpOp::Le => l <= r,
    }
}

impl Step {
    /// Applies the step to one element: `None` when a filter drops it; the flag says
    /// whether the metric name is dropped (arithmetic and `bool` drop it, filters keep it).
    pub fn apply(&self, v: f64) -> Option<(f64, bool)> {
        match *self {
            Step::Arith {
                op,
                scalar,
                scalar_left,
            } => {
                let (l, r) = if scalar_left {
                    (scalar, v)
                } else {
                    (v, scalar)
                };
                Some((apply_arith(op, l, r), true))
            }
            Step::Cmp {
                op,
                scalar,
                scalar_left,
                bool_mod,
            } => {
                let (l, r) = if scalar_left {
                    (scalar, v)
                } else {
                    (v, scalar)
                };
                let holds = compare(op, l, r);
                if bool_mod {
                    Some((if holds { 1.0 } else { 0.0 }, true))
                } else if holds {
                    // The vector's value, whichever side it is on.
                    Some((v, false))
                } else {
                    None
                }
            }
        }
    }
}

/// Applies steps in order: the value and whether the metric name was dropped on the
/// way; `None` once a filter drops the element. Labels are left to the caller, so an
/// element a filter drops costs no label copy.
pub fn apply_steps(steps: &[Step], mut v: f64) -> Option<(f64, bool)> {
    let mut dropped = false;
    for s in steps {
        let (nv, drop_name) = s.apply(v)?;
        dropped |= drop_name;
        v = nv;
    }
    Some((v, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(e: &str) -> String {
        match Plan::parse(e) {
            Err(PlanError::Unsupported(s)) => s,
            other => panic!("{e}: expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn shapes() {
        assert!(matches!(
            Plan::parse("node_temperature_celsius > 80").unwrap(),
            Plan::Series(SeriesExpr { inner: Inner::Instant, ref steps, .. }) if steps.len() == 1
        ));
        let p =
            Plan::parse("avg by (service) (rate(http_requests_total{code=~\"5..\"}[5m])) * 60 > 2")
                .unwrap();
        match p {
            Plan::Aggregate {
                series,
                op: AggOp::Avg,
                grouping: Grouping::By(g),
                steps,
            } => {
                assert_eq!(g, vec!["service".to_string()]);
                assert_eq!(steps.len(), 2);
                assert_eq!(
                    series.inner,
                    Inner::Range {
                        func: RangeFn::Rate,
                        range_ms: 300_000
                    }
                );
                assert_eq!(series.selector.metric_name(), Some("http_requests_total"));
            }
            other => panic!("{other:?}"),
        }
        match Plan::parse("absent_over_time(up{instance=\"a\", job=~\"x.*\"}[2m])").unwrap() {
            Plan::Absent {
                labels, range_ms, ..
            } => {
                assert_eq!(labels, Labels::from_strs(&[("instance", "a")]));
                assert_eq!(range_ms, 120_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(Plan::parse("count by (job) (up == 1) < 2").is_ok());
        assert!(Plan::parse("quantile_over_time(0.9, lat[5m]) > 2 * 100").is_ok());
    }

    #[test]
    fn rejections_name_the_construct() {
        assert!(rejected("histogram_quantile(0.9, x)").contains("histogram_quantile"));
        assert!(rejected("a / b").contains("between two vectors"));
        assert!(rejected("topk(3, x)").contains("topk"));
        assert!(rejected("x offset 5m").contains("offset"));
        assert!(rejected("max(sum by (a) (x))").contains("aggregation of an aggregation"));
        assert!(rejected("rate(x[5m:1m])").contains("subquery"));
        assert!(rejected("a and b").contains("and"));
        assert!(rejected("x[5m]").contains("range selector"));
        assert!(rejected("1 + 1").contains("plain number"));
        assert!(matches!(Plan::parse("x >"), Err(PlanError::Parse(_))));
    }

    #[test]
    fn filters_keep_the_vector_value_and_bool_yields_zero_or_one() {
        let gt = Step::Cmp {
            op: CmpOp::Gt,
            scalar: 80.0,
            scalar_left: false,
            bool_mod: false,
        };
        assert_eq!(gt.apply(85.5), Some((85.5, false)));
        assert_eq!(gt.apply(80.0), None);
        let lt_left = Step::Cmp {
            op: CmpOp::Lt,
            scalar: 80.0,
            scalar_left: true,
            bool_mod: false,
        };
        assert_eq!(lt_left.apply(90.0), Some((90.0, false)));
        let b = Step::Cmp {
            op: CmpOp::Eq,
            scalar: 1.0,
            scalar_left: false,
            bool_mod: true,
        };
        assert_eq!(b.apply(0.0), Some((0.0, true)));
    }
}
