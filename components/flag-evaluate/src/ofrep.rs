//! OFREP over HTTP: auth, request parsing and response mapping come from
//! `dol_core::flags::ofrep`; this module wires them to Spin.

use dol_core::flags::ofrep::{self, OfrepResponse};
use spin_sdk::http::{Method, Request, Response};

use dol_spin_platform as platform;

use crate::store;

/// Spin variable holding the OFREP client token (empty = open).
const TOKEN_VARIABLE: &str = "ofrep_token";

/// Spin variable: OFREP requests per minute and client (empty, undefined or 0 = no limit).
const RATE_LIMIT_VARIABLE: &str = "ofrep_rate_limit_per_minute";

/// The 429 response when this client is over its per-minute limit, else `None`.
fn rate_limit(req: &Request, token: &str) -> Option<OfrepResponse> {
    let raw = match platform::variables::get(RATE_LIMIT_VARIABLE) {
        Ok(raw) => raw,
        // An app that does not declare the variable simply has no limit.
        Err(spin_sdk::variables::Error::Undefined(_)) => return None,
        Err(err) => {
            eprintln!("flag-evaluate: reading variable {RATE_LIMIT_VARIABLE} failed: {err}");
            return Some(ofrep::internal_error());
        }
    };
    let limit = ofrep::rate_limit_per_minute(&raw).unwrap_or_else(|warning| {
        eprintln!("flag-evaluate: {warning}");
        0
    });
    if limit == 0 {
        return None;
    }
    let client = ofrep::rate_limit_client(
        !token.is_empty(),
        platform::header(req, "spin-client-addr"),
        platform::header(req, "authorization"),
        platform::header(req, "x-api-key"),
    );
    let now = u64::try_from(platform::now_ms() / 1000).unwrap_or_default();
    match store::check_rate(&client, now, limit) {
        Ok(dol_core::ratelimit::Decision::Allow(_)) => None,
        Ok(dol_core::ratelimit::Decision::Deny { retry_after_secs }) => {
            Some(ofrep::rate_limited(retry_after_secs))
        }
        Err(err) => {
            // Failing open keeps flags served when the database hiccups; the limit
            // protects capacity, it is not an access control.
            eprintln!("flag-evaluate: rate limiting unavailable: {err:#}");
            None
        }
    }
}

/// Handles `/ofrep/...`.
pub fn handle(req: &Request) -> Response {
    let token = match platform::variables::get(TOKEN_VARIABLE) {
        Ok(t) => t,
        Err(err) => {
            eprintln!("flag-evaluate: reading variable {TOKEN_VARIABLE} failed: {err}");
            return respond(&ofrep::internal_error());
        }
    };
    if let Some(denied) = ofrep::check_auth(
        &token,
        platform::header(req, "authorization"),
        platform::header(req, "x-api-key"),
    ) {
        return respond(&denied);
    }
    if let Some(limited) = rate_limit(req, &token) {
        return respond(&limited);
    }
    let key = match ofrep::route(req.path(), platform::percent_decode) {
        Ok(key) => key,
        Err(not_found) => return respond(&not_found),
    };
    if *req.method() != Method::Post {
        return respond(&ofrep::method_not_allowed());
    }
    let now = u64::try_from(platform::now_ms() / 1000).unwrap_or_default();
    let ctx = match ofrep::parse_request(req.body()) {
        Ok(ctx) => ctx,
        Err(err) => {
            return respond(&match &key {
                Some(key) => ofrep::request_error(key, &err),
                None => ofrep::bulk_request_error(&err),
            });
        }
    };
    // A single evaluation compiles only its flag (the answer is the same;
    // compiling the whole set was most of the request's guest time).
    let current = match &key {
        Some(key) => store::current_for(key),
        None => store::current(),
    };
    let (version, set) = match current {
        Ok(current) => current,
        Err(err) => {
            eprintln!("flag-evaluate: loading flags failed: {err:#}");
            return respond(&ofrep::internal_error());
        }
    };
    let response = match &key {
        Some(key) => ofrep::evaluate_single(&set, key, &ctx, now),
        None => ofrep::evaluate_bulk(
            &set,
            version,
            &ctx,
            now,
            platform::header(req, "if-none-match"),
        ),
    };
    // A 304 carries no answer and is not counted.
    if let Some(body) = &response.body {
        crate::counting::record_ofrep(body);
    }
    respond(&response)
}

fn respond(r: &OfrepResponse) -> Response {
    let mut headers = Vec::new();
    if let Some(etag) = &r.etag {
        headers.push(("etag", etag.clone()));
    }
    if r.status == 401 {
        headers.push(("www-authenticate", "Bearer".to_owned()));
    }
    if r.status == 405 {
        headers.push(("allow", "POST".to_owned()));
    }
    if let Some(seconds) = r.retry_after_secs {
        headers.push(("retry-after", seconds.to_string()));
    }
    match &r.body {
        Some(body) => platform::json_with(r.status, body, &headers),
        None => {
            let mut builder = Response::builder();
            builder.status(r.status);
            for (name, value) in &headers {
                builder.header(*name, value.as_str());
            }
            builder.body(Vec::new()).build()
        }
    }
}
