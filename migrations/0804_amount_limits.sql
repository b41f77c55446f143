-- Up Migration
-- Bounds on amounts that only ever grow by addition, so no request can push
-- them past what the service reads back exactly (JavaScript numbers are exact
-- up to 9,007,199,254,740,991). A statement that would cross one fails with
-- its CHECK; the API answers 422 limit_exceeded and the command changes nothing.
--   - a stock balance: at most 10^15 base units (a billion tonnes in grams);
--   - an account's debit and credit totals (cumulative): at most 9 × 10^15
--     minor units each, so the balance (their difference) stays within too.
ALTER TABLE stock_balances
  ADD CONSTRAINT stock_balances_quantity_limit CHECK (quantity <= 1000000000000000);
ALTER TABLE accounts
  ADD CONSTRAINT accounts_totals_limit CHECK (debit_total <= 9000000000000000 AND credit_total <= 9000000000000000);
