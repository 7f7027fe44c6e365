/**
 * Issue 10, the simulated farm: the ping round's deadlines follow MESHCTL_COMMAND_TIMEOUT like every other fixed
 * check deadline (src/transport/types.ts checkDeadlineMs). A node pinging its 999 peers on a loaded farm of 1,000
 * needs more than the fixed 24 s; the round must not call it "timed out" when the user raised the deadline.
 */
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runPingRound, type PingTarget } from '../../src/checks/ping-matrix.js';
import type { Connection, ExecResult, RunOptions } from '../../src/transport/types.js';

/** A connection that answers every script with nothing (exit 0) and records each run's deadline. */
function recording(node: string, deadlines: number[]): Connection {
  return {
    node,
    target: `root@${node}:22`,
    stats: { commands: 0, remoteMs: 0, connectMs: 0 },
    async run(_script: string, options: RunOptions = {}): Promise<ExecResult> {
      deadlines.push(options.timeoutMs ?? -1);
      return { code: 0, stdout: '', stderr: '' } as ExecResult;
    },
    async close() {},
  };
}

const targets: PingTarget[] = [
  { node: 'a', ip: '100.80.0.1' },
  { node: 'b', ip: '100.80.0.2' },
];

describe('ping round deadlines (src/checks/ping-matrix.ts)', () => {
  const saved = process.env.MESHCTL_COMMAND_TIMEOUT;
  afterEach(() => {
    if (saved === undefined) delete process.env.MESHCTL_COMMAND_TIMEOUT;
    else process.env.MESHCTL_COMMAND_TIMEOUT = saved;
  });

  it('the matrix round and the first-contact round get MESHCTL_COMMAND_TIMEOUT when it is longer', async () => {
    process.env.MESHCTL_COMMAND_TIMEOUT = '900';
    const deadlines: number[] = [];
    const connections = new Map(targets.map((t) => [t.node, recording(t.node, deadlines)]));
    await runPingRound(connections, targets, { firstContact: [{ from: 'a', to: 'b' }] });
    // one first-contact run (a dials b) and one matrix run per node; the old code sent 18 s and 22 s
    assert.deepEqual(deadlines, [900_000, 900_000, 900_000]);
  });

  it('without it, the fixed deadlines stay (never shortened)', async () => {
    delete process.env.MESHCTL_COMMAND_TIMEOUT;
    const deadlines: number[] = [];
    const connections = new Map(targets.map((t) => [t.node, recording(t.node, deadlines)]));
    await runPingRound(connections, targets, { firstContact: [{ from: 'a', to: 'b' }] });
    // the first-contact round waits as long as the matrix round (it must outlast one REKEY_TIMEOUT retry: ping-matrix.ts FIRST_CONTACT)
    assert.deepEqual(deadlines, [22_000, 22_000, 22_000]);
  });
});
