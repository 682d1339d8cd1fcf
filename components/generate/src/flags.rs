//! The entry tier from a feature flag, evaluated in-process through the
//! `dol:platform/flag-evaluator` import (the flag-evaluate component,
//! composed as a Spin component dependency).

// wit-bindgen's import glue needs `unsafe`; the allow covers the generated code only.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "dol:platform/flags-consumer",
        generate_all,
    });
}

use std::cell::Cell;

use dol_core::experiments::attribution::Served;
use dol_core::gateway::tiers::EntryTier;
use serde_json::json;

thread_local! {
    /// Whether a `flush-counts` is scheduled on this instance.
    static FLUSH_SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

/// Evaluates `flag` in the composed evaluator and has the evaluation
/// counted with the others of the next
/// [`dol_core::observe::flag_counts::FLUSH_AFTER_MS`].
fn evaluate(flag: &str, context: &str) -> bindings::dol::platform::flag_evaluator::Evaluation {
    let evaluation = bindings::dol::platform::flag_evaluator::evaluate(flag, context);
    if !FLUSH_SCHEDULED.replace(true) {
        dol_spin_platform::service::run_after(
            dol_core::observe::flag_counts::FLUSH_AFTER_MS,
            || {
                FLUSH_SCHEDULED.set(false);
                bindings::dol::platform::flag_evaluator::flush_counts();
            },
        );
    }
    evaluation
}

/// The tier the flag serves for this caller (a tier or `auto`), with the variant name.
pub fn entry_tier(
    flag: &str,
    targeting_key: &str,
    key_id: &str,
    model: &str,
) -> Option<(EntryTier, String)> {
    if flag.is_empty() {
        return None;
    }
    let context = json!({
        "targetingKey": targeting_key,
        "keyId": key_id,
        "model": model,
    });
    let e = evaluate(flag, &context.to_string());
    if let Some(code) = &e.error_code {
        // A missing or broken flag must not break generation: fall back to the default tier.
        if code != "FLAG_NOT_FOUND" {
            eprintln!("generate: flag {flag} evaluation failed: {code}");
        }
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(e.value_json.as_deref()?).ok()?;
    let tier = EntryTier::parse(value.as_str()?)?;
    Some((tier, e.variant.unwrap_or_else(|| tier.as_str().to_owned())))
}

/// The variant `flag` serves to `targeting_key` with the extra `context`
/// attributes (the same answer OFREP gives).
pub fn served_variant(
    flag: &str,
    targeting_key: &str,
    context: &serde_json::Map<String, serde_json::Value>,
) -> Served {
    let mut ctx = context.clone();
    ctx.insert(
        "targetingKey".to_owned(),
        serde_json::Value::String(targeting_key.to_owned()),
    );
    let e = evaluate(flag, &serde_json::Value::Object(ctx).to_string());
    match (e.error_code.as_deref(), e.variant) {
        (Some("FLAG_NOT_FOUND"), _) => Served::NotFound,
        (Some(code), _) => Served::NoVariant(format!(
            "evaluation failed: {code}{}",
            e.error_message
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )),
        (None, Some(v)) => Served::Variant(v),
        (None, None) => Served::NoVariant(format!("reason {}", e.reason)),
    }
}

/// The variant names `flag` declares (`None`: no such flag); `Err` is the
/// evaluator's storage failure, for the log.
pub fn declared_variants(flag: &str) -> Result<Option<Vec<String>>, String> {
    bindings::dol::platform::flag_evaluator::declared_variants(flag)
}
