//! Flags in-process: a component importing `dol:platform/flag-evaluator`,
//! composed with the `flag-evaluate` component as a dependency, gets exactly
//! the answers OFREP gives over HTTP.

use dol_test_support::TestHost;
use serde_json::json;

const APP: &str = "tests/apps/flags-in-process/spin.toml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_evaluation_matches_ofrep() {
    let host = TestHost::builder(APP).start().await;
    let contexts = [
        json!({"targetingKey": "user-1", "maturityPhase": "run", "orgId": "org-7"}),
        json!({"targetingKey": "user-2", "maturityPhase": "walk"}),
        json!({"targetingKey": "user-3", "maturityPhase": "crawl"}),
        json!({"targetingKey": "user-4"}),
        json!({}),
    ];
    let flags = [
        "complete_context",
        "comprehensive_engines",
        "genre_engines",
        "beta_features",
        "generation_experiment",
    ];
    for flag in flags {
        for context in &contexts {
            let (status, in_process) = host
                .send_json("POST", &format!("/eval/{flag}"), &context.to_string())
                .await;
            assert_eq!(status, 200, "{in_process}");
            let (_, ofrep) = host
                .send_json(
                    "POST",
                    &format!("/ofrep/v1/evaluate/flags/{flag}"),
                    &json!({"context": context}).to_string(),
                )
                .await;
            assert_eq!(
                in_process["reason"], ofrep["reason"],
                "{flag} {context}: {in_process} vs {ofrep}"
            );
            assert_eq!(
                in_process["variant"], ofrep["variant"],
                "{flag} {context}: {in_process} vs {ofrep}"
            );
            // OFREP leaves `value` out when the caller's default applies.
            assert_eq!(
                in_process["value"],
                ofrep.get("value").cloned().unwrap_or_default(),
                "{flag} {context}"
            );
        }
    }
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_errors_use_openfeature_codes() {
    let host = TestHost::builder(APP).start().await;
    let (status, body) = host.send_json("POST", "/eval/no_such_flag", "{}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reason"], "ERROR");
    assert_eq!(body["errorCode"], "FLAG_NOT_FOUND");
    let (_, body) = host
        .send_json("POST", "/eval/complete_context", "[not a context]")
        .await;
    assert_eq!(body["errorCode"], "INVALID_CONTEXT", "{body}");
    host.app.shutdown().await;
}
