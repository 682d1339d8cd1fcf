//! Video platforms in the `probes` and `discovery` scans, pure over an
//! injected SQL executor and HTTP sender.
//!
//! | platform | probe and model list |
//! |---|---|
//! | `openai` | `GET {base}/models`: the `sora…` ids are its video models |
//! | `runway` | `GET {base}/organization`: the keys of `tier.models` |
//! | `replicate` | `GET {base}/account` (a probe only: no model list) |
//!
//! A probe is one such call per configured platform ([`probe_all`]),
//! stored by the scan under [`VIDEO_PROBES_KEY`]; the health folds it in
//! ([`super::health::with_probes`]): a platform down at its last probe is
//! unhealthy. Discovery ([`discover`]) diffs each list against
//! `catalog/videos.json` and the models found before, records the new ones
//! in `video_models` (migration 22) with no price — counted by the
//! `models_without_price` alert metric — and queues one message naming
//! them. A discovered model is not selected until an operator adds it,
//! with its price, to the catalog.

use std::collections::BTreeSet;

use serde_json::Value;

use super::catalog;
use super::platforms::{CallError, Platform, PlatformKind, VideoSettings};
use super::service::VideoNet;
use crate::gateway::providers::{DiscoveredModel, HttpRequestSpec};
use crate::observe::scan_store::{Discovery, DiscoveryFailure, finish_discovery};
use crate::observe::scans::{CatalogModel, ProbeResult, diff_models};
use crate::observe::store::StoreError;
use crate::storage::{Row, SqlExecutor, SqlValue, in_transaction, run};

/// Key-value key of the last probe of every configured video platform (a
/// JSON array of [`ProbeResult`], `provider` = platform name).
pub const VIDEO_PROBES_KEY: &str = "dol:scans:video-probes";

/// The provider name a video platform's discovery is reported under.
pub fn label(kind: PlatformKind) -> String {
    format!("video:{}", kind.name())
}

/// The cheap call that probes `p` (and lists its models where it can).
pub fn probe_request(p: &Platform) -> HttpRequestSpec {
    let path = match p.kind {
        PlatformKind::OpenAi => "/models",
        PlatformKind::Runway => "/organization",
        PlatformKind::Replicate => "/account",
    };
    let mut headers = vec![("authorization".to_owned(), format!("Bearer {}", p.api_key))];
    if p.kind == PlatformKind::Runway {
        headers.push((
            "x-runway-version".to_owned(),
            super::platforms::RUNWAY_VERSION.to_owned(),
        ));
    }
    HttpRequestSpec {
        method: "GET".to_owned(),
        url: format!("{}{path}", p.base_url),
        headers,
        body: Vec::new(),
    }
}

/// Whether `id`, from OpenAI's `GET /models`, is one of its video models
/// (`sora-2`, `sora-2-pro`): the video discovery takes these, and the chat
/// discovery leaves them out (the same key lists both).
pub fn is_openai_video_model(id: &str) -> bool {
    id.starts_with("sora")
}

/// The video models in a probe's answer; `None` when the platform has no
/// list (Replicate).
pub fn parse_listing(
    kind: PlatformKind,
    status: u16,
    body: &[u8],
) -> Result<Option<Vec<String>>, CallError> {
    if !(200..300).contains(&status) {
        return Err(CallError {
            transient: true,
            message: format!("HTTP {status}"),
        });
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| CallError {
        transient: false,
        message: "malformed answer: not JSON".to_owned(),
    })?;
    let ids = match kind {
        PlatformKind::OpenAi => v["data"].as_array().map(|d| {
            d.iter()
                .filter_map(|m| m["id"].as_str())
                .filter(|id| is_openai_video_model(id))
                .map(str::to_owned)
                .collect()
        }),
        PlatformKind::Runway => v["tier"]["models"]
            .as_object()
            .map(|m| m.keys().cloned().collect()),
        PlatformKind::Replicate => return Ok(None),
    };
    ids.map(Some).ok_or(CallError {
        transient: false,
        message: "malformed answer: no model list".to_owned(),
    })
}

