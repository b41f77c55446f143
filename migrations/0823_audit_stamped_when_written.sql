-- Up Migration
-- An audit event, and a piece's updated_at, are stamped when they are
-- written — under the locks of the rows they describe — not when their
-- transaction began (as migration 0816 did for the stock ledger). With now(),
-- a command whose transaction began, then waited (for an operation row, for
-- a piece another command held, behind other commands of its group-commit
-- batch) while other commands changed the same piece and committed, recorded
-- its step dated BEFORE theirs: a piece's history read "reverted" at 10:00:00.959
-- after "released" at 10:00:00.985, and its updated_at went back in time.
-- Events are inserted at the end of their command, after every lock it takes,
-- so each subject's events are dated in the order they happened (the next
-- command gets the row only after this one commits). Within one command,
-- events keep their id order (each row's clock is read as it is inserted).
ALTER TABLE events ALTER COLUMN created_at SET DEFAULT clock_timestamp();

CREATE OR REPLACE FUNCTION pieces_versioned() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.deleted_by_op IS NOT NULL THEN
    RAISE EXCEPTION 'piece % was deleted by operation % and cannot change', OLD.id, OLD.deleted_by_op
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  NEW.version := OLD.version + 1;
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END
$$;
