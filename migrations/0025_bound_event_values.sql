-- 0025_bound_event_values: repairs what POST /v1/events could store before
-- it bounded an event's `value` (dol_core::experiments::events::MAX_VALUE,
-- 10^12). A mean metric sums the values and their squares; one value above
-- about 10^154 made a variant's sum of squares infinite, and the
-- experiment's report then showed no value for that metric for the rest of
-- the experiment. Such a value is set to the bound with its sign; every
-- other event is left as it is.
UPDATE events SET value = CASE WHEN value > 0 THEN 1e12 ELSE -1e12 END
WHERE value > 1e12 OR value < -1e12;
