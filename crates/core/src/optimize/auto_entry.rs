//! The auto entry tier (issue 16, item 5 in the live gateway): when the
//! `dol.tier` hint or the tier flag says `auto` and the request lets DOL
//! choose the model, the gateway classifies the prompt ([`classify`]) and
//! enters at the tier [`choose`] picks from the learned [`QualityTable`]
//! ([`super::selection::select_tier`] over the tiers cheapest first, at the
//! gateway's quality threshold). The quality gate and the fallback tiers
//! work as for any entry tier.
//!
//! The table is **learned from telemetry**, never written per request: the
//! minute scan [`SELECTION`] folds the answered `requests` rows of the last
//! [`WINDOW_MS`] that carry a difficulty ([`learn`]) and stores the table
//! under [`TABLE_KEY`]; the gateway reads that one key only when the auto
//! entry is in effect ([`read_table`]; missing or unreadable = empty =
//! explore, never a failed request).
//!
//! **Attribution.** Each scored answer counts at the tier that produced it
//! (the row's `tier`, which after a fallback is not the entry tier), with
//! user feedback (0–1, × 10 as routing maps it) in place of the automatic
//! score where given; and every answer the quality gate **passed over**
//! (a `low_quality` attempt in the row's `detail`, followed by a fallback)
//! counts at its own tier with its score. Counting the entry tier's answer
//! only when it was the one returned would hide exactly the answers that
//! failed the gate, so a tier that fails half its hard prompts would look
//! good; counting every judged answer at the tier that wrote it measures
//! each tier as it is.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::selection::{Difficulty, QualityTable, Reason, SelectionConfig, select_tier};
use crate::gateway::openai::{ChatRequest, Role};
use crate::gateway::tiers::Tier;
use crate::storage::{KeyValue, Row, SqlExecutor, SqlValue};

/// Name of the minute scan that learns the table.
pub const SELECTION: &str = "selection";
/// Key-value key of the learned table ([`Learned`] as JSON).
pub const TABLE_KEY: &str = "dol:optimize:selection";
/// How far back the scan reads `requests`: one day.
pub const WINDOW_MS: i64 = 24 * 3_600_000;
/// At most this many rows (the newest) per scan, so a busy day costs the
/// minute scan a bounded read.
pub const MAX_ROWS: i64 = 5_000;
/// The response header naming the difficulty and the reason of an auto entry.
pub const HEADER: &str = "x-dol-selection";

/// The auto entry's choice for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// How hard the prompt looked.
    pub difficulty: Difficulty,
    /// The entry tier chosen.
    pub tier: Tier,
    /// Why (explore, meets, best).
    pub reason: Reason,
}

impl Choice {
    /// The [`HEADER`] value: `difficulty;reason` (e.g. `medium;meets`).
    pub fn header_value(&self) -> String {
        format!("{};{}", self.difficulty.as_str(), self.reason.as_str())
    }
}

/// The user's text of a request: every `user` message, in order (the
/// system prompt is the application's, the same for easy and hard asks;
/// earlier turns count because a short follow-up inherits the thread).
pub fn prompt_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.text_content())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The difficulty of a request whose model DOL chooses (`auto` and its
/// aliases); `None` for a pinned model, whose tier is not chosen.
pub fn classify(request: &ChatRequest) -> Option<Difficulty> {
    crate::gateway::engine::is_auto_model(&request.model)
        .then(|| super::selection::difficulty(&prompt_text(request)))
}

/// The entry tier for a `d` prompt among `tiers` (cheapest first, those
/// with candidates) at the gateway's quality `threshold`; `None` when no
/// tier has candidates.
pub fn choose(
    table: &QualityTable,
    d: Difficulty,
    tiers: &[Tier],
    threshold: f64,
) -> Option<Choice> {
    let config = SelectionConfig {
        threshold,
        ..SelectionConfig::default()
    };
    select_tier(table, d, tiers, &config).map(|(tier, reason)| Choice {
        difficulty: d,
        tier,
        reason,
    })
}

/// What the scan stores under [`TABLE_KEY`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Learned {
    /// The quality per tier and difficulty.
    pub table: QualityTable,
    /// When it was learned (Unix ms).
    pub learned_at_ms: i64,
    /// Rows read (answered, with a difficulty, in the window).
    pub rows: u64,
    /// Of those, requests that entered by the auto entry.
    pub auto_entered: u64,
}

