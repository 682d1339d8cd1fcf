//! The `rollouts` scan (every minute, and `POST /admin/scans/rollouts`):
//! the guard loop of `dol_core::rollouts`. Each decision is applied in its
//! own transaction there; this adapter publishes the flag versions written,
//! so a rollback takes effect at the next evaluation in every component,
//! and delivers the queued messages at once.

use anyhow::Context as _;
use dol_core::rollouts::store::run_guards;
use serde_json::{Value, json};
use spin_sdk::sqlite::Connection;

use crate::platform::{SpinSql, publish_flags};

/// Runs the guard loop at `now_ms`; returns one summary per rollout.
pub fn run(db: &Connection, now_ms: i64) -> anyhow::Result<Value> {
    let outcomes = run_guards(&mut SpinSql(db), now_ms).context("rollout guard loop")?;
    let mut notable = false;
    for applied in outcomes.iter().filter_map(|o| o.applied.as_ref()) {
        notable |= applied.action.is_notable();
        if let Some((version, state)) = &applied.flags {
            publish_flags(*version, state);
        }
    }
    let delivery = if notable {
        crate::deliver::due(db, now_ms)?
    } else {
        Value::Null
    };
    let summaries: Vec<Value> = outcomes.iter().map(|o| o.summary()).collect();
    Ok(json!({ "rollouts": summaries, "delivery": delivery }))
}
