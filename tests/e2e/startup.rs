//! Start-up behaviour of `dol up`: an import the host lacks is named, clients
//! are refused (not reset) while the app loads and when loading fails, and a
//! relative state directory works.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use dol_host::HostOptions;
use dol_test_support::{TestHost, build_guests, workspace_root};

/// The binary of a component whose only import is an instance `name`
/// exporting `f: func()` (hand-encoded: no WAT tooling in the tests).
fn component_importing(name: &str) -> Vec<u8> {
    fn section(id: u8, content: &[u8]) -> Vec<u8> {
        let mut bytes = vec![id, u8::try_from(content.len()).unwrap()];
        bytes.extend_from_slice(content);
        bytes
    }
    // One type: instance { type 0 = func(); export "f" (func (type 0)) }.
    let types = [
        0x01, 0x42, 0x02, 0x01, 0x40, 0x00, 0x01, 0x00, 0x04, 0x00, 0x01, b'f', 0x01, 0x00,
    ];
    let mut imports = vec![0x01, 0x00, u8::try_from(name.len()).unwrap()];
    imports.extend_from_slice(name.as_bytes());
    imports.extend_from_slice(&[0x05, 0x00]);
    let mut wasm = b"\0asm\x0d\x00\x01\x00".to_vec();
    wasm.extend(section(7, &types));
    wasm.extend(section(10, &imports));
    wasm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_dol_lacks_is_named_at_start_up() {
    let import = "wasi:keyvalue/store@0.2.0-draft2";
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("lacking.wasm"), component_importing(import)).unwrap();
    std::fs::write(
        app.path().join("spin.toml"),
        r#"spin_manifest_version = 2

[application]
name = "lacking-import"

[[trigger.http]]
route = "/..."
component = "lacking"

[component.lacking]
source = "lacking.wasm"
"#,
    )
    .unwrap();
    let error = match TestHost::builder(app.path().join("spin.toml"))
        .try_start()
        .await
    {
        Ok(host) => {
            host.app.shutdown().await;
            panic!("the host started with an import it does not provide");
        }
        Err(error) => error,
    };
    let headline = error.to_string();
    for needle in [
        "component lacking",
        &format!("`{import}`"),
        "dol does not provide",
        "hint:",
        "[component.lacking.dependencies]",
    ] {
        assert!(headline.contains(needle), "lacks {needle:?}: {headline}");
    }
    // What `dol up` prints: the headline, then a "Caused by:" that is not empty.
    let printed = format!("{error:?}");
    let causes = printed.split_once("Caused by:").map(|(_, causes)| causes);
    assert!(
        causes.is_some_and(|causes| causes.contains(import)),
        "{printed}"
    );
}

/// A free local port (bound, read, released).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn assert_refused(address: SocketAddr, when: &str) {
    match tokio::net::TcpStream::connect(address).await {
        Ok(_) => panic!("{when}: a connection to {address} was accepted"),
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{when}: {error}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_refused_while_loading_and_after_a_failed_start() {
    let address = free_port();
    let state = tempfile::tempdir().unwrap();
    let mut options =
        HostOptions::new(workspace_root().join("tests/apps/missing-required-variable/spin.toml"));
    options.listen = address;
    options.state_dir = Some(state.path().to_path_buf());
    // The first variable lookup happens while the app loads: it holds the load
    // there until the test has tried to connect.
    let (loading_tx, loading_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(Some((loading_tx, release_rx)));
    options.variables = Arc::new(move |_name| {
        if let Some((loading, release)) = gate.lock().unwrap().take() {
            loading.send(()).unwrap();
            release.recv().unwrap();
        }
        None
    });
    let starting = tokio::spawn(dol_host::start(options));
    tokio::task::spawn_blocking(move || loading_rx.recv().unwrap())
        .await
        .unwrap();
    assert_refused(address, "while the app loads").await;
    release_tx.send(()).unwrap();
    let error = match starting.await.unwrap() {
        Ok(app) => {
            app.shutdown().await;
            panic!("the host started without its required variable");
        }
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("api_key"), "{error}");
    assert_refused(address, "after the failed start").await;
}

/// `path` (absolute) as a path relative to the current directory.
fn relative_to_current_dir(path: &Path) -> PathBuf {
    let current = std::env::current_dir().unwrap();
    let mut relative = PathBuf::new();
    for component in current.components() {
        if matches!(component, Component::Normal(_)) {
            relative.push("..");
        }
    }
    relative.join(path.strip_prefix("/").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_state_directory_works() {
    build_guests();
    let state = tempfile::tempdir().unwrap();
    let relative = relative_to_current_dir(state.path());
    assert!(relative.is_relative());
    let mut options = HostOptions::new(workspace_root().join("tests/apps/probe-basic/spin.toml"));
    options.listen = "127.0.0.1:0".parse().unwrap();
    options.variables = Arc::new(|name| (name == "SPIN_VARIABLE_SECRET_TOKEN").then(|| "s".into()));
    // What `dol up --state-dir <relative>` sets: both directories relative.
    options.cache_dir = Some(relative.join("compiled-cache"));
    options.state_dir = Some(relative);
    let app = dol_host::start(options).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/probe/sqlite/default", app.url()))
        .body("CREATE TABLE here (v)")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.shutdown().await;
    assert!(state.path().join("sqlite_db.db").exists());
    assert!(state.path().join("compiled-cache").is_dir());
}
