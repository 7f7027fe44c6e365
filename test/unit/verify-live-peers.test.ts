/**
 * verify's facts kept as numbers (issue 10, src/checks/live-peers.ts): every node's live peers (a LivePeerTable) and
 * route lookups (a RouteRow) are read back as the values they were parsed into, field for field and in the same key
 * order; collectVerify with `compact` holds them so (getters) and gives the same facts as without; and the judging,
 * which reads a fresh array per read from them, gives the same checks as on plain arrays, on every fixture scenario
 * and where a designed peer is found by a prefix two live peers share (dump order decides: `indexOf`).
 */
import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { types } from 'node:util';
import { LivePeerTable, RouteLookups, RouteRow, sharedText, TextTable, peersFrom } from '../../src/checks/live-peers.js';
import { collectVerify, startFirst } from '../../src/checks/collect.js';
import { pingParamsFor, runPingRound } from '../../src/checks/ping-matrix.js';
import { PingOutputReader, pingReaderShared } from '../../src/checks/probes.js';
import type { Section } from '../../src/facts/sections.js';
import { evaluateVerify, evaluateVerifyCompact, renderedSha256, type VerifyFacts } from '../../src/checks/verify.js';
import { createHash } from 'node:crypto';
import { desiredMesh } from '../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { fakePublicKey } from '../../scripts/bench/farm/fake-node.js';
import { homelab } from '../fixtures/probes/homelab.js';
import { parseRouteGet, type RouteLookup } from '../../src/facts/definitions.js';
import type { LivePeer } from '../../src/render/wgdump.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';
import { seededRandom } from '../support/seeded-random.js';

/** The same value and the same key order at every level (JSON shows the order). */
const same = (got: unknown, want: unknown, what?: string) => {
  assert.deepStrictEqual(got, want, what);
  assert.equal(JSON.stringify(got), JSON.stringify(want), what);
};

/** `n` live peers as parseWgDumpPeers makes them, every optional field present or not, numbers up to 2^53. */
function generatedPeers(random: () => number, n: number): LivePeer[] {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const big = () => pick([0, 1, 92, 3380, 2 ** 31, 2 ** 32 + 7, Number.MAX_SAFE_INTEGER, Math.floor(random() * 1e12)]);
  const key = () => `${Buffer.from(Array.from({ length: 32 }, () => Math.floor(random() * 256))).toString('base64')}`;
  const keys = Array.from({ length: Math.max(1, n / 2) }, key);
  const ips = ['100.80.0.1/32', '100.80.0.2/32', '10.1.0.0/16', 'fd00::1/128'];
  return Array.from({ length: n }, () => {
    const peer = { publicKey: pick(keys), hasPresharedKey: random() < 0.3 } as LivePeer;
    if (random() < 0.7) peer.endpoint = pick(['198.51.100.7:51820', '[2001:db8::1]:51820', '203.0.113.9:40000']);
    peer.allowedIps = pick([[], [ips[0]!], [ips[1]!], [ips[0]!, ips[2]!], ips.slice()]);
    if (random() < 0.8) peer.latestHandshake = pick([1, 1795376844, 2 ** 32 + 1, big() || 5]);
    peer.rxBytes = big();
    peer.txBytes = big();
    if (random() < 0.4) peer.persistentKeepalive = pick([1, 25, 65535, 2 ** 40]);
    return peer;
  });
}

