//! Slack request verification, Block Kit alert messages, interactivity and
//! slash-command parsing, and generic HMAC-SHA256 webhook signing.
//!
//! Slack's v0 scheme: the `X-Slack-Signature` header is `v0=` followed by
//! the lowercase hex HMAC-SHA256, keyed with the signing secret, of
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`. Requests whose timestamp is
//! more than [`MAX_SKEW_SECS`] from now are refused (replay protection).

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use thiserror::Error;

use crate::auth::constant_time_eq;

/// Largest accepted distance between a request's timestamp and now, seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// `action_id` of the Acknowledge button.
pub const ACTION_ACK: &str = "dol_ack";
/// `action_id` of the Resolve button.
pub const ACTION_RESOLVE: &str = "dol_resolve";
/// `action_id` of the Kill-switch button.
pub const ACTION_KILL: &str = "dol_kill_switch";

/// Header carrying the generic webhook signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-DOL-Signature";
/// Header carrying the generic webhook timestamp (Unix seconds).
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "X-DOL-Timestamp";

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// No timestamp header.
    #[error("missing timestamp")]
    MissingTimestamp,
    /// The timestamp is not an integer.
    #[error("timestamp is not an integer")]
    BadTimestamp,
    /// The timestamp is too far from now.
    #[error("timestamp is {skew_secs} s away from now (limit {MAX_SKEW_SECS} s)")]
    Stale {
        /// Absolute distance from now, seconds.
        skew_secs: i64,
    },
    /// No signature header.
    #[error("missing signature")]
    MissingSignature,
    /// The signature lacks its scheme prefix or is not hex.
    #[error("malformed signature")]
    BadSignatureFormat,
    /// The signature does not match the body.
    #[error("signature mismatch")]
    Mismatch,
    /// The secret is empty (verification is never open).
    #[error("no signing secret configured")]
    NoSecret,
}

/// Lowercase hex HMAC-SHA256 of `parts` concatenated.
pub fn hmac_sha256_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    // `new_from_slice` accepts keys of any length for HMAC, so the error
    // arm cannot happen; an empty tag would simply never match.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    crate::hex::encode(&mac.finalize().into_bytes())
}

fn check_timestamp(timestamp: Option<&str>, now_secs: i64) -> Result<i64, VerifyError> {
    let ts = timestamp
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(VerifyError::MissingTimestamp)?;
    let ts: i64 = ts.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let skew = now_secs.saturating_sub(ts).saturating_abs();
    if skew > MAX_SKEW_SECS {
        return Err(VerifyError::Stale { skew_secs: skew });
    }
    Ok(ts)
}

/// Slack's `X-Slack-Signature` for a request.
pub fn slack_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = hmac_sha256_hex(
        secret.as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    format!("v0={tag}")
}

/// Verifies a Slack request from its `X-Slack-Request-Timestamp` and
/// `X-Slack-Signature` headers and raw body, at `now_secs` (Unix seconds).
pub fn verify_slack(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    check_timestamp(timestamp, now_secs)?;
    let ts = timestamp.map(str::trim).unwrap_or_default();
    let sig = signature
        .map(str::trim)
        .ok_or(VerifyError::MissingSignature)?;
    let hexpart = sig
        .strip_prefix("v0=")
        .ok_or(VerifyError::BadSignatureFormat)?;
    if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VerifyError::BadSignatureFormat);
    }
    let expected = slack_signature(secret, ts, body);
    if constant_time_eq(sig.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Headers for a signed outbound generic webhook: `X-DOL-Timestamp` and
/// `X-DOL-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`.
pub fn sign_webhook(secret: &str, now_secs: i64, body: &[u8]) -> [(&'static str, String); 2] {
    let ts = now_secs.to_string();
    let tag = hmac_sha256_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body]);
    [
        (WEBHOOK_TIMESTAMP_HEADER, ts),
        (WEBHOOK_SIGNATURE_HEADER, format!("sha256={tag}")),
    ]
}

/// Verifies an inbound generic webhook signed as by [`sign_webhook`].
pub fn verify_webhook(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let ts = check_timestamp(timestamp, now_secs)?;
    let sig = signature
        .map(str::trim)
        .ok_or(VerifyError::MissingSignature)?;
    let hexpart = sig
        .strip_prefix("sha256=")
        .ok_or(VerifyError::BadSignatureFormat)?;
    if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VerifyError::BadSignatureFormat);
    }
    let ts = ts.to_string();
    let expected = hmac_sha256_hex(secret.as_bytes(), &[ts.as_bytes(), b".", body]);
    if constant_time_eq(hexpart.to_ascii_lowercase().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// What the Slack message shows about an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    /// Alert id (the fingerprint), carried by Acknowledge / Resolve.
    pub id: String,
    /// Rule or alert name.
    pub name: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// `firing`, `resolved`, …
    pub status: String,
    /// One-line description.
    pub summary: String,
    /// The flag a kill switch would turn off, if any.
    pub kill_flag: Option<String>,
    /// Label pairs to show.
    pub labels: Vec<(String, String)>,
}

/// Escapes Slack mrkdwn control characters (`&`, `<`, `>`).
pub fn mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message (Block Kit) for an alert, with
/// Acknowledge, Resolve and (when `kill_flag` is set) Kill-switch buttons.
pub fn alert_message(a: &AlertView) -> Value {
    let emoji = match a.severity.as_str() {
        "critical" => ":red_circle:",
        "warning" => ":large_orange_circle:",
        _ => ":large_blue_circle:",
    };
    let title = format!(
        "{} [{}] {}",
        a.severity.to_uppercase(),
        a.status.to_uppercase(),
        a.name
    );
    let labels = a
        .labels
        .iter()
        .map(|(k, v)| format!("`{}={}`", mrkdwn(k), mrkdwn(v)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut buttons = vec![
        json!({"type": "button", "action_id": ACTION_ACK, "value": a.id,
               "text": {"type": "plain_text", "text": "Acknowledge"}}),
        json!({"type": "button", "action_id": ACTION_RESOLVE, "value": a.id, "style": "primary",
               "text": {"type": "plain_text", "text": "Resolve"}}),
    ];
    if let Some(flag) = &a.kill_flag {
        buttons.push(json!({
            "type": "button", "action_id": ACTION_KILL, "value": flag, "style": "danger",
            "text": {"type": "plain_text", "text": "Kill switch"},
            "confirm": {
                "title": {"type": "plain_text", "text": "Turn the flag off?"},
                "text": {"type": "mrkdwn", "text": format!("This disables `{}` for everyone.", mrkdwn(flag))},
                "confirm": {"type": "plain_text", "text": "Kill it"},
                "deny": {"type": "plain_text", "text": "Cancel"}
            }
        }));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": {"type": "mrkdwn",
               "text": format!("{emoji} {}", mrkdwn(&a.summary))}}),
    ];
    if !labels.is_empty() {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": labels}]}));
    }
    blocks.push(
        json!({"type": "actions", "block_id": format!("dol_alert:{}", a.id), "elements": buttons}),
    );
    json!({"text": format!("{title}: {}", a.summary), "blocks": blocks})
}

/// Why an interactivity or slash-command body was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PayloadError {
    /// No `payload` form field.
    #[error("missing form field `payload`")]
    MissingPayload,
    /// The payload is not valid JSON.
    #[error("payload is not JSON: {0}")]
    Json(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// The action is not one of DOL's buttons.
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    /// The slash command text is not understood.
    #[error(
        "unknown command `{0}`; try `status`, `ack <id>`, `resolve <id>`, `kill <flag>`, `emergency on|off`"
    )]
    UnknownCommand(String),
}

/// What a button click asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// Acknowledge an alert.
    Acknowledge {
        /// The alert id.
        alert_id: String,
    },
    /// Resolve an alert.
    Resolve {
        /// The alert id.
        alert_id: String,
    },
    /// Turn a flag off.
    KillSwitch {
        /// The flag key.
        flag_key: String,
    },
}

/// A parsed Slack button click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackAction {
    /// What to do.
    pub kind: ActionKind,
    /// Slack user id of the clicker.
    pub user_id: String,
    /// Slack user name, if given.
    pub user_name: Option<String>,
    /// Where to post the follow-up.
    pub response_url: Option<String>,
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a
/// space, `%XX` a byte; malformed escapes are kept literally).
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(crate::hex::digit);
                let lo = b.get(i + 2).copied().and_then(crate::hex::digit);
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push(h << 4 | l);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a form body into decoded `(name, value)` pairs.
pub fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Parses a Slack interactivity request body (form field `payload` holding
/// a `block_actions` JSON) into the first DOL action in it.
pub fn parse_interaction(body: &str) -> Result<SlackAction, PayloadError> {
    let form = parse_form(body);
    let raw = field(&form, "payload").ok_or(PayloadError::MissingPayload)?;
    let v: Value = serde_json::from_str(raw).map_err(|e| PayloadError::Json(e.to_string()))?;
    let user = v.get("user").ok_or(PayloadError::MissingField("user"))?;
    let user_id = user
        .get("id")
        .and_then(Value::as_str)
        .ok_or(PayloadError::MissingField("user.id"))?
        .to_owned();
    let user_name = user
        .get("username")
        .or_else(|| user.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let action = v
        .get("actions")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .ok_or(PayloadError::MissingField("actions"))?;
    let action_id = action
        .get("action_id")
        .and_then(Value::as_str)
        .ok_or(PayloadError::MissingField("actions[0].action_id"))?;
    let value = action
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(PayloadError::MissingField("actions[0].value"))?
        .to_owned();
    let kind = match action_id {
        ACTION_ACK => ActionKind::Acknowledge { alert_id: value },
        ACTION_RESOLVE => ActionKind::Resolve { alert_id: value },
        ACTION_KILL => ActionKind::KillSwitch { flag_key: value },
        other => return Err(PayloadError::UnknownAction(other.to_owned())),
    };
    Ok(SlackAction {
        kind,
        user_id,
        user_name,
        response_url: v
            .get("response_url")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// A DOL slash command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// `status`: health and active alerts.
    Status,
    /// `ack <id>`.
    Ack {
        /// Alert id.
        alert_id: String,
    },
    /// `resolve <id>`.
    Resolve {
        /// Alert id.
        alert_id: String,
    },
    /// `kill <flag>`.
    Kill {
        /// Flag key.
        flag_key: String,
    },
    /// `emergency on|off`.
    Emergency {
        /// True for `on`.
        on: bool,
    },
}

/// A parsed slash-command request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashCommand {
    /// The command.
    pub command: Command,
    /// Slack user id.
    pub user_id: String,
    /// Slack user name, if given.
    pub user_name: Option<String>,
    /// Where to post the follow-up.
    pub response_url: Option<String>,
}

/// Parses a slash-command form body (`text`, `user_id`, `user_name`,
/// `response_url`).
pub fn parse_slash_command(body: &str) -> Result<SlashCommand, PayloadError> {
    let form = parse_form(body);
    let user_id = field(&form, "user_id")
        .ok_or(PayloadError::MissingField("user_id"))?
        .to_owned();
    let text = field(&form, "text").unwrap_or_default().trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    let command = match words.as_slice() {
        [] | ["status"] => Command::Status,
        ["ack", id] => Command::Ack {
            alert_id: (*id).to_owned(),
        },
        ["resolve", id] => Command::Resolve {
            alert_id: (*id).to_owned(),
        },
        ["kill", flag] => Command::Kill {
            flag_key: (*flag).to_owned(),
        },
        ["emergency", "on"] => Command::Emergency { on: true },
        ["emergency", "off"] => Command::Emergency { on: false },
        _ => return Err(PayloadError::UnknownCommand(text.to_owned())),
    };
    Ok(SlashCommand {
        command,
        user_id,
        user_name: field(&form, "user_name").map(str::to_owned),
        response_url: field(&form, "response_url").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's documented example ("Verifying requests from Slack").
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: i64 = 1_531_420_618;

    #[test]
    fn slack_documented_example_signs_and_verifies() {
        assert_eq!(slack_signature(SECRET, TS, BODY.as_bytes()), SIG);
        assert_eq!(
            verify_slack(SECRET, Some(TS), Some(SIG), BODY.as_bytes(), NOW),
            Ok(())
        );
        let upper = format!("v0={}", SIG[3..].to_uppercase());
        assert_eq!(
            verify_slack(SECRET, Some(TS), Some(&upper), BODY.as_bytes(), NOW + 300),
            Ok(())
        );
    }

    #[test]
    fn slack_refusals() {
        let b = BODY.as_bytes();
        let v = |ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| {
            verify_slack(SECRET, ts, sig, body, now)
        };
        assert_eq!(
            v(Some(TS), Some(SIG), b, NOW + 301),
            Err(VerifyError::Stale { skew_secs: 301 })
        );
        assert_eq!(
            v(Some(TS), Some(SIG), b, NOW - 301),
            Err(VerifyError::Stale { skew_secs: 301 })
        );
        assert_eq!(
            v(None, Some(SIG), b, NOW),
            Err(VerifyError::MissingTimestamp)
        );
        assert_eq!(
            v(Some("x"), Some(SIG), b, NOW),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            v(Some(TS), None, b, NOW),
            Err(VerifyError::MissingSignature)
        );
        assert_eq!(
            v(Some(TS), Some(&SIG[3..]), b, NOW),
            Err(VerifyError::BadSignatureFormat)
        );
        assert_eq!(
            v(Some(TS), Some("v0=zz"), b, NOW),
            Err(VerifyError::BadSignatureFormat)
        );
        let tampered = BODY.replace("roadrunner", "coyote");
        assert_eq!(
            v(Some(TS), Some(SIG), tampered.as_bytes(), NOW),
            Err(VerifyError::Mismatch)
        );
        // A timestamp changed to a fresh one invalidates the signature.
        assert_eq!(
            v(Some("1531420619"), Some(SIG), b, NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_slack("", Some(TS), Some(SIG), b, NOW),
            Err(VerifyError::NoSecret)
        );
    }

    #[test]
    fn generic_webhook_round_trip() {
        let body = br#"{"alert":"x"}"#;
        let [(th, ts), (sh, sig)] = sign_webhook("s3cret", 1_700_000_000, body);
        assert_eq!(
            (th, sh),
            (WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER)
        );
        assert_eq!(ts, "1700000000");
        assert!(sig.starts_with("sha256=") && sig.len() == 71);
        assert_eq!(
            verify_webhook("s3cret", Some(&ts), Some(&sig), body, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            verify_webhook("other", Some(&ts), Some(&sig), body, 1_700_000_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_webhook("s3cret", Some(&ts), Some(&sig), b"{}", 1_700_000_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_webhook("s3cret", Some(&ts), Some(&sig), body, 1_700_000_400),
            Err(VerifyError::Stale { skew_secs: 400 })
        );
        assert_eq!(
            verify_webhook("s3cret", Some(&ts), Some(&sig[7..]), body, 1_700_000_000),
            Err(VerifyError::BadSignatureFormat)
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn view(kill: Option<&str>) -> AlertView {
        AlertView {
            id: "fp123".into(),
            name: "HighErrorRate".into(),
            severity: "critical".into(),
            status: "firing".into(),
            summary: "error rate 12% > 10% for 5m".into(),
            kill_flag: kill.map(str::to_owned),
            labels: vec![("provider".into(), "openai".into())],
        }
    }

    #[test]
    fn block_kit_message_has_buttons_carrying_ids() {
        let m = alert_message(&view(Some("new-router")));
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "CRITICAL [FIRING] HighErrorRate");
        assert_eq!(blocks[2]["elements"][0]["text"], "`provider=openai`");
        let actions = blocks.last().unwrap();
        assert_eq!(actions["type"], "actions");
        let els = actions["elements"].as_array().unwrap();
        assert_eq!(els.len(), 3);
        assert_eq!(
            (els[0]["action_id"].as_str(), els[0]["value"].as_str()),
            (Some(ACTION_ACK), Some("fp123"))
        );
        assert_eq!(
            (els[1]["action_id"].as_str(), els[1]["value"].as_str()),
            (Some(ACTION_RESOLVE), Some("fp123"))
        );
        assert_eq!(
            (els[2]["action_id"].as_str(), els[2]["value"].as_str()),
            (Some(ACTION_KILL), Some("new-router"))
        );
        assert_eq!(els[2]["style"], "danger");
        assert!(m["text"].as_str().unwrap().contains("HighErrorRate"));
        let m = alert_message(&view(None));
        assert_eq!(
            m["blocks"].as_array().unwrap().last().unwrap()["elements"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    fn form_encode(s: &str) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
                out.push(char::from(b));
            } else if b == b' ' {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[test]
    fn interaction_payload_parses_each_button() {
        for (action_id, value, want) in [
            (
                ACTION_ACK,
                "fp1",
                ActionKind::Acknowledge {
                    alert_id: "fp1".into(),
                },
            ),
            (
                ACTION_RESOLVE,
                "fp2",
                ActionKind::Resolve {
                    alert_id: "fp2".into(),
                },
            ),
            (
                ACTION_KILL,
                "flag-a",
                ActionKind::KillSwitch {
                    flag_key: "flag-a".into(),
                },
            ),
        ] {
            let payload = json!({
                "type": "block_actions",
                "user": {"id": "U123", "username": "ana", "team_id": "T1"},
                "response_url": "https://hooks.slack.com/actions/T1/1/abc",
                "trigger_id": "1.2.3",
                "actions": [{"type": "button", "action_id": action_id, "block_id": "b",
                             "value": value, "action_ts": "1700000000.1"}]
            });
            let body = format!("payload={}", form_encode(&payload.to_string()));
            let a = parse_interaction(&body).unwrap();
            assert_eq!(a.kind, want);
            assert_eq!(a.user_id, "U123");
            assert_eq!(a.user_name.as_deref(), Some("ana"));
            assert_eq!(
                a.response_url.as_deref(),
                Some("https://hooks.slack.com/actions/T1/1/abc")
            );
        }
    }

    #[test]
    fn interaction_errors() {
        assert_eq!(parse_interaction("x=1"), Err(PayloadError::MissingPayload));
        assert!(matches!(
            parse_interaction("payload=%7B"),
            Err(PayloadError::Json(_))
        ));
        assert_eq!(
            parse_interaction("payload=%7B%7D"),
            Err(PayloadError::MissingField("user"))
        );
        let p = json!({"user": {"id": "U"}, "actions": [{"action_id": "other", "value": "v"}]});
        assert_eq!(
            parse_interaction(&format!("payload={}", form_encode(&p.to_string()))),
            Err(PayloadError::UnknownAction("other".into()))
        );
        let p = json!({"user": {"id": "U"}, "actions": [{"action_id": ACTION_ACK}]});
        assert_eq!(
            parse_interaction(&format!("payload={}", form_encode(&p.to_string()))),
            Err(PayloadError::MissingField("actions[0].value"))
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a+b%20c%2Fd"), "a b c/d");
        assert_eq!(form_decode("100%"), "100%");
        assert_eq!(form_decode("%zz"), "%zz");
        assert_eq!(form_decode("%C3%A9"), "é");
        let f = parse_form(BODY);
        assert_eq!(field(&f, "command"), Some("/webhook-collect"));
        assert_eq!(field(&f, "text"), Some(""));
    }

    #[test]
    fn slash_commands() {
        let cmd = |text: &str| {
            parse_slash_command(&format!(
                "user_id=U1&user_name=ana&text={}&response_url=https%3A%2F%2Fh",
                form_encode(text)
            ))
            .map(|c| c.command)
        };
        assert_eq!(cmd(""), Ok(Command::Status));
        assert_eq!(cmd("status"), Ok(Command::Status));
        assert_eq!(
            cmd("ack fp1"),
            Ok(Command::Ack {
                alert_id: "fp1".into()
            })
        );
        assert_eq!(
            cmd(" resolve  fp1 "),
            Ok(Command::Resolve {
                alert_id: "fp1".into()
            })
        );
        assert_eq!(
            cmd("kill my-flag"),
            Ok(Command::Kill {
                flag_key: "my-flag".into()
            })
        );
        assert_eq!(cmd("emergency on"), Ok(Command::Emergency { on: true }));
        assert_eq!(cmd("emergency off"), Ok(Command::Emergency { on: false }));
        assert_eq!(
            cmd("emergency maybe"),
            Err(PayloadError::UnknownCommand("emergency maybe".into()))
        );
        let c = parse_slash_command(&format!(
            "user_id=U1&text=status&response_url={}",
            form_encode("https://h/x")
        ))
        .unwrap();
        assert_eq!(c.response_url.as_deref(), Some("https://h/x"));
        assert_eq!(
            parse_slash_command("text=status"),
            Err(PayloadError::MissingField("user_id"))
        );
    }
}
