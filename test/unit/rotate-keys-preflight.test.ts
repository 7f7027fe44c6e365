/**
 * Q8 F-rot-down: rotate-keys with one node's wg-quick stopped. Before: it rotated the first node anyway, failed on
 * the stopped peer with wg's raw "Protocol not supported", said INCOMPLETE / "may hold the new public key" (the peer's
 * file had the old key back) and advised a command that failed again. Now every node is checked read-only first
 * (rotationPreflight), and a failure that still happens mid-way says what is true. Over scripted fake connections
 * replying as lab x9's nodes did (wk-1 stopped: `wg show wg0 public-key` prints nothing, `wg set` fails with
 * "Unable to access interface: Protocol not supported").
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { judgeRotationPreflight, rotateNode, rotationPreflight, type PreflightRead } from '../../src/engine/rotate.js';
import { rotateKeysFake } from '../support/rotate-mesh.js';

const { inventory, names, keys, next, mesh: fakeMesh } = rotateKeysFake();

/** The homelab with `down` stopped (no interface): its reads print no live key, its wg commands fail as wg does. */
const mesh = (down: string, fileAfterRollback: 'old' | 'new' = 'old') => fakeMesh({ down, fileAfterRollback });

describe('rotate-keys: every node checked before any key changes (Q8 F-rot-down)', () => {
  it('a node whose interface is down: refused, naming it and `meshctl up`, with nothing but reads sent', async () => {
    const m = mesh('wk-1');
    const unfit = await rotationPreflight(m.ctx, new Set(names));
    assert.equal(unfit.length, 1, unfit.join('\n'));
    assert.match(unfit[0]!, /^wk-1: wg0 is not up \(wg show wg0 public-key printed no key: wg-quick@wg0 stopped/);
    assert.match(unfit[0]!, /run meshctl up first \(it starts wg-quick@wg0 on wk-1\)/);
    assert.deepEqual(m.order.sort(), names.map((n) => `${n}:read`).sort());
  });

  it('a healthy mesh passes; a rotated node running a pending key passes; a peer running another key does not', () => {
    const reads = new Map<string, PreflightRead>(names.map((n) => [n, { current: keys.get(n)!, live: keys.get(n)! }]));
    assert.deepEqual(judgeRotationPreflight(inventory, reads, new Set(names)), []);
    reads.set('ms-1', { current: keys.get('ms-1')!, live: next });
    assert.deepEqual(judgeRotationPreflight(inventory, reads, new Set(['ms-1'])), []);
    const lines = judgeRotationPreflight(inventory, reads, new Set(['wk-1']));
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^ms-1: wg0 runs the public key .* not .* of its key file \/etc\/wireguard\/wg0\.key: run meshctl up first/);
    reads.set('wk-2', { error: 'reading the keys of wk-2 failed (exit 1): no key file /etc/wireguard/wg0.key: run meshctl up first' });
    assert.match(judgeRotationPreflight(inventory, reads, new Set(['ms-1'])).join('\n'), /^wk-2: reading the keys of wk-2 failed/m);
  });

  it('mid-way, a peer that went down: its file has the old key back, so NOT ROTATED (rolled back), in words, with up first', async () => {
    const m = mesh('wk-1');
    const report = await rotateNode(m.ctx, inventory.nodes.find((n) => n.name === 'ms-1')!);
    assert.equal(report.outcome, 'rolled-back', report.error);
    assert.equal(report.newPublicKey, keys.get('ms-1'));
    assert.match(
      report.error!,
      /updating wk-1 failed \(exit 1\): the WireGuard interface is not up there .*wg said: Unable to access interface: Protocol not supported/,
    );
    assert.match(
      report.error!,
      /rolled back: every peer has its old public key again \(wk-1 in \/etc\/wireguard\/wg0\.conf only: its wg0 is not up\), ms-1 keeps it, \/etc\/wireguard\/wg0\.key\.new removed/,
    );
    assert.match(report.error!, /run meshctl up \(it starts wg-quick@wg0 on wk-1\), then meshctl rotate-keys ms-1$/);
    assert.doesNotMatch(report.error!, /may hold the new public key/);
    assert.ok(m.order.includes('ms-1:discard') && m.order.includes('ms-1:live(old)'), m.order.join(' '));
  });

  it('mid-way, a peer whose file still has the new key: INCOMPLETE, the new key kept', async () => {
    const m = mesh('wk-1', 'new');
    const report = await rotateNode(m.ctx, inventory.nodes.find((n) => n.name === 'ms-1')!);
    assert.equal(report.outcome, 'incomplete');
    assert.deepEqual(report.peersHoldingNewKey, ['wk-1']);
    assert.ok(!m.order.includes('ms-1:discard'));
  });
});
