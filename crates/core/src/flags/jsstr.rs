//! JavaScript `String(x)` for JSON values.
//!
//! flagd turns a targeting result into a variant name with `toString()` and
//! feeds `sem_ver` arguments through `String()`; matching those conversions
//! keeps our variant lookups identical to flagd's.

use serde_json::Value;

/// `String(value)` as JavaScript computes it for a JSON value.
pub fn js_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => js_number(n),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            // Array.prototype.join renders null (and undefined) elements as "".
            let parts: Vec<String> = items
                .iter()
                .map(|v| {
                    if v.is_null() {
                        String::new()
                    } else {
                        js_string(v)
                    }
                })
                .collect();
            parts.join(",")
        }
        Value::Object(_) => "[object Object]".to_owned(),
    }
}

/// `Number.prototype.toString()` for a JSON number.
pub fn js_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    js_f64(n.as_f64().unwrap_or(0.0))
}

fn js_f64(x: f64) -> String {
    if x == 0.0 {
        // JS prints -0 as "0".
        return "0".to_owned();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".to_owned()
        } else if x > 0.0 {
            "Infinity".to_owned()
        } else {
            "-Infinity".to_owned()
        };
    }
    let abs = x.abs();
    if !(1e-6..1e21).contains(&abs) {
        // JS switches to exponent notation outside [1e-6, 1e21) and always
        // signs the exponent.
        let s = format!("{x:e}");
        return match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        };
    }
    // Rust's shortest round-trip Display matches JS inside that range and
    // prints whole floats without a fraction, like JS.
    format!("{x}")
}

#[cfg(test)]
mod tests {
    use super::js_string;
    use serde_json::json;

    #[test]
    fn matches_javascript() {
        assert_eq!(js_string(&json!(null)), "null");
        assert_eq!(js_string(&json!(true)), "true");
        assert_eq!(js_string(&json!(2.0)), "2");
        assert_eq!(js_string(&json!(1.5)), "1.5");
        assert_eq!(js_string(&json!(-0.0)), "0");
        assert_eq!(js_string(&json!(1e21)), "1e+21");
        assert_eq!(js_string(&json!(1.5e-7)), "1.5e-7");
        assert_eq!(js_string(&json!(0.000001)), "0.000001");
        assert_eq!(js_string(&json!(["a", null, 1])), "a,,1");
        assert_eq!(js_string(&json!({"a": 1})), "[object Object]");
    }
}
