/**
 * rotate-keys (issue 9) over scripted fake connections: the order (read and generate, every peer updated with the
 * new public key, then the swap), what a peer that cannot be updated undoes, and the scripts' promises (the private
 * key is made and kept on the node, never printed). The lab proves it on real nodes (test/lab/rollback.test.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loadInventory } from '../../src/inventory/load.js';
import { rotateNode } from '../../src/engine/rotate.js';
import { parseRotateRead, rotateReadScript, swapKeyScript } from '../../src/steps/keys.js';
import { splitRotateArgs } from '../../src/commands/rotate-keys.js';
import { FakeConnection, type FakeRule } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/homelab.yaml');
const names = inventory.nodes.map((n) => n.name);
const key = () => randomBytes(32).toString('base64');
const keys = new Map(names.map((n) => [n, key()]));
const next = key();

function mesh(overrides: (node: string) => FakeRule[] = () => []) {
  const order: string[] = [];
  const rules = (node: string): FakeRule[] => [
    ...overrides(node),
    {
      match: /wg genkey/,
      reply: () => {
        order.push(`${node}:read+generate`);
        return { stdout: `current=${keys.get(node)}\nlive=${keys.get(node)}\nreused=no\nnext=${next}\n` };
      },
    },
    {
      match: /^set -e\numask 077\nif \[ ! -s/,
      reply: () => {
        order.push(`${node}:read`);
        return { stdout: `current=${keys.get(node)}\nlive=${keys.get(node)}\n` };
      },
    },
    {
      match: /wg addconf/,
      reply: (script) => {
        order.push(`${node}:update${script.includes(next) ? '(new)' : '(old)'}`);
        return { stdout: 'config=abc\n' };
      },
    },
    {
      match: /wg set wg0 private-key \/etc\/wireguard\/wg0\.key\.new/,
      reply: () => {
        order.push(`${node}:swap`);
        return { stdout: `live=${next}\n` };
      },
    },
    {
      match: /rm -f \/etc\/wireguard\/wg0\.key\.new/,
      reply: () => {
        order.push(`${node}:discard`);
        return {};
      },
    },
  ];
  const connections = new Map(names.map((n) => [n, new FakeConnection(n, rules(n))]));
  return { connections, order, ctx: { inventory, connections, signal: new AbortController().signal } };
}

describe('rotate-keys', () => {
  it('reads every node, updates every peer with the new public key, then swaps on the node', async () => {
    const m = mesh();
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.ok, true, report.error);
    assert.equal(report.newPublicKey, next);
    assert.equal(report.oldPublicKey, keys.get('ms-1'));
    assert.deepEqual(report.peersUpdated, ['wk-1', 'wk-2', 'ctb-edge-1']);
    assert.ok(typeof report.windowMs === 'number');
    const phase = (entry: string) => (entry.includes('read') ? 0 : entry.includes('update') ? 1 : 2);
    assert.deepEqual(
      m.order.map(phase),
      [...m.order.map(phase)].sort((a, b) => a - b),
      m.order.join(' '),
    );
    assert.deepEqual(m.order.filter((e) => e.includes('update')).sort(), [
      'ctb-edge-1:update(new)',
      'wk-1:update(new)',
      'wk-2:update(new)',
    ]);
    assert.equal(m.order.at(-1), 'ms-1:swap');
    // the peers' configs carry the new public key and not the old one
    const peerScript = m.connections.get('wk-1')!.scripts.find((s) => s.includes('wg addconf'))!;
    assert.ok(peerScript.includes(`PublicKey = ${next}`));
    assert.ok(!peerScript.includes(keys.get('ms-1')!));
  });

  it('a peer that cannot be updated: no swap, the updated peers get the old key back, the new key is discarded', async () => {
    const m = mesh((node) =>
      node === 'wk-2' ? [{ match: /wg addconf/, reply: { code: 1, stderr: 'Unable to modify interface: Protocol not supported' } }] : [],
    );
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.ok, false);
    assert.match(report.error!, /not rotated: updating wk-2 failed \(exit 1\): Unable to modify interface/);
    assert.ok(!m.order.includes('ms-1:swap'));
    assert.ok(m.order.includes('wk-1:update(old)') && m.order.includes('ctb-edge-1:update(old)'), m.order.join(' '));
    assert.ok(m.order.includes('ms-1:discard'));
  });

  it('the scripts make the key on the node under umask 077 and print only public keys', () => {
    const read = rotateReadScript('wg0', { generate: true });
    assert.ok(read.indexOf('umask 077') < read.indexOf('wg genkey'));
    assert.match(read, /wg genkey > \/etc\/wireguard\/wg0\.key\.new\.meshctl-tmp/);
    assert.doesNotMatch(read, /cat [^\n]*wg0\.key/);
    assert.doesNotMatch(rotateReadScript('wg0', { generate: false }), /genkey/);
    const swap = swapKeyScript('wg0', ['172.27.15.11']);
    assert.ok(swap.indexOf('wg set wg0 private-key') < swap.indexOf('mv -f /etc/wireguard/wg0.key.new /etc/wireguard/wg0.key'));
    assert.throws(() => parseRotateRead('current=not-a-key\n'), /no valid public key/);
    assert.deepEqual(parseRotateRead(`current=${next}\nlive=\n`), { current: next, reused: false });
  });

  it('splits the arguments: an inventory file first, then nodes', () => {
    assert.deepEqual(
      splitRotateArgs(['inv.yaml', 'ms-1'], () => false),
      { inventory: 'inv.yaml', nodes: ['ms-1'] },
    );
    assert.deepEqual(
      splitRotateArgs(['ms-1', 'wk-1'], () => false),
      { nodes: ['ms-1', 'wk-1'] },
    );
    assert.deepEqual(
      splitRotateArgs(['mesh.conf', 'ms-1'], (p) => p === 'mesh.conf'),
      { inventory: 'mesh.conf', nodes: ['ms-1'] },
    );
    assert.deepEqual(
      splitRotateArgs([], () => false),
      { nodes: [] },
    );
  });
});
