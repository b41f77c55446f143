/**
 * Do two versions of the sales' stock and money checks find the same? The
 * checks of another checkout (INTEGRITY_BENCH_BEFORE: a directory holding its
 * `src/`, inside this checkout so that its imports find node_modules, e.g.
 * `git archive <commit> src | tar -x -C scratch/before`) and this one's, run
 * on one small history (bench/salesHistory.ts: three shops of 10 days × 10
 * sales) corrupted in every way listed below, in each of the three shops;
 * every finding (tenant, subject, detail) of each check must be the same,
 * for every tenant ($1 NULL) and for each ($1 = the tenant).
 *
 *   INTEGRITY_BENCH_BEFORE=scratch/before npx tsx bench/integrityCheckDiff.ts
 *
 * Written for the rewrite of sale_stock_matches_items and money_sale_posted
 * (bench/RESULTS.md, "checkspeed"), its money corruptions extended for
 * money_sale_posted's sums per entry ("checkscale": each way a sale's one
 * entry of two postings can be wrong, returns, synced sales' days);
 * CHECKS=name,name picks others. The
 * corruptions are written as the owner with triggers and foreign keys off
 * (session_replication_role = replica).
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import type { IntegrityCheck } from '../src/integrity/check.js';
import { allChecks } from '../src/integrity/registry.js';
import { openBenchDatabase, runBench } from './database.js';
import { historyTenants, writeSalesHistory } from './salesHistory.js';

const NAMES = (process.env.CHECKS ?? 'sale_stock_matches_items,money_sale_posted').split(',');

runBench(async () => {
  const before = process.env.INTEGRITY_BENCH_BEFORE;
  if (!before) throw new Error('INTEGRITY_BENCH_BEFORE: the directory of the checkout to compare with');
  const beforeChecks = ((await import(pathToFileURL(path.resolve(before, 'src/integrity/registry.ts')).href)) as { allChecks: IntegrityCheck[] }).allChecks;
  const database = await openBenchDatabase('integrity-diff');
  const db = new pg.Pool({ connectionString: database.url, max: 1 });
  let client: pg.PoolClient | undefined;
  try {
    const tenants = historyTenants(10, 10, 2);
    for (const t of tenants) await writeSalesHistory(db, t, { complete: true });
    const c = (client = await db.connect());
    await c.query('SET session_replication_role = replica');
    const q = (sql: string, params: unknown[] = []) => c.query(sql, params);
    for (const [ti, t] of tenants.entries()) {
      const sales = (await q(`SELECT id, op_id, store_id FROM sales WHERE tenant_id = $1 ORDER BY receipt_number`, [t.id])).rows;
      const sku = (await q(`SELECT id FROM skus WHERE tenant_id = $1`, [t.id])).rows[0].id;
      const store2 = (await q(`INSERT INTO stores (tenant_id, id, code, name, op_id) VALUES ($1, gen_random_uuid(), 'S2', 'Two', $2) RETURNING id`, [t.id, t.op])).rows[0].id;
      const sku2 = (await q(`INSERT INTO skus (tenant_id, id, code, name, unit, price, op_id) VALUES ($1, gen_random_uuid(), 'P2', 'Two', 'piece', 100, $2) RETURNING id`, [t.id, t.op])).rows[0].id;
      const newOp = async () => (await q(`INSERT INTO operations (tenant_id, id, type, actor, correlation_id) VALUES ($1, gen_random_uuid(), 'x', 'x', 'x') RETURNING id`, [t.id])).rows[0].id;
      const S = (n: number) => sales[n + ti]!; // a different sale in each shop
      const ledger = (op: string, kind: string, store: string, skuId: string, change: number) =>
        q(`INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind) VALUES ($1, $2, $3, $4, $5, 0, $6)`, [t.id, store, skuId, op, change, kind]);
      const voidSale = async (n: number) => {
        const op = await newOp();
        await q(`UPDATE sales SET status = 'voided', voided_by_op = $3, voided_at = created_at + interval '1 hour', void_reason = 'x' WHERE tenant_id = $1 AND id = $2`, [t.id, S(n).id, op]);
        return op;
      };
      // --- stock
      await q(`UPDATE sale_items SET quantity = 2 WHERE tenant_id = $1 AND sale_id = $2`, [t.id, S(1).id]);
      await q(`DELETE FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [t.id, S(2).op_id]);
      await ledger(S(3).op_id, 'sale', store2, sku, -1);
      await ledger(await newOp(), 'sale', t.store, sku, -3);
      const stray = await newOp();
      await ledger(stray, 'void', t.store, sku, 2); await ledger(stray, 'void', t.store, sku, 5); await ledger(stray, 'return', t.store, sku2, 1);
      let op = await voidSale(4); await ledger(op, 'void', t.store, sku, 1); // fine
      await voidSale(5); // no void row
      op = await voidSale(6); await ledger(op, 'void', store2, sku, 1); // void row in another store
      op = await voidSale(7); await ledger(op, 'void', t.store, sku, 1); await ledger(op, 'sale', t.store, sku, -1); // void op also writes a 'sale' row
      op = await voidSale(8); await q(`DELETE FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [t.id, S(8).op_id]); // voided, no rows at all
      await q(`UPDATE sales SET voided_by_op = op_id, status = 'voided', voided_at = created_at, void_reason = 'x' WHERE tenant_id = $1 AND id = $2`, [t.id, S(9).id]);
      await ledger(S(9).op_id, 'void', t.store, sku, 1);
      await q(`UPDATE sales SET source = 'offline' WHERE tenant_id = $1 AND id = $2`, [t.id, S(10).id]);
      await q(`UPDATE sale_items SET shortfall_quantity = quantity WHERE tenant_id = $1 AND sale_id = $2`, [t.id, S(10).id]);
      await q(`DELETE FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [t.id, S(10).op_id]); // offline fully short: fine
      await q(`UPDATE sale_items SET shortfall_quantity = quantity WHERE tenant_id = $1 AND sale_id = $2`, [t.id, S(11).id]); // online short
      await q(`UPDATE sale_items SET shortfall_quantity = quantity WHERE tenant_id = $1 AND sale_id = $2`, [t.id, S(25).id]);
      await q(`DELETE FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [t.id, S(25).op_id]); // online, short, its stock row agreeing
      await q(`UPDATE sales SET source = 'offline' WHERE tenant_id = $1 AND id = $2`, [t.id, S(12).id]);
      await q(`UPDATE sale_items SET shortfall_quantity = quantity WHERE tenant_id = $1 AND sale_id = $2`, [t.id, S(12).id]); // offline short but stock taken
      await q(`UPDATE sales SET op_id = $3 WHERE tenant_id = $1 AND id = $2`, [t.id, S(14).id, S(13).op_id]); // two sales, one op
      await q(`DELETE FROM sales WHERE tenant_id = $1 AND id = $2`, [t.id, S(15).id]); // sale gone: lines, ledger and entry left
      await ledger(S(16).op_id, 'adjustment', t.store, sku2, 4); // another kind under a sale's op
      await ledger(S(17).op_id, 'sale', t.store, sku2, -2); // a SKU the sale did not sell
      await q(`INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, op_id) VALUES ($1, gen_random_uuid(), $2, 2, $3, 1, 5, 5, $4)`, [t.id, S(18).id, sku2, S(18).op_id]); // line with no stock row
      await q(`UPDATE sales SET status = 'voided', voided_by_op = $3, voided_at = created_at, void_reason = 'x' WHERE tenant_id = $1 AND id = $2`, [t.id, S(19).id, await newOp()]);
      await q(`DELETE FROM stock_ledger WHERE tenant_id = $1 AND op_id = $2`, [t.id, S(19).op_id]); // voided, line with no row: status looked up
      // returns
      for (const [k, variant] of [[20, 'ok'], [21, 'more'], [22, 'otherstore'], [23, 'noreturnrow'], [24, 'twice']] as const) {
        const sale = S(k);
        const item = (await q(`SELECT id, quantity FROM sale_items WHERE tenant_id = $1 AND sale_id = $2`, [t.id, sale.id])).rows[0];
        await q(`UPDATE sale_items SET quantity = 3 WHERE tenant_id = $1 AND id = $2`, [t.id, item.id]);
        await ledger(sale.op_id, 'sale', t.store, sku, -2);
        const returns = variant === 'twice' ? 2 : 1;
        for (let r = 1; r <= returns; r++) {
          const rop = await newOp();
          const rid = (await q(`INSERT INTO sale_returns (tenant_id, id, sale_id, store_id, return_number, reason, refund_total, op_id) VALUES ($1, gen_random_uuid(), $2, $3, $4, 'x', 0, $5) RETURNING id`, [t.id, sale.id, t.store, r, rop])).rows[0].id;
          await q(`INSERT INTO sale_return_items (tenant_id, id, return_id, sale_id, sale_item_id, sku_id, quantity, refund, op_id) VALUES ($1, gen_random_uuid(), $2, $3, $4, $5, 1, 0, $6)`, [t.id, rid, sale.id, item.id, sku, rop]);
          if (variant === 'ok' || variant === 'twice') await ledger(rop, 'return', t.store, sku, 1);
          if (variant === 'more') await ledger(rop, 'return', t.store, sku, 2);
          if (variant === 'otherstore') await ledger(rop, 'return', store2, sku, 1);
        }
      }
      const voidedReturned = await voidSale(20); await ledger(voidedReturned, 'void', t.store, sku, 2); // voided after a return: 3 - 1 back
      // --- money
      const entry = async (n: number) => (await q(`SELECT id FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2 AND kind = 'sale'`, [t.id, S(n).id])).rows[0]?.id;
      await q(`DELETE FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [t.id, await entry(30)]);
      await q(`UPDATE journal_entries SET subject_id = gen_random_uuid() WHERE tenant_id = $1 AND id = $2`, [t.id, await entry(31)]);
      await q(`UPDATE journal_entries SET store_id = $3 WHERE tenant_id = $1 AND id = $2`, [t.id, await entry(32), store2]);
      await q(`UPDATE journal_entries SET business_date = business_date + 5 WHERE tenant_id = $1 AND id = $2`, [t.id, await entry(33)]);
      await q(`UPDATE journal_entries SET business_date = business_date - 5 WHERE tenant_id = $1 AND id = $2`, [t.id, await entry(34)]);
      await q(`UPDATE postings SET amount = amount + 1 WHERE tenant_id = $1 AND entry_id = $2 AND amount > 0`, [t.id, await entry(35)]);
      const e36 = await entry(36);
      await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id, created_at) SELECT tenant_id, gen_random_uuid(), kind, store_id, business_date, subject_type, subject_id, op_id, created_at FROM journal_entries WHERE tenant_id = $1 AND id = $2`, [t.id, e36]);
      // a second posting on the same account within one entry, netting the same
      const acct = (await q(`SELECT account_id, amount, op_id FROM postings WHERE tenant_id = $1 AND entry_id = $2 AND amount > 0`, [t.id, await entry(37)])).rows[0];
      await q(`UPDATE postings SET amount = amount + 50 WHERE tenant_id = $1 AND entry_id = $2 AND amount > 0`, [t.id, await entry(37)]);
      await q(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, -50, $4)`, [t.id, await entry(37), acct.account_id, acct.op_id]);
      for (const [k, how] of [[38, 'good'], [39, 'half'], [40, 'none'], [41, 'otherstore'], [42, 'twoentries']] as const) {
        const vop = await voidSale(k);
        if (how === 'none') continue;
        const e = await entry(k);
        const posts = (await q(`SELECT account_id, amount FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [t.id, e])).rows;
        for (let copy = 0; copy < (how === 'twoentries' ? 2 : 1); copy++) {
          const vid = (await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id, created_at)
                                SELECT tenant_id, gen_random_uuid(), 'sale_void', $3, business_date, 'sale', subject_id, $4, created_at + interval '1 hour' FROM journal_entries WHERE tenant_id = $1 AND id = $2 RETURNING id`,
                               [t.id, e, how === 'otherstore' ? store2 : t.store, vop])).rows[0].id;
          for (const p of posts) await q(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, $4, $5)`, [t.id, vid, p.account_id, how === 'half' ? -Math.trunc(Number(p.amount) / 2) || -1 : -Number(p.amount), vop]);
        }
      }
      await q(`UPDATE sales SET total = 0 WHERE tenant_id = $1 AND id = $2`, [t.id, S(43).id]); // total 0 with an entry
      await q(`UPDATE sales SET total = 0 WHERE tenant_id = $1 AND id = $2`, [t.id, S(44).id]);
      await q(`DELETE FROM journal_entries WHERE tenant_id = $1 AND subject_id = $2`, [t.id, S(44).id]); // total 0, no entry: fine
      await q(`UPDATE sales SET client_created_at = created_at - interval '3 days', source = 'offline' WHERE tenant_id = $1 AND id = $2`, [t.id, S(45).id]);
      await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id) VALUES ($1, gen_random_uuid(), 'sale', $2, current_date, 'sale', NULL, $3)`, [t.id, t.store, t.op]); // names nothing
      await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id) VALUES ($1, gen_random_uuid(), 'sale_void', $2, current_date, 'sale', gen_random_uuid(), $3)`, [t.id, t.store, t.op]); // void of no sale
      // money_sale_posted's sums from a sale's one entry of two postings (2026-12-07, checkscale): where they go wrong
      const account = async (kind: string, store: string | null, party: string | null = null) =>
        (await q(`INSERT INTO accounts (tenant_id, id, key, kind, store_id, party_id, op_id) VALUES ($1, gen_random_uuid(), 'x/' || gen_random_uuid(), $2, $3, $4, $5) RETURNING id`, [t.id, kind, store, party, t.op])).rows[0].id;
      const debitPosting = async (n: number, accountId: string) =>
        q(`UPDATE postings SET account_id = $3 WHERE tenant_id = $1 AND entry_id = $2 AND amount > 0`, [t.id, await entry(n), accountId]);
      await debitPosting(50, await account('card_clearing', t.store)); // a cash sale debiting the card clearing account
      await q(`UPDATE postings SET amount = -amount WHERE tenant_id = $1 AND entry_id = $2`, [t.id, await entry(51)]); // debit and credit swapped
      const customer = (await q(`INSERT INTO parties (tenant_id, id, kind, name, op_id) VALUES ($1, gen_random_uuid(), 'customer', 'C', $2) RETURNING id`, [t.id, t.op])).rows[0].id;
      const receivable = await account('receivable', null, customer);
      await q(`UPDATE sales SET payment_method = 'credit', customer_id = $3 WHERE tenant_id = $1 AND id = ANY($2::uuid[])`, [t.id, [S(52).id, S(53).id], customer]);
      await debitPosting(53, receivable); // credit sale on the customer's account: fine; S(52) still debits the drawer
      const revenueAccount = (await q(`SELECT account_id FROM postings WHERE tenant_id = $1 AND entry_id = $2 AND amount < 0`, [t.id, await entry(54)])).rows[0].account_id;
      await debitPosting(54, revenueAccount); // both postings on the revenue account
      await q(`DELETE FROM postings WHERE tenant_id = $1 AND entry_id = $2 AND amount < 0`, [t.id, await entry(55)]); // one posting only
      await q(`UPDATE postings SET amount = -amount WHERE tenant_id = $1 AND entry_id = $2 AND amount < 0`, [t.id, await entry(60)]); // two debits
      await debitPosting(61, await account('cash_drawer', store2)); // another store's drawer
      // a return's entry naming the sale itself (no return has that id): its postings count for the sale; one naming no sale: nothing
      for (const [subject, from] of [[S(56).id, 56], [randomUUID(), 57]] as const) {
        const posts = (await q(`SELECT account_id, amount, op_id FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [t.id, await entry(from)])).rows;
        const rid = (await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id) SELECT $1, gen_random_uuid(), 'sale_return', $2, business_date, 'sale_return', $3, op_id FROM journal_entries WHERE tenant_id = $1 AND id = $4 RETURNING id`, [t.id, t.store, subject, await entry(from)])).rows[0].id;
        for (const p of posts) await q(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, $4, $5)`, [t.id, rid, p.account_id, -Math.sign(Number(p.amount)) * 10, p.op_id]);
      }
      // synced sales recorded now (after migration 0802: their till's day is held to), the till 3 days back: one booked
      // today (past the till's day plus one, no count), one on the till's day (fine)
      for (const [k, day] of [[63, 'current_date'], [64, `(now() - interval '3 days')::date`]] as const) {
        await q(`UPDATE sales SET created_at = now(), source = 'offline', client_created_at = now() - interval '3 days' WHERE tenant_id = $1 AND id = $2`, [t.id, S(k).id]);
        await q(`UPDATE journal_entries SET business_date = ${day} WHERE tenant_id = $1 AND id = $2`, [t.id, await entry(k)]);
      }
      // a voided sale with no void entry whose return's entry took all its money back: its one sale entry nets to zero
      {
        const rop = await newOp();
        const rid = (await q(`INSERT INTO sale_returns (tenant_id, id, sale_id, store_id, return_number, reason, refund_total, op_id) VALUES ($1, gen_random_uuid(), $2, $3, 1, 'x', 0, $4) RETURNING id`, [t.id, S(62).id, t.store, rop])).rows[0].id;
        const eid = (await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id) SELECT $1, gen_random_uuid(), 'sale_return', $2, business_date, 'sale_return', $3, $4 FROM journal_entries WHERE tenant_id = $1 AND id = $5 RETURNING id`, [t.id, t.store, rid, rop, await entry(62)])).rows[0].id;
        for (const p of (await q(`SELECT account_id, amount FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [t.id, await entry(62)])).rows) {
          await q(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, $4, $5)`, [t.id, eid, p.account_id, -Number(p.amount), rop]);
        }
        await voidSale(62);
      }
      // voided sales whose sale entry, or whose void entry, is booked on a day out of bounds; S(56) voided rightly, its
      // return entry above then leaving money unreversed
      for (const [k, which, days] of [[58, 'sale', 5], [59, 'sale_void', -5], [56, 'sale', 0]] as const) {
        const vop = await voidSale(k);
        const e = await entry(k);
        const vid = (await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id, created_at)
                              SELECT tenant_id, gen_random_uuid(), 'sale_void', store_id, business_date, 'sale', subject_id, $3, created_at + interval '1 hour' FROM journal_entries WHERE tenant_id = $1 AND id = $2 RETURNING id`, [t.id, e, vop])).rows[0].id;
        for (const p of (await q(`SELECT account_id, amount FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [t.id, e])).rows) {
          await q(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, $4, $5)`, [t.id, vid, p.account_id, -Number(p.amount), vop]);
        }
        await q(`UPDATE journal_entries SET business_date = business_date + $3::int WHERE tenant_id = $1 AND id = $2`, [t.id, which === 'sale' ? e : vid, days]);
      }
      // a partial return's entry refunding money
      {
        const sale = S(20);
        const ret = (await q(`SELECT id, op_id FROM sale_returns WHERE tenant_id = $1 AND sale_id = $2`, [t.id, sale.id])).rows[0];
        const posts = (await q(`SELECT account_id, amount FROM postings WHERE tenant_id = $1 AND entry_id = $2`, [t.id, await entry(20)])).rows;
        const rid = (await q(`INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, op_id) SELECT $1, gen_random_uuid(), 'sale_return', $2, business_date, 'sale_return', $3, $4 FROM journal_entries WHERE tenant_id = $1 AND subject_id = $5 AND kind = 'sale' RETURNING id`, [t.id, t.store, ret.id, ret.op_id, sale.id])).rows[0].id;
        for (const p of posts) await q(`INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id) VALUES ($1, $2, $3, $4, $5)`, [t.id, rid, p.account_id, -Math.sign(Number(p.amount)) * 10, ret.op_id]);
      }
    }
    await c.query('SET session_replication_role = origin');
    await c.query('ANALYZE');
    let bad = 0;
    for (const name of NAMES) {
      const now = allChecks.find((x) => x.name === name)!;
      const was = beforeChecks.find((x) => x.name === name)!;
      for (const param of [null, ...tenants.map((t) => t.id)]) {
        const norm = (rows: Array<Record<string, unknown>>) => rows.map((r) => JSON.stringify([r.tenant_id, r.subject, r.detail])).sort();
        const a = norm((await c.query(was.sql, [param])).rows);
        const b = norm((await c.query(now.sql, [param])).rows);
        const same = JSON.stringify(a) === JSON.stringify(b);
        if (!same) bad++;
        console.log(`${name} $1=${param ?? 'NULL'}: before ${a.length}, after ${b.length}, ${same ? 'identical' : 'DIFFERENT'}`);
        if (!same) { console.log('only before:', a.filter((x) => !b.includes(x))); console.log('only after:', b.filter((x) => !a.includes(x))); }
      }
    }
    if (bad) throw new Error(`${bad} comparisons differ`);
  } finally {
    client?.release();
    await db.end();
    await database.close();
  }
});
