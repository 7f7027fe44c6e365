/**
 * What `meshctl verify` costs meshctl itself at farm scale: `npm run bench:verify -- 100,250,1000 [RUNS]`.
 * For each size, a child process runs the verify command's own path from the connections on (src/commands/
 * verify-run.ts verifyConnected: collect, judge, redact, report, unmodified; then the `--json` report written as the
 * command writes it, src/ui/json-text.ts writeJson) against N fake CONVERGED nodes (./fake-verify-node.ts: each
 * answers the first script, the cold-start probe and the ping round as a healthy node of the design would) on the
 * farm's inventory (./inventory.ts). The fakes run in a process of their own (./fake-verify-relay.ts: meshctl's
 * process holds a relay per node, which sends the scripts and hands the answers' pieces on as they come back over a
 * pipe); `--in-process`: in meshctl's process, as before 2026-12-02 12:00 (their CPU read around each answer and
 * subtracted). It prints meshctl's CPU seconds (process.cpuUsage of its process, every thread; nothing subtracted
 * but under `--in-process`) per stage and in total, the peak RSS of that process (and of the fakes' process), the
 * fakes' CPU, the report's bytes and its check objects (listed, and counted in all), and the wall time. RUNS runs
 * per size (default 1), the median run by CPU. `--text`: the text view instead of `--json`. `--all-checks`: the
 * command's flag (every passing check listed, as version 1 did).
 * A tree without verifyConnected (before this bench) is measured through the same steps its command ran. What it
 * leaves out: SSH (the farm bench measures that), `ssh -G`, the logins and the state file's fallbacks.
 * Diagnosis: MESHCTL_VERIFY_SNAPSHOT=DIR (a heap snapshot as a stage starts), MESHCTL_VERIFY_MEMTRACE=FILE (the
 * memory over time: memoryTrace) and MESHCTL_VERIFY_REPORT=FILE (the report's text, to compare two trees' reports).
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childRuns, resultText, runBench, sizesAndRuns } from './child-runs.js';
import { writeHeapSnapshot } from 'node:v8';
import { fakeFarmInventory } from './fake-node.js';
import { ConvergedFarm } from './fake-verify-node.js';
import { RelayFarm } from './fake-verify-relay.js';

interface StageCost {
  stage: string;
  cpuS: number;
  wallS: number;
  rssMB: number;
}

interface SizeCost {
  nodes: number;
  exitCode: number;
  summary: { pass: number; warn: number; fail: number };
  /** check objects in the report (`checks`), and the counted groups (`passed`, version 2) */
  listedChecks: number;
  passedGroups: number;
  reportBytes: number;
  cpuS: number;
  fakeCpuS: number;
  /** where the fakes ran: `relay` (a process of their own, ./fake-verify-relay.ts) or `in-process` (--in-process) */
  mode: 'relay' | 'in-process';
  /** the fakes' process's peak RSS, MiB (relay mode; in process it is in peakRssMB) */
  fakePeakRssMB?: number;
  wallS: number;
  peakRssMB: number;
  stages: StageCost[];
  unknown: Record<string, number>;
  /** the checks that did not pass, first few (a healthy farm has none) */
  notPassing: string[];
}

const cpuS = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;
const round = (x: number, digits = 2) => Number(x.toFixed(digits));

interface Flags {
  text: boolean;
  allChecks: boolean;
  /** the fakes in meshctl's process, their CPU read around each answer and subtracted (the bench before F5) */
  inProcess: boolean;
}

/**
 * MESHCTL_VERIFY_MEMTRACE=FILE: every 50 ms of wall (when the event loop lets a timer run, or a fake answers) a sample, appended to
 * FILE, a line each: ms since the start, the stage (with the fakes' answers so far, ./fake-verify-node.ts
 * `answered`), then process.memoryUsage() in MB (rss, heapUsed, heapTotal, external), to see when and in what the peak
 * RSS builds up (under `node --expose-gc`, after a full GC: heapUsed is then what is live). Undefined when `file` is.
 */
