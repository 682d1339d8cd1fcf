//! The gateway's storage (`migrations/0003_gateway.sql`) over the core's
//! storage seam: API keys and their usage counters, the model catalog,
//! prompt templates and request telemetry in SQL ([`SqlExecutor`]); the
//! routing state and the response cache in key-value ([`KeyValue`]).
//!
//! Decisions stay where they are ([`keys::admit`], [`keys::settle`], the
//! catalog rules): this module only reads and writes, with the time passed
//! in. Rows are decoded with [`Row`], so a column of an unexpected type is a
//! [`GatewayStoreError::Column`] naming it, never a panic or a silent zero.
//!
//! Read-modify-write sequences run inside a write transaction that locks
//! before it reads, so two concurrent requests of one key reserve against
//! the same counters one after the other and cannot both spend the last of
//! a budget. The hot path's ([`admit_with_org`], [`settle_and_record`]) lock
//! only the usage rows they change ([`usage_for_update`] inside
//! [`in_row_locked_transaction`]): on PostgreSQL, requests of different keys
//! no longer wait for each other, on any replica.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use thiserror::Error;

use super::admin::NewKey;
use super::bookings::Booking;
use super::cache::CacheEntry;
use super::catalog::{self, CatalogError};
use super::engine::RoutingState;
use super::keys::{self, Admission, KeyLimits, Reservation, Usage};
use super::routing::CatalogEntry;
use super::telemetry::{RequestRecord, latency_bucket, latency_column};
use super::templates::TemplateSpec;
use super::tiers::Tier;
use crate::observe::usage::{FOLD_LAG_SECS, HOUR_SECS};
use crate::optimize::selection::Difficulty;
use crate::orgs::{self, Role};
use crate::storage::{
    ColumnError, KeyValue, Row, SqlExecutor, SqlValue, StatementError, in_row_locked_transaction,
    in_transaction, run,
};

/// Why a gateway storage call failed. Every variant is an internal failure:
/// log it, answer the client a generic 500.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GatewayStoreError {
    /// A statement failed (including `BEGIN IMMEDIATE` and `COMMIT`); the
    /// transaction, if any, was rolled back.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// A stored row's column is missing or does not hold what the gateway
    /// wrote there (a schema change, or a row written by something else).
    #[error("{table}.{column}: expected {expected}")]
    Column {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// What was expected, e.g. `integer` or `text or NULL`.
        expected: &'static str,
    },
    /// A value could not be encoded as JSON for storing.
    #[error("encoding {what} as JSON: {message}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's message.
        message: String,
    },
    /// The built-in seed catalog (`catalog/models.json`) is invalid.
    #[error("seed catalog: {0}")]
    Seed(#[from] CatalogError),
    /// The key-value store failed.
    #[error("key-value `{key}`: {message}")]
    KeyValue {
        /// The key read or written.
        key: String,
        /// The store's message.
        message: String,
    },
}

impl From<ColumnError> for GatewayStoreError {
    fn from(e: ColumnError) -> Self {
        Self::Column {
            table: e.table,
            column: e.column,
            expected: e.expected,
        }
    }
}

type Result<T> = std::result::Result<T, GatewayStoreError>;

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

/// SQLite integers are signed; counters and prices never reach `i64::MAX`,
/// so saturating is only a guard against nonsense input.
fn uint(n: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_uint(n: Option<u64>) -> SqlValue {
    n.map_or(SqlValue::Null, uint)
}

/// The most one request adds to a stored total, in micro-dollars, tokens or
/// milliseconds: 10^12 (a million dollars). No real request comes near it;
/// an absurd one (a mistyped price, a provider reporting nonsense usage) is
/// held to it, so the aggregates it is added to stay exact integers for
/// millions of such requests. Without the bound, two requests at
/// `i64::MAX` overflowed a `usage_minute` sum, SQLite stored the row's total
/// as a REAL, and every reader of that row (metrics, health, the alerts
/// scan) failed until the row expired.
pub const MAX_PER_REQUEST: u64 = 1_000_000_000_000;

/// `n` bounded by [`MAX_PER_REQUEST`], as stored.
fn per_request(n: u64) -> SqlValue {
    uint(n.min(MAX_PER_REQUEST))
}

fn opt_per_request(n: Option<u64>) -> SqlValue {
    n.map_or(SqlValue::Null, per_request)
}

fn sql_bool(b: bool) -> SqlValue {
    SqlValue::Integer(i64::from(b))
}

fn encode<T: serde::Serialize + ?Sized>(what: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| GatewayStoreError::Encode {
        what,
        message: e.to_string(),
    })
}

// ---------------------------------------------------------------------------
// API keys

/// A stored API key (only its hash is stored; the key itself is shown once,
/// at creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (`key_…`).
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// Display prefix (`dol_sk_1a2b…`).
    pub prefix: String,
    /// Limits.
    pub limits: KeyLimits,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Revoked, Unix ms.
    pub revoked_at: Option<i64>,
    /// The org that owns the key, if any.
    pub org_id: Option<String>,
    /// Its roles; `None` = [`orgs::DEFAULT_ROLES`] (keys made before roles existed).
    pub roles: Option<Vec<Role>>,
}

impl StoredKey {
    /// The roles the key has (its own, or the default ones).
    pub fn effective_roles(&self) -> Vec<Role> {
        self.roles
            .clone()
            .unwrap_or_else(|| orgs::DEFAULT_ROLES.to_vec())
    }

    /// The key as admin JSON (never the key itself).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "limits": self.limits,
            "org": self.org_id,
            "roles": self.effective_roles(),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        })
    }
}

const KEY_COLUMNS: &str = "id, name, prefix, requests_per_minute, tokens_per_minute, \
monthly_budget_micros, created_at, revoked_at, org_id, roles";

fn key_from_row(values: &[SqlValue]) -> Result<StoredKey> {
    let r = Row::new("api_keys", values);
    Ok(StoredKey {
        id: r.text(0, "id")?.to_owned(),
        name: r.text(1, "name")?.to_owned(),
        prefix: r.text(2, "prefix")?.to_owned(),
        limits: KeyLimits {
            requests_per_minute: r.opt_uint(3, "requests_per_minute")?,
            tokens_per_minute: r.opt_uint(4, "tokens_per_minute")?,
            monthly_budget_micros: r.opt_uint(5, "monthly_budget_micros")?,
        },
        created_at: r.int(6, "created_at")?,
        revoked_at: r.opt_int(7, "revoked_at")?,
        org_id: r.opt_text(8, "org_id")?.map(str::to_owned),
        roles: match r.opt_text(9, "roles")? {
            Some(_) => Some(r.json(9, "roles")?),
            None => None,
        },
    })
}

