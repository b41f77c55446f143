import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { saleLineErrors } from '../sales/salePlan.js';
import { duplicatePieceErrors } from './sellPieces.js';

describe('sale lines of piece-tracked SKUs (pure rules)', () => {
  const skus = new Map([
    ['cloth', { tracks_pieces: true }],
    ['soap', { tracks_pieces: false }],
  ]);

  it('a piece-tracked line names pieces (quantity optional); any other line has a quantity and no pieces', () => {
    assert.deepEqual(
      saleLineErrors(
        [
          { sku_id: 'cloth', piece_ids: ['p1'], unit_price: 1 },
          { sku_id: 'cloth', piece_ids: ['p2'], quantity: 5, unit_price: 1 },
          { sku_id: 'soap', quantity: 2, unit_price: 1 },
        ],
        skus,
      ),
      [],
    );
    assert.deepEqual(
      saleLineErrors(
        [
          { sku_id: 'cloth', quantity: 5, unit_price: 1 },
          { sku_id: 'soap', quantity: 2, piece_ids: ['p1'], unit_price: 1 },
          { sku_id: 'soap', unit_price: 1 },
        ],
        skus,
      ).map((error) => error.path),
      ['/body/items/0/piece_ids', '/body/items/1/piece_ids', '/body/items/2/quantity'],
    );
  });

  it('a piece named twice in one sale is reported at every repeat, across lines', () => {
    assert.deepEqual(duplicatePieceErrors([{ index: 0, pieceIds: ['a', 'b'] }, { index: 2, pieceIds: ['c'] }]), []);
    assert.deepEqual(
      duplicatePieceErrors([
        { index: 0, pieceIds: ['a', 'b', 'a'] },
        { index: 3, pieceIds: ['c', 'b'] },
      ]).map((error) => error.path),
      ['/body/items/0/piece_ids/2', '/body/items/3/piece_ids/1'],
    );
  });
});
