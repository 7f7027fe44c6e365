/**
 * The ping phase's second round for failed pairs (src/checks/ping-matrix.ts RECHECK), and the relay: auto decision
 * that reads its matrix (src/engine/fallback.ts failedDirectPairs). Seen in the 32-node lab (docs/ping-round.md):
 * after crossed handshake initiations a pair carried one direction only until WireGuard's own new handshake, 15 s
 * after the deaf end began sending, so the 7 s round failed it and `up` relayed a pair whose direct path worked.
 * Here, in inventories/homelab.yaml, a scripted mesh: ms-1/wk-1 answers only a round whose deadline outlasts that
 * timer (the late pair), wk-1/wk-2 never answers (the broken pair), every other pair answers at once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { runPingMatrix } from '../../src/engine/ping.js';
import { failedDirectPairs } from '../../src/engine/fallback.js';
import { KEEPALIVE_TIMEOUT_S, RECHECK, runPingRound } from '../../src/checks/ping-matrix.js';
import { REKEY_TIMEOUT_S } from '../../src/remote/wireguard.js';
import type { MeshStepInput } from '../../src/engine/types.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory(new URL('../../inventories/homelab.yaml', import.meta.url).pathname);
const nameOf = new Map(inventory.nodes.map((n) => [n.overlayIp, n.name]));
const LATE = 'ms-1 wk-1';
const BROKEN = 'wk-1 wk-2';
const pair = (a: string, b: string) => [a, b].sort().join(' ');

/** The deadline a ping script waits (ping -w or fping -t), seconds. */
const deadlineOf = (script: string) => {
  const w = /\bping -n -q -c \d+ -i [\d.]+ -w (\d+)/.exec(script);
  return Number(w?.[1]);
};

/** What node `self` prints for a ping script: each target answers unless its pair is broken, or late and the round short. */
function reply(self: string, script: string, trouble = { late: LATE, broken: BROKEN }): string {
  const ips = /^set -- (.*)$/m
    .exec(script)![1]!
    .split(' ')
    .map((ip) => ip.replaceAll("'", ''));
  const long = deadlineOf(script) >= KEEPALIVE_TIMEOUT_S + REKEY_TIMEOUT_S;
  const out: string[] = [];
  for (const ip of ips) {
    const key = pair(self, nameOf.get(ip)!);
    const answers = key !== trouble.broken && (key !== trouble.late || long);
    out.push(
      `@@meshctl begin ping:${ip}`,
      '',
      `--- ${ip} ping statistics ---`,
      answers
        ? '3 packets transmitted, 3 received, 0% packet loss, time 101ms'
        : '140 packets transmitted, 0 received, 100% packet loss, time 6990ms',
      ...(answers ? ['rtt min/avg/max/mdev = 0.400/0.500/0.600/0.050 ms'] : []),
      `@@meshctl end ping:${ip} rc=${answers ? 0 : 1}`,
    );
  }
  // the after sections the phase asks for (routes, the peer dump, the clock), as a finished script prints them;
  // the clock tells the rounds apart: 1 in the first, 2 in the second
  if (script.includes('@@meshctl begin now'))
    out.push(
      '@@meshctl begin routes',
      '@@meshctl end routes rc=0',
      '@@meshctl begin dump',
      '@@meshctl end dump rc=0',
      '@@meshctl begin now',
      long ? '2' : '1',
      '@@meshctl end now rc=0',
    );
  out.push('@@meshctl begin done', '@@meshctl end done rc=0');
  return out.join('\n');
}

function mesh(trouble = { late: LATE, broken: BROKEN }) {
  const connections = new Map(
    inventory.nodes.map((n) => [
      n.name,
      new FakeConnection(n.name, [{ match: /ping/, reply: (script) => ({ stdout: reply(n.name, script, trouble) }) }]),
    ]),
  );
  const input = (changedSoFar: boolean): MeshStepInput<'desired'> => ({
    inventory,
    nodes: inventory.nodes.map((node) => ({
      node,
      connection: connections.get(node.name)!,
      values: {} as MeshStepInput<'desired'>['nodes'][number]['values'],
    })),
    changedSoFar,
    signal: new AbortController().signal,
  });
  return { connections, input };
}

