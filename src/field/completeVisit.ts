import { sql } from 'kysely';
import { inStoreScope, type TenantPrincipal } from '../core/auth.js';
import { AlreadyDone, canonicalJson, type Command } from '../core/command.js';
import { all, maybeOne, readClientMoment, type Tx } from '../core/db.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { changeStock, type StockChange, touchStockMoves } from '../inventory/changeStock.js';
import { assertSkusExist } from '../inventory/receiveStock.js';
import { postJournal } from '../money/postJournal.js';
import { openReviewItems } from '../core/review.js';
import { getTenantSettings } from '../tenancy/updateTenantSettings.js';
import type { SettlementConflictView, VisitCompletion } from './field.table.js';
import { checkGeofence, DEFAULT_GEOFENCE_RADIUS_M } from './geofence.js';
import { loadVisitCompletion } from './queries.js';
import { planSettlement, type ConsignedLine, type ReportedLine } from './settlement.js';
import { amountErrors } from '../sales/lineTotal.js';
import type { Unit } from '../inventory/inventory.table.js';

export interface CompleteVisitInput {
  latitude: number;
  longitude: number;
  /** Goods left on consignment on this visit (may be empty). */
  lines: Array<{ sku_id: string; quantity: number; unit_price?: number | undefined }>;
  /** Settlement of an open consignment of this point of sale, left on an earlier visit. */
  settlement?: { consignment_id: string; lines: ReportedLine[] } | undefined;
  /**
   * When the agent completed the visit on the device, for a completion queued
   * offline: the point of sale's last visit is the latest by this time (no
   * later than the arrival, no earlier than the visit's scheduling).
   */
  client_created_at?: string | undefined;
}

interface LockedVisit {
  id: string;
  status: 'scheduled' | 'completed';
  agent_token_id: string;
  point_of_sale_id: string;
  store_id: string;
  party_id: string;
  latitude: number;
  longitude: number;
}

/** Locks a visit row for the rest of the transaction (two completions of one visit queue up here). */
export async function lockVisitForUpdate(tx: Tx, tenantId: string, visitId: string): Promise<LockedVisit | undefined> {
  return maybeOne(
    tx,
    sql<LockedVisit>`
      SELECT v.id, v.status, v.agent_token_id, v.point_of_sale_id, p.store_id, p.party_id, p.latitude::float8 AS latitude, p.longitude::float8 AS longitude
      FROM visits v JOIN points_of_sale p ON p.tenant_id = v.tenant_id AND p.id = v.point_of_sale_id
      WHERE v.tenant_id = ${tenantId} AND v.id = ${visitId}
      FOR UPDATE OF v`,
  );
}

/** Who may complete a visit: its own agent, or a non-agent token with the visit's store in scope. */
export function mayCompleteVisit(principal: TenantPrincipal, visit: { agent_token_id: string; store_id: string }): boolean {
  if (principal.role === 'field_agent' && visit.agent_token_id !== principal.tokenId) return false;
  return inStoreScope(principal, visit.store_id);
}

/** A visit's agent and store (no lock: for the visibility check before the command). */
export async function findVisitOwner(tx: Tx, tenantId: string, visitId: string): Promise<{ agent_token_id: string; store_id: string } | undefined> {
  return maybeOne(
    tx,
    sql<{ agent_token_id: string; store_id: string }>`
      SELECT v.agent_token_id, p.store_id FROM visits v JOIN points_of_sale p ON p.tenant_id = v.tenant_id AND p.id = v.point_of_sale_id
      WHERE v.tenant_id = ${tenantId} AND v.id = ${visitId}`,
  );
}

/**
 * What a completion records — its goods and settlement, the same however a
 * device lists them (lines as sorted sets), without the position (checked,
 * not compared: a retry may re-read its GPS). Compared when a completed visit
 * is completed again, and fingerprinted under the request's key.
 */
export function completionGoods(body: unknown): { lines: string[]; settlement: Record<string, unknown> | null } {
  const sorted = (lines: unknown) => (Array.isArray(lines) ? lines.map((line) => canonicalJson(line)).sort() : []);
  const { lines, settlement } = (body ?? {}) as { lines?: unknown; settlement?: { lines?: unknown } | null };
  return { lines: sorted(lines), settlement: settlement ? { ...settlement, lines: sorted(settlement.lines) } : null };
}