/// Stores a new key `secret` under `id` (its hash and display prefix
/// only), with the name, limits, org and roles of `new`.
pub fn create_key(
    db: &mut impl SqlExecutor,
    id: &str,
    secret: &str,
    new: &NewKey,
    now_ms: i64,
) -> Result<StoredKey> {
    let prefix = keys::display_prefix(secret);
    let roles = new.roles.as_ref().map(|r| encode("roles", r)).transpose()?;
    run(
        db,
        "INSERT INTO api_keys (id, name, key_hash, prefix, requests_per_minute, \
         tokens_per_minute, monthly_budget_micros, created_at, org_id, roles) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            text(id),
            text(&new.name),
            text(&keys::hash_key(secret)),
            text(&prefix),
            opt_uint(new.limits.requests_per_minute),
            opt_uint(new.limits.tokens_per_minute),
            opt_uint(new.limits.monthly_budget_micros),
            SqlValue::Integer(now_ms),
            new.org.as_deref().map_or(SqlValue::Null, text),
            roles.as_deref().map_or(SqlValue::Null, text),
        ],
    )?;
    Ok(StoredKey {
        id: id.to_owned(),
        name: new.name.clone(),
        prefix,
        limits: new.limits,
        created_at: now_ms,
        revoked_at: None,
        org_id: new.org.clone(),
        roles: new.roles.clone(),
    })
}

/// Every key, revoked ones included, newest first.
pub fn list_keys(db: &mut impl SqlExecutor) -> Result<Vec<StoredKey>> {
    run(
        db,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id"),
        &[],
    )?
    .iter()
    .map(|r| key_from_row(r))
    .collect()
}

/// The key with this id, revoked or not.
pub fn get_key(db: &mut impl SqlExecutor, id: &str) -> Result<Option<StoredKey>> {
    run(
        db,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"),
        &[text(id)],
    )?
    .first()
    .map(|r| key_from_row(r))
    .transpose()
}

/// Revokes key `id` at `now_ms` and returns it; `None` when there is no
/// such key. Revoking a revoked key changes nothing (it keeps its first
/// revocation time).
pub fn revoke_key(db: &mut impl SqlExecutor, id: &str, now_ms: i64) -> Result<Option<StoredKey>> {
    run(
        db,
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        &[SqlValue::Integer(now_ms), text(id)],
    )?;
    get_key(db, id)
}

/// The active (not revoked) key whose secret is `secret`, if any.
pub fn find_active_key(db: &mut impl SqlExecutor, secret: &str) -> Result<Option<StoredKey>> {
    run(
        db,
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"),
        &[text(&keys::hash_key(secret))],
    )?
    .first()
    .map(|r| key_from_row(r))
    .transpose()
}

// ---------------------------------------------------------------------------
// Usage counters, admission and settlement

/// The usage counters of key `key_id` (zero when it has none yet).
pub fn usage(db: &mut impl SqlExecutor, key_id: &str) -> Result<Usage> {
    let rows = run(
        db,
        "SELECT window_start, window_requests, window_tokens, month, spent_micros, \
         reserved_micros FROM key_usage WHERE key_id = ?",
        &[text(key_id)],
    )?;
    usage_of(rows.first())
}

/// The usage row `key_id` (a key's, or an org's [`org_usage_key`]) read for
/// a change, inside a transaction: one upsert that creates the row when
/// missing (as the empty [`Usage`]) and locks it, and returns it. On
/// PostgreSQL the lock holds until the transaction ends and the statement
/// returns the newest committed values once a concurrent holder commits, so
/// read-modify-write of one key's counters serialises without a global
/// lock, even the first use of a key on two replicas at once (a plain
/// `SELECT … FOR UPDATE` would lock nothing while the row is missing).
/// The no-op update sets a column no index covers: SQLite rewrites the
/// primary key's index entry when the key itself is "updated", one more
/// page in the WAL per transaction.
pub fn usage_for_update(tx: &mut impl SqlExecutor, key_id: &str) -> Result<Usage> {
    let empty = Usage::default();
    let rows = run(
        tx,
        "INSERT INTO key_usage (key_id, window_start, window_requests, window_tokens, month, \
         spent_micros, reserved_micros) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (key_id) DO UPDATE SET window_start = key_usage.window_start \
         RETURNING window_start, window_requests, window_tokens, month, spent_micros, \
         reserved_micros",
        &[
            text(key_id),
            uint(empty.window_start),
            uint(empty.window_requests),
            uint(empty.window_tokens),
            text(&empty.month),
            uint(empty.spent_micros),
            uint(empty.reserved_micros),
        ],
    )?;
    usage_of(rows.first())
}

fn usage_of(values: Option<&Vec<SqlValue>>) -> Result<Usage> {
    let Some(values) = values else {
        return Ok(Usage::default());
    };
    let r = Row::new("key_usage", values);
    Ok(Usage {
        window_start: r.uint(0, "window_start")?,
        window_requests: r.uint(1, "window_requests")?,
        window_tokens: r.uint(2, "window_tokens")?,
        month: r.text(3, "month")?.to_owned(),
        spent_micros: r.uint(4, "spent_micros")?,
        reserved_micros: r.uint(5, "reserved_micros")?,
    })
}

fn write_usage(db: &mut impl SqlExecutor, key_id: &str, u: &Usage) -> Result<()> {
    run(
        db,
        "INSERT INTO key_usage (key_id, window_start, window_requests, window_tokens, month, \
         spent_micros, reserved_micros) VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (key_id) DO UPDATE SET window_start = excluded.window_start, \
         window_requests = excluded.window_requests, window_tokens = excluded.window_tokens, \
         month = excluded.month, spent_micros = excluded.spent_micros, \
         reserved_micros = excluded.reserved_micros",
        &[
            text(key_id),
            uint(u.window_start),
            uint(u.window_requests),
            uint(u.window_tokens),
            text(&u.month),
            uint(u.spent_micros),
            uint(u.reserved_micros),
        ],
    )?;
    Ok(())
}

/// Admits a request of key `key_id` at `now_secs`, reserving `want` (its
/// worst-case tokens and cost), or refuses it ([`keys::admit`] decides).
/// The read, the decision and the write happen in one `BEGIN IMMEDIATE`
/// transaction, so concurrent requests see each other's reservations: the
/// budget is never overspent by requests admitted at the same time.
pub fn admit(
    db: &mut impl SqlExecutor,
    key_id: &str,
    limits: &KeyLimits,
    want: Reservation,
    now_secs: u64,
) -> Result<Admission> {
    admit_with_org(db, key_id, limits, None, want, now_secs)
}

/// The `key_usage` row of org `org_id`'s counters.
pub fn org_usage_key(org_id: &str) -> String {
    format!("org:{org_id}")
}

