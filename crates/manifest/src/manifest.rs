//! The Spin application manifest (`spin.toml`, manifest version 2).
//!
//! Structure and field names follow Spin 3.x's schema (spinframework/spin
//! `crates/manifest/src/schema/v2.rs` and `common.rs`). Like Spin (`deny_unknown_fields`),
//! unknown keys are refused at every level. Spin features the DOL host does not implement are
//! refused by name rather than ignored; only what Spin itself ignores for behaviour is
//! accepted and dropped: `[application.tool.*]`, `[component.X.tool.*]`, `authors`,
//! `description`, a trigger's `id`.
//!
//! Every error names the file, the dotted key (`component.health.source`,
//! `trigger.http[0].route`) and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::ids::{check_component_id, check_label, check_variable_name};
use crate::outbound::{AllowedHosts, OutboundError};
use crate::routes::{RouteError, Router};
use crate::schedule::Schedule;
use crate::template::{Part, parse_template};
use crate::variables::VariableDecl;

/// Why a manifest (or runtime config) file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}: not valid TOML: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that Spin does not know either.
    #[error(
        "{}: {key}: unknown key (Spin rejects unknown keys too); expected one of: {expected}",
        file.display()
    )]
    UnknownKey {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// The keys allowed at that place, comma-separated.
        expected: String,
    },
    /// A Spin feature that dol does not implement.
    #[error("{}: {key}: {reason}", file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// What is not supported, and what to do instead.
        reason: String,
    },
    /// A value that is wrong.
    #[error("{}: {key}: {reason}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ManifestError {
    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ManifestError::Read { file, .. }
            | ManifestError::Syntax { file, .. }
            | ManifestError::UnknownKey { file, .. }
            | ManifestError::Unsupported { file, .. }
            | ManifestError::Invalid { file, .. } => file,
        }
    }

    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ManifestError::Read { .. } | ManifestError::Syntax { .. } => None,
            ManifestError::UnknownKey { key, .. }
            | ManifestError::Unsupported { key, .. }
            | ManifestError::Invalid { key, .. } => Some(key),
        }
    }
}

/// A loaded and validated Spin application.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The folder holding the manifest; relative paths are resolved against it.
    pub base_dir: PathBuf,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`: application variables by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]`, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[[trigger.cron]]`, in manifest order.
    pub cron_triggers: Vec<CronTrigger>,
    /// `[component.<id>]` by id.
    pub components: BTreeMap<String, Component>,
}

/// `[application]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// `name`.
    pub name: String,
    /// `version`.
    pub version: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `[application.trigger.http] base`; always `/`, since Spin 3 ignores any other base
    /// (it builds its router with `/` and sends `spin-base-path: /`) and dol refuses one.
    pub http_base: String,
}

/// The route of an HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpec {
    /// A route pattern such as `/api/...`.
    Path(String),
    /// `route = { private = true }`: reachable only by service chaining.
    Private,
}

/// `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// `route`.
    pub route: RouteSpec,
    /// `component`: the id of the handling component.
    pub component: String,
}

/// `[[trigger.cron]]` (the Spin cron trigger plugin's format).
#[derive(Debug, Clone)]
pub struct CronTrigger {
    /// `component`: the id of the component to run.
    pub component: String,
    /// `cron_expression` as written.
    pub cron_expression: String,
    /// The parsed expression.
    pub schedule: Schedule,
}

/// `[component.<id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// The component id.
    pub id: String,
    /// `source`, resolved against the manifest's folder.
    pub source: PathBuf,
    /// `description`.
    pub description: Option<String>,
    /// `allowed_outbound_hosts` as written.
    pub allowed_outbound_hosts: Vec<String>,
    /// The `allowed_outbound_hosts` entries without `{{ variable }}` templates,
    /// parsed. The full list, templates rendered, is
    /// [`Component::resolve_allowed_hosts`].
    pub allowed_hosts: AllowedHosts,
    /// `key_value_stores` labels.
    pub key_value_stores: Vec<String>,
    /// `sqlite_databases` labels.
    pub sqlite_databases: Vec<String>,
    /// `variables`: component variable templates by name (e.g. `"Bearer {{ token }}"`).
    pub variables: BTreeMap<String, String>,
    /// `environment`: environment variables for the guest.
    pub environment: BTreeMap<String, String>,
    /// `[component.<id>.build]`.
    pub build: Option<BuildConfig>,
    /// `[component.<id>.dependencies]` by import name.
    pub dependencies: BTreeMap<String, Dependency>,
    /// `dependencies_inherit_configuration`: whether dependencies may use the
    /// component's Spin APIs (key-value, SQLite, variables, outbound HTTP).
    pub dependencies_inherit_configuration: bool,
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// `command`: one command, or several run left to right (Spin accepts a string or an array).
    pub commands: Vec<String>,
    /// `workdir`, resolved against the manifest's folder (`None`: the manifest's folder).
    pub workdir: Option<PathBuf>,
    /// `watch` globs, as written (relative to the build working directory).
    pub watch: Vec<String>,
}

/// A local component dependency: `"ns:pkg/iface" = { path = "...", export = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// `path`, resolved against the manifest's folder.
    pub path: PathBuf,
    /// `export`: the export satisfying the import, if not the import's own name.
    pub export: Option<String>,
}

impl Manifest {
    /// The component with this id.
    pub fn component(&self, id: &str) -> Option<&Component> {
        self.components.get(id)
    }

    /// The HTTP router for this application.
    pub fn router(&self) -> Result<Router, RouteError> {
        Router::build(&self.application.http_base, &self.http_triggers)
    }
}

/// Reads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

impl Component {
    /// The full `allowed_outbound_hosts` list with `{{ variable }}` templates
    /// rendered against the app's resolved variables, parsed with Spin's rules.
    /// An error names the entry as written (never a rendered value, which may
    /// hold a secret).
    pub fn resolve_allowed_hosts(
        &self,
        variables: &crate::variables::ResolvedVariables,
    ) -> Result<AllowedHosts, OutboundError> {
        let mut rendered = Vec::with_capacity(self.allowed_outbound_hosts.len());
        for entry in &self.allowed_outbound_hosts {
            let invalid = |reason: String| OutboundError::Invalid {
                entry: entry.clone(),
                reason,
            };
            let text = variables
                .render(entry)
                .map_err(|error| invalid(error.to_string()))?;
            if let Err(OutboundError::Invalid { reason, .. }) =
                AllowedHosts::parse(std::slice::from_ref(&text))
            {
                return Err(invalid(reason));
            }
            rendered.push(text);
        }
        AllowedHosts::parse(&rendered)
    }
}

