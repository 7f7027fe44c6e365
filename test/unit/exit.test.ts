/**
 * Ending fast (issue 10): up, verify and plan leave as soon as main() returned and their output is flushed
 * (src/cli.ts, src/main.ts exitsWhenDone, src/exit.ts flushed); other commands end as node ends them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { exitsWhenDone } from '../../src/main.js';
import { flushed } from '../../src/exit.js';

test('only up, verify and plan exit as soon as they returned (lab manages processes of its own)', () => {
  const argv = (...words: string[]) => ['node', 'meshctl', ...words];
  assert.equal(exitsWhenDone(argv('up', '--yes', '--json', 'inv.yaml')), true);
  assert.equal(exitsWhenDone(argv('--no-color', 'verify', 'inv.yaml')), true);
  assert.equal(exitsWhenDone(argv('plan')), true);
  assert.equal(exitsWhenDone(argv('lab', 'run', '--name', 'x', '--', 'up', '--yes')), false);
  assert.equal(exitsWhenDone(argv('validate', 'inv.yaml')), false);
  assert.equal(exitsWhenDone(argv('--help')), false);
});

test('flushed() waits for what a stream still holds, and not for a stream with nothing queued', async () => {
  await flushed([new PassThrough()]); // an empty stream is flushed at once
  let release!: () => void;
  const slow = new Writable({ highWaterMark: 1, write: (_chunk, _enc, done) => (release = done) });
  slow.write('report');
  let done = false;
  const waiting = flushed([slow]).then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(done, false, 'the report is still queued');
  release();
  await waiting;
  assert.equal(done, true);
});
