//! Slack: interactivity (`POST /webhooks/slack/actions`) and the slash
//! command (`POST /webhooks/slack/commands`), both verified with Slack's v0
//! signing scheme before anything else happens.

use dol_core::audit::Record;
use dol_core::observe::admin;
use dol_core::observe::inbound::{self, FORM};
use dol_core::observe::slack::{self, ActionKind, Command, PayloadError};
use dol_core::observe::store::{self, EmergencyOverride};
use serde_json::json;
use spin_sdk::http::Request;

use crate::error::Rejection;
use crate::reply::{FollowUp, Reply};
use dol_spin_platform::{self as platform, SpinSql};

use crate::{db, flags, request};

/// Spin variable with Slack's signing secret.
const SIGNING_SECRET: &str = "slack_signing_secret";

/// The verified body: signature and timestamp first, then the content type.
fn verified(req: &Request) -> Result<&str, Rejection> {
    let secret = request::secret(SIGNING_SECRET)?;
    slack::verify_slack(
        &secret,
        platform::header(req, "x-slack-request-timestamp"),
        platform::header(req, "x-slack-signature"),
        req.body(),
        request::now_secs(),
    )
    .map_err(Rejection::Signature)?;
    request::require_content_type(req, FORM)?;
    request::body_text(req)
}

/// The audit entry of a change made from Slack, appended after it as the
/// operator routes append theirs (`ops::handle`), by the Slack user.
fn audit(db: &mut SpinSql<'_>, who: &str, record: Record) {
    platform::audit("alerts", db, who, record);
}

/// What a Slack user does to an alert.
#[derive(Clone, Copy)]
enum AlertChange {
    Acknowledge,
    Resolve,
}

/// Applies `change` to alert `id` for Slack user `who`, with its audit
/// entry, and answers the text Slack shows.
fn change_alert(id: &str, who: &str, change: AlertChange) -> Result<String, Rejection> {
    let done = db::with(|db| {
        let now = platform::now_ms();
        let (done, action) = match change {
            AlertChange::Acknowledge => (store::acknowledge_alert(db, id, who, now)?, "ack"),
            AlertChange::Resolve => (store::resolve_alert(db, id, who, now)?, "resolve"),
        };
        audit(
            db,
            who,
            Record::new("alert", action, id).after(json!(done.alert)),
        );
        Ok(done)
    })?;
    Ok(match change {
        AlertChange::Acknowledge => inbound::acknowledged_text(&done.alert, who),
        AlertChange::Resolve => inbound::resolved_text(&done.alert, who),
    })
}

async fn kill(flag: &str, who: &str) -> Result<String, Rejection> {
    flags::kill(flag, who).await?;
    Ok(inbound::killed_text(flag, who))
}

/// A button click: acknowledge, resolve or kill switch. Answers at once and
/// posts the outcome to the payload's `response_url` afterwards.
pub async fn actions(req: &Request) -> Result<Reply, Rejection> {
    let action = slack::parse_interaction(verified(req)?)?;
    let who = inbound::slack_actor(&action.user_id, action.user_name.as_deref());
    let text = match &action.kind {
        ActionKind::Acknowledge { alert_id } => {
            change_alert(alert_id, &who, AlertChange::Acknowledge)?
        }
        ActionKind::Resolve { alert_id } => change_alert(alert_id, &who, AlertChange::Resolve)?,
        ActionKind::KillSwitch { flag_key } => kill(flag_key, &who).await?,
    };
    let mut reply = Reply::json(200, &json!({ "ok": true, "text": text }));
    reply.follow_up = action.response_url.map(|url| FollowUp {
        url,
        message: inbound::follow_up(&text),
    });
    Ok(reply)
}

/// A slash command; answers with an ephemeral message.
pub async fn command(req: &Request) -> Result<Reply, Rejection> {
    let cmd = match slack::parse_slash_command(verified(req)?) {
        Ok(cmd) => cmd,
        Err(PayloadError::UnknownCommand(text)) => {
            return Ok(Reply::json(
                200,
                &inbound::ephemeral(&inbound::usage(&text)),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let who = inbound::slack_actor(&cmd.user_id, cmd.user_name.as_deref());
    let text = match cmd.command {
        Command::Status => db::with(|db| {
            let firing = store::active_alerts(db)?;
            let emergency = store::emergency_override(db)?;
            Ok(inbound::status_text(
                &firing,
                emergency.as_ref(),
                platform::now_ms(),
            ))
        })?,
        Command::Ack { alert_id } => change_alert(&alert_id, &who, AlertChange::Acknowledge)?,
        Command::Resolve { alert_id } => change_alert(&alert_id, &who, AlertChange::Resolve)?,
        Command::Kill { flag_key } => kill(&flag_key, &who).await?,
        Command::Emergency { on } => {
            let mode = if on {
                EmergencyOverride::On
            } else {
                EmergencyOverride::Off
            };
            // As `PUT /admin/emergency`: the override and its last change
            // in one transaction, then the audit entry.
            let conn = platform::open_db().map_err(|e| Rejection::Internal(format!("{e:#}")))?;
            let db = &mut SpinSql(&conn);
            admin::set_emergency(db, Some(mode), &who, platform::now_ms())
                .map_err(|e| Rejection::Internal(e.to_string()))?;
            let label = if on { "on" } else { "off" };
            audit(
                db,
                &who,
                Record::new("emergency", "set", "emergency").after(json!({ "mode": label })),
            );
            inbound::emergency_text(mode, &who)
        }
    };
    Ok(Reply::json(200, &inbound::ephemeral(&text)))
}
