/**
 * writeJson (src/ui/json-text.ts, @discoveryjs/json-ext's stringifyChunked): captured reports written back byte for
 * byte, and a report longer than V8's longest string written through a stream that pushes back, in bounded writes.
 * (The same-bytes checks on a report built in the test and on JSON.stringify's odd cases are in
 * scale-cost-state.test.ts.)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { JSON_WRITE_CHUNK, writeJson } from '../../src/ui/json-text.js';

/** V8's longest string (2^29 - 24 UTF-16 units on 64-bit): JSON.stringify of anything longer throws RangeError. */
const V8_MAX_STRING = 2 ** 29 - 24;

/** What writeJson hands a plain sink, joined. */
async function written(value: unknown, indent: number | string): Promise<string> {
  const writes: string[] = [];
  await writeJson({ write: (chunk: string) => writes.push(chunk) > 0 }, value, indent);
  return writes.join('');
}

describe('writeJson on captured reports (test/fixtures/reports, made by capture.ts there)', () => {
  for (const file of ['up-cold-farm-6.json', 'up-dry-run-farm-6.json']) {
    it(`${file}: the bytes up --json printed, and JSON.stringify's for indents 0, 4 and a tab`, async () => {
      const text = readFileSync(`test/fixtures/reports/${file}`, 'utf8');
      const report = JSON.parse(text) as Record<string, unknown>;
      assert.ok(Object.keys(report).length > 5 && text.length > 20_000, 'a whole report, not a stub');
      assert.equal(await written(report, 2), text);
      for (const indent of [0, 4, '\t']) assert.equal(await written(report, indent), `${JSON.stringify(report, null, indent)}\n`);
    });
  }
});

describe('writeJson past V8 longest string (issue 10: up --json at 1,000 nodes threw RangeError)', () => {
  it('a report of 2,100 nodes with a 256 KiB script each (> 2^29 characters): written in full through a slow stream, no write over a chunk and one script', async () => {
    const script = 'x'.repeat(1 << 18); // shared by every action: the value stays small, its text does not
    const report = (n: number) => ({
      result: 'planned',
      phases: [{ name: 'config', nodes: Array.from({ length: n }, (_, i) => ({ node: `n-${1000 + i}`, actions: [{ script }] })) }],
    });
    // the text's length is a + b n (node names of the same length): from n = 1 and 2, predicted for 2,100
    const one = JSON.stringify(report(1), null, 2);
    const per = JSON.stringify(report(2), null, 2).length - one.length;
    const n = 2100;
    const expected = one.length + per * (n - 1) + 1;
    assert.ok(expected > V8_MAX_STRING, `${expected} characters: more than JSON.stringify can return`);

    // a stream that takes each chunk a turn of the event loop later, so writeJson must wait for 'drain'
    let total = 0;
    let longest = 0;
    let head = '';
    let tail = '';
    let waits = 0;
    const sink = new Writable({
      highWaterMark: 4 * JSON_WRITE_CHUNK,
      decodeStrings: false,
      write(chunk: string, _encoding, done) {
        total += chunk.length;
        longest = Math.max(longest, chunk.length);
        if (head.length < 200) head += chunk.slice(0, 200);
        tail = (tail + chunk.slice(-200)).slice(-200);
        setImmediate(done);
      },
    });
    sink.on('drain', () => waits++);
    await writeJson(sink, report(n), 2);
    await new Promise<void>((resolve) => sink.end(resolve));

    assert.equal(total, expected, 'every character written');
    assert.equal(head.slice(0, 200), one.slice(0, 200));
    assert.equal(tail, `${one.slice(-199)}\n`);
    // the proof that no string near the whole was made: each write is at most a chunk plus one member's text
    assert.ok(longest <= JSON_WRITE_CHUNK + script.length + 100, `longest write ${longest}`);
    assert.ok(waits > 0, 'writeJson waited for the stream to drain');
  });
});
