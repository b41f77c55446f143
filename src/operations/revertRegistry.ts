import type { RevertHandler } from './revertOperation.js';
import { paymentRevertHandlers } from '../money/revertPayment.js';
import { pieceRevertHandlers } from '../pieces/revertPieces.js';

/**
 * Every operation type that can be reverted, and how. Each part adds its
 * handlers here (POST /v1/operations/{op_id}/revert dispatches on the type).
 */
export const revertHandlers: Readonly<Record<string, RevertHandler>> = {
  ...pieceRevertHandlers,
  ...paymentRevertHandlers,
};