/// [`admit`] at key *and* org level: in the same `BEGIN IMMEDIATE`
/// transaction the key's counters and then its org's (`org`: id and
/// limits) must both admit, and both reservations are written or neither,
/// so concurrent requests of an org's keys never overspend the org budget.
pub fn admit_with_org(
    db: &mut impl SqlExecutor,
    key_id: &str,
    limits: &KeyLimits,
    org: Option<(&str, &KeyLimits)>,
    want: Reservation,
    now_secs: u64,
) -> Result<Admission> {
    in_row_locked_transaction(db, |tx| {
        let stored = usage_for_update(tx, key_id)?;
        let decision = keys::admit(&stored, limits, want, now_secs);
        let Admission::Admit(next) = &decision else {
            return Ok(decision);
        };
        if let Some((org_id, org_limits)) = org {
            let row = org_usage_key(org_id);
            let org_stored = usage_for_update(tx, &row)?;
            let scope = format!("organization `{org_id}`");
            match keys::admit_scoped(&org_stored, org_limits, want, now_secs, &scope) {
                Admission::Admit(org_next) => write_usage(tx, &row, &org_next)?,
                refused => return Ok(refused),
            }
        }
        write_usage(tx, key_id, next)?;
        Ok(decision)
    })
}

/// Swaps the reservation `want` made at `reserved_at_secs` for what the
/// request actually used (`tokens`, `cost_micros`) at `now_secs`
/// ([`keys::settle`] decides), in one `BEGIN IMMEDIATE` transaction.
pub fn settle(
    db: &mut impl SqlExecutor,
    key_id: &str,
    want: Reservation,
    reserved_at_secs: u64,
    tokens: u64,
    cost_micros: u64,
    now_secs: u64,
) -> Result<()> {
    settle_with_org(
        db,
        key_id,
        None,
        want,
        reserved_at_secs,
        (tokens, cost_micros),
        now_secs,
    )
}

/// [`settle`] for the key and, when it has one, its org (`org_id`), in one
/// transaction. `used` is (tokens, cost in micro-dollars).
pub fn settle_with_org(
    db: &mut impl SqlExecutor,
    key_id: &str,
    org_id: Option<&str>,
    want: Reservation,
    reserved_at_secs: u64,
    used: (u64, u64),
    now_secs: u64,
) -> Result<()> {
    settle_alone(
        db,
        &Settlement {
            key_id,
            org_id,
            want: Some(want),
            reserved_at_secs,
            tokens: used.0,
            cost_micros: used.1,
            now_secs,
        },
    )
}

/// [`settle_with_org`] of one [`Settlement`], in its own transaction.
pub fn settle_alone(db: &mut impl SqlExecutor, s: &Settlement<'_>) -> Result<()> {
    in_row_locked_transaction(db, |tx| settle_in(tx, s))
}

/// One request's settlement: what [`settle_with_org`] takes, as one value.
#[derive(Debug, Clone, Copy)]
pub struct Settlement<'a> {
    /// The key the request was admitted for.
    pub key_id: &'a str,
    /// The key's org, whose counters are settled with the key's.
    pub org_id: Option<&'a str>,
    /// What admission reserved; `None` when it reserved nothing (a key and
    /// org without limits, see [`crate::gateway::pipeline::Caller::admit`]):
    /// the request is then counted here ([`keys::counted_at_settlement`]).
    pub want: Option<Reservation>,
    /// When admission reserved it (unix seconds).
    pub reserved_at_secs: u64,
    /// Tokens the request actually used.
    pub tokens: u64,
    /// What it actually cost, micro-dollars.
    pub cost_micros: u64,
    /// Now (unix seconds).
    pub now_secs: u64,
}

/// The book-keeping of one answered request in one `BEGIN IMMEDIATE`
/// transaction: the settlement ([`settle_with_org`]) and the telemetry rows
/// ([`record`]), so a request takes the write lock twice (admission, then
/// this) instead of four times, and once when admission reserved nothing
/// (no limits to admit against). Either both are stored or neither; the
/// caller falls back to storing them apart, so a telemetry row that cannot
/// be written never costs the settlement.
pub fn settle_and_record(
    db: &mut impl SqlExecutor,
    s: &Settlement<'_>,
    r: &RequestRecord,
) -> Result<()> {
    in_row_locked_transaction(db, |tx| {
        // The telemetry first: its rows are shared by many keys' requests,
        // and the key's usage row is locked last, for as short as possible.
        record_in(tx, r)?;
        settle_in(tx, s)
    })
}

/// The trailing book-keeping of many requests
/// ([`Booking`]: none reserved anything, none is late for
/// the usage fold) in one row-locked write transaction: their `requests`
/// rows and usage shares, then each usage row they settle read, settled
/// for every booking in the order they were answered, and written once.
/// Rows are locked in one order on every path — the usage aggregates by
/// their conflict key, then key rows, then org rows (admission locks a key
/// row before its org's; one request's book-keeping a minute row before
/// its key's) — so on PostgreSQL two batches, or a batch and a request,
/// never wait for each other in a cycle. Either all are stored or none.
pub fn book_batch(db: &mut impl SqlExecutor, bookings: &[Booking]) -> Result<()> {
    // One addition per usage row (and latency bucket), in the rows' order.
    let mut additions: BTreeMap<_, UsageAddition> = BTreeMap::new();
    for add in bookings.iter().map(|b| usage_addition(&b.record)) {
        match additions.entry(add.place()) {
            Entry::Occupied(mut sum) => sum.get_mut().absorb(&add),
            Entry::Vacant(place) => {
                place.insert(add);
            }
        }
    }
    // Key rows before org rows, each set sorted; a row's bookings in the
    // order they were answered (a stable grouping of `bookings`).
    let mut usage_rows: BTreeMap<(bool, String), Vec<&Booking>> = BTreeMap::new();
    for b in bookings {
        usage_rows
            .entry((false, b.key_id.clone()))
            .or_default()
            .push(b);
        if let Some(org) = &b.org_id {
            usage_rows
                .entry((true, org_usage_key(org)))
                .or_default()
                .push(b);
        }
    }
    in_row_locked_transaction(db, |tx| {
        let records: Vec<&RequestRecord> = bookings.iter().map(|b| &b.record).collect();
        insert_requests(tx, &records)?;
        for add in additions.values() {
            add_usage(tx, UsageTable::Minute, add, None)?;
        }
        for ((_, row), settled) in &usage_rows {
            let mut usage = usage_for_update(tx, row)?;
            for b in settled {
                usage = keys::counted_at_settlement(
                    &usage,
                    b.tokens.min(MAX_PER_REQUEST),
                    b.cost_micros.min(MAX_PER_REQUEST),
                    b.now_secs,
                );
            }
            write_usage(tx, row, &usage)?;
        }
        Ok(())
    })
}

