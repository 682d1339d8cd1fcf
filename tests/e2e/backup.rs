//! `dol backup` / `dol restore` against the running host: a backup taken
//! while admin writes keep arriving restores every write acknowledged before
//! the backup started, in both the SQLite database and the key-value store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use dol_test_support::TestHost;
use serde_json::{Value, json};

const ADMIN: &str = "admin-backup";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_restores_every_acknowledged_write() {
    let host = TestHost::builder("spin.toml")
        .variable("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN)
        .start()
        .await;
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, base, acked, stop) = (
            host.client.clone(),
            host.url(""),
            acked.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 400 {
                let key = format!("backup_flag_{n}");
                let reply = client
                    .put(format!("{base}/admin/flags/{key}"))
                    .header("authorization", format!("Bearer {ADMIN}"))
                    .body(flag.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), 200);
                let version: i64 = reply.headers()["x-dol-flags-version"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                acked.lock().unwrap().push((key, version));
                n += 1;
            }
        })
    };
    // Wait until some writes are in, then back up while the writer carries on.
    while acked.lock().unwrap().len() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before: Vec<(String, i64)> = acked.lock().unwrap().clone();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("dol.backup");
    let state = host.state_dir().to_path_buf();
    let out_path = out.clone();
    let written = tokio::task::spawn_blocking(move || dol_host::backup::backup(&state, &out_path))
        .await
        .unwrap()
        .unwrap();
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let names: Vec<&str> = written.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sqlite_db.db", "sqlite_key_value.db"]);

    let restored_dir = work.path().join("restored");
    dol_host::backup::restore(&out, &restored_dir).unwrap();
    let db = rusqlite::Connection::open(restored_dir.join("sqlite_db.db")).unwrap();
    let document: String = db
        .query_row(
            "SELECT document FROM flag_sets ORDER BY version DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let document: Value = serde_json::from_str(&document).unwrap();
    for (key, _) in &before {
        assert!(
            document["flags"][key].is_object(),
            "{key} lost in the backup"
        );
    }
    let audited: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM audit_log WHERE flag_key LIKE 'backup_flag_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(audited >= before.len() as i64, "{audited} audit rows");
    let kv = rusqlite::Connection::open(restored_dir.join("sqlite_key_value.db")).unwrap();
    let published: Vec<u8> = kv
        .query_row(
            "SELECT value FROM spin_key_value WHERE key = 'dol:flags:snapshot'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The snapshot (not the version marker, which may read `unpublished`
    // mid-write) is the newest published set.
    let published: Value = serde_json::from_slice(&published).unwrap();
    let published = published["version"].as_i64().unwrap();
    let last = before.last().unwrap().1;
    assert!(
        published >= last,
        "published {published} < acknowledged {last}"
    );
    eprintln!(
        "backup: {} writes acknowledged before, {during} during the backup",
        before.len()
    );
    host.app.shutdown().await;
}
