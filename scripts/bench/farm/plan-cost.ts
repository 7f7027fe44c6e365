/**
 * meshctl's own cost at farm scale, in process: `npm run bench:plan -- 100,250,500 [RUNS]`.
 * For each size, a child process runs the real `up` playbook (src/engine/up.ts runUp, unmodified, the built-in
 * playbooks/up.yaml, rollback armed, `--no-underlay-probes` as the farm bench) against N fake COLD nodes
 * (./fake-node.ts: a fresh Debian node's answers, no SSH, no process) on the farm's inventory (./inventory.ts: half
 * public, NAT sites of 50). It prints meshctl's CPU seconds (process.cpuUsage, the fakes' own CPU subtracted) per
 * phase and in total, the peak RSS of the process, and the wall time per phase. RUNS runs per size (default 1), the
 * median of each figure. Nothing here touches the network or the host: the nodes are objects.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childRuns, resultText, runBench, sizesAndRuns } from './child-runs.js';
import { writeHeapSnapshot } from 'node:v8';
import { runUp, type UpView } from '../../../src/engine/up.js';
import { FakeFarm, fakeFarmInventory } from './fake-node.js';
import { redactPasses } from '../../../src/remote/redact.js';
import { lineDiffWork } from '../../../src/render/line-diff.js';
import { configDecisions } from '../../../src/engine/registry.js';

interface PhaseCost {
  phase: string;
  cpuS: number;
  wallS: number;
  rssMB: number;
  /** `--retained` runs: the heap still in use after a full GC at the phase's end (what the run holds), MB */
  retainedMB?: number;
}

interface SizeCost {
  nodes: number;
  result: string;
  cpuS: number;
  fakeCpuS: number;
  wallS: number;
  peakRssMB: number;
  phases: PhaseCost[];
  unknown: Record<string, number>;
  /** work counters of the config path: redaction passes, line comparisons of the diffs, configs decided */
  counts: { redactPasses: number; diffComparisons: number; configDecisions: number };
  /** `--retained` runs: the heap held after a full GC once `up` returned, with its report still referenced, MB */
  retainedAtEndMB?: number;
  reportPhases?: number;
}

const cpuS = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;
/** the child's V8 gc() when it runs with --expose-gc (`--retained`): a full collection, so heapUsed is what is held */
const fullGc = (globalThis as { gc?: () => void }).gc;
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