describe("the ping phase's second round for the pairs that failed", () => {
  it('after a change: the late pair passes and stays direct, the broken one still fails and is relayed', async () => {
    const { connections, input } = mesh();
    const out = await runPingMatrix(input(true));
    const cells = out.matrix!.cells;
    assert.equal(cells['ms-1']!['wk-1']!.ok, true, 'ms-1 -> wk-1 answered in the second round');
    assert.equal(cells['wk-1']!['ms-1']!.ok, true, 'wk-1 -> ms-1 too');
    assert.equal(cells['wk-1']!['wk-2']!.ok, false);
    assert.equal(cells['wk-2']!['wk-1']!.ok, false);
    // the decision relay: auto takes at the gate: only the pair that stayed broken
    assert.deepEqual(failedDirectPairs(inventory, out.matrix!), [BROKEN]);
    // a held node's routes and handshakes are the second round's (read after the new handshake), its row the merged one
    assert.equal(out.values.get('ms-1')!.tunnel.now, 2);
    assert.equal(out.values.get('ms-1')!.tunnel.row['wk-1']!.ok, true);
    // ctb-edge-1 answered everything at once: one script, read from the first round
    assert.equal(out.values.get('ctb-edge-1')!.tunnel.now, 1);
    // the second round pings exactly the failed pairs, both directions, with the deadline that outlasts the timer
    const second = (node: string) => connections.get(node)!.scripts.filter((s) => deadlineOf(s) === RECHECK.deadlineSeconds);
    const targetsOf = (script: string) =>
      /^set -- (.*)$/m
        .exec(script)![1]!
        .split(' ')
        .map((ip) => nameOf.get(ip.replaceAll("'", '')))
        .sort();
    assert.deepEqual(second('ms-1').map(targetsOf), [['wk-1']]);
    assert.deepEqual(second('wk-1').map(targetsOf), [['ms-1', 'wk-2']]);
    assert.deepEqual(second('wk-2').map(targetsOf), [['wk-1']]);
    assert.deepEqual(second('ctb-edge-1'), []);
  });

  it('says which pairs it pinged again and which answered', async () => {
    const { connections } = mesh();
    const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
    const round = await runPingRound(connections, targets, { recheck: true });
    assert.deepEqual(round.matrix.recheck?.pairs, [LATE, BROKEN]);
    assert.deepEqual(round.matrix.recheck?.answered, [LATE]);
  });

  it('a pair whose other end has no row (its ping script failed) is not listed as answered (RV-9)', async () => {
    // ms-1 -> wk-2 answers only in the long second round; wk-2's own ping script fails, so wk-2 has no row until
    // the failed row is filled in after the recheck: the pair's wk-2 -> ms-1 direction fails in the matrix
    const trouble = { late: pair('ms-1', 'wk-2'), broken: '' };
    const connections = new Map(
      inventory.nodes.map((n) => [
        n.name,
        new FakeConnection(n.name, [
          {
            match: /ping/,
            reply: (script) => {
              if (n.name === 'wk-2') throw new Error('connection closed by the remote side');
              return { stdout: reply(n.name, script, trouble) };
            },
          },
        ]),
      ]),
    );
    const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
    const round = await runPingRound(connections, targets, { recheck: true });
    const cells = round.matrix.cells;
    assert.equal(cells['ms-1']!['wk-2']!.ok, true, 'ms-1 -> wk-2 answered in the second round');
    assert.equal(cells['wk-2']!['ms-1']!.ok, false, 'wk-2 -> ms-1 failed: wk-2 pinged nothing');
    assert.deepEqual(round.matrix.recheck?.pairs, [pair('ms-1', 'wk-2')]);
    assert.deepEqual(round.matrix.recheck?.answered, [], 'a pair with a failed direction did not answer');
  });

  it('a healthy round has no second round', async () => {
    const { connections } = mesh({ late: '', broken: '' });
    const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
    const round = await runPingRound(connections, targets, { recheck: true });
    assert.equal(round.matrix.recheck, undefined);
    for (const c of connections.values()) assert.equal(c.scripts.length, 1, c.node);
  });

  it('a run that changed nothing keeps one round (its sessions are not new; the round ahead replays this step)', async () => {
    const { connections, input } = mesh();
    const out = await runPingMatrix(input(false));
    assert.equal(out.matrix!.cells['ms-1']!['wk-1']!.ok, false);
    for (const c of connections.values()) assert.equal(c.scripts.length, 1, c.node);
  });
});
