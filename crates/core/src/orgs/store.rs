//! Organizations' storage (`migrations/0013_orgs.sql`): the `orgs` rows,
//! their encrypted provider credentials (`org_credentials`), the master-key
//! rotation that re-encrypts them, the readiness check of the master key,
//! and the org-filtered metrics overview. Every admin change appends an
//! `audit_log` entry through [`crate::audit::append`] in the
//! same transaction (secrets never: a credential shows as its last four
//! characters).

use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

use super::crypto::{self, CredentialSlot, CryptoError, KeyRing, NonceSource, Sealed};
use super::{Org, OrgSpec, Role};
use crate::error::{ApiError, Code};
use crate::gateway::intake;
use crate::gateway::keys::{KeyLimits, Usage};
use crate::gateway::store::{self as gw, GatewayStoreError};
use crate::health::CheckResult;
use crate::observe::usage::{self, Window};
use crate::storage::{
    ColumnError, Row, SqlExecutor, SqlValue, StatementError, in_transaction, run,
};

/// Why an org storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrgStoreError {
    /// A statement or a row failed (an internal error: logged, a 500 sent).
    #[error(transparent)]
    Store(#[from] GatewayStoreError),
    /// The audit entry could not be written (the change was rolled back).
    #[error("audit log: {0}")]
    Audit(String),
    /// A deleted org's aggregates could not be moved to no org (the
    /// deletion was rolled back).
    #[error("usage aggregates: {0}")]
    Usage(String),
    /// The master key is missing, malformed or wrong, or a ciphertext does
    /// not decrypt: never answered with plaintext or the deployment's key.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The org does not exist (any more): checked inside the write, so a
    /// deletion racing it cannot leave a row behind for a later org of the
    /// same id.
    #[error("no org {0}")]
    NoSuchOrg(String),
}

impl From<StatementError> for OrgStoreError {
    fn from(e: StatementError) -> Self {
        Self::Store(e.into())
    }
}

impl From<ColumnError> for OrgStoreError {
    fn from(e: ColumnError) -> Self {
        Self::Store(e.into())
    }
}

