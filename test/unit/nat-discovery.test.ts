/**
 * NAT discovery through the mesh's public nodes (src/checks/nat-discovery.ts). The observers' output was captured
 * in the four-sites lab (nonce q1): site a's router preserves ports (a-2 got another port because a-1 took 51820
 * first: still one port for both observers), b's and the carrier's give a new port per destination.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadInventory } from '../../src/inventory/load.js';
import { parseWatchOutput } from '../../src/checks/forward-probe.js';
import {
  discoveryComplete,
  judgeNatMapping,
  natedNodes,
  natMappingOf,
  observersOf,
  runNatDiscovery,
  type NatDiscoveryReport,
} from '../../src/checks/nat-discovery.js';
import { connectionsOf, discoveryNetwork, landsRight, underlayNetwork } from '../support/fake-forward-probe.js';
import type { Inventory } from '../../src/inventory/types.js';

const inventory = loadInventory('inventories/four-sites.yaml');
const node = (name: string) => inventory.nodes.find((n) => n.name === name)!;
const captured = (observer: string) => parseWatchOutput(readFileSync(`test/fixtures/nat-discovery/observer-${observer}.txt`, 'utf8'));

const report = (inv: Inventory = inventory, extra: Partial<NatDiscoveryReport> = {}): NatDiscoveryReport => ({
  observers: ['p-1', 'p-2'],
  tokens: new Map(natedNodes(inv).map((n) => [n.name, `q1n${inv.nodes.indexOf(n).toString(36)}`])),
  seen: new Map([
    ['p-1', captured('p-1')],
    ['p-2', captured('p-2')],
  ]),
  unavailable: new Map(),
  ...extra,
});

describe('who takes part', () => {
  it('every node of a nat or lan site sends; the first two public nodes observe', () => {
    assert.deepEqual(
      natedNodes(inventory).map((n) => n.name),
      ['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'c-1'],
    );
    assert.deepEqual(
      observersOf(inventory).map((n) => n.name),
      ['p-1', 'p-2'],
    );
  });
});

describe('natMappingOf and judgeNatMapping (captured)', () => {
  it('site a: the public address of the inventory, one port for both destinations', () => {
    assert.deepEqual(natMappingOf(report(), 'a-2'), {
      arrived: new Map([
        ['p-1', '203.0.113.10:58623'],
        ['p-2', '203.0.113.10:58623'],
      ]),
      publicIp: '203.0.113.10',
      mapping: 'endpoint-independent',
    });
    const verdict = judgeNatMapping(report(), inventory, node('a-3'));
    assert.equal(verdict.status, 'pass');
    assert.equal(
      verdict.message,
      'site a: public address 203.0.113.10 (as in the inventory); endpoint-independent mapping (port 51830 -> 51830 for every destination)',
    );
  });

  it('sites b and c (carrier, two NATs deep): a port per destination is symmetric', () => {
    assert.equal(natMappingOf(report(), 'b-1').mapping, 'symmetric');
    const verdict = judgeNatMapping(report(), inventory, node('c-1'));
    assert.equal(verdict.status, 'pass');
    assert.equal(
      verdict.message,
      'site c: public address 203.0.113.30 (as in the inventory); symmetric mapping (port 51820 -> 38768 towards p-1, 14298 towards p-2)',
    );
    assert.deepEqual(verdict.evidence, [
      'c-1 sent UDP from port 51820 to p-1 and p-2',
      'p-1 saw it from 203.0.113.30:38768',
      'p-2 saw it from 203.0.113.30:14298',
    ]);
  });

  it('flags a public address that differs from the inventory: a STOP where the site has forwards, a warning where not', () => {
    const text = readFileSync('inventories/four-sites.yaml', 'utf8')
      .replace('publicIp: 203.0.113.10', 'publicIp: 203.0.113.11')
      .replace('publicIp: 203.0.113.20', 'publicIp: 203.0.113.21');
    const moved = loadInventory('moved.yaml', { text });
    const a = judgeNatMapping(report(moved), moved, moved.nodes.find((n) => n.name === 'a-1')!);
    assert.equal(a.status, 'fail');
    assert.match(
      a.message,
      /^site a: public address 203\.0\.113\.10, but the inventory says 203\.0\.113\.11 \(nat\.publicIp\): peers would dial 203\.0\.113\.11/,
    );
    const b = judgeNatMapping(report(moved), moved, moved.nodes.find((n) => n.name === 'b-1')!);
    assert.equal(b.status, 'warn');
  });

  it('warns when nothing arrived, with one observer says the mapping is not known, public nodes pass', () => {
    const none = judgeNatMapping(
      report(inventory, {
        seen: new Map([
          ['p-1', []],
          ['p-2', []],
        ]),
      }),
      inventory,
      node('b-1'),
    );
    assert.equal(none.status, 'warn');
    assert.match(none.message, /no datagram from b-1 \(UDP port 51820\) reached p-1 or p-2/);
    const one = judgeNatMapping(report(inventory, { observers: ['p-1'] }), inventory, node('b-1'));
    assert.match(one.message, /mapping not known \(one public node to observe from: port 51820 -> 4926 towards p-1\)/);
    assert.equal(judgeNatMapping(report(), inventory, node('p-1')).message, 'public: no NAT in front of this node');
    const down = judgeNatMapping(report(inventory, { unavailable: new Map([['p-2', 'no perl on this node']]) }), inventory, node('a-1'));
    assert.equal(down.status, 'warn');
  });
});

describe('runNatDiscovery on scripted connections', () => {
  it('each NATed node sends from its listen port to both observers; one command per node, over the open connections', async () => {
    const network = discoveryNetwork(
      inventory,
      (n, o) => `203.0.113.${n.site === 'a' ? 10 : 20}:${n.site === 'a' ? n.listenPort : o.name === 'p-1' ? 1111 : 2222}`,
    );
    const connections = await connectionsOf(inventory, network);
    const result = await runNatDiscovery(inventory, connections, { nonce: 'zz' });
    for (const connection of connections.values()) {
      assert.equal(connection.scripts.length, 1);
      assert.ok(!connection.closed, 'the run closes its connections, not the probe');
    }
    const a3 = connections.get('a-3')!.scripts[0]!;
    assert.ok(a3.trimEnd().endsWith('meshctl-forward-probe 51830 zzn2 198.51.100.11 51820 zzn2 198.51.100.12 51820'), a3.slice(-120));
    assert.equal(natMappingOf(result, 'a-3').mapping, 'endpoint-independent');
    assert.equal(natMappingOf(result, 'b-2').mapping, 'symmetric');
  });

  it('a node outside the run takes no part, and the nodes it concerns warn', async () => {
    const connections = await connectionsOf(
      inventory,
      discoveryNetwork(inventory, () => '203.0.113.10:51820'),
    );
    connections.delete('p-2');
    const result = await runNatDiscovery(inventory, connections, { nonce: 'zz' });
    assert.match(judgeNatMapping(result, inventory, node('a-1')).message, /NAT not discovered: p-2: not connected in this run/);
  });
});

describe('pacing (ProbeSession)', () => {
  it('ends the observers and every sender once each token reached each observer, not after the window', async () => {
    // scale 30: the scripted observers would listen a minute unless ended. No clock: how each script stopped is
    // asserted, which holds however loaded the machine is (a discovery that waited for the window fails)
    const stops: string[] = [];
    const network = underlayNetwork(inventory, landsRight, () => '203.0.113.10:51820', {
      scale: 30,
      onStop: (n, role, how) => stops.push(`${n.name} ${role} ${how}`),
    });
    const connections = await connectionsOf(inventory, network);
    const result = await runNatDiscovery(inventory, connections, { nonce: 'zz' });
    assert.ok(stops.length > 0);
    assert.deepEqual(
      stops.filter((s) => !s.endsWith(' ended')),
      [],
    );
    assert.deepEqual([...result.unavailable], []);
    assert.equal(natMappingOf(result, 'b-2').mapping, 'endpoint-independent');
  });

  it('discoveryComplete: every token seen by every observer', () => {
    const at = (token: string) => ({ token, source: '203.0.113.10:51820', destination: '198.51.100.11', destinationPort: 51820 });
    const complete = discoveryComplete(['zzn0', 'zzn1'], ['p-1', 'p-2']);
    assert.equal(
      complete(
        new Map([
          ['p-1', [at('zzn0'), at('zzn1')]],
          ['p-2', [at('zzn1'), at('zzn0')]],
        ]),
      ),
      true,
    );
    assert.equal(
      complete(
        new Map([
          ['p-1', [at('zzn0'), at('zzn1')]],
          ['p-2', [at('zzn1')]],
        ]),
      ),
      false,
    );
    assert.equal(complete(new Map([['p-1', [at('zzn0'), at('zzn1')]]])), false);
  });
});
