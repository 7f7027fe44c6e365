/**
 * The public keys verify may show (src/checks/collect.ts knownPublicKeys: every node's own keys and its live peers'
 * keys) are read from each node's LivePeerTable when its peers are kept as numbers (CollectOptions.compact), not from
 * a LivePeer made per peer only to be dropped (issue 10: ~1e6 at 1,000 nodes): the same set, no peer made; a `peers`
 * set anew after the table (a plain value) is what is read.
 */
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { knownPublicKeys } from '../../src/checks/collect.js';
import { LivePeerTable, peersFrom, peerTableOf, sharedText, TextTable } from '../../src/checks/live-peers.js';
import type { NodeChecklist } from '../../src/checks/probes.js';
import type { LivePeer } from '../../src/render/wgdump.js';

const key = (i: number) => Buffer.alloc(32, i).toString('base64');
const peer = (i: number): LivePeer =>
  ({ publicKey: key(i), hasPresharedKey: i % 3 === 0, allowedIps: [`100.80.0.${i}/32`], rxBytes: i, txBytes: 2 * i }) as LivePeer;

/** Three nodes' checklists holding only what knownPublicKeys reads, each with 40 live peers (keys 0-59, shared). */
function checklists(): Map<string, NodeChecklist> {
  return new Map(
    [0, 1, 2].map((n) => [
      `n${n}`,
      {
        livePublicKey: key(200 + n),
        ...(n === 1 ? { filePublicKey: key(210) } : {}),
        peers: Array.from({ length: 40 }, (_, i) => peer(n * 10 + i)),
      } as unknown as NodeChecklist,
    ]),
  );
}

describe('knownPublicKeys reads the live peers kept as numbers without making them', () => {
  it('LivePeerTable.publicKeys is the peers read back, key for key', () => {
    const peers = Array.from({ length: 300 }, (_, i) => peer(i % 120));
    const table = new LivePeerTable(peers, new TextTable(), sharedText());
    assert.deepEqual(
      table.publicKeys(),
      table.peers().map((p) => p.publicKey),
    );
    assert.deepEqual(
      table.publicKeys(),
      peers.map((p) => p.publicKey),
    );
    assert.deepEqual(new LivePeerTable([], new TextTable(), sharedText()).publicKeys(), []);
  });

  it('gives the same keys from tables as from plain peers, and makes no peer', () => {
    const publicKeys = new Map([['n0', key(250)]]);
    const plain = checklists();
    const want = knownPublicKeys({ publicKeys, checklists: plain });
    assert.equal(want.size, 1 + 3 + 1 + 60);
    const compact = checklists();
    const texts = new TextTable();
    const shared = sharedText();
    const reads: Array<{ mock: { callCount(): number } }> = [];
    for (const cl of compact.values()) {
      const table = new LivePeerTable(cl.peers, texts, shared);
      peersFrom(cl, 'peers', table);
      assert.equal(peerTableOf(cl), table);
      reads.push(mock.method(table, 'peers'));
    }
    assert.deepEqual([...knownPublicKeys({ publicKeys, checklists: compact })].sort(), [...want].sort());
    // the old code read every node's `peers` getter: a LivePeer made per peer
    assert.deepEqual(
      reads.map((r) => r.mock.callCount()),
      [0, 0, 0],
    );
  });

  it('reads a `peers` set anew after the table (the table is no longer what the node holds)', () => {
    const cls = checklists();
    const cl = cls.get('n2')!;
    peersFrom(cl, 'peers', new LivePeerTable(cl.peers, new TextTable(), sharedText()));
    Object.defineProperty(cl, 'peers', { value: [peer(99)], enumerable: true, configurable: true, writable: true });
    assert.equal(peerTableOf(cl), undefined);
    const known = knownPublicKeys({ publicKeys: new Map(), checklists: cls });
    assert.ok(known.has(key(99)));
    assert.ok(!known.has(key(59)), 'a key only the replaced table held');
  });
});
