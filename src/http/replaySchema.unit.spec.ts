import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withoutRequired } from './command.js';

describe('withoutRequired (the schema a replay is written through)', () => {
  it('lifts every required list, at every depth, and keeps a property that is called "required"', () => {
    const schema = {
      type: 'object',
      required: ['id', 'items', 'required'],
      properties: {
        id: { type: 'string' },
        required: { type: 'object', required: ['at'], properties: { at: { type: 'string' } } },
        items: { type: 'array', items: { type: 'object', required: ['sku_id'], properties: { sku_id: { type: 'string' } } } },
      },
    };
    assert.deepEqual(withoutRequired(schema), {
      type: 'object',
      properties: {
        id: { type: 'string' },
        required: { type: 'object', properties: { at: { type: 'string' } } },
        items: { type: 'array', items: { type: 'object', properties: { sku_id: { type: 'string' } } } },
      },
    });
  });
});
