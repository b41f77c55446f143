-- Up Migration
-- What a token grants (its role and stores) and its revocation are final:
-- no code path changes them (a token is revoked and another issued), and the
-- database now refuses it too, as defence in depth for the app role, which
-- could UPDATE api_tokens (say, raise a cashier token to owner or undo a
-- revocation) through any statement that got through.
DROP TRIGGER api_tokens_immutable ON api_tokens;
CREATE TRIGGER api_tokens_immutable BEFORE UPDATE ON api_tokens
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'token_hash', 'op_id', 'created_at', 'name', 'role', 'store_ids');

CREATE FUNCTION api_token_revocation_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
    RAISE EXCEPTION 'api_tokens.revoked_at is final once set' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER api_tokens_revocation_final BEFORE UPDATE ON api_tokens
  FOR EACH ROW EXECUTE FUNCTION api_token_revocation_is_final();
