//! Spin's SQLite sandbox on `dol up`, through the probe guest over HTTP: guest
//! SQL cannot attach or write files outside its database, and a result larger
//! than Spin's buffering limit is a clean `io` error, not a trap or a host out
//! of memory. Also Spin's own SQLite runtime test, when the conformance data is
//! on this machine.

use std::path::Path;

use dol_test_support::{TestHost, TestHostBuilder};

const PROBE_APP: &str = "tests/apps/probe-basic/spin.toml";

/// Both SQLite interface versions the probe speaks.
const SQLITE_ROUTES: [&str; 2] = ["/probe/sqlite/default", "/probe/sqlite3/default"];

fn probe() -> TestHostBuilder {
    TestHost::builder(PROBE_APP).variable("SPIN_VARIABLE_SECRET_TOKEN", "s3cret")
}

/// `path` as a SQL string literal.
fn sql_literal(path: &Path) -> String {
    format!("'{}'", path.to_str().unwrap().replace('\'', "''"))
}

/// Runs `sql` on `route`; returns the Spin `io` error's detail, failing the
/// test when the statement succeeded or failed some other way.
async fn io_error(host: &TestHost, route: &str, sql: &str) -> String {
    let (status, body) = host.send_json("POST", route, sql).await;
    assert_eq!(status, 500, "{route} {sql}: {body}");
    assert_eq!(body["error"], "io", "{route} {sql}: {body}");
    body["detail"].as_str().unwrap_or_default().to_string()
}

