//! Label and annotation templates: the part of Go's text/template that alerting rules
//! use, with Prometheus' variables. Parsed when rules load, so an action the engine
//! cannot expand is an error naming the rule, not a surprise in a notification.
//!
//! Supported: text, `{{ $labels.name }}` / `{{ .Labels.name }}`, `{{ $value }}` /
//! `{{ .Value }}`, `{{ $externalLabels.name }}`, string and number literals, the
//! functions `printf`, `toUpper`, `toLower`, `humanize`, `eq ne lt le gt ge not`,
//! `{{ if }} … {{ else }} … {{ end }}`, pipelines (`|`) and trim markers (`{{-`, `-}}`).
use crate::labels::Labels;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("template {text:?}: {problem}")]
pub struct TemplateError {
    pub text: String,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Label(String),
    ExternalLabel(String),
    Value,
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Printf,
    ToUpper,
    ToLower,
    Humanize,
    Cmp(Cmp),
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Operand(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Pipeline(Vec<Command>),
    If {
        cond: Vec<Command>,
        then: Vec<Part>,
        otherwise: Vec<Part>,
    },
}

/// A lexed piece of template text.
enum Item<'a> {
    Text(String),
    Action(&'a str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
}

impl Val {
    fn render(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_float(*v),
            Val::Bool(b) => b.to_string(),
        }
    }

    /// Go templates' truth: false, 0 and "" are false.
    fn truth(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Num(v) => *v != 0.0,
            Val::Bool(b) => *b,
        }
    }
}

/// Data a template sees.
pub struct Data<'a> {
    pub labels: &'a Labels,
    pub external_labels: &'a Labels,
    pub value: f64,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let err = |problem: String| TemplateError {
            text: text.to_string(),
            problem,
        };
        let items = lex(text).map_err(err)?;
        let mut it = items.into_iter().peekable();
        let (parts, end) = parse_parts(&mut it).map_err(err)?;
        match end {
            None => Ok(Self { parts }),
            Some(e) => Err(err(format!("`{{{{ {e} }}}}` without a matching `if`"))),
        }
    }

    pub fn expand(&self, data: &Data<'_>) -> String {
        let mut out = String::new();
        expand_parts(&self.parts, data, &mut out);
        out
    }
}

fn expand_parts(parts: &[Part], data: &Data<'_>, out: &mut String) {
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Pipeline(cmds) => {
                if let Some(v) = run_pipeline(cmds, data) {
                    out.push_str(&v.render());
                }
            }
            Part::If {
                cond,
                then,
                otherwise,
            } => {
                let holds = run_pipeline(cond, data).is_some_and(|v| v.truth());
                expand_parts(if holds { then } else { otherwise }, data, out);
            }
        }
    }
}

fn run_pipeline(cmds: &[Command], data: &Data<'_>) -> Option<Val> {
    let mut prev: Option<Val> = None;
    for c in cmds {
        prev = Some(run(c, data, prev.take()));
    }
    prev
}

/// Splits text and actions, applying trim markers.
fn lex(text: &str) -> Result<Vec<Item<'_>>, String> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut pending = String::new();
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        let mut action = &rest[open + 2..];
        if let Some(a) = action.strip_prefix('-') {
            before = before.trim_end();
            action = a;
        }
        pending.push_str(before);
        let close = action.find("}}").ok_or("unclosed action")?;
        let mut inner = &action[..close];
        rest = &action[close + 2..];
        if let Some(i) = inner.strip_suffix('-') {
            inner = i;
            rest = rest.trim_start();
        }
        if !pending.is_empty() {
            items.push(Item::Text(std::mem::take(&mut pending)));
        }
        items.push(Item::Action(inner.trim()));
    }
    pending.push_str(rest);
    if !pending.is_empty() {
        items.push(Item::Text(pending));
    }
    Ok(items)
}

/// Parts up to an `else` or `end` (returned as the second value) or the end of text.
fn parse_parts<'a, I: Iterator<Item = Item<'a>>>(
    it: &mut std::iter::Peekable<I>,
) -> Result<(Vec<Part>, Option<&'a str>), String> {
    let mut parts = Vec::new();
    while let Some(item) = it.next() {
        match item {
            Item::Text(t) => parts.push(Part::Text(t)),
            Item::Action(a) if a == "else" || a == "end" => return Ok((parts, Some(a))),
            Item::Action(a) if a.starts_with("else ") => {
                return Err(format!("`{a}` is not supported (only a plain `else`)"))
            }
            Item::Action(a) => {
                if let Some(c) = a.strip_prefix("if ") {
                    let cond = pipeline(c.trim())?;
                    let (then, end) = parse_parts(it)?;
                    let otherwise = match end {
                        Some("else") => match parse_parts(it)? {
                            (p, Some("end")) => p,
                            _ => return Err("`if … else` without `end`".into()),
                        },
                        Some(_) => Vec::new(),
                        None => return Err("`if` without `end`".into()),
                    };
                    parts.push(Part::If {
                        cond,
                        then,
                        otherwise,
                    });
                } else {
                    parts.push(Part::Pipeline(pipeline(a)?));
                }
            }
        }
    }
    Ok((parts, None))
}

