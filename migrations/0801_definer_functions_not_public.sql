-- Up Migration
-- SECURITY DEFINER functions run as their owner, past row-level security, so
-- only the app role may call them (PostgreSQL grants EXECUTE to PUBLIC by default).
REVOKE EXECUTE ON FUNCTION find_api_token(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION purge_expired_idempotency_keys(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION tenants_with_expired_piece_reservations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION find_api_token(bytea) TO storekeep_app;
GRANT EXECUTE ON FUNCTION purge_expired_idempotency_keys(integer) TO storekeep_app;
GRANT EXECUTE ON FUNCTION tenants_with_expired_piece_reservations() TO storekeep_app;
