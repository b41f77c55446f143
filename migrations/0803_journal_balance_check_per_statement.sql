-- Up Migration
-- The double-entry rule, checked with less work per sale.
--
-- Until now three deferred row triggers ran at COMMIT for every entry (one
-- for the entry, one per posting), each building a JSON document of its row
-- to find the entry id and summing the entry's postings again: a group-commit
-- batch of 64 sales ran ~190 of them inside the hot rows' locks.
--
-- Now:
--   - postings are checked once per INSERT statement (transition table):
--     every entry the statement added postings to must, when the statement
--     ends, have postings summing to zero and at least two of them. A posting
--     added later to an old entry is refused at once, as before (only sooner).
--     postJournals writes an entry's postings in one statement.
--   - the entry's own deferred constraint trigger stays, once per entry at
--     COMMIT, so an entry written without postings is still refused.
-- Same error as before: check_violation, constraint journal_entry_balanced.

CREATE FUNCTION check_entry_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  total numeric;
  lines integer;
BEGIN
  SELECT coalesce(sum(amount), 0), count(*) INTO total, lines
  FROM postings WHERE tenant_id = NEW.tenant_id AND entry_id = NEW.id;
  IF total <> 0 OR lines < 2 THEN
    RAISE EXCEPTION 'journal entry % is not balanced: % postings summing to %', NEW.id, lines, total
      USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION check_posted_entries_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT p.entry_id, coalesce(sum(p.amount), 0) AS total, count(*) AS lines INTO bad
  FROM (SELECT DISTINCT tenant_id, entry_id FROM new_postings) touched
  JOIN postings p ON p.tenant_id = touched.tenant_id AND p.entry_id = touched.entry_id
  GROUP BY p.tenant_id, p.entry_id
  HAVING sum(p.amount) <> 0 OR count(*) < 2
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'journal entry % is not balanced: % postings summing to %', bad.entry_id, bad.lines, bad.total
      USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER journal_entry_balanced ON journal_entries;
DROP TRIGGER posting_entry_balanced ON postings;
DROP FUNCTION check_journal_entry_balanced();

CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON journal_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();
CREATE TRIGGER posting_entry_balanced AFTER INSERT ON postings
  REFERENCING NEW TABLE AS new_postings
  FOR EACH STATEMENT EXECUTE FUNCTION check_posted_entries_balanced();
