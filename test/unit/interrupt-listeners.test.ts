/**
 * The interrupt signal is listened to by every remote command in flight (one or more per node): a mesh of more than
 * 10 nodes must not make Node print "MaxListenersExceededWarning" to the user (seen on a 100-node farm run).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

describe('interruptSignal', () => {
  it('takes a listener per command of a 100-node run without a warning on stderr', () => {
    const code = [
      "const { interruptSignal } = await import('./src/interrupt.ts');",
      'for (let i = 0; i < 200; i++) interruptSignal.addEventListener("abort", () => undefined);',
      'await new Promise((r) => setTimeout(r, 50));',
    ].join('\n');
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(result.status, 0, result.stderr);
    assert.doesNotMatch(result.stderr, /MaxListenersExceededWarning/);
  });
});

describe('stop signals (SIGTERM, SIGHUP) are handled as Ctrl-C', () => {
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(`${signal}: the first aborts interruptSignal (the run stops its remote work and releases its locks), the second exits 130`, () => {
      const code = [
        "const { installInterruptHandler, interruptSignal } = await import('./src/interrupt.ts');",
        'installInterruptHandler();',
        `process.kill(process.pid, '${signal}');`,
        'await new Promise((r) => setTimeout(r, 100));',
        'process.stdout.write(`aborted=${interruptSignal.aborted} ${interruptSignal.reason?.message}\\n`);',
        `process.kill(process.pid, '${signal}');`,
        'await new Promise((r) => setTimeout(r, 2000));',
        "process.stdout.write('still running\\n');",
      ].join('\n');
      const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      // before: node's default for the signal, death at the first one (status null), locks left on the nodes
      assert.equal(result.signal, null, `killed by ${result.signal}`);
      assert.equal(result.stdout, `aborted=true interrupted (${signal})\n`);
      assert.equal(result.status, 130);
    });
  }
});

describe('lab exec / lab run keep SIGTERM default (their child gets the signals itself)', () => {
  it('installInterruptHandler(["SIGINT"]): a SIGTERM ends the process at once, as `timeout N meshctl lab exec` needs', () => {
    const code = [
      "const { installInterruptHandler } = await import('./src/interrupt.ts');",
      "installInterruptHandler(['SIGINT']);",
      "process.kill(process.pid, 'SIGTERM');",
      'await new Promise((r) => setTimeout(r, 2000));',
      "process.stdout.write('still running\\n');",
    ].join('\n');
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(result.signal, 'SIGTERM');
    assert.equal(result.stdout, '');
  });
});
