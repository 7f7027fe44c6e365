/**
 * up's verify phase when a node's ping script is cut short (timed out): its routes and peers were never printed, so
 * they must not be read as "no routes, no peers". Seen at 32 nodes on a loaded 2-core host (2026-11-30): every
 * route reported missing and "edge-1 is not a peer with its key" on a node whose pings to edge-1 had answered.
 * The replies are prefixes and copies of a real capture (test/fixtures/probes/ping-one-peer-down.txt).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadInventory } from '../../src/inventory/load.js';
import { runPingMatrix } from '../../src/engine/ping.js';
import type { MeshStepInput } from '../../src/engine/types.js';
import { FakeConnection } from '../support/fake-connection.js';

const capture = readFileSync(new URL('../fixtures/probes/ping-one-peer-down.txt', import.meta.url), 'utf8');
/** The capture's first ping and path-MTU sections (a healthy peer), as the script prints them. */
const healthy = capture.split('\n').slice(0, 10).join('\n');
const sectionFor = (ip: string) => healthy.replaceAll('172.27.15.11', ip);

const inventory = loadInventory(new URL('../../inventories/homelab.yaml', import.meta.url).pathname);
const ips = inventory.nodes.map((n) => n.overlayIp);

/** A finished script: every peer answered, then the routes, the peers and the clock, then `done`. */
function finished(self: string): string {
  const peers = ips.filter((ip) => ip !== self);
  return [
    ...peers.map(sectionFor),
    '@@meshctl begin routes',
    ...peers,
    '@@meshctl end routes rc=0',
    '@@meshctl begin dump',
    '@@meshctl end dump rc=0',
    '@@meshctl begin now',
    '1795376800',
    '@@meshctl end now rc=0',
    '@@meshctl begin done',
    '@@meshctl end done rc=0',
  ].join('\n');
}

function input(cutShort: string): MeshStepInput<'desired'> {
  const nodes = inventory.nodes.map((node) => {
    const reply =
      node.name === cutShort
        ? // timed out after its first peer's sections: no routes, no peers, no `done`
          { code: 124, stdout: `${sectionFor(ips.find((ip) => ip !== node.overlayIp)!)}\n`, stderr: 'meshctl: command timed out' }
        : { code: 0, stdout: finished(node.overlayIp) };
    const connection = new FakeConnection(node.name, [{ match: /ping/, reply }]);
    return { node, connection, values: {} as MeshStepInput<'desired'>['nodes'][number]['values'] };
  });
  return { inventory, nodes, changedSoFar: false, signal: new AbortController().signal };
}

describe('the verify phase after a cut-short ping script', () => {
  it('fails that node with the reason instead of reading its missing routes and peers as empty', async () => {
    const cut = inventory.nodes[0]!.name;
    const out = await runPingMatrix(input(cut));
    assert.equal(out.values.has(cut), false, 'no routes or peers are made up for the cut-short node');
    assert.match(out.errors.get(cut) ?? '', /timed out: its routes and handshakes after the pings were not read/);
    // its pings that did answer stay in the matrix
    const answered = Object.values(out.matrix!.cells[cut] ?? {}).filter((cell) => cell.ok);
    assert.equal(answered.length, 1);
  });

  it('reads the nodes whose scripts finished as before', async () => {
    const cut = inventory.nodes[0]!.name;
    const out = await runPingMatrix(input(cut));
    for (const node of inventory.nodes.slice(1)) {
      assert.equal(out.errors.has(node.name), false, node.name);
      const tunnel = out.values.get(node.name)!.tunnel;
      assert.equal(tunnel.routes.length, inventory.nodes.length - 1);
      assert.equal(tunnel.now, 1795376800);
    }
  });
});