describe('live peers and route lookups kept as numbers read back as they were', () => {
  it('LivePeerTable: 2,000 generated dumps, the same peers field for field, in order, a fresh array per read', () => {
    const random = seededRandom(10);
    const texts = new TextTable();
    const shared = sharedText();
    for (let i = 0; i < 2000; i++) {
      const peers = generatedPeers(random, Math.floor(random() * 12));
      const table = new LivePeerTable(peers, texts, shared);
      assert.equal(table.length, peers.length);
      same(table.peers(), peers, `dump ${i}`);
      if (peers.length) assert.notEqual(table.peers()[0], table.peers()[0]);
    }
  });

  it('RouteRow: every lookup parseRouteGet makes, read back in the addresses order; has and get', () => {
    const ips = ['100.80.0.1', '100.80.0.2', '100.80.0.3', '100.80.0.4', '100.80.0.5'];
    const run = new RouteLookups(ips);
    const bodies: Array<[string, number]> = [
      ['[{"dst":"X","dev":"wg0","prefsrc":"100.80.0.3","flags":[],"uid":0,"cache":[]}]', 0],
      ['[{"dst":"X","gateway":"192.0.2.1","dev":"eth0","prefsrc":"192.0.2.10"}]', 0],
      ['[{"type":"unreachable","dst":"X"}]', 0],
      ['[]', 0],
      ['RTNETLINK answers: Network is unreachable', 2],
    ];
    for (let shift = 0; shift < bodies.length; shift++) {
      const row = new RouteRow(run, '100.80.0.3');
      const others = ips.filter((ip) => ip !== '100.80.0.3');
      const want: RouteLookup[] = others.map((ip, i) => {
        const [body, rc] = bodies[(i + shift) % bodies.length]!;
        return parseRouteGet(ip, { name: `route:${ip}`, body, rc });
      });
      assert.equal(row.asks('100.80.0.3'), false);
      for (const lookup of want.slice(1)) row.set(lookup);
      assert.equal(row.complete(), false);
      assert.equal(row.has(others[0]!), false);
      assert.equal(row.get(others[0]!), undefined);
      row.set(want[0]!);
      assert.ok(row.complete());
      same(row.lookups(), want);
      for (const [i, ip] of others.entries()) same(row.get(ip), want[i]);
    }
  });
});

describe('collectVerify with compact: the same facts, the peers and lookups kept as numbers', () => {
  it('24 fake converged nodes: every peers and routes field a getter, the values those of a plain collection', async () => {
    await withConvergedFarm(24, async (inventory, farm) => {
      // one clock for both (the nodes' clocks and handshakes are in the facts)
      mock.method(Date, 'now', () => 1_700_000_000_000);
      try {
        const options = { pathMtu: true, lazyConfig: true, countPasses: true };
        const plain = await collectVerify(inventory, farm.connections(), new Map(), options);
        const compact = await collectVerify(inventory, farm.connections(), new Map(), { ...options, compact: true });
        assert.equal(compact.checklists.size, 24);
        for (const [node, cl] of compact.checklists) {
          for (const field of ['peers', 'routes'] as const)
            assert.equal(typeof Object.getOwnPropertyDescriptor(cl, field)?.get, 'function', `${node} ${field}`);
          const want = plain.checklists.get(node)!;
          same(cl.peers, want.peers, node);
          same(cl.routes, want.routes, node);
          assert.equal(cl.peers.length, 23);
          const after = compact.afterPing?.get(node) ?? {};
          assert.equal(typeof Object.getOwnPropertyDescriptor(after, 'peers')?.get, 'function', node);
          same(after, plain.afterPing?.get(node), node);
        }
        // and the judging on them: the same verdicts (the timings aside)
        // the matrix's rows a slot per target, read as the same Records (keys, order, cells, JSON)
        same(compact.matrix, plain.matrix);
        for (const node of inventory.nodes) assert.ok(types.isProxy(compact.matrix?.cells[node.name]), node.name);
        const strip = (c: typeof plain) => ({ ...c, timings: undefined });
        assert.deepEqual(evaluateVerifyCompact(strip(compact)), evaluateVerifyCompact(strip(plain)));
      } finally {
        mock.restoreAll();
      }
    });
  });
});

/** `facts` with every checklist's and after-ping dump's peers in a LivePeerTable, read through a getter. */
function kept(facts: VerifyFacts): VerifyFacts {
  const texts = new TextTable();
  const shared = sharedText();
  for (const cl of facts.checklists.values()) peersFrom(cl, 'peers', new LivePeerTable(cl.peers, texts, shared));
  for (const after of facts.afterPing?.values() ?? []) peersFrom(after, 'peers', new LivePeerTable(after.peers, texts, shared));
  return facts;
}