/// Probes `p` at `at_ms`; `clock` (Unix ms) times the round trip.
pub fn probe<N: VideoNet>(
    net: &mut N,
    p: &Platform,
    at_ms: i64,
    clock: &mut impl FnMut() -> i64,
) -> (ProbeResult, Option<Vec<String>>) {
    let started = clock();
    let answer = net.send(&probe_request(p));
    let latency_ms = u64::try_from(clock().saturating_sub(started)).unwrap_or(0);
    let status = answer.as_ref().ok().map(|(s, _)| *s);
    let listed = answer
        .map_err(|e| e.replace(&p.api_key, "[redacted]"))
        .and_then(|(s, body)| parse_listing(p.kind, s, &body).map_err(|e| e.message));
    let result = ProbeResult {
        provider: p.kind.name().to_owned(),
        up: listed.is_ok(),
        status,
        latency_ms,
        error: listed.as_ref().err().cloned(),
        at_ms,
    };
    (result, listed.ok().flatten())
}

/// Probes every configured platform.
pub fn probe_all<N: VideoNet>(
    net: &mut N,
    settings: &VideoSettings,
    at_ms: i64,
    clock: &mut impl FnMut() -> i64,
) -> Vec<ProbeResult> {
    settings
        .platforms
        .iter()
        .map(|p| probe(net, p, at_ms, clock).0)
        .collect()
}

/// The video models DOL knows as discovery compares them: the shipped
/// catalog and the ones found before.
fn known(db: &mut impl SqlExecutor) -> Result<Vec<CatalogModel>, StoreError> {
    let entry = |platform: &str, model: &str, priced: bool| CatalogModel {
        provider: format!("video:{platform}"),
        model: model.to_owned(),
        context_window: 0,
        capabilities: BTreeSet::new(),
        input_price: priced.then_some(0),
        output_price: priced.then_some(0),
        source: "seed".to_owned(),
    };
    let mut out: Vec<CatalogModel> = catalog::shipped()
        .iter()
        .map(|m| entry(&m.platform, &m.model, m.usd_per_second.is_some()))
        .collect();
    let rows = run(db, "SELECT platform, model FROM video_models", &[]).map_err(sql_error)?;
    for values in &rows {
        let r = Row::new("video_models", values);
        out.push(entry(
            r.text(0, "platform").map_err(column)?,
            r.text(1, "model").map_err(column)?,
            false,
        ));
    }
    Ok(out)
}

fn sql_error(e: crate::storage::StatementError) -> StoreError {
    StoreError::Sql {
        context: "video discovery",
        message: e.to_string(),
    }
}

fn column(e: crate::storage::ColumnError) -> StoreError {
    StoreError::Sql {
        context: "video discovery",
        message: format!("{e:?}"),
    }
}

/// Video models found by discovery and not (yet) in the shipped catalog:
/// they have no price.
pub fn unpriced_discovered(db: &mut impl SqlExecutor) -> Result<u64, StoreError> {
    let rows = run(db, "SELECT COUNT(*) FROM video_models", &[]).map_err(sql_error)?;
    match rows.first() {
        Some(values) => Row::new("video_models", values)
            .uint(0, "COUNT(*)")
            .map_err(column),
        None => Ok(0),
    }
}

