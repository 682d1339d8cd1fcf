//! flagd's custom JsonLogic operators: `fractional`, `sem_ver`,
//! `starts_with`, `ends_with`.
//!
//! Each returns `null` rather than an error on bad input, because flagd
//! treats `null` as "no decision" (the default variant applies) while an
//! error would turn the whole evaluation into an ERROR.

use datalogic_rs::operator::EvalContext;
use datalogic_rs::{CustomOperator, DataValue, bumpalo::Bump};
use serde_json::Value;

use super::jsstr::js_string;
use super::murmur::murmur3_x86_32;
use super::semver::parse_lenient;

/// Key under which the evaluator injects flag properties into the context.
pub const FLAGD_KEY: &str = "$flagd";
/// Context key that carries the targeting key.
pub const TARGETING_KEY: &str = "targetingKey";

/// flagd refuses weight totals above i32::MAX.
const MAX_TOTAL_WEIGHT: f64 = 2_147_483_647.0;

/// Signature shared by the operator implementations: evaluated arguments
/// plus the root evaluation data (for `$flagd` and `targetingKey`).
type OpFn = fn(&[Value], &DataValue<'_>) -> Value;

/// Adapter from an [`OpFn`] to datalogic's operator trait.
pub struct Op(pub OpFn);

impl CustomOperator for Op {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let values: Vec<Value> = args.iter().map(|a| a.to_serde_value()).collect();
        let out = (self.0)(&values, ctx.root_input());
        Ok(arena.alloc(DataValue::from_serde_value_in(&out, arena)))
    }
}

/// `starts_with`: `[string, prefix]`, both strings, else `null`.
pub fn starts_with(args: &[Value], _root: &DataValue<'_>) -> Value {
    match args {
        [Value::String(s), Value::String(p)] => Value::Bool(s.starts_with(p.as_str())),
        _ => Value::Null,
    }
}

/// `ends_with`: `[string, suffix]`, both strings, else `null`.
pub fn ends_with(args: &[Value], _root: &DataValue<'_>) -> Value {
    match args {
        [Value::String(s), Value::String(p)] => Value::Bool(s.ends_with(p.as_str())),
        _ => Value::Null,
    }
}

/// `cat` as flagd-core's JsonLogic computes it: JavaScript string
/// concatenation, so `null` reads "null", `1.0` reads "1" and `[1,2]` reads
/// "1,2". This matters because `cat` usually builds fractional bucketing
/// keys, and a different string lands in a different bucket.
pub fn cat(args: &[Value], _root: &DataValue<'_>) -> Value {
    Value::String(args.iter().map(js_string).collect())
}

/// `sem_ver`: `[version, operator, version]`; `null` when either side is not
/// a version or the operator is unknown.
pub fn sem_ver(args: &[Value], _root: &DataValue<'_>) -> Value {
    let [left, op, right] = args else {
        return Value::Null;
    };
    // flagd stringifies both sides first, so numbers like 1.2 are versions.
    let (Some(a), Some(b)) = (
        parse_lenient(&js_string(left)),
        parse_lenient(&js_string(right)),
    ) else {
        return Value::Null;
    };
    let ord = a.precedence(&b);
    let result = match js_string(op).as_str() {
        "=" => ord.is_eq(),
        "!=" => ord.is_ne(),
        "<" => ord.is_lt(),
        "<=" => ord.is_le(),
        ">" => ord.is_gt(),
        ">=" => ord.is_ge(),
        "^" => a.major == b.major,
        "~" => a.major == b.major && a.minor == b.minor,
        _ => return Value::Null,
    };
    Value::Bool(result)
}

/// `fractional`: deterministic weighted bucketing (flagd's v2 algorithm).
pub fn fractional(args: &[Value], root: &DataValue<'_>) -> Value {
    let (bucket_by, buckets) = match args.first() {
        None => return Value::Null,
        Some(Value::String(key)) => (key.clone(), &args[1..]),
        Some(_) => {
            // Without an explicit key flagd buckets on flagKey + targetingKey,
            // and a falsy targeting key (absent, "", 0, false) means no
            // decision.
            let tk = root[TARGETING_KEY].to_serde_value();
            if !js_truthy(&tk) {
                return Value::Null;
            }
            let flag_key = root[FLAGD_KEY]["flagKey"].to_serde_value();
            let flag_key = if flag_key.is_null() {
                String::new()
            } else {
                js_string(&flag_key)
            };
            (format!("{flag_key}{}", js_string(&tk)), args)
        }
    };
    let Some((entries, total)) = bucket_list(buckets) else {
        return Value::Null;
    };
    pick_bucket(bucket_by.as_bytes(), &entries, total)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Choose the entry for `key`: `bucket = (hash × total) >> 32`, then the
/// first entry whose running weight sum exceeds the bucket. Public within
/// the crate so property tests can exercise the arithmetic directly.
pub(crate) fn pick_bucket<'v>(
    key: &[u8],
    entries: &'v [(Value, u64)],
    total: u64,
) -> Option<&'v Value> {
    let hash = u64::from(murmur3_x86_32(key, 0));
    // total ≤ i32::MAX and hash < 2^32, so the product fits in u64.
    let bucket = (hash * total) >> 32;
    let mut sum = 0u64;
    entries.iter().find_map(|(variant, weight)| {
        sum += weight;
        (sum > bucket).then_some(variant)
    })
}

