-- 0026_catalog_stamp: the model catalog's stamp, a random value in
-- `control` (key `catalog_stamp`) that every change of `models` replaces in
-- its own transaction (dol_core::gateway::store::stamp_catalog). A gateway
-- instance keeps the routable catalog it read with the stamp it read it
-- under and reads the table again only when the stamp differs, so the
-- request path reads one row instead of every model. Databases made before
-- this change get their first stamp here (random too: a fixed value could
-- name two different catalogs, e.g. across a restore).
INSERT INTO control (key, value, updated_by, updated_at)
VALUES ('catalog_stamp', '"' || CAST(random() AS TEXT) || '"', 'migration', 0)
ON CONFLICT (key) DO NOTHING;