describe('the judging on peers read as a fresh array per read', () => {
  for (const [name, make] of [['healthy', healthyScenario] as const, ...Object.entries(SCENARIOS)]) {
    it(name, () => {
      same(evaluateVerify(kept(factsFrom(make()))), evaluateVerify(factsFrom(make())));
      assert.deepEqual(evaluateVerifyCompact(kept(factsFrom(make())), { release: true }), evaluateVerifyCompact(factsFrom(make())));
    });
  }

  it('a designed peer found by a prefix two live peers share: the earlier one in the dump, as with plain arrays', () => {
    /** ctb-lan-1's first designed peer also carries its second's /32; its live key changed, and the second comes first */
    const facts = () => {
      const f = factsFrom(healthyScenario());
      const node = f.inventory.nodes[0]!.name;
      const d = f.desired.get(node)!;
      const [first, second] = d.peers as [(typeof d.peers)[number], (typeof d.peers)[number]];
      f.desired.set(node, { ...d, peers: [{ ...first, allowedIps: [...first.allowedIps, ...second.allowedIps] }, ...d.peers.slice(1)] });
      const cl = f.checklists.get(node)!;
      const liveFirst = cl.peers.find((p) => p.publicKey === first.publicKey)!;
      const liveSecond = cl.peers.find((p) => p.publicKey === second.publicKey)!;
      const changed = { ...liveFirst, publicKey: 'mI6NdNFsU8b5Cb9PqyKxgqGc8cUUq3gZx7HQXBJpFhQ=' };
      cl.peers = [liveSecond, changed, ...cl.peers.filter((p) => p !== liveFirst && p !== liveSecond)];
      return { f, node, first: first.name };
    };
    const plain = facts();
    const want = evaluateVerify(plain.f).filter((c) => c.node === plain.node && c.peer === plain.first);
    // the evidence names the live peer found: the second designed peer's, first in the dump
    assert.ok(
      want.some((c) => c.status !== 'pass' && c.evidence.some((e) => e.includes(plain.f.desired.get(plain.node)!.peers[1]!.publicKey))),
    );
    const compact = facts();
    same(
      evaluateVerify(kept(compact.f)).filter((c) => c.node === compact.node && c.peer === compact.first),
      want,
    );
  });
});

describe('what a node holds while its outputs arrive', () => {
  it("verify's first script: the pre part is told as soon as it is in, its dump's text then let go; the wg-quick file packed", async () => {
    await withConvergedFarm(6, async (inventory, farm) => {
      const told: string[] = [];
      const digested = new Map<string, string[]>();
      const runs = startFirst(inventory, farm.connections(), {
        uid: true,
        onPre: (node, sections) => {
          assert.ok(sections.get('dump')?.body.includes('\t'), node);
          told.push(node);
        },
        packConfig: true,
        digest: (node, result, output) => {
          digested.set(node, [...output.sections.keys()]);
          // the wg-quick file deflated as it arrived, not kept as text
          assert.ok(output.packed && output.packed.deflated.length > 0 && output.packed.rc === 0, node);
          return result;
        },
      });
      for (const [node, run] of runs) {
        const pre = await run.pre;
        assert.ok(told.includes(node), `${node}: told before its pre part resolved`);
        assert.ok(pre?.sections.has('pre-done') && !pre.sections.has('dump'), node);
        await run.whole;
        assert.ok(digested.get(node)?.includes('checklist-done'), node);
        assert.ok(!digested.get(node)?.includes('dump'), node);
        assert.ok(digested.get(node)?.includes('confmeta') && !digested.get(node)?.includes('conf'), node);
      }
    });
  });

  it('a ping reader keeps its results a slot per target, not a Map entry each', () => {
    const targets = Array.from({ length: 400 }, (_, i) => ({ node: `n${i}`, ip: `100.80.${i >> 8}.${i & 255}` }));
    const params = pingParamsFor('n0', targets, { mtu: 1420 });
    const reader = new PingOutputReader(params, pingReaderShared(targets));
    const sections: Section[] = params.targets.flatMap((t) => [
      {
        name: `ping:${t.ip}`,
        body: '3 packets transmitted, 3 received, 0% packet loss, time 2ms\nrtt min/avg/max/mdev = 0.1/0.2/0.3/0.1 ms',
        rc: 0,
      },
      { name: `mtu:${t.ip}`, body: 'expected=1392 largest=1392 tries=1392:ok', rc: 0 },
    ]);
    for (const section of sections) reader.add(section);
    const maps = Object.values(reader).filter((v): v is Map<unknown, unknown> => v instanceof Map);
    assert.ok(Math.max(0, ...maps.map((m) => m.size)) < 10, `Map sizes ${maps.map((m) => m.size)}`);
    const results = reader.results();
    assert.equal(results.ping.size, 399);
    assert.equal(results.mtu.size, 399);
    assert.deepEqual(results.ping.get('100.80.1.143'), {
      transmitted: 3,
      received: 3,
      loss: 0,
      rttMs: { min: 0.1, avg: 0.2, max: 0.3 },
      rc: 0,
    } as never);
  });
});

