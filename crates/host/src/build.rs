//! `dol build`: runs each component's `[component.X.build] command`, like `spin build`.

use std::process::Command;

use anyhow::{Context, Result, bail};
use dol_manifest::manifest::Manifest;

/// Runs every build command in manifest order; stops at the first failure.
pub fn build_all(manifest: &Manifest) -> Result<()> {
    for (id, component) in &manifest.components {
        let Some(build) = &component.build else {
            tracing::info!("component {id}: no build command");
            continue;
        };
        let workdir = build
            .workdir
            .clone()
            .unwrap_or_else(|| manifest.base_dir.clone());
        for command in &build.commands {
            eprintln!("Building component {id} with `{command}`");
            let status = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .status()
                .with_context(|| {
                    format!(
                        "component {id}: running `{command}` in {}",
                        workdir.display()
                    )
                })?;
            if !status.success() {
                bail!("component {id}: build command `{command}` failed ({status})");
            }
        }
    }
    eprintln!("Finished building all Spin components");
    Ok(())
}
