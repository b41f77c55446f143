import type { IntegrityCheck } from './check.js';

/** Every integrity check of every part; each part adds its list here. */
export const allChecks: IntegrityCheck[] = [];
