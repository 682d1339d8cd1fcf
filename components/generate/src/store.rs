//! Storage for the gateway: keys and usage counters, the model catalog,
//! prompt templates and telemetry in SQLite; routing state and the response
//! cache in key-value. Decisions are made by `dol_core::gateway`; this module
//! only reads and writes.

use anyhow::Context as _;
use dol_core::gateway::cache::CacheEntry;
use dol_core::gateway::catalog;
use dol_core::gateway::engine::RoutingState;
use dol_core::gateway::keys::{self, Admission, KeyLimits, Reservation, Usage};
use dol_core::gateway::routing::CatalogEntry;
use dol_core::gateway::telemetry::{RequestRecord, latency_bucket};
use dol_core::gateway::templates::TemplateSpec;
use dol_core::gateway::tiers::Tier;
use dol_core::storage::{SqlExecutor, SqlValue};
use serde_json::{Value, json};
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::Connection;

use dol_spin_platform::{SpinSql, exec, in_transaction, open_db};

/// Key-value key of the routing state.
const ROUTING_KEY: &str = "gw:routing";

fn text(v: &SqlValue) -> String {
    match v {
        SqlValue::Text(t) => t.clone(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(r) => r.to_string(),
        _ => String::new(),
    }
}

fn int(v: &SqlValue) -> Option<i64> {
    match v {
        SqlValue::Integer(i) => Some(*i),
        _ => None,
    }
}

fn uint(v: &SqlValue) -> u64 {
    int(v).map_or(0, |i| u64::try_from(i).unwrap_or(0))
}

fn opt_int(v: Option<u64>) -> SqlValue {
    v.map_or(SqlValue::Null, |n| {
        SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    })
}

fn i(n: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn t(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

/// A stored API key.
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// Key id.
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// Display prefix.
    pub prefix: String,
    /// Limits.
    pub limits: KeyLimits,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Revoked, Unix ms.
    pub revoked_at: Option<i64>,
}

impl KeyRow {
    /// The key as admin JSON (never the key itself).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "limits": self.limits,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        })
    }
}

const KEY_COLUMNS: &str = "id, name, prefix, requests_per_minute, tokens_per_minute, monthly_budget_micros, created_at, revoked_at";

fn key_row(r: &[SqlValue]) -> KeyRow {
    let lim = |v: &SqlValue| int(v).map(|n| u64::try_from(n).unwrap_or(0));
    KeyRow {
        id: text(&r[0]),
        name: text(&r[1]),
        prefix: text(&r[2]),
        limits: KeyLimits {
            requests_per_minute: lim(&r[3]),
            tokens_per_minute: lim(&r[4]),
            monthly_budget_micros: lim(&r[5]),
        },
        created_at: int(&r[6]).unwrap_or(0),
        revoked_at: int(&r[7]),
    }
}

/// Opens the database (migrated).
pub fn db() -> anyhow::Result<Connection> {
    open_db()
}

/// Stores a new key (hash only).
pub fn create_key(
    db: &Connection,
    id: &str,
    name: &str,
    key: &str,
    limits: &KeyLimits,
    now_ms: i64,
) -> anyhow::Result<KeyRow> {
    let mut sql = SpinSql(db);
    exec(
        &mut sql,
        "INSERT INTO api_keys (id, name, key_hash, prefix, requests_per_minute, tokens_per_minute, monthly_budget_micros, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            t(id),
            t(name),
            t(&keys::hash_key(key)),
            t(&keys::display_prefix(key)),
            opt_int(limits.requests_per_minute),
            opt_int(limits.tokens_per_minute),
            opt_int(limits.monthly_budget_micros),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(KeyRow {
        id: id.to_owned(),
        name: name.to_owned(),
        prefix: keys::display_prefix(key),
        limits: *limits,
        created_at: now_ms,
        revoked_at: None,
    })
}

/// All keys, newest first.
pub fn list_keys(db: &Connection) -> anyhow::Result<Vec<KeyRow>> {
    let rows = exec(
        &mut SpinSql(db),
        &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"),
        &[],
    )?;
    Ok(rows.iter().map(|r| key_row(r)).collect())
}

/// Revokes a key; false when there is no such active key.
pub fn revoke_key(db: &Connection, id: &str, now_ms: i64) -> anyhow::Result<Option<KeyRow>> {
    let mut sql = SpinSql(db);
    exec(
        &mut sql,
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        &[SqlValue::Integer(now_ms), t(id)],
    )?;
    let rows = exec(
        &mut sql,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"),
        &[t(id)],
    )?;
    Ok(rows.first().map(|r| key_row(r)))
}

/// The active key with this secret, if any.
pub fn find_key(db: &Connection, key: &str) -> anyhow::Result<Option<KeyRow>> {
    let rows = exec(
        &mut SpinSql(db),
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"),
        &[t(&keys::hash_key(key))],
    )?;
    Ok(rows.first().map(|r| key_row(r)))
}

fn read_usage(db: &mut impl SqlExecutor, key_id: &str) -> anyhow::Result<Usage> {
    let rows = exec(
        db,
        "SELECT window_start, window_requests, window_tokens, month, spent_micros, reserved_micros FROM key_usage WHERE key_id = ?",
        &[t(key_id)],
    )?;
    Ok(rows.first().map_or_else(Usage::default, |r| Usage {
        window_start: uint(&r[0]),
        window_requests: uint(&r[1]),
        window_tokens: uint(&r[2]),
        month: text(&r[3]),
        spent_micros: uint(&r[4]),
        reserved_micros: uint(&r[5]),
    }))
}

fn write_usage(db: &mut impl SqlExecutor, key_id: &str, u: &Usage) -> anyhow::Result<()> {
    exec(
        db,
        "INSERT INTO key_usage (key_id, window_start, window_requests, window_tokens, month, spent_micros, reserved_micros) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (key_id) DO UPDATE SET window_start = excluded.window_start, window_requests = excluded.window_requests, \
         window_tokens = excluded.window_tokens, month = excluded.month, spent_micros = excluded.spent_micros, reserved_micros = excluded.reserved_micros",
        &[
            t(key_id),
            i(u.window_start),
            i(u.window_requests),
            i(u.window_tokens),
            t(&u.month),
            i(u.spent_micros),
            i(u.reserved_micros),
        ],
    )?;
    Ok(())
}

/// Admits (and reserves) or refuses a request for `key`, under the write lock.
pub fn admit(
    db: &Connection,
    key_id: &str,
    limits: &KeyLimits,
    want: Reservation,
    now_secs: u64,
) -> anyhow::Result<Admission> {
    in_transaction(&mut SpinSql(db), |tx| {
        let stored = read_usage(tx, key_id)?;
        let decision = keys::admit(&stored, limits, want, now_secs);
        if let Admission::Admit(next) = &decision {
            write_usage(tx, key_id, next)?;
        }
        Ok(decision)
    })
}

/// Swaps a reservation for the actual figures.
pub fn settle(
    db: &Connection,
    key_id: &str,
    want: Reservation,
    reserved_at_secs: u64,
    tokens: u64,
    cost_micros: u64,
    now_secs: u64,
) -> anyhow::Result<()> {
    in_transaction(&mut SpinSql(db), |tx| {
        let stored = read_usage(tx, key_id)?;
        let next = keys::settle(
            &stored,
            want,
            reserved_at_secs,
            tokens,
            cost_micros,
            now_secs,
        );
        write_usage(tx, key_id, &next)
    })
}

/// The usage counters of a key (for the admin API).
pub fn usage(db: &Connection, key_id: &str) -> anyhow::Result<Usage> {
    read_usage(&mut SpinSql(db), key_id)
}

fn catalog_row(r: &[SqlValue]) -> Option<CatalogEntry> {
    let caps: Vec<String> = serde_json::from_str(&text(&r[6])).unwrap_or_default();
    Some(CatalogEntry {
        provider: text(&r[0]),
        model: text(&r[1]),
        tier: Tier::parse(&text(&r[2]))?,
        input_price: int(&r[3]).map(|n| u64::try_from(n).unwrap_or(0)),
        output_price: int(&r[4]).map(|n| u64::try_from(n).unwrap_or(0)),
        context_window: uint(&r[5]),
        capabilities: caps.into_iter().collect(),
    })
}

fn upsert_model(
    db: &mut impl SqlExecutor,
    e: &CatalogEntry,
    source: &str,
    now_ms: i64,
) -> anyhow::Result<()> {
    let caps = serde_json::to_string(&e.capabilities).context("capabilities")?;
    exec(
        db,
        "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, capabilities, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (provider, model) DO UPDATE SET tier = excluded.tier, input_price = excluded.input_price, output_price = excluded.output_price, \
         context_window = excluded.context_window, capabilities = excluded.capabilities, source = excluded.source, updated_at = excluded.updated_at",
        &[
            t(&e.provider),
            t(&e.model),
            t(e.tier.as_str()),
            opt_int(e.input_price),
            opt_int(e.output_price),
            i(e.context_window),
            t(&caps),
            t(source),
            SqlValue::Integer(now_ms),
        ],
    )?;
    Ok(())
}

/// The catalog, seeded from `catalog/models.json` the first time.
pub fn catalog(db: &Connection, now_ms: i64) -> anyhow::Result<Vec<CatalogEntry>> {
    catalog_where(db, now_ms, "")
}

/// The models routing may use: everything except models found by discovery
/// that nobody has priced yet (a provider's list also holds embedding, audio
/// and other non-chat models; an admin `PUT /admin/models/...` admits one).
pub fn routable_catalog(db: &Connection, now_ms: i64) -> anyhow::Result<Vec<CatalogEntry>> {
    catalog_where(
        db,
        now_ms,
        "WHERE NOT (source = 'discovered' AND (input_price IS NULL OR output_price IS NULL))",
    )
}

fn catalog_where(db: &Connection, now_ms: i64, filter: &str) -> anyhow::Result<Vec<CatalogEntry>> {
    let select = format!(
        "SELECT provider, model, tier, input_price, output_price, context_window, capabilities FROM models {filter} ORDER BY provider, model"
    );
    let select = select.as_str();
    let rows = exec(&mut SpinSql(db), select, &[])?;
    // An empty filtered result may still mean "seeded"; the seed check below is on the whole table.
    if !rows.is_empty() {
        return Ok(rows.iter().filter_map(|r| catalog_row(r)).collect());
    }
    let seed = catalog::parse(catalog::SEED).map_err(|e| anyhow::anyhow!("seed catalog: {e}"))?;
    in_transaction(&mut SpinSql(db), |tx| {
        // Re-checked under the lock: racing first requests seed once.
        if exec(tx, "SELECT 1 FROM models LIMIT 1", &[])?.is_empty() {
            for e in &seed {
                upsert_model(tx, e, "seed", now_ms)?;
            }
        }
        Ok(())
    })?;
    let rows = exec(&mut SpinSql(db), select, &[])?;
    Ok(rows.iter().filter_map(|r| catalog_row(r)).collect())
}

/// Creates or replaces one catalog entry.
pub fn put_model(db: &Connection, e: &CatalogEntry, now_ms: i64) -> anyhow::Result<()> {
    catalog(db, now_ms)?;
    upsert_model(&mut SpinSql(db), e, "admin", now_ms)
}

/// Deletes one catalog entry; false when it did not exist.
pub fn delete_model(
    db: &Connection,
    provider: &str,
    model: &str,
    now_ms: i64,
) -> anyhow::Result<bool> {
    let before = catalog(db, now_ms)?;
    let existed = before
        .iter()
        .any(|e| e.provider == provider && e.model == model);
    exec(
        &mut SpinSql(db),
        "DELETE FROM models WHERE provider = ? AND model = ?",
        &[t(provider), t(model)],
    )?;
    Ok(existed)
}

/// Stores a new version of a template; returns the version number.
pub fn put_template(
    db: &Connection,
    name: &str,
    spec: &TemplateSpec,
    actor: &str,
    now_ms: i64,
) -> anyhow::Result<i64> {
    let body = serde_json::to_string(spec).context("template")?;
    in_transaction(&mut SpinSql(db), |tx| {
        let rows = exec(
            tx,
            "SELECT COALESCE(MAX(version), 0) FROM prompt_templates WHERE name = ?",
            &[t(name)],
        )?;
        let version = rows.first().and_then(|r| int(&r[0])).unwrap_or(0) + 1;
        exec(
            tx,
            "INSERT INTO prompt_templates (name, version, spec, created_at, actor) VALUES (?, ?, ?, ?, ?)",
            &[
                t(name),
                SqlValue::Integer(version),
                t(&body),
                SqlValue::Integer(now_ms),
                t(actor),
            ],
        )?;
        Ok(version)
    })
}

/// A template version (the latest when `version` is `None`).
pub fn get_template(
    db: &Connection,
    name: &str,
    version: Option<i64>,
) -> anyhow::Result<Option<(i64, TemplateSpec)>> {
    let rows = match version {
        Some(v) => exec(
            &mut SpinSql(db),
            "SELECT version, spec FROM prompt_templates WHERE name = ? AND version = ?",
            &[t(name), SqlValue::Integer(v)],
        )?,
        None => exec(
            &mut SpinSql(db),
            "SELECT version, spec FROM prompt_templates WHERE name = ? ORDER BY version DESC LIMIT 1",
            &[t(name)],
        )?,
    };
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let spec: TemplateSpec = serde_json::from_str(&text(&r[1])).context("stored template")?;
    Ok(Some((int(&r[0]).unwrap_or(0), spec)))
}

/// Every template's name and latest version.
pub fn list_templates(db: &Connection) -> anyhow::Result<Vec<Value>> {
    let rows = exec(
        &mut SpinSql(db),
        "SELECT name, MAX(version), MAX(created_at) FROM prompt_templates GROUP BY name ORDER BY name",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| json!({"name": text(&r[0]), "latest_version": int(&r[1]), "updated_at": int(&r[2])}))
        .collect())
}

/// Writes one request's telemetry: the raw row and its minute aggregate.
pub fn record(db: &Connection, r: &RequestRecord) -> anyhow::Result<()> {
    let mut sql = SpinSql(db);
    let b = |v: bool| SqlValue::Integer(i64::from(v));
    let quality = r.quality.map_or(SqlValue::Null, SqlValue::Real);
    exec(
        &mut sql,
        "INSERT INTO requests (id, ts, key_id, route, tier, entry_tier, provider, model, attempts, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_micros, cost_unknown, quality, outcome, fallbacks, cached, stream, variant, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            t(&r.id),
            i(r.ts_ms),
            t(&r.key_id),
            t(&r.route),
            t(r.tier.as_str()),
            t(r.entry_tier.as_str()),
            t(&r.provider),
            t(&r.model),
            i(u64::from(r.attempts)),
            i(r.latency_ms),
            opt_int(r.ttft_ms),
            i(r.prompt_tokens),
            i(r.completion_tokens),
            opt_int(r.cost_micros),
            b(r.cost_micros.is_none()),
            quality.clone(),
            t(&r.outcome),
            i(u64::from(r.fallbacks)),
            b(r.cached),
            b(r.stream),
            t(&r.variant),
            t(&r.detail.to_string()),
        ],
    )?;
    let bucket = latency_bucket(r.latency_ms);
    let column = format!("b{bucket}");
    let (q_sum, q_n) = r.quality.map_or((0.0, 0), |q| (q, 1));
    exec(
        &mut sql,
        &format!(
            "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, prompt_tokens, completion_tokens, cost_micros, cost_unknown, {column}) \
             VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) \
             ON CONFLICT (minute, tier, provider, model, outcome, variant) DO UPDATE SET requests = requests + 1, errors = errors + excluded.errors, \
             fallbacks = fallbacks + excluded.fallbacks, cache_hits = cache_hits + excluded.cache_hits, latency_sum_ms = latency_sum_ms + excluded.latency_sum_ms, \
             quality_sum = quality_sum + excluded.quality_sum, quality_n = quality_n + excluded.quality_n, prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = completion_tokens + excluded.completion_tokens, cost_micros = cost_micros + excluded.cost_micros, \
             cost_unknown = cost_unknown + excluded.cost_unknown, {column} = {column} + 1"
        ),
        &[
            i(r.minute()),
            t(r.tier.as_str()),
            t(&r.provider),
            t(&r.model),
            t(&r.outcome),
            t(&r.variant),
            b(r.is_error()),
            // Requests that fell back (0/1 each), so the fallback rate is fallbacks / requests.
            b(r.fallbacks > 0),
            b(r.cached),
            i(r.latency_ms),
            SqlValue::Real(q_sum),
            SqlValue::Integer(q_n),
            i(r.prompt_tokens),
            i(r.completion_tokens),
            i(r.cost_micros.unwrap_or(0)),
            b(r.cost_micros.is_none()),
        ],
    )?;
    Ok(())
}