/// Validate bucket entries `[variant]` / `[variant, weight]`; `None` when any
/// entry is malformed or the total weight is too large.
pub(crate) fn bucket_list(buckets: &[Value]) -> Option<(Vec<(Value, u64)>, u64)> {
    let mut entries = Vec::with_capacity(buckets.len());
    let mut total = 0f64;
    for bucket in buckets {
        let Value::Array(entry) = bucket else {
            return None;
        };
        let (variant, weight) = match entry.as_slice() {
            [v] => (v, None),
            [v, w] => (v, Some(w)),
            _ => return None,
        };
        if matches!(variant, Value::Array(_) | Value::Object(_)) {
            return None;
        }
        let weight = match weight {
            None => 1.0,
            Some(Value::Number(n)) => {
                let w = n.as_f64().unwrap_or(f64::NAN);
                if !w.is_finite() || w.fract() != 0.0 {
                    return None;
                }
                // Negative weights come out of rollout arithmetic; flagd
                // clamps them to zero instead of rejecting the rule.
                w.max(0.0)
            }
            Some(_) => return None,
        };
        total += weight;
        if total > MAX_TOTAL_WEIGHT {
            return None;
        }
        entries.push((variant.clone(), weight as u64));
    }
    Some((entries, total as u64))
}

/// JavaScript truthiness of a JSON value.
fn js_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none() -> DataValue<'static> {
        DataValue::Null
    }

    #[test]
    fn sem_ver_operators() {
        let r = none();
        assert_eq!(
            sem_ver(&[json!("1.2.3"), json!("<"), json!("1.3.0")], &r),
            json!(true)
        );
        assert_eq!(
            sem_ver(&[json!("1.2.3"), json!("^"), json!("1.9.0")], &r),
            json!(true)
        );
        assert_eq!(
            sem_ver(&[json!("1.2.3"), json!("~"), json!("1.3.0")], &r),
            json!(false)
        );
        assert_eq!(
            sem_ver(&[json!(1.2), json!(">="), json!("1.2.0")], &r),
            json!(true)
        );
        assert_eq!(
            sem_ver(&[json!("1.2.3"), json!("==="), json!("1.2.3")], &r),
            json!(null)
        );
        assert_eq!(
            sem_ver(&[json!("x"), json!("="), json!("1.2.3")], &r),
            json!(null)
        );
    }

    #[test]
    fn string_operators_need_two_strings() {
        let r = none();
        assert_eq!(starts_with(&[json!("abc"), json!("ab")], &r), json!(true));
        assert_eq!(ends_with(&[json!("abc"), json!("bc")], &r), json!(true));
        assert_eq!(starts_with(&[json!(123), json!("1")], &r), json!(null));
        assert_eq!(ends_with(&[json!("abc")], &r), json!(null));
    }

    #[test]
    fn fractional_rejects_bad_buckets() {
        let r = none();
        assert_eq!(
            fractional(&[json!("k"), json!(["a", 1.5])], &r),
            json!(null)
        );
        assert_eq!(
            fractional(&[json!("k"), json!([{"x": 1}, 1])], &r),
            json!(null)
        );
        assert_eq!(fractional(&[json!("k"), json!(["a", 0])], &r), json!(null));
        assert_eq!(
            fractional(&[json!("k"), json!(["a", 2_147_483_648u64])], &r),
            json!(null)
        );
        assert_eq!(
            fractional(&[json!("k"), json!(["a", -5]), json!(["b", 1])], &r),
            json!("b")
        );
        // No explicit key and no targeting key in the data: no decision.
        assert_eq!(fractional(&[json!(["a", 1])], &r), json!(null));
    }
}
