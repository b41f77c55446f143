import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Provider webhooks are signed like Stripe's: header
 * `Fulfilment-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
 * The timestamp is inside the MAC, so an old delivery cannot be replayed with
 * a fresh time; deliveries older than the tolerance are refused, and the event
 * id makes a replay inside the window a no-op.
 */
export const SIGNATURE_HEADER = 'fulfilment-signature';

export function signWebhook(secret: string, timestampSeconds: number, rawBody: string): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${rawBody}`).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

export function verifyWebhookSignature(
  secret: string | undefined,
  header: string | undefined,
  /** The body as received: its bytes (a string is taken as its UTF-8 bytes). */
  rawBody: string | Buffer,
  nowSeconds: number,
  toleranceSeconds: number,
): SignatureCheck {
  if (!secret) return { ok: false, reason: 'webhooks are not configured (FULFILMENT_WEBHOOK_SECRET is unset)' };
  if (!header) return { ok: false, reason: `missing ${SIGNATURE_HEADER} header` };
  const parts = new Map(header.split(',').map((part) => part.trim().split('=', 2) as [string, string]));
  const timestamp = Number(parts.get('t'));
  const given = parts.get('v1');
  if (!Number.isSafeInteger(timestamp) || !given || !/^[0-9a-f]{64}$/.test(given)) return { ok: false, reason: 'malformed signature header' };
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { ok: false, reason: 'signature timestamp outside the tolerance (replay?)' };
  // Over the bytes received, not their decoding: a byte order mark or bytes
  // that are not UTF-8 are signed like any other byte.
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest();
  if (!timingSafeEqual(expected, Buffer.from(given, 'hex'))) return { ok: false, reason: 'signature does not match' };
  return { ok: true };
}
