-- Up Migration
-- A payment recorded wrongly (500 typed for 50, the wrong customer, the
-- wrong method) can be reverted: POST /v1/operations/{op_id}/revert of its
-- payment.create operation writes a `payment_revert` journal entry that moves
-- the payment's postings back (the original entry and postings stay as they
-- are) and marks the payment here, in the same transaction. Until now the
-- only way out was a payment the other way, which reads as a refund.
--
-- reverted_by_op: the revert operation (as operations.reverted_by);
-- reverted_at: when it was reverted. Both nullable without a default: adding
-- them rewrites nothing.
ALTER TABLE payments ADD COLUMN reverted_by_op uuid, ADD COLUMN reverted_at timestamptz;

-- NOT VALID: every existing row is NULL (nothing to validate); validating
-- would scan payments while holding a lock that stops writes to operations,
-- every command's table. New and updated rows are checked all the same.
ALTER TABLE payments ADD CONSTRAINT payments_reverted_by_op_fkey
  FOREIGN KEY (tenant_id, reverted_by_op) REFERENCES operations (tenant_id, id) NOT VALID;

-- Payments stay append-only except for being marked reverted: once, from
-- unmarked to both columns set, nothing else changing; a reverted payment
-- never changes again; nothing is deleted. For every role that does not
-- disable triggers (replaces payments_append_only).
CREATE FUNCTION payments_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'payments is append-only: DELETE is not allowed' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (to_jsonb(NEW) - 'reverted_by_op' - 'reverted_at') IS DISTINCT FROM (to_jsonb(OLD) - 'reverted_by_op' - 'reverted_at')
     OR OLD.reverted_by_op IS NOT NULL OR OLD.reverted_at IS NOT NULL
     OR NEW.reverted_by_op IS NULL OR NEW.reverted_at IS NULL THEN
    RAISE EXCEPTION 'a payment is immutable except for being marked reverted once (reverted_by_op and reverted_at together)'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER payments_append_only ON payments;
CREATE TRIGGER payments_guard BEFORE UPDATE OR DELETE ON payments
  FOR EACH ROW EXECUTE FUNCTION payments_guard();

-- The app role may update these two columns only (0300 revoked UPDATE).
GRANT UPDATE (reverted_by_op, reverted_at) ON payments TO storekeep_app;
