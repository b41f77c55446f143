import { Ajv, type Options as AjvOptions } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { fullFormats } from 'ajv-formats/dist/formats.js';
import { isDayText, isMomentText, LOWERCASE, NFC, PATTERN_MESSAGE } from './schemas.js';

// Bodies are validated strictly: no type coercion ("5" is not 5) and unknown
// fields are an error, not silently dropped. Query strings and path params
// arrive as text, so those are coerced.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const isRfc3339DateTime = (fullFormats['date-time'] as { validate: (text: string) => boolean }).validate;
function makeAjv(options: AjvOptions): Ajv {
  // `verbose`: an error carries its keyword's schema, so the problem can say
  // what a `not` refused ("must not be 0", not "must NOT be valid").
  const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true, ...options });
  addFormats(ajv);
  // An annotation: the message of a `pattern` refusal (src/http/problem.ts).
  ajv.addKeyword({ keyword: PATTERN_MESSAGE, schemaType: 'string' });
  // `date`: a real calendar day in the years 1–9999, the days PostgreSQL's
  // `date` reads the same way (ajv-formats takes year 0, which PostgreSQL
  // refuses, and the refusal came back as a 400 without the field's path).
  ajv.addFormat('date', isDayText);
  // `date-time`: RFC 3339, as PostgreSQL's timestamptz reads it (year 0 and
  // offsets past ±15:59 are refused there, once answered at path `/`).
  ajv.addFormat('date-time', (text: string) => isRfc3339DateTime(text) && isMomentText(text));
  // `x-lowercase` (on UUIDs): the value is lowercased as it is validated, so
  // the code and the database see one spelling of an id (PostgreSQL answers
  // uuids in lowercase; a till that writes them in capitals names the same rows).
  ajv.addKeyword({
    keyword: LOWERCASE,
    type: 'string',
    schemaType: 'boolean',
    modifying: true,
    errors: false,
    validate: (enabled: boolean, data: string, _schema?: unknown, context?: { parentData: Record<string | number, unknown>; parentDataProperty: string | number }) => {
      if (enabled && context?.parentData !== undefined) context.parentData[context.parentDataProperty] = data.toLowerCase();
      return true;
    },
  });
  // `x-nfc` (on codes): the value is put in Unicode NFC as it is validated,
  // so two spellings of one text (a precomposed É, or E + a combining accent)
  // are one code for the uniqueness the database keeps. NFC may lengthen a
  // text (rarely): past the schema's maxLength it is refused here, not by the
  // table's CHECK.
  ajv.addKeyword({
    keyword: NFC,
    type: 'string',
    schemaType: 'boolean',
    modifying: true,
    validate: function nfc(
      enabled: boolean,
      data: string,
      parentSchema?: Record<string, unknown>,
      context?: { parentData: Record<string | number, unknown>; parentDataProperty: string | number; instancePath?: string },
    ) {
      if (!enabled || context?.parentData === undefined) return true;
      const normalized = data.normalize('NFC');
      const maxLength = typeof parentSchema?.maxLength === 'number' ? parentSchema.maxLength : undefined;
      if (maxLength !== undefined && [...normalized].length > maxLength) {
        (nfc as unknown as { errors: unknown[] }).errors = [{ keyword: NFC, message: `must not be longer than ${maxLength} characters in Unicode NFC`, params: {} }];
        return false;
      }
      context.parentData[context.parentDataProperty] = normalized;
      return true;
    },
  });
  return ajv;
}

/** For request bodies: strict (no coercion, unknown fields refused). One per app (its compiled schemas live as long as it). */
export const makeBodyAjv = (): Ajv => makeAjv({ coerceTypes: false, removeAdditional: false });
/** For query strings, params and headers: text, coerced. */
export const makeTextAjv = (): Ajv => makeAjv({ coerceTypes: 'array', removeAdditional: false });
