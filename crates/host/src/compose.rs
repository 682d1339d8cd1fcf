//! Component dependencies (`[component.X.dependencies]`): at load time the
//! component is composed with the components that export the interfaces it
//! imports, as Spin does, so the result is one component the host links as usual.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use dol_manifest::manifest::Dependency;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// Imports that reach the host's Spin capabilities. A dependency that does not
/// inherit the component's configuration must not import them: Spin would deny
/// every call, and dol has no deny adapters yet, so it refuses up front.
const CAPABILITY_PREFIXES: &[&str] = &[
    "fermyon:spin/",
    "spin:",
    "wasi:http/outgoing-handler",
    "wasi:keyvalue/",
    "wasi:config/",
    // Spin puts sockets under `allowed_outbound_hosts` (SIP 023): in a
    // composed component they would reach whatever the component may.
    "wasi:sockets/",
];

/// The import that reads the component's `environment` table. Almost every
/// Rust component imports it (the standard library does), so a dependency
/// importing it is refused only when there is something to read: Spin gives
/// a dependency that does not inherit the configuration an empty
/// environment; a composed component has one table, the component's.
const ENVIRONMENT_IMPORT: &str = "wasi:cli/environment";

/// `wasi:http/types@0.2.6` → `wasi:http/types`.
fn without_version(name: &str) -> &str {
    name.split_once('@')
        .map_or(name, |(unversioned, _)| unversioned)
}

/// Composes the component at `main` with its `dependencies` and returns the
/// composed component's bytes.
pub fn compose(
    component_id: &str,
    main: &Path,
    dependencies: &BTreeMap<String, Dependency>,
    inherit_configuration: bool,
    has_environment: bool,
) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let main_package = Package::from_file("root:component", None, main, graph.types_mut())
        .with_context(|| format!("component {component_id}: reading {}", main.display()))?;
    let main_package = graph.register_package(main_package)?;
    let main_instance = graph.instantiate(main_package);
    let main_imports: Vec<String> = graph.types()[graph[main_package].ty()]
        .imports
        .keys()
        .cloned()
        .collect();

    for (index, (import_key, dependency)) in dependencies.iter().enumerate() {
        let context = || format!("component.{component_id}.dependencies.\"{import_key}\"");
        // Keys may leave out the version (`dol:flags/evaluator`) as in Spin.
        let import_name = main_imports
            .iter()
            .find(|name| *name == import_key || without_version(name) == import_key.as_str())
            .cloned()
            .ok_or_else(|| anyhow!("{}: the component does not import {import_key}", context()))?;
        let package = Package::from_file(
            &format!("dependency:d{index}"),
            None,
            &dependency.path,
            graph.types_mut(),
        )
        .with_context(|| format!("{}: reading {}", context(), dependency.path.display()))?;
        if !inherit_configuration {
            let imports = &graph.types()[package.ty()].imports;
            if let Some(capability) = imports.keys().find(|name| {
                CAPABILITY_PREFIXES
                    .iter()
                    .any(|prefix| name.starts_with(prefix))
            }) {
                bail!(
                    "{}: the dependency imports {capability}, but dependencies_inherit_configuration is false; \
                     set it to true to let the dependency use the component's Spin APIs",
                    context()
                );
            }
            if has_environment
                && imports
                    .keys()
                    .any(|name| without_version(name) == ENVIRONMENT_IMPORT)
            {
                bail!(
                    "{}: the dependency imports {ENVIRONMENT_IMPORT} and would read the component's \
                     environment, but dependencies_inherit_configuration is false; set it to true, \
                     or move the environment values out of the component",
                    context()
                );
            }
        }
        let exports: Vec<String> = graph.types()[package.ty()]
            .exports
            .keys()
            .cloned()
            .collect();
        let wanted = dependency
            .export
            .clone()
            .unwrap_or_else(|| import_name.clone());
        let export_name = exports
            .iter()
            .find(|name| **name == wanted || without_version(name) == without_version(&wanted))
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{}: {} exports no {wanted} (it exports: {})",
                    context(),
                    dependency.path.display(),
                    exports.join(", ")
                )
            })?;
        let package = graph.register_package(package)?;
        let instance = graph.instantiate(package);
        let export = graph
            .alias_instance_export(instance, &export_name)
            .with_context(context)?;
        graph
            .set_instantiation_argument(main_instance, &import_name, export)
            .with_context(context)?;
    }

    let main_exports: Vec<String> = graph.types()[graph[main_package].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in main_exports {
        let export = graph.alias_instance_export(main_instance, &name)?;
        graph.export(export, &name)?;
    }
    // Every import left unsatisfied (WASI, Spin APIs) becomes an import of the
    // composed component, which the host's linker provides as usual.
    graph
        .encode(EncodeOptions::default())
        .with_context(|| format!("component {component_id}: composing with its dependencies"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_stripped_for_matching() {
        assert_eq!(
            without_version("dol:flags/evaluator@0.1.0"),
            "dol:flags/evaluator"
        );
        assert_eq!(
            without_version("dol:flags/evaluator"),
            "dol:flags/evaluator"
        );
    }
}
