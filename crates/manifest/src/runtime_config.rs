//! Spin's runtime config file (`--runtime-config-file`), as far as dol implements it:
//! `[key_value_store.<label>]` and `[sqlite_database.<label>]` with `type = "spin"` and an
//! optional `path`, and `[key_value_store.<label>]` with `type = "redis"` and a `url` (Spin's
//! Redis key-value store). Every other section or store type is refused by name.
//!
//! The label `default` is always defined: Spin provides a default key-value store and SQLite
//! database without configuration; dol backs them with a file in a state directory the host
//! picks. Any other label a component lists must be defined here, or startup fails, as in
//! Spin. The messages follow Spin's (verified in spinframework/spin `factor-key-value`:
//! `unknown key_value_stores label "x" for component "y"`; `factor-sqlite`: "One or more
//! components use SQLite databases which are not defined ... - Component y uses database 'x'").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::manifest::{Ctx, Manifest, ManifestError, join_key};

/// The label that is always defined for key-value stores and SQLite databases.
pub const DEFAULT_LABEL: &str = "default";

/// One configured store or database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// `path`, resolved against the runtime config file's folder. `None`: no path given (Spin
    /// then keeps the data in memory; the host decides what dol does).
    pub path: Option<PathBuf>,
    /// `url` of a `type = "redis"` key-value store (`redis://host:port/db`).
    pub redis_url: Option<String>,
}

/// The parsed runtime config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `[key_value_store.<label>]` by label.
    pub key_value_stores: BTreeMap<String, StoreConfig>,
    /// `[sqlite_database.<label>]` by label.
    pub sqlite_databases: BTreeMap<String, StoreConfig>,
}

impl RuntimeConfig {
    /// Reads and validates the runtime config file at `path`.
    pub fn load(path: &Path) -> Result<RuntimeConfig, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        RuntimeConfig::parse(&text, path)
    }

    /// Validates runtime config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<RuntimeConfig, ManifestError> {
        let ctx = Ctx::new(path);
        let root: Table = text
            .parse()
            .map_err(|error: toml::de::Error| ctx.syntax(text, &error))?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new(""));
        let mut config = RuntimeConfig::default();
        for (section, value) in &root {
            let stores = match section.as_str() {
                "key_value_store" => &mut config.key_value_stores,
                "sqlite_database" => &mut config.sqlite_databases,
                other => {
                    return Err(ctx.unsupported(
                        &join_key("", other),
                        format!("runtime config section [{other}] is not supported by dol (only [key_value_store.<label>] and [sqlite_database.<label>] with type = \"spin\")"),
                    ));
                }
            };
            for (label, store) in ctx.table(section, value)? {
                let key = join_key(section, label);
                let allow_redis = section == "key_value_store";
                stores.insert(
                    label.clone(),
                    parse_store(&ctx, &key, store, base_dir, allow_redis)?,
                );
            }
        }
        Ok(config)
    }

    /// Whether a component may list this key-value store label.
    pub fn has_key_value_store(&self, label: &str) -> bool {
        label == DEFAULT_LABEL || self.key_value_stores.contains_key(label)
    }

    /// Whether a component may list this SQLite database label.
    pub fn has_sqlite_database(&self, label: &str) -> bool {
        label == DEFAULT_LABEL || self.sqlite_databases.contains_key(label)
    }
}

fn parse_store(
    ctx: &Ctx,
    at: &str,
    value: &Value,
    base_dir: &Path,
    allow_redis: bool,
) -> Result<StoreConfig, ManifestError> {
    let table = ctx.table(at, value)?;
    let type_key = join_key(at, "type");
    let store_type = match table.get("type") {
        Some(value) => ctx.string(&type_key, value)?,
        None => return Err(ctx.invalid(&type_key, "missing: dol supports type = \"spin\"")),
    };
    if store_type == "redis" && allow_redis {
        ctx.check_keys(at, table, &["type", "url"], &[])?;
        let url_key = join_key(at, "url");
        let url = match table.get("url") {
            Some(value) => ctx.string(&url_key, value)?.to_owned(),
            None => {
                return Err(ctx.invalid(
                    &url_key,
                    "missing: a Redis key-value store needs url = \"redis://host:port\"",
                ));
            }
        };
        return Ok(StoreConfig {
            path: None,
            redis_url: Some(url),
        });
    }
    if store_type != "spin" {
        let supported = if allow_redis {
            "only \"spin\", a local file, and \"redis\""
        } else {
            "only \"spin\", a local file"
        };
        return Err(ctx.unsupported(
            &type_key,
            format!("store type {store_type:?} is not supported by dol ({supported})"),
        ));
    }
    ctx.check_keys(at, table, &["type", "path"], &[])?;
    Ok(StoreConfig {
        path: ctx
            .optional_string(at, table, "path")?
            .map(|path| base_dir.join(path)),
        redis_url: None,
    })
}

