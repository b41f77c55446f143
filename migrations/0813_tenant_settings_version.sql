-- Up Migration
-- Tenant settings get a version, sent as their ETag: PATCH /v1/tenant/settings
-- with an If-Match that no longer matches is 412, so two admins editing at
-- once no longer overwrite each other unseen. (A constant default: no rewrite.)
ALTER TABLE tenants ADD COLUMN settings_version integer NOT NULL DEFAULT 1 CHECK (settings_version >= 1);
