//! A component that evaluates flags in-process through the
//! `dol:platform/flag-evaluator` import, satisfied at load time by composing
//! the `flag-evaluate` component as a dependency.
//! `POST /eval/<flag>` with an evaluation context (JSON object) as the body
//! answers the evaluation as JSON.

// wit-bindgen's import glue needs `unsafe`; the allow covers the generated code only.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "dol:platform/flags-consumer",
        generate_all,
    });
}

// spin-sdk's `#[http_component]` expands to an `#[export_name]` function.
#[allow(unsafe_code)]
mod http {
    use serde_json::json;
    use spin_sdk::http::{IntoResponse, Request, Response};
    use spin_sdk::http_component;

    use crate::bindings::dol::platform::flag_evaluator::{evaluate, flush_counts};

    /// Evaluates the flag named by the last path segment.
    #[http_component]
    fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
        let flag = request
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let context = String::from_utf8_lossy(request.body()).into_owned();
        let evaluation = evaluate(&flag, &context);
        // A fresh instance per request (WASI 0.2): counted at once.
        flush_counts();
        let value: serde_json::Value = match &evaluation.value_json {
            Some(text) => serde_json::from_str(text)?,
            None => serde_json::Value::Null,
        };
        let body = json!({
            "key": flag,
            "value": value,
            "variant": evaluation.variant,
            "reason": evaluation.reason,
            "errorCode": evaluation.error_code,
            "errorMessage": evaluation.error_message,
            "flagSetVersion": evaluation.flag_set_version,
        });
        Ok(Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body.to_string())
            .build())
    }
}