describe('a ping round whose rows are a slot per target (compactRows)', () => {
  it('the same matrix as plain rows, numeric node names ordered first as a plain object orders them; a cell set anew', async () => {
    await withConvergedFarm(30, async (inventory, farm) => {
      mock.method(Date, 'now', () => 1_700_000_000_000);
      try {
        const conns = farm.connections();
        const names = inventory.nodes.map((n, i) => (i % 3 === 0 ? n.name : String((i * 7) % 50)));
        const targets = inventory.nodes.map((n, i) => ({ node: names[i]!, ip: n.overlayIp }));
        const connections = new Map(inventory.nodes.slice(1).map((n, i) => [names[i + 1]!, conns.get(n.name)!]));
        const options = { mtu: inventory.mesh.mtu };
        const plain = await runPingRound(connections, targets, options);
        const compact = await runPingRound(connections, targets, { ...options, compactRows: true });
        same(compact.matrix, plain.matrix);
        for (const from of names) {
          const row = compact.matrix.cells[from]!;
          assert.ok(types.isProxy(row) && !types.isProxy(plain.matrix.cells[from]), from);
          assert.deepEqual(Object.keys(row), Object.keys(plain.matrix.cells[from]!), from);
          assert.deepEqual([...Object.entries(row)], [...Object.entries(plain.matrix.cells[from]!)], from);
          assert.equal(from in row, false);
          assert.equal(row[from], undefined);
          assert.equal(typeof row.hasOwnProperty, 'function');
        }
        const [a, b] = [names[1]!, names[2]!];
        const cell = { ok: false, loss: 100, transmitted: 3, received: 0 };
        compact.matrix.cells[a]![b] = cell;
        plain.matrix.cells[a]![b] = cell;
        same(compact.matrix, plain.matrix);
      } finally {
        mock.restoreAll();
      }
    });
  });
});

describe("the design's wg-quick file hashed a chunk of peers at a time", () => {
  it('the sha256 of the whole text, on every node of a 150-node farm, the homelab, and cut or relaying designs', async () => {
    const whole = (d: Parameters<typeof renderWgQuickConfig>[0]) => createHash('sha256').update(renderWgQuickConfig(d)).digest('hex');
    await withConvergedFarm(150, async (inventory) => {
      const designs = desiredMesh(inventory, new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)])));
      for (const d of designs) assert.equal(renderedSha256(d), whole(d), d.node);
      const d = designs[7]!;
      for (const n of [0, 1, 63, 64, 65, 128, 129])
        for (const relay of [undefined, { pairs: [{ a: designs[1]!.node, b: designs[2]!.node }] }]) {
          const cut = { ...d, peers: d.peers.slice(0, n), ...(relay ? { relay } : {}) };
          assert.equal(renderedSha256(cut), whole(cut), `${n} peers${relay ? ', relaying' : ''}`);
        }
    });
    for (const d of homelab().desired.values()) assert.equal(renderedSha256(d), whole(d), d.node);
  });
});
