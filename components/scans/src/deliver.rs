//! Delivery of due outbox messages: alert notifications and scan messages
//! to the Slack incoming webhook (Block Kit) and the generic JSON webhook
//! (HMAC-SHA256 signed), Slack `response_url` follow-ups to their URL.
//! A failure marks the message for a retry with backoff, so nothing is lost
//! while a receiver is down; delivery is at least once (a generic webhook
//! carries the message's `Idempotency-Key` to dedupe on). Each message is
//! claimed before it is sent (`store::claim_message`), so overlapping runs
//! on any replica never send it together.

use dol_core::observe::alerts::Notification;
use dol_core::observe::scans::{
    DELIVERY_ID_HEADER, KIND_SCAN, ScanMessage, delivery_id, notification_slack_message,
    scan_slack_message, webhook_body,
};
use dol_core::observe::slack::sign_webhook;
use dol_core::observe::store::{self, KIND_ALERT, KIND_SLACK_RESPONSE, OutboxMessage};
use dol_spin_platform::Db;
use serde_json::{Value, json};

use crate::config::{Channels, channels};
use crate::net;
use dol_spin_platform::SpinSql;

/// Most messages sent per scan.
const BATCH: u32 = 50;

/// Sends `m` to every configured channel. `Ok(false)`: no channel is
/// configured for it (it stays queued).
fn send(m: &OutboxMessage, ch: &Channels, now_secs: i64) -> Result<bool, String> {
    let slack = match m.kind.as_str() {
        KIND_SLACK_RESPONSE => {
            let body = m.payload.to_string();
            return net::post_json(&m.target, body.as_bytes(), &[]).map(|()| true);
        }
        KIND_ALERT => {
            let n: Notification = serde_json::from_value(m.payload.clone())
                .map_err(|e| format!("unreadable alert payload: {e}"))?;
            notification_slack_message(&n)
        }
        KIND_SCAN => {
            let s: ScanMessage = serde_json::from_value(m.payload.clone())
                .map_err(|e| format!("unreadable scan payload: {e}"))?;
            scan_slack_message(&s)
        }
        other => return Err(format!("unknown outbox kind `{other}`")),
    };
    let mut sent = false;
    if !ch.slack_webhook_url.is_empty() {
        let body = slack.to_string();
        net::post_json(&ch.slack_webhook_url, body.as_bytes(), &[])
            .map_err(|e| format!("slack: {e}"))?;
        sent = true;
    }
    if !ch.notify_webhook_url.is_empty() {
        let body = webhook_body(&m.kind, m.id, &m.payload).to_string();
        let mut headers = vec![(DELIVERY_ID_HEADER, delivery_id(m.id))];
        if !ch.webhook_secret.is_empty() {
            headers.extend(sign_webhook(&ch.webhook_secret, now_secs, body.as_bytes()));
        }
        net::post_json(&ch.notify_webhook_url, body.as_bytes(), &headers)
            .map_err(|e| format!("webhook: {e}"))?;
        sent = true;
    }
    Ok(sent)
}

/// Delivers the messages due at `now_ms`; returns counts.
pub fn due(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let ch = channels();
    let mut sql = SpinSql(db);
    let (mut delivered, mut failed, mut waiting) = (0, 0, 0);
    for m in store::due_messages(&mut sql, now_ms, BATCH)? {
        // Another run (the other scan, another replica) may be sending it.
        if !store::claim_message(&mut sql, m.id, now_ms)? {
            continue;
        }
        match send(&m, &ch, now_ms / 1_000) {
            Ok(true) => {
                store::mark_delivered(&mut sql, m.id, now_ms)?;
                delivered += 1;
            }
            Ok(false) => {
                store::unclaim_message(&mut sql, m.id, m.next_attempt_at_ms)?;
                waiting += 1;
            }
            Err(e) => {
                eprintln!("scans: delivering outbox message {} failed: {e}", m.id);
                store::mark_failed(&mut sql, m.id, &e, now_ms)?;
                failed += 1;
            }
        }
    }
    Ok(json!({ "delivered": delivered, "failed": failed, "unconfigured": waiting }))
}