fn pipeline(s: &str) -> Result<Vec<Command>, String> {
    if s.starts_with("/*") {
        return Ok(Vec::new());
    }
    let mut cmds = Vec::new();
    for c in split_outside_quotes(s, '|') {
        let words = words(c.trim())?;
        let Some(first) = words.first() else {
            return Err("an empty action".into());
        };
        let func = match first.as_str() {
            "printf" => Some(Func::Printf),
            "toUpper" => Some(Func::ToUpper),
            "toLower" => Some(Func::ToLower),
            "humanize" => Some(Func::Humanize),
            "eq" => Some(Func::Cmp(Cmp::Eq)),
            "ne" => Some(Func::Cmp(Cmp::Ne)),
            "lt" => Some(Func::Cmp(Cmp::Lt)),
            "le" => Some(Func::Cmp(Cmp::Le)),
            "gt" => Some(Func::Cmp(Cmp::Gt)),
            "ge" => Some(Func::Cmp(Cmp::Ge)),
            "not" => Some(Func::Not),
            w if w.starts_with('$') || w.starts_with('.') || w.starts_with('"') => None,
            w if w.parse::<f64>().is_ok() => None,
            w => return Err(format!("the action or function `{w}` is not supported")),
        };
        let operands = words[usize::from(func.is_some())..]
            .iter()
            .map(|w| operand(w))
            .collect::<Result<Vec<_>, _>>()?;
        cmds.push(match func {
            Some(f) => Command::Call(f, operands),
            None if operands.len() == 1 => Command::Operand(operands[0].clone()),
            None => return Err(format!("`{c}` is not a single value or a function call")),
        });
    }
    Ok(cmds)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        match ch {
            '\\' if quoted => escaped = !escaped,
            '"' if !escaped => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    out.push(&s[start..]);
    out
}

fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut w = String::from("\"");
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => w.push('\n'),
                        Some('t') => w.push('\t'),
                        Some(o) => w.push(o),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    o => w.push(o),
                }
            }
            if !closed {
                return Err("an unterminated string".into());
            }
            out.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn operand(w: &str) -> Result<Operand, String> {
    if let Some(s) = w.strip_prefix('"') {
        return Ok(Operand::Str(s.to_string()));
    }
    if let Ok(v) = w.parse::<f64>() {
        return Ok(Operand::Num(v));
    }
    if w == "$value" || w == ".Value" {
        return Ok(Operand::Value);
    }
    for p in ["$labels.", ".Labels."] {
        if let Some(n) = w.strip_prefix(p) {
            return Ok(Operand::Label(n.to_string()));
        }
    }
    for p in ["$externalLabels.", ".ExternalLabels."] {
        if let Some(n) = w.strip_prefix(p) {
            return Ok(Operand::ExternalLabel(n.to_string()));
        }
    }
    Err(format!("the operand `{w}` is not supported"))
}

fn eval(o: &Operand, d: &Data<'_>) -> Val {
    match o {
        // A missing label expands to "" (Prometheus runs templates with missingkey=zero).
        Operand::Label(n) => Val::Str(d.labels.get(n).to_string()),
        Operand::ExternalLabel(n) => Val::Str(d.external_labels.get(n).to_string()),
        Operand::Value => Val::Num(d.value),
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(v) => Val::Num(*v),
    }
}

fn run(c: &Command, d: &Data<'_>, piped: Option<Val>) -> Val {
    match c {
        Command::Operand(o) => eval(o, d),
        Command::Call(f, args) => {
            let mut vals: Vec<Val> = args.iter().map(|a| eval(a, d)).collect();
            vals.extend(piped);
            match f {
                Func::Printf => {
                    let (fmt, rest) = match vals.split_first() {
                        Some((Val::Str(f), rest)) => (f.clone(), rest),
                        _ => return Val::Str("%!(NOFORMAT)".into()),
                    };
                    Val::Str(printf(&fmt, rest))
                }
                Func::Cmp(op) => Val::Bool(match (vals.first(), vals.get(1)) {
                    (Some(Val::Num(a)), Some(Val::Num(b))) => cmp_holds(*op, a.partial_cmp(b)),
                    (Some(a), Some(b)) => cmp_holds(*op, Some(a.render().cmp(&b.render()))),
                    _ => false,
                }),
                Func::Not => Val::Bool(!vals.last().is_some_and(Val::truth)),
                Func::ToUpper => Val::Str(
                    vals.last()
                        .map(Val::render)
                        .unwrap_or_default()
                        .to_uppercase(),
                ),
                Func::ToLower => Val::Str(
                    vals.last()
                        .map(Val::render)
                        .unwrap_or_default()
                        .to_lowercase(),
                ),
                Func::Humanize => Val::Str(match vals.last() {
                    Some(Val::Num(v)) => humanize(*v),
                    Some(Val::Str(s)) => {
                        s.parse::<f64>().map(humanize).unwrap_or_else(|_| s.clone())
                    }
                    Some(b @ Val::Bool(_)) => b.render(),
                    None => String::new(),
                }),
            }
        }
    }
}

