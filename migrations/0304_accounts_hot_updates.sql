-- Up Migration
-- Account balances change on every sale (the store's drawer and revenue rows,
-- many times per group-commit transaction). An index on `balance` — even a
-- partial one on other rows — makes every such UPDATE a non-HOT update: each
-- one adds entries to every index of the table, and a hot account row piles up
-- dead index entries faster than vacuum removes them (measured: group-commit
-- sales/s on one hot SKU halved within seconds, bench/salePostings.ts). Without
-- an index on a changing column the updates are HOT (heap-only). The balance
-- listing instead reads the tenant's party accounts of one kind through
-- accounts_party_kind_idx and keeps the top `limit` by outstanding — a
-- bounded top-N sort over the accounts, still never over postings
-- (bench/ledger.ts: 10,000 customers, 1,000,000 postings).
DROP INDEX accounts_receivable_outstanding_idx;
DROP INDEX accounts_payable_outstanding_idx;
CREATE INDEX accounts_party_kind_idx ON accounts (tenant_id, kind) WHERE party_id IS NOT NULL;
