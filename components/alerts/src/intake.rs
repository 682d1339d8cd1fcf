//! External alerts into DOL's alert store: Prometheus Alertmanager
//! (`POST /webhooks/alertmanager`, webhook v4, bearer token) and the generic
//! HMAC-signed webhook (`POST /webhooks/generic`).

use dol_core::auth::{self, TokenCheck};
use dol_core::observe::alerts::AlertSource;
use dol_core::observe::inbound::{self, JSON};
use dol_core::observe::slack::{self, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER};
use dol_core::observe::{alertmanager, store};
use spin_sdk::http::Request;

use crate::error::Rejection;
use crate::reply::Reply;
use dol_spin_platform as platform;

use crate::{db, request};

/// Spin variable with the token Alertmanager sends as `Authorization: Bearer`.
const ALERTMANAGER_TOKEN: &str = "alertmanager_token";
/// Spin variable with the generic webhook's HMAC secret.
const WEBHOOK_SECRET: &str = "webhook_secret";

/// Alertmanager webhook v4: firing and resolved alerts, deduplicated by
/// fingerprint.
pub fn alertmanager(req: &Request) -> Result<Reply, Rejection> {
    let token = request::secret(ALERTMANAGER_TOKEN)?;
    match auth::check_token(&token, auth::bearer(platform::header(req, "authorization"))) {
        TokenCheck::Valid => {}
        TokenCheck::Missing | TokenCheck::Open => return Err(Rejection::MissingToken),
        TokenCheck::Wrong => return Err(Rejection::WrongToken),
    }
    request::require_content_type(req, JSON)?;
    let payload = alertmanager::parse(req.body())?;
    let incoming = alertmanager::to_external(&payload);
    let outcome = db::with(|db| {
        store::apply_external_alerts(db, AlertSource::Alertmanager, &incoming, platform::now_ms())
    })?;
    let mut body = inbound::intake_json(&outcome, payload.alerts.len());
    body["truncated_alerts"] = payload.truncated_alerts.into();
    Ok(Reply::json(200, &body))
}

/// The generic webhook: one alert, signed with `X-DOL-Timestamp` and
/// `X-DOL-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`.
pub fn generic(req: &Request) -> Result<Reply, Rejection> {
    let secret = request::secret(WEBHOOK_SECRET)?;
    slack::verify_webhook(
        &secret,
        platform::header(req, WEBHOOK_TIMESTAMP_HEADER),
        platform::header(req, WEBHOOK_SIGNATURE_HEADER),
        req.body(),
        request::now_secs(),
    )
    .map_err(Rejection::Signature)?;
    request::require_content_type(req, JSON)?;
    let alert = inbound::parse_generic(req.body())?;
    let outcome = db::with(|db| {
        store::apply_external_alerts(
            db,
            AlertSource::Webhook,
            std::slice::from_ref(&alert),
            platform::now_ms(),
        )
    })?;
    let mut body = inbound::intake_json(&outcome, 1);
    body["id"] = alert.fingerprint.into();
    Ok(Reply::json(200, &body))
}
