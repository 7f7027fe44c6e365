/**
 * SectionStream's scan alone (src/facts/sections.ts), old against new: `node --import tsx
 * scripts/bench/farm/sections-scan.ts OLD.ts NEW.ts [NODES=1000] [PAIRS=3]`, OLD and NEW two copies of sections.ts
 * (e.g. `git show REV:src/facts/sections.ts > /tmp/old.ts`). The input is what verify reads from one node of an
 * NODES-node converged farm (./fake-verify-node.ts, with verify's own scripts): its first script's answer and its
 * ping round's, in the fake's ~32 KB pieces, the same pieces for both. Each timing writes those pieces through a
 * fresh stream REPEAT times (enough for ~1e6 lines), its CPU time read with process.cpuUsage (user + system, this
 * process: the scan is single-threaded), old and new alternating PAIRS times after one warm-up each. Prints one line
 * per timing, ns per line of output, and checks that both hand on the same sections.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { firstScript, pingTargets } from '../../../src/checks/collect.js';
import { pingParamsFor } from '../../../src/checks/ping-matrix.js';
import { pingProbe } from '../../../src/checks/probes.js';
import { peersWithClock } from '../../../src/facts/lean.js';
import type { Section } from '../../../src/facts/sections.js';
import { fakeFarmInventory } from './fake-node.js';
import { ConvergedFarm, ConvergedNode } from './fake-verify-node.js';

type Stream = new (onSection: (s: Section) => void) => { write(p: string): void; end(): void };

async function answers(n: number): Promise<string[][]> {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-sections-scan-'));
  try {
    const inventory = fakeFarmInventory(n, dir);
    const farm = new ConvergedFarm(inventory);
    const node = inventory.nodes[0]!.name;
    const ping = pingProbe(pingParamsFor(node, pingTargets(inventory), { mtu: inventory.mesh.mtu, after: peersWithClock(inventory.mesh.interface) })).script;
    const out: string[][] = [];
    for (const script of [firstScript(inventory, node, { uid: true }), ping]) {
      const pieces: string[] = [];
      // each piece a flat string, as ssh2's data decoded (src/transport/ssh.ts) is; the fake's are joined parts (cons strings)
      await new ConvergedNode(node, farm).run(script, { onStdout: (p) => pieces.push(Buffer.from(p, 'utf8').toString('utf8')), discardStdout: true });
      out.push(pieces);
    }
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function timeOne(Stream: Stream, inputs: string[][], repeat: number): { cpuMs: number; sections: number } {
  let sections = 0;
  const before = process.cpuUsage();
  for (let r = 0; r < repeat; r++)
    for (const pieces of inputs) {
      const stream = new Stream(() => sections++);
      for (const p of pieces) stream.write(p);
      stream.end();
    }
  const used = process.cpuUsage(before);
  return { cpuMs: (used.user + used.system) / 1000, sections };
}

async function main(): Promise<void> {
  const [oldPath, newPath, nodes = '1000', pairs = '3'] = process.argv.slice(2);
  if (!oldPath || !newPath) throw new Error('usage: sections-scan.ts OLD.ts NEW.ts [NODES] [PAIRS]');
  const load = async (p: string) => ((await import(pathToFileURL(resolve(p)).href)) as { SectionStream: Stream }).SectionStream;
  const streams = { old: await load(oldPath), new: await load(newPath) };
  const inputs = await answers(Number(nodes));
  const text = inputs.map((p) => p.join(''));
  const lines = text.reduce((a, t) => a + t.split('\n').length - 1, 0);
  const bytes = text.reduce((a, t) => a + t.length, 0);
  const repeat = Math.max(1, Math.round(1e6 / lines));
  // the same sections, in the same order
  const seen = (S: Stream) => {
    const out: Section[] = [];
    for (const pieces of inputs) {
      const s = new S((x) => out.push(x));
      for (const p of pieces) s.write(p);
      s.end();
    }
    return JSON.stringify(out);
  };
  if (seen(streams.old) !== seen(streams.new)) throw new Error('old and new hand on different sections');
  process.stdout.write(`${nodes} nodes: one node's first-script and ping answers, ${bytes} characters, ${lines} lines, ${inputs.flat().length} pieces; x${repeat} per timing\n`);
  for (const which of ['old', 'new'] as const) timeOne(streams[which], inputs, repeat);
  for (let i = 0; i < Number(pairs); i++)
    for (const which of i % 2 ? (['new', 'old'] as const) : (['old', 'new'] as const)) {
      const t = timeOne(streams[which], inputs, repeat);
      process.stdout.write(`pair ${i + 1} ${which}: ${t.cpuMs.toFixed(0)} ms CPU, ${((t.cpuMs * 1e6) / (lines * repeat)).toFixed(1)} ns a line\n`);
    }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
