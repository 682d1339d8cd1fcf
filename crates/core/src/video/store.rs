//! The SQL of video jobs (`video_jobs`, `video_platform_stats`, migration
//! 11; a job's `input_reference` image in `video_inputs`, migration 22,
//! until it ends). A job's state is written only while it is not terminal
//! ([`write`] checks inside one immediate transaction), so a late poll or a
//! duplicated callback can never undo an ending or charge twice.

use serde_json::Value;

use super::health::JobRow;
use super::input::InputReference;
use super::select::{Observed, StatsMap};
use super::webhook::base64_decode;
use super::{Choice, Job, Status};
use crate::gateway::embeddings::base64;
use crate::storage::{
    ColumnError, Row, SqlExecutor, SqlValue, StatementError, in_transaction, run,
};

/// A storage failure (internals: log it, do not send it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VideoStoreError {
    /// A statement failed.
    #[error(transparent)]
    Statement(#[from] StatementError),
    /// A row did not decode.
    #[error("{0:?}")]
    Column(ColumnError),
}

impl From<ColumnError> for VideoStoreError {
    fn from(e: ColumnError) -> Self {
        VideoStoreError::Column(e)
    }
}

type Result<T> = std::result::Result<T, VideoStoreError>;

const COLUMNS: &str = "id, key_id, status, progress, model, prompt, seconds, size, created_at, \
completed_at, platform, platform_model, task_id, candidates, attempts, polls, throttled_polls, \
next_poll_at, started_at, deadline_at, output_url, error_code, error_message, reserved_micros, \
cost_micros, cost_unknown, notify_state, remixed_from";

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

