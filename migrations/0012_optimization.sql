-- 0012_optimization: what each request would have cost on the savings
-- baseline (issue 16), summed per minute and hour like its cost, and user
-- feedback on answered requests.
--
-- baseline_cost_micros: micro-dollars of the same tokens at the baseline
-- model's price (dol_core::optimize::savings); NULL when the baseline has no
-- price or the request predates this migration. The aggregates' baseline_micros
-- sums the baseline where known and the request's own cost where not, so a
-- request without a baseline counts as saving nothing (never as a saving).
ALTER TABLE requests ADD COLUMN baseline_cost_micros INTEGER;
ALTER TABLE usage_minute ADD COLUMN baseline_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hour ADD COLUMN baseline_micros INTEGER NOT NULL DEFAULT 0;
-- Rows written before this migration saved nothing as far as anyone knows.
UPDATE usage_minute SET baseline_micros = cost_micros;
UPDATE usage_hour SET baseline_micros = cost_micros;

-- Feedback on an answered request (POST /v1/feedback): the score as sent
-- (thumbs -1/0/1 or stars 1-5) and normalized to 0-1, attributed to the
-- request's model, tier, template (route) and variant at write time so the
-- experiment and routing readers need no join. One row per request: a second
-- feedback replaces the first.
CREATE TABLE feedback (
    request_id  TEXT    PRIMARY KEY,
    ts          INTEGER NOT NULL,   -- Unix ms of the feedback
    key_id      TEXT    NOT NULL,
    scale       TEXT    NOT NULL,   -- 'thumbs' or 'stars'
    raw_score   INTEGER NOT NULL,
    score       REAL    NOT NULL,   -- normalized, 0-1
    comment     TEXT,
    provider    TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    tier        TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    variant     TEXT    NOT NULL,
    quality     REAL                -- the automatic score of the request, 0-10
);
CREATE INDEX feedback_by_ts ON feedback (ts);
