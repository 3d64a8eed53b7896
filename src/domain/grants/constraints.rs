//! Grant constraints: how a grant's encryption context constraints are stored and read back,
//! whether a request's encryption context meets them, and whether a grant created by a grantee
//! is at least as strict as the grant it was created with.

use crate::domain::Context;

/// A grant's encryption context constraint (`EncryptionContextEquals` or
/// `EncryptionContextSubset`; a grant holds at most one).
#[derive(Debug, Clone, Default)]
pub struct Constraints {
    pub equals: Option<Context>,
    pub subset: Option<Context>,
}

/// AWS's bounds on a grant constraint: "Each constraint value can include up to 8 encryption
/// context pairs. The encryption context value in each constraint cannot exceed 384
/// characters." Every call on the key reads its grants' constraints, so an unbounded one would
/// make each call on the key cost what its grantor chose.
pub const MAX_CONSTRAINT_PAIRS: usize = 8;
pub const MAX_CONSTRAINT_CHARS: usize = 384;

impl Constraints {
    /// Refused with `ValidationException` beyond AWS's bounds (each key and each value at most
    /// 384 characters, at most 8 pairs).
    pub fn within_limits(&self) -> Result<(), crate::domain::KmsError> {
        for (name, ctx) in [
            ("EncryptionContextEquals", &self.equals),
            ("EncryptionContextSubset", &self.subset),
        ] {
            let Some(ctx) = ctx else { continue };
            if ctx.len() > MAX_CONSTRAINT_PAIRS {
                return Err(crate::domain::KmsError::Validation(format!(
                    "The {name} grant constraint has {} encryption context pairs: it can include up to {MAX_CONSTRAINT_PAIRS}.",
                    ctx.len()
                )));
            }
            if ctx.iter().any(|(k, v)| {
                k.chars().count() > MAX_CONSTRAINT_CHARS || v.chars().count() > MAX_CONSTRAINT_CHARS
            }) {
                return Err(crate::domain::KmsError::Validation(format!(
                    "An encryption context key or value in the {name} grant constraint exceeds {MAX_CONSTRAINT_CHARS} characters."
                )));
            }
        }
        Ok(())
    }
}

pub(super) fn constraints_json(c: &Constraints) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    if let Some(e) = &c.equals {
        v.insert(
            "EncryptionContextEquals".into(),
            serde_json::to_value(e).unwrap_or_default(),
        );
    }
    if let Some(s) = &c.subset {
        v.insert(
            "EncryptionContextSubset".into(),
            serde_json::to_value(s).unwrap_or_default(),
        );
    }
    serde_json::Value::Object(v)
}

/// A stored grant's constraints, read strictly: `None` when the stored form has a member this
/// service does not know or a value it cannot read, and such a grant allows nothing (fail
/// closed: a constraint that cannot be evaluated never widens a grant).
pub(super) fn stored_constraints(v: &serde_json::Value) -> Option<Constraints> {
    let obj = v.as_object()?;
    let mut c = Constraints::default();
    for (name, value) in obj {
        let ctx: Context = serde_json::from_value(value.clone()).ok()?;
        match name.as_str() {
            "EncryptionContextEquals" => c.equals = Some(ctx),
            "EncryptionContextSubset" => c.subset = Some(ctx),
            _ => return None,
        }
    }
    if c.equals.is_some() && c.subset.is_some() {
        return None;
    }
    // `{}` (stored for an empty `Constraints` before empty ones were dropped) constrains nothing.
    Some(c)
}

/// A context with its keys lower-cased (grant constraints compare keys without case, values
/// with it); `None` when two keys differ only by case, which no constraint can decide.
pub(super) type Folded<'a> = Option<std::collections::BTreeMap<String, &'a str>>;

/// A request's encryption context, [`folded`] the first time a constrained grant asks for it
/// (once per call, however many grants ask; most calls meet none, and fold nothing).
pub(super) struct LazyContext<'a> {
    ctx: Option<&'a Context>,
    folded: std::cell::OnceCell<Folded<'a>>,
}

impl<'a> LazyContext<'a> {
    pub(super) fn new(ctx: Option<&'a Context>) -> Self {
        let folded = std::cell::OnceCell::new();
        LazyContext { ctx, folded }
    }

    /// The context folded; a request without one has an empty one.
    pub(super) fn get(&self) -> &Folded<'a> {
        (self.folded).get_or_init(|| self.ctx.map_or_else(|| Some(Default::default()), folded))
    }
}

/// [`Folded`] of `ctx`.
pub(super) fn folded(ctx: &Context) -> Folded<'_> {
    let out: std::collections::BTreeMap<String, &str> = ctx
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.as_str()))
        .collect();
    (out.len() == ctx.len()).then_some(out)
}

