/**
 * verify reads its big outputs as they arrive (issue 10: at 1,000 nodes a node's first script prints ~0.4 MB and its
 * ping round ~0.3 MB, and every node's was held whole until its end, then cut at once): the first script's and the
 * ping round's output go through RunOptions.onStdout into a SectionStream, and the transport is asked to keep none of
 * it (RunOptions.discardStdout). Checked on fake converged nodes (scripts/bench/farm/fake-verify-node.ts, which hand
 * their answers on in ~32 KB pieces and keep nothing when asked, as the ssh transport does):
 *   - every first script and ping script is asked with onStdout and discardStdout, and collecting from nodes that keep
 *     nothing gives the same facts as from nodes that keep everything, with no script run twice (the old code read
 *     the result's stdout: from nodes that keep nothing it read no checklist and no ping);
 *   - the ping reader gives parsePingOutput's results from sections streamed in pieces, and equal ping results are one
 *     object across a round's nodes.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, mock } from 'node:test';
import { collectVerify, pingTargets } from '../../src/checks/collect.js';
import { pingParamsFor } from '../../src/checks/ping-matrix.js';
import {
  parsePingOutput,
  PingOutputReader,
  pingReaderShared,
  type PingParams,
  type PingReaderShared,
  type PingResult,
} from '../../src/checks/probes.js';
import { SectionStream } from '../../src/facts/sections.js';
import { peersWithClock } from '../../src/facts/lean.js';
import { withRun, type RunOptions } from '../../src/transport/types.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

/** The facts verify judges, without the timings (wall times differ run to run). */
const facts = (c: Awaited<ReturnType<typeof collectVerify>>) => ({ ...c, timings: undefined });

describe('verify reads its outputs as they arrive, and the transport keeps none of them', () => {
  it('30 fake nodes: asked to keep nothing, the same facts as from nodes that keep everything, no script twice', async () => {
    const n = 30;
    await withConvergedFarm(n, async (inventory, farm) => {
      const asked: Array<{ kind: string; onStdout: boolean; discard: boolean }> = [];
      // two farms alike (each its own UDP counters, read as the facts are)
      const twin = await withConvergedFarm(n, async (_same, other) => other);
      const watched = (keepAll: boolean) =>
        new Map(
          [...(keepAll ? twin : farm).connections()].map(([name, c]) => [
            name,
            withRun(c, (script: string, options: RunOptions = {}) => {
              const kind = script.includes("begin pre-done'") ? 'first' : /begin ping:|ping -n -q|fping/.test(script) ? 'ping' : 'other';
              if (!keepAll) asked.push({ kind, onStdout: !!options.onStdout, discard: !!options.discardStdout });
              const { discardStdout: _drop, ...kept } = options;
              return c.run(script, keepAll ? kept : options);
            }),
          ]),
        );
      // one clock for both (the nodes' clocks and handshakes are in the facts)
      mock.method(Date, 'now', () => 1_700_000_000_000);
      let streamed: Awaited<ReturnType<typeof collectVerify>>;
      let whole: typeof streamed;
      try {
        streamed = await collectVerify(inventory, watched(false), new Map(), { pathMtu: true, lazyConfig: true });
        whole = await collectVerify(inventory, watched(true), new Map(), { pathMtu: true, lazyConfig: true });
      } finally {
        mock.restoreAll();
      }
      assert.equal(streamed.checklists.size, n);
      assert.equal(streamed.afterPing!.size, n);
      assert.ok(Object.values(streamed.matrix!.cells).every((row) => Object.values(row).every((cell) => cell.ok)));
      assert.deepEqual(facts(streamed), facts(whole));
      // each node: one first script, one cold-start probe, one ping round; the big two read as they arrive
      const count = (kind: string) => asked.filter((a) => a.kind === kind);
      assert.equal(count('first').length, n);
      assert.equal(count('ping').length, n);
      for (const a of [...count('first'), ...count('ping')]) assert.deepEqual(a, { ...a, onStdout: true, discard: true });
    });
  });

  it('the ping reader: parsePingOutput from sections in pieces (captures and a 150-node output); equal results one object', async () => {
    const dir = join(import.meta.dirname, '../fixtures/probes');
    const params: PingParams = {
      targets: ['10.77.0.1', '10.77.0.2', '10.77.0.3', '10.77.0.4', '10.77.0.5', '10.77.0.6'].map((ip, i) => ({ node: `n${i}`, ip })),
      count: 3,
      intervalSeconds: 0.2,
      deadlineSeconds: 7,
      mtu: 1420,
      after: [{ name: 'dump', command: 'true' }],
    };
    const read = (text: string, p: PingParams, piece: number, shared?: PingReaderShared) => {
      const reader = new PingOutputReader(p, shared);
      const stream = new SectionStream((s) => reader.add(s));
      for (let at = 0; at < text.length; at += piece) stream.write(text.slice(at, at + piece));
      stream.end();
      return reader.results();
    };
    for (const file of readdirSync(dir).filter((f) => /^ping-.*\.txt$/.test(f))) {
      const text = readFileSync(join(dir, file), 'utf8');
      const ips = [...new Set([...text.matchAll(/begin ping:(\S+)/g)].map((m) => m[1]!))];
      const p = { ...params, targets: [...ips, '10.255.0.9'].map((ip, i) => ({ node: `n${i}`, ip })) };
      for (const piece of [1, 7, 100, 1 << 20])
        assert.deepEqual(read(text, p, piece, pingReaderShared(p.targets)), parsePingOutput(text, p), file);
    }
    await withConvergedFarm(150, async (inventory, farm) => {
      const table = pingReaderShared(pingTargets(inventory));
      const objects = new Set<PingResult>();
      for (const node of inventory.nodes.slice(0, 2)) {
        const p = pingParamsFor(node.name, pingTargets(inventory), {
          mtu: inventory.mesh.mtu,
          after: peersWithClock(inventory.mesh.interface),
        });
        const pieces: string[] = [];
        const script = (await import('../../src/checks/probes.js')).pingScript(p);
        const result = await farm
          .connections()
          .get(node.name)!
          .run(script, { onStdout: (piece) => pieces.push(piece) });
        assert.equal(pieces.join(''), result.stdout);
        const streamed = read(result.stdout, p, 32 * 1024, table);
        assert.deepEqual(streamed, parsePingOutput(result.stdout, p));
        for (const r of streamed.ping.values()) objects.add(r);
      }
      // 2 x 149 pairs, all answered alike: one object
      assert.equal(objects.size, 1);
    });
  });
});