/// Settles the key's counters and, when it has an org, the org's, inside
/// the caller's transaction.
fn settle_in(tx: &mut impl SqlExecutor, s: &Settlement<'_>) -> Result<()> {
    let org_row = s.org_id.map(org_usage_key);
    for row in std::iter::once(s.key_id).chain(org_row.as_deref()) {
        let stored = usage_for_update(tx, row)?;
        // Bounded like the telemetry rows, so a provider reporting nonsense
        // usage charges the key what the records show, not i64::MAX.
        let (tokens, cost_micros) = (
            s.tokens.min(MAX_PER_REQUEST),
            s.cost_micros.min(MAX_PER_REQUEST),
        );
        let next = match s.want {
            Some(want) => keys::settle(
                &stored,
                want,
                s.reserved_at_secs,
                tokens,
                cost_micros,
                s.now_secs,
            ),
            None => keys::counted_at_settlement(&stored, tokens, cost_micros, s.now_secs),
        };
        write_usage(tx, row, &next)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The model catalog

const CATALOG_COLUMNS: &str = "provider, model, tier, input_price, output_price, \
context_window, capabilities, image_prices";

/// How many columns [`CATALOG_COLUMNS`] names.
const CATALOG_COLUMN_COUNT: usize = 8;

/// Models discovery found that nobody has priced yet: a provider's list also
/// holds embedding, audio and other non-chat models, so they are not routed
/// to until an admin `PUT /admin/models/...` admits one.
const ROUTABLE_FILTER: &str =
    "WHERE NOT (source = 'discovered' AND (input_price IS NULL OR output_price IS NULL))";

fn catalog_entry_from_row(values: &[SqlValue]) -> Result<CatalogEntry> {
    let r = Row::new("models", values);
    let tier = Tier::parse(r.text(2, "tier")?)
        .ok_or_else(|| r.error("tier", "comprehensive, enhanced or basic"))?;
    Ok(CatalogEntry {
        provider: r.text(0, "provider")?.to_owned(),
        model: r.text(1, "model")?.to_owned(),
        tier,
        input_price: r.opt_uint(3, "input_price")?,
        output_price: r.opt_uint(4, "output_price")?,
        context_window: r.uint(5, "context_window")?,
        capabilities: r.json::<BTreeSet<String>>(6, "capabilities")?,
        image_prices: r.json(7, "image_prices")?,
    })
}

fn upsert_model(
    db: &mut impl SqlExecutor,
    e: &CatalogEntry,
    source: &str,
    now_ms: i64,
) -> Result<()> {
    let capabilities = encode("capabilities", &e.capabilities)?;
    let image_prices = encode("image_prices", &e.image_prices)?;
    run(
        db,
        "INSERT INTO models (provider, model, tier, input_price, output_price, context_window, \
         capabilities, source, updated_at, image_prices) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (provider, model) DO UPDATE SET tier = excluded.tier, \
         input_price = excluded.input_price, output_price = excluded.output_price, \
         context_window = excluded.context_window, capabilities = excluded.capabilities, \
         source = excluded.source, updated_at = excluded.updated_at, \
         image_prices = excluded.image_prices",
        &[
            text(&e.provider),
            text(&e.model),
            text(e.tier.as_str()),
            opt_uint(e.input_price),
            opt_uint(e.output_price),
            uint(e.context_window),
            text(&capabilities),
            text(source),
            SqlValue::Integer(now_ms),
            text(&image_prices),
        ],
    )?;
    Ok(())
}

/// Seeds the catalog from `catalog/models.json` (source `seed`) when the
/// `models` table is empty; returns whether it did. The emptiness check is
/// made under the write lock, so racing first requests (and the discovery
/// scan) seed once. Everything that reads or changes the catalog calls this
/// first, so an admin change or a discovered model on a fresh database
/// never keeps the seed out.
pub fn seed_catalog(db: &mut impl SqlExecutor, now_ms: i64) -> Result<bool> {
    const ANY_MODEL: &str = "SELECT 1 FROM models LIMIT 1";
    // The common case (seeded long ago) takes no write lock.
    if !run(db, ANY_MODEL, &[])?.is_empty() {
        return Ok(false);
    }
    let seed = catalog::parse(catalog::SEED)?;
    in_transaction(db, |tx| {
        if !run(tx, ANY_MODEL, &[])?.is_empty() {
            return Ok(false);
        }
        for e in &seed {
            upsert_model(tx, e, "seed", now_ms)?;
        }
        stamp_catalog(tx, now_ms)?;
        Ok(true)
    })
}

/// The `control` key of the catalog's stamp: a random value every change
/// of `models` replaces in its own transaction ([`stamp_catalog`]), so one
/// stamp always names one content of the table — after a restore too.
const CATALOG_STAMP_KEY: &str = "catalog_stamp";

/// Gives the catalog a new random stamp ([`InstanceCache`]); every write of
/// `models` calls it in the same transaction.
pub fn stamp_catalog(
    db: &mut impl SqlExecutor,
    now_ms: i64,
) -> std::result::Result<(), StatementError> {
    stamp(db, CATALOG_STAMP_KEY, "catalog", now_ms)
}

/// Gives the `control` row `key` a new random stamp, in the caller's
/// transaction: the writers of what [`InstanceCache`] keeps call it with
/// their write. SQL's `random()` (SQLite and PostgreSQL) makes the value,
/// so the writers need no randomness passed in.
pub fn stamp(
    db: &mut impl SqlExecutor,
    key: &str,
    by: &str,
    now_ms: i64,
) -> std::result::Result<(), StatementError> {
    run(
        db,
        "INSERT INTO control (key, value, updated_by, updated_at) \
         VALUES (?, '\"' || CAST(random() AS TEXT) || '\"', ?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
         updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        &[text(key), text(by), SqlValue::Integer(now_ms)],
    )?;
    Ok(())
}

/// The `control` key of the org privacy settings' stamp (migration 27):
/// every write of `org_settings` replaces it ([`stamp`]), so an instance
/// keeps the settings it read while the stamp stands ([`InstanceCache`]).
pub const ORG_SETTINGS_STAMP_KEY: &str = "org_settings_stamp";

/// What a gateway instance keeps between its requests, each under the
/// stamp it was read under: the routable catalog and the privacy settings
/// of the orgs it served. A request reads both stamps — and emergency mode,
/// which it needs fresh — in one statement ([`Self::begin`]), and reads a
/// table again only when its stamp changed; a table without a stamp is
/// never kept.
#[derive(Debug, Clone, Default)]
pub struct InstanceCache {
    catalog: Option<(String, Vec<CatalogEntry>)>,
    settings: Option<(String, HashMap<String, crate::privacy::OrgSettings>)>,
    /// The settings stamp the last [`Self::begin`] read.
    settings_stamp: Option<String>,
}

/// What [`InstanceCache::begin`] gives a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Begun {
    /// The routable catalog ([`routable_catalog`]).
    pub routable: Vec<CatalogEntry>,
    /// Whether emergency mode is in force (`Err`: its rows are unreadable).
    pub emergency: std::result::Result<bool, String>,
}

impl InstanceCache {
    /// Reads the stamps and emergency mode in one statement, then the
    /// routable catalog: kept while the stored stamp is the one it was read
    /// under, read again (and kept) otherwise.
    pub fn begin(&mut self, db: &mut impl SqlExecutor, now_ms: i64) -> Result<Begun> {
        let rows = run(
            db,
            "SELECT key, value FROM control WHERE key IN (?, ?, ?, ?)",
            &[
                text(CATALOG_STAMP_KEY),
                text(ORG_SETTINGS_STAMP_KEY),
                text(crate::observe::store::EMERGENCY_KEY),
                text(crate::observe::store::EMERGENCY_AUTO_KEY),
            ],
        )?;
        let mut catalog_stamp = None;
        self.settings_stamp = None;
        for values in &rows {
            let row = Row::new("control", values);
            let stamp = match row.text(0, "key")? {
                CATALOG_STAMP_KEY => &mut catalog_stamp,
                ORG_SETTINGS_STAMP_KEY => &mut self.settings_stamp,
                _ => continue,
            };
            *stamp = Some(row.text(1, "value")?.to_owned());
        }
        let emergency =
            crate::observe::store::emergency_from_rows(&rows).map_err(|e| e.to_string());
        let routable = match (&catalog_stamp, &self.catalog) {
            (Some(stored), Some((stamp, entries))) if stored == stamp => entries.clone(),
            _ => {
                let (stamp, entries) = select_catalog_stamped(db, now_ms, ROUTABLE_FILTER)?;
                self.catalog = stamp.map(|stamp| (stamp, entries.clone()));
                entries
            }
        };
        Ok(Begun {
            routable,
            emergency,
        })
    }

    /// The privacy settings of `org_id` ([`crate::privacy::load_settings`]):
    /// kept under the settings stamp the last [`Self::begin`] read.
    /// Settings read after that stamp are at least as new as it says, and
    /// the next change of stamp drops them.
    pub fn org_settings(
        &mut self,
        db: &mut impl SqlExecutor,
        org_id: &str,
    ) -> std::result::Result<crate::privacy::OrgSettings, StatementError> {
        let Some(stamp) = &self.settings_stamp else {
            return crate::privacy::load_settings(db, org_id);
        };
        let kept = match &mut self.settings {
            Some((kept_stamp, kept)) if kept_stamp == stamp => kept,
            other => &mut other.insert((stamp.clone(), HashMap::new())).1,
        };
        if let Some(settings) = kept.get(org_id) {
            return Ok(settings.clone());
        }
        let settings = crate::privacy::load_settings(db, org_id)?;
        kept.insert(org_id.to_owned(), settings.clone());
        Ok(settings)
    }
}

fn select_catalog(
    db: &mut impl SqlExecutor,
    now_ms: i64,
    filter: &str,
) -> Result<Vec<CatalogEntry>> {
    Ok(select_catalog_stamped(db, now_ms, filter)?.1)
}

/// The catalog under `filter` and, read in the same statement (so the two
/// agree), its stamp: `None` when the table has none yet or no row matched.
fn select_catalog_stamped(
    db: &mut impl SqlExecutor,
    now_ms: i64,
    filter: &str,
) -> Result<(Option<String>, Vec<CatalogEntry>)> {
    let select = format!(
        "SELECT {CATALOG_COLUMNS}, (SELECT value FROM control WHERE key = ?) FROM models \
         {filter} ORDER BY provider, model"
    );
    let stamp_key = [text(CATALOG_STAMP_KEY)];
    let mut rows = run(db, &select, &stamp_key)?;
    // Rows mean the table is seeded; none may mean only that the filter
    // matched nothing, or that another replica seeded it since the select
    // (seed_catalog then says false): select again after seeding either way.
    if rows.is_empty() {
        seed_catalog(db, now_ms)?;
        rows = run(db, &select, &stamp_key)?;
    }
    let stamp = match rows.first() {
        Some(values) => Row::new("models", values)
            .opt_text(CATALOG_COLUMN_COUNT, "catalog stamp")?
            .map(str::to_owned),
        None => None,
    };
    let entries = rows
        .iter()
        .map(|r| catalog_entry_from_row(r))
        .collect::<Result<_>>()?;
    Ok((stamp, entries))
}

/// The whole catalog by provider and model, seeded the first time.
pub fn catalog(db: &mut impl SqlExecutor, now_ms: i64) -> Result<Vec<CatalogEntry>> {
    select_catalog(db, now_ms, "")
}

/// The models routing may use: the catalog without the models discovery
/// found that nobody has priced yet. Seeded the first time.
pub fn routable_catalog(db: &mut impl SqlExecutor, now_ms: i64) -> Result<Vec<CatalogEntry>> {
    select_catalog(db, now_ms, ROUTABLE_FILTER)
}

/// Creates or replaces one catalog entry (source `admin`).
pub fn put_model(db: &mut impl SqlExecutor, entry: &CatalogEntry, now_ms: i64) -> Result<()> {
    seed_catalog(db, now_ms)?;
    in_transaction(db, |tx| put_model_in(tx, entry, now_ms))
}

/// [`put_model`] inside the caller's transaction, once the catalog is
/// seeded ([`seed_catalog`], which takes a transaction of its own).
pub fn put_model_in(tx: &mut impl SqlExecutor, entry: &CatalogEntry, now_ms: i64) -> Result<()> {
    upsert_model(tx, entry, "admin", now_ms)?;
    Ok(stamp_catalog(tx, now_ms)?)
}

/// Deletes one catalog entry; returns whether it existed.
pub fn delete_model(
    db: &mut impl SqlExecutor,
    provider: &str,
    model: &str,
    now_ms: i64,
) -> Result<bool> {
    seed_catalog(db, now_ms)?;
    in_transaction(db, |tx| delete_model_in(tx, provider, model, now_ms))
}

/// [`delete_model`] inside the caller's transaction, once the catalog is
/// seeded ([`seed_catalog`]).
pub fn delete_model_in(
    db: &mut impl SqlExecutor,
    provider: &str,
    model: &str,
    now_ms: i64,
) -> Result<bool> {
    let key = [text(provider), text(model)];
    let existed = !run(
        db,
        "SELECT 1 FROM models WHERE provider = ? AND model = ?",
        &key,
    )?
    .is_empty();
    run(
        db,
        "DELETE FROM models WHERE provider = ? AND model = ?",
        &key,
    )?;
    stamp_catalog(db, now_ms)?;
    Ok(existed)
}

// ---------------------------------------------------------------------------
// Prompt templates

/// One stored version of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersion {
    /// The version (1, 2, …).
    pub version: i64,
    /// The template.
    pub spec: TemplateSpec,
}