/// The learned table; a missing key is an empty table (everything is
/// explored), an unreadable one an `Err` the caller reports and replaces by
/// an empty table.
pub fn read_table(kv: &mut impl KeyValue) -> Result<QualityTable, String> {
    match kv.get(TABLE_KEY)? {
        Some(bytes) => serde_json::from_slice::<Learned>(&bytes)
            .map(|l| l.table)
            .map_err(|e| format!("selection table: {e}")),
        None => Ok(QualityTable::default()),
    }
}

/// One answered request as [`learn`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Its difficulty.
    pub difficulty: Difficulty,
    /// The tier that answered.
    pub tier: Tier,
    /// The answer's quality: feedback × 10 where given, else the automatic
    /// score; `None` when neither (a streamed answer without feedback).
    pub quality: Option<f64>,
    /// The answers the gate passed over before it: (tier, score).
    pub passed_over: Vec<(Tier, f64)>,
}

/// The table of `rows` (see the module docs for the attribution).
pub fn learn(rows: &[Observed]) -> QualityTable {
    let mut table = QualityTable::default();
    for r in rows {
        if let Some(q) = r.quality {
            table.observe(r.tier, r.difficulty, q);
        }
        for &(tier, q) in &r.passed_over {
            table.observe(tier, r.difficulty, q);
        }
    }
    table
}

/// The answers of `detail.attempts` the gate passed over: `low_quality`
/// attempts with a score, except the one returned (`answer`: the row's
/// outcome was `low_quality` — the best below-threshold answer — at `tier`
/// with `quality`), which is counted as the answer.
pub fn passed_over(detail: &Value, answer: Option<(Tier, f64)>) -> Vec<(Tier, f64)> {
    let mut answer = answer;
    let mut out = Vec::new();
    for a in detail["attempts"].as_array().into_iter().flatten() {
        let (Some(tier), Some(q)) = (
            a["tier"].as_str().and_then(Tier::parse),
            a["quality"].as_f64(),
        ) else {
            continue;
        };
        if a["outcome"] != "low_quality" {
            continue;
        }
        if answer.is_some_and(|(t, aq)| t == tier && (aq - q).abs() < 1e-9) {
            answer = None;
            continue;
        }
        out.push((tier, q));
    }
    out
}

/// Reads the answered rows with a difficulty since `now_ms −` [`WINDOW_MS`]
/// (the newest [`MAX_ROWS`]; cache hits left out), learns the table and
/// stores it under [`TABLE_KEY`]. Returns what was stored.
pub fn relearn(
    db: &mut impl SqlExecutor,
    kv: &mut impl KeyValue,
    now_ms: i64,
) -> Result<Learned, String> {
    let rows = db.execute(
        "SELECT r.difficulty, r.tier, r.outcome, r.quality, f.score, r.detail FROM requests r \
         LEFT JOIN feedback f ON f.request_id = r.id \
         WHERE r.ts >= ? AND r.difficulty IS NOT NULL AND r.cached = 0 \
         ORDER BY r.ts DESC LIMIT ?",
        &[
            SqlValue::Integer(now_ms.saturating_sub(WINDOW_MS)),
            SqlValue::Integer(MAX_ROWS),
        ],
    )?;
    let mut observed = Vec::with_capacity(rows.len());
    let mut auto_entered = 0;
    for values in &rows {
        let r = Row::new("requests", values);
        let e = |e: crate::storage::ColumnError| e.to_string();
        let (Some(difficulty), Some(tier)) = (
            Difficulty::parse(r.text(0, "difficulty").map_err(e)?),
            Tier::parse(r.text(1, "tier").map_err(e)?),
        ) else {
            continue;
        };
        let automatic = r.opt_real(3, "quality").map_err(e)?;
        let feedback = r.opt_real(4, "score").map_err(e)?;
        // A corrupt detail loses only the passed-over answers of its row.
        let detail: Value =
            serde_json::from_str(r.text(5, "detail").map_err(e)?).unwrap_or_default();
        auto_entered += u64::from(detail.get("selection").is_some());
        let returned_low = r.text(2, "outcome").map_err(e)? == "low_quality";
        let answer = automatic.filter(|_| returned_low).map(|q| (tier, q));
        observed.push(Observed {
            difficulty,
            tier,
            quality: feedback.map(|s| s * 10.0).or(automatic),
            passed_over: passed_over(&detail, answer),
        });
    }
    let learned = Learned {
        table: learn(&observed),
        learned_at_ms: now_ms,
        rows: observed.len() as u64,
        auto_entered,
    };
    let bytes = serde_json::to_vec(&learned).map_err(|e| e.to_string())?;
    kv.set(TABLE_KEY, &bytes)?;
    Ok(learned)
}

