/**
 * The first-contact round (src/checks/ping-matrix.ts FIRST_CONTACT) must outlast one WireGuard handshake retry.
 * Right after `up` changed both ends of a pair, the dialer's first initiation (sent as soon as its PersistentKeepalive
 * is set) can reach the other end before that end has the peer; WireGuard retries it REKEY_TIMEOUT plus up to 1/3 s
 * of jitter later. With the old 3 s round the other end dialled back first in the matrix round; in the lab
 * (test/lab/relay.test.ts, site a: Linux DNAT + MASQUERADE) that flow clashed with the dialer's own in the router's
 * conntrack, a-1 roamed to a rewritten source port of p-2 (198.51.100.12:39600), and once the router lost that entry
 * a-1 could not reach p-2 at all (40 of 40 pings lost; a-2, at :51820, 40 of 40 answered).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runPingRound, type PingTarget } from '../../src/checks/ping-matrix.js';
import { REKEY_TIMEOUT_S } from '../../src/remote/wireguard.js';
import type { Connection, ExecResult } from '../../src/transport/types.js';

/** A connection that answers every script with nothing (exit 0) and records what it was sent. */
function recording(node: string, sent: Array<{ node: string; script: string }>): Connection {
  return {
    node,
    target: `root@${node}:22`,
    stats: { commands: 0, remoteMs: 0, connectMs: 0 },
    async run(script: string): Promise<ExecResult> {
      sent.push({ node, script });
      return { code: 0, stdout: '', stderr: '' } as ExecResult;
    },
    async close() {},
  };
}

const targets: PingTarget[] = [
  { node: 'a-1', ip: '172.27.40.11' },
  { node: 'p-2', ip: '172.27.40.42' },
];

test("the first-contact ping waits past WireGuard's handshake retry (REKEY_TIMEOUT + 1/3 s jitter + the answer)", async () => {
  const sent: Array<{ node: string; script: string }> = [];
  const connections = new Map(targets.map((t) => [t.node, recording(t.node, sent)]));
  await runPingRound(connections, targets, { firstContact: [{ from: 'a-1', to: 'p-2' }] });
  // the first script is the first-contact round's, on the dialer alone; then one matrix script per node
  assert.deepEqual(
    sent.map((s) => s.node),
    ['a-1', 'a-1', 'p-2'],
  );
  const deadlines = [...sent[0]!.script.matchAll(/\bping\b[^\n]* -w (\d+(?:\.\d+)?) /g)].map((m) => Number(m[1]));
  assert.ok(deadlines.length > 0, 'the first-contact script runs ping -w');
  for (const w of deadlines)
    assert.ok(w >= REKEY_TIMEOUT_S + 1, `first-contact ping -w ${w}: below REKEY_TIMEOUT_S + 1 (the retry comes too late)`);
});
