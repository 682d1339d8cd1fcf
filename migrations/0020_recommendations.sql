-- 0020_recommendations: the recommender's findings (issue 16,
-- dol_core::optimize::recommend_store), stored by the daily
-- `recommendations` scan and by apply / dismiss. The id is a hash of the
-- finding's kind and subject, so a recomputation with new figures keeps the
-- row's status: a dismissed finding stays dismissed.
--
-- status: 'open', 'applied' or 'dismissed'; body: the recommendation as last
-- computed (JSON); first_seen / last_seen / decided_at: Unix ms; note: JSON
-- (the dismissal reason, or the rollout an apply started).
CREATE TABLE recommendations (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    decided_at  INTEGER,
    decided_by  TEXT,
    note        TEXT
);
