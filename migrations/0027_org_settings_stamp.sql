-- 0027_org_settings_stamp: the org privacy settings' stamp, a random value
-- in `control` (key `org_settings_stamp`) that every write of
-- `org_settings` replaces in its own transaction (saving an org's settings,
-- deleting an org: dol_core::gateway::store::stamp). A gateway instance
-- keeps the settings it read under the stamp it read with the catalog's
-- (one statement per request, dol_core::gateway::store::InstanceCache) and
-- reads `org_settings` again only when the stamp differs. Databases made
-- before this change get their first stamp here (random, as the catalog's).
INSERT INTO control (key, value, updated_by, updated_at)
VALUES ('org_settings_stamp', '"' || CAST(random() AS TEXT) || '"', 'migration', 0)
ON CONFLICT (key) DO NOTHING;
