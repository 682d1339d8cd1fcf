//! The `rollouts` scan (every minute, and `POST /admin/scans/rollouts`):
//! the guard loop of `dol_core::rollouts`. Each decision is applied in its
//! own transaction there and the flag versions written are published at
//! once, so a rollback takes effect at the next evaluation in every
//! component; this adapter delivers the queued messages at once. The same
//! tick reconciles the published flag set with SQLite
//! (`dol_core::flags::store::reconcile`), repairing key-value after a crash
//! between a commit and its publication.

use anyhow::Context as _;
use dol_core::flags::store::reconcile;
use dol_core::rollouts::store::run_guards;
use dol_spin_platform::Db;
use serde_json::{Value, json};

use dol_spin_platform::{SpinKv, SpinSql};

/// Runs the guard loop at `now_ms`; returns one summary per rollout.
pub fn run(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let mut kv = SpinKv::open_default()?;
    let outcomes = run_guards(&mut SpinSql(db), &mut kv, now_ms).context("rollout guard loop")?;
    let repaired = reconcile(&mut SpinSql(db), &mut kv, now_ms).context("flag reconciliation")?;
    let notable = outcomes
        .iter()
        .filter_map(|o| o.applied.as_ref())
        .any(|applied| applied.action.is_notable());
    let delivery = if notable {
        crate::deliver::due(db, now_ms)?
    } else {
        Value::Null
    };
    let summaries: Vec<Value> = outcomes.iter().map(|o| o.summary()).collect();
    Ok(json!({ "rollouts": summaries, "delivery": delivery, "flagsRepublished": repaired }))
}
