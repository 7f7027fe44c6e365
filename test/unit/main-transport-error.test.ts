/**
 * Q9 F-down-eth0's last part: a connection lost while `down` ran reached main as an internal error with a stack trace
 * (`meshctl: internal error: TransportError: ms-1 (...): connection lost: Keepalive timeout\n    at Client...`, exit
 * 70). main now says the node and why, and exits 3 (could not reach a node).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reportFailure } from '../../src/main.js';
import { TransportError } from '../../src/transport/types.js';
import { ExitCode } from '../../src/errors.js';

function stderrOf(fn: () => number): { code: number; text: string } {
  const write = process.stderr.write.bind(process.stderr);
  let text = '';
  process.stderr.write = ((chunk: string) => {
    text += chunk;
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: fn(), text };
  } finally {
    process.stderr.write = write;
  }
}

test('a lost connection no command handled: the node and why, exit 3, no stack trace', () => {
  const lost = new TransportError('ms-1', 'ms-1 (root@192.168.15.2:22): connection lost: Keepalive timeout', 'timeout');
  const { code, text } = stderrOf(() => reportFailure(lost));
  assert.equal(code, ExitCode.connect);
  assert.match(text, /^meshctl: ms-1 \(root@192\.168\.15\.2:22\): connection lost: Keepalive timeout\n {2}the command stopped there/);
  assert.doesNotMatch(text, /internal error|\n\s+at /);
});

test('anything else is still an internal error with its stack (exit 70)', () => {
  const { code, text } = stderrOf(() => reportFailure(new TypeError('x is undefined')));
  assert.equal(code, ExitCode.internal);
  assert.match(text, /^meshctl: internal error: TypeError: x is undefined\n\s+at /);
});