/// Validates manifest text; `manifest_path` names the file in errors and anchors relative paths.
pub fn parse(text: &str, manifest_path: &Path) -> Result<Manifest, ManifestError> {
    let ctx = Ctx::new(manifest_path);
    let mut root: Table = text
        .parse()
        .map_err(|error: toml::de::Error| ctx.syntax(text, &error))?;
    // Spin still runs version 1 manifests: they are read as their version 2
    // equivalent (see `v1`).
    if crate::v1::is_version_1(&root) {
        root = crate::v1::to_v2(&ctx, root)?;
    }
    check_version(&ctx, &root)?;
    ctx.check_keys(
        "",
        &root,
        &[
            "spin_manifest_version",
            "application",
            "variables",
            "trigger",
            "component",
        ],
        &[],
    )?;
    let base_dir = match manifest_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let application = parse_application(&ctx, root.get("application"))?;
    let variables = parse_variables(&ctx, root.get("variables"))?;
    let components = parse_components(&ctx, root.get("component"), &base_dir, &variables)?;
    let (http_triggers, cron_triggers) = parse_triggers(&ctx, root.get("trigger"), &components)?;
    Router::build(&application.http_base, &http_triggers)
        .map_err(|error| route_error(&ctx, error))?;
    Ok(Manifest {
        path: manifest_path.to_path_buf(),
        base_dir,
        application,
        variables,
        http_triggers,
        cron_triggers,
        components,
    })
}

/// Error construction and typed access to TOML values, all naming the file.
pub(crate) struct Ctx {
    file: PathBuf,
}

impl Ctx {
    pub(crate) fn new(file: &Path) -> Ctx {
        Ctx {
            file: file.to_path_buf(),
        }
    }