function memoryTrace(file: string | undefined, stageNow: () => string): { maybe(): void; stop(): void } | undefined {
  if (!file) return undefined;
  const t0 = performance.now();
  const mb = (x: number) => Math.round(x / 1e6);
  writeFileSync(file, 'ms stage:pre/checklist/cold-start/ping rss heapUsed heapTotal external\n');
  // with node --expose-gc: a full GC before each sample, so heapUsed is what is live (slow: diagnosis only)
  const gc = (globalThis as { gc?: () => void }).gc;
  const sample = () => {
    gc?.();
    const m = process.memoryUsage();
    appendFileSync(file, `${Math.round(performance.now() - t0)} ${stageNow()} ${mb(m.rss)} ${mb(m.heapUsed)} ${mb(m.heapTotal)} ${mb(m.external)}\n`);
  };
  let last = 0;
  const timer = setInterval(sample, 50);
  return {
    maybe() {
      const now = performance.now();
      if (now - last < 50) return;
      last = now;
      sample();
    },
    stop() {
      clearInterval(timer);
      sample();
    },
  };
}

/**
 * One verify of `n` fake converged nodes: meshctl in this process, the fakes in a process of their own
 * (./fake-verify-relay.ts), or in this one under `--in-process` (their CPU then read and subtracted).
 */