async fn succeeds(host: &TestHost, route: &str, sql: &str) -> serde_json::Value {
    let (status, body) = host.send_json("POST", route, sql).await;
    assert_eq!(status, 200, "{route} {sql}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sql_cannot_create_files_outside_its_database() {
    let host = probe().start().await;
    let outside = tempfile::tempdir().unwrap();
    for (version, route) in SQLITE_ROUTES.iter().enumerate() {
        let attached = outside.path().join(format!("attached-{version}.db"));
        let detail = io_error(
            &host,
            route,
            &format!("ATTACH {} AS outside", sql_literal(&attached)),
        )
        .await;
        assert!(detail.contains("not authorized"), "{route}: {detail}");

        // A filename that is not a plain literal hides it from the authorizer.
        let text = attached.to_str().unwrap();
        let (head, tail) = text.split_at(text.len() / 2);
        let detail = io_error(
            &host,
            route,
            &format!("ATTACH '{head}' || '{tail}' AS outside"),
        )
        .await;
        assert!(detail.contains("not authorized"), "{route}: {detail}");
        assert!(
            !attached.exists(),
            "{route}: {} created",
            attached.display()
        );

        let copy = outside.path().join(format!("copy-{version}.db"));
        let detail = io_error(&host, route, &format!("VACUUM INTO {}", sql_literal(&copy))).await;
        assert!(detail.contains("authoriz"), "{route}: {detail}");
        assert!(!copy.exists(), "{route}: {} created", copy.display());

        // Temporary and in-memory databases stay allowed, as on Spin (a
        // pooled connection keeps what it attached, hence fresh names).
        succeeds(&host, route, &format!("ATTACH '' AS scratch_{version}")).await;
        succeeds(&host, route, &format!("ATTACH ':memory:' AS mem_{version}")).await;
        succeeds(&host, route, "VACUUM").await;
    }
    let created: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(created.is_empty(), "files appeared: {created:?}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_are_an_io_error_and_the_host_keeps_serving() {
    let host = probe().start().await;
    let [v2, v3] = SQLITE_ROUTES;
    // Spin's own runtime test: rows of 1 MiB, more than 128 MiB in all,
    // inserted server-side so the requests stay small.
    succeeds(&host, v3, "CREATE TABLE big (b BLOB)").await;
    succeeds(
        &host,
        v3,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 130)
         INSERT INTO big SELECT zeroblob(1048576) FROM n",
    )
    .await;
    for route in SQLITE_ROUTES {
        let detail = io_error(&host, route, "SELECT b FROM big").await;
        assert!(
            detail.contains("query result exceeds limit of 134217728 bytes"),
            "{route}: {detail}"
        );
    }
    // A generated result too, with nothing stored.
    let detail = io_error(
        &host,
        v2,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
         SELECT randomblob(1048576) FROM n",
    )
    .await;
    assert!(
        detail.contains("query result exceeds limit"),
        "v2: {detail}"
    );

    // Still serving, and a result under the limit still comes back whole.
    let body = succeeds(&host, v2, "SELECT count(*), sum(length(b)) FROM big").await;
    assert_eq!(body["rows"], serde_json::json!([[130, 130 * 1_048_576]]));
    let (status, body) = host.get_json("/probe/hello").await;
    assert_eq!(status, 200, "{body}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_s_pragma_never_reaches_the_next_request() {
    let host = probe().start().await;
    let [v2, v3] = SQLITE_ROUTES;
    succeeds(&host, v3, "CREATE TABLE p (id INTEGER PRIMARY KEY)").await;
    succeeds(&host, v3, "CREATE TABLE c (p INTEGER REFERENCES p(id))").await;
    let fresh = succeeds(&host, v3, "PRAGMA foreign_keys").await["rows"].clone();
    // Each request opens its connection anew, as on Spin: a setting one
    // request changes is gone for the next (it once came back from the pool).
    for (set, read) in [
        ("PRAGMA foreign_keys = OFF", "PRAGMA foreign_keys"),
        ("PRAGMA query_only = 1", "PRAGMA query_only"),
        ("PRAGMA case_sensitive_like = 1", "SELECT 'a' LIKE 'A'"),
    ] {
        succeeds(&host, v2, set).await;
        for _ in 0..4 {
            let after = succeeds(&host, v3, read).await["rows"].clone();
            let expected = match read {
                "PRAGMA foreign_keys" => fresh.clone(),
                _ if read.starts_with("SELECT") => serde_json::json!([[1]]),
                _ => serde_json::json!([[0]]),
            };
            assert_eq!(after, expected, "{set} reached a later request");
        }
    }
    succeeds(&host, v3, "INSERT INTO p VALUES (1)").await;
    // Nor does the previous request's last rowid or change count.
    succeeds(&host, v3, "INSERT INTO p VALUES (41), (42)").await;
    let (status, fresh) = host.get_json("/probe/sqlite3-fresh/default").await;
    assert_eq!(status, 200, "{fresh}");
    // Before any statement and after a SELECT (which moves neither).
    let zero = serde_json::json!({"last_insert_rowid": 0, "changes": 0});
    assert_eq!(
        fresh,
        serde_json::json!({"before": zero, "after_select": zero})
    );

    // Process-wide settings are refused outright.
    for route in SQLITE_ROUTES {
        let detail = io_error(&host, route, "PRAGMA hard_heap_limit = 3000000").await;
        assert!(detail.contains("not authorized"), "{route}: {detail}");
    }
    host.app.shutdown().await;
}

/// Spin's SQLite runtime test (`spin-runtime-tests/tests/sqlite`), run against
/// `dol up` the way Spin's runner does: fill in the component path, start the
/// host on the manifest, and `GET /` must answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_runtime_test_sqlite_passes() {
    let suite = Path::new("/work/shared/conformance/spin-runtime-tests");
    if !suite.is_dir() {
        let message = format!(
            "!!! SKIPPING Spin's SQLite runtime test: {} is missing !!!",
            suite.display()
        );
        eprintln!("\n{message}\n");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{message} (CI=true: the conformance data must be present)"
        );
        return;
    }
    let template = std::fs::read_to_string(suite.join("tests/sqlite/spin.toml")).unwrap();
    let wasm = suite.join("components/sqlite.wasm");
    let source = serde_json::to_string(wasm.to_str().unwrap()).unwrap();
    // `source = "%{source=sqlite}"`: the placeholder sits inside a TOML string.
    let manifest_text = template.replace("\"%{source=sqlite}\"", &source);
    assert_ne!(manifest_text, template, "the template changed shape");
    let app_dir = tempfile::tempdir().unwrap();
    let manifest = app_dir.path().join("spin.toml");
    std::fs::write(&manifest, manifest_text).unwrap();

    let host = TestHost::builder(&manifest).start().await;
    let response = host
        .client
        .get(host.url("/"))
        .header("host", "example.com")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "Spin's SQLite runtime test failed: {body}");
    host.app.shutdown().await;
}
