-- Async video jobs (issue 15): one row per `POST /v1/videos`, advanced by the
-- `video-jobs` scan and by platform callbacks; the terminal transition (and
-- with it the charge and the request record) happens once, guarded by status.
CREATE TABLE video_jobs (
    id TEXT PRIMARY KEY,                 -- video_<hex>, the caller's id
    key_id TEXT NOT NULL,                -- the API key that created it
    status TEXT NOT NULL,                -- queued | in_progress | completed | failed | cancelled
    progress INTEGER NOT NULL DEFAULT 0, -- 0-100
    model TEXT NOT NULL,                 -- the model asked for (`auto` or a catalog model)
    prompt TEXT NOT NULL,
    seconds INTEGER NOT NULL,
    size TEXT NOT NULL,
    created_at INTEGER NOT NULL,         -- Unix ms
    completed_at INTEGER,                -- Unix ms of the terminal state
    platform TEXT NOT NULL DEFAULT '',   -- the platform serving it now
    platform_model TEXT NOT NULL DEFAULT '',
    task_id TEXT NOT NULL DEFAULT '',    -- the platform's id of the job
    candidates TEXT NOT NULL DEFAULT '[]', -- JSON: platform/model pairs still to fall back to
    attempts TEXT NOT NULL DEFAULT '[]', -- JSON: what each platform did
    polls INTEGER NOT NULL DEFAULT 0,    -- polls at the current platform
    throttled_polls INTEGER NOT NULL DEFAULT 0,
    next_poll_at INTEGER NOT NULL DEFAULT 0, -- Unix ms
    started_at INTEGER,                  -- Unix ms the platform started running it (queue time)
    deadline_at INTEGER NOT NULL,        -- Unix ms after which the job times out
    output_url TEXT,                     -- where the platform put the video (redirect target)
    error_code TEXT,
    error_message TEXT,
    reserved_micros INTEGER NOT NULL DEFAULT 0, -- the budget reservation made at creation
    cost_micros INTEGER,                 -- charged at completion; NULL = unknown price (flagged)
    cost_unknown INTEGER NOT NULL DEFAULT 0,
    notify_state TEXT NOT NULL DEFAULT 'none' -- none | pending | delivered (completion webhook)
);
CREATE INDEX video_jobs_key ON video_jobs (key_id, created_at);
CREATE INDEX video_jobs_open ON video_jobs (status, next_poll_at);

-- Observed behaviour per platform model (EWMA), read by platform selection.
CREATE TABLE video_platform_stats (
    platform TEXT NOT NULL,
    model TEXT NOT NULL,
    success REAL NOT NULL,     -- 0-1
    queue_ms REAL NOT NULL,    -- submit → running
    samples INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (platform, model)
);
