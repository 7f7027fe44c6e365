/**
 * The one place that writes a `--json` report to a stream (`up`, `plan`, `verify`): the text of
 * `JSON.stringify(value, null, indent)` and a newline, in chunks, never as one string.
 *
 * Why (issue 10): `up --json` at 1,000 nodes threw `RangeError: Invalid string length`: the report (every node's
 * plan, scripts and config diffs, the N x (N-1) matrix) is larger than the longest string V8 can make (2^29 - 24
 * characters), so JSON.stringify of the whole report cannot work at that size, whatever memory there is.
 *
 * How: @discoveryjs/json-ext's `stringifyChunked` (a maintained library with no dependencies of its own, in place of
 * the writer of our own this file was: the project takes a well-kept library before its own code) walks the value and yields its text
 * in chunks of about `highWaterMark` characters: a chunk is cut after the first member that takes it past that size,
 * so the longest is JSON_WRITE_CHUNK plus one member's own text (a primitive: one script, one diff line), not the report.
 * Its text is JSON.stringify's for what the reports hold (plain objects, arrays, strings, numbers, booleans, null;
 * a class instance by its own enumerable members, as JSON.stringify does), with two differences that no report
 * meets: it calls `toJSON()` without the member's key, and writes `null` where JSON.stringify returns undefined (a
 * top-level undefined or function).
 */
import { stringifyChunked } from '@discoveryjs/json-ext';

/** JSON.stringify's `space`: a number of spaces (at most 10) or a string (its first 10 characters). */
export type JsonIndent = number | string;

/** Something `process.stdout` and a file's write stream both are: write returns false when its buffer is full. */
export interface JsonSink {
  write(chunk: string): unknown;
  once?(event: 'drain' | 'close', listener: () => void): unknown;
  removeListener?(event: 'drain' | 'close', listener: () => void): unknown;
  /** true once the stream is closed or broke (a reader that went away): nothing more is written, nothing awaited */
  destroyed?: boolean;
}

/** The size in UTF-16 units at which stringifyChunked hands over a chunk (its `highWaterMark`): few writes, no large string. */
export const JSON_WRITE_CHUNK = 1 << 20;

/**
 * Writes `JSON.stringify(value, null, indent)` plus a final newline to `sink` in writes of about JSON_WRITE_CHUNK
 * characters, waiting for 'drain' when a write reports a full buffer. Resolves when everything was handed over, or
 * as soon as the sink is destroyed (its reader went away: the rest is dropped, never awaited).
 * Throws what JSON.stringify throws (a cycle, a BigInt: TypeError) when the walk reaches it; what was written before
 * stays written.
 */
export async function writeJson(sink: JsonSink, value: unknown, indent: JsonIndent = 2): Promise<void> {
  const write = async (chunk: string) => {
    if (sink.write(chunk) !== false || !sink.once || sink.destroyed) return;
    // a full buffer drains, or the stream closes (its reader went away: EPIPE); a destroyed stream never drains
    await new Promise<void>((resolve) => {
      const done = () => {
        sink.removeListener?.('drain', done);
        sink.removeListener?.('close', done);
        resolve();
      };
      sink.once!('drain', done);
      sink.once!('close', done);
    });
  };
  for (const chunk of stringifyChunked(value, { space: indent, highWaterMark: JSON_WRITE_CHUNK })) {
    if (sink.destroyed) return; // the reader went away: the rest of the report has nowhere to go
    await write(chunk);
  }
  if (!sink.destroyed) await write('\n');
}