fn cmp_holds(op: Cmp, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    match (op, o) {
        (_, None) => op == Cmp::Ne,
        (Cmp::Eq, Some(o)) => o == Equal,
        (Cmp::Ne, Some(o)) => o != Equal,
        (Cmp::Lt, Some(o)) => o == Less,
        (Cmp::Le, Some(o)) => o != Greater,
        (Cmp::Gt, Some(o)) => o == Greater,
        (Cmp::Ge, Some(o)) => o != Less,
    }
}

/// Go's `fmt.Sprintf` for the verbs alert templates use: `%v %s %d %f %g %e %%`, with an
/// optional precision.
fn printf(fmt: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            prec = Some(digits.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        match (verb, arg) {
            ('f', Val::Num(v)) => out.push_str(&format!("{:.*}", prec.unwrap_or(6), v)),
            ('e', Val::Num(v)) => out.push_str(&go_exp(*v, prec.unwrap_or(6))),
            ('d', Val::Num(v)) => out.push_str(&format!("%!d(float64={})", go_float(*v))),
            ('g' | 'v', Val::Num(v)) if prec.is_none() => out.push_str(&go_float(*v)),
            ('g', Val::Num(v)) => out.push_str(&format!("{}", round_sig(*v, prec.unwrap_or(6)))),
            (_, v) => out.push_str(&v.render()),
        }
    }
    out
}

fn round_sig(v: f64, digits: usize) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let s = format!("{:.*e}", digits.max(1) - 1, v);
    s.parse().unwrap_or(v)
}

/// Go's `%e`: mantissa with `prec` decimals and a signed exponent of two digits or more.
fn go_exp(v: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

/// How Go prints a float64 with `%v` (what `{{ $value }}` shows): the shortest
/// representation, in exponent form when the decimal exponent is below -4 or 6 and above
/// (strconv's `%g` with the shortest precision).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Shortest round-trip digits and the decimal exponent.
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    // Rust's Display is the shortest round-trip decimal, without an exponent.
    format!("{v}")
}

/// Prometheus' `humanize`: SI prefixes, four significant digits.
fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g4(v);
    }
    let big = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
    let small = ["", "m", "u", "n", "p", "f", "a", "z", "y"];
    let mut x = v;
    if v.abs() >= 1.0 {
        let mut i = 0;
        while x.abs() >= 1000.0 && i < big.len() - 1 {
            x /= 1000.0;
            i += 1;
        }
        format!("{}{}", go_g4(x), big[i])
    } else {
        let mut i = 0;
        while x.abs() < 1.0 && i < small.len() - 1 {
            x *= 1000.0;
            i += 1;
        }
        format!("{}{}", go_g4(x), small[i])
    }
}

/// Go's `%.4g`.
fn go_g4(v: f64) -> String {
    if !v.is_finite() {
        return go_float(v);
    }
    let r = round_sig(v, 4);
    let exp = if r == 0.0 {
        0
    } else {
        r.abs().log10().floor() as i32
    };
    if !(-4..4).contains(&exp) {
        let s = go_exp(r, 3);
        // %g drops trailing zeros of the mantissa.
        let (m, e) = s.split_once('e').unwrap_or((&s, ""));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    format!("{r}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, value: f64) -> String {
        let labels = Labels::from_strs(&[("instance", "dev-1"), ("job", "fleet")]);
        let ext = Labels::default();
        Template::parse(t).unwrap().expand(&Data {
            labels: &labels,
            external_labels: &ext,
            value,
        })
    }

    #[test]
    fn labels_and_value() {
        assert_eq!(
            expand("{{ $labels.instance }} is at {{ $value }}°C", 85.5),
            "dev-1 is at 85.5°C"
        );
        assert_eq!(expand("{{$labels.missing}}x", 1.0), "x");
        assert_eq!(expand("{{ .Labels.job }} {{ .Value }}", 90.0), "fleet 90");
        assert_eq!(expand("{{ printf \"%.2f\" $value }}", 2.0 / 3.0), "0.67");
        assert_eq!(expand("{{ $value | printf \"%.1f\" }}", 85.25), "85.2");
        assert_eq!(expand("a {{- \" b \" -}} c", 0.0), "a b c");
        assert_eq!(expand("{{ $labels.job | toUpper }}", 0.0), "FLEET");
        let sev = "{{ if ge $value 0.97 }}page{{ else }}ticket{{ end }}";
        assert_eq!(expand(sev, 0.98), "page");
        assert_eq!(expand(sev, 0.5), "ticket");
        assert_eq!(
            expand("{{ if eq $labels.job \"fleet\" }}yes{{ end }}!", 0.0),
            "yes!"
        );
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float(85.0), "85");
        assert_eq!(go_float(0.1), "0.1");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(123456789.0), "1.23456789e+08");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn unsupported_actions_are_refused_at_parse() {
        assert!(Template::parse("{{ if $value }}x").is_err());
        assert!(Template::parse("{{ range $labels }}x{{ end }}").is_err());
        assert!(Template::parse("{{ query \"up\" }}").is_err());
        assert!(Template::parse("{{ $labels.x ").is_err());
    }
}
