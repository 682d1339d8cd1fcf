//! Flag changes are served in order: with concurrent admin writers, every
//! acknowledged flag version is what OFREP and the in-process evaluator serve
//! next; a crash between a commit and its publication is repaired (at the
//! next evaluation when the write marked key-value, at the minute scan's
//! reconciliation otherwise).

use dol_test_support::TestHost;
use serde_json::{Value, json};

const ADMIN: &str = "admin-publication";
const WRITERS: usize = 6;
const WRITES: usize = 12;

fn flag(variant: &str) -> String {
    json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": variant})
        .to_string()
}

async fn put_flag(host: &TestHost, key: &str, variant: &str) -> (u16, Value) {
    let response = host
        .client
        .put(host.url(&format!("/admin/flags/{key}")))
        .bearer_auth(ADMIN)
        .body(flag(variant))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ofrep(host: &TestHost, key: &str) -> (u16, Value) {
    host.send_json(
        "POST",
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        &json!({"context": {"targetingKey": "u"}}).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_every_acknowledged_flag_is_served_by_ofrep_and_in_process() {
    let host = TestHost::builder("tests/apps/flags-in-process/spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .start()
        .await;
    // Readers keep evaluating while the writers write, so instances hold
    // compiled sets of every version as they go.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (url, client, stop) = (host.url(""), host.client.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client
                        .post(format!("{url}/ofrep/v1/evaluate/flags"))
                        .body(r#"{"context":{"targetingKey":"r"}}"#)
                        .send()
                        .await;
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let host = &host;
            async move {
                for i in 0..WRITES {
                    let key = format!("w{w}-{i}");
                    let variant = if i % 2 == 0 { "a" } else { "b" };
                    let (status, body) = put_flag(host, &key, variant).await;
                    assert_eq!(status, 200, "PUT {key}: {body}");
                    // Acknowledged: both evaluators serve it from now on.
                    let (status, served) = ofrep(host, &key).await;
                    assert_eq!(status, 200, "OFREP {key} after its PUT: {served}");
                    assert_eq!(served["variant"], variant, "{served}");
                    let (status, in_process) = host
                        .send_json("POST", &format!("/eval/{key}"), r#"{"targetingKey":"u"}"#)
                        .await;
                    assert_eq!(status, 200, "{in_process}");
                    assert_eq!(
                        in_process["variant"], variant,
                        "in-process {key}: {in_process}"
                    );
                }
            }
        })
        .collect();
    futures::future::join_all(writers).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    // Every flag is still served at the end, by the bulk evaluation too.
    let (status, bulk) = host
        .send_json(
            "POST",
            "/ofrep/v1/evaluate/flags",
            &json!({"context": {"targetingKey": "u"}}).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{bulk}");
    let served: Vec<&str> = bulk["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["key"].as_str())
        .collect();
    for w in 0..WRITERS {
        for i in 0..WRITES {
            let key = format!("w{w}-{i}");
            assert!(served.contains(&key.as_str()), "{key} missing from {bulk}");
        }
    }
    host.app.shutdown().await;
}

/// Commits a new flag version straight into the host's SQLite file, as a
/// flag write that crashed right after its `COMMIT` leaves it.
fn commit_without_publishing(host: &TestHost, key: &str, mark_unpublished: bool) {
    let db = rusqlite::Connection::open(host.state_dir().join("sqlite_db.db")).unwrap();
    let (version, document): (i64, String) = db
        .query_row(
            "SELECT version, document FROM flag_sets ORDER BY version DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut document: Value = serde_json::from_str(&document).unwrap();
    document["flags"][key] = serde_json::from_str(&flag("b")).unwrap();
    db.execute(
        "INSERT INTO flag_sets (version, document, kills, created_at, actor) VALUES (?1, ?2, '{}', 0, 'crash')",
        rusqlite::params![version + 1, document.to_string()],
    )
    .unwrap();
    if mark_unpublished {
        // What `flags::store::store_version` does inside the same transaction.
        let kv = rusqlite::Connection::open(host.state_dir().join("sqlite_key_value.db")).unwrap();
        kv.execute(
            "UPDATE spin_key_value SET value = ?1 WHERE store = 'default' AND key = ?2",
            rusqlite::params![
                dol_core::flags::store::UNPUBLISHED.as_bytes(),
                dol_core::flags::store::VERSION_KEY
            ],
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_publication_is_repaired() {
    let host = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .start()
        .await;
    let (status, body) = put_flag(&host, "before-crash", "a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ofrep(&host, "before-crash").await.0, 200);

    // The write marked key-value before committing: the very next
    // evaluation reads SQLite and serves (and publishes) the new version.
    commit_without_publishing(&host, "marked", true);
    let (status, served) = ofrep(&host, "marked").await;
    assert_eq!(status, 200, "{served}");
    assert_eq!(served["variant"], "b");

    // A version whose publication was lost without a mark: the rollouts
    // scan (every minute) reconciles key-value with SQLite.
    commit_without_publishing(&host, "unmarked", false);
    assert_eq!(
        ofrep(&host, "unmarked").await.0,
        404,
        "stale until reconciled"
    );
    let scan = host
        .client
        .post(host.url("/admin/scans/rollouts"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(scan.status().as_u16(), 200);
    let scan: Value = scan.json().await.unwrap();
    assert!(scan.to_string().contains("flagsRepublished"), "{scan}");
    let (status, served) = ofrep(&host, "unmarked").await;
    assert_eq!(status, 200, "{served}");
    assert_eq!(served["variant"], "b");
    host.app.shutdown().await;
}
