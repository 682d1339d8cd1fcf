//! `POST /admin/keys` (a random key, stored as its hash and answered once)
//! and `GET /admin/keys/{id}`. Validation is `dol_core::gateway::admin`.

use dol_core::audit::{Record, audited};
use dol_core::error::{ApiError, Code};
use dol_core::gateway::{admin, store};
use spin_sdk::http::Response;

use super::json_body;
use crate::request::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// Creates a key.
pub fn create_key(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    let new = admin::parse_new_key(&json_body(req)?)?;
    let mut random = [0u8; 16];
    crate::run::fill_random(&mut random);
    let (id, key) = admin::mint_key(random);
    // The stored row, never the secret; committed with the key or not at all.
    let row = audited(sql, actor, now, |tx| {
        // The org is checked under the write lock, so a deletion racing the
        // creation either revokes the key or makes this a 400.
        if let Some(org) = &new.org
            && dol_core::orgs::store::get_org(tx, org)?.is_none()
        {
            return Err(ApiError::invalid("org", format!("no org {org}")));
        }
        let row = store::create_key(tx, &id, &key, &new, now)?;
        Ok((
            row.clone(),
            Record::new("key", "create", &id).after(row.to_json()),
        ))
    })?;
    Ok(platform::json(201, &admin::created_key_json(&row, &key)))
}

/// `GET /admin/keys/{id}`: the key with its usage counters.
pub fn get_key(sql: &mut SpinSql<'_>, id: &str) -> Result<Response, ApiError> {
    let key = store::get_key(sql, id)?
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("no key {id}")))?;
    let mut v = key.to_json();
    v["usage"] = serde_json::to_value(store::usage(sql, id)?).map_err(platform::internal)?;
    Ok(platform::json(200, &v))
}

/// `DELETE /admin/keys/{id}`: revokes the key; audited with the row before and after.
pub fn revoke_key(
    sql: &mut SpinSql<'_>,
    id: &str,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    let key = audited(sql, actor, now, |tx| {
        let before = store::get_key(tx, id)?.map(|k| k.to_json());
        let key = store::revoke_key(tx, id, now)?
            .ok_or_else(|| ApiError::new(Code::NotFound, format!("no key {id}")))?;
        let mut record = Record::new("key", "revoke", id).after(key.to_json());
        record.before = before;
        Ok((key, record))
    })?;
    Ok(platform::json(200, &key.to_json()))
}