/// The admin view of the stored table (`GET /admin/recommendations` →
/// `selection`): every cell with its count, mean and lower bound (the bound
/// the choice compares with `threshold`), the choice per difficulty over
/// all three tiers, and whether the tier `flag` serves `auto` (from its
/// flagd `document`, when known).
pub fn view(kv: &mut impl KeyValue, threshold: f64, flag: &str, document: Option<&Value>) -> Value {
    let (learned, error) = match kv.get(TABLE_KEY) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Learned>(&bytes) {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(format!("unreadable: {e}"))),
        },
        Ok(None) => (None, None),
        Err(e) => (None, Some(e)),
    };
    let table = learned
        .as_ref()
        .map(|l| l.table.clone())
        .unwrap_or_default();
    let config = SelectionConfig {
        threshold,
        ..SelectionConfig::default()
    };
    let mut cells = Vec::new();
    for tier in Tier::ALL.into_iter().rev() {
        for d in Difficulty::ALL {
            let e = table.get(tier, d);
            if e.n > 0 {
                cells.push(json!({
                    "tier": tier.as_str(), "difficulty": d.as_str(), "n": e.n,
                    "mean": e.mean(), "lower": e.lower(config.z),
                }));
            }
        }
    }
    let cheapest_first: Vec<Tier> = Tier::ALL.into_iter().rev().collect();
    let choices: serde_json::Map<String, Value> = Difficulty::ALL
        .iter()
        .filter_map(|&d| {
            let c = choose(&table, d, &cheapest_first, threshold)?;
            Some((
                d.as_str().to_owned(),
                json!({"tier": c.tier.as_str(), "reason": c.reason.as_str()}),
            ))
        })
        .collect();
    let auto_variants = document.map(|doc| auto_variants(doc, flag));
    json!({
        "flag": flag,
        "autoVariants": auto_variants,
        "autoEntered": learned.as_ref().map(|l| l.auto_entered),
        "rows": learned.as_ref().map(|l| l.rows),
        "learnedAtMs": learned.as_ref().map(|l| l.learned_at_ms),
        "windowSecs": WINDOW_MS / 1_000,
        "threshold": threshold,
        "z": config.z,
        "minSamples": config.min_samples,
        "cells": cells,
        "choices": choices,
        "error": error,
    })
}

/// The variants of `flag` in a flagd `document` whose value is `auto`
/// (the default variant first, marked `(default)`).
pub fn auto_variants(document: &Value, flag: &str) -> Vec<String> {
    let f = &document["flags"][flag];
    let default = f["defaultVariant"].as_str();
    let mut out: Vec<String> = f["variants"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_str() == Some("auto"))
        .map(|(k, _)| {
            if Some(k.as_str()) == default {
                format!("{k} (default)")
            } else {
                k.clone()
            }
        })
        .collect();
    out.sort_by_key(|k| !k.ends_with("(default)"));
    out
}

#[cfg(test)]
#[path = "auto_entry_tests.rs"]
mod tests;
