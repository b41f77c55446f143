/**
 * Header values as text. Node reads a header's bytes as Latin-1, one
 * character per byte, while most clients (curl, Go, Python, browsers'
 * fetch where it allows it) send text as UTF-8: `ключ` arrives as
 * `ÐºÐ»Ñ\x8eÑ\x87`, a text the client never meant and that the same key in a
 * JSON body (always UTF-8) never equals.
 */

// fatal: bytes that are not UTF-8 are not read as U+FFFD but leave the value
// as Latin-1; ignoreBOM: a leading U+FEFF is part of the text, as it is in a
// JSON string, not a byte-order mark to drop.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A header value as the text its client meant: its bytes read as UTF-8 when
 * they are UTF-8 (and not all ASCII, which reads the same either way),
 * otherwise as Latin-1, as Node read them — a client that sent `café` as
 * the byte E9 keeps `café`. A Latin-1 text whose bytes happen to form UTF-8
 * (`Ã©`, bytes C3 A9) reads as that UTF-8 (`é`): such texts are what UTF-8
 * clients send, not what anyone types.
 */
export function headerText(value: string): string {
  // Only bytes (characters up to U+00FF) came from the wire; anything else is already text.
  if (!/[\x80-\xff]/.test(value) || /[^\x00-\xff]/.test(value)) return value;
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

/**
 * A text as Node reads a header that carries it in UTF-8: its UTF-8 bytes as
 * Latin-1 characters (the text itself when it is ASCII). What storekeep kept
 * for such a header before headerText.
 */
export function utf8ReadAsLatin1(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/**
 * The values of each header line named `name` (lowercase), in the order they
 * came. Node joins repeated lines of most headers into one value (`a, b`),
 * which no client sent; the raw lines say what was.
 */
export function headerLineValues(rawHeaders: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let at = 0; at + 1 < rawHeaders.length; at += 2) if (rawHeaders[at]!.toLowerCase() === name) values.push(rawHeaders[at + 1]!);
  return values;
}