/// Refuses components listing a key-value store or SQLite database label that is neither
/// `default` nor defined in the runtime config. The error names the manifest file, the key
/// (`component.<id>.key_value_stores`) and the label.
pub fn check_labels(
    manifest: &Manifest,
    runtime_config: &RuntimeConfig,
) -> Result<(), ManifestError> {
    let ctx = Ctx::new(&manifest.path);
    for (id, component) in &manifest.components {
        for label in &component.key_value_stores {
            if !runtime_config.has_key_value_store(label) {
                return Err(ctx.invalid(
                    &join_key(&join_key("component", id), "key_value_stores"),
                    format!("unknown key_value_stores label {label:?} for component {id:?}: define it in the runtime config file as [key_value_store.{label}] type = \"spin\""),
                ));
            }
        }
        for label in &component.sqlite_databases {
            if !runtime_config.has_sqlite_database(label) {
                return Err(ctx.invalid(
                    &join_key(&join_key("component", id), "sqlite_databases"),
                    format!("Component {id} uses database '{label}', which is not defined: define it in the runtime config file as [sqlite_database.{label}] type = \"spin\""),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig, ManifestError> {
        RuntimeConfig::parse(text, Path::new("/app/runtime-config.toml"))
    }

    #[test]
    fn spin_stores_with_relative_paths() {
        let config = parse(
            r#"
            [key_value_store.cache]
            type = "spin"
            path = "data/cache.db"

            [sqlite_database.analytics]
            type = "spin"
            path = "/abs/analytics.db"

            [sqlite_database.scratch]
            type = "spin"
            "#,
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["cache"].path.as_deref(),
            Some(Path::new("/app/data/cache.db"))
        );
        assert_eq!(
            config.sqlite_databases["analytics"].path.as_deref(),
            Some(Path::new("/abs/analytics.db"))
        );
        assert_eq!(config.sqlite_databases["scratch"].path, None);
        assert!(config.has_key_value_store("cache"));
        assert!(config.has_key_value_store("default"));
        assert!(!config.has_key_value_store("analytics"));
        assert!(config.has_sqlite_database("default"));
        assert!(config.has_sqlite_database("analytics"));
        assert!(!config.has_sqlite_database("cache"));
    }

    #[test]
    fn empty_config_defines_only_default() {
        let config = parse("").unwrap();
        assert!(config.has_key_value_store("default"));
        assert!(!config.has_key_value_store("other"));
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn other_sections_are_refused_by_name() {
        let message = error("[variables_provider]\ntype = \"vault\"\n");
        assert!(
            message.starts_with("/app/runtime-config.toml: variables_provider: "),
            "{message}"
        );
        assert!(message.contains("not supported by dol"), "{message}");
        let message = error("[[config_provider]]\ntype = \"vault\"\n");
        assert!(message.contains("config_provider"), "{message}");
    }

    #[test]
    fn redis_key_value_stores_need_a_url() {
        let config =
            parse("[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://x:6380\"\n").unwrap();
        assert_eq!(
            config.key_value_stores["cache"].redis_url.as_deref(),
            Some("redis://x:6380")
        );
        assert!(config.has_key_value_store("cache"));
        let message = error("[key_value_store.cache]\ntype = \"redis\"\n");
        assert!(
            message.contains("key_value_store.cache.url: missing"),
            "{message}"
        );
        let message =
            error("[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://x\"\npath = \"p\"\n");
        assert!(message.contains("path"), "{message}");
        // Redis is a key-value store type only.
        let message = error("[sqlite_database.db]\ntype = \"redis\"\nurl = \"redis://x\"\n");
        assert!(
            message.contains("sqlite_database.db.type") && message.contains("\"redis\""),
            "{message}"
        );
    }

    #[test]
    fn other_store_types_are_refused_by_name() {
        let message = error("[key_value_store.cache]\ntype = \"azure_cosmos\"\n");
        assert!(
            message.contains("key_value_store.cache.type") && message.contains("azure_cosmos"),
            "{message}"
        );
        let message = error("[sqlite_database.db]\ntype = \"libsql\"\n");
        assert!(
            message.contains("sqlite_database.db.type") && message.contains("libsql"),
            "{message}"
        );
        let message = error("[sqlite_database.db]\npath = \"x\"\n");
        assert!(
            message.contains("sqlite_database.db.type: missing"),
            "{message}"
        );
    }

    #[test]
    fn unknown_store_keys_are_refused() {
        let message = error("[key_value_store.cache]\ntype = \"spin\"\nfile = \"x\"\n");
        assert!(
            message.contains("key_value_store.cache.file: unknown key"),
            "{message}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let message = error("[key_value_store\n");
        assert!(
            message.starts_with("/app/runtime-config.toml: not valid TOML: line 1"),
            "{message}"
        );
    }

    #[test]
    fn load_reports_missing_files() {
        let error =
            RuntimeConfig::load(Path::new("/nonexistent/dol/runtime-config.toml")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("/nonexistent/dol/runtime-config.toml: cannot read")
        );
    }

    fn manifest(stores: &str) -> Manifest {
        let text = format!(
            r#"
            spin_manifest_version = 2
            [application]
            name = "app"
            [[trigger.http]]
            route = "/..."
            component = "web"
            [component.web]
            source = "web.wasm"
            {stores}
            "#
        );
        crate::manifest::parse(&text, Path::new("spin.toml")).unwrap()
    }

    #[test]
    fn labels_must_be_defined() {
        let config = parse("[key_value_store.cache]\ntype = \"spin\"\n").unwrap();
        assert!(
            check_labels(
                &manifest(r#"key_value_stores = ["default", "cache"]"#),
                &config
            )
            .is_ok()
        );
        assert!(check_labels(&manifest(r#"sqlite_databases = ["default"]"#), &config).is_ok());

        let message = check_labels(&manifest(r#"key_value_stores = ["sessions"]"#), &config)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("spin.toml: component.web.key_value_stores: unknown key_value_stores label \"sessions\" for component \"web\""),
            "{message}"
        );
        let message = check_labels(&manifest(r#"sqlite_databases = ["cache"]"#), &config)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(
                "spin.toml: component.web.sqlite_databases: Component web uses database 'cache'"
            ),
            "{message}"
        );
    }
}