/**
 * Completes a visit in ONE transaction: the settlement of an earlier
 * consignment is decided, the stock moves (returned goods in, the new
 * consignment's goods out), then the settlement's money and rows, the new
 * consignment's rows, the point of sale's last visit and the visit's status.
 * Any refusal (geofence, shortage, bad settlement) or crash rolls back all of it.
 * A settlement of a consignment another operation has settled is refused
 * (409) online; sent with client_created_at (queued offline) the rest of the
 * visit is recorded and the settlement kept for review instead
 * (recordSettlementConflict).
 * A visit already completed with the same goods and settlement (whatever the
 * key or the position sent) is answered with its stored completion
 * (AlreadyDone → a replay, nothing written); with other goods or another
 * settlement, 409 invalid_transition (the second device's goods or
 * settlement were NOT recorded, and it must be told).
 */
export async function completeVisit(cmd: Command, visitId: string, input: CompleteVisitInput): Promise<VisitCompletion> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'visits are completed by tenant tokens');
  const { tx, tenantId, opId } = cmd;
  // As PostgreSQL reads it (UTC, microseconds), before anything is read or written: a bad one is a 400 at its field.
  const deviceTime =
    input.client_created_at === undefined ? null : await readClientMoment(tx, input.client_created_at, { name: 'client_created_at', path: '/body/client_created_at' });

  const visit = await lockVisitForUpdate(tx, tenantId, visitId);
  if (!visit) throw notFound('visit');
  // An agent sees only their own visits; anyone else needs the store in scope.
  if (!mayCompleteVisit(principal, visit)) throw notFound('visit');
  cmd.storeId = visit.store_id;

  if (visit.status === 'completed') {
    // The same completion again (a retry; the device may have re-read its
    // position) replays; other goods or another settlement are a different
    // request, refused. Compared: what the completion recorded, from its
    // operation's audit event.
    const original = await maybeOne(
      tx,
      sql<{ payload: unknown; op_id: string }>`
        SELECT e.payload, e.op_id FROM visits v JOIN events e ON e.tenant_id = v.tenant_id AND e.op_id = v.completed_by_op AND e.subject_type IS NULL
        WHERE v.tenant_id = ${tenantId} AND v.id = ${visitId}`,
    );
    const recorded = (body: unknown) => canonicalJson(completionGoods(body));
    if (original === undefined || recorded(original.payload) !== recorded(input)) {
      throw new AppError('invalid_transition', 'the visit was already completed with a different request; nothing of this one was recorded', {
        extra: { current_status: 'completed' },
      });
    }
    const stored = await loadVisitCompletion(tx, tenantId, visitId);
    assert(stored, 'visit exists');
    // The answer the completion gave (and its key replays): its consignment
    // as it was left — open. A later visit may have settled it since; that is
    // the consignment's news (GET /v1/visits/{id}), not this request's answer.
    // Everything else the answer holds is never changed after the completion.
    const consignment = stored.consignment && { ...stored.consignment, status: 'open' as const, settled_by_op: null };
    throw new AlreadyDone({ ...stored, consignment }, original.op_id);
  }

  const settings = await getTenantSettings(tx, tenantId);
  const radiusM = settings.geofence_radius_m ?? DEFAULT_GEOFENCE_RADIUS_M;
  const fence = checkGeofence({ latitude: input.latitude, longitude: input.longitude }, visit, radiusM);
  if (!fence.inside) {
    throw new AppError('geofence_violation', `the agent is ${fence.distance_m} m from the point of sale; the geofence is ${fence.radius_m} m`, {
      extra: { distance_m: fence.distance_m, radius_m: fence.radius_m },
    });
  }

  // SKUs of the goods left now; the settlement's SKUs are checked against the
  // consignment it settles (planSettlement names each line that is not on it).
  const skuIds = input.lines.map((line) => line.sku_id);
  const skus = skuIds.length > 0 ? await assertSkusExist(tx, tenantId, skuIds, (index) => `/body/lines/${index}/sku_id`) : new Map();
  const seen = new Set<string>();
  input.lines.forEach((line, index) => {
    if (seen.has(line.sku_id)) throw new AppError('validation_failed', 'a SKU appears twice in lines', { errors: [{ path: `/body/lines/${index}/sku_id`, message: 'SKU appears twice' }] });
    seen.add(line.sku_id);
    if (skus.get(line.sku_id)?.tracks_pieces) {
      throw new AppError('validation_failed', 'piece-tracked SKUs move as workshop pieces, not on consignment', {
        errors: [{ path: `/body/lines/${index}/sku_id`, message: 'SKU is piece-tracked' }],
      });
    }
  });
  // What is left must be a value the settlement can book later (the same
  // bound as a sale: each line, and the consignment, at most the largest amount).
  const leftAmounts = amountErrors(
    input.lines.map((line) => ({ unit: skus.get(line.sku_id)!.unit as Unit, quantity: line.quantity, unit_price: line.unit_price ?? skus.get(line.sku_id)!.price })),
    '/body/lines',
  );
  if (leftAmounts.length > 0) {
    throw new AppError('validation_failed', 'the goods left would be worth more than the largest amount storekeep records', { errors: leftAmounts });
  }

  // Lock order, as in every sale: stock balances first, money accounts after.
  // So the settlement is decided and the goods left are listed, then the
  // stock moves (returns in, new consignment out), and only then is the
  // money posted. (Posting first made a visit and concurrent cash sales of
  // the store wait for each other in opposite orders: deadlocks.)
  const stockChanges: StockChange[] = [];

  // 1. Settlement of an earlier consignment of this point of sale: decide it.
  let settling: { consignment: { id: string; store_id: string }; plan: Extract<ReturnType<typeof planSettlement>, { ok: true }> } | null = null;
  // A completion queued offline that settled a consignment another operation
  // has settled since: the rest of the visit is recorded, the settlement is
  // not (see recordSettlementConflict).
  let conflicting: { consignment: { id: string; store_id: string }; plan: Extract<ReturnType<typeof planSettlement>, { ok: true }> } | null = null;
  if (input.settlement) {
    const consignment = await maybeOne(
      tx,
      sql<{ id: string; status: string; point_of_sale_id: string; store_id: string }>`
        SELECT id, status, point_of_sale_id, store_id FROM consignments
        WHERE tenant_id = ${tenantId} AND id = ${input.settlement.consignment_id} FOR UPDATE`,
    );
    if (!consignment || consignment.point_of_sale_id !== visit.point_of_sale_id) {
      throw new AppError('validation_failed', 'the consignment to settle is not one of this point of sale', {
        errors: [{ path: '/body/settlement/consignment_id', message: 'not a consignment of this point of sale' }],
      });
    }
    // Online (no device time), the agent is at the point of sale and can act
    // on the answer: a settled consignment refuses the whole completion.
    if (consignment.status !== 'open' && deviceTime === null) {
      throw new AppError('invalid_transition', 'the consignment is already settled', { extra: { consignment_id: consignment.id } });
    }
    const consigned = await all(
      tx,
      sql<ConsignedLine>`
        SELECT l.sku_id, s.unit, l.quantity, l.unit_price
        FROM consignment_lines l JOIN skus s ON s.tenant_id = l.tenant_id AND s.id = l.sku_id
        WHERE l.tenant_id = ${tenantId} AND l.consignment_id = ${consignment.id}`,
    );
    // Lines that do not fit the consignment are bad input, settled or not.
    const plan = planSettlement(consigned, input.settlement.lines);
    if (!plan.ok) throw new AppError('validation_failed', plan.errors.map((e) => `${e.path} ${e.message}`).join('; '), { errors: plan.errors });
    if (consignment.status !== 'open') {
      // Queued offline and settled by another operation meanwhile (the row
      // lock above waited for it): no money, no returned stock; a review item.
      conflicting = { consignment, plan };
    } else {
      settling = { consignment, plan };
      for (const returned of plan.returned) {
        stockChanges.push({ storeId: consignment.store_id, skuId: returned.sku_id, quantityChange: returned.quantity, kind: 'consignment_return', reason: `consignment ${consignment.id}` });
      }
    }
  }

  // 2. The new consignment: the goods leave the supplying store.
  const consignmentId: string | null = input.lines.length > 0 ? newId() : null;
  const newLines = input.lines.map((line) => ({
    id: newId(),
    sku_id: line.sku_id,
    quantity: line.quantity,
    unit_price: line.unit_price ?? skus.get(line.sku_id)?.price ?? 0,
    shortfall_quantity: 0,
  }));
  // Queued offline (client_created_at), the goods already left the store:
  // like an offline sale, each line takes what is there, down to 0, and the
  // rest is its shortfall (shortages below, a review item). Online, a short
  // line refuses the completion (changeStock reports it).
  const shortages = deviceTime !== null && newLines.length > 0 ? await takeWhatIsThere(tx, tenantId, visit.store_id, newLines, stockChanges) : [];
  for (const line of newLines) {
    const take = line.quantity - line.shortfall_quantity;
    if (take === 0) continue;
    stockChanges.push({ storeId: visit.store_id, skuId: line.sku_id, quantityChange: -take, kind: 'consignment_out', reason: `consignment ${consignmentId}` });
  }

  // Stock moves (balances locked in (store, sku) order).
  if (stockChanges.length > 0) {
    const moved = await changeStock(tx, tenantId, opId, stockChanges);
    if (!moved.ok) {
      throw new AppError('insufficient_stock', 'the supplying store does not have the goods to leave on consignment', {
        extra: { shortages: moved.shortages.map(({ sku_id, requested, available }) => ({ sku_id, requested, available })) },
      });
    }
    touchStockMoves(cmd, moved.balances);
  }

  // 1'. The settlement's rows and its money.
  if (settling) {
    const { consignment, plan } = settling;
    const settlementId = newId();
    // What was sold is owed by the point of sale: its customer party's
    // receivable is debited against the store's sales revenue, in this transaction.
    const entry =
      plan.amount_owed > 0
        ? await postJournal(tx, cmd, {
            kind: 'consignment_settlement',
            storeId: consignment.store_id,
            subjectType: 'consignment_settlement',
            subjectId: settlementId,
            memo: `consignment ${consignment.id}`,
            postings: [
              { account: { partyId: visit.party_id }, amount: plan.amount_owed },
              { account: { storeId: consignment.store_id, kind: 'sales_revenue' }, amount: -plan.amount_owed },
            ],
          })
        : null;
    await sql`
      INSERT INTO consignment_settlements (tenant_id, id, consignment_id, visit_id, amount_owed, journal_entry_id, op_id)
      VALUES (${tenantId}, ${settlementId}, ${consignment.id}, ${visitId}, ${plan.amount_owed}, ${entry?.entryId ?? null}, ${opId})`.execute(tx);
    if (entry) cmd.touch('journal_entries', entry.entryId);
    const settlementLines = plan.lines.map((line) => ({ ...line, id: newId() }));
    await sql`
      INSERT INTO consignment_settlement_lines (tenant_id, id, settlement_id, sku_id, sold_quantity, returned_quantity, unit_price, op_id)
      SELECT ${tenantId}, l.id, ${settlementId}, l.sku_id, l.sold_quantity, l.returned_quantity, l.unit_price, ${opId}
      FROM jsonb_to_recordset(${JSON.stringify(settlementLines)}::jsonb)
        AS l(id uuid, sku_id uuid, sold_quantity bigint, returned_quantity bigint, unit_price bigint)`.execute(tx);
    for (const line of settlementLines) cmd.touch('consignment_settlement_lines', line.id);
    const settled = await sql`
      UPDATE consignments SET status = 'settled', settled_by_op = ${opId}
      WHERE tenant_id = ${tenantId} AND id = ${consignment.id} AND status = 'open'`.execute(tx);
    assert(settled.numAffectedRows === 1n, 'consignment locked and open');
    cmd.touch('consignment_settlements', settlementId);
    cmd.touch('consignments', consignment.id, 'updated');
    cmd.audit({ subjectType: 'consignment', subjectId: consignment.id, before: { status: 'open' }, after: { status: 'settled', settlement_id: settlementId, amount_owed: plan.amount_owed, lines: plan.lines } });
  }

  // Review items this completion opens, their ids known up front: when its
  // settlement is not recorded AND its goods left were short, each item names
  // the other (one person must not correct the stock for goods the other
  // item explains).
  const shortageItemId = shortages.length > 0 ? newId() : null;
  const conflictItemId = conflicting ? newId() : null;

  // 1''. A settlement synced late onto a settled consignment: kept for review, not applied.
  const conflict =
    conflicting &&
    (await recordSettlementConflict(cmd, {
      visitId,
      pointOfSaleId: visit.point_of_sale_id,
      deviceTime,
      ...conflicting,
      reviewItemId: conflictItemId!,
      shortageReviewItemId: shortageItemId,
    }));

  // 2'. The new consignment's rows.
  if (consignmentId !== null) {
    await sql`
      INSERT INTO consignments (tenant_id, id, visit_id, point_of_sale_id, store_id, op_id)
      VALUES (${tenantId}, ${consignmentId}, ${visitId}, ${visit.point_of_sale_id}, ${visit.store_id}, ${opId})`.execute(tx);
    await sql`
      INSERT INTO consignment_lines (tenant_id, id, consignment_id, sku_id, quantity, unit_price, shortfall_quantity, op_id)
      SELECT ${tenantId}, l.id, ${consignmentId}, l.sku_id, l.quantity, l.unit_price, l.shortfall_quantity, ${opId}
      FROM jsonb_to_recordset(${JSON.stringify(newLines)}::jsonb) AS l(id uuid, sku_id uuid, quantity bigint, unit_price bigint, shortfall_quantity bigint)`.execute(tx);
    cmd.touch('consignments', consignmentId);
    for (const line of newLines) cmd.touch('consignment_lines', line.id);
    cmd.audit({ subjectType: 'consignment', subjectId: consignmentId, after: { status: 'open', visit_id: visitId, lines: newLines } });
    if (shortageItemId !== null) {
      // The missing goods left the store and were not in its stock: a person
      // decides what they were (a miscount, an unrecorded receipt, theft) and
      // corrects the stock to a count of the shelf (not by the shortfall), as
      // for an offline sale. When
      // this visit's settlement was not recorded, what it reported taken
      // back never reached the store's stock (not counted as available): by
      // the agent's report, part of the goods left may be those — each
      // shortage says how many, and the item names the conflict's item.
      const unrecordedReturns = new Map((conflicting?.plan.returned ?? []).map((line) => [line.sku_id, line.quantity]));
      const detail = conflicting
        ? {
            visit_id: visitId,
            consignment_id: consignmentId,
            point_of_sale_id: visit.point_of_sale_id,
            client_created_at: deviceTime,
            shortages: shortages.map((shortage) => ({ ...shortage, returned_not_recorded: unrecordedReturns.get(shortage.sku_id) ?? 0 })),
            settlement_conflict_review_item_id: conflictItemId,
          }
        : { visit_id: visitId, consignment_id: consignmentId, point_of_sale_id: visit.point_of_sale_id, client_created_at: deviceTime, shortages };
      const [reviewItemId] = await openReviewItems(tx, tenantId, [
        {
          kind: 'offline_consignment_shortage',
          severity: 'warning',
          subjectType: 'consignment',
          subjectId: consignmentId,
          storeId: visit.store_id,
          detail,
          dedupeKey: `offline_consignment_shortage/${consignmentId}`,
          opId,
          id: shortageItemId,
        },
      ]);
      // A new consignment's key: no open item can hold it, so the item is the one the conflict's item names.
      assert(reviewItemId === shortageItemId, 'the shortage review item opened under its own id');
      cmd.touch('review_items', reviewItemId);
    }
  }

  // 3. The point of sale's last visit: the latest visit by when it happened,
  // not by when it reached us — an agent's phone syncs a visit made offline
  // days later, and it must not replace a newer one. When it happened: the
  // device's time (client_created_at), never later than its arrival (a clock
  // running ahead would otherwise stay "the last visit" over every visit after
  // it) nor earlier than the visit was scheduled (a clock reset to 1970: the
  // agent's phone knew the visit, so it existed); without one, its arrival —
  // this transaction's start (now(), as completed_at below). Ties by visit id.
  // Visits of one point of sale can commit in another order than they
  // happened (one waits on a stock balance another command held, or a late
  // one races a newer one): the row lock makes them take turns, and under READ
  // COMMITTED a waiting UPDATE re-checks its condition against what the other
  // committed — so the later visit stays, whichever commits last.
  const pointOfSale = await maybeOne(
    tx,
    sql<{ last_visit_at: Date }>`
      UPDATE points_of_sale p SET last_visit_at = happened.at, last_visit_id = ${visitId}
      FROM (
        SELECT CASE WHEN ${deviceTime}::timestamptz IS NULL THEN now()
                    ELSE greatest(v.created_at, least(${deviceTime}::timestamptz, now())) END AS at
        FROM visits v WHERE v.tenant_id = ${tenantId} AND v.id = ${visitId}
      ) AS happened
      WHERE p.tenant_id = ${tenantId} AND p.id = ${visit.point_of_sale_id}
        AND (p.last_visit_at IS NULL OR (p.last_visit_at, p.last_visit_id) < (happened.at, ${visitId}::uuid))
      RETURNING p.last_visit_at`,
  );
  if (pointOfSale) cmd.touch('points_of_sale', visit.point_of_sale_id, 'updated');

  // 4. The visit itself, last.
  const completed = await sql`
    UPDATE visits SET status = 'completed', completed_at = now(), completed_by_op = ${opId}, client_created_at = ${deviceTime}::timestamptz,
      completed_latitude = ${input.latitude}, completed_longitude = ${input.longitude}, completed_distance_m = ${fence.distance_m}
    WHERE tenant_id = ${tenantId} AND id = ${visitId} AND status = 'scheduled'`.execute(tx);
  assert(completed.numAffectedRows === 1n, 'visit locked and scheduled');
  cmd.touch('visits', visitId, 'updated');
  cmd.audit({
    subjectType: 'visit',
    subjectId: visitId,
    before: { status: 'scheduled' },
    after: {
      status: 'completed',
      distance_m: fence.distance_m,
      radius_m: fence.radius_m,
      consignment_id: consignmentId,
      client_created_at: deviceTime,
      ...(conflict ? { settlement_conflict: conflict } : {}),
    },
  });

  const result = await loadVisitCompletion(tx, tenantId, visitId);
  assert(result, 'visit exists');
  return result;
}

