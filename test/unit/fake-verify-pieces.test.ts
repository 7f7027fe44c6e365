/**
 * The in-process bench's fake converged node (scripts/bench/farm/fake-verify-node.ts) hands its answers on in pieces,
 * as ssh2 does, made piece by piece (so the fakes hold no node's whole answer, and what is in flight in the bench is
 * meshctl's): the pieces must join to the answers it made whole before (the first script's, with and without uid,
 * and the ping round's, the same text as the fixtures' serialisers give: copied here from the fake as it was), no
 * piece much over PIECE, the result's stdout the joined pieces, or empty under discardStdout.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it, mock } from 'node:test';
import { firstScript, pingTargets } from '../../src/checks/collect.js';
import { pingParamsFor } from '../../src/checks/ping-matrix.js';
import { pingProbe } from '../../src/checks/probes.js';
import { peersWithClock } from '../../src/facts/lean.js';
import type { RunOptions } from '../../src/transport/types.js';
import { type ConvergedFarm, ConvergedNode, PIECE } from '../../scripts/bench/farm/fake-verify-node.js';
import { checklistStdout, dumpLines, pingStdout } from '../fixtures/probes/homelab.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

const NOW_MS = 1_700_000_000_123;
const section = (name: string, body: string, rc = 0) => `@@meshctl begin ${name}\n${body}\n@@meshctl end ${name} rc=${rc}\n`;
const PRE_SECTIONS = new Set(['now', 'pubkey', 'port', 'dump', 'udpsnmp']);
function sectionsOf(stdout: string): Array<{ name: string; text: string }> {
  const re = /^@@meshctl begin (\S+)\n[\s\S]*?^@@meshctl end \1 rc=\d+\n/gm;
  return [...stdout.matchAll(re)].map((m) => ({ name: m[1]!, text: m[0] }));
}

/** The fake's answers as it made them before (whole strings), from a farm of its own (its own UDP counters). */
function before(farm: ConvergedFarm, node: string, script: string): string {
  const now = Math.floor(NOW_MS / 1000);
  if (script.includes("begin pre-done'")) {
    const n = farm.state(node, now);
    const pre = [
      ...(script.includes("begin uid'") ? [section('uid', '0')] : []),
      section('now', String(now)),
      section('pubkey', n.livePublicKey!),
      section('port', String(n.listenPort)),
      section('dump', dumpLines(n.peers)),
      farm.udp(node, 'udpsnmp'),
      section('pre-done', ''),
    ].join('');
    const peerIps = farm.inventory.nodes.filter((p) => p.name !== node).map((p) => p.overlayIp);
    const meta = section(
      'confmeta',
      `exists=yes\nsha256=${createHash('sha256').update(n.config!).digest('hex')}\nprivatekeylines=0\npresharedkeylines=0`,
    );
    const rest = sectionsOf(checklistStdout(n, peerIps))
      .filter((s) => !PRE_SECTIONS.has(s.name))
      .map((s) => (s.name === 'done' ? section('checklist-done', '') : s.name === 'confmeta' ? meta : s.text))
      .join('');
    return pre + rest;
  }
  const ips = [...script.matchAll(/\d+\.\d+\.\d+\.\d+/g)].map((m) => m[0]);
  const n = farm.state(node, now);
  return pingStdout(
    Object.fromEntries([...new Set(ips)].map((ip) => [ip, { received: 3, rtt: 0.1 }])),
    n.peers.map((p) => ({ ...p, latestHandshake: now - 1 })),
    now,
    farm.inventory.mesh.mtu - 28,
  );
}

async function answer(farm: ConvergedFarm, node: string, script: string, discard: boolean) {
  const pieces: string[] = [];
  const options: RunOptions = { onStdout: (piece) => pieces.push(piece), ...(discard ? { discardStdout: true } : {}) };
  const result = await new ConvergedNode(node, farm).run(script, options);
  return { pieces, stdout: result.stdout };
}

describe("the bench's fake converged node answers in pieces", () => {
  it('the first script (with and without uid) and the ping round: the same text as made whole, in pieces of about 32 KB', async () => {
    mock.method(Date, 'now', () => NOW_MS);
    try {
      await withConvergedFarm(150, async (inventory, farm) => {
        await withConvergedFarm(150, async (_same, reference) => {
          for (const node of [inventory.nodes[0]!.name, inventory.nodes.at(-1)!.name]) {
            const ping = pingProbe(
              pingParamsFor(node, pingTargets(inventory), { mtu: inventory.mesh.mtu, after: peersWithClock(inventory.mesh.interface) }),
            ).script;
            for (const script of [firstScript(inventory, node, { uid: true }), firstScript(inventory, node), ping]) {
              const expected = before(reference, node, script);
              const kept = await answer(farm, node, script, false);
              const joined = kept.pieces.join('');
              if (joined !== expected) {
                let i = 0;
                while (joined[i] === expected[i]) i++;
                assert.fail(
                  `differ at ${i}: ${JSON.stringify(joined.slice(i - 80, i + 80))} vs ${JSON.stringify(expected.slice(i - 80, i + 80))}`,
                );
              }
              assert.equal(kept.stdout, expected);
              assert.ok(kept.pieces.length >= 2, `${kept.pieces.length} pieces`);
              for (const piece of kept.pieces) assert.ok(piece.length < PIECE + 2048, `a piece of ${piece.length}`);
              const discarded = await answer(farm, node, script, true);
              assert.equal(discarded.pieces.join(''), before(reference, node, script));
              assert.equal(discarded.stdout, '');
            }
          }
        });
      });
    } finally {
      mock.restoreAll();
    }
  });
});
