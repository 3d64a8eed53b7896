//! The `Condition` element. Operators within a block, and keys within an operator, are ANDed;
//! the values listed for one key are ORed (NORed for negated operators). A key missing from
//! the request makes a condition false, except for negated operators (true), `…IfExists`
//! (true) and `Null` (which tests for it).

use super::document::Effect;
use super::variables::{self, Piece};
use super::{glob, glob_tokens, tokens, Request, Tok};
use serde_json::Value;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    IpAddress,
    NotIpAddress,
    Null,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        use Op::*;
        Some(match s {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "ArnEquals" => ArnEquals,
            "ArnLike" => ArnLike,
            "ArnNotEquals" => ArnNotEquals,
            "ArnNotLike" => ArnNotLike,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            "Null" => Null,
            _ => return None,
        })
    }

    fn negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | ArnNotEquals
                | ArnNotLike
                | NotIpAddress
        )
    }

    /// The positive form of a negated operator.
    fn positive(self) -> Op {
        use Op::*;
        match self {
            StringNotEquals => StringEquals,
            StringNotEqualsIgnoreCase => StringEqualsIgnoreCase,
            StringNotLike => StringLike,
            NumericNotEquals => NumericEquals,
            DateNotEquals => DateEquals,
            ArnNotEquals => ArnEquals,
            ArnNotLike => ArnLike,
            NotIpAddress => IpAddress,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub op: Op,
    pub qualifier: Option<Qualifier>,
    pub if_exists: bool,
    /// Lower-cased: condition key names are not case-sensitive.
    pub key: String,
    pub values: Vec<String>,
    /// Whether the values hold policy variables ([`variables`]) to replace first.
    pub variables: bool,
}

fn value_strings(v: &Value) -> Result<Vec<String>, String> {
    let one = |x: &Value| match x {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err("condition values must be strings, numbers or booleans".to_string()),
    };
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(one).collect(),
        Value::Array(_) => Err("a condition key needs at least one value".into()),
        other => Ok(vec![one(other)?]),
    }
}

/// `variables`: whether the document's Version lets values hold policy variables (they do in
/// the String and ARN operators' values).
pub fn parse_block(v: &Value, variables: bool) -> Result<Vec<Condition>, String> {
    let Value::Object(ops) = v else {
        return Err("Condition must be a JSON object.".into());
    };
    let mut out = Vec::new();
    for (name, keys) in ops {
        let (qualifier, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (Some(Qualifier::ForAnyValue), r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (Some(Qualifier::ForAllValues), r)
        } else {
            (None, name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let op = Op::parse(base)
            .ok_or_else(|| format!("'{name}' is not a valid condition operator."))?;
        if op == Op::Null && (if_exists || qualifier.is_some()) {
            return Err(format!("'{name}' is not a valid condition operator."));
        }
        let Value::Object(keys) = keys else {
            return Err(format!("the {name} condition must map keys to values."));
        };
        if keys.is_empty() {
            return Err(format!("the {name} condition names no key."));
        }
        for (key, values) in keys {
            let values = value_strings(values).map_err(|e| format!("{name} {key}: {e}."))?;
            for val in &values {
                check_value(op, val).map_err(|e| format!("{name} {key}: {e}."))?;
            }
            let variables = variables
                && matches!(
                    op.positive(),
                    Op::StringEquals
                        | Op::StringEqualsIgnoreCase
                        | Op::StringLike
                        | Op::ArnEquals
                        | Op::ArnLike
                )
                && values.iter().any(|v| variables::has_variables(v));
            out.push(Condition {
                op,
                qualifier,
                if_exists,
                key: key.to_ascii_lowercase(),
                values,
                variables,
            });
        }
    }
    Ok(out)
}

fn check_value(op: Op, v: &str) -> Result<(), String> {
    use Op::*;
    match op.positive() {
        NumericEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => parse_number(v)
            .map(|_| ())
            .ok_or_else(|| format!("'{v}' is not a number")),
        DateEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => parse_date(v)
            .map(|_| ())
            .ok_or_else(|| format!("'{v}' is not a date (ISO 8601 or epoch seconds)")),
        Bool | Null => match v.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err(format!("'{v}' is not true or false")),
        },
        IpAddress => parse_cidr(v)
            .map(|_| ())
            .ok_or_else(|| format!("'{v}' is not an IP address or CIDR block")),
        _ => Ok(()),
    }
}

/// A number as a condition reads one: `NaN` and `inf`, which Rust parses, are not.
fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_date(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis() as f64 / 1000.0);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as f64);
    }
    None
}

/// An address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`): the address and its prefix length.
pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    // An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4 block it maps, as a caller's
    // IPv4-mapped address is its IPv4 address ([`cidr_contains`]).
    match ip {
        IpAddr::V6(v6) if bits >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => Some((IpAddr::V4(v4), bits - 96)),
            None => Some((ip, bits)),
        },
        _ => Some((ip, bits)),
    }
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (Ok(ip), Some(block)) = (ip.parse::<IpAddr>(), parse_cidr(cidr)) else {
        return false;
    };
    cidr_contains(block, ip)
}

