/**
 * Workshop plans as pure functions: what a cut or a combine produces from its
 * inputs, or why it cannot. No database, no clock.
 */
export type PieceKind = 'roll' | 'cut' | 'spare' | 'bundle';

export type CutPlan =
  | { ok: true; parts: number[]; remainder: number }
  | { ok: false; reason: string };

/**
 * Cuts a piece of `quantity` (millimetres of a roll / cut piece, or a count of
 * spare pieces) into `parts`, in the order given. What is left over becomes a
 * remainder piece (none when the parts use it all). The parts must fit.
 */
export function planCut(quantity: number, parts: number[]): CutPlan {
  if (!Number.isSafeInteger(quantity) || quantity <= 0) return { ok: false, reason: 'the piece has no quantity to cut' };
  if (parts.length === 0) return { ok: false, reason: 'give at least one part' };
  let total = 0;
  for (const part of parts) {
    if (!Number.isSafeInteger(part) || part <= 0) return { ok: false, reason: `part ${part} is not a positive whole number of base units` };
    total += part;
  }
  if (total > quantity) return { ok: false, reason: `the parts need ${total} but the piece has ${quantity}` };
  return { ok: true, parts: [...parts], remainder: quantity - total };
}

export type CombinePlan =
  | { ok: true; bundles: number[]; remainder: number }
  | { ok: false; reason: string };

/**
 * Combines spare pieces with counts `counts` into `bundleCount` bundles of
 * `bundleSize` pieces each; what is left becomes one remainder spare piece
 * (none when nothing is left).
 */
export function planCombine(counts: number[], bundleSize: number, bundleCount: number): CombinePlan {
  if (counts.length === 0) return { ok: false, reason: 'give at least one piece to combine' };
  if (!Number.isSafeInteger(bundleSize) || bundleSize <= 0) return { ok: false, reason: 'bundle size must be a positive whole number' };
  if (!Number.isSafeInteger(bundleCount) || bundleCount <= 0) return { ok: false, reason: 'bundle count must be a positive whole number' };
  const total = counts.reduce((sum, count) => sum + count, 0);
  const needed = bundleSize * bundleCount;
  if (!Number.isSafeInteger(needed) || needed > total) {
    return { ok: false, reason: `${bundleCount} bundles of ${bundleSize} need ${needed} pieces but the inputs hold ${total}` };
  }
  return { ok: true, bundles: Array.from({ length: bundleCount }, () => bundleSize), remainder: total - needed };
}

/** What a cut produces from a piece of each kind (a remainder keeps the input's kind). */
export function cutOutputKind(input: PieceKind): PieceKind | null {
  switch (input) {
    case 'roll':
    case 'cut':
      return 'cut';
    case 'spare':
      return 'spare';
    case 'bundle':
      return null;
  }
}

/** Which kinds a SKU of each unit can have. */
export function kindFitsUnit(kind: PieceKind, unit: string): boolean {
  return unit === 'metre' ? kind === 'roll' || kind === 'cut' : unit === 'piece' ? kind === 'spare' || kind === 'bundle' : false;
}