/// A template's name and latest version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSummary {
    /// The name.
    pub name: String,
    /// The latest version.
    pub latest_version: i64,
    /// When the latest version was stored, Unix ms.
    pub updated_at: i64,
}

impl TemplateSummary {
    /// Admin JSON `{"name", "latest_version", "updated_at"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "latest_version": self.latest_version,
            "updated_at": self.updated_at,
        })
    }
}

/// Stores `spec` as the next version of template `name` (old versions stay
/// usable); returns the new version. Numbering happens under the write
/// lock, so concurrent writers get distinct versions.
pub fn put_template(
    db: &mut impl SqlExecutor,
    name: &str,
    spec: &TemplateSpec,
    actor: &str,
    now_ms: i64,
) -> Result<i64> {
    in_transaction(db, |tx| put_template_in(tx, name, spec, actor, now_ms))
}

/// [`put_template`] inside the caller's transaction (with its audit entry:
/// [`crate::audit::audited`]), which holds the write lock for numbering.
pub fn put_template_in(
    tx: &mut impl SqlExecutor,
    name: &str,
    spec: &TemplateSpec,
    actor: &str,
    now_ms: i64,
) -> Result<i64> {
    let body = encode("template", spec)?;
    let rows = run(
        tx,
        "SELECT COALESCE(MAX(version), 0) FROM prompt_templates WHERE name = ?",
        &[text(name)],
    )?;
    let latest = match rows.first() {
        Some(values) => Row::new("prompt_templates", values).int(0, "version")?,
        None => 0,
    };
    let version = latest + 1;
    run(
        tx,
        "INSERT INTO prompt_templates (name, version, spec, created_at, actor) \
         VALUES (?, ?, ?, ?, ?)",
        &[
            text(name),
            SqlValue::Integer(version),
            text(&body),
            SqlValue::Integer(now_ms),
            text(actor),
        ],
    )?;
    Ok(version)
}

