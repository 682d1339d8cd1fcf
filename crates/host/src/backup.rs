//! `dol backup` and `dol restore`: consistent snapshots of a state directory.
//!
//! A state directory holds SQLite files only (`sqlite_db.db` for the `default`
//! database, `<label>.db` for others, `sqlite_key_value.db` for the key-value
//! store; `compiled-cache/` is a cache and is skipped). [`backup`] copies each
//! `*.db` file with SQLite's online backup API in a single step, so every copy
//! is one committed point in time of its file, taken while the host keeps
//! serving reads. Every write acknowledged before the backup started is in it.
//! The files are copied at one point in time together ([`pinned_snapshots`]:
//! a read snapshot pinned on each file while all their write locks are held
//! for an instant), so state an app keeps in step across files under a
//! write lock — DOL publishes each flag version to key-value while it holds
//! the database's write lock — is restored in step, never one file ahead of
//! another; writers wait microseconds, not the copy.
//!
//! The backup file is itself a SQLite database: `dol_backup_meta` (format,
//! version, time) and `dol_backup_files(name, content)`, one row per snapshot,
//! so it can be inspected with `sqlite3` and needs no archive format.
//! [`restore`] writes the snapshots back into a new, empty state directory and
//! checks each with `PRAGMA quick_check`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// The value of `format` in `dol_backup_meta`, telling a DOL backup apart.
const FORMAT: &str = "dol-backup";
/// The layout version this build writes and reads.
const FORMAT_VERSION: &str = "1";

/// What one backup or restore copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The database files, by name, with their sizes in bytes.
    pub files: Vec<(String, usize)>,
}

/// Writes a consistent snapshot of every SQLite file in `state_dir` to `out`.
///
/// Refuses a missing state directory, one without databases, and an existing
/// `out` (a backup never overwrites another). The file appears under its name
/// only once complete (written as `<out>.partial`, then renamed).
pub fn backup(state_dir: &Path, out: &Path) -> Result<Summary> {
    if !state_dir.is_dir() {
        bail!(
            "the state directory {} does not exist (pass the directory `dol up` uses, by default .spin/ next to spin.toml)",
            state_dir.display()
        );
    }
    if out.exists() {
        bail!(
            "{} already exists: a backup never overwrites a file; choose a new name",
            out.display()
        );
    }
    let databases = database_files(state_dir)?;
    if databases.is_empty() {
        bail!(
            "{} holds no SQLite databases (*.db): nothing to back up",
            state_dir.display()
        );
    }
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    // A partial file left by an earlier crash is ours to replace.
    if partial.exists() {
        std::fs::remove_file(&partial)
            .with_context(|| format!("removing the stale {}", partial.display()))?;
    }
    let result = write_backup(&databases, &partial);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    let summary = result?;
    std::fs::rename(&partial, out)
        .with_context(|| format!("moving the backup into place at {}", out.display()))?;
    Ok(summary)
}

