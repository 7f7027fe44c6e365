/**
 * The verify bench's fakes served from a process of their own (scripts/bench/farm/fake-verify-relay.ts) give meshctl
 * what the fakes in its own process give (scripts/bench/farm/fake-verify-node.ts): verify run on a 20-node farm both
 * ways (the command's own path, src/commands/verify-run.ts verifyConnected), every node's every script and, for each,
 * the same pieces (the same strings, in the same order, cut at the same places), the same result, the same report
 * (its timings left out). The nodes' clock is fixed in both, so the answers can be compared byte for byte.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { verifyConnected } from '../../src/commands/verify-run.js';
import type { Inventory } from '../../src/inventory/types.js';
import type { Connection, ExecResult, RunOptions } from '../../src/transport/types.js';
import { fakeFarmInventory } from '../../scripts/bench/farm/fake-node.js';
import { ConvergedFarm } from '../../scripts/bench/farm/fake-verify-node.js';
import { FrameReader, RelayFarm } from '../../scripts/bench/farm/fake-verify-relay.js';
import { seededRandom } from '../support/seeded-random.js';

const NOW = 1_700_000_000;

interface Run {
  script: string;
  pieces: string[];
  result: ExecResult;
}

/** Each node's runs as meshctl saw them: the script, the pieces onStdout got, the result. */
function recorded(connections: Map<string, Connection>): { connections: Map<string, Connection>; runs: Map<string, Run[]> } {
  const runs = new Map<string, Run[]>();
  const wrapped = new Map<string, Connection>();
  for (const [name, c] of connections) {
    runs.set(name, []);
    wrapped.set(name, {
      node: c.node,
      target: c.target,
      stats: c.stats,
      close: () => c.close(),
      run: async (script: string, options: RunOptions = {}) => {
        const pieces: string[] = [];
        const result = await c.run(script, {
          ...options,
          onStdout: (piece, end) => {
            pieces.push(piece);
            options.onStdout?.(piece, end);
          },
        });
        runs.get(name)!.push({ script, pieces, result });
        return result;
      },
    });
  }
  return { connections: wrapped, runs };
}

async function verify(inventory: Inventory, connections: Map<string, Connection>) {
  const { connections: wrapped, runs } = recorded(connections);
  const done = await verifyConnected(inventory, wrapped, new Map(), {
    pathMtu: true,
    deadlineSeconds: 7,
    strict: false,
    allChecks: false,
    started: Date.now(),
    connectMs: 0,
  });
  const report = JSON.parse(JSON.stringify(done!.report, (k, v) => (k === 'timings' || k === 'durationMs' ? undefined : v)));
  return { runs, report };
}

describe("the verify bench's fakes in a process of their own", () => {
  it('the relay reads every frame whole however the stream is cut (in a header, a payload, between frames)', () => {
    const next = seededRandom(3);
    const sent: Array<{ kind: number; id: number; payload: string }> = [];
    const bytes: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      const payload = 'x'.repeat(Math.floor(next() * (next() < 0.1 ? 70_000 : 40))) + (next() < 0.3 ? 'é' : '');
      const body = Buffer.from(payload);
      const head = Buffer.alloc(9);
      head.writeUInt32BE(body.length, 0);
      head.writeUInt32BE(i + 1, 4);
      head.writeUInt8(1 + (i % 5), 8);
      bytes.push(head, body);
      sent.push({ kind: 1 + (i % 5), id: i + 1, payload });
    }
    const stream = Buffer.concat(bytes);
    for (const mean of [1, 5, 100, 65_536]) {
      const got: typeof sent = [];
      const reader = new FrameReader((kind, id, b, start, end) => got.push({ kind, id, payload: b.toString('utf8', start, end) }));
      for (let at = 0; at < stream.length; ) {
        const n = 1 + Math.floor(next() * 2 * mean);
        reader.push(Buffer.from(stream.subarray(at, at + n)));
        at += n;
      }
      assert.deepEqual(got, sent, `pieces of about ${mean} bytes`);
    }
  });

  it('give meshctl the same pieces, results and report as in its process (20 nodes, a fixed clock)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-farm-relay-'));
    try {
      const inventory = fakeFarmInventory(20, dir);
      const inProcess = await verify(inventory, new ConvergedFarm(inventory, { now: () => NOW }).connections());
      const relay = await RelayFarm.start(inventory, join(dir, 'farm.yaml'), { now: NOW });
      const relayed = await verify(inventory, relay.connections());
      const fakes = await relay.stop();
      assert.deepEqual(fakes.unknown, {});
      assert.deepEqual(fakes.answered, { pre: 20, checklist: 20, coldStart: 20, ping: 20 });
      assert.equal(relayed.runs.size, 20);
      for (const [node, runs] of inProcess.runs) {
        const other = relayed.runs.get(node)!;
        assert.equal(other.length, runs.length, node);
        assert.ok(runs.length >= 3, `${node}: ${runs.length} runs`);
        for (let i = 0; i < runs.length; i++) {
          assert.equal(other[i]!.script, runs[i]!.script, `${node} run ${i}: the script`);
          assert.ok(runs[i]!.pieces.length > 0, `${node} run ${i}: no pieces`);
          assert.deepEqual(other[i]!.pieces, runs[i]!.pieces, `${node} run ${i}: the pieces`);
          assert.deepEqual(other[i]!.result, runs[i]!.result, `${node} run ${i}: the result`);
        }
      }
      assert.equal(inProcess.report.exitCode, 0);
      assert.deepEqual(relayed.report, inProcess.report);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
