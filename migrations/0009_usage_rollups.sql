-- 0009_usage_rollups: hour aggregates of usage_minute, so a 7- or 30-day
-- /api/metrics view reads about 700 hour rows per series instead of 43 200 minute
-- rows (issue 12: "read aggregates, never raw rows").
--
-- usage_hour has usage_minute's columns (without the retired b0..b11): each row
-- sums the minute rows of one hour and series, with fallbacks counted as
-- SUM(MIN(fallbacks, requests)) like every reader of usage_minute does. It is
-- filled by the `alerts` scan (every minute), which folds the minutes from the
-- watermark below up to 15 minutes ago into it and moves the watermark in the
-- same transaction: a minute is folded exactly once, a failed fold folds nothing,
-- and a repeated tick finds nothing new (dol_core::observe::scan_store::fold_usage).
-- Readers use an hour row only when the whole hour is below the watermark, and
-- minute rows for everything else (dol_core::observe::system::read_overview).
CREATE TABLE usage_hour (
    hour              INTEGER NOT NULL,  -- Unix seconds, multiple of 3600
    tier              TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,
    variant           TEXT    NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    fallbacks         INTEGER NOT NULL DEFAULT 0,
    cache_hits        INTEGER NOT NULL DEFAULT 0,
    latency_sum_ms    INTEGER NOT NULL DEFAULT 0,
    quality_sum       REAL    NOT NULL DEFAULT 0,
    quality_n         INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros       INTEGER NOT NULL DEFAULT 0,
    cost_unknown      INTEGER NOT NULL DEFAULT 0,
    l0 INTEGER NOT NULL DEFAULT 0, l1 INTEGER NOT NULL DEFAULT 0, l2 INTEGER NOT NULL DEFAULT 0, l3 INTEGER NOT NULL DEFAULT 0, l4 INTEGER NOT NULL DEFAULT 0, l5 INTEGER NOT NULL DEFAULT 0,
    l6 INTEGER NOT NULL DEFAULT 0, l7 INTEGER NOT NULL DEFAULT 0, l8 INTEGER NOT NULL DEFAULT 0, l9 INTEGER NOT NULL DEFAULT 0, l10 INTEGER NOT NULL DEFAULT 0, l11 INTEGER NOT NULL DEFAULT 0,
    l12 INTEGER NOT NULL DEFAULT 0, l13 INTEGER NOT NULL DEFAULT 0, l14 INTEGER NOT NULL DEFAULT 0, l15 INTEGER NOT NULL DEFAULT 0, l16 INTEGER NOT NULL DEFAULT 0, l17 INTEGER NOT NULL DEFAULT 0,
    l18 INTEGER NOT NULL DEFAULT 0, l19 INTEGER NOT NULL DEFAULT 0, l20 INTEGER NOT NULL DEFAULT 0, l21 INTEGER NOT NULL DEFAULT 0, l22 INTEGER NOT NULL DEFAULT 0, l23 INTEGER NOT NULL DEFAULT 0,
    l24 INTEGER NOT NULL DEFAULT 0, l25 INTEGER NOT NULL DEFAULT 0, l26 INTEGER NOT NULL DEFAULT 0, l27 INTEGER NOT NULL DEFAULT 0, l28 INTEGER NOT NULL DEFAULT 0, l29 INTEGER NOT NULL DEFAULT 0,
    l30 INTEGER NOT NULL DEFAULT 0, l31 INTEGER NOT NULL DEFAULT 0, l32 INTEGER NOT NULL DEFAULT 0, l33 INTEGER NOT NULL DEFAULT 0, l34 INTEGER NOT NULL DEFAULT 0, l35 INTEGER NOT NULL DEFAULT 0,
    l36 INTEGER NOT NULL DEFAULT 0, l37 INTEGER NOT NULL DEFAULT 0, l38 INTEGER NOT NULL DEFAULT 0, l39 INTEGER NOT NULL DEFAULT 0, l40 INTEGER NOT NULL DEFAULT 0, l41 INTEGER NOT NULL DEFAULT 0,
    l42 INTEGER NOT NULL DEFAULT 0, l43 INTEGER NOT NULL DEFAULT 0, l44 INTEGER NOT NULL DEFAULT 0, l45 INTEGER NOT NULL DEFAULT 0, l46 INTEGER NOT NULL DEFAULT 0, l47 INTEGER NOT NULL DEFAULT 0,
    l48 INTEGER NOT NULL DEFAULT 0, l49 INTEGER NOT NULL DEFAULT 0, l50 INTEGER NOT NULL DEFAULT 0, l51 INTEGER NOT NULL DEFAULT 0, l52 INTEGER NOT NULL DEFAULT 0, l53 INTEGER NOT NULL DEFAULT 0,
    l54 INTEGER NOT NULL DEFAULT 0, l55 INTEGER NOT NULL DEFAULT 0, l56 INTEGER NOT NULL DEFAULT 0, l57 INTEGER NOT NULL DEFAULT 0, l58 INTEGER NOT NULL DEFAULT 0, l59 INTEGER NOT NULL DEFAULT 0,
    l60 INTEGER NOT NULL DEFAULT 0, l61 INTEGER NOT NULL DEFAULT 0, l62 INTEGER NOT NULL DEFAULT 0, l63 INTEGER NOT NULL DEFAULT 0, l64 INTEGER NOT NULL DEFAULT 0, l65 INTEGER NOT NULL DEFAULT 0,
    l66 INTEGER NOT NULL DEFAULT 0, l67 INTEGER NOT NULL DEFAULT 0, l68 INTEGER NOT NULL DEFAULT 0, l69 INTEGER NOT NULL DEFAULT 0, l70 INTEGER NOT NULL DEFAULT 0, l71 INTEGER NOT NULL DEFAULT 0,
    l72 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, tier, provider, model, outcome, variant)
);

-- The fold's watermark: every usage_minute minute before `folded_until` (Unix
-- seconds, a multiple of 60) is in usage_hour; none from it on. 0: nothing yet
-- (the first fold takes every kept minute).
CREATE TABLE usage_rollup (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    folded_until INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL   -- Unix ms of the fold that set it
);
INSERT INTO usage_rollup (id, folded_until, updated_at) VALUES (1, 0, 0);
