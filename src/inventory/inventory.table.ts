/** Row and API shapes of the inventory tables. */
export type Unit = 'kg' | 'piece' | 'metre';

export interface StoreRow {
  id: string;
  code: string;
  name: string;
  /** IANA time zone of the store's business day ('UTC' unless set). */
  time_zone: string;
  /** Starts at 1; each change that changes something adds 1 (its ETag). */
  version: number;
  op_id: string;
  created_at: Date;
}

export interface SkuRow {
  id: string;
  code: string;
  name: string;
  unit: Unit;
  price: number;
  tracks_pieces: boolean;
  /** Starts at 1; each change that changes something adds 1 (its ETag). */
  version: number;
  op_id: string;
  created_at: Date;
}

/** The base unit quantities of a SKU are counted in. */
export const BASE_UNIT: Record<Unit, 'grams' | 'pieces' | 'millimetres'> = { kg: 'grams', piece: 'pieces', metre: 'millimetres' };