/** One cold `up` of `n` fake nodes in this process. */
async function measureOne(n: number): Promise<SizeCost> {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-plan-cost-'));
  try {
    const inventory = fakeFarmInventory(n, dir);
    // the nodes keep their wg-quick files in the run's directory: the process's RSS is then meshctl's own
    const farm = new FakeFarm(dir);
    const connector = farm.connector();
    const phases: PhaseCost[] = [];
    let phaseCpu = process.cpuUsage();
    let phaseFake = 0;
    let phaseWall = performance.now();
    // CPU of the forced collections (`--retained`), left out of every figure
    let gcMicros = 0;
    const retained = (): number | undefined => {
      if (!fullGc) return undefined;
      const before = process.cpuUsage();
      fullGc();
      const used = process.cpuUsage(before);
      gcMicros += used.user + used.system;
      return Math.round(process.memoryUsage().heapUsed / 1e6);
    };
    const view: UpView = {
      onEvent(event) {
        if (event.type === 'phase-start') {
          phaseCpu = process.cpuUsage();
          phaseFake = farm.cpuMicros;
          phaseWall = performance.now();
        }
        if (event.type === 'phase-done') {
          const cost: PhaseCost = {
            phase: event.report.id,
            cpuS: round(cpuS(process.cpuUsage(phaseCpu)) - (farm.cpuMicros - phaseFake) / 1e6),
            wallS: round((performance.now() - phaseWall) / 1000),
            rssMB: Math.round(process.memoryUsage().rss / 1e6),
          };
          const held = retained();
          phases.push(held === undefined ? cost : { ...cost, retainedMB: held });
          // MESHCTL_PLAN_SNAPSHOT=DIR: a V8 heap snapshot at the end of the verify phase (what holds the heap there)
          const snapshotDir = process.env.MESHCTL_PLAN_SNAPSHOT;
          if (snapshotDir && event.report.id === 'verify') writeHeapSnapshot(join(snapshotDir, `plan-${n}-${event.report.id}.heapsnapshot`));
        }
      },
      gate: async () => true,
    };
    const started = process.cpuUsage();
    const wall = performance.now();
    const report = await runUp(inventory, connector, view, { signal: new AbortController().signal, underlayProbes: false });
    const total = cpuS(process.cpuUsage(started)) - gcMicros / 1e6;
    const held = retained();
    return {
      nodes: n,
      result: report.stoppedAt ? `${report.result} at ${report.stoppedAt}` : report.result,
      cpuS: round(total - farm.cpuMicros / 1e6),
      fakeCpuS: round(farm.cpuMicros / 1e6),
      wallS: round((performance.now() - wall) / 1000),
      peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
      phases,
      unknown: Object.fromEntries(farm.unknown),
      counts: { redactPasses: redactPasses.count, diffComparisons: lineDiffWork.comparisons, configDecisions: configDecisions.count },
      // the report itself still referenced here: what `up` returns to its command (printed as --json)
      ...(held !== undefined ? { retainedAtEndMB: held, reportPhases: report.phases.length } : {}),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** ` retained after each phase (MB): facts 12, ...; at the end, report held: N` for `--retained` runs, else ''. */
const retainedText = (cost: SizeCost): string =>
  cost.retainedAtEndMB === undefined
    ? ''
    : `; retained after each phase (MB): ${cost.phases.map((p) => `${p.phase} ${p.retainedMB}`).join(', ')}; at the end, report held: ${cost.retainedAtEndMB}`;

function table(rows: SizeCost[]): string {
  const phaseIds = [...new Set(rows.flatMap((r) => r.phases.map((p) => p.phase)))];
  const head = `| nodes | result | meshctl CPU | peak RSS | wall | ${phaseIds.map((p) => `${p} CPU`).join(' | ')} | fake nodes' CPU |`;
  const line = `|${'---|'.repeat(6 + phaseIds.length)}`;
  const body = rows.map(
    (r) =>
      `| ${r.nodes} | ${r.result} | ${r.cpuS} s | ${r.peakRssMB} MB | ${r.wallS} s | ${phaseIds
        .map((id) => {
          const p = r.phases.find((x) => x.phase === id);
          return p ? `${p.cpuS} s` : '-';
        })
        .join(' | ')} | ${r.fakeCpuS} s |`,
  );
  return [head, line, ...body].join('\n');
}

async function main(): Promise<void> {
  const all = process.argv.slice(2);
  // --retained: the children run with --expose-gc and report the heap held after a full GC at each phase's end
  // (the forced collections lower the peak RSS: compare peaks only between runs of the same mode)
  const retainedMode = all.includes('--retained');
  const args = all.filter((a) => a !== '--retained');
  if (args[0] === '--one') {
    // the child: one run, its figures as JSON on stdout
    process.stdout.write(`${JSON.stringify(await measureOne(Number(args[1])))}\n`);
    return;
  }
  const { sizes, runs } = sizesAndRuns(args, '100,250,500', 'usage: npm run bench:plan -- SIZES [RUNS] [--retained]   e.g. 100,250,500 3');
  const rows = childRuns<SizeCost>(
    fileURLToPath(import.meta.url),
    sizes,
    runs,
    { nodeFlags: retainedMode ? ['--expose-gc'] : [] },
    (n, run, cost, load) => {
      process.stderr.write(
        `${n} nodes, run ${run}/${runs}: ${cost.result}, meshctl CPU ${cost.cpuS} s, peak RSS ${cost.peakRssMB} MB, wall ${cost.wallS} s (load ${load} -> ${loadavg()[0]!.toFixed(1)}); ${JSON.stringify(cost.counts)}${retainedText(cost)}\n`,
      );
      if (Object.keys(cost.unknown).length) process.stderr.write(`  scripts the fake did not know: ${JSON.stringify(cost.unknown)}\n`);
    },
  );
  process.stdout.write(resultText(table(rows)));
}

runBench(main);