    pub(crate) fn invalid(&self, key: &str, reason: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(&self, key: &str, reason: impl Into<String>) -> ManifestError {
        ManifestError::Unsupported {
            file: self.file.clone(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn syntax(&self, text: &str, error: &toml::de::Error) -> ManifestError {
        let location = error
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        ManifestError::Syntax {
            file: self.file.clone(),
            message: format!("{location}{}", error.message().trim()),
        }
    }

    /// Refuses keys of `table` that are `unsupported` (with their reason) or not `allowed`.
    pub(crate) fn check_keys(
        &self,
        at: &str,
        table: &Table,
        allowed: &[&str],
        unsupported: &[(&str, &str)],
    ) -> Result<(), ManifestError> {
        for key in table.keys() {
            if let Some((_, reason)) = unsupported.iter().find(|(name, _)| name == key) {
                return Err(self.unsupported(&join_key(at, key), *reason));
            }
            if !allowed.contains(&key.as_str()) {
                return Err(ManifestError::UnknownKey {
                    file: self.file.clone(),
                    key: join_key(at, key),
                    expected: allowed.join(", "),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn table<'v>(
        &self,
        key: &str,
        value: &'v Value,
    ) -> Result<&'v Table, ManifestError> {
        value.as_table().ok_or_else(|| {
            self.invalid(key, format!("must be a table, found {}", value.type_str()))
        })
    }

    pub(crate) fn string<'v>(&self, key: &str, value: &'v Value) -> Result<&'v str, ManifestError> {
        value.as_str().ok_or_else(|| {
            self.invalid(key, format!("must be a string, found {}", value.type_str()))
        })
    }

    fn boolean(&self, key: &str, value: &Value) -> Result<bool, ManifestError> {
        value.as_bool().ok_or_else(|| {
            self.invalid(
                key,
                format!("must be true or false, found {}", value.type_str()),
            )
        })
    }

    pub(crate) fn strings(&self, key: &str, value: &Value) -> Result<Vec<String>, ManifestError> {
        let array = value.as_array().ok_or_else(|| {
            self.invalid(
                key,
                format!("must be an array of strings, found {}", value.type_str()),
            )
        })?;
        array
            .iter()
            .enumerate()
            .map(|(index, item)| {
                self.string(&format!("{key}[{index}]"), item)
                    .map(str::to_owned)
            })
            .collect()
    }

    fn string_map(
        &self,
        key: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        self.table(key, value)?
            .iter()
            .map(|(name, item)| {
                let value = self.string(&join_key(key, name), item)?;
                Ok((name.clone(), value.to_owned()))
            })
            .collect()
    }

    /// An optional string field of `table`.
    pub(crate) fn optional_string(
        &self,
        at: &str,
        table: &Table,
        field: &str,
    ) -> Result<Option<String>, ManifestError> {
        table
            .get(field)
            .map(|value| self.string(&join_key(at, field), value).map(str::to_owned))
            .transpose()
    }

    /// A required string field of `table`.
    pub(crate) fn required_string(
        &self,
        at: &str,
        table: &Table,
        field: &str,
    ) -> Result<String, ManifestError> {
        self.optional_string(at, table, field)?
            .ok_or_else(|| self.invalid(&join_key(at, field), "missing"))
    }
}

/// Joins a dotted key path, quoting keys that are not TOML bare keys.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let is_bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if is_bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

const VERSION_KEY: &str = "spin_manifest_version";
fn check_version(ctx: &Ctx, root: &Table) -> Result<(), ManifestError> {
    match root.get(VERSION_KEY) {
        Some(Value::Integer(2)) => Ok(()),
        Some(other) => Err(ctx.invalid(
            VERSION_KEY,
            format!("must be the integer 2 (or \"1\" for a version 1 manifest), found {other}"),
        )),
        None => Err(ctx.invalid(
            VERSION_KEY,
            "missing: dol reads Spin manifest versions 1 and 2; add `spin_manifest_version = 2`",
        )),
    }
}

fn parse_application(ctx: &Ctx, value: Option<&Value>) -> Result<Application, ManifestError> {
    const AT: &str = "application";
    let value =
        value.ok_or_else(|| ctx.invalid(AT, "missing: add an [application] table with a name"))?;
    let table = ctx.table(AT, value)?;
    ctx.check_keys(
        AT,
        table,
        &[
            "name",
            "version",
            "description",
            "authors",
            "trigger",
            "tool",
        ],
        &[(
            "targets",
            "deployment targets (`targets`) are not supported by dol; remove them",
        )],
    )?;
    if let Some(authors) = table.get("authors") {
        ctx.strings(&join_key(AT, "authors"), authors)?;
    }
    if let Some(tool) = table.get("tool") {
        ctx.table(&join_key(AT, "tool"), tool)?;
    }
    let http_base = match table.get("trigger") {
        Some(triggers) => parse_application_triggers(ctx, triggers)?,
        None => "/".to_owned(),
    };
    Ok(Application {
        name: ctx.required_string(AT, table, "name")?,
        version: ctx.optional_string(AT, table, "version")?,
        description: ctx.optional_string(AT, table, "description")?,
        http_base,
    })
}

/// `[application.trigger.*]`; returns the HTTP base.
fn parse_application_triggers(ctx: &Ctx, value: &Value) -> Result<String, ManifestError> {
    const AT: &str = "application.trigger";
    let table = ctx.table(AT, value)?;
    let mut base = "/".to_owned();
    for (kind, settings) in table {
        let key = join_key(AT, kind);
        let settings = ctx.table(&key, settings)?;
        match kind.as_str() {
            "http" => {
                ctx.check_keys(&key, settings, &["base"], &[])?;
                if let Some(value) = ctx.optional_string(&key, settings, "base")? {
                    if value != "/" {
                        return Err(ctx.unsupported(
                            &join_key(&key, "base"),
                            format!("base {value:?}: Spin 3 ignores the HTTP base and always routes from \"/\"; dol refuses any other base so routes behave the same. Remove it or put the prefix into each route"),
                        ));
                    }
                    base = value;
                }
            }
            // The cron plugin has no application-level settings.
            "cron" => ctx.check_keys(&key, settings, &[], &[])?,
            other => return Err(unsupported_trigger(ctx, &key, other)),
        }
    }
    Ok(base)
}

fn unsupported_trigger(ctx: &Ctx, key: &str, kind: &str) -> ManifestError {
    ctx.unsupported(
        key,
        format!("trigger type {kind:?} is not supported by dol (only http and cron)"),
    )
}

fn parse_variables(
    ctx: &Ctx,
    value: Option<&Value>,
) -> Result<BTreeMap<String, VariableDecl>, ManifestError> {
    const AT: &str = "variables";
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let mut variables = BTreeMap::new();
    for (name, declaration) in ctx.table(AT, value)? {
        let key = join_key(AT, name);
        check_variable_name(name)
            .map_err(|reason| ctx.invalid(&key, format!("invalid variable name: {reason}")))?;
        let table = ctx.table(&key, declaration)?;
        ctx.check_keys(
            &key,
            table,
            &["default", "required", "secret", "description"],
            &[],
        )?;
        let flag = |field: &str| {
            table
                .get(field)
                .map(|value| ctx.boolean(&join_key(&key, field), value))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let decl = VariableDecl {
            default: ctx.optional_string(&key, table, "default")?,
            required: flag("required")?,
            secret: flag("secret")?,
            description: ctx.optional_string(&key, table, "description")?,
        };
        // Spin's schema: "If not specified, required defaults to false, and default must be
        // provided"; Spin refuses both together.
        match (decl.required, decl.default.is_some()) {
            (true, true) => {
                return Err(ctx.invalid(
                    &key,
                    "a variable cannot be both required and have a default",
                ));
            }
            (false, false) => {
                return Err(ctx.invalid(&key, "needs either a default or `required = true`"));
            }
            _ => {}
        }
        variables.insert(name.clone(), decl);
    }
    Ok(variables)
}

fn parse_components(
    ctx: &Ctx,
    value: Option<&Value>,
    base_dir: &Path,
    variables: &BTreeMap<String, VariableDecl>,
) -> Result<BTreeMap<String, Component>, ManifestError> {
    const AT: &str = "component";
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let mut components = BTreeMap::new();
    for (id, definition) in ctx.table(AT, value)? {
        let key = join_key(AT, id);
        check_component_id(id).map_err(|reason| {
            ctx.invalid(&key, format!("invalid component id {id:?}: {reason}"))
        })?;
        let component = parse_component(ctx, &key, id, definition, base_dir, variables)?;
        components.insert(id.clone(), component);
    }
    Ok(components)
}

fn parse_component(
    ctx: &Ctx,
    at: &str,
    id: &str,
    value: &Value,
    base_dir: &Path,
    variables: &BTreeMap<String, VariableDecl>,
) -> Result<Component, ManifestError> {
    let table = ctx.table(at, value)?;
    ctx.check_keys(
        at,
        table,
        &[
            "source",
            "description",
            "variables",
            "environment",
            "allowed_outbound_hosts",
            "key_value_stores",
            "sqlite_databases",
            "build",
            "tool",
            "dependencies",
            "dependencies_inherit_configuration",
        ],
        &[
            ("files", "`files` is not supported by dol: components get no filesystem access"),
            ("exclude_files", "`exclude_files` is not supported by dol: components get no filesystem access"),
            ("ai_models", "Serverless AI (`ai_models`) is not supported by dol"),
            ("allowed_http_hosts", "the deprecated `allowed_http_hosts` is not supported by dol: use `allowed_outbound_hosts` (e.g. [\"https://example.com\"])"),
            ("profile", "component profiles (`profile`) are not supported by dol"),
        ],
    )?;

    let source_key = join_key(at, "source");
    let source = match table.get("source") {
        Some(Value::String(path)) => base_dir.join(path),
        Some(Value::Table(_)) => {
            return Err(ctx.unsupported(
                &source_key,
                "file paths only; remote (url/registry) sources are not supported by dol",
            ));
        }
        Some(other) => {
            return Err(ctx.invalid(
                &source_key,
                format!("must be a file path string, found {}", other.type_str()),
            ));
        }
        None => {
            return Err(ctx.invalid(
                &source_key,
                "missing: the path of the component's .wasm file",
            ));
        }
    };

    let component_variables = match table.get("variables") {
        Some(value) => {
            parse_component_variables(ctx, &join_key(at, "variables"), value, variables)?
        }
        None => BTreeMap::new(),
    };
    let environment = match table.get("environment") {
        Some(value) => ctx.string_map(&join_key(at, "environment"), value)?,
        None => BTreeMap::new(),
    };

    let hosts_key = join_key(at, "allowed_outbound_hosts");
    let allowed_outbound_hosts = match table.get("allowed_outbound_hosts") {
        Some(value) => ctx.strings(&hosts_key, value)?,
        None => Vec::new(),
    };
    // Entries with `{{ variable }}` templates are checked here (template syntax,
    // declared variables) and parsed once the variables are resolved, as Spin
    // does when it prepares an instance (see `Component::resolve_allowed_hosts`).
    let mut literal_hosts = Vec::new();
    for entry in &allowed_outbound_hosts {
        if crate::template::is_template(entry) {
            check_template_references(ctx, &hosts_key, entry, variables)?;
        } else {
            literal_hosts.push(entry.clone());
        }
    }
    let allowed_hosts = AllowedHosts::parse(&literal_hosts).map_err(|error| match error {
        OutboundError::Template { .. } => ctx.unsupported(&hosts_key, error.to_string()),
        OutboundError::Invalid { .. } => ctx.invalid(&hosts_key, error.to_string()),
    })?;

    let labels = |field: &str| -> Result<Vec<String>, ManifestError> {
        let key = join_key(at, field);
        let Some(value) = table.get(field) else {
            return Ok(Vec::new());
        };
        let labels = ctx.strings(&key, value)?;
        for label in &labels {
            check_label(label).map_err(|reason| ctx.invalid(&key, reason))?;
        }
        Ok(labels)
    };
    let key_value_stores = labels("key_value_stores")?;
    let sqlite_databases = labels("sqlite_databases")?;

    let build = table
        .get("build")
        .map(|value| parse_build(ctx, &join_key(at, "build"), value, base_dir))
        .transpose()?;
    if let Some(tool) = table.get("tool") {
        ctx.table(&join_key(at, "tool"), tool)?;
    }
    let inherit_key = join_key(at, "dependencies_inherit_configuration");
    // `false` is Spin's default: dependencies get none of the component's Spin APIs.
    let dependencies_inherit_configuration = match table.get("dependencies_inherit_configuration") {
        Some(value) => ctx.boolean(&inherit_key, value)?,
        None => false,
    };
    let dependencies = match table.get("dependencies") {
        Some(value) => parse_dependencies(ctx, &join_key(at, "dependencies"), value, base_dir)?,
        None => BTreeMap::new(),
    };

    Ok(Component {
        id: id.to_owned(),
        source,
        description: ctx.optional_string(at, table, "description")?,
        allowed_outbound_hosts,
        allowed_hosts,
        key_value_stores,
        sqlite_databases,
        variables: component_variables,
        environment,
        build,
        dependencies,
        dependencies_inherit_configuration,
    })
}

/// Checks a template's syntax and that every variable it names is declared.
fn check_template_references(
    ctx: &Ctx,
    key: &str,
    template: &str,
    app_variables: &BTreeMap<String, VariableDecl>,
) -> Result<(), ManifestError> {
    let parts = parse_template(template).map_err(|reason| ctx.invalid(key, reason))?;
    for part in parts {
        if let Part::Variable(reference) = part
            && !app_variables.contains_key(reference)
        {
            return Err(ctx.invalid(
                key,
                format!(
                    "{template:?} refers to undeclared application variable {reference:?} (declare it under [variables])"
                ),
            ));
        }
    }
    Ok(())
}

fn parse_component_variables(
    ctx: &Ctx,
    at: &str,
    value: &Value,
    app_variables: &BTreeMap<String, VariableDecl>,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let templates = ctx.string_map(at, value)?;
    for (name, template) in &templates {
        let key = join_key(at, name);
        check_variable_name(name)
            .map_err(|reason| ctx.invalid(&key, format!("invalid variable name: {reason}")))?;
        let parts = parse_template(template).map_err(|reason| ctx.invalid(&key, reason))?;
        for part in parts {
            if let Part::Variable(reference) = part
                && !app_variables.contains_key(reference)
            {
                return Err(ctx.invalid(
                    &key,
                    format!(
                        "refers to undeclared application variable {reference:?} (declare it under [variables])"
                    ),
                ));
            }
        }
    }
    Ok(templates)
}

fn parse_build(
    ctx: &Ctx,
    at: &str,
    value: &Value,
    base_dir: &Path,
) -> Result<BuildConfig, ManifestError> {
    let table = ctx.table(at, value)?;
    ctx.check_keys(at, table, &["command", "workdir", "watch"], &[])?;
    let command_key = join_key(at, "command");
    let commands = match table.get("command") {
        Some(Value::String(command)) => vec![command.clone()],
        Some(value @ Value::Array(_)) => ctx.strings(&command_key, value)?,
        Some(other) => {
            return Err(ctx.invalid(
                &command_key,
                format!(
                    "must be a string or an array of strings, found {}",
                    other.type_str()
                ),
            ));
        }
        None => return Err(ctx.invalid(&command_key, "missing")),
    };
    let watch = match table.get("watch") {
        Some(value) => ctx.strings(&join_key(at, "watch"), value)?,
        None => Vec::new(),
    };
    Ok(BuildConfig {
        commands,
        workdir: ctx
            .optional_string(at, table, "workdir")?
            .map(|workdir| base_dir.join(workdir)),
        watch,
    })
}

fn parse_dependencies(
    ctx: &Ctx,
    at: &str,
    value: &Value,
    base_dir: &Path,
) -> Result<BTreeMap<String, Dependency>, ManifestError> {
    const NOT_LOCAL: &str = "only local dependencies `{ path = \"...\" }` (with an optional `export`) are supported by dol; registry and URL dependencies are not";
    let mut dependencies = BTreeMap::new();
    for (name, item) in ctx.table(at, value)? {
        let key = join_key(at, name);
        let table = match item {
            Value::Table(table) => table,
            Value::String(_) => return Err(ctx.unsupported(&key, NOT_LOCAL)),
            other => {
                return Err(
                    ctx.invalid(&key, format!("must be a table, found {}", other.type_str()))
                );
            }
        };
        ctx.check_keys(
            &key,
            table,
            &["path", "export"],
            &[
                ("version", NOT_LOCAL),
                ("registry", NOT_LOCAL),
                ("package", NOT_LOCAL),
                ("url", NOT_LOCAL),
                ("digest", NOT_LOCAL),
            ],
        )?;
        let path = ctx.required_string(&key, table, "path")?;
        dependencies.insert(
            name.clone(),
            Dependency {
                path: base_dir.join(path),
                export: ctx.optional_string(&key, table, "export")?,
            },
        );
    }
    Ok(dependencies)
}

fn parse_triggers(
    ctx: &Ctx,
    value: Option<&Value>,
    components: &BTreeMap<String, Component>,
) -> Result<(Vec<HttpTrigger>, Vec<CronTrigger>), ManifestError> {
    const AT: &str = "trigger";
    let value = value.ok_or_else(|| {
        ctx.invalid(
            AT,
            "missing: add at least one [[trigger.http]] or [[trigger.cron]]",
        )
    })?;
    let mut http_triggers = Vec::new();
    let mut cron_triggers = Vec::new();
    for (kind, list) in ctx.table(AT, value)? {
        let key = join_key(AT, kind);
        if kind != "http" && kind != "cron" {
            return Err(unsupported_trigger(ctx, &key, kind));
        }
        let items = list.as_array().ok_or_else(|| {
            ctx.invalid(
                &key,
                format!("must be an array of tables ([[trigger.{kind}]])"),
            )
        })?;
        for (index, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{index}]");
            let table = ctx.table(&item_key, item)?;
            if kind == "http" {
                http_triggers.push(parse_http_trigger(ctx, &item_key, table, components)?);
            } else {
                cron_triggers.push(parse_cron_trigger(ctx, &item_key, table, components)?);
            }
        }
    }
    Ok((http_triggers, cron_triggers))
}

fn trigger_component(
    ctx: &Ctx,
    at: &str,
    table: &Table,
    components: &BTreeMap<String, Component>,
) -> Result<String, ManifestError> {
    let key = join_key(at, "component");
    match table.get("component") {
        Some(Value::String(id)) if components.contains_key(id) => Ok(id.clone()),
        Some(Value::String(id)) => Err(ctx.invalid(
            &key,
            format!("component {id:?} is not defined (there is no [component.{id}] table)"),
        )),
        Some(Value::Table(_)) => Err(ctx.unsupported(
            &key,
            "inline component tables in triggers are not supported by dol: define [component.<id>] and refer to it by id",
        )),
        Some(other) => Err(ctx.invalid(
            &key,
            format!("must be a component id string, found {}", other.type_str()),
        )),
        None => Err(ctx.invalid(&key, "missing: the id of the component to run")),
    }
}

fn parse_http_trigger(
    ctx: &Ctx,
    at: &str,
    table: &Table,
    components: &BTreeMap<String, Component>,
) -> Result<HttpTrigger, ManifestError> {
    ctx.check_keys(
        at,
        table,
        &["route", "component", "executor", "id"],
        &[
            (
                "static_response",
                "static responses (`static_response`) are not supported by dol",
            ),
            (
                "components",
                "`components` (reserved by Spin) is not supported by dol",
            ),
        ],
    )?;
    if let Some(id) = table.get("id") {
        ctx.string(&join_key(at, "id"), id)?;
    }
    let component = trigger_component(ctx, at, table, components)?;
    let route_key = join_key(at, "route");
    let route = match table.get("route") {
        Some(Value::String(route)) => RouteSpec::Path(route.clone()),
        Some(Value::Table(route)) => {
            ctx.check_keys(&route_key, route, &["private"], &[])?;
            let private_key = join_key(&route_key, "private");
            let private = route
                .get("private")
                .map(|value| ctx.boolean(&private_key, value))
                .transpose()?;
            if private != Some(true) {
                // Spin's wording: a private endpoint must say `private = true`.
                return Err(ctx.invalid(
                    &route_key,
                    format!("route must be a string pattern or '{{ private = true }}': component {component:?} has {{ private = false }}"),
                ));
            }
            RouteSpec::Private
        }
        Some(other) => {
            return Err(ctx.invalid(
                &route_key,
                format!(
                    "must be a route string or {{ private = true }}, found {}",
                    other.type_str()
                ),
            ));
        }
        None => return Err(ctx.invalid(&route_key, "missing: e.g. route = \"/...\"")),
    };
    if let Some(executor) = table.get("executor") {
        check_executor(ctx, &join_key(at, "executor"), executor)?;
    }
    Ok(HttpTrigger { route, component })
}

/// Spin's executors: `spin` (alias of `http`, the default) and `wagi`.
fn check_executor(ctx: &Ctx, at: &str, value: &Value) -> Result<(), ManifestError> {
    let table = ctx.table(at, value)?;
    let type_key = join_key(at, "type");
    let kind = ctx.required_string(at, table, "type")?;
    match kind.as_str() {
        "spin" | "http" => ctx.check_keys(at, table, &["type"], &[]),
        "wagi" => Err(ctx.unsupported(
            &type_key,
            "the Wagi executor is not supported by dol: build the component for wasi:http (executor type \"spin\")",
        )),
        other => Err(ctx.invalid(
            &type_key,
            format!("unknown executor type {other:?}; Spin knows \"spin\" (\"http\") and \"wagi\""),
        )),
    }
}

fn parse_cron_trigger(
    ctx: &Ctx,
    at: &str,
    table: &Table,
    components: &BTreeMap<String, Component>,
) -> Result<CronTrigger, ManifestError> {
    ctx.check_keys(at, table, &["component", "cron_expression", "id"], &[])?;
    if let Some(id) = table.get("id") {
        ctx.string(&join_key(at, "id"), id)?;
    }
    let component = trigger_component(ctx, at, table, components)?;
    let cron_expression = ctx.required_string(at, table, "cron_expression")?;
    let schedule = Schedule::parse(&cron_expression)
        .map_err(|error| ctx.invalid(&join_key(at, "cron_expression"), error.to_string()))?;
    Ok(CronTrigger {
        component,
        cron_expression,
        schedule,
    })
}

fn route_error(ctx: &Ctx, error: RouteError) -> ManifestError {
    let index = match &error {
        RouteError::Invalid { index, .. } | RouteError::Duplicate { index, .. } => *index,
    };
    ctx.invalid(&format!("trigger.http[{index}].route"), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
"#;

    const WEB: &str = r#"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "target/web.wasm"
"#;

    fn parse_ok(body: &str) -> Manifest {
        parse(&format!("{HEADER}{body}"), Path::new("/srv/app/spin.toml")).unwrap()
    }

    /// Parses and returns the error message, checking that it starts with `spin.toml: <key>: `.
    fn error_at(text: &str, key: &str) -> String {
        let error = parse(text, Path::new("spin.toml")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("spin.toml: {key}: ")),
            "expected key {key}, got: {message}"
        );
        assert_eq!(error.key(), Some(key));
        assert_eq!(error.file(), Path::new("spin.toml"));
        message
    }

    fn body_error_at(body: &str, key: &str) -> String {
        error_at(&format!("{HEADER}{body}"), key)
    }

    #[test]
    fn parses_a_full_manifest() {
        let manifest = parse_ok(
            r#"
version = "1.2.3"
description = "demo"
authors = ["someone <a@b.c>"]
[application.trigger.http]
base = "/"
[application.tool.lint]
level = "savage"

[variables]
token = { required = true, secret = true }
region = { default = "eu", description = "where" }

[[trigger.http]]
route = "/api/..."
component = "api"
executor = { type = "spin" }

[[trigger.http]]
route = { private = true }
component = "internal"
id = "internal-trigger"

[[trigger.cron]]
component = "scan"
cron_expression = "0 */5 * * * *"

[component.api]
source = "api.wasm"
description = "the api"
allowed_outbound_hosts = ["https://example.com", "http://internal.spin.internal"]
key_value_stores = ["default", "cache"]
sqlite_databases = ["default"]
environment = { RUST_LOG = "info" }
[component.api.variables]
auth = "Bearer {{ token }}"
where = "{{region}}"
[component.api.build]
command = "cargo build --target wasm32-wasip2 --release"
workdir = "api"
watch = ["src/**/*.rs"]
[component.api.tool.clean]
command = "cargo clean"
[component.api.dependencies]
"my:dep/iface" = { path = "deps/dep.wasm", export = "my:dep/impl" }

[component.internal]
source = "internal.wasm"
dependencies_inherit_configuration = false

[component.scan]
source = "scan.wasm"
[component.scan.build]
command = ["npm install", "npm run build"]
"#,
        );
        assert_eq!(manifest.path, Path::new("/srv/app/spin.toml"));
        assert_eq!(manifest.base_dir, Path::new("/srv/app"));
        assert_eq!(
            manifest.application,
            Application {
                name: "app".to_owned(),
                version: Some("1.2.3".to_owned()),
                description: Some("demo".to_owned()),
                http_base: "/".to_owned(),
            }
        );
        assert!(manifest.variables["token"].required);
        assert!(manifest.variables["token"].secret);
        assert_eq!(manifest.variables["region"].default.as_deref(), Some("eu"));
        assert_eq!(
            manifest.http_triggers,
            vec![
                HttpTrigger {
                    route: RouteSpec::Path("/api/...".to_owned()),
                    component: "api".to_owned()
                },
                HttpTrigger {
                    route: RouteSpec::Private,
                    component: "internal".to_owned()
                },
            ]
        );
        assert_eq!(manifest.cron_triggers.len(), 1);
        assert_eq!(manifest.cron_triggers[0].component, "scan");
        assert_eq!(manifest.cron_triggers[0].cron_expression, "0 */5 * * * *");

        let api = manifest.component("api").unwrap();
        assert_eq!(api.id, "api");
        assert_eq!(api.source, Path::new("/srv/app/api.wasm"));
        assert_eq!(api.description.as_deref(), Some("the api"));
        assert!(api.allowed_hosts.allows("https", "example.com", None));
        assert!(
            api.allowed_hosts
                .allows("http", "internal.spin.internal", None)
        );
        assert_eq!(api.allowed_outbound_hosts.len(), 2);
        assert_eq!(api.key_value_stores, ["default", "cache"]);
        assert_eq!(api.sqlite_databases, ["default"]);
        assert_eq!(api.environment["RUST_LOG"], "info");
        assert_eq!(api.variables["auth"], "Bearer {{ token }}");
        let build = api.build.as_ref().unwrap();
        assert_eq!(
            build.commands,
            ["cargo build --target wasm32-wasip2 --release"]
        );
        assert_eq!(build.workdir.as_deref(), Some(Path::new("/srv/app/api")));
        assert_eq!(build.watch, ["src/**/*.rs"]);
        assert_eq!(
            api.dependencies["my:dep/iface"],
            Dependency {
                path: PathBuf::from("/srv/app/deps/dep.wasm"),
                export: Some("my:dep/impl".to_owned())
            }
        );
        let scan = manifest.component("scan").unwrap();
        assert_eq!(
            scan.build.as_ref().unwrap().commands,
            ["npm install", "npm run build"]
        );

        let router = manifest.router().unwrap();
        assert_eq!(router.route("/api/x").unwrap().component, "api");
        assert!(router.component_exists("internal"));
    }

    #[test]
    fn relative_manifest_path_resolves_against_current_folder() {
        let manifest = parse(&format!("{HEADER}{WEB}"), Path::new("spin.toml")).unwrap();
        assert_eq!(manifest.base_dir, Path::new("."));
        assert_eq!(
            manifest.components["web"].source,
            Path::new("./target/web.wasm")
        );
    }

    #[test]
    fn load_reads_the_file_and_names_it_on_error() {
        let error = load(Path::new("/nonexistent/dol/spin.toml")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/dol/spin.toml: cannot read the file")
        );
        assert_eq!(error.key(), None);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let error = parse(
            "spin_manifest_version = 2\n[application\n",
            Path::new("spin.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("spin.toml: not valid TOML: line 2"),
            "{error}"
        );
    }

    #[test]
    fn manifest_version_must_be_1_or_2() {
        let message = error_at(
            "spin_manifest_version = 1\nname = \"x\"\n",
            "spin_manifest_version",
        );
        assert!(message.contains("must be the integer 2"), "{message}");
        let message = error_at("spin_manifest_version = 3\n", "spin_manifest_version");
        assert!(message.contains("found 3"), "{message}");
        let message = error_at("[application]\nname = \"x\"\n", "spin_manifest_version");
        assert!(message.contains("missing"), "{message}");
        let message = error_at("spin_version = \"1\"\nname = \"x\"\n", "trigger");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn templated_allowed_hosts_resolve_against_the_app_variables() {
        let text = format!(
            "{HEADER}[variables]\nhost = {{ default = \"localhost\" }}\nport = {{ default = \"6379\" }}\n\
             {WEB}allowed_outbound_hosts = [\"redis://{{{{ host }}}}:{{{{ port }}}}\", \"https://example.com\"]\n"
        );
        let manifest = parse(&text, Path::new("spin.toml")).unwrap();
        let web = &manifest.components["web"];
        // Only the literal entry is parsed before the variables are known.
        assert_eq!(web.allowed_hosts.entries().len(), 1);
        let variables = crate::variables::resolve(&manifest.variables, |_| None).unwrap();
        let allowed = web.resolve_allowed_hosts(&variables).unwrap();
        assert!(allowed.allows("redis", "localhost", Some(6379)));
        assert!(allowed.allows("https", "example.com", None));
        let overridden = crate::variables::resolve(&manifest.variables, |name| {
            (name == "SPIN_VARIABLE_HOST").then(|| "cache.internal".to_owned())
        })
        .unwrap();
        let allowed = web.resolve_allowed_hosts(&overridden).unwrap();
        assert!(allowed.allows("redis", "cache.internal", Some(6379)));
        assert!(!allowed.allows("redis", "localhost", Some(6379)));

        let undeclared =
            format!("{HEADER}{WEB}allowed_outbound_hosts = [\"https://{{{{ nope }}}}\"]\n");
        let message = error_at(&undeclared, "component.web.allowed_outbound_hosts");
        assert!(
            message.contains("undeclared application variable"),
            "{message}"
        );

        let bad = format!(
            "{HEADER}[variables]\nhost = {{ default = \"no scheme\" }}\n{WEB}allowed_outbound_hosts = [\"{{{{ host }}}}\"]\n"
        );
        let manifest = parse(&bad, Path::new("spin.toml")).unwrap();
        let variables = crate::variables::resolve(&manifest.variables, |_| None).unwrap();
        let error = manifest.components["web"]
            .resolve_allowed_hosts(&variables)
            .unwrap_err();
        assert!(error.to_string().contains("{{ host }}"), "{error}");
    }

    #[test]
    fn version_1_manifests_are_read_as_their_version_2_equivalent() {
        let text = r#"
spin_manifest_version = "1"
name = "legacy"
version = "0.1.0"
authors = ["a"]
trigger = { type = "http", base = "/" }

[variables]
greeting = { default = "hi" }

[[component]]
id = "web"
source = "web.wasm"
allowed_http_hosts = ["example.com"]
key_value_stores = ["default"]
[component.trigger]
route = "/..."
[component.config]
message = "{{ greeting }}"
"#;
        let manifest = parse(text, Path::new("/app/spin.toml")).unwrap();
        assert_eq!(manifest.application.name, "legacy");
        let web = &manifest.components["web"];
        assert_eq!(web.source, Path::new("/app/web.wasm"));
        assert_eq!(web.variables["message"], "{{ greeting }}");
        assert_eq!(web.key_value_stores, ["default"]);
        assert_eq!(
            web.allowed_outbound_hosts,
            ["http://example.com", "https://example.com"]
        );
        assert_eq!(manifest.http_triggers.len(), 1);

        let redis = text.replace("type = \"http\", base = \"/\"", "type = \"redis\"");
        let message = error_at(&redis, "trigger.type");
        assert!(message.contains("not supported by dol"), "{message}");
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        let message = error_at(
            &format!("{HEADER}{WEB}colour = 1\n"),
            "component.web.colour",
        );
        assert!(
            message.contains("unknown key") && message.contains("source"),
            "{message}"
        );
        let message = error_at(
            &format!("spin_manifest_version = 2\nextra = 1\n{WEB}"),
            "extra",
        );
        assert!(message.contains("unknown key"), "{message}");
        body_error_at(&format!("nmae = \"x\"\n{WEB}"), "application.nmae");
        body_error_at(
            &format!("[variables]\nx = {{ default = \"1\", secret = false, kind = \"s\" }}\n{WEB}"),
            "variables.x.kind",
        );
        body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\nmethod = \"GET\"\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].method",
        );
        body_error_at(
            &format!("{WEB}[component.web.build]\ncommand = \"make\"\ndir = \"x\"\n"),
            "component.web.build.dir",
        );
        body_error_at(
            &format!(
                "{WEB}[component.web.dependencies]\n\"a:b/c\" = {{ path = \"x\", extra = 1 }}\n"
            ),
            "component.web.dependencies.\"a:b/c\".extra",
        );
        body_error_at(
            "[[trigger.cron]]\ncomponent = \"web\"\ncron_expression = \"0 * * * * *\"\nevery = 1\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.cron[0].every",
        );
        body_error_at(
            &format!("[application.trigger.http]\nbase = \"/\"\nport = 80\n{WEB}"),
            "application.trigger.http.port",
        );
    }

    #[test]
    fn remote_sources_are_refused() {
        let message = body_error_at(
            r#"
[[trigger.http]]
route = "/health"
component = "health"
[component.health]
source = { url = "https://example.com/h.wasm", digest = "sha256:00" }
"#,
            "component.health.source",
        );
        assert_eq!(
            message,
            "spin.toml: component.health.source: file paths only; remote (url/registry) sources are not supported by dol"
        );
        body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\n[component.web]\nsource = { registry = \"r\", package = \"a:b\", version = \"1\" }\n",
            "component.web.source",
        );
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\n[component.web]\ndescription = \"x\"\n",
            "component.web.source",
        );
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn unimplemented_component_features_are_refused_by_name() {
        for (line, key, reason) in [
            ("files = [\"assets/*\"]", "component.web.files", "`files`"),
            (
                "exclude_files = [\"x\"]",
                "component.web.exclude_files",
                "`exclude_files`",
            ),
            (
                "ai_models = [\"llama2-chat\"]",
                "component.web.ai_models",
                "Serverless AI",
            ),
            (
                "allowed_http_hosts = [\"example.com\"]",
                "component.web.allowed_http_hosts",
                "allowed_outbound_hosts",
            ),
        ] {
            let message = body_error_at(&format!("{WEB}{line}\n"), key);
            assert!(message.contains(reason), "{message}");
            assert!(message.contains("dol"), "{message}");
        }
        let message = body_error_at(
            &format!("{WEB}[component.web.profile.debug]\nsource = \"d.wasm\"\n"),
            "component.web.profile",
        );
        assert!(message.contains("not supported by dol"), "{message}");
    }

    #[test]
    fn non_local_dependencies_are_refused() {
        for (dependency, key) in [
            (
                "\"a:b/c\" = \">= 0.1.0\"",
                "component.web.dependencies.\"a:b/c\"",
            ),
            (
                "\"a:b/c\" = { version = \"0.1.0\", registry = \"r.io\" }",
                "component.web.dependencies.\"a:b/c\".registry",
            ),
            (
                "\"a:b/c\" = { url = \"https://x/c.wasm\", digest = \"sha256:0\" }",
                "component.web.dependencies.\"a:b/c\".digest",
            ),
        ] {
            let message = body_error_at(
                &format!("{WEB}[component.web.dependencies]\n{dependency}\n"),
                key,
            );
            assert!(message.contains("only local dependencies"), "{message}");
        }
        let message = body_error_at(
            &format!("{WEB}[component.web.dependencies]\n\"a:b/c\" = {{ export = \"x\" }}\n"),
            "component.web.dependencies.\"a:b/c\".path",
        );
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn unimplemented_triggers_and_executors_are_refused_by_name() {
        let message = body_error_at(
            &format!("{WEB}[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"web\"\n"),
            "trigger.redis",
        );
        assert!(
            message.contains("trigger type \"redis\" is not supported by dol"),
            "{message}"
        );
        body_error_at(
            &format!("[application.trigger.redis]\naddress = \"redis://x\"\n{WEB}"),
            "application.trigger.redis",
        );
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\nexecutor = { type = \"wagi\" }\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].executor.type",
        );
        assert!(message.contains("Wagi"), "{message}");
        body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\nexecutor = { type = \"cgi\" }\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].executor.type",
        );
        parse_ok(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\nexecutor = { type = \"http\" }\n[component.web]\nsource = \"w.wasm\"\n",
        );
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = { source = \"inline.wasm\" }\n",
            "trigger.http[0].component",
        );
        assert!(message.contains("inline component tables"), "{message}");
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/\"\nstatic_response = { body = \"hi\" }\n",
            "trigger.http[0].static_response",
        );
        assert!(message.contains("not supported by dol"), "{message}");
        body_error_at(
            &format!("targets = [\"spin-up:3.3\"]\n{WEB}"),
            "application.targets",
        );
    }

    #[test]
    fn a_base_other_than_root_is_refused() {
        let message = body_error_at(
            &format!("[application.trigger.http]\nbase = \"/api\"\n{WEB}"),
            "application.trigger.http.base",
        );
        assert!(
            message.contains("Spin 3 ignores the HTTP base"),
            "{message}"
        );
    }

    #[test]
    fn triggers_must_reference_existing_components() {
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"missing\"\n",
            "trigger.http[0].component",
        );
        assert!(message.contains("\"missing\" is not defined"), "{message}");
        body_error_at(
            &format!(
                "{WEB}[[trigger.cron]]\ncomponent = \"ghost\"\ncron_expression = \"0 * * * * *\"\n"
            ),
            "trigger.cron[0].component",
        );
        body_error_at(
            "[[trigger.http]]\nroute = \"/\"\n",
            "trigger.http[0].component",
        );
        body_error_at("[application.x]\n", "application.x");
        let message = body_error_at("[component.web]\nsource = \"w.wasm\"\n", "trigger");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn routes_are_validated() {
        let message = body_error_at(
            "[[trigger.http]]\nroute = { private = false }\ncomponent = \"web\"\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].route",
        );
        assert!(message.contains("{ private = true }"), "{message}");
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/a/:\"\ncomponent = \"web\"\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].route",
        );
        assert!(message.contains("params must be named"), "{message}");
        body_error_at(
            "[[trigger.http]]\ncomponent = \"web\"\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].route",
        );
    }

    #[test]
    fn duplicate_routes_name_both_components() {
        let message = body_error_at(
            r#"
[[trigger.http]]
route = "/health"
component = "one"
[[trigger.http]]
route = "/health"
component = "two"
[component.one]
source = "one.wasm"
[component.two]
source = "two.wasm"
"#,
            "trigger.http[1].route",
        );
        assert!(
            message.contains("\"one\"") && message.contains("\"two\""),
            "{message}"
        );
        assert!(message.contains("/health"), "{message}");
    }

    #[test]
    fn component_ids_must_be_spin_valid() {
        let message = body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"my_web\"\n[component.my_web]\nsource = \"w.wasm\"\n",
            "component.my_web",
        );
        assert!(message.contains("invalid component id"), "{message}");
        body_error_at(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"1web\"\n[component.1web]\nsource = \"w.wasm\"\n",
            "component.1web",
        );
    }

    #[test]
    fn variable_names_must_be_spin_valid() {
        let message = body_error_at(
            &format!("[variables]\napiToken = {{ default = \"x\" }}\n{WEB}"),
            "variables.apiToken",
        );
        assert!(message.contains("invalid variable name"), "{message}");
        body_error_at(
            &format!("{WEB}[component.web.variables]\nBad-Name = \"x\"\n"),
            "component.web.variables.Bad-Name",
        );
    }

    #[test]
    fn variables_need_exactly_one_of_required_and_default() {
        let message = body_error_at(
            &format!("[variables]\ntoken = {{ required = true, default = \"x\" }}\n{WEB}"),
            "variables.token",
        );
        assert!(
            message.contains("cannot be both required and have a default"),
            "{message}"
        );
        let message = body_error_at(
            &format!("[variables]\ntoken = {{ secret = true }}\n{WEB}"),
            "variables.token",
        );
        assert!(
            message.contains("either a default or `required = true`"),
            "{message}"
        );
        body_error_at(
            &format!("[variables]\ntoken = {{ required = \"yes\" }}\n{WEB}"),
            "variables.token.required",
        );
    }

    #[test]
    fn component_variables_only_reference_declared_variables() {
        let message = body_error_at(
            &format!(
                "[variables]\ntoken = {{ required = true }}\n{WEB}[component.web.variables]\nauth = \"Bearer {{{{ tokn }}}}\"\n"
            ),
            "component.web.variables.auth",
        );
        assert!(
            message.contains("undeclared application variable \"tokn\""),
            "{message}"
        );
        let message = body_error_at(
            &format!("{WEB}[component.web.variables]\nauth = \"{{{{ token\"\n"),
            "component.web.variables.auth",
        );
        assert!(message.contains("unmatched"), "{message}");
    }

    #[test]
    fn invalid_allowed_hosts_name_the_entry() {
        let message = body_error_at(
            &format!("{WEB}allowed_outbound_hosts = [\"example.com\"]\n"),
            "component.web.allowed_outbound_hosts",
        );
        assert!(
            message.contains("\"example.com\"") && message.contains("scheme"),
            "{message}"
        );
    }

    #[test]
    fn store_labels_must_be_kebab_or_snake() {
        let message = body_error_at(
            &format!("{WEB}key_value_stores = [\"b@d\"]\n"),
            "component.web.key_value_stores",
        );
        assert!(message.contains("b@d"), "{message}");
        body_error_at(
            &format!("{WEB}sqlite_databases = [\"Mixed_Case\"]\n"),
            "component.web.sqlite_databases",
        );
    }

    #[test]
    fn cron_expressions_must_parse() {
        let message = body_error_at(
            &format!(
                "{WEB}[[trigger.cron]]\ncomponent = \"web\"\ncron_expression = \"*/5 * * * *\"\n"
            ),
            "trigger.cron[0].cron_expression",
        );
        assert!(message.contains("seconds first"), "{message}");
        body_error_at(
            &format!("{WEB}[[trigger.cron]]\ncomponent = \"web\"\n"),
            "trigger.cron[0].cron_expression",
        );
    }

    #[test]
    fn wrong_value_types_are_named() {
        let message = body_error_at(
            &format!("{WEB}key_value_stores = \"default\"\n"),
            "component.web.key_value_stores",
        );
        assert!(message.contains("array of strings"), "{message}");
        body_error_at(
            &format!("{WEB}allowed_outbound_hosts = [1]\n"),
            "component.web.allowed_outbound_hosts[0]",
        );
        body_error_at(
            &format!("{WEB}environment = {{ A = 1 }}\n"),
            "component.web.environment.A",
        );
        body_error_at(
            "[[trigger.http]]\nroute = 5\ncomponent = \"web\"\n[component.web]\nsource = \"w.wasm\"\n",
            "trigger.http[0].route",
        );
        body_error_at("[trigger.http]\nroute = \"/\"\n", "trigger.http");
        error_at(
            "spin_manifest_version = 2\napplication = 5\n",
            "application",
        );
    }

    #[test]
    fn join_key_quotes_non_bare_keys() {
        assert_eq!(join_key("", "a"), "a");
        assert_eq!(join_key("a", "b-c_d"), "a.b-c_d");
        assert_eq!(join_key("a", "x.y"), "a.\"x.y\"");
        assert_eq!(join_key("a", ""), "a.\"\"");
    }
}
