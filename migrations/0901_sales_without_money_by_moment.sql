-- Up Migration
-- The sales without money (a total of 0: no journal entry), per store, by the
-- moment they happened (SALE_HAPPENED in src/analytics/rollupDailySales.ts:
-- an offline sale's till time, never after it was recorded; else when it
-- was recorded).
--
-- A store-day's figures count the sales booked on it (journal entries by
-- store and day, an index they have) and the sales without money that
-- happened on it. Those were found by when they were recorded, from the day
-- before on — with no upper bound, since an offline till may sync a sale
-- long after it happened — so recomputing a day a year back read a year of
-- the store's sales, and daily_sales_rollup_matches_sales, doing that for
-- every day with figures, read the sales a number of times that grew with the
-- square of the history. By the moment they happened, bounded on both
-- sides, only that day's few sales without money are read. (The expression
-- has no coalesce — LEAST skips a NULL — so that under row-level security
-- it is leakproof, and a condition on it an index condition.) Partial: only
-- sales of a total of 0 are in it (a sale with a total above 0 has its entry:
-- saleJournalEntry; money_sale_posted reports one that has not), so the sale
-- path adds no index entry for a sale with money.
CREATE INDEX sales_without_money_happened_idx ON sales (
  tenant_id, store_id,
  (CASE WHEN source = 'offline' THEN LEAST(client_created_at, created_at) ELSE created_at END)
) WHERE total = 0;