/**
 * A completion queued offline (sent with client_created_at) settled a
 * consignment of its point of sale that another operation has settled since
 * — say another agent, online, while this agent's phone had no signal. The
 * goods this visit left and the visit itself happened and are recorded; this
 * settlement is not (the consignment is settled once: no money owed, no goods
 * back, the consignment untouched). What the agent reported is kept
 * (consignment_settlement_conflicts) and a `consignment_settled_twice` review
 * item, one per visit, holds what a person needs to decide: the visit, the
 * consignment, the settlement recorded and its operation, the lines reported
 * and what they would have owed. Returns what the answer tells the device.
 */
async function recordSettlementConflict(
  cmd: Command,
  input: {
    visitId: string;
    pointOfSaleId: string;
    deviceTime: string | null;
    consignment: { id: string; store_id: string };
    plan: Extract<ReturnType<typeof planSettlement>, { ok: true }>;
    /** The id the review item is opened under. */
    reviewItemId: string;
    /** The visit's offline_consignment_shortage item, when the goods it left were short too. */
    shortageReviewItemId: string | null;
  },
): Promise<SettlementConflictView> {
  const { tx, tenantId, opId } = cmd;
  const { visitId, consignment, plan } = input;
  const recorded = await maybeOne(
    tx,
    sql<{ id: string; op_id: string; visit_id: string; amount_owed: string }>`
      SELECT id, op_id, visit_id, amount_owed FROM consignment_settlements WHERE tenant_id = ${tenantId} AND consignment_id = ${consignment.id}`,
  );
  assert(recorded, 'a settled consignment has its settlement');
  const [reviewItemId] = await openReviewItems(tx, tenantId, [
    {
      kind: 'consignment_settled_twice',
      severity: 'warning',
      subjectType: 'consignment',
      subjectId: consignment.id,
      storeId: consignment.store_id,
      detail: {
        visit_id: visitId,
        point_of_sale_id: input.pointOfSaleId,
        consignment_id: consignment.id,
        client_created_at: input.deviceTime,
        settled_by_op: recorded.op_id,
        settlement_id: recorded.id,
        settled_by_visit_id: recorded.visit_id,
        settled_amount_owed: Number(recorded.amount_owed),
        reported: { lines: plan.lines, amount_owed: plan.amount_owed },
        ...(input.shortageReviewItemId !== null ? { shortage_review_item_id: input.shortageReviewItemId } : {}),
      },
      // A visit completes once: one item per visit.
      dedupeKey: `consignment_settled_twice/${visitId}`,
      opId,
      id: input.reviewItemId,
    },
  ]);
  // The visit's key: no open item can hold it (it completes once), so the item is the one the shortage's item names.
  assert(reviewItemId === input.reviewItemId, 'the conflict review item opened under its own id');
  cmd.touch('review_items', reviewItemId);
  const id = newId();
  await sql`
    INSERT INTO consignment_settlement_conflicts (tenant_id, id, visit_id, consignment_id, settlement_id, settled_by_op, lines, amount_owed, review_item_id, op_id)
    VALUES (${tenantId}, ${id}, ${visitId}, ${consignment.id}, ${recorded.id}, ${recorded.op_id}, ${JSON.stringify(plan.lines)}::jsonb, ${plan.amount_owed}, ${reviewItemId}, ${opId})`.execute(tx);
  cmd.touch('consignment_settlement_conflicts', id);
  return { consignment_id: consignment.id, settlement_id: recorded.id, settled_by_op: recorded.op_id, review_item_id: reviewItemId };
}

