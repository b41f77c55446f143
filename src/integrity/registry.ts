import type { IntegrityCheck } from './check.js';
import { moneyChecks } from '../money/integrity.js';
import { fieldChecks } from '../field/integrity.js';
import { transferChecks } from '../transfers/integrity.js';
import { coreChecks } from './coreChecks.js';
import { inventoryChecks } from '../inventory/integrity.js';
import { pieceChecks } from '../pieces/integrity.js';
import { salesChecks } from '../sales/integrity.js';
import { orderChecks } from '../orders/integrity.js';
import { settlementChecks } from '../settlements/integrity.js';
import { analyticsChecks } from '../analytics/integrity.js';

/** Every integrity check of every part; each part adds its list here. */
export const allChecks: IntegrityCheck[] = [...coreChecks, ...inventoryChecks, ...moneyChecks, ...fieldChecks, ...transferChecks, ...pieceChecks, ...salesChecks, ...orderChecks, ...settlementChecks, ...analyticsChecks];
