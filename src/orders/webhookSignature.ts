import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Provider webhooks are signed like Stripe's: header
 * `Fulfilment-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
 * The timestamp is inside the MAC, so an old delivery cannot be replayed with
 * a fresh time; deliveries older than the tolerance are refused, and the event
 * id makes a replay inside the window a no-op.
 *
 * Secrets are rotated as Stripe's are: a provider may send several `v1`
 * signatures in one header (one per secret it signs with while it rotates),
 * and we may hold the previous secret beside the current one
 * (FULFILMENT_WEBHOOK_SECRET_PREVIOUS); a delivery is genuine when any of its
 * `v1` signatures is the MAC under any of our secrets.
 */
export const SIGNATURE_HEADER = 'fulfilment-signature';

export function signWebhook(secret: string, timestampSeconds: number, rawBody: string): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${rawBody}`).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

/**
 * The header's timestamp and `v1` signatures; undefined when it is malformed:
 * not exactly one `t` (a whole number), no `v1`, or a `v1` that is not 64
 * lowercase hex digits. Other schemes (`v0`…) and parts without `=` are not
 * ours to read and are skipped.
 */
function parseSignatureHeader(header: string): { timestamp: number; signedTimestamp: string; signatures: Buffer[] } | undefined {
  const timestamps: string[] = [];
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === 't') timestamps.push(value);
    else if (key === 'v1') signatures.push(value);
  }
  const timestamp = timestamps.length === 1 && /^\d+$/.test(timestamps[0]!) ? Number(timestamps[0]) : Number.NaN;
  if (!Number.isSafeInteger(timestamp) || signatures.length === 0 || !signatures.every((given) => /^[0-9a-f]{64}$/.test(given))) return undefined;
  // The MAC covers `t` as the header carries it (its digits, leading zeros
  // too), as the provider signed it — not the number read from it.
  return { timestamp, signedTimestamp: timestamps[0]!, signatures: signatures.map((given) => Buffer.from(given, 'hex')) };
}

export function verifyWebhookSignature(
  /** The secrets a genuine delivery may be signed with (the current one, and the previous one during a rotation); none: webhooks are off. */
  secrets: readonly string[],
  header: string | undefined,
  /** The body as received: its bytes (a string is taken as its UTF-8 bytes). */
  rawBody: string | Buffer,
  nowSeconds: number,
  toleranceSeconds: number,
): SignatureCheck {
  if (secrets.length === 0) return { ok: false, reason: 'webhooks are not configured (FULFILMENT_WEBHOOK_SECRET is unset)' };
  if (!header) return { ok: false, reason: `missing ${SIGNATURE_HEADER} header` };
  const parsed = parseSignatureHeader(header);
  if (!parsed) return { ok: false, reason: 'malformed signature header' };
  if (Math.abs(nowSeconds - parsed.timestamp) > toleranceSeconds) return { ok: false, reason: 'signature timestamp outside the tolerance (replay?)' };
  let matches = false;
  for (const secret of secrets) {
    // Over the bytes received, not their decoding: a byte order mark or bytes
    // that are not UTF-8 are signed like any other byte.
    const expected = createHmac('sha256', secret).update(`${parsed.signedTimestamp}.`).update(rawBody).digest();
    // Every pair is compared, in constant time each: how long this takes
    // does not say which signature, or which secret, matched.
    for (const given of parsed.signatures) matches = timingSafeEqual(expected, given) || matches;
  }
  if (!matches) return { ok: false, reason: 'signature does not match' };
  return { ok: true };
}