/// One stored request record as JSON.
pub fn request(db: &Connection, id: &str) -> anyhow::Result<Option<Value>> {
    let rows = exec(
        &mut SpinSql(db),
        "SELECT id, ts, key_id, route, tier, entry_tier, provider, model, attempts, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_micros, cost_unknown, quality, outcome, fallbacks, cached, stream, variant, detail FROM requests WHERE id = ?",
        &[t(id)],
    )?;
    Ok(rows.first().map(|r| {
        let num = |v: &SqlValue| match v {
            SqlValue::Integer(n) => json!(n),
            SqlValue::Real(x) => json!(x),
            _ => Value::Null,
        };
        json!({
            "id": text(&r[0]), "ts": num(&r[1]), "key_id": text(&r[2]), "route": text(&r[3]), "tier": text(&r[4]),
            "entry_tier": text(&r[5]), "provider": text(&r[6]), "model": text(&r[7]), "attempts": num(&r[8]),
            "latency_ms": num(&r[9]), "ttft_ms": num(&r[10]), "prompt_tokens": num(&r[11]), "completion_tokens": num(&r[12]),
            "cost_micros": num(&r[13]), "cost_unknown": int(&r[14]) == Some(1), "quality": num(&r[15]), "outcome": text(&r[16]),
            "fallbacks": num(&r[17]), "cached": int(&r[18]) == Some(1), "stream": int(&r[19]) == Some(1), "variant": text(&r[20]),
            "detail": serde_json::from_str::<Value>(&text(&r[21])).unwrap_or(Value::Null),
        })
    }))
}

/// The key-value store.
pub fn kv() -> anyhow::Result<Store> {
    Store::open_default().context("open key-value store")
}

/// The routing state (empty when absent or unreadable).
pub fn routing_state(kv: &Store) -> RoutingState {
    kv.get(ROUTING_KEY)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Stores the routing state.
pub fn set_routing_state(kv: &Store, state: &RoutingState) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(state).context("routing state")?;
    kv.set(ROUTING_KEY, &bytes).context("store routing state")
}

/// A fresh cache entry, if any.
pub fn cache_get(kv: &Store, key: &str, now_ms: u64) -> Option<CacheEntry> {
    let entry: CacheEntry = serde_json::from_slice(&kv.get(key).ok()??).ok()?;
    entry.is_fresh(now_ms).then_some(entry)
}

/// Stores a cache entry.
pub fn cache_put(kv: &Store, key: &str, entry: &CacheEntry) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(entry).context("cache entry")?;
    kv.set(key, &bytes).context("store cache entry")
}
