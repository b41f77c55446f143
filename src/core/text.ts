/** A NUL, or a UTF-16 surrogate without its pair (JSON's `\ud800` escapes): text PostgreSQL cannot store (text refuses the first, jsonb both). */
export const UNSTORABLE_CHARACTER = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const EVERY_UNSTORABLE_CHARACTER = new RegExp(UNSTORABLE_CHARACTER.source, 'g');

/**
 * `text` as PostgreSQL can store it in text and jsonb, for text we only
 * record (an error's message in a review item, a provider's answer quoted in
 * an error): at most `maxLength` UTF-16 units, cut between characters — never
 * between the two halves of one (an emoji) —, with any NUL or unpaired
 * surrogate left in it replaced by U+FFFD. jsonb refuses both (the text
 * `\ud83d` is an invalid escape), so a record quoting such text failed as a
 * whole.
 */
export function storableText(text: string, maxLength = Number.POSITIVE_INFINITY): string {
  let cut = text;
  if (text.length > maxLength) {
    const end = Math.max(0, Math.floor(maxLength));
    const splitsAPair = end > 0 && /[\ud800-\udbff]/.test(text[end - 1]!) && /[\udc00-\udfff]/.test(text[end] ?? '');
    cut = text.slice(0, splitsAPair ? end - 1 : end);
  }
  return cut.replace(EVERY_UNSTORABLE_CHARACTER, '\ufffd');
}

/**
 * How deep JSON we read or record may nest (the value itself is level 1): a
 * request body deeper is refused (http/json.ts), a recorded answer deeper is
 * cut there (storableJson). The deepest request of the API, a sync batch of
 * sales naming workshop pieces, nests six levels; a body nested thousands
 * deep (a sync batch's sales may carry unknown fields, refused sale by sale)
 * overflowed the stack of the recursive walks behind it — the request's
 * fingerprint — and was a 500.
 */
export const MAX_JSON_DEPTH = 32;

/**
 * A parsed JSON value (an outside system's answer we record: in an audit
 * payload, a review item's detail) as PostgreSQL can store it in jsonb and
 * JSON.stringify can write it: every string and member name through
 * storableText (a NUL or an unpaired surrogate anywhere made the whole
 * record fail, and the job that wrote it retry for ever), arrays and objects
 * deeper than `maxDepth` replaced by a note (a value nested thousands deep
 * overflowed JSON.stringify's stack), and — when the result's JSON text is
 * longer than `maxLength` — the start of that text, cut between characters,
 * as a string ending in "…". Walked with recursion no deeper than maxDepth.
 */
export function storableJson(value: unknown, options: { maxDepth?: number; maxLength?: number } = {}): unknown {
  const maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
  const maxLength = options.maxLength ?? Number.POSITIVE_INFINITY;
  const clean = (current: unknown, depth: number): unknown => {
    if (typeof current === 'string') return storableText(current);
    if (typeof current === 'number') return Number.isFinite(current) ? current : null;
    if (current === null || typeof current === 'boolean') return current;
    if (typeof current !== 'object') return current === undefined ? undefined : storableText(String(current));
    if (depth >= maxDepth) return `(nested deeper than ${maxDepth} levels)`;
    if (Array.isArray(current)) return current.map((item) => clean(item, depth + 1) ?? null);
    const cleaned: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(current)) {
      const kept = clean(item, depth + 1);
      // defineProperty: a member named "__proto__" stays a member (an assignment would set the prototype).
      if (kept !== undefined) Object.defineProperty(cleaned, storableText(name), { value: kept, enumerable: true, writable: true, configurable: true });
    }
    return cleaned;
  };
  const cleaned = clean(value, 0);
  if (maxLength === Number.POSITIVE_INFINITY || cleaned === undefined) return cleaned;
  const text = JSON.stringify(cleaned);
  return text.length <= maxLength ? cleaned : `${storableText(text, Math.max(0, maxLength - 1))}…`;
}