async function measureOne(n: number, flags: Flags): Promise<SizeCost> {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-verify-cost-'));
  try {
    const inventory = fakeFarmInventory(n, dir);
    // in process: the fakes' CPU is subtracted; relayed: nothing (fakeMicros stays 0), the fakes' process reports its own
    const farm = flags.inProcess ? new ConvergedFarm(inventory) : undefined;
    const relay = farm ? undefined : await RelayFarm.start(inventory, join(dir, 'farm.yaml'));
    const fakeMicros = () => farm?.cpuMicros ?? 0;
    const connections = farm ? farm.connections() : relay!.connections();
    const stages: StageCost[] = [];
    let open: { stage: string; cpu: NodeJS.CpuUsage; fake: number; wall: number } | undefined;
    const stage = (name: string | undefined) => {
      if (open)
        stages.push({
          stage: open.stage,
          cpuS: round(cpuS(process.cpuUsage(open.cpu)) - (fakeMicros() - open.fake) / 1e6),
          wallS: round((performance.now() - open.wall) / 1000),
          rssMB: Math.round(process.memoryUsage().rss / 1e6),
        });
      // MESHCTL_VERIFY_SNAPSHOT=DIR: a V8 heap snapshot as stage MESHCTL_VERIFY_SNAPSHOT_AT (default evaluate: the
      // collection done, everything it gathered held) begins
      const snapshotDir = process.env.MESHCTL_VERIFY_SNAPSHOT;
      if (snapshotDir && name === (process.env.MESHCTL_VERIFY_SNAPSHOT_AT ?? 'evaluate'))
        writeHeapSnapshot(join(snapshotDir, `verify-${n}-${name}.heapsnapshot`));
      open = name === undefined ? undefined : { stage: name, cpu: process.cpuUsage(), fake: fakeMicros(), wall: performance.now() };
    };
    const run = (await import('../../../src/commands/verify-run.js')) as Record<string, unknown>;
    // the answers so far: in process by script (pre/checklist/cold-start/ping), relayed the scripts sent/answered
    const answered = () => (farm ? Object.values(farm.answered).join('/') : `${relay!.counts.sent}/${relay!.counts.done}`);
    const trace = memoryTrace(process.env.MESHCTL_VERIFY_MEMTRACE, () => `${open?.stage ?? '-'}:${answered()}`);
    // MESHCTL_VERIFY_SNAPSHOT_AT=ping:K: the snapshot when the fakes have begun K ping answers (the ping round under
    // way; with --in-process only: the relay does not know which script a run is)
    const pingAt = /^ping:(\d+)$/.exec(process.env.MESHCTL_VERIFY_SNAPSHOT_AT ?? '');
    let snapped = false;
    const snapshotDir = process.env.MESHCTL_VERIFY_SNAPSHOT;
    const onAnswer = () => {
      trace?.maybe();
      if (snapshotDir && pingAt && farm && !snapped && farm.answered.ping >= Number(pingAt[1])) {
        snapped = true;
        // a turn later: the answer begun is under way
        setImmediate(() => writeHeapSnapshot(join(snapshotDir, `verify-${n}-ping-${pingAt[1]}.heapsnapshot`)));
      }
    };
    if (trace || pingAt) {
      if (farm) farm.onAnswer = onAnswer;
      else relay!.onAnswer = onAnswer;
    }
    const started = process.cpuUsage();
    const wall = performance.now();
    const t0 = Date.now();
    // any: the module and the report differ between the trees this bench measures (report version 1 or 2)
    let report: any;
    if (typeof run.verifyConnected === 'function') {
      const done = await (run.verifyConnected as (...a: unknown[]) => Promise<{ report: unknown } | undefined>)(
        inventory,
        connections,
        new Map(),
        {
          pathMtu: true,
          deadlineSeconds: 7,
          strict: false,
          allChecks: flags.allChecks,
          started: t0,
          connectMs: 0,
          onStage: stage,
        },
      );
      report = done?.report;
    } else {
      // the command's steps before verifyConnected existed (src/commands/verify.ts of that tree)
      const r = run as any;
      stage('collect');
      const collected = await r.collectVerify(inventory, connections, new Map(), {
        pathMtu: true,
        deadlineSeconds: 7,
        proveRoot: r.sudoOf(inventory, connections),
      });
      stage('evaluate');
      const results = r.redactDeep(r.evaluateVerify(collected), r.knownPublicKeys(collected));
      stage('report');
      report = r.buildReport(inventory, results, collected.matrix, collected.unreachable, Date.now() - t0, {
        timings: { connectMs: 0, ...collected.timings },
        channels: Object.fromEntries(
          [...connections].map(([name, c]) => [name, (c.stats as { channels?: number }).channels ?? c.stats.commands]),
        ),
      });
    }
    stage('print');
    let reportBytes = 0;
    // MESHCTL_VERIFY_REPORT=FILE: the report's text kept in FILE too (to compare two trees' reports)
    const keep = process.env.MESHCTL_VERIFY_REPORT;
    if (keep) writeFileSync(keep, '');
    const sink = {
      write: (chunk: string) => {
        reportBytes += Buffer.byteLength(chunk);
        if (keep) appendFileSync(keep, chunk);
        return true;
      },
    };
    if (flags.text) {
      const { renderReport } = run as { renderReport: (r: unknown, o: { color: boolean; verbose?: boolean }) => string };
      sink.write(renderReport(report, { color: false }));
    } else await (await import('../../../src/ui/json-text.js')).writeJson(sink, report, 2);
    stage(undefined);
    trace?.stop();
    const total = cpuS(process.cpuUsage(started));
    const peakRssMB = Math.round(process.resourceUsage().maxRSS / 1024);
    const fakes = relay
      ? await relay.stop()
      : { cpuMicros: farm!.cpuMicros, unknown: Object.fromEntries(farm!.unknown), maxRssKiB: undefined };
    const checks = report.checks as Array<{ node: string; peer?: string; id: string; status: string; message: string }>;
    return {
      nodes: n,
      exitCode: report.exitCode,
      summary: report.summary,
      listedChecks: checks.length,
      passedGroups: (report.passed ?? []).length,
      reportBytes,
      cpuS: round(total - fakeMicros() / 1e6),
      fakeCpuS: round(fakes.cpuMicros / 1e6),
      mode: relay ? 'relay' : 'in-process',
      ...(fakes.maxRssKiB !== undefined ? { fakePeakRssMB: Math.round(fakes.maxRssKiB / 1024) } : {}),
      wallS: round((performance.now() - wall) / 1000),
      peakRssMB,
      stages,
      unknown: fakes.unknown,
      notPassing: checks
        .filter((c) => c.status !== 'pass')
        .slice(0, 5)
        .map((c) => `${c.node} ${c.id} ${c.peer ?? ''} ${c.status}: ${c.message}`),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function table(rows: SizeCost[]): string {
  const ids = [...new Set(rows.flatMap((r) => r.stages.map((s) => s.stage)))];
  const head = `| nodes | exit | checks pass/warn/fail | listed checks | report | meshctl CPU | ${ids.map((s) => `${s} CPU`).join(' | ')} | peak RSS | wall | fakes' CPU |`;
  const line = `|${'---|'.repeat(10 + ids.length)}`;
  const body = rows.map(
    (r) =>
      `| ${r.nodes} | ${r.exitCode} | ${r.summary.pass}/${r.summary.warn}/${r.summary.fail} | ${r.listedChecks} (+${r.passedGroups} groups) | ${(r.reportBytes / 1e6).toFixed(2)} MB | ${r.cpuS} s | ${ids
        .map((id) => {
          const s = r.stages.find((x) => x.stage === id);
          return s ? `${s.cpuS} s` : '-';
        })
        .join(' | ')} | ${r.peakRssMB} MB | ${r.wallS} s | ${r.fakeCpuS} s |`,
  );
  return [head, line, ...body].join('\n');
}

async function main(): Promise<void> {
  const all = process.argv.slice(2);
  const flags: Flags = { text: all.includes('--text'), allChecks: all.includes('--all-checks'), inProcess: all.includes('--in-process') };
  const args = all.filter((a) => !a.startsWith('--') || a === '--one');
  if (args[0] === '--one') {
    // the child: one run, its figures as JSON on stdout
    process.stdout.write(`${JSON.stringify(await measureOne(Number(args[1]), flags))}\n`);
    return;
  }
  const { sizes, runs } = sizesAndRuns(
    args,
    '100,250,1000',
    'usage: npm run bench:verify -- SIZES [RUNS] [--text] [--all-checks] [--in-process]   e.g. 100,250 3',
  );
  const rows = childRuns<SizeCost>(
    fileURLToPath(import.meta.url),
    sizes,
    runs,
    {
      childArgs: [...(flags.text ? ['--text'] : []), ...(flags.allChecks ? ['--all-checks'] : []), ...(flags.inProcess ? ['--in-process'] : [])],
    },
    (n, run, cost, load) => {
      process.stderr.write(
        `${n} nodes, run ${run}/${runs}: exit ${cost.exitCode}, meshctl CPU ${cost.cpuS} s (${cost.stages.map((s) => `${s.stage} ${s.cpuS}`).join(', ')}), peak RSS ${cost.peakRssMB} MB, ${cost.mode === 'relay' ? `fakes' process: CPU ${cost.fakeCpuS} s (meshctl's ${(cost.cpuS / cost.fakeCpuS).toFixed(2)}x: the fakes' work is the same every run, so their CPU gauges the machine's speed), peak RSS ${cost.fakePeakRssMB} MB` : `fakes' CPU ${cost.fakeCpuS} s (subtracted)`}, report ${cost.reportBytes} bytes, ${cost.listedChecks} checks listed + ${cost.passedGroups} groups, wall ${cost.wallS} s (load ${load} -> ${loadavg()[0]!.toFixed(1)})\n`,
      );
      if (cost.notPassing.length) process.stderr.write(`  not passing: ${JSON.stringify(cost.notPassing)}\n`);
      if (Object.keys(cost.unknown).length) process.stderr.write(`  scripts the fake did not know: ${JSON.stringify(cost.unknown)}\n`);
    },
  );
  process.stdout.write(resultText(table(rows)));
}

runBench(main);
