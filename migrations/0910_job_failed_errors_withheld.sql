-- Up Migration
-- A job_failed review item held the job's raw error (detail.error): database
-- errors with table names and SQL, a provider's answer, internal ids — shown
-- to every token of the tenant with review.read. Items opened from now on
-- say only which job gave up, after how many attempts, and that its cause is
-- in the server log under detail.correlation_id (src/jobs/runJob.ts,
-- jobFailedWording); the worker logged the error there when those items were
-- opened too.
--
-- Items already opened get the same kind of wording. Their original error is
-- kept, not lost (a review item is a record, never deleted in part), in
-- review_item_withheld_errors: readable by the owner (migrations, storekeep
-- check, psql) and not by the app role, so no API answer can show it.
CREATE TABLE review_item_withheld_errors (
  tenant_id uuid NOT NULL,
  review_item_id uuid NOT NULL,
  -- detail.error as it was before it was withheld.
  error text NOT NULL,
  withheld_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, review_item_id),
  FOREIGN KEY (tenant_id, review_item_id) REFERENCES review_items (tenant_id, id)
);
SELECT enable_tenant_rls('review_item_withheld_errors');
REVOKE ALL ON review_item_withheld_errors FROM storekeep_app;
CREATE TRIGGER review_item_withheld_errors_append_only BEFORE UPDATE OR DELETE ON review_item_withheld_errors
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

-- Moves the raw error of every job_failed item that still holds one into
-- review_item_withheld_errors and gives the item the fixed wording. An item
-- whose error already is a fixed wording (it ends so) is left as it is, so a
-- second call changes nothing. Returns how many items it changed. Owner only:
-- it lifts review_items' immutability of detail for its own statement.
CREATE FUNCTION withhold_job_failed_errors() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  changed bigint;
BEGIN
  INSERT INTO review_item_withheld_errors (tenant_id, review_item_id, error)
  SELECT tenant_id, id, detail ->> 'error'
  FROM review_items
  WHERE kind = 'job_failed' AND jsonb_typeof(detail -> 'error') = 'string'
    AND detail ->> 'error' NOT LIKE '%; its cause is in the server log under correlation_id'
  ON CONFLICT DO NOTHING;
  ALTER TABLE review_items DISABLE TRIGGER review_items_immutable;
  UPDATE review_items r
  SET detail = jsonb_set(r.detail, '{error}', to_jsonb(format(
        'the job %s gave up at attempt %s of %s; its cause is in the server log under correlation_id',
        coalesce(r.detail ->> 'task', '(unnamed)'), coalesce(r.detail ->> 'attempts', '?'), coalesce(r.detail ->> 'max_attempts', '?'))))
  FROM review_item_withheld_errors w
  WHERE w.tenant_id = r.tenant_id AND w.review_item_id = r.id AND r.kind = 'job_failed'
    AND r.detail ->> 'error' NOT LIKE '%; its cause is in the server log under correlation_id';
  GET DIAGNOSTICS changed = ROW_COUNT;
  ALTER TABLE review_items ENABLE TRIGGER review_items_immutable;
  RETURN changed;
END
$$;
REVOKE EXECUTE ON FUNCTION withhold_job_failed_errors() FROM PUBLIC, storekeep_app;

SELECT withhold_job_failed_errors();
