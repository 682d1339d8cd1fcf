//! The front of a generation request (issue 11): who the caller is (a stored
//! key or the bootstrap key) and what it asks for (a chat body, or a prompt
//! template rendered into one). Errors are [`PipelineError`]s, rendered in
//! OpenAI's shape by [`PipelineError::reply`].

use serde_json::{Map, Value};

use super::keys::KeyLimits;
use super::openai::{ChatRequest, ErrorBody, ErrorType};
use super::pipeline::{Caller, PipelineError};
use super::store::{self, TemplateVersion};
use super::templates;
use crate::auth;
use crate::orgs::{self, Role};
use crate::storage::SqlExecutor;

/// A fresh id for a request arriving at `now_ms` (Unix milliseconds):
/// `prefix`, a dash, then 24 hex digits — the time in 12 and 48 bits of
/// `random` in 12 — as in `chatcmpl-0193a5c2f1d07c3e9a41b2f8`.
///
/// Clients treat the id as opaque; the time first makes later ids sort
/// after earlier ones, so the `requests` table's primary-key index grows at
/// its end instead of taking each new id at a random leaf: a request's
/// settlement and the checkpoint after it write the same few pages however
/// many requests arrived in between, and a year-sized index need not read a
/// random leaf from disk for every insert.
pub fn request_id(prefix: &str, now_ms: u64, random: u64) -> String {
    const LOW_48_BITS: u64 = (1 << 48) - 1;
    format!(
        "{prefix}-{:012x}{:012x}",
        now_ms & LOW_48_BITS,
        random & LOW_48_BITS
    )
}

/// Authenticates the key presented as `Authorization: Bearer` or `X-API-Key`
/// (the bearer wins) and checks it has `role`; the configured `bootstrap`
/// key (when not empty) is accepted without limits, org or role checks. A
/// key of an org carries the org (its limits and allow-list apply too).
pub fn authenticate(
    sql: &mut impl SqlExecutor,
    authorization: Option<&str>,
    x_api_key: Option<&str>,
    bootstrap: &str,
    role: Role,
) -> Result<Caller, PipelineError> {
    let presented = auth::bearer(authorization).or(x_api_key);
    let Some(key) = presented.filter(|k| !k.is_empty()) else {
        return Err(PipelineError::MissingKey);
    };
    if !bootstrap.is_empty() && auth::constant_time_eq(key.as_bytes(), bootstrap.as_bytes()) {
        return Ok(Caller {
            id: "bootstrap".to_owned(),
            limits: KeyLimits::default(),
            org: None,
        });
    }
    let storage = |context| {
        move |e: &dyn std::fmt::Display| PipelineError::Storage {
            context,
            message: e.to_string(),
        }
    };
    let row = store::find_active_key(sql, key)
        .map_err(|e| storage("key lookup")(&e))?
        .ok_or(PipelineError::InvalidKey)?;
    if !row.effective_roles().contains(&role) {
        return Err(PipelineError::Denied(orgs::missing_role(role)));
    }
    let org = match &row.org_id {
        Some(id) => Some(
            orgs::store::get_org(sql, id)
                .map_err(|e| storage("org lookup")(&e))?
                // A key whose org row is gone serves nothing rather than
                // escaping the org's limits.
                .ok_or(PipelineError::InvalidKey)?,
        ),
        None => None,
    };
    Ok(Caller {
        id: row.id,
        limits: row.limits,
        org,
    })
}

/// A validated request and its route label (`chat` or `generate:<name>@<version>`).
pub type Job = (ChatRequest, String);

/// Parses a `POST /v1/chat/completions` body.
pub fn parse_chat(body: &[u8]) -> Result<Job, PipelineError> {
    ChatRequest::from_json(body)
        .map(|request| (request, "chat".to_owned()))
        .map_err(|e| PipelineError::BadRequest(e.to_error_body()))
}

fn bad_request(message: &str, param: &str) -> PipelineError {
    PipelineError::BadRequest(ErrorBody::new(
        message,
        ErrorType::InvalidRequest,
        Some(param.to_owned()),
        None,
    ))
}

/// Renders a `POST /v1/generate` body (`{"template", "version"?,
/// "variables"?, …request fields}`): the template's defaults, overridden by
/// the request's fields, with the rendered messages.
pub fn parse_generate(sql: &mut impl SqlExecutor, body: &[u8]) -> Result<Job, PipelineError> {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad_request("body must be a JSON object", "body"));
    };
    let Some(Value::String(name)) = fields.remove("template") else {
        return Err(bad_request(
            "`template` (the template name) is required",
            "template",
        ));
    };
    let version = match fields.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad_request("`version` must be a positive integer", "version"))?,
        ),
    };
    let variables = match fields.remove("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad_request("`variables` must be an object", "variables")),
    };
    if fields.contains_key("messages") {
        return Err(bad_request(
            "`messages` come from the template; send `variables` instead",
            "messages",
        ));
    }
    let TemplateVersion { version, spec } = store::get_template(sql, &name, version)
        .map_err(|e| PipelineError::Storage {
            context: "template lookup",
            message: e.to_string(),
        })?
        .ok_or_else(|| PipelineError::TemplateNotFound(name.clone()))?;
    let messages = templates::render(&spec, &variables)
        .map_err(|e| bad_request(&e.to_string(), "variables"))?;
    let mut merged = spec.defaults.clone();
    merged.extend(fields);
    merged
        .entry("model")
        .or_insert_with(|| Value::String("auto".to_owned()));
    merged.insert(
        "messages".to_owned(),
        serde_json::to_value(&messages).unwrap_or(Value::Null),
    );
    let request = ChatRequest::from_value(&Value::Object(merged))
        .map_err(|e| PipelineError::BadRequest(e.to_error_body()))?;
    Ok((request, format!("generate:{name}@{version}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_id_is_the_prefix_then_the_time_then_random_bits() {
        assert_eq!(
            request_id("chatcmpl", 0x0193_a5c2_f1d0, 0xffff_7c3e_9a41_b2f8),
            "chatcmpl-0193a5c2f1d07c3e9a41b2f8"
        );
        assert_eq!(request_id("emb", 1, 2), "emb-000000000001000000000002");
    }

    proptest! {
        /// Ids of later requests sort after earlier ones, whatever their
        /// random bits, and every id has the same length.
        #[test]
        fn later_request_ids_sort_after_earlier_ones(
            earlier in 0u64..(1 << 48) - 1,
            gap in 1u64..1_000_000,
            a: u64,
            b: u64,
        ) {
            let later = (earlier + gap).min((1 << 48) - 1);
            prop_assume!(later > earlier);
            let first = request_id("chatcmpl", earlier, a);
            let second = request_id("chatcmpl", later, b);
            prop_assert!(first < second, "{first} !< {second}");
            prop_assert_eq!(first.len(), "chatcmpl-".len() + 24);
            prop_assert_eq!(second.len(), first.len());
        }
    }
}