/// Version `version` of template `name`, or its latest when `None`.
pub fn get_template(
    db: &mut impl SqlExecutor,
    name: &str,
    version: Option<i64>,
) -> Result<Option<TemplateVersion>> {
    let rows = match version {
        Some(v) => run(
            db,
            "SELECT version, spec FROM prompt_templates WHERE name = ? AND version = ?",
            &[text(name), SqlValue::Integer(v)],
        )?,
        None => run(
            db,
            "SELECT version, spec FROM prompt_templates WHERE name = ? \
             ORDER BY version DESC LIMIT 1",
            &[text(name)],
        )?,
    };
    let Some(values) = rows.first() else {
        return Ok(None);
    };
    let r = Row::new("prompt_templates", values);
    Ok(Some(TemplateVersion {
        version: r.int(0, "version")?,
        spec: r.json(1, "spec")?,
    }))
}

/// Every template's name and latest version, by name.
pub fn list_templates(db: &mut impl SqlExecutor) -> Result<Vec<TemplateSummary>> {
    run(
        db,
        "SELECT name, MAX(version), MAX(created_at) FROM prompt_templates \
         GROUP BY name ORDER BY name",
        &[],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("prompt_templates", values);
        Ok(TemplateSummary {
            name: r.text(0, "name")?.to_owned(),
            latest_version: r.int(1, "version")?,
            updated_at: r.int(2, "created_at")?,
        })
    })
    .collect()
}

// ---------------------------------------------------------------------------
// Request telemetry

/// Writes one request's telemetry: its `requests` row and its share of the
/// `usage_minute` aggregate (one insert and one upsert, so the hot path
/// stays two statements). A record that may be late for the hour fold
/// (see below) takes a transaction of its own.
pub fn record(db: &mut impl SqlExecutor, r: &RequestRecord) -> Result<()> {
    if may_be_folded(r) {
        in_row_locked_transaction(db, |tx| record_in(tx, r))
    } else {
        record_in(db, r)
    }
}

/// Whether `r` ended more than the fold lag after its minute began, so its
/// minute may already be folded into `usage_hour` (a very long stream, a
/// clock step).
pub(crate) fn may_be_folded(r: &RequestRecord) -> bool {
    r.latency_ms + 60_000 >= FOLD_LAG_SECS.unsigned_abs() * 1_000
}

/// The columns of a `requests` row as [`insert_requests`] writes them.
const INSERTED_REQUEST_COLUMNS: &str = "id, ts, key_id, route, tier, entry_tier, provider, \
model, attempts, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_micros, \
cost_unknown, quality, outcome, fallbacks, cached, stream, variant, detail, \
baseline_cost_micros, difficulty, subject";

/// How many values one `requests` row binds ([`INSERTED_REQUEST_COLUMNS`]).
const INSERTED_REQUEST_VALUES: usize = 25;

/// At most this many rows go into one `INSERT` ([`insert_requests`]): 2,500
/// bound values, well under SQLite's and PostgreSQL's limits.
const ROWS_PER_INSERT: usize = 100;

/// `r`'s values in [`INSERTED_REQUEST_COLUMNS`]' order.
fn request_row_values(r: &RequestRecord, into: &mut Vec<SqlValue>) {
    into.extend([
        text(&r.id),
        uint(r.ts_ms),
        text(&r.key_id),
        text(&r.route),
        text(r.tier.as_str()),
        text(r.entry_tier.as_str()),
        text(&r.provider),
        text(&r.model),
        uint(u64::from(r.attempts)),
        per_request(r.latency_ms),
        opt_per_request(r.ttft_ms),
        per_request(r.prompt_tokens),
        per_request(r.completion_tokens),
        opt_per_request(r.cost_micros),
        sql_bool(r.cost_micros.is_none()),
        r.quality.map_or(SqlValue::Null, SqlValue::Real),
        text(&r.outcome),
        uint(u64::from(r.fallbacks)),
        sql_bool(r.cached),
        sql_bool(r.stream),
        text(&r.variant),
        // Straight into a buffer, not through `Display`'s formatter (a
        // `Value` always serializes; the fallback never runs).
        text(&serde_json::to_string(&r.detail).unwrap_or_else(|_| r.detail.to_string())),
        opt_per_request(r.baseline_cost_micros),
        r.difficulty.map_or(SqlValue::Null, |d| text(d.as_str())),
        r.subject.as_deref().map_or(SqlValue::Null, text),
    ]);
}

