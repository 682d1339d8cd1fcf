//! Directory-style cases: `tests/apps/<case>/spin.toml` plus `expect.toml`
//! saying either which start-up error the host must give, or which requests
//! must get which answers. One test per case, so a failure names its case.

use std::path::Path;

use dol_test_support::{TestHost, workspace_root};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Substrings the start-up error must contain (the host must refuse to start).
    #[serde(default)]
    start_error: Vec<String>,
    /// `SPIN_VARIABLE_*` values to set.
    #[serde(default)]
    variables: Vec<(String, String)>,
    #[serde(default)]
    request: Vec<ExpectedRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRequest {
    method: String,
    path: String,
    #[serde(default)]
    body: String,
    status: u16,
    /// Substrings the response body must contain.
    #[serde(default)]
    body_contains: Vec<String>,
}

async fn run_case(case: &str) {
    let dir = workspace_root().join("tests/apps").join(case);
    let expect_text = std::fs::read_to_string(dir.join("expect.toml"))
        .unwrap_or_else(|e| panic!("{case}: reading expect.toml: {e}"));
    let expect: Expect =
        toml::from_str(&expect_text).unwrap_or_else(|e| panic!("{case}: expect.toml: {e}"));
    assert!(
        expect.start_error.is_empty() != expect.request.is_empty(),
        "{case}: expect.toml needs either start_error or requests"
    );
    let mut builder = TestHost::builder(Path::new("tests/apps").join(case).join("spin.toml"));
    for (name, value) in &expect.variables {
        builder = builder.variable(name, value);
    }
    let started = builder.try_start().await;
    if !expect.start_error.is_empty() {
        let error = match started {
            Ok(host) => {
                host.app.shutdown().await;
                panic!("{case}: the host started but should have refused");
            }
            Err(error) => format!("{error:#}"),
        };
        for needle in &expect.start_error {
            assert!(
                error.contains(needle.as_str()),
                "{case}: start error lacks {needle:?}:\n{error}"
            );
        }
        return;
    }
    let host = started.unwrap_or_else(|e| panic!("{case}: host did not start: {e:#}"));
    for request in &expect.request {
        let (status, body) = host
            .send_json(&request.method, &request.path, &request.body)
            .await;
        let text = body.to_string();
        assert_eq!(
            status, request.status,
            "{case}: {} {} → {text}",
            request.method, request.path
        );
        for needle in &request.body_contains {
            assert!(
                text.contains(needle.as_str()),
                "{case}: {} {}: body lacks {needle:?}: {text}",
                request.method,
                request.path
            );
        }
    }
    host.app.shutdown().await;
}

/// Every case folder must have a test below: a new case without one fails here.
#[test]
fn every_case_folder_is_tested() {
    let listed: Vec<String> = std::fs::read_dir(workspace_root().join("tests/apps"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("expect.toml").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let source = include_str!("apps.rs");
    for case in listed {
        assert!(
            source.contains(&format!("case!({}, ", case.replace('-', "_"))),
            "tests/apps/{case} has no case! line in apps.rs"
        );
    }
}

macro_rules! case {
    ($name:ident, $dir:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run_case($dir).await;
        }
    };
}

// Manifest problems: the host refuses to start and says where and why.
case!(manifest_version_1, "manifest-version-1");
case!(unknown_trigger_component, "unknown-trigger-component");
case!(unsupported_files, "unsupported-files");
case!(unsupported_redis_trigger, "unsupported-redis-trigger");
case!(missing_required_variable, "missing-required-variable");
case!(undeclared_variable_template, "undeclared-variable-template");
case!(five_field_cron, "five-field-cron");
case!(duplicate_route, "duplicate-route");
case!(missing_wasm, "missing-wasm");
case!(undefined_store_label, "undefined-store-label");
// Permission denials: the guest gets Spin's error, the host keeps serving.
case!(kv_not_granted, "kv-not-granted");
case!(kv_other_store, "kv-other-store");
case!(sqlite_not_granted, "sqlite-not-granted");
case!(sqlite3_not_granted, "sqlite3-not-granted");
case!(outbound_not_allowed, "outbound-not-allowed");
case!(variable_undeclared, "variable-undeclared");
case!(variable_invalid_name, "variable-invalid-name");
case!(private_route, "private-route");
// Service chaining and self requests stay in-process.
case!(service_chaining, "service-chaining");
case!(chaining_not_allowed, "chaining-not-allowed");
case!(self_request, "self-request");
// Component dependencies are composed at load time.
case!(dependencies_composed, "dependencies-composed");
case!(dependency_unknown_import, "dependency-unknown-import");
case!(dependency_capabilities, "dependency-capabilities");
case!(dependency_environment, "dependency-environment");
case!(dependency_missing_export, "dependency-missing-export");
