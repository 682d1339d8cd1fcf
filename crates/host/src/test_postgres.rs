//! A throw-away PostgreSQL server for the host's unit tests, started once per
//! test process on a free loopback port (password authentication over TCP:
//! user `postgres`, password [`PASSWORD`]; data in a temporary directory). The test harness has no "after all tests" hook, so a
//! watchdog shell beside the server stops it and deletes its directory as
//! soon as the test process is gone.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Result<String, String>> = OnceLock::new();

/// The `postgres` user's password on the throw-away server.
pub(crate) const PASSWORD: &str = "dol-test";

/// The URL of this process's server, started on first use.
pub(crate) fn url() -> Result<String, String> {
    SERVER.get_or_init(start).clone()
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (apt-get install postgresql)"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
        .ok_or_else(|| "no initdb under /usr/lib/postgresql".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// `program` run as the `postgres` user when this process is root (PostgreSQL
/// refuses to run as root).
fn as_server_user(program: &str, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn start() -> Result<String, String> {
    let bin = bin_dir()?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("dol-host-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if root {
        let chown = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !chown.success() {
            return Err(format!("chown postgres {}: {chown}", dir.display()));
        }
    }
    let data = dir.join("data");
    let password_file = dir.join("password");
    std::fs::write(&password_file, PASSWORD).map_err(|e| format!("password file: {e}"))?;
    let initdb = as_server_user(&bin.join("initdb").to_string_lossy(), root)
        .arg("-D")
        .arg(&data)
        .arg(format!("--pwfile={}", password_file.display()))
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "-N"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.success() {
        return Err(format!("initdb {}: {initdb}", data.display()));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    // The server and its watchdog: once this process is gone, stop the
    // server and remove its directory.
    let script = format!(
        "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -F \
         >'{dir}/log' 2>&1 & server=$!; \
         while [ -d /proc/{pid} ] && kill -0 $server 2>/dev/null; do sleep 0.5; done; \
         kill -INT $server 2>/dev/null; wait $server; rm -rf '{dir}'",
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
        pid = std::process::id(),
    );
    as_server_user("sh", root)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    let started = Instant::now();
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(format!(
                "postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "postgres did not start (log: {}/log)",
                dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