impl From<OrgStoreError> for ApiError {
    fn from(e: OrgStoreError) -> Self {
        match e {
            OrgStoreError::Crypto(CryptoError::NoMasterKey) => {
                ApiError::new(Code::NotConfigured, CryptoError::NoMasterKey.to_string())
            }
            // The operator's configuration is at fault; the message names
            // the variable or key id, never key material or a credential.
            OrgStoreError::Crypto(c) => ApiError::new(
                Code::InvalidConfig,
                format!("BYOK credentials: {c} (see GET /health/ready)"),
            ),
            OrgStoreError::NoSuchOrg(id) => {
                ApiError::new(Code::NotFound, format!("no org {id}")).with_field("id")
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, OrgStoreError>;

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn opt_uint(n: Option<u64>) -> SqlValue {
    n.map_or(SqlValue::Null, |n| {
        SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    })
}

/// Appends an org or credential change to the audit log (kind `org` or
/// `credential`, target and org the org's id; `*` for a rotation of all).
fn audit(
    db: &mut impl SqlExecutor,
    action: &'static str,
    org_id: &str,
    before: Option<Value>,
    after: Option<Value>,
    actor: &str,
    now_ms: i64,
) -> Result<()> {
    let kind = if action.starts_with("org-credential") || action == "credentials-rotate" {
        "credential"
    } else {
        "org"
    };
    let mut record = crate::audit::Record::new(kind, action, org_id);
    record.org_id = if org_id == "*" {
        String::new()
    } else {
        org_id.to_owned()
    };
    record.before = before;
    record.after = after;
    crate::audit::append(db, actor, now_ms, record).map_err(|e| OrgStoreError::Audit(e.to_string()))
}

const ORG_COLUMNS: &str = "id, name, requests_per_minute, tokens_per_minute, \
monthly_budget_micros, allowed_models, created_at, updated_at";

fn org_from_row(values: &[SqlValue]) -> Result<Org> {
    let r = Row::new("orgs", values);
    Ok(Org {
        id: r.text(0, "id")?.to_owned(),
        name: r.text(1, "name")?.to_owned(),
        limits: KeyLimits {
            requests_per_minute: r.opt_uint(2, "requests_per_minute")?,
            tokens_per_minute: r.opt_uint(3, "tokens_per_minute")?,
            monthly_budget_micros: r.opt_uint(4, "monthly_budget_micros")?,
        },
        allowed_models: r.json(5, "allowed_models")?,
        created_at: r.int(6, "created_at")?,
        updated_at: r.int(7, "updated_at")?,
    })
}

/// The org `id`, if any.
pub fn get_org(db: &mut impl SqlExecutor, id: &str) -> Result<Option<Org>> {
    run(
        db,
        &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?"),
        &[text(id)],
    )?
    .first()
    .map(|r| org_from_row(r))
    .transpose()
}

/// Every org, by id.
pub fn list_orgs(db: &mut impl SqlExecutor) -> Result<Vec<Org>> {
    run(
        db,
        &format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY id"),
        &[],
    )?
    .iter()
    .map(|r| org_from_row(r))
    .collect()
}

/// Creates or replaces org `id` (audited as `org-put` with before and
/// after); returns the org and whether it was created.
pub fn put_org(
    db: &mut impl SqlExecutor,
    id: &str,
    spec: &OrgSpec,
    actor: &str,
    now_ms: i64,
) -> Result<(Org, bool)> {
    let allowed = serde_json::to_string(&spec.allowed_models).unwrap_or_else(|_| "[]".into());
    in_transaction(db, |tx| {
        let before = get_org(tx, id)?;
        if before.is_none() {
            // A new org of an id used before starts with nothing of the old
            // one: a request in flight when that org was deleted settled
            // after the deletion (its counters, request row and usage), and
            // the gateway's hot path does not look for deleted orgs.
            erase_org_rows(tx, id, now_ms)?;
        }
        let created_at = before.as_ref().map_or(now_ms, |o| o.created_at);
        run(
            tx,
            "INSERT INTO orgs (id, name, requests_per_minute, tokens_per_minute, \
             monthly_budget_micros, allowed_models, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, requests_per_minute = excluded.requests_per_minute, \
             tokens_per_minute = excluded.tokens_per_minute, \
             monthly_budget_micros = excluded.monthly_budget_micros, \
             allowed_models = excluded.allowed_models, updated_at = excluded.updated_at",
            &[
                text(id),
                text(&spec.name),
                opt_uint(spec.limits.requests_per_minute),
                opt_uint(spec.limits.tokens_per_minute),
                opt_uint(spec.limits.monthly_budget_micros),
                text(&allowed),
                SqlValue::Integer(created_at),
                SqlValue::Integer(now_ms),
            ],
        )?;
        let after = Org {
            id: id.to_owned(),
            name: spec.name.clone(),
            limits: spec.limits,
            allowed_models: spec.allowed_models.clone(),
            created_at,
            updated_at: now_ms,
        };
        audit(
            tx,
            "org-put",
            id,
            before.as_ref().map(Org::to_json),
            Some(after.to_json()),
            actor,
            now_ms,
        )?;
        Ok((after, before.is_none()))
    })
}

/// What deleting an org removed (`DELETE /admin/orgs/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrgDeleted {
    /// The org's keys that were still active and are now revoked.
    pub keys_revoked: usize,
    /// Its encrypted provider credentials, erased.
    pub credentials: usize,
    /// Its trust settings row (0 or 1).
    pub settings: usize,
    /// Its stored (masked) request bodies.
    pub request_bodies: usize,
    /// The `requests` rows of its keys (they hold subjects and details).
    pub requests: usize,
    /// The feedback on those requests (it may hold comments).
    pub feedback: usize,
    /// The video jobs of its keys (they hold prompts).
    pub video_jobs: usize,
    /// The experiment events its keys sent (they hold end users' ids).
    pub events: usize,
    /// Minute and hour aggregate rows moved to no org (kept, anonymous).
    pub aggregate_rows_anonymized: usize,
}

/// Deletes org `id` in one transaction with its audit entry (`org-delete`,
/// kind `org`, before = the org and its credentials' last four, after = the
/// counts): its keys are revoked (kept, so old ids still resolve in the
/// audit log), its encrypted credentials, settings and org counters erased,
/// its stored request bodies, its keys' `requests` rows, their feedback,
/// video jobs and experiment events deleted (personal data: subjects,
/// prompts, comments, end users' ids), and its
/// minute and hour aggregates kept but moved to no org
/// ([`crate::observe::scan_store::anonymize_usage`]): deployment totals do
/// not change and nothing left names the org. `None` when there is no such
/// org (nothing changed).
pub fn delete_org(
    db: &mut impl SqlExecutor,
    id: &str,
    actor: &str,
    now_ms: i64,
) -> Result<Option<OrgDeleted>> {
    in_transaction(db, |tx| {
        let Some(org) = get_org(tx, id)? else {
            return Ok(None);
        };
        let credentials: Vec<Value> = credential_infos(tx, id)?
            .iter()
            .map(CredentialInfo::json)
            .collect();
        let deleted = erase_org_rows(tx, id, now_ms)?;
        run(tx, "DELETE FROM orgs WHERE id = ?", &[text(id)])?;
        let mut before = org.to_json();
        before["erased_credentials"] = json!(credentials);
        let after = json!({ "deleted": &deleted });
        audit(
            tx,
            "org-delete",
            id,
            Some(before),
            Some(after),
            actor,
            now_ms,
        )?;
        Ok(Some(deleted))
    })
}

/// Erases, inside the caller's transaction, what org `id` and its keys left
/// (see [`delete_org`]): keys revoked; credentials, settings and counters
/// erased; bodies, request rows, feedback, video jobs and events of its keys
/// deleted; minute and hour aggregates moved to no org.
fn erase_org_rows(tx: &mut impl SqlExecutor, id: &str, now_ms: i64) -> Result<OrgDeleted> {
    let org_param = [text(id)];
    let of_keys = "key_id IN (SELECT id FROM api_keys WHERE org_id = ?)";
    let count = |tx: &mut _, q: &str| -> Result<usize> { Ok(run(tx, q, &org_param)?.len()) };
    let deleted = OrgDeleted {
        feedback: count(tx, &format!("DELETE FROM feedback WHERE {of_keys} RETURNING 1"))?,
        video_jobs: count(tx, &format!("DELETE FROM video_jobs WHERE {of_keys} RETURNING 1"))?,
        events: count(tx, &format!("DELETE FROM events WHERE {of_keys} RETURNING 1"))?,
        requests: count(tx, &format!("DELETE FROM requests WHERE {of_keys} RETURNING 1"))?,
        request_bodies: count(tx, "DELETE FROM request_bodies WHERE org_id = ? RETURNING 1")?,
        credentials: count(tx, "DELETE FROM org_credentials WHERE org_id = ? RETURNING 1")?,
        settings: count(tx, "DELETE FROM org_settings WHERE org_id = ? RETURNING 1")?,
        aggregate_rows_anonymized: crate::observe::scan_store::anonymize_usage(tx, id)
            .map_err(|e| OrgStoreError::Usage(e.to_string()))?,
        keys_revoked: run(
            tx,
            "UPDATE api_keys SET revoked_at = ? WHERE org_id = ? AND revoked_at IS NULL RETURNING 1",
            &[SqlValue::Integer(now_ms), text(id)],
        )?
        .len(),
    };
    run(
        tx,
        "DELETE FROM key_usage WHERE key_id = ?",
        &[text(&gw::org_usage_key(id))],
    )?;
    // Its settings are gone: instances keeping them read again.
    gw::stamp(tx, gw::ORG_SETTINGS_STAMP_KEY, "org-delete", now_ms)?;
    Ok(deleted)
}

/// The org's usage counters (the `key_usage` row `org:<id>`).
pub fn org_usage(db: &mut impl SqlExecutor, id: &str) -> Result<Usage> {
    Ok(gw::usage(db, &gw::org_usage_key(id))?)
}

/// What an API shows of a stored credential: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    /// The provider.
    pub provider: String,
    /// The secret's last four characters.
    pub last4: String,
    /// When it was set, Unix ms.
    pub set_at: i64,
    /// The master key id it is encrypted under.
    pub key_id: String,
}

impl CredentialInfo {
    fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The org's credentials as shown by the admin API (provider, last four, when set).
pub fn credential_infos(db: &mut impl SqlExecutor, org_id: &str) -> Result<Vec<CredentialInfo>> {
    run(
        db,
        "SELECT provider, last4, set_at, key_id FROM org_credentials WHERE org_id = ? \
         ORDER BY provider",
        &[text(org_id)],
    )?
    .iter()
    .map(|values| {
        let r = Row::new("org_credentials", values);
        Ok(CredentialInfo {
            provider: r.text(0, "provider")?.to_owned(),
            last4: r.text(1, "last4")?.to_owned(),
            set_at: r.int(2, "set_at")?,
            key_id: r.text(3, "key_id")?.to_owned(),
        })
    })
    .collect()
}

/// Org `id` inside the caller's write transaction, or
/// [`OrgStoreError::NoSuchOrg`]: a write that belongs to an org checks it
/// under the same lock as [`delete_org`], so it lands before the deletion
/// (which then erases it) or is refused after it.
pub fn require_org_in(tx: &mut impl SqlExecutor, id: &str) -> Result<Org> {
    get_org(tx, id)?.ok_or_else(|| OrgStoreError::NoSuchOrg(id.to_owned()))
}

/// Encrypts `secret` for org `org_id` (its `provider` credential) under the ring's current key and
/// stores it as the org's `provider` credential (audited as
/// `org-credential-set`, with the last four characters only).
pub fn set_credential(
    db: &mut impl SqlExecutor,
    ring: &KeyRing,
    nonces: &mut impl NonceSource,
    (org_id, provider): (&str, &str),
    secret: &str,
    actor: &str,
    now_ms: i64,
) -> Result<CredentialInfo> {
    let sealed = ring.seal(nonces, CredentialSlot { org_id, provider }, secret);
    let info = CredentialInfo {
        provider: provider.to_owned(),
        last4: crypto::last_four(secret),
        set_at: now_ms,
        key_id: sealed.key_id.clone(),
    };
    in_transaction(db, |tx| {
        require_org_in(tx, org_id)?;
        let before = credential_infos(tx, org_id)?
            .into_iter()
            .find(|c| c.provider == provider);
        run(
            tx,
            "INSERT INTO org_credentials (org_id, provider, key_id, ciphertext, last4, set_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, provider) DO UPDATE SET \
             key_id = excluded.key_id, ciphertext = excluded.ciphertext, \
             last4 = excluded.last4, set_at = excluded.set_at",
            &[
                text(org_id),
                text(provider),
                text(&sealed.key_id),
                text(&sealed.blob),
                text(&info.last4),
                SqlValue::Integer(now_ms),
            ],
        )?;
        let after = json!({"org": org_id, "credential": info.json()});
        let before = before.map(|b| json!({"org": org_id, "credential": b.json()}));
        audit(
            tx,
            "org-credential-set",
            org_id,
            before,
            Some(after),
            actor,
            now_ms,
        )?;
        Ok(info.clone())
    })
}

/// Deletes the org's `provider` credential (audited); returns whether it existed.
pub fn delete_credential(
    db: &mut impl SqlExecutor,
    org_id: &str,
    provider: &str,
    actor: &str,
    now_ms: i64,
) -> Result<bool> {
    in_transaction(db, |tx| {
        let Some(before) = credential_infos(tx, org_id)?
            .into_iter()
            .find(|c| c.provider == provider)
        else {
            return Ok(false);
        };
        run(
            tx,
            "DELETE FROM org_credentials WHERE org_id = ? AND provider = ?",
            &[text(org_id), text(provider)],
        )?;
        let before = json!({"org": org_id, "credential": before.json()});
        audit(
            tx,
            "org-credential-delete",
            org_id,
            Some(before),
            None,
            actor,
            now_ms,
        )?;
        Ok(true)
    })
}

struct SealedRow {
    org_id: String,
    provider: String,
    sealed: Sealed,
}

impl SealedRow {
    fn slot(&self) -> CredentialSlot<'_> {
        CredentialSlot {
            org_id: &self.org_id,
            provider: &self.provider,
        }
    }
}

fn sealed_rows(db: &mut impl SqlExecutor, org_id: Option<&str>) -> Result<Vec<SealedRow>> {
    let select = "SELECT org_id, provider, key_id, ciphertext FROM org_credentials";
    let rows = match org_id {
        Some(id) => run(
            db,
            &format!("{select} WHERE org_id = ? ORDER BY provider"),
            &[text(id)],
        )?,
        None => run(db, &format!("{select} ORDER BY org_id, provider"), &[])?,
    };
    rows.iter()
        .map(|values| {
            let r = Row::new("org_credentials", values);
            Ok(SealedRow {
                org_id: r.text(0, "org_id")?.to_owned(),
                provider: r.text(1, "provider")?.to_owned(),
                sealed: Sealed {
                    key_id: r.text(2, "key_id")?.to_owned(),
                    blob: r.text(3, "ciphertext")?.to_owned(),
                },
            })
        })
        .collect()
}

/// The org's provider credentials in clear (provider, secret), for its own
/// requests only. An org without credentials needs no master key; one with
/// credentials and a missing or wrong master key is an error, so a request
/// never silently falls back to the deployment's key.
pub fn org_credentials(
    db: &mut impl SqlExecutor,
    ring: std::result::Result<&KeyRing, &CryptoError>,
    org_id: &str,
) -> Result<Vec<(String, String)>> {
    let rows = sealed_rows(db, Some(org_id))?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ring = ring.map_err(Clone::clone)?;
    rows.into_iter()
        .map(|r| {
            let secret = ring.open(r.slot(), &r.sealed)?;
            Ok((r.provider, secret))
        })
        .collect()
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Credentials re-encrypted under the current key.
    pub reencrypted: u64,
    /// Credentials already under the current key (left as they were).
    pub already_current: u64,
}

/// Re-encrypts every credential not under the ring's current key (each
/// decrypted with the previous key its row names), in one transaction: a
/// credential that does not decrypt stops the rotation and changes
/// nothing. Audited as `credentials-rotate` (counts and key id only).
pub fn rotate_credentials(
    db: &mut impl SqlExecutor,
    ring: &KeyRing,
    nonces: &mut impl NonceSource,
    actor: &str,
    now_ms: i64,
) -> Result<RotationReport> {
    in_transaction(db, |tx| {
        let mut report = RotationReport {
            reencrypted: 0,
            already_current: 0,
        };
        for row in sealed_rows(tx, None)? {
            // Current: under the current key and bound to its provider
            // (older ciphertexts bound the org only and are re-sealed).
            if row.sealed.key_id == ring.current_id() && row.sealed.is_current_format() {
                report.already_current += 1;
                continue;
            }
            let secret = ring.open(row.slot(), &row.sealed)?;
            let sealed = ring.seal(nonces, row.slot(), &secret);
            run(
                tx,
                "UPDATE org_credentials SET key_id = ?, ciphertext = ? \
                 WHERE org_id = ? AND provider = ?",
                &[
                    text(&sealed.key_id),
                    text(&sealed.blob),
                    text(&row.org_id),
                    text(&row.provider),
                ],
            )?;
            report.reencrypted += 1;
        }
        let after = json!({"key_id": ring.current_id(), "report": report});
        audit(
            tx,
            "credentials-rotate",
            "*",
            None,
            Some(after),
            actor,
            now_ms,
        )?;
        Ok(report)
    })
}

/// The readiness check `credentials`: passes when no credential is stored,
/// or when the master key parses and decrypts one stored credential of
/// every key id in use; fails naming the problem (a missing master key
/// with credentials stored, a malformed variable, an unknown key id, a
/// wrong key) and never showing a secret.
pub fn credentials_check(
    db: &mut impl SqlExecutor,
    ring: std::result::Result<&KeyRing, &CryptoError>,
    latency_ms: u64,
) -> CheckResult {
    let fail = |reason: String| CheckResult {
        ok: false,
        error: Some(reason),
        ..CheckResult::pass("credentials", latency_ms)
    };
    let rows = match sealed_rows(db, None) {
        Ok(rows) => rows,
        Err(_) => return fail("credentials cannot be read".to_owned()),
    };
    match ring {
        Err(CryptoError::NoMasterKey) if rows.is_empty() => {
            CheckResult::pass("credentials", latency_ms)
        }
        Err(CryptoError::NoMasterKey) => fail(format!(
            "{} BYOK credentials are stored but credentials_master_key is not set",
            rows.len()
        )),
        Err(e) => fail(e.to_string()),
        Ok(ring) => {
            let mut seen = std::collections::BTreeSet::new();
            for row in &rows {
                if seen.insert(row.sealed.key_id.clone())
                    && let Err(e) = ring.open(row.slot(), &row.sealed)
                {
                    return fail(e.to_string());
                }
            }
            CheckResult::pass("credentials", latency_ms)
        }
    }
}

/// Whether the API key presented (`Authorization: Bearer` or
/// `X-API-Key`) may read org `org_id`'s metrics: it must have the
/// `read-metrics` role (403) and belong to that org (403 naming the
/// mismatch); an unknown or revoked key is a 401.
pub fn authorize_org_reader(
    db: &mut impl SqlExecutor,
    authorization: Option<&str>,
    x_api_key: Option<&str>,
    org_id: &str,
) -> std::result::Result<(), ApiError> {
    let caller = intake::authenticate(db, authorization, x_api_key, "", Role::ReadMetrics)
        .map_err(|e| ApiError::from(&e))?;
    match caller.org {
        Some(org) if org.id == org_id => Ok(()),
        _ => Err(ApiError::new(
            Code::Forbidden,
            format!("This API key does not belong to organization `{org_id}`."),
        )
        .with_field("org")),
    }
}

/// Whether a request may read org `org_id`'s figures (`/api/health`,
/// `/api/metrics` and `/metrics` with `?org=`): a malformed id is a 400
/// naming `org`; a request presenting an API key (`X-API-Key`, or a bearer
/// that looks like one) must pass [`authorize_org_reader`]; any other is
/// the admin's, checked by `admin` (401/403 from it); an org that does not
/// exist is a 404 naming `org` (after authorization, so strangers cannot
/// probe which orgs exist).
pub fn authorize_org_view(
    db: &mut impl SqlExecutor,
    authorization: Option<&str>,
    x_api_key: Option<&str>,
    org_id: &str,
    admin: impl FnOnce() -> std::result::Result<(), ApiError>,
) -> std::result::Result<(), ApiError> {
    if !super::valid_id(org_id) {
        return Err(ApiError::invalid(
            "org",
            "org must be an org id: 1-64 lowercase letters, digits or -",
        ));
    }
    let presents_key = x_api_key.is_some()
        || crate::auth::bearer(authorization).is_some_and(crate::gateway::keys::is_well_formed);
    if presents_key {
        authorize_org_reader(db, authorization, x_api_key, org_id)?;
    } else {
        admin()?;
    }
    if get_org(db, org_id)?.is_none() {
        return Err(ApiError::new(Code::NotFound, format!("no org `{org_id}`")).with_field("org"));
    }
    Ok(())
}

/// `/api/metrics?org=…`: the overview of `window` of the org's keys, read
/// from the same minute and hour aggregates as the deployment's (their
/// `org_id`, migration 17), in the same shape.
pub fn org_overview(
    db: &mut impl SqlExecutor,
    org_id: &str,
    window: Window,
    now_s: i64,
) -> std::result::Result<usage::Overview, crate::observe::store::StoreError> {
    crate::observe::system::read_overview_in(db, window, now_s, Some(org_id))
}
