/**
 * rotate-keys (issue 9) over scripted fake connections: the order (read and generate, every peer updated with the
 * new public key, then the swap), what a peer that cannot be updated undoes, and the scripts' promises (the private
 * key is made and kept on the node, never printed). The lab proves it on real nodes (test/lab/rollback.test.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rotateNode } from '../../src/engine/rotate.js';
import { parseRotateRead, rotateReadScript, swapKeyScript } from '../../src/steps/keys.js';
import { describeRotation, splitRotateArgs } from '../../src/commands/rotate-keys.js';
import { rotateKeysFake, type RotateMeshOptions } from '../support/rotate-mesh.js';

const { inventory, keys, next, mesh: fakeMesh } = rotateKeysFake();

/** The homelab's fake nodes (../support/rotate-mesh.ts), a node's own rules tried first. */
const mesh = (overrides?: RotateMeshOptions['overrides']) => fakeMesh(overrides ? { overrides } : {});

describe('rotate-keys', () => {
  it('reads every node, runs the new key on the node, updates every peer with it, then replaces the key file', async () => {
    const m = mesh();
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.ok, true, report.error);
    assert.equal(report.outcome, 'rotated');
    assert.equal(report.interrupted, false);
    assert.equal(report.newPublicKey, next);
    assert.equal(report.oldPublicKey, keys.get('ms-1'));
    assert.deepEqual(report.peersUpdated, ['wk-1', 'wk-2', 'ctb-edge-1']);
    assert.ok(typeof report.windowMs === 'number');
    const phase = (entry: string) => (entry.includes('read') ? 0 : entry.includes('live(new)') ? 1 : entry.includes('update') ? 2 : 3);
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
    assert.ok(m.order.includes('ms-1:live(new)') && !m.order.some((e) => e.includes('(old)')), m.order.join(' '));
    // the peers' configs carry the new public key and not the old one
    const peerScript = m.connections.get('wk-1')!.scripts.find((s) => s.includes('wg addconf'))!;
    assert.ok(peerScript.includes(`PublicKey = ${next}`));
    // and start the handshake with the node's new key at once
    assert.match(peerScript, /ping -n -c 1 -W 1 172\.27\.15\.12 /);
    assert.ok(!peerScript.includes(`PublicKey = ${keys.get('ms-1')!}`));
  });

  it('a peer that cannot be updated: no swap, the updated peers get the old key back, the new key is discarded', async () => {
    // wk-2's sync fails after its file was written: it is given the old key back too
    const m = mesh((node) =>
      node === 'wk-2'
        ? [
            {
              match: new RegExp(`PublicKey = ${next.replace(/[+/]/g, '\\$&')}[\\s\\S]*wg addconf`),
              reply: { code: 1, stderr: 'Unable to modify interface: Protocol not supported' },
            },
          ]
        : [],
    );
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.ok, false);
    assert.equal(report.outcome, 'rolled-back');
    assert.match(
      report.error!,
      /not rotated: updating wk-2 failed \(exit 1\): the WireGuard interface is not up there .*wg said: Unable to modify interface/,
    );
    assert.ok(!m.order.includes('ms-1:swap'));
    for (const peer of ['wk-1', 'wk-2', 'ctb-edge-1']) assert.ok(m.order.includes(`${peer}:update(old)`), m.order.join(' '));
    assert.ok(m.order.includes('ms-1:live(old)'), m.order.join(' '));
    assert.ok(m.order.includes('ms-1:discard'));
    assert.ok(
      m.order.indexOf('ms-1:discard') > Math.max(...['wk-1', 'wk-2', 'ctb-edge-1'].map((p) => m.order.indexOf(`${p}:update(old)`))),
    );
  });

  it('a peer that cannot be given the old key back: INCOMPLETE, and the new private key stays on the node', async () => {
    const m = mesh((node) =>
      node === 'wk-2' ? [{ match: /wg addconf/, reply: { code: 255, stderr: 'connection closed by the remote side' } }] : [],
    );
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'incomplete');
    assert.deepEqual(report.peersHoldingNewKey, ['wk-2']);
    assert.match(report.error!, /the rollback did not reach wk-2 .*wg0\.key\.new stays on ms-1: run meshctl rotate-keys ms-1 again/);
    assert.ok(!m.order.includes('ms-1:discard'), m.order.join(' '));
    assert.ok(!m.order.includes('ms-1:swap'));
  });

  // Ctrl-C at each point of the rotation: the step in flight ends, then every node is in one consistent state
  it('Ctrl-C while the new key is made: no peer is changed, the new key file is removed', async () => {
    const m = mesh((node, abort) =>
      node === 'ms-1'
        ? [
            {
              match: /wg genkey/,
              reply: () => {
                abort();
                m.order.push('ms-1:read+generate');
                return { stdout: `current=${keys.get(node)}\nlive=${keys.get(node)}\nreused=no\nnext=${next}\n` };
              },
            },
          ]
        : [],
    );
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'not-rotated');
    assert.equal(report.interrupted, true);
    assert.ok(!m.order.some((e) => e.includes('update') || e.includes('swap')), m.order.join(' '));
    assert.ok(m.order.includes('ms-1:discard'), m.order.join(' '));
  });

  it('Ctrl-C after some peers were updated: the updates in flight end, then every peer gets the old key back', async () => {
    let release: () => void = () => undefined;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const m = mesh((node, abort) => {
      if (node === 'wk-1')
        return [
          {
            match: /wg addconf/,
            reply: (script) => {
              m.order.push(`wk-1:update${script.includes(`PublicKey = ${next}`) ? '(new)' : '(old)'}`);
              if (script.includes(`PublicKey = ${next}`)) {
                abort(); // wk-1 is updated, wk-2 still runs its update
                setImmediate(release);
              }
              return { stdout: 'config=abc\n' };
            },
          },
        ];
      if (node === 'wk-2')
        return [
          {
            match: /wg addconf/,
            reply: async (script) => {
              if (script.includes(`PublicKey = ${next}`)) await slow;
              m.order.push(`wk-2:update${script.includes(`PublicKey = ${next}`) ? '(new)' : '(old)'}`);
              return { stdout: 'config=abc\n' };
            },
          },
        ];
      return [];
    });
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'rolled-back', report.error);
    assert.equal(report.interrupted, true);
    assert.equal(report.newPublicKey, keys.get('ms-1'));
    assert.ok(!m.order.includes('ms-1:swap'), m.order.join(' '));
    for (const peer of ['wk-1', 'wk-2', 'ctb-edge-1']) {
      assert.ok(m.order.includes(`${peer}:update(new)`), m.order.join(' '));
      assert.ok(m.order.indexOf(`${peer}:update(old)`) > m.order.indexOf(`${peer}:update(new)`), m.order.join(' '));
    }
    assert.ok(m.order.indexOf('ms-1:discard') > m.order.indexOf('wk-2:update(old)'), m.order.join(' '));
    assert.ok(m.order.includes('ms-1:live(old)'), m.order.join(' '));
    assert.match(describeRotation(report), /^ms-1: NOT ROTATED \(interrupted\): not rotated: interrupted before the swap; rolled back/);
  });

  it('Ctrl-C once the node runs its new key, before the peers: the node runs its old key again, the new key file is removed', async () => {
    const m = mesh((node, abort) =>
      node === 'ms-1'
        ? [
            {
              match: /^set -e\nwg set wg0 private-key \/etc\/wireguard\/wg0\.key\.new\n/,
              reply: () => {
                abort();
                m.order.push('ms-1:live(new)');
                return { stdout: `live=${next}\n` };
              },
            },
          ]
        : [],
    );
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'rolled-back', report.error);
    assert.equal(report.interrupted, true);
    assert.ok(!m.order.some((e) => e.includes('update(new)') || e === 'ms-1:swap'), m.order.join(' '));
    // no peer was sent an update, so none is rewritten (a review: that applied inventory edits no `up` had planned)
    assert.ok(!m.order.some((e) => e.includes('update(old)')), m.order.join(' '));
    assert.ok(m.order.indexOf('ms-1:live(old)') > m.order.indexOf('ms-1:live(new)'), m.order.join(' '));
    assert.ok(m.order.includes('ms-1:discard'), m.order.join(' '));
  });

  it('Ctrl-C during the swap: the swap ends and the rotation is reported as done', async () => {
    const m = mesh((node, abort) =>
      node === 'ms-1'
        ? [
            {
              match: /mv -f \/etc\/wireguard\/wg0\.key\.new \/etc\/wireguard\/wg0\.key\n/,
              reply: () => {
                abort();
                m.order.push('ms-1:swap');
                return { stdout: `live=${next}\n` };
              },
            },
          ]
        : [],
    );
    const report = await rotateNode(m.ctx, inventory.nodes[0]!);
    assert.equal(report.outcome, 'rotated', report.error);
    assert.equal(report.ok, true);
    assert.equal(report.interrupted, true);
    assert.equal(report.newPublicKey, next);
    assert.ok(!m.order.some((e) => e.includes('(old)') || e.includes('discard')), m.order.join(' '));
  });

  it('a swap whose answer is lost: what the node runs decides (new key: rotated; old key: rolled back)', async () => {
    for (const [runs, outcome] of [
      [next, 'rotated'],
      [keys.get('ms-1')!, 'rolled-back'],
    ] as const) {
      const m = mesh((node) =>
        node === 'ms-1'
          ? [
              {
                match: /mv -f \/etc\/wireguard\/wg0\.key\.new \/etc\/wireguard\/wg0\.key\n/,
                reply: { code: 255, stderr: 'connection closed by the remote side' },
              },
              // the read after the swap (the first read, which makes the key, matches the mesh's own rule)
              { match: /^set -e\numask 077\nif \[ ! -s(?![\s\S]*genkey)/, reply: { stdout: `current=${runs}\nlive=${runs}\n` } },
            ]
          : [],
      );
      const report = await rotateNode(m.ctx, inventory.nodes[0]!);
      assert.equal(report.outcome, outcome, report.error);
      assert.equal(m.order.includes('ms-1:discard'), outcome === 'rolled-back');
    }
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