/// Inserts the `requests` rows of `records`, [`ROWS_PER_INSERT`] to a
/// statement (one host call and one statement for a whole batch).
fn insert_requests(db: &mut impl SqlExecutor, records: &[&RequestRecord]) -> Result<()> {
    let one_row = format!("({})", ["?"; INSERTED_REQUEST_VALUES].join(", "));
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(chunk.len() * INSERTED_REQUEST_VALUES);
        for r in chunk {
            request_row_values(r, &mut params);
        }
        let rows = vec![one_row.as_str(); chunk.len()].join(", ");
        run(
            db,
            &format!("INSERT INTO requests ({INSERTED_REQUEST_COLUMNS}) VALUES {rows}"),
            &params,
        )?;
    }
    Ok(())
}

/// [`record`]'s statements, inside the caller's transaction when
/// [`may_be_folded`].
fn record_in(db: &mut impl SqlExecutor, r: &RequestRecord) -> Result<()> {
    insert_requests(db, &[r])?;
    let add = usage_addition(r);
    if !may_be_folded(r) {
        // A request that ended within the fold lag of its minute's start
        // lands in a minute the fold has not reached yet: one upsert.
        return add_usage(db, UsageTable::Minute, &add, None);
    }
    // A late record goes to the hour row when its minute was folded,
    // decided under the write lock the caller holds, so a fold running
    // beside it can neither count it twice nor miss it.
    add_usage(db, UsageTable::Minute, &add, Some(false))?;
    add_usage(db, UsageTable::Hour, &add, Some(true))
}

/// What one request adds to a usage row: the values in [`add_usage`]'s
/// column order (its minute first) and its latency bucket's column.
struct UsageAddition {
    minute: u64,
    /// How many requests it adds (one; more when a batch's requests of one
    /// row are added together, [`book_batch`]).
    requests: u64,
    /// The request's API key: its org (migration 17) is looked up in the
    /// upsert itself, so the hot path stays one statement per aggregate.
    key_id: String,
    values: Vec<SqlValue>,
    bucket: &'static str,
}

fn usage_addition(r: &RequestRecord) -> UsageAddition {
    let (quality_sum, quality_n) = r.quality.map_or((0.0, 0), |q| (q, 1));
    UsageAddition {
        minute: r.minute(),
        requests: 1,
        key_id: r.key_id.clone(),
        values: vec![
            text(r.tier.as_str()),
            text(&r.provider),
            text(&r.model),
            text(&r.outcome),
            text(&r.variant),
            sql_bool(r.is_error()),
            // Requests that fell back (0/1 each), so the fallback rate is fallbacks / requests.
            sql_bool(r.fallbacks > 0),
            sql_bool(r.cached),
            per_request(r.latency_ms),
            SqlValue::Real(quality_sum),
            SqlValue::Integer(quality_n),
            per_request(r.prompt_tokens),
            per_request(r.completion_tokens),
            per_request(r.cost_micros.unwrap_or(0)),
            sql_bool(r.cost_micros.is_none()),
            per_request(crate::optimize::savings::baseline_contribution(
                r.baseline_cost_micros,
                r.cost_micros,
            )),
        ],
        bucket: latency_column(latency_bucket(r.latency_ms)),
    }
}

impl UsageAddition {
    /// The texts naming its row beside the minute and the key (tier,
    /// provider, model, outcome, variant).
    const NAMING_VALUES: usize = 5;

    /// Where it goes: the minute, the naming texts, the key, the latency
    /// bucket (additions with the same place can be added together).
    fn place(&self) -> (u64, Vec<String>, String, &'static str) {
        let naming = self.values[..Self::NAMING_VALUES]
            .iter()
            .map(|v| match v {
                SqlValue::Text(t) => t.clone(),
                // Every naming value is built as text ([`usage_addition`]).
                _ => String::new(),
            })
            .collect();
        (self.minute, naming, self.key_id.clone(), self.bucket)
    }

    /// Adds `other`, which has the same [`place`](Self::place).
    fn absorb(&mut self, other: &UsageAddition) {
        self.requests += other.requests;
        let counted = self.values.iter_mut().zip(&other.values);
        for (mine, theirs) in counted.skip(Self::NAMING_VALUES) {
            *mine = match (&*mine, theirs) {
                (SqlValue::Integer(a), SqlValue::Integer(b)) => {
                    SqlValue::Integer(a.saturating_add(*b))
                }
                (SqlValue::Real(a), SqlValue::Real(b)) => SqlValue::Real(a + b),
                // Every counted column is built with one type above.
                (kept, _) => kept.clone(),
            };
        }
    }
}

/// The two usage aggregates a request is added to (migrations 1 and 9).
#[derive(Clone, Copy)]
enum UsageTable {
    Minute,
    Hour,
}

/// Adds one request's usage to its `usage_minute` row or, for
/// [`UsageTable::Hour`], to the `usage_hour` row of the minute's hour.
/// `below_watermark`: `None` adds unconditionally; `Some(b)` adds only when
/// the minute is (`true`) or is not (`false`) already folded, read from
/// `usage_rollup` in the same statement.
fn add_usage(
    db: &mut impl SqlExecutor,
    table: UsageTable,
    add: &UsageAddition,
    below_watermark: Option<bool>,
) -> Result<()> {
    let (table_name, time_column, time) = match table {
        UsageTable::Minute => ("usage_minute", "minute", add.minute),
        UsageTable::Hour => (
            "usage_hour",
            "hour",
            add.minute - add.minute % HOUR_SECS.unsigned_abs(),
        ),
    };
    let condition = match below_watermark {
        None => "",
        Some(true) => "WHERE ? < (SELECT folded_until FROM usage_rollup WHERE id = 1)",
        Some(false) => "WHERE ? >= (SELECT folded_until FROM usage_rollup WHERE id = 1)",
    };
    // The names spliced into the upsert are fixed above or `l` and a bucket
    // index (capped at `+Inf`): never anything a client sent.
    let bucket = add.bucket;
    let mut params = Vec::with_capacity(add.values.len() + 5);
    params.push(uint(time));
    let (naming, counted) = add.values.split_at(UsageAddition::NAMING_VALUES);
    params.extend(naming.iter().cloned());
    params.push(uint(add.requests));
    params.extend(counted.iter().cloned());
    params.push(uint(add.requests));
    params.push(text(&add.key_id));
    if below_watermark.is_some() {
        params.push(uint(add.minute));
    }
    run(
        db,
        &format!(
            "INSERT INTO {table_name} ({time_column}, tier, provider, model, outcome, variant, \
             requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, \
             prompt_tokens, completion_tokens, cost_micros, cost_unknown, baseline_micros, {bucket}, \
             org_id) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
             COALESCE((SELECT org_id FROM api_keys WHERE id = ?), '') {condition} \
             ON CONFLICT ({time_column}, tier, provider, model, outcome, variant, org_id) \
             DO UPDATE SET \
             requests = {table_name}.requests + excluded.requests, errors = {table_name}.errors + excluded.errors, \
             fallbacks = {table_name}.fallbacks + excluded.fallbacks, \
             cache_hits = {table_name}.cache_hits + excluded.cache_hits, \
             latency_sum_ms = {table_name}.latency_sum_ms + excluded.latency_sum_ms, \
             quality_sum = {table_name}.quality_sum + excluded.quality_sum, \
             quality_n = {table_name}.quality_n + excluded.quality_n, \
             prompt_tokens = {table_name}.prompt_tokens + excluded.prompt_tokens, \
             completion_tokens = {table_name}.completion_tokens + excluded.completion_tokens, \
             cost_micros = {table_name}.cost_micros + excluded.cost_micros, \
             cost_unknown = {table_name}.cost_unknown + excluded.cost_unknown, \
             baseline_micros = {table_name}.baseline_micros + excluded.baseline_micros, {bucket} = {table_name}.{bucket} + excluded.{bucket}"
        ),
        &params,
    )?;
    Ok(())
}