fn int(n: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_int(n: Option<u64>) -> SqlValue {
    n.map_or(SqlValue::Null, int)
}

fn opt_text(s: Option<&str>) -> SqlValue {
    s.map_or(SqlValue::Null, text)
}

fn values(j: &Job) -> Vec<SqlValue> {
    let candidates = serde_json::to_string(&j.candidates).unwrap_or_else(|_| "[]".to_owned());
    let attempts = Value::Array(j.attempts.clone()).to_string();
    vec![
        text(&j.id),
        text(&j.key_id),
        text(j.status.as_str()),
        int(u64::from(j.progress)),
        text(&j.model),
        text(&j.prompt),
        int(u64::from(j.seconds)),
        text(&j.size),
        int(j.created_at_ms),
        opt_int(j.completed_at_ms),
        text(&j.current.platform),
        text(&j.current.model),
        text(&j.task_id),
        text(&candidates),
        text(&attempts),
        int(u64::from(j.polls)),
        int(u64::from(j.throttled_polls)),
        int(j.next_poll_at_ms),
        opt_int(j.started_at_ms),
        int(j.deadline_at_ms),
        opt_text(j.output_url.as_deref()),
        opt_text(j.error.as_ref().map(|e| e.0.as_str())),
        opt_text(j.error.as_ref().map(|e| e.1.as_str())),
        int(j.reserved_micros),
        opt_int(j.cost_micros),
        int(u64::from(j.cost_unknown)),
        text(&j.notify_state),
        opt_text(j.remixed_from.as_deref()),
    ]
}

fn decode(values: &[SqlValue]) -> Result<Job> {
    let r = Row::new("video_jobs", values);
    let status =
        Status::parse(r.text(2, "status")?).ok_or_else(|| r.error("status", "a video status"))?;
    let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let error = match (
        r.opt_text(21, "error_code")?,
        r.opt_text(22, "error_message")?,
    ) {
        (Some(c), m) => Some((c.to_owned(), m.unwrap_or_default().to_owned())),
        _ => None,
    };
    Ok(Job {
        id: r.text(0, "id")?.to_owned(),
        key_id: r.text(1, "key_id")?.to_owned(),
        status,
        progress: u8::try_from(r.uint(3, "progress")?.min(100)).unwrap_or(100),
        model: r.text(4, "model")?.to_owned(),
        prompt: r.text(5, "prompt")?.to_owned(),
        seconds: small(r.uint(6, "seconds")?),
        size: r.text(7, "size")?.to_owned(),
        created_at_ms: r.uint(8, "created_at")?,
        completed_at_ms: r.opt_uint(9, "completed_at")?,
        current: Choice {
            platform: r.text(10, "platform")?.to_owned(),
            model: r.text(11, "platform_model")?.to_owned(),
        },
        task_id: r.text(12, "task_id")?.to_owned(),
        candidates: serde_json::from_str(r.text(13, "candidates")?)
            .map_err(|_| r.error("candidates", "a JSON list of choices"))?,
        attempts: serde_json::from_str(r.text(14, "attempts")?)
            .map_err(|_| r.error("attempts", "a JSON list"))?,
        polls: small(r.uint(15, "polls")?),
        throttled_polls: small(r.uint(16, "throttled_polls")?),
        next_poll_at_ms: r.uint(17, "next_poll_at")?,
        started_at_ms: r.opt_uint(18, "started_at")?,
        deadline_at_ms: r.uint(19, "deadline_at")?,
        output_url: r.opt_text(20, "output_url")?.map(str::to_owned),
        error,
        reserved_micros: r.uint(23, "reserved_micros")?,
        cost_micros: r.opt_uint(24, "cost_micros")?,
        cost_unknown: r.uint(25, "cost_unknown")? != 0,
        notify_state: r.text(26, "notify_state")?.to_owned(),
        remixed_from: r.opt_text(27, "remixed_from")?.map(str::to_owned),
    })
}

/// Stores a new job.
pub fn insert(db: &mut impl SqlExecutor, job: &Job) -> Result<()> {
    let marks = vec!["?"; 28].join(", ");
    run(
        db,
        &format!("INSERT INTO video_jobs ({COLUMNS}) VALUES ({marks})"),
        &values(job),
    )?;
    Ok(())
}

/// The job `id`, if any.
pub fn get(db: &mut impl SqlExecutor, id: &str) -> Result<Option<Job>> {
    let rows = run(
        db,
        &format!("SELECT {COLUMNS} FROM video_jobs WHERE id = ?"),
        &[text(id)],
    )?;
    rows.first().map(|r| decode(r)).transpose()
}

/// Writes `job`'s state unless the stored job has already ended; true when written.
pub fn write(db: &mut impl SqlExecutor, job: &Job) -> Result<bool> {
    in_transaction(db, |tx| {
        let rows = run(
            tx,
            "SELECT status FROM video_jobs WHERE id = ?",
            &[text(&job.id)],
        )?;
        let ended = rows
            .first()
            .and_then(|r| r.first())
            .and_then(SqlValue::as_str)
            .and_then(Status::parse)
            .is_none_or(Status::is_terminal);
        if ended {
            return Ok(false);
        }
        let mut params = values(job);
        let id = params.remove(0);
        params.push(id);
        let sets = COLUMNS
            .split(", ")
            .skip(1)
            .map(|c| format!("{c} = ?"))
            .collect::<Vec<_>>()
            .join(", ");
        run(
            tx,
            &format!("UPDATE video_jobs SET {sets} WHERE id = ?"),
            &params,
        )?;
        Ok(true)
    })
}

/// Keeps the `input_reference` image of job `id` until the job ends.
pub fn save_input(db: &mut impl SqlExecutor, id: &str, image: &InputReference) -> Result<()> {
    run(
        db,
        "INSERT INTO video_inputs (job_id, media_type, data) VALUES (?, ?, ?)",
        &[
            text(id),
            text(&image.media_type),
            text(&base64(&image.data)),
        ],
    )?;
    Ok(())
}

/// The `input_reference` image of job `id`, if it has one (and it has not
/// ended).
pub fn input(db: &mut impl SqlExecutor, id: &str) -> Result<Option<InputReference>> {
    let rows = run(
        db,
        "SELECT media_type, data FROM video_inputs WHERE job_id = ?",
        &[text(id)],
    )?;
    let Some(values) = rows.first() else {
        return Ok(None);
    };
    let r = Row::new("video_inputs", values);
    let data = base64_decode(r.text(1, "data")?).ok_or_else(|| r.error("data", "base64"))?;
    Ok(Some(InputReference {
        media_type: r.text(0, "media_type")?.to_owned(),
        data,
    }))
}

/// Forgets the image of job `id` (it ended, or was deleted).
pub fn delete_input(db: &mut impl SqlExecutor, id: &str) -> Result<()> {
    run(db, "DELETE FROM video_inputs WHERE job_id = ?", &[text(id)])?;
    Ok(())
}

/// Sets the completion webhook state of job `id` (ended jobs included).
pub fn set_notify(db: &mut impl SqlExecutor, id: &str, state: &str) -> Result<()> {
    run(
        db,
        "UPDATE video_jobs SET notify_state = ? WHERE id = ?",
        &[text(state), text(id)],
    )?;
    Ok(())
}

/// A page of `key_id`'s jobs after job `after` (exclusive), newest first
/// unless `ascending`; and whether more follow.
pub fn list(
    db: &mut impl SqlExecutor,
    key_id: &str,
    after: Option<&Job>,
    limit: u32,
    ascending: bool,
) -> Result<(Vec<Job>, bool)> {
    let (cmp, order) = if ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    let mut params = vec![text(key_id)];
    let cursor = match after {
        Some(a) => {
            params.extend([int(a.created_at_ms), int(a.created_at_ms), text(&a.id)]);
            format!("AND (created_at {cmp} ? OR (created_at = ? AND id {cmp} ?))")
        }
        None => String::new(),
    };
    params.push(int(u64::from(limit) + 1));
    let rows = run(
        db,
        &format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE key_id = ? {cursor} \
             ORDER BY created_at {order}, id {order} LIMIT ?"
        ),
        &params,
    )?;
    let mut jobs = rows.iter().map(|r| decode(r)).collect::<Result<Vec<_>>>()?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    Ok((jobs, more))
}

