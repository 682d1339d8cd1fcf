-- 0006_rollouts: guarded rollouts, one row per flag (the latest rollout).
--
-- `plan` and `state` are JSON (dol_core::rollouts::plan::RolloutPlan and
-- guard::RolloutState); `status` repeats state.status so the guard loop can
-- select rollouts in progress. `original_targeting` is the flag's targeting
-- before the rollout (JSON, NULL when it had none): restored at 0 % and on
-- completion. Every change is also an audit_log entry (action rollout-*)
-- written in the same transaction as the flag version it produced.
-- Times are Unix epoch milliseconds.
CREATE TABLE rollouts (
    flag_key           TEXT    PRIMARY KEY,
    plan               TEXT    NOT NULL,
    original_targeting TEXT,
    state              TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,
    created_by         TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE INDEX rollouts_by_status ON rollouts (status);
