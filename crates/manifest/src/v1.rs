//! Spin manifest version 1 (`spin_manifest_version = "1"`, or the older
//! `spin_version = "1"`), read the way Spin still reads it: converted into the
//! version 2 model before validation, so both versions share one parser and one
//! set of rules.
//!
//! The mapping follows Spin's own v1 → v2 conversion:
//! - `name`, `version`, `description`, `authors` → `[application]`;
//!   `trigger = { type = "http", base = "/" }` → `[application.trigger.http]`;
//! - `[variables]` stays as it is;
//! - each `[[component]]` becomes `[component.<id>]`, its `config` table becomes
//!   the component's `variables`, its `trigger.route` a `[[trigger.http]]` entry
//!   naming it, and `allowed_http_hosts` entries become `http://` and `https://`
//!   entries of `allowed_outbound_hosts` (`insecure:allow-all` becomes `*://*:*`).
//!
//! Errors found after the conversion name the version 2 key (e.g.
//! `component.web.source`), which identifies the component by its `id`.

use toml::{Table, Value};

use crate::manifest::{Ctx, ManifestError};

/// Whether `root` is a version 1 manifest.
pub(crate) fn is_version_1(root: &Table) -> bool {
    match root.get("spin_manifest_version") {
        // Spin writes the version 1 marker as a string; the integer 1 is an error there too.
        Some(Value::String(text)) => text.trim() == "1",
        Some(_) => false,
        None => matches!(root.get("spin_version"), Some(Value::String(text)) if text.trim() == "1"),
    }
}

/// Converts a version 1 manifest into the version 2 layout.
pub(crate) fn to_v2(ctx: &Ctx, mut root: Table) -> Result<Table, ManifestError> {
    root.remove("spin_manifest_version");
    root.remove("spin_version");

    let mut application = Table::new();
    for key in ["name", "version", "description", "authors"] {
        if let Some(value) = root.remove(key) {
            application.insert(key.to_owned(), value);
        }
    }
    let trigger = match root.remove("trigger") {
        Some(value) => ctx.table("trigger", &value)?.clone(),
        None => {
            return Err(ctx.invalid(
                "trigger",
                "missing: version 1 manifests need `trigger = { type = \"http\" }`",
            ));
        }
    };
    let kind = ctx.required_string("trigger", &trigger, "type")?;
    if kind != "http" {
        return Err(ctx.unsupported(
            "trigger.type",
            format!(
                "{kind:?} triggers are not supported by dol (it serves HTTP and cron triggers)"
            ),
        ));
    }
    ctx.check_keys("trigger", &trigger, &["type", "base"], &[])?;
    if let Some(base) = trigger.get("base") {
        let mut http = Table::new();
        http.insert("base".to_owned(), base.clone());
        let mut triggers = Table::new();
        triggers.insert("http".to_owned(), Value::Table(http));
        application.insert("trigger".to_owned(), Value::Table(triggers));
    }

    let mut components = Table::new();
    let mut http_triggers = Vec::new();
    let list = match root.remove("component") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ctx.invalid("component", "must be an array of [[component]] tables")),
        None => Vec::new(),
    };
    for (index, value) in list.into_iter().enumerate() {
        let at = format!("component[{index}]");
        let mut component = ctx.table(&at, &value)?.clone();
        let id = ctx.required_string(&at, &component, "id")?;
        component.remove("id");
        if let Some(config) = component.remove("config") {
            component.insert("variables".to_owned(), config);
        }
        if let Some(hosts) = component.remove("allowed_http_hosts") {
            let hosts = ctx.strings(&format!("{at}.allowed_http_hosts"), &hosts)?;
            let mut outbound = match component.remove("allowed_outbound_hosts") {
                Some(value) => ctx.strings(&format!("{at}.allowed_outbound_hosts"), &value)?,
                None => Vec::new(),
            };
            for host in hosts {
                if host == "insecure:allow-all" {
                    outbound.push("*://*:*".to_owned());
                } else {
                    outbound.push(format!("http://{host}"));
                    outbound.push(format!("https://{host}"));
                }
            }
            component.insert(
                "allowed_outbound_hosts".to_owned(),
                Value::Array(outbound.into_iter().map(Value::String).collect()),
            );
        }
        if let Some(trigger) = component.remove("trigger") {
            let key = format!("{at}.trigger");
            let trigger = ctx.table(&key, &trigger)?;
            ctx.check_keys(&key, trigger, &["route", "executor"], &[])?;
            if let Some(executor) = trigger.get("executor") {
                let executor = ctx.table(&format!("{key}.executor"), executor)?;
                let kind = ctx.optional_string(&format!("{key}.executor"), executor, "type")?;
                if kind.as_deref().is_some_and(|kind| kind != "spin") {
                    return Err(ctx.unsupported(
                        &format!("{key}.executor"),
                        "only the `spin` executor is supported by dol (not WAGI)",
                    ));
                }
            }
            let route = trigger
                .get("route")
                .cloned()
                .ok_or_else(|| ctx.invalid(&format!("{key}.route"), "missing"))?;
            let mut http = Table::new();
            http.insert("route".to_owned(), route);
            http.insert("component".to_owned(), Value::String(id.clone()));
            http_triggers.push(Value::Table(http));
        }
        components.insert(id, Value::Table(component));
    }

    let mut v2 = Table::new();
    v2.insert("spin_manifest_version".to_owned(), Value::Integer(2));
    v2.insert("application".to_owned(), Value::Table(application));
    if let Some(variables) = root.remove("variables") {
        v2.insert("variables".to_owned(), variables);
    }
    if !http_triggers.is_empty() {
        let mut triggers = Table::new();
        triggers.insert("http".to_owned(), Value::Array(http_triggers));
        v2.insert("trigger".to_owned(), Value::Table(triggers));
    }
    if !components.is_empty() {
        v2.insert("component".to_owned(), Value::Table(components));
    }
    // Anything left is a key version 1 does not have: the v2 checks name it.
    for (key, value) in root {
        v2.insert(key, value);
    }
    Ok(v2)
}