/// Open jobs due for a poll at `now_ms` (or past their deadline), oldest poll first.
pub fn due(db: &mut impl SqlExecutor, now_ms: u64, limit: u32) -> Result<Vec<Job>> {
    let rows = run(
        db,
        &format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE status IN ('queued', 'in_progress') \
             AND (next_poll_at <= ? OR deadline_at <= ?) ORDER BY next_poll_at LIMIT ?"
        ),
        &[int(now_ms), int(now_ms), int(u64::from(limit))],
    )?;
    rows.iter().map(|r| decode(r)).collect()
}

/// Ended jobs whose completion webhook is still to deliver.
pub fn pending_notifications(db: &mut impl SqlExecutor, limit: u32) -> Result<Vec<Job>> {
    let rows = run(
        db,
        &format!(
            "SELECT {COLUMNS} FROM video_jobs WHERE notify_state = 'pending' ORDER BY completed_at LIMIT ?"
        ),
        &[int(u64::from(limit))],
    )?;
    rows.iter().map(|r| decode(r)).collect()
}

/// The jobs video health reads ([`super::health`]): those ended at or after
/// `since_ms`, and every open one (indexes of migrations 11 and 18).
pub fn recent_jobs(db: &mut impl SqlExecutor, since_ms: u64) -> Result<Vec<JobRow>> {
    let rows = run(
        db,
        "SELECT platform, status, attempts, created_at, started_at, completed_at, cost_micros, \
         seconds FROM video_jobs WHERE completed_at >= ? \
         UNION ALL SELECT platform, status, attempts, created_at, started_at, completed_at, \
         cost_micros, seconds FROM video_jobs WHERE status IN ('queued', 'in_progress')",
        &[int(since_ms)],
    )?;
    rows.into_iter()
        .map(|values| {
            let r = Row::new("video_jobs", &values);
            Ok(JobRow {
                platform: r.text(0, "platform")?.to_owned(),
                status: r.text(1, "status")?.to_owned(),
                attempts: serde_json::from_str(r.text(2, "attempts")?)
                    .map_err(|_| r.error("attempts", "a JSON list"))?,
                created_at_ms: r.uint(3, "created_at")?,
                started_at_ms: r.opt_uint(4, "started_at")?,
                completed_at_ms: r.opt_uint(5, "completed_at")?,
                cost_micros: r.opt_uint(6, "cost_micros")?,
                seconds: r.uint(7, "seconds")?,
            })
        })
        .collect()
}

/// Observations of every platform model.
pub fn stats(db: &mut impl SqlExecutor) -> Result<StatsMap> {
    let rows = run(
        db,
        "SELECT platform, model, success, queue_ms, samples FROM video_platform_stats",
        &[],
    )?;
    let mut out = StatsMap::new();
    for values in &rows {
        let r = Row::new("video_platform_stats", values);
        out.insert(
            (
                r.text(0, "platform")?.to_owned(),
                r.text(1, "model")?.to_owned(),
            ),
            Observed {
                success: r.real(2, "success")?,
                queue_ms: r.real(3, "queue_ms")?,
                samples: r.uint(4, "samples")?,
            },
        );
    }
    Ok(out)
}

/// Weight of the newest observation.
pub const ALPHA: f64 = 0.3;

/// Folds one outcome of `choice` into its observations (EWMA, starting
/// from the selection's prior, so one early failure demotes a platform
/// without condemning it). `queue_ms` is `None` when the job never started.
pub fn observe(
    db: &mut impl SqlExecutor,
    choice: &Choice,
    success: bool,
    queue_ms: Option<u64>,
    now_ms: u64,
) -> Result<()> {
    in_transaction(db, |tx| {
        let current = stats(tx)?
            .get(&(choice.platform.clone(), choice.model.clone()))
            .copied();
        let x = if success { 1.0 } else { 0.0 };
        let prior = Observed {
            success: super::select::PRIOR_SUCCESS,
            queue_ms: queue_ms.unwrap_or(0) as f64,
            samples: 0,
        };
        let o = current.unwrap_or(prior);
        let next = Observed {
            success: o.success * (1.0 - ALPHA) + x * ALPHA,
            queue_ms: queue_ms.map_or(o.queue_ms, |q| {
                o.queue_ms * (1.0 - ALPHA) + q as f64 * ALPHA
            }),
            samples: o.samples + 1,
        };
        run(
            tx,
            "INSERT INTO video_platform_stats (platform, model, success, queue_ms, samples, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, model) DO UPDATE SET \
             success = excluded.success, queue_ms = excluded.queue_ms, samples = excluded.samples, \
             updated_at = excluded.updated_at",
            &[
                text(&choice.platform),
                text(&choice.model),
                SqlValue::Real(next.success),
                SqlValue::Real(next.queue_ms),
                int(next.samples),
                int(now_ms),
            ],
        )?;
        Ok(())
    })
}
