-- Up Migration
-- Sale rows name their parents with one key each, with the same or stronger
-- guarantees: a sale of one line paid for (one entry, two postings) runs
-- four foreign-key checks fewer (12 → 8 on those rows). The checks dropped
-- said nothing another key did not already say, or said it in two halves:
--
-- * A posting named its journal entry and, separately, its operation; a sale
--   line named its sale and, separately, its operation. Each now names
--   (entry, operation) and (sale, operation) as ONE key. That is stronger than
--   before: a posting's operation must be its entry's, a line's must be its
--   sale's (before, each only had to exist); the operation's existence follows,
--   since entries and sales reference their operation.
-- * A journal entry referenced its tenant besides its operation, whose
--   tenant_id (the same column, the same value) already references tenants.
--
-- The composite keys need (tenant_id, id, op_id) to be unique on sales and
-- journal_entries: it is, since (tenant_id, id) is their primary key; the
-- unique indexes only let the keys point at it. They lead with op_id, so they
-- also find a sale or an entry by its operation: for journal entries that
-- replaces journal_entries_op_idx (no more indexes than before); for sales it
-- is the lookup the integrity check piece_sold_by_completed_sale lacked (it
-- scanned the tenant's sales). Existing rows are validated.
-- Measured (bench/RESULTS.md, tenth session): no change in sales/s or in
-- PostgreSQL CPU per sale beyond the run-to-run spread — a first A/B that
-- showed ~20 % less CPU was an artefact of the order its variants ran in.
CREATE UNIQUE INDEX sales_tenant_id_op_id_id_key ON sales (tenant_id, op_id, id);
CREATE UNIQUE INDEX journal_entries_tenant_id_op_id_id_key ON journal_entries (tenant_id, op_id, id);
DROP INDEX journal_entries_op_idx;

ALTER TABLE sale_items
  ADD CONSTRAINT sale_items_sale_op_fkey FOREIGN KEY (tenant_id, sale_id, op_id) REFERENCES sales (tenant_id, id, op_id) NOT VALID;
ALTER TABLE sale_items VALIDATE CONSTRAINT sale_items_sale_op_fkey;
ALTER TABLE sale_items DROP CONSTRAINT sale_items_tenant_id_sale_id_fkey;
ALTER TABLE sale_items DROP CONSTRAINT sale_items_tenant_id_op_id_fkey;

ALTER TABLE postings
  ADD CONSTRAINT postings_entry_op_fkey FOREIGN KEY (tenant_id, entry_id, op_id) REFERENCES journal_entries (tenant_id, id, op_id) NOT VALID;
ALTER TABLE postings VALIDATE CONSTRAINT postings_entry_op_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_tenant_id_entry_id_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_tenant_id_op_id_fkey;

ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_tenant_id_fkey;
