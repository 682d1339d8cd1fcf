//! The in-process face of the component: the `dol:platform/flag-evaluator` export, so a
//! component that lists this one as a dependency evaluates flags without an
//! HTTP hop and gets exactly the answers OFREP gives.

// wit-bindgen's canonical-ABI glue and `export!` need `unsafe` and
// `#[export_name]`; the allow covers the generated code only.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "dol:platform/flags-provider",
        generate_all,
    });

    use super::Provider;
    export!(Provider with_types_in self);
}

use bindings::exports::dol::platform::flag_evaluator::{Evaluation, Guest};
use dol_core::flags::ofrep;

use dol_spin_platform as platform;

use crate::store;

struct Provider;

impl Guest for Provider {
    fn evaluate(flag_key: String, context_json: String) -> Evaluation {
        let context = match ofrep::parse_context(&context_json) {
            Ok(context) => context,
            Err(error) => return failed(error.code.as_str(), error.details, -1),
        };
        let (version, set) = match store::current_for(&flag_key) {
            Ok(current) => current,
            Err(error) => {
                // Same policy as the HTTP side: details go to the log, not the caller.
                eprintln!("flag-evaluate: loading flags failed: {error:#}");
                return failed("GENERAL", "flag storage unavailable".to_owned(), -1);
            }
        };
        let now = u64::try_from(platform::now_ms() / 1000).unwrap_or_default();
        let evaluation = set.evaluate(&flag_key, &context, now);
        crate::counting::add_one(
            &flag_key,
            evaluation.variant.as_deref(),
            evaluation.reason.as_str(),
            evaluation.error.as_ref().map(|e| e.code.as_str()),
        );
        Evaluation {
            value_json: evaluation.value.as_ref().map(ToString::to_string),
            variant: evaluation.variant,
            reason: evaluation.reason.as_str().to_owned(),
            error_code: evaluation
                .error
                .as_ref()
                .map(|e| e.code.as_str().to_owned()),
            error_message: evaluation.error.map(|e| e.message),
            flag_set_version: version,
        }
    }

    fn flush_counts() {
        crate::counting::flush();
    }

    fn declared_variants(flag_key: String) -> Result<Option<Vec<String>>, String> {
        let (_, set) = store::current().map_err(|error| {
            eprintln!("flag-evaluate: loading flags failed: {error:#}");
            "flag storage unavailable".to_owned()
        })?;
        Ok(set.variants(&flag_key))
    }
}

fn failed(code: &str, message: String, version: i64) -> Evaluation {
    Evaluation {
        value_json: None,
        variant: None,
        reason: "ERROR".to_owned(),
        error_code: Some(code.to_owned()),
        error_message: Some(message),
        flag_set_version: version,
    }
}