/**
 * For a completion queued offline: locks the store's balances of every SKU
 * the visit moves (in SKU order, the order changeStock and every sale lock
 * them in), and gives each line of goods left what is there — its balance
 * plus what this visit's settlement returns of it — setting the rest as the
 * line's `shortfall_quantity`. Returns the short lines, for the review item.
 */
async function takeWhatIsThere(
  tx: Tx,
  tenantId: string,
  storeId: string,
  lines: Array<{ sku_id: string; quantity: number; shortfall_quantity: number }>,
  returns: readonly StockChange[],
): Promise<Array<{ sku_id: string; requested: number; available: number; shortfall: number }>> {
  const returned = new Map<string, number>();
  for (const change of returns) {
    assert(change.storeId === storeId && change.quantityChange > 0, "a settlement returns goods to its point of sale's store");
    returned.set(change.skuId, (returned.get(change.skuId) ?? 0) + change.quantityChange);
  }
  const skuIds = [...new Set([...lines.map((line) => line.sku_id), ...returned.keys()])].sort();
  const balances = await all(
    tx,
    sql<{ sku_id: string; quantity: string }>`
      SELECT sku_id, quantity FROM stock_balances
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ANY(${skuIds}::uuid[])
      ORDER BY sku_id FOR UPDATE`,
  );
  const onHand = new Map(balances.map((row) => [row.sku_id, Number(row.quantity)]));
  const shortages: Array<{ sku_id: string; requested: number; available: number; shortfall: number }> = [];
  for (const line of lines) {
    const available = (onHand.get(line.sku_id) ?? 0) + (returned.get(line.sku_id) ?? 0);
    const take = Math.min(line.quantity, available);
    line.shortfall_quantity = line.quantity - take;
    if (line.shortfall_quantity > 0) shortages.push({ sku_id: line.sku_id, requested: line.quantity, available, shortfall: line.shortfall_quantity });
  }
  return shortages.sort((a, b) => (a.sku_id < b.sku_id ? -1 : a.sku_id > b.sku_id ? 1 : 0));
}
