//! The `discovery` scan (every 6 hours): each enabled provider's model list
//! diffed against the `models` catalog. New models are recorded with source
//! `discovered`, tier `basic` and no price; a message lists new, removed and
//! changed models; the `ModelsWithoutPrice` rule alerts on the unpriced ones
//! at the next `alerts` scan.

use dol_core::gateway::catalog::{self, enabled_providers};
use dol_core::gateway::providers::{models_request, parse_models};
use std::collections::BTreeMap;

use dol_core::observe::alerts;
use dol_core::observe::scans::{
    CATALOG_COLUMNS, CatalogModel, DISCOVERY, ModelDiff, ScanMessage, diff_models,
    discovered_entry, enqueue_message,
};
use dol_core::storage::SqlValue;
use serde_json::{Value, json};
use spin_sdk::sqlite::Connection;

use crate::net;
use dol_spin_platform::{SpinSql, exec, in_transaction};

fn int(n: Option<u64>) -> SqlValue {
    n.map_or(SqlValue::Null, |n| {
        SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    })
}

/// Seeds the catalog from `catalog/models.json` when it is empty (as the
/// generate component does on its first request), so discovery never makes
/// the seed look like new models.
fn seed_if_empty(db: &Connection, now_ms: i64) -> anyhow::Result<()> {
    let seed = catalog::parse(catalog::SEED).map_err(|e| anyhow::anyhow!("seed catalog: {e}"))?;
    in_transaction(&mut SpinSql(db), |tx| {
        if !exec(tx, "SELECT 1 FROM models LIMIT 1", &[])?.is_empty() {
            return Ok(());
        }
        for e in &seed {
            exec(
                tx,
                "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, \
                 capabilities, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'seed', ?) \
                 ON CONFLICT (provider, model) DO NOTHING",
                &[
                    SqlValue::Text(e.provider.clone()),
                    SqlValue::Text(e.model.clone()),
                    SqlValue::Text(e.tier.as_str().to_owned()),
                    int(e.input_price),
                    int(e.output_price),
                    int(Some(e.context_window)),
                    SqlValue::Text(serde_json::to_string(&e.capabilities)?),
                    SqlValue::Integer(now_ms),
                ],
            )?;
        }
        Ok(())
    })
}

fn catalog_rows(db: &Connection) -> anyhow::Result<Vec<CatalogModel>> {
    Ok(exec(
        &mut SpinSql(db),
        &format!("SELECT {CATALOG_COLUMNS} FROM models"),
        &[],
    )?
    .iter()
    .filter_map(|r| CatalogModel::from_sql_row(r))
    .collect())
}

fn record_new(db: &Connection, diff: &ModelDiff, now_ms: i64) -> anyhow::Result<()> {
    in_transaction(&mut SpinSql(db), |tx| {
        for m in &diff.added {
            let e = discovered_entry(&diff.provider, m);
            exec(
                tx,
                "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, \
                 capabilities, source, updated_at) VALUES (?, ?, 'basic', NULL, NULL, ?, ?, ?, ?) \
                 ON CONFLICT (provider, model) DO NOTHING",
                &[
                    SqlValue::Text(e.provider.clone()),
                    SqlValue::Text(e.model.clone()),
                    int(Some(e.context_window)),
                    SqlValue::Text(serde_json::to_string(&e.capabilities)?),
                    SqlValue::Text(e.source.clone()),
                    SqlValue::Integer(now_ms),
                ],
            )?;
        }
        Ok(())
    })
}

fn describe(diffs: &[ModelDiff]) -> String {
    let mut lines = Vec::new();
    for d in diffs {
        for m in &d.added {
            lines.push(format!("new {}/{} (no price yet)", d.provider, m.id));
        }
        for m in &d.removed {
            lines.push(format!("removed {}/{m}", d.provider));
        }
        for c in &d.changed {
            lines.push(format!(
                "changed {}/{}: {}",
                d.provider,
                c.model,
                c.changes.join("; ")
            ));
        }
    }
    lines.join("\n")
}

/// Runs the scan at `now_ms`; returns its summary.
pub fn run(db: &Connection, now_ms: i64) -> anyhow::Result<Value> {
    seed_if_empty(db, now_ms)?;
    let catalog = catalog_rows(db)?;
    let mut diffs = Vec::new();
    let mut failures = Vec::new();
    for cfg in enabled_providers(&crate::config::providers()) {
        let listed = net::send(&models_request(&cfg)).and_then(|a| {
            if (200..300).contains(&a.status) {
                parse_models(cfg.kind, &a.body).map_err(|f| f.to_string())
            } else {
                Err(format!("HTTP {}", a.status))
            }
        });
        match listed {
            Ok(models) => {
                let diff = diff_models(&cfg.name, &catalog, &models);
                record_new(db, &diff, now_ms)?;
                diffs.push(diff);
            }
            Err(e) => {
                eprintln!("scans: discovery for {} failed: {e}", cfg.name);
                failures.push(json!({ "provider": cfg.name, "error": e }));
            }
        }
    }
    // Removed models stay in the catalog (an admin decides), so they alone
    // would repeat every run: a message goes out for new or changed models.
    let changed: Vec<&ModelDiff> = diffs
        .iter()
        .filter(|d| !d.added.is_empty() || !d.changed.is_empty())
        .collect();
    let mut queued = None;
    if !changed.is_empty() {
        let text = describe(&diffs);
        let message = ScanMessage {
            scan: DISCOVERY.to_owned(),
            title: "DOL model discovery".to_owned(),
            text,
            data: serde_json::to_value(&changed)?,
        };
        let key = format!(
            "discovery:{now_ms}:{}",
            alerts::fingerprint(&BTreeMap::from([("text".to_owned(), message.text.clone())]))
        );
        queued = enqueue_message(&mut SpinSql(db), &message, &key, now_ms)?;
    }
    Ok(json!({ "providers": diffs, "failures": failures, "queued": queued }))
}