/// The `discovery` scan's video part at `now_ms`: lists each configured
/// platform's models, records the new ones and queues a message.
pub fn discover<S: SqlExecutor, N: VideoNet>(
    db: &mut S,
    net: &mut N,
    settings: &VideoSettings,
    now_ms: i64,
) -> Result<Discovery, StoreError> {
    let known = known(db)?;
    let mut providers = Vec::new();
    let mut failures = Vec::new();
    let mut clock = || now_ms;
    for p in &settings.platforms {
        let (probe, listed) = probe(net, p, now_ms, &mut clock);
        let provider = label(p.kind);
        if let Some(e) = probe.error {
            failures.push(DiscoveryFailure { provider, error: e });
            continue;
        }
        let Some(ids) = listed else { continue };
        let listed: Vec<DiscoveredModel> = ids.into_iter().map(DiscoveredModel::new).collect();
        let diff = diff_models(&provider, &known, &listed);
        let platform = p.kind.name();
        in_transaction(db, |tx| {
            for m in &diff.added {
                run(
                    tx,
                    "INSERT INTO video_models (platform, model, found_at) VALUES (?, ?, ?) \
                     ON CONFLICT (platform, model) DO NOTHING",
                    &[
                        SqlValue::Text(platform.to_owned()),
                        SqlValue::Text(m.id.clone()),
                        SqlValue::Integer(now_ms),
                    ],
                )?;
            }
            Ok::<(), crate::storage::StatementError>(())
        })
        .map_err(sql_error)?;
        providers.push(diff);
    }
    finish_discovery(db, providers, failures, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_db::db;

    struct Net(Vec<(u16, String)>);

    impl VideoNet for Net {
        fn send(&mut self, spec: &HttpRequestSpec) -> Result<(u16, Vec<u8>), String> {
            let answer = if spec.url.ends_with("/models") {
                self.0[0].clone()
            } else if spec.url.ends_with("/organization") {
                self.0[1].clone()
            } else {
                self.0[2].clone()
            };
            Ok((answer.0, answer.1.into_bytes()))
        }
    }

    fn settings() -> VideoSettings {
        VideoSettings::from_variables(|n| match n {
            "openai_api_key" | "runway_api_key" | "replicate_api_token" => "k".to_owned(),
            _ => String::new(),
        })
        .unwrap()
    }

    fn net(runway_status: u16) -> Net {
        Net(vec![
            (
                200,
                r#"{"data":[{"id":"sora-2"},{"id":"sora-2-pro"},{"id":"sora-3"},{"id":"gpt-4o"}]}"#
                    .to_owned(),
            ),
            (
                runway_status,
                r#"{"tier":{"models":{"veo3.1_fast":{},"gen5":{}}}}"#.to_owned(),
            ),
            (200, r#"{"username":"x"}"#.to_owned()),
        ])
    }

    #[test]
    fn new_video_models_are_recorded_unpriced_and_reported_once() {
        let mut db = db();
        let s = settings();
        let found = discover(&mut db, &mut net(200), &s, 1_000).unwrap();
        let added: Vec<String> = found
            .providers
            .iter()
            .flat_map(|d| {
                d.added
                    .iter()
                    .map(move |m| format!("{}/{}", d.provider, m.id))
            })
            .collect();
        assert_eq!(added, ["video:openai/sora-3", "video:runway/gen5"]);
        assert!(found.queued.is_some());
        assert_eq!(unpriced_discovered(&mut db).unwrap(), 2);
        // Found before: nothing new, no message.
        let again = discover(&mut db, &mut net(200), &s, 2_000).unwrap();
        assert!(again.providers.iter().all(|d| d.added.is_empty()));
        assert_eq!(again.queued, None);
        // A platform that does not answer is a failure, named.
        let down = discover(&mut db, &mut net(503), &s, 3_000).unwrap();
        assert_eq!(down.failures[0].provider, "video:runway");
    }

    #[test]
    fn probes_name_each_platform_up_or_down() {
        let s = settings();
        let mut clock = || 5;
        let probes = probe_all(&mut net(503), &s, 7, &mut clock);
        let state: Vec<(&str, bool)> = probes.iter().map(|p| (p.provider.as_str(), p.up)).collect();
        assert_eq!(
            state,
            [("openai", true), ("runway", false), ("replicate", true)]
        );
        assert_eq!(probes[1].error.as_deref(), Some("HTTP 503"));
        assert!(
            !parse_listing(PlatformKind::OpenAi, 200, b"{}")
                .unwrap_err()
                .transient
        );
    }
}