/// Whether `ip` is in the block ([`parse_cidr`]'s form).
pub(crate) fn cidr_contains((net, bits): (IpAddr, u32), ip: IpAddr) -> bool {
    // An IPv4-mapped address (`::ffff:a.b.c.d`) is the IPv4 address it maps.
    match (ip.to_canonical(), net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn arn_like(pattern: &str, arn: &str) -> bool {
    arn_like_tokens(&tokens(pattern).collect::<Vec<_>>(), arn)
}

/// Each of the six parts of an ARN matched against the pattern's part (wildcards do not
/// cross a `:`).
fn arn_like_tokens(pattern: &[Tok], arn: &str) -> bool {
    let mut p = Vec::with_capacity(6);
    let mut rest = pattern;
    while p.len() < 5 {
        let Some(i) = rest.iter().position(|t| *t == Tok::Char(':')) else {
            break;
        };
        p.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    p.push(rest);
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6
        && a.len() == 6
        && p.iter()
            .zip(&a)
            .all(|(p, a)| glob_tokens(p, &a.chars().collect::<Vec<_>>()))
}

/// [`matches_one`] for a policy value whose variables were replaced.
fn matches_pieces(op: Op, policy: &[Piece], request: &str) -> bool {
    match op {
        Op::StringLike => glob_tokens(
            &variables::pattern(policy),
            &request.chars().collect::<Vec<_>>(),
        ),
        Op::ArnEquals | Op::ArnLike => arn_like_tokens(&variables::pattern(policy), request),
        other => matches_one(other, &variables::text(policy), request),
    }
}

/// One request value against one policy value, with the positive form of the operator.
fn matches_one(op: Op, policy: &str, request: &str) -> bool {
    use Op::*;
    match op {
        StringEquals => policy == request,
        StringEqualsIgnoreCase => {
            policy.eq_ignore_ascii_case(request) || policy.to_lowercase() == request.to_lowercase()
        }
        StringLike => glob(policy, request, false),
        NumericEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => {
            let (Some(p), Some(r)) = (parse_number(policy), parse_number(request)) else {
                return false;
            };
            compare(op, r, p)
        }
        DateEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => {
            let (Some(p), Some(r)) = (parse_date(policy), parse_date(request)) else {
                return false;
            };
            compare(op, r, p)
        }
        Bool => policy.eq_ignore_ascii_case(request),
        ArnEquals | ArnLike => arn_like(policy, request),
        IpAddress => in_cidr(request, policy),
        _ => false,
    }
}

fn compare(op: Op, request: f64, policy: f64) -> bool {
    use Op::*;
    match op {
        NumericEquals | DateEquals => request == policy,
        NumericLessThan | DateLessThan => request < policy,
        NumericLessThanEquals | DateLessThanEquals => request <= policy,
        NumericGreaterThan | DateGreaterThan => request > policy,
        NumericGreaterThanEquals | DateGreaterThanEquals => request >= policy,
        _ => false,
    }
}

impl Condition {
    /// Whether the condition holds for the request, in a statement of `effect`.
    pub fn holds(&self, req: &Request, effect: Effect) -> bool {
        let present = req.value(&self.key).filter(|v| !v.is_empty());
        if self.op == Op::Null {
            // The values listed are ORed: `["true","false"]` holds either way.
            let absent = present.is_none();
            return (self.values.iter()).any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let Some(values) = present else {
            return match self.qualifier {
                Some(Qualifier::ForAllValues) => true,
                Some(Qualifier::ForAnyValue) => false,
                None => self.if_exists || self.op.negated(),
            };
        };
        if values.len() > 1 && req.alternatives.contains(&self.key) {
            // The request holds one of these values, and which one is ambiguous: read it the
            // way that lets fewer requests through (fail closed).
            let one = |v: &String| self.holds_on(std::slice::from_ref(v), req);
            return match effect {
                Effect::Allow => values.iter().all(one),
                Effect::Deny => values.iter().any(one),
            };
        }
        self.holds_on(values, req)
    }

    /// Whether the condition holds for `values`, the request's values of its key.
    fn holds_on(&self, values: &[String], req: &Request) -> bool {
        let positive = self.op.positive();
        // Does one request value match any policy value (positive form)?
        let resolved: Option<Vec<Option<Vec<Piece>>>> = self.variables.then(|| {
            self.values
                .iter()
                .map(|v| variables::resolve(v, req))
                .collect()
        });
        let hit = |r: &String| match &resolved {
            None => self.values.iter().any(|p| matches_one(positive, p, r)),
            // A value with a variable that has no value matches nothing.
            Some(values) => values
                .iter()
                .flatten()
                .any(|p| matches_pieces(positive, p, r)),
        };
        let result = match self.qualifier {
            Some(Qualifier::ForAllValues) => {
                if self.op.negated() {
                    values.iter().all(|r| !hit(r))
                } else {
                    values.iter().all(hit)
                }
            }
            Some(Qualifier::ForAnyValue) => {
                if self.op.negated() {
                    values.iter().any(|r| !hit(r))
                } else {
                    values.iter().any(hit)
                }
            }
            None => {
                let any = values.iter().any(hit);
                if self.op.negated() {
                    !any
                } else {
                    any
                }
            }
        };
        result
    }
}
