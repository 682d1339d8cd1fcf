-- 0005_flag_evaluations: flag evaluation totals for Prometheus
-- (`dol_flag_evaluations_total{flag,variant,reason}`, issue 5).
--
-- Evaluations are counted on the hot path in key-value, one small key per
-- minute (`dol:flags:evals:<minute>`), because the OFREP path runs no SQL.
-- The alerts scan folds closed minutes into `flag_evaluations` (see
-- `dol_core::observe::flag_counts`) and records each folded minute in
-- `flag_evaluation_minutes` in the same transaction, so a minute is added
-- once even when deleting its key afterwards fails; the totals only grow.
CREATE TABLE flag_evaluations (
    flag    TEXT    NOT NULL,
    variant TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    count   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (flag, variant, reason)
);

-- Minutes (Unix seconds) already added to `flag_evaluations`.
CREATE TABLE flag_evaluation_minutes (
    minute    INTEGER PRIMARY KEY,
    folded_at INTEGER NOT NULL
);