/// Whether every pair of `sub` is in `ctx` (keys without case).
fn includes(ctx: &Context, sub: &Context) -> bool {
    let (Some(ctx), Some(sub)) = (folded(ctx), folded(sub)) else {
        return false;
    };
    sub.iter().all(|(k, v)| ctx.get(k) == Some(v))
}

/// Whether two contexts hold the same pairs (keys without case).
fn same_pairs(a: &Context, b: &Context) -> bool {
    matches!((folded(a), folded(b)), (Some(a), Some(b)) if a == b)
}

impl Constraints {
    /// Whether a request's encryption context, [`folded`] (once for all the grants it is held
    /// to: a context of many pairs is not folded again for each), satisfies these constraints.
    pub(super) fn admit(&self, ctx: &Folded) -> bool {
        let Some(ctx) = ctx else {
            return self.equals.is_none() && self.subset.is_none();
        };
        if let Some(eq) = &self.equals {
            if folded(eq).as_ref() != Some(ctx) {
                return false;
            }
        }
        if let Some(sub) = &self.subset {
            match folded(sub) {
                Some(sub) if sub.iter().all(|(k, v)| ctx.get(k) == Some(v)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether a grant with `child` constraints allows no context that these do not: AWS's
    /// rule for grants created by a grantee ("at least as strict").
    pub(super) fn at_least_as_strict(&self, child: Option<&Constraints>) -> bool {
        if self.equals.is_none() && self.subset.is_none() {
            return true;
        }
        let Some(child) = child else { return false };
        match (&self.equals, &self.subset, &child.equals, &child.subset) {
            // Equals admits exactly one context: only the same Equals is as strict.
            (Some(p), None, Some(c), None) => same_pairs(p, c),
            // Subset admits every context holding its pairs: so must the child's.
            (None, Some(p), Some(c), None) | (None, Some(p), None, Some(c)) => includes(c, p),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    /// [`Constraints::admit`] of a context as a request gives it.
    fn admits(c: &super::Constraints, ctx: &super::Context) -> bool {
        c.admit(&super::folded(ctx))
    }
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn constraints_read_strictly_and_compare_keys_without_case() {
        // An empty stored object constrains nothing; an unknown member or both kinds allow nothing.
        let empty = stored_constraints(&serde_json::json!({})).unwrap();
        assert!(admits(&empty, &ctx(&[("a", "1")])));
        assert!(stored_constraints(&serde_json::json!({"SourceArn": "x"})).is_none());
        assert!(stored_constraints(&serde_json::json!({
            "EncryptionContextEquals": {}, "EncryptionContextSubset": {}
        }))
        .is_none());
        let sub =
            stored_constraints(&serde_json::json!({"EncryptionContextSubset": {"Dept": "IT"}}))
                .unwrap();
        assert!(admits(&sub, &ctx(&[("dept", "IT"), ("x", "y")])));
        assert!(!admits(&sub, &ctx(&[("dept", "it")])));
        // Two keys that differ only by case decide nothing, in the context or the constraint.
        assert!(!admits(&sub, &ctx(&[("dept", "IT"), ("DEPT", "IT")])));
        for kind in ["EncryptionContextSubset", "EncryptionContextEquals"] {
            let twice =
                stored_constraints(&serde_json::json!({kind: {"a": "1", "A": "1"}})).unwrap();
            for c in [&[("a", "1")][..], &[("A", "1")], &[("a", "1"), ("A", "1")]] {
                assert!(!admits(&twice, &ctx(c)), "{kind} {c:?}");
            }
        }
    }

    #[test]
    fn a_child_grant_is_at_most_as_wide_as_its_parent() {
        let sub = |p: &[(&str, &str)]| Constraints {
            equals: None,
            subset: Some(ctx(p)),
        };
        let eq = |p: &[(&str, &str)]| Constraints {
            equals: Some(ctx(p)),
            subset: None,
        };
        let none = Constraints::default();
        assert!(none.at_least_as_strict(None));
        assert!(!sub(&[("a", "1")]).at_least_as_strict(None));
        assert!(sub(&[("a", "1")]).at_least_as_strict(Some(&sub(&[("A", "1"), ("b", "2")]))));
        assert!(!sub(&[("a", "1")]).at_least_as_strict(Some(&sub(&[("b", "2")]))));
        assert!(sub(&[("a", "1")]).at_least_as_strict(Some(&eq(&[("a", "1"), ("b", "2")]))));
        assert!(eq(&[("a", "1")]).at_least_as_strict(Some(&eq(&[("A", "1")]))));
        assert!(!eq(&[("a", "1")]).at_least_as_strict(Some(&sub(&[("a", "1")]))));
        assert!(!eq(&[("a", "1")]).at_least_as_strict(Some(&eq(&[("a", "1"), ("b", "2")]))));
    }
}
