-- 0017_usage_by_org: the minute and hour usage aggregates carry the org of
-- the request's key (issue 17: health, metrics and the console filtered by org
-- read aggregates, never raw `requests` rows).
--
-- `org_id` joins the primary key ('' = a key of no org, and every row written
-- before this migration), so the gateway's one upsert per request adds to its
-- org's row: the org is read from `api_keys` inside that same statement
-- (dol_core::gateway::store::add_usage), no statement more per request.
-- Readers of the whole deployment sum over org_id (GROUP BY the old key), so
-- their figures are what they were; the hour fold groups by org too. No index
-- on org_id: every reader bounds the time first (the key's first column), and
-- an extra index would be written on the hot path.
--
-- SQLite cannot change a primary key in place: each table is rebuilt and its
-- rows copied (usage_minute keeps its retired b0..b11 columns, all 0 since
-- migration 8, so older readers and fixtures naming them still work).

CREATE TABLE usage_minute_by_org (
    minute            INTEGER NOT NULL,
    tier              TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,
    variant           TEXT    NOT NULL,
    org_id            TEXT    NOT NULL DEFAULT '',  -- the request's key's org; '' = no org
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
    baseline_micros   INTEGER NOT NULL DEFAULT 0,
    b0 INTEGER NOT NULL DEFAULT 0, b1 INTEGER NOT NULL DEFAULT 0, b2 INTEGER NOT NULL DEFAULT 0,
    b3 INTEGER NOT NULL DEFAULT 0, b4 INTEGER NOT NULL DEFAULT 0, b5 INTEGER NOT NULL DEFAULT 0,
    b6 INTEGER NOT NULL DEFAULT 0, b7 INTEGER NOT NULL DEFAULT 0, b8 INTEGER NOT NULL DEFAULT 0,
    b9 INTEGER NOT NULL DEFAULT 0, b10 INTEGER NOT NULL DEFAULT 0, b11 INTEGER NOT NULL DEFAULT 0,
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
    PRIMARY KEY (minute, tier, provider, model, outcome, variant, org_id)
);
INSERT INTO usage_minute_by_org (minute, tier, provider, model, outcome, variant, requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, prompt_tokens, completion_tokens, cost_micros, cost_unknown, baseline_micros, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15, l16, l17, l18, l19, l20, l21, l22, l23, l24, l25, l26, l27, l28, l29, l30, l31, l32, l33, l34, l35, l36, l37, l38, l39, l40, l41, l42, l43, l44, l45, l46, l47, l48, l49, l50, l51, l52, l53, l54, l55, l56, l57, l58, l59, l60, l61, l62, l63, l64, l65, l66, l67, l68, l69, l70, l71, l72)
    SELECT minute, tier, provider, model, outcome, variant, requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, prompt_tokens, completion_tokens, cost_micros, cost_unknown, baseline_micros, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15, l16, l17, l18, l19, l20, l21, l22, l23, l24, l25, l26, l27, l28, l29, l30, l31, l32, l33, l34, l35, l36, l37, l38, l39, l40, l41, l42, l43, l44, l45, l46, l47, l48, l49, l50, l51, l52, l53, l54, l55, l56, l57, l58, l59, l60, l61, l62, l63, l64, l65, l66, l67, l68, l69, l70, l71, l72 FROM usage_minute;
DROP TABLE usage_minute;
ALTER TABLE usage_minute_by_org RENAME TO usage_minute;

CREATE TABLE usage_hour_by_org (
    hour              INTEGER NOT NULL,
    tier              TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,
    variant           TEXT    NOT NULL,
    org_id            TEXT    NOT NULL DEFAULT '',  -- the request's key's org; '' = no org
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
    baseline_micros   INTEGER NOT NULL DEFAULT 0,
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
    PRIMARY KEY (hour, tier, provider, model, outcome, variant, org_id)
);
INSERT INTO usage_hour_by_org (hour, tier, provider, model, outcome, variant, requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, prompt_tokens, completion_tokens, cost_micros, cost_unknown, baseline_micros, l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15, l16, l17, l18, l19, l20, l21, l22, l23, l24, l25, l26, l27, l28, l29, l30, l31, l32, l33, l34, l35, l36, l37, l38, l39, l40, l41, l42, l43, l44, l45, l46, l47, l48, l49, l50, l51, l52, l53, l54, l55, l56, l57, l58, l59, l60, l61, l62, l63, l64, l65, l66, l67, l68, l69, l70, l71, l72)
    SELECT hour, tier, provider, model, outcome, variant, requests, errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, prompt_tokens, completion_tokens, cost_micros, cost_unknown, baseline_micros, l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, l15, l16, l17, l18, l19, l20, l21, l22, l23, l24, l25, l26, l27, l28, l29, l30, l31, l32, l33, l34, l35, l36, l37, l38, l39, l40, l41, l42, l43, l44, l45, l46, l47, l48, l49, l50, l51, l52, l53, l54, l55, l56, l57, l58, l59, l60, l61, l62, l63, l64, l65, l66, l67, l68, l69, l70, l71, l72 FROM usage_hour;
DROP TABLE usage_hour;
ALTER TABLE usage_hour_by_org RENAME TO usage_hour;
