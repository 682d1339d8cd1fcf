//! The services Spin's suites need, started on loopback once per run with
//! throw-away directories: PostgreSQL (user/password `postgres`, database
//! `spin_dev`, the suite's init SQL), Redis, and the suite's HTTP and TCP echo
//! servers (Python).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A service a test can need.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Service {
    Postgres,
    Redis,
    HttpEcho,
    TcpEcho,
}

impl Service {
    /// The service behind a `%{port=N}` guest port.
    pub fn for_guest_port(port: &str) -> Option<Self> {
        match port {
            "5432" => Some(Self::Postgres),
            "6379" => Some(Self::Redis),
            "80" => Some(Self::HttpEcho),
            "7" => Some(Self::TcpEcho),
            _ => None,
        }
    }

    /// The service a `services` line or a `preconditions` kind names
    /// (`sqlite` and `key-value-store` are the runtime's own: no service).
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "postgres" => Some(Self::Postgres),
            "redis" => Some(Self::Redis),
            "http-echo" => Some(Self::HttpEcho),
            "tcp-echo" => Some(Self::TcpEcho),
            _ => None,
        }
    }
}

/// The services started so far (each at most once per run).
pub struct Services {
    started: BTreeMap<Service, std::result::Result<u16, String>>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
    postgres_data: Option<(PathBuf, PathBuf)>,
    suites_services: PathBuf,
}

impl Services {
    /// No services running yet.
    pub fn new(suites_dir: &Path) -> Result<Self> {
        Ok(Self {
            started: BTreeMap::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().context("creating the services directory")?,
            postgres_data: None,
            suites_services: suites_dir.join("spin-conformance/services"),
        })
    }

    /// The host port of a service, starting it the first time.
    pub fn port(&mut self, service: Service) -> Result<u16> {
        if !self.started.contains_key(&service) {
            let result = match service {
                Service::Redis => self.start_redis(),
                Service::Postgres => self.start_postgres(),
                Service::HttpEcho => self.start_echo("http-echo.py"),
                Service::TcpEcho => self.start_echo("tcp-echo.py"),
            }
            .map_err(|e| format!("{service:?}: {e:#}"));
            self.started.insert(service, result);
        }
        match self.started.get(&service) {
            Some(Ok(port)) => Ok(*port),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("{service:?} was not started"),
        }
    }

    fn start_echo(&mut self, script: &str) -> Result<u16> {
        let path = self.suites_services.join(script);
        let mut child = Command::new("python3")
            .arg("-u")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting python3 {}", path.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        self.children.push(child);
        let mut port = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.context("reading the echo server's output")?;
            if let Some(rest) = line.trim().strip_prefix("PORT=(") {
                port = rest
                    .trim_end_matches(')')
                    .split_once(',')
                    .and_then(|(_, p)| p.trim().parse::<u16>().ok());
            }
            if line.trim() == "READY" {
                break;
            }
        }
        // A thread drains the rest of its output so the server never blocks
        // on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        port.context("the echo server printed no PORT=(…)")
    }

    fn start_redis(&mut self) -> Result<u16> {
        let port = super::free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server is not installed (apt-get install redis-server)")?;
        self.children.push(child);
        wait_for_port(port, Duration::from_secs(20)).context("redis-server did not start")?;
        Ok(port)
    }

    fn start_postgres(&mut self) -> Result<u16> {
        let bin =
            postgres_bin().context("PostgreSQL is not installed (apt-get install postgresql)")?;
        let port = super::free_port()?;
        let root = self.dir.path().join("postgres");
        let data = root.join("data");
        std::fs::create_dir_all(&data).context("creating the data directory")?;
        let as_root = is_root();
        if as_root {
            // initdb refuses to run as root: the postgres user owns the
            // throw-away directory and runs the server.
            set_mode(self.dir.path(), 0o755)?;
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root))?;
        }
        let pg = |tool: &str| -> Command {
            let program = bin.join(tool);
            if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        run(pg("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]))
        .context("initdb")?;
        run(pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(root.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                root.display()
            ))
            .args(["-w", "start"]))
        .context("pg_ctl start")?;
        self.postgres_data = Some((bin.clone(), data));
        let psql = |extra: &[&str]| -> Command {
            let mut c = Command::new(bin.join("psql"));
            c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-q"])
                .args(extra);
            c
        };
        run(&mut psql(&["-c", "CREATE DATABASE spin_dev"])).context("creating spin_dev")?;
        let init = self.suites_services.join("postgres-init");
        let mut scripts: Vec<PathBuf> = std::fs::read_dir(&init)
            .with_context(|| format!("listing {}", init.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        scripts.sort();
        for script in scripts {
            let mut c = psql(&["-d", "spin_dev", "-f"]);
            c.arg(&script);
            run(&mut c).with_context(|| format!("running {}", script.display()))?;
        }
        Ok(port)
    }

    /// Stops everything this run started (only its own children).
    pub fn stop(&mut self) {
        if let Some((bin, data)) = self.postgres_data.take() {
            let mut c = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
                c
            } else {
                Command::new(bin.join("pg_ctl"))
            };
            let _ = c
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command.get_program(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "nothing listens on 127.0.0.1:{port} after {}s",
        timeout.as_secs()
    )
}
