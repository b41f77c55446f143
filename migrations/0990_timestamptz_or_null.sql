-- Up Migration
-- A till's client_created_at as PostgreSQL reads it, or NULL when it cannot
-- read it at all (`23:59:60.5`, an offset beyond ±15:59: text the API's
-- date-time format allows). The sale path reads the client times of every
-- sale of a batch in one statement; a cast that failed there failed the
-- whole statement, and the sale was refused at path "/" instead of at its
-- field. pg_input_is_valid says as much from PostgreSQL 16 on; this works on
-- every server the service runs on (DATABASE_URL may name an older one).
-- Not PARALLEL SAFE: the exception block is a subtransaction, which a
-- parallel worker cannot start.
CREATE FUNCTION timestamptz_or_null(p_text text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN p_text::timestamptz;
EXCEPTION WHEN data_exception THEN
  RETURN NULL;
END
$$;