/// The `*.db` files directly in `state_dir`, by name.
fn database_files(state_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(state_dir)
        .with_context(|| format!("reading the state directory {}", state_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", state_dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_file() && name.ends_with(".db") {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

fn write_backup(databases: &[(String, PathBuf)], partial: &Path) -> Result<Summary> {
    let archive = Connection::open(partial)
        .with_context(|| format!("creating the backup file {}", partial.display()))?;
    archive.execute_batch(
        "CREATE TABLE dol_backup_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE dol_backup_files (name TEXT PRIMARY KEY, content BLOB NOT NULL);",
    )?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    for (key, value) in [
        ("format", FORMAT.to_string()),
        ("version", FORMAT_VERSION.to_string()),
        ("created_at", created.to_string()),
        ("dol_version", env!("CARGO_PKG_VERSION").to_string()),
    ] {
        archive.execute(
            "INSERT INTO dol_backup_meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
    }
    // One point in time for every file: a read snapshot is pinned on each
    // while all their write locks are held, for an instant; the copies are
    // then taken from those snapshots with no lock held.
    let sources = pinned_snapshots(databases)?;
    let mut summary = Summary { files: Vec::new() };
    for ((name, path), source) in databases.iter().zip(&sources) {
        let bytes = snapshot(source).with_context(|| format!("snapshotting {}", path.display()))?;
        archive.execute(
            "INSERT INTO dol_backup_files (name, content) VALUES (?1, ?2)",
            params![name, bytes],
        )?;
        summary.files.push((name.clone(), bytes.len()));
    }
    drop(sources);
    archive.close().map_err(|(_, e)| e)?;
    Ok(summary)
}

/// One connection per database, each inside a read transaction that was
/// started while the backup held every file's write lock, so the snapshots
/// are one point in time together: state an app keeps in step across files
/// under a write lock (DOL publishes each flag version to key-value while it
/// holds the database's write lock) is seen in step. The locks are taken
/// all or nothing without waiting — on a busy file every lock taken is let
/// go and the whole set is tried again 50 µs later, so no order of the
/// host's writers can deadlock with it — and released as soon as the
/// snapshots are pinned: writers wait microseconds, not the copy.
fn pinned_snapshots(databases: &[(String, PathBuf)]) -> Result<Vec<Connection>> {
    let open = |path: &Path| -> Result<Connection> {
        // Read-write without create: a WAL database needs its -shm file,
        // and a missing file must be an error, never an empty new database.
        let c = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", path.display()))?;
        Ok(c)
    };
    let mut sources = Vec::with_capacity(databases.len());
    let mut locks = Vec::with_capacity(databases.len());
    for (_, path) in databases {
        sources.push(open(path)?);
        locks.push(open(path)?);
    }
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match lock_all(&locks) {
            Ok(true) => break,
            Ok(false) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            Ok(false) => bail!(
                "the databases stayed locked by writers for {} s",
                LOCK_WAIT.as_secs()
            ),
            Err(e) => return Err(e),
        }
    }
    let pinned = sources.iter().try_for_each(|source| {
        // A read transaction holds its snapshot from its first read on.
        source.execute_batch("BEGIN")?;
        source.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
    });
    for lock in &locks {
        let _ = lock.execute_batch("ROLLBACK");
    }
    pinned?;
    Ok(sources)
}

/// Takes every connection's write lock (`BEGIN IMMEDIATE`) without waiting;
/// `false`, with none of them held, when a writer holds one.
fn lock_all(locks: &[Connection]) -> Result<bool> {
    for (i, lock) in locks.iter().enumerate() {
        match lock.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(e) => {
                for held in &locks[..i] {
                    let _ = held.execute_batch("ROLLBACK");
                }
                return match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::DatabaseBusy =>
                    {
                        Ok(false)
                    }
                    other => Err(other.into()),
                };
            }
        }
    }
    Ok(true)
}

/// How long the backup tries to find every file free of writers at once.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The database `source` as file bytes, read from the snapshot its open
/// read transaction holds.
fn snapshot(source: &Connection) -> Result<Vec<u8>> {
    let mut copy = Connection::open_in_memory()?;
    {
        let backup = Backup::new(source, &mut copy)?;
        // All pages in one step, from the source's pinned snapshot.
        match backup.step(-1)? {
            StepResult::Done => {}
            other => bail!("the copy did not complete ({other:?})"),
        }
    }
    // The in-memory copy is in rollback-journal mode; the file the host
    // reopens switches itself back to WAL.
    let bytes = copy.serialize(rusqlite::MAIN_DB)?.to_vec();
    Ok(bytes)
}

/// Writes the snapshots of the backup `from` into `state_dir`, which must be
/// missing or empty (a restore never mixes with live state).
pub fn restore(from: &Path, state_dir: &Path) -> Result<Summary> {
    if !from.is_file() {
        bail!("the backup file {} does not exist", from.display());
    }
    if state_dir.exists() {
        let mut entries = std::fs::read_dir(state_dir).with_context(|| {
            format!(
                "{} exists and is not a directory: restore into a new, empty state directory",
                state_dir.display()
            )
        })?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: restore only into a new, empty state directory (never over live state)",
                state_dir.display()
            );
        }
    }
    let archive = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening the backup file {}", from.display()))?;
    let format: Option<String> = archive
        .query_row(
            "SELECT value FROM dol_backup_meta WHERE key = 'format'",
            [],
            |row| row.get(0),
        )
        .optional()
        .ok()
        .flatten();
    if format.as_deref() != Some(FORMAT) {
        bail!(
            "{} is not a DOL backup (no dol_backup_meta format row); write one with `dol backup`",
            from.display()
        );
    }
    let version: String = archive.query_row(
        "SELECT value FROM dol_backup_meta WHERE key = 'version'",
        [],
        |row| row.get(0),
    )?;
    if version != FORMAT_VERSION {
        bail!("backup format version {version} is not supported (this dol reads {FORMAT_VERSION})");
    }
    let mut statement =
        archive.prepare("SELECT name, content FROM dol_backup_files ORDER BY name")?;
    let files = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (name, _) in &files {
        // A crafted backup must not write outside the state directory.
        if name.contains(['/', '\\']) || name.starts_with('.') || !name.ends_with(".db") {
            bail!("the backup names an unsafe file {name:?}; refusing to restore it");
        }
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let mut summary = Summary { files: Vec::new() };
    for (name, content) in files {
        let path = state_dir.join(&name);
        std::fs::write(&path, &content).with_context(|| format!("writing {}", path.display()))?;
        let restored = Connection::open(&path)?;
        let check: String = restored.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
        if check != "ok" {
            bail!("the restored {name} fails SQLite's quick_check: {check}");
        }
        summary.files.push((name, content.len()));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_rows(rows: i64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("sqlite_db.db")).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        for n in 0..rows {
            db.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
        }
        std::fs::create_dir(dir.path().join("compiled-cache")).unwrap();
        dir
    }

    #[test]
    fn round_trip_keeps_every_row_and_skips_the_cache() {
        let state = state_with_rows(100);
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("b.dolbackup");
        let written = backup(state.path(), &out).unwrap();
        assert_eq!(written.files.len(), 1);
        let target = work.path().join("new");
        let restored = restore(&out, &target).unwrap();
        assert_eq!(restored, written);
        let db = Connection::open(target.join("sqlite_db.db")).unwrap();
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 100);
        assert!(!target.join("compiled-cache").exists());
    }

    #[test]
    fn files_kept_in_step_under_a_write_lock_are_copied_in_step() {
        // A writer that, like DOL's flag publication, changes the database
        // and then key-value while it holds the database's write lock: every
        // backup taken meanwhile must hold the same number in both files.
        let state = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let c = Connection::open(state.path().join(name)).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            c
        };
        for name in ["sqlite_db.db", "sqlite_key_value.db"] {
            open(name)
                .execute_batch("CREATE TABLE v (n INTEGER); INSERT INTO v VALUES (0)")
                .unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, kv, stop) = (
                open("sqlite_db.db"),
                open("sqlite_key_value.db"),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    db.execute_batch("BEGIN IMMEDIATE").unwrap();
                    db.execute("UPDATE v SET n = ?1", [n]).unwrap();
                    // Between the two files' writes, as a publication is.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    kv.execute("UPDATE v SET n = ?1", [n]).unwrap();
                    db.execute_batch("COMMIT").unwrap();
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                n
            })
        };
        let work = tempfile::tempdir().unwrap();
        for i in 0..20 {
            let out = work.path().join(format!("b{i}.dolbackup"));
            backup(state.path(), &out).unwrap();
            let target = work.path().join(format!("r{i}"));
            restore(&out, &target).unwrap();
            let read = |name: &str| -> i64 {
                Connection::open(target.join(name))
                    .unwrap()
                    .query_row("SELECT n FROM v", [], |r| r.get(0))
                    .unwrap()
            };
            assert_eq!(
                read("sqlite_db.db"),
                read("sqlite_key_value.db"),
                "backup {i}: one file ahead of the other"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
    }

    #[test]
    fn backup_refuses_a_missing_state_directory() {
        let work = tempfile::tempdir().unwrap();
        let error = backup(&work.path().join("nope"), &work.path().join("b")).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn backup_refuses_a_directory_without_databases() {
        let work = tempfile::tempdir().unwrap();
        let error = backup(work.path(), &work.path().join("b")).unwrap_err();
        assert!(error.to_string().contains("no SQLite databases"), "{error}");
    }

    #[test]
    fn backup_never_overwrites_a_file() {
        let state = state_with_rows(1);
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("b");
        std::fs::write(&out, b"keep").unwrap();
        let error = backup(state.path(), &out).unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    }

    #[test]
    fn restore_refuses_a_non_empty_directory() {
        let state = state_with_rows(1);
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("b");
        backup(state.path(), &out).unwrap();
        let error = restore(&out, state.path()).unwrap_err();
        assert!(error.to_string().contains("is not empty"), "{error}");
    }

    #[test]
    fn restore_refuses_a_missing_file() {
        let work = tempfile::tempdir().unwrap();
        let error = restore(&work.path().join("nope"), &work.path().join("new")).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn restore_refuses_a_file_that_is_not_a_dol_backup() {
        let state = state_with_rows(1);
        let work = tempfile::tempdir().unwrap();
        let error =
            restore(&state.path().join("sqlite_db.db"), &work.path().join("new")).unwrap_err();
        assert!(error.to_string().contains("not a DOL backup"), "{error}");
        let text = work.path().join("text");
        std::fs::write(&text, b"hello").unwrap();
        let error = restore(&text, &work.path().join("new")).unwrap_err();
        assert!(error.to_string().contains("not a DOL backup"), "{error}");
        assert!(!work.path().join("new").exists());
    }

    #[test]
    fn restore_refuses_unsafe_file_names() {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("b");
        let archive = Connection::open(&out).unwrap();
        archive
            .execute_batch(
                "CREATE TABLE dol_backup_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE dol_backup_files (name TEXT PRIMARY KEY, content BLOB NOT NULL);
                 INSERT INTO dol_backup_meta VALUES ('format', 'dol-backup'), ('version', '1');
                 INSERT INTO dol_backup_files VALUES ('../escape.db', x'00');",
            )
            .unwrap();
        drop(archive);
        let error = restore(&out, &work.path().join("new")).unwrap_err();
        assert!(error.to_string().contains("unsafe file"), "{error}");
        assert!(!work.path().join("escape.db").exists());
    }
}
