/**
 * JSON text written in pieces: the same bytes as `JSON.stringify(value, null, indent)`, never held as one string.
 *
 * Why (issue 10): `up --json` at 1,000 nodes threw `RangeError: Invalid string length`: the report (every node's
 * plan, scripts and config diffs, the N x (N-1) matrix) is larger than the longest string V8 can make (2^29 - 24
 * characters), so JSON.stringify of the whole report cannot work at that size, whatever memory there is.
 *
 * Why our own and not a library: @discoveryjs/json-ext's stringifyChunked (maintained, used by webpack) does the
 * same, and is what to use if this ever needs a replacer or cycles. It was not added here because a new dependency
 * needs the lead's agreement and package.json / package-lock.json belonged to another helper in that session
 * (/work/shared/design/dependencies.md); what the commands need is small: plain data (the reports are built from
 * object literals and arrays), no replacer, one indent.
 *
 * How: plain objects and arrays are walked member by member; a container whose members are all primitives, and any
 * other value (a string, a number, a Date, a class instance), is handed to JSON.stringify whole and its lines
 * indented to the depth it sits at (JSON text has no raw newline inside a string, so every "\n" in it is a line
 * break). So the largest piece is the largest such leaf (one script, one matrix cell), not the report.
 */

/** JSON.stringify's `space`: a number of spaces (at most 10) or a string (its first 10 characters). */
export type JsonIndent = number | string;

const indentText = (indent: JsonIndent): string =>
  typeof indent === 'number' ? ' '.repeat(Math.max(0, Math.min(10, Math.floor(indent)))) : indent.slice(0, 10);

const isContainer = (value: unknown): value is Record<string, unknown> | unknown[] => {
  if (Array.isArray(value)) return true;
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

/** The value JSON.stringify writes for `value` under `key` (toJSON applied, as JSON.stringify does first). */
function jsonValue(value: unknown, key: string): unknown {
  if (typeof value === 'object' && value !== null && typeof (value as { toJSON?: unknown }).toJSON === 'function')
    return (value as { toJSON(key: string): unknown }).toJSON(key);
  if (typeof value === 'bigint' && typeof (BigInt.prototype as { toJSON?: unknown }).toJSON === 'function')
    return (value as unknown as { toJSON(key: string): unknown }).toJSON(key);
  return value;
}

/** A member JSON.stringify leaves out of an object (and writes as null in an array). */
const omitted = (value: unknown): boolean => value === undefined || typeof value === 'function' || typeof value === 'symbol';

/** A container with no container inside: JSON.stringify writes it at once (its text is as small as its members). */
function flat(value: Record<string, unknown> | unknown[]): boolean {
  if (Array.isArray(value)) {
    for (const member of value) if (typeof member === 'object' && member !== null) return false;
    return true;
  }
  for (const key in value) if (Object.hasOwn(value, key) && typeof value[key] === 'object' && value[key] !== null) return false;
  return true;
}

/**
 * The pieces of `JSON.stringify(value, null, indent)`, in order; their concatenation is that text (undefined
 * values at the top give no piece, where JSON.stringify returns undefined). Throws what JSON.stringify throws
 * (a BigInt, a cycle: TypeError), the cycle when it is reached.
 */
export function* jsonPieces(value: unknown, indent: JsonIndent = 0): Generator<string> {
  const step = indentText(indent);
  const seen = new Set<object>();

  /** `v` already through jsonValue; `prefix` the indentation of the line it starts on */
  function* piece(v: unknown, prefix: string): Generator<string> {
    if (!isContainer(v) || flat(v)) {
      const text = JSON.stringify(v, null, step);
      if (text === undefined) return;
      yield step && prefix && text.includes('\n') ? text.replaceAll('\n', `\n${prefix}`) : text;
      return;
    }
    if (seen.has(v)) throw new TypeError('Converting circular structure to JSON');
    seen.add(v);
    const inner = prefix + step;
    const open = step ? `\n${inner}` : '';
    const colon = step ? ': ' : ':';
    if (Array.isArray(v)) {
      if (v.length === 0) yield '[]';
      else {
        yield `[${open}`;
        for (let i = 0; i < v.length; i++) {
          if (i > 0) yield `,${open}`;
          const member = jsonValue(v[i], String(i));
          if (omitted(member)) yield 'null';
          else yield* piece(member, inner);
        }
        yield `${step ? `\n${prefix}` : ''}]`;
      }
    } else {
      let first = true;
      for (const k of Object.keys(v)) {
        const member = jsonValue(v[k], k);
        if (omitted(member)) continue;
        yield `${first ? '{' : ','}${open}${JSON.stringify(k)}${colon}`;
        first = false;
        yield* piece(member, inner);
      }
      yield first ? '{}' : `${step ? `\n${prefix}` : ''}}`;
    }
    seen.delete(v);
  }

  yield* piece(jsonValue(value, ''), '');
}

/** Something `process.stdout` and a file's write stream both are: write returns false when its buffer is full. */
export interface JsonSink {
  write(chunk: string): unknown;
  once?(event: 'drain', listener: () => void): unknown;
}

/** The size in UTF-16 units at which pieces are gathered before a write (few writes, no large string). */
export const JSON_WRITE_CHUNK = 1 << 20;

/**
 * Writes `JSON.stringify(value, null, indent)` plus a final newline to `sink` in writes of about JSON_WRITE_CHUNK
 * characters, waiting for 'drain' when a write reports a full buffer. Resolves when everything was handed over.
 */
export async function writeJson(sink: JsonSink, value: unknown, indent: JsonIndent = 2): Promise<void> {
  let buffer = '';
  const flush = async () => {
    const chunk = buffer;
    buffer = '';
    if (sink.write(chunk) === false && sink.once) await new Promise<void>((resolve) => sink.once!('drain', resolve));
  };
  for (const piece of jsonPieces(value, indent)) {
    buffer += piece;
    if (buffer.length >= JSON_WRITE_CHUNK) await flush();
  }
  buffer += '\n';
  await flush();
}
