/** A UTF-16 surrogate without its pair. */
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

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
  return cut.replace(UNPAIRED_SURROGATE, '\ufffd').replace(/\u0000/g, '\ufffd');
}