const REQUEST_COLUMNS: &str = "id, ts, key_id, route, tier, entry_tier, provider, model, \
attempts, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_micros, quality, outcome, \
fallbacks, cached, stream, variant, detail, baseline_cost_micros, difficulty";

fn request_from_row(values: &[SqlValue]) -> Result<RequestRecord> {
    let r = Row::new("requests", values);
    let tier = |idx, column| -> Result<Tier> {
        Ok(Tier::parse(r.text(idx, column)?)
            .ok_or_else(|| r.error(column, "comprehensive, enhanced or basic"))?)
    };
    let small = |idx, column| -> Result<u32> {
        u32::try_from(r.uint(idx, column)?)
            .map_err(|_| r.error(column, "integer of at most 32 bits").into())
    };
    Ok(RequestRecord {
        id: r.text(0, "id")?.to_owned(),
        ts_ms: r.uint(1, "ts")?,
        key_id: r.text(2, "key_id")?.to_owned(),
        route: r.text(3, "route")?.to_owned(),
        tier: tier(4, "tier")?,
        entry_tier: tier(5, "entry_tier")?,
        provider: r.text(6, "provider")?.to_owned(),
        model: r.text(7, "model")?.to_owned(),
        attempts: small(8, "attempts")?,
        latency_ms: r.uint(9, "latency_ms")?,
        ttft_ms: r.opt_uint(10, "ttft_ms")?,
        prompt_tokens: r.uint(11, "prompt_tokens")?,
        completion_tokens: r.uint(12, "completion_tokens")?,
        cost_micros: r.opt_uint(13, "cost_micros")?,
        quality: r.opt_real(14, "quality")?,
        outcome: r.text(15, "outcome")?.to_owned(),
        fallbacks: small(16, "fallbacks")?,
        cached: r.bool(17, "cached")?,
        stream: r.bool(18, "stream")?,
        variant: r.text(19, "variant")?.to_owned(),
        detail: r.json(20, "detail")?,
        baseline_cost_micros: r.opt_uint(21, "baseline_cost_micros")?,
        difficulty: r
            .opt_text(22, "difficulty")?
            .map(|d| {
                Difficulty::parse(d).ok_or_else(|| r.error("difficulty", "easy, medium or hard"))
            })
            .transpose()?,
        subject: None,
    })
}

/// The stored record of request `id`, if any.
pub fn request(db: &mut impl SqlExecutor, id: &str) -> Result<Option<RequestRecord>> {
    run(
        db,
        &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?"),
        &[text(id)],
    )?
    .first()
    .map(|r| request_from_row(r))
    .transpose()
}

/// A stored request record as the admin API shows it (`GET
/// /admin/requests/{id}`): the `requests` columns by name, `cost_unknown`
/// spelled out.
pub fn request_json(r: &RequestRecord) -> Value {
    json!({
        "id": r.id,
        "ts": r.ts_ms,
        "key_id": r.key_id,
        "route": r.route,
        "tier": r.tier.as_str(),
        "entry_tier": r.entry_tier.as_str(),
        "provider": r.provider,
        "model": r.model,
        "attempts": r.attempts,
        "latency_ms": r.latency_ms,
        "ttft_ms": r.ttft_ms,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost_micros": r.cost_micros,
        "cost_unknown": r.cost_micros.is_none(),
        "baseline_cost_micros": r.baseline_cost_micros,
        "difficulty": r.difficulty,
        "quality": r.quality,
        "outcome": r.outcome,
        "fallbacks": r.fallbacks,
        "cached": r.cached,
        "stream": r.stream,
        "variant": r.variant,
        "detail": r.detail,
    })
}

// ---------------------------------------------------------------------------
// Key-value: routing state and the response cache

/// Key-value key of the routing state (observed stats and breakers).
pub const ROUTING_KEY: &str = "gw:routing";

/// The routing state; empty when absent or unreadable. It is learned again
/// from traffic, so losing it must not fail a request.
pub fn routing_state(kv: &mut impl KeyValue) -> RoutingState {
    kv.get(ROUTING_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Stores the routing state.
pub fn set_routing_state(kv: &mut impl KeyValue, state: &RoutingState) -> Result<()> {
    let bytes = encode("routing state", state)?;
    kv.set(ROUTING_KEY, bytes.as_bytes())
        .map_err(|message| GatewayStoreError::KeyValue {
            key: ROUTING_KEY.to_owned(),
            message,
        })
}

/// Stores the routing state after a request that changed it, when it is
/// due ([`RoutingState::due_for_saving`]), stamped with `now_ms`. Returns
/// whether it was stored.
pub fn save_routing_state(
    kv: &mut impl KeyValue,
    state: &mut RoutingState,
    urgent: bool,
    now_ms: u64,
) -> Result<bool> {
    if !state.due_for_saving(urgent, now_ms) {
        return Ok(false);
    }
    state.saved_ms = now_ms;
    set_routing_state(kv, state).map(|()| true)
}

/// The cached answer under `key` if it is still fresh at `now_ms`. A
/// missing, unreadable or stale entry is a miss: the request is then
/// answered by a provider.
pub fn cache_get(kv: &mut impl KeyValue, key: &str, now_ms: u64) -> Option<CacheEntry> {
    let bytes = kv.get(key).ok()??;
    let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
    entry.is_fresh(now_ms).then_some(entry)
}

/// Stores a cached answer under `key`.
pub fn cache_put(kv: &mut impl KeyValue, key: &str, entry: &CacheEntry) -> Result<()> {
    let bytes = encode("cache entry", entry)?;
    kv.set(key, bytes.as_bytes())
        .map_err(|message| GatewayStoreError::KeyValue {
            key: key.to_owned(),
            message,
        })
}
