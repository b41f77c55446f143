-- Up Migration
-- A return's answer lists, per SKU of the sale, `remaining: [{ sku_id, sold,
-- returned, returnable, returnable_piece_ids }]`: `returnable_piece_ids` was
-- added with returns of offline lines that synced short. A return's key is
-- kept for good, so answers stored before it are replayed for ever; a replay
-- lacked the field the answer's schema now requires. Filled in here as the
-- return would have answered it then: of a SKU with nothing returnable left
-- (every SKU not sold as pieces lists no pieces either; a SKU with a line
-- that synced short answered 0 returnable then, such lines were not
-- returned), []; else the pieces the sale's lines of that SKU named, less
-- those this return and the sale's earlier ones took back, sorted (uuid
-- order, as the answer sorts them). Only answers that lack it change.
UPDATE idempotency_keys k
SET response_body = jsonb_set(
      k.response_body, '{remaining}',
      (SELECT jsonb_agg(
                CASE WHEN jsonb_typeof(e) <> 'object' OR e ? 'returnable_piece_ids' THEN e
                     ELSE e || jsonb_build_object('returnable_piece_ids',
                       CASE WHEN coalesce(e ->> 'returnable', '0') = '0' THEN '[]'::jsonb
                            ELSE coalesce(
                              (SELECT jsonb_agg(held.id::text ORDER BY held.id)
                               FROM (SELECT DISTINCT p.id
                                     FROM sale_items i CROSS JOIN LATERAL unnest(i.piece_ids) AS p(id)
                                     WHERE i.tenant_id = k.tenant_id AND i.sale_id = (k.response_body ->> 'sale_id')::uuid
                                       AND i.sku_id = (e ->> 'sku_id')::uuid
                                     EXCEPT
                                     SELECT b.id
                                     FROM sale_returns r
                                     JOIN sale_return_items ri ON ri.tenant_id = r.tenant_id AND ri.return_id = r.id
                                     CROSS JOIN LATERAL unnest(ri.piece_ids) AS b(id)
                                     WHERE r.tenant_id = k.tenant_id AND r.sale_id = (k.response_body ->> 'sale_id')::uuid
                                       AND r.return_number <= (k.response_body ->> 'return_number')::integer) AS held),
                              '[]'::jsonb)
                       END)
                END
                ORDER BY x.position)
       FROM jsonb_array_elements(k.response_body -> 'remaining') WITH ORDINALITY AS x(e, position)))
FROM operations o
WHERE o.tenant_id = k.tenant_id AND o.id = k.op_id AND o.type = 'sale.return'
  AND jsonb_typeof(k.response_body) = 'object' AND jsonb_typeof(k.response_body -> 'remaining') = 'array'
  AND k.response_body ? 'sale_id' AND k.response_body ? 'return_number'
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(k.response_body -> 'remaining') AS x(e)
              WHERE jsonb_typeof(e) = 'object' AND NOT e ? 'returnable_piece_ids');
