-- Up Migration
-- Money: parties (suppliers, customers), accounts, and a double-entry ledger.
--
-- Every money movement is a journal entry whose postings sum to zero (debit
-- positive, credit negative). Each account row carries its balance and its
-- debit and credit totals, changed relatively in the same transaction as the
-- postings: accounts are the lock, postings the history, and
--   accounts.balance      = SUM(postings.amount)
--   accounts.debit_total  = SUM(amount) of positive postings
--   accounts.credit_total = -SUM(amount) of negative postings
-- are invariants checked by src/money/integrity.ts.

CREATE TABLE parties (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  kind text NOT NULL CHECK (kind IN ('supplier', 'customer')),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  code text CHECK (length(code) BETWEEN 1 AND 100),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, kind, code),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('parties');
CREATE INDEX parties_kind_idx ON parties (tenant_id, kind, id);
CREATE TRIGGER parties_immutable BEFORE UPDATE ON parties
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'kind', 'op_id', 'created_at');
REVOKE DELETE ON parties FROM storekeep_app;

-- One account per party (receivable for a customer, payable for a supplier)
-- and one per store and kind (cash drawer, bank, card/mobile clearing, sales
-- revenue). `key` names an account without a lookup ('party/<id>',
-- 'store/<id>/cash_drawer'), so a posting can create the store account it
-- needs in the same upsert that moves its balance.
CREATE TABLE accounts (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  key text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('receivable', 'payable', 'cash_drawer', 'bank', 'card_clearing', 'mobile_clearing', 'sales_revenue')),
  store_id uuid,
  party_id uuid,
  balance bigint NOT NULL DEFAULT 0,
  debit_total bigint NOT NULL DEFAULT 0 CHECK (debit_total >= 0),
  credit_total bigint NOT NULL DEFAULT 0 CHECK (credit_total >= 0),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, key),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, party_id) REFERENCES parties (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id),
  CHECK ((party_id IS NULL) <> (store_id IS NULL)),
  CHECK ((party_id IS NOT NULL) = (kind IN ('receivable', 'payable'))),
  CHECK (balance = debit_total - credit_total)
);
SELECT enable_tenant_rls('accounts');
CREATE UNIQUE INDEX accounts_party_idx ON accounts (tenant_id, party_id) WHERE party_id IS NOT NULL;
CREATE INDEX accounts_store_idx ON accounts (tenant_id, store_id, kind) WHERE store_id IS NOT NULL;
CREATE TRIGGER accounts_immutable BEFORE UPDATE ON accounts
  FOR EACH ROW EXECUTE FUNCTION forbid_column_change('tenant_id', 'id', 'key', 'kind', 'store_id', 'party_id', 'op_id', 'created_at');
REVOKE DELETE ON accounts FROM storekeep_app;

CREATE TABLE journal_entries (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  -- What moved the money: sale, sale_void, payment, consignment …
  kind text NOT NULL CHECK (length(kind) BETWEEN 1 AND 50),
  store_id uuid,
  -- The day the entry counts for in a store's settlement (UTC date).
  business_date date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
  -- The business record it belongs to (a sale, a payment …).
  subject_type text,
  subject_id uuid,
  memo text,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('journal_entries');
CREATE INDEX journal_entries_store_day_idx ON journal_entries (tenant_id, store_id, business_date);
CREATE INDEX journal_entries_op_idx ON journal_entries (tenant_id, op_id);
CREATE INDEX journal_entries_subject_idx ON journal_entries (tenant_id, subject_id);
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

CREATE TABLE postings (
  tenant_id uuid NOT NULL,
  id bigint GENERATED ALWAYS AS IDENTITY,
  entry_id uuid NOT NULL,
  account_id uuid NOT NULL,
  -- Debit positive, credit negative, minor units.
  amount bigint NOT NULL CHECK (amount <> 0),
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, entry_id) REFERENCES journal_entries (tenant_id, id),
  FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('postings');
CREATE INDEX postings_entry_idx ON postings (tenant_id, entry_id);
CREATE INDEX postings_account_idx ON postings (tenant_id, account_id, id);
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
  FOR EACH STATEMENT EXECUTE FUNCTION forbid_update_delete();

-- Double entry, enforced by the database at commit: an entry's postings sum
-- to zero and there are at least two of them. Deferred, so the postings of one
-- entry can be inserted in any order within the transaction; a savepoint that
-- rolls back (group commit) discards its queued checks with its rows.
CREATE FUNCTION check_journal_entry_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  -- TG_ARGV[0]: the column of NEW holding the entry id ('id' on journal_entries, 'entry_id' on postings).
  entry uuid := (to_jsonb(NEW) ->> TG_ARGV[0])::uuid;
  total numeric;
  lines integer;
BEGIN
  SELECT coalesce(sum(amount), 0), count(*) INTO total, lines
  FROM postings WHERE tenant_id = NEW.tenant_id AND entry_id = entry;
  IF total <> 0 OR lines < 2 THEN
    RAISE EXCEPTION 'journal entry % is not balanced: % postings summing to %', entry, lines, total
      USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced';
  END IF;
  RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER journal_entry_balanced AFTER INSERT ON journal_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_journal_entry_balanced('id');
-- Also on postings: a posting added later to an old entry is caught too.
CREATE CONSTRAINT TRIGGER posting_entry_balanced AFTER INSERT ON postings
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_journal_entry_balanced('entry_id');

-- Payments: money paid to a supplier or received from a customer (or the
-- reverse: a refund), through one store's drawer/bank/clearing account.
CREATE TABLE payments (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  id uuid NOT NULL,
  party_id uuid NOT NULL,
  store_id uuid NOT NULL,
  -- in: money comes into the store (a customer pays); out: the store pays (a supplier).
  direction text NOT NULL CHECK (direction IN ('in', 'out')),
  method text NOT NULL CHECK (method IN ('cash', 'card', 'mobile', 'bank')),
  amount bigint NOT NULL CHECK (amount > 0),
  reference text CHECK (length(reference) <= 200),
  entry_id uuid NOT NULL,
  op_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, party_id) REFERENCES parties (tenant_id, id),
  FOREIGN KEY (tenant_id, store_id) REFERENCES stores (tenant_id, id),
  FOREIGN KEY (tenant_id, entry_id) REFERENCES journal_entries (tenant_id, id),
  FOREIGN KEY (tenant_id, op_id) REFERENCES operations (tenant_id, id)
);
SELECT enable_tenant_rls('payments');
CREATE INDEX payments_party_idx ON payments (tenant_id, party_id, created_at);
CREATE TRIGGER payments_append_only BEFORE UPDATE OR DELETE ON payments
  FOR EACH ROW EXECUTE FUNCTION forbid_update_delete();

-- The balance listing reads accounts of one kind ordered by outstanding; these
-- indexes serve its keyset pagination directly (see listPartyBalances.ts).
CREATE INDEX accounts_receivable_outstanding_idx ON accounts (tenant_id, balance DESC, party_id) WHERE kind = 'receivable';
CREATE INDEX accounts_payable_outstanding_idx ON accounts (tenant_id, balance, party_id) WHERE kind = 'payable';

-- History is insert-only for the app role (the triggers hold for every role).
REVOKE UPDATE, DELETE ON journal_entries, postings, payments FROM storekeep_app;
