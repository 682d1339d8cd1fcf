//! `/admin/orgs` (organizations and their encrypted provider credentials)
//! and `POST /admin/credentials/rotate` (re-encrypt every credential under
//! the current master key). Decisions and SQL are `dol_core::orgs`; nonces
//! come from `wasi:random`, the master keys from the secret variables.

use dol_core::error::{ApiError, Code};
use dol_core::orgs::crypto::{KeyRing, NONCE_LEN, NonceSource};
use dol_core::orgs::{self, Org, store};
use serde_json::{Value, json};
use spin_sdk::http::{Method, Response};

use super::json_body;
use crate::request::Incoming;
use dol_spin_platform::{self as platform, SpinSql};

/// Nonces from `wasi:random` (the host's CSPRNG, which Spin serves).
struct WasiNonces;

impl NonceSource for WasiNonces {
    fn fill(&mut self, buf: &mut [u8; NONCE_LEN]) {
        crate::run::fill_random(buf);
    }
}

fn key_ring() -> Result<KeyRing, ApiError> {
    platform::key_ring().map_err(|e| store::OrgStoreError::from(e).into())
}

fn org_json(sql: &mut SpinSql<'_>, org: &Org) -> Result<Value, ApiError> {
    let mut v = org.to_json();
    v["usage"] =
        serde_json::to_value(store::org_usage(sql, &org.id)?).map_err(platform::internal)?;
    v["credentials"] = json!(store::credential_infos(sql, &org.id)?);
    Ok(v)
}

fn existing(sql: &mut SpinSql<'_>, id: &str) -> Result<Org, ApiError> {
    store::get_org(sql, id)?.ok_or_else(|| ApiError::new(Code::NotFound, format!("no org {id}")))
}

/// Routes `/admin/orgs/...` (`segments` after `orgs`).
pub fn route(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    segments: &[&str],
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    Ok(match (segments, &req.method) {
        ([], Method::Get) => {
            let orgs: Vec<Value> = store::list_orgs(sql)?
                .iter()
                .map(|o| org_json(sql, o))
                .collect::<Result<_, _>>()?;
            platform::json(200, &json!({ "orgs": orgs }))
        }
        ([], _) => platform::method_not_allowed("GET"),
        ([id], Method::Put) => {
            let spec = orgs::parse_org(id, &json_body(req)?)?;
            let (org, created) = store::put_org(sql, id, &spec, actor, now)?;
            platform::json(if created { 201 } else { 200 }, &org_json(sql, &org)?)
        }
        ([id], Method::Get) => {
            let org = existing(sql, id)?;
            platform::json(200, &org_json(sql, &org)?)
        }
        ([id], Method::Delete) => {
            orgs::check_id(id)?;
            let deleted = store::delete_org(sql, id, actor, now)?.ok_or_else(|| {
                ApiError::new(Code::NotFound, format!("no org {id}")).with_field("id")
            })?;
            platform::json(200, &json!({ "org": id, "deleted": deleted }))
        }
        ([_], _) => platform::method_not_allowed("GET, PUT, DELETE"),
        ([id, "settings"], Method::Get) => {
            existing(sql, id)?;
            super::privacy::get_settings(sql, id)?
        }
        ([id, "settings"], Method::Put) => {
            existing(sql, id)?;
            super::privacy::put_settings(req, sql, id, actor, now)?
        }
        ([_, "settings"], _) => platform::method_not_allowed("GET, PUT"),
        ([id, "subjects", subject], Method::Delete) => {
            existing(sql, id)?;
            super::privacy::delete_subject(sql, id, subject, actor, now)?
        }
        ([_, "subjects", _], _) => platform::method_not_allowed("DELETE"),
        ([id, "credentials", provider], Method::Put) => {
            let secret = orgs::parse_credential(provider, &json_body(req)?)?;
            existing(sql, id)?;
            let ring = key_ring()?;
            let info = store::set_credential(
                sql,
                &ring,
                &mut WasiNonces,
                (id, provider),
                &secret,
                actor,
                now,
            )?;
            platform::json(200, &json!(info))
        }
        ([id, "credentials", provider], Method::Delete) => {
            existing(sql, id)?;
            if !store::delete_credential(sql, id, provider, actor, now)? {
                return Err(ApiError::new(
                    Code::NotFound,
                    format!("org {id} has no {provider} credential"),
                ));
            }
            platform::json(200, &json!({"deleted": provider}))
        }
        ([_, "credentials", _], _) => platform::method_not_allowed("PUT, DELETE"),
        _ => return Err(ApiError::new(Code::NotFound, "no such admin route")),
    })
}

/// `POST /admin/credentials/rotate`: every credential re-encrypted under
/// the current master key (the previous keys must still be listed).
pub fn rotate(
    req: &Incoming,
    sql: &mut SpinSql<'_>,
    actor: &str,
    now: i64,
) -> Result<Response, ApiError> {
    if req.method != Method::Post {
        return Ok(platform::method_not_allowed("POST"));
    }
    let ring = key_ring()?;
    let report = store::rotate_credentials(sql, &ring, &mut WasiNonces, actor, now)?;
    Ok(platform::json(
        200,
        &json!({"key_id": ring.current_id(), "reencrypted": report.reencrypted,
                "already_current": report.already_current}),
    ))
}
