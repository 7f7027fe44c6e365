/**
 * `npm run bench:farm [-- SIZES]`: meshctl's own cost against the simulated farm (./farm.ts) at 100, 250 and 1,000
 * nodes (or the sizes given, comma-separated). Per size: a fresh farm; cold `up --yes`, second `up --yes` and
 * `verify`, each as its own meshctl process under GNU time (wall, CPU user+sys including its children such as
 * `ssh -G`, peak RSS), the bytes meshctl sent per node (commands and scripts, counted by the farm), the channels
 * per node per phase (from up --json); and in-process, the time to render N configs of N-1 peers and to build the
 * N x (N-1) ping matrix. Writes docs/farm-results.json and prints a Markdown table.
 *   MESHCTL_FARM_DIR   where the farms live (default /var/tmp/meshctl-farm); each size's farm is removed after
 *   MESHCTL_FARM_STEPS which runs: any of up,up2,verify,plan (default up,up2,verify)
 *   MESHCTL_FARM_PROFILE  a directory: each meshctl run writes a V8 CPU profile there (--cpu-prof)
 *   MESHCTL_COMMAND_TIMEOUT  meshctl's per-command deadline in seconds (default here 900; --connect-timeout 300)
 * The farm (its servers and every sandbox) runs under `nice -n 19`: the machine is shared, and meshctl's CPU time
 * and RSS (GNU time) do not depend on it. A run holds MESHCTL_FARM_DIR/bench.lock: a second run against the same
 * directory refuses to start (two runs would delete each other's farms and share the load). meshctl runs from a
 * copy of bin/, dist/, playbooks/ and package.json taken at the start, so a rebuild meanwhile cannot change it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildMatrix, type PingTarget } from '../../../src/checks/ping-matrix.js';
import type { NodePingResults } from '../../../src/checks/probes.js';
import { checkInventoryText } from '../../../src/inventory/load.js';
import { renderWgQuickConfig } from '../../../src/render/wgquick.js';
import { desiredMesh } from '../../../src/topology/desired.js';
import { farmInventory } from './inventory.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const farmRoot = process.env.MESHCTL_FARM_DIR ?? '/var/tmp/meshctl-farm';
const steps = (process.env.MESHCTL_FARM_STEPS ?? 'up,up2,verify').split(',');
const sizes = (process.argv[2] ?? '100,250,1000').split(',').map(Number);

interface Measured {
  wallS: number;
  cpuS: number;
  rssMB: number;
  exit: number;
  bytesPerNode: number;
  farmChannels: number;
  farmPeakOpen: number;
  farmCpuS?: number;
  /** the farm's CPU per node for this step (what the simulated nodes cost, not meshctl) */
  farmCpuSPerNode?: number;
  /** of farmCpuS, the farm's own process (its ssh2 servers) */
  farmServerCpuS?: number;
  /** 1-minute load average when the step started and when it ended (the machine is shared) */
  load?: [number, number];
  json?: Record<string, unknown>;
}

/** The commit measured: HEAD of this checkout, `+dirty` when it has uncommitted changes. */
function commitOf(): string {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repo, encoding: 'utf8' }).stdout.trim();
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repo, encoding: 'utf8' }).stdout.trim();
  return `${head || '?'}${dirty ? '+dirty' : ''}`;
}

const load1 = () => Math.round(loadavg()[0]! * 10) / 10;

/**
 * Takes MESHCTL_FARM_DIR/bench.lock (O_EXCL, holding this pid) or throws when another live bench holds it; a lock
 * whose process is gone is taken over. Released on exit.
 */
export function lockFarmDir(root: string): void {
  const file = join(root, 'bench.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      process.on('exit', () => rmSync(file, { force: true }));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (pid > 0 && alive(pid)) throw new Error(`${root} is in use by bench process ${pid} (${file}); use another MESHCTL_FARM_DIR`);
      rmSync(file, { force: true }); // stale: its process is gone
    }
  }
  throw new Error(`could not take ${file}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A copy of the meshctl to measure (bin, dist, playbooks, package.json; node_modules linked): rebuilds do not touch it. */
function snapshotMeshctl(root: string): string {
  const dir = join(root, 'meshctl');
  rmSync(dir, { recursive: true, force: true });
  for (const part of ['bin', 'dist', 'playbooks', 'package.json']) cpSync(join(repo, part), join(dir, part), { recursive: true });
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  return join(dir, 'bin', 'meshctl.js');
}

let meshctlBin = join(repo, 'bin/meshctl.js');

function startFarm(n: number, dir: string): Promise<ChildProcess> {
  // nice 19: the farm yields to everything else on the machine (its sandboxes inherit the niceness)
  const child = spawn('nice', ['-n', '19', process.execPath, '--import', 'tsx', join(repo, 'scripts/bench/farm/farm.ts'), '--nodes', String(n), '--dir', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: repo,
  });
  return new Promise((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('farm ready') && res(child));
    child.once('exit', (code) => rej(new Error(`farm exited ${code}`)));
  });
}

async function farmStats(farm: ChildProcess, dir: string): Promise<{ channels: number; peak: number; bytesIn: number; cpuS?: number; selfCpuS?: number }> {
  const file = join(dir, 'server-stats.json');
  rmSync(file, { force: true });
  farm.kill('SIGUSR2');
  // the farm runs at nice 19: on a loaded machine it took more than 10 s to answer, and the bench died (ENOENT) after
  // a 250-node verify, losing its row; wait up to 2 min, then go on without the farm's counts
  for (let i = 0; i < 2400 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(file)) return { channels: 0, peak: 0, bytesIn: 0 };
  return JSON.parse(readFileSync(file, 'utf8'));
}

async function measure(farm: ChildProcess, dir: string, n: number, step: string, args: string[]): Promise<Measured> {
  const before = await farmStats(farm, dir); // start counting from zero
  // a loaded 2-core machine runs 1,000 sandboxes slowly: the farm is slow, not wrong, so deadlines are generous
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', MESHCTL_COMMAND_TIMEOUT: process.env.MESHCTL_COMMAND_TIMEOUT ?? '900' };
  for (const line of readFileSync(join(dir, 'env'), 'utf8').trim().split('\n')) {
    const i = line.indexOf('=');
    env[line.slice(0, i)] = line.slice(i + 1);
  }
  const timeFile = join(dir, 'time.txt');
  const loadBefore = load1();
  // MESHCTL_FARM_PROFILE=DIR: a V8 CPU profile of each meshctl process (open it in Chrome's DevTools)
  // (sampled every 10 ms, not V8's 1 ms: at 1 ms the profiler's own thread more than doubled meshctl's CPU time)
  const profile = process.env.MESHCTL_FARM_PROFILE
    ? ['--cpu-prof', '--cpu-prof-interval', '10000', '--cpu-prof-dir', process.env.MESHCTL_FARM_PROFILE]
    : [];
  // the whole report straight into a file, per step (up and up2 apart), for a look afterwards: at 1,000 nodes it is
  // longer than a string can be (660 M characters for a dry run), so it never passes through this process whole
  const reportFile = join(farmRoot, `last-${n}-${step}.json`);
  const out = openSync(reportFile, 'w');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, process.execPath, ...profile, meshctlBin, ...args], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', out, 'pipe'],
    maxBuffer: 1 << 30,
  });
  closeSync(out);
  writeFileSync(join(farmRoot, `last-${n}-${step}.stderr`), r.stderr);
  const [wall, user, sys, rssKb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  const s = await farmStats(farm, dir);
  let json: Record<string, unknown> | undefined;
  const reportBytes = statSync(reportFile).size;
  try {
    // JSON.parse needs the text as one string (V8: under 2^29 characters)
    if (reportBytes >= 2 ** 29 - 24) throw new Error(`${reportBytes} bytes: too long to parse as one string`);
    json = JSON.parse(readFileSync(reportFile, 'utf8'));
  } catch (error) {
    process.stderr.write(`bench: ${args[0]} printed no JSON we could read (exit ${r.status}, ${(error as Error).message}): ${r.stderr.slice(-2000)}\n`);
  }
  return {
    wallS: wall!,
    cpuS: Math.round((user! + sys!) * 100) / 100,
    rssMB: Math.round(rssKb! / 1024),
    exit: r.status ?? -1,
    bytesPerNode: Math.round(s.bytesIn / n),
    farmChannels: s.channels,
    farmPeakOpen: s.peak,
    // what the simulated nodes cost (server + sandboxes): not meshctl's, but what limits the farm's size
    ...(s.cpuS !== undefined && before.cpuS !== undefined
      ? { farmCpuS: Math.round(s.cpuS - before.cpuS), farmCpuSPerNode: Math.round(((s.cpuS - before.cpuS) / n) * 100) / 100 }
      : {}),
    // of it, the farm's own process (ssh2 servers), the rest being the processes in the sandboxes
    ...(s.selfCpuS !== undefined && before.selfCpuS !== undefined ? { farmServerCpuS: Math.round(s.selfCpuS - before.selfCpuS) } : {}),
    load: [loadBefore, load1()],
    ...(json ? { json } : {}),
  };
}

/** In-process (CPU ms): N desired configs of N-1 peers rendered, and the N x (N-1) matrix built from per-node results. */
export function renderAndMatrix(n: number) {
  const farm = farmInventory(n);
  const ports = new Map(farm.nodes.map((node, i) => [node.name, 10_000 + i]));
  const check = checkInventoryText(farm.yaml((name) => ({ port: ports.get(name)!, identityFile: '/nonexistent' })), 'farm.yaml');
  if (!check.ok) throw new Error(JSON.stringify(check.problems.slice(0, 3)));
  const inventory = check.inventory;
  const keys = new Map(inventory.nodes.map((node, i) => [node.name, createHash('sha256').update(`farm key ${i}`).digest('base64')]));
  // CPU time of this process, not wall: on a shared machine the wall clock measures the neighbours
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  let t = cpuMs();
  const configs = desiredMesh(inventory, keys);
  let bytes = 0;
  for (const c of configs) bytes += Buffer.byteLength(renderWgQuickConfig(c));
  const renderMs = cpuMs() - t;
  const targets: PingTarget[] = inventory.nodes.map((node) => ({ node: node.name, ip: node.overlayIp }));
  const results = new Map<string, NodePingResults>();
  for (const from of targets) {
    const ping = new Map(targets.filter((x) => x !== from).map((x) => [x.ip, { transmitted: 3, received: 3, loss: 0, rc: 0 }]));
    results.set(from.node, { ping, mtu: new Map(), after: new Map(), complete: true });
  }
  t = cpuMs();
  const matrix = buildMatrix(targets, results);
  const matrixMs = cpuMs() - t;
  const cells = Object.values(matrix.cells).reduce((sum, row) => sum + Object.keys(row).length, 0);
  return { renderMs: Math.round(renderMs), renderedMB: Math.round(bytes / 1e5) / 10, matrixMs: Math.round(matrixMs), cells };
}

/**
 * Where an up stopped and why (the first failing check, with how many nodes failed it), and each phase's wall time:
 * from up --json (verify's report has no phases: nothing).
 */
export function outcomeOf(json: Record<string, unknown>): Record<string, unknown> {
  const phases = (json.phases as Array<{ id: string; durationMs: number; nodes: Array<{ node: string; error?: string; checks: Array<{ id: string; status: string; message?: string }> }> }>) ?? [];
  if (!phases.length) return {};
  const out: Record<string, unknown> = { phaseS: Object.fromEntries(phases.map((p) => [p.id, Math.round(p.durationMs / 100) / 10])) };
  if (json.stoppedAt) out.stoppedAt = json.stoppedAt;
  const stopped = phases.find((p) => p.id === json.stoppedAt);
  const failures = new Map<string, { nodes: number; example: string }>();
  for (const node of stopped?.nodes ?? [])
    for (const c of node.checks)
      if (c.status === 'fail') {
        const f = failures.get(c.id) ?? { nodes: 0, example: `${node.node}: ${(c.message ?? '').slice(0, 200)}` };
        f.nodes++;
        failures.set(c.id, f);
      }
  if (failures.size) out.failed = Object.fromEntries(failures);
  return out;
}

/** verify's checks by id and status ("cold-start": { warn: 9900 }), from verify --json */
export function checkCounts(checks: Array<{ id: string; status: string }>): Record<string, Record<string, number>> {
  const counts: Record<string, Record<string, number>> = {};
  for (const c of checks) {
    const row = (counts[c.id] ??= {});
    row[c.status] = (row[c.status] ?? 0) + 1;
  }
  return counts;
}

/** channels per node per phase: the most any node opened, from up --json */
function channelsPerPhase(json?: Record<string, unknown>): Record<string, number> | undefined {
  const channels = json?.channels as Record<string, Record<string, number>> | undefined;
  if (!channels) return undefined;
  return Object.fromEntries(Object.entries(channels).map(([phase, row]) => [phase, Math.max(0, ...Object.values(row))]));
}

async function main(): Promise<void> {
  mkdirSync(farmRoot, { recursive: true });
  lockFarmDir(farmRoot);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
  meshctlBin = snapshotMeshctl(farmRoot);
  const rows: Record<string, unknown>[] = [];
  for (const n of sizes) {
    const dir = join(farmRoot, `farm-${n}`);
    const row: Record<string, unknown> = {
      nodes: n,
      date: new Date().toISOString(),
      commit: commitOf(),
      command: `MESHCTL_FARM_STEPS=${steps.join(',')} npm run bench:farm -- ${n}`,
      sandbox: process.env.MESHCTL_FARM_SANDBOX === 'command' ? 'bwrap per command' : 'one sandbox per node (nsenter per command)',
      ...(process.env.MESHCTL_FARM_PROFILE ? { profiled: 'meshctl ran with --cpu-prof (10 ms): its CPU includes the profiler' } : {}),
      ...renderAndMatrix(n),
    };
    process.stderr.write(`bench: ${n}: ${JSON.stringify(row)}\n`);
    const t0 = performance.now();
    const farm = await startFarm(n, dir);
    process.once('exit', () => farm.exitCode === null && farm.kill('SIGTERM')); // an interrupted bench leaves no farm
    row.farmReadyS = Math.round((performance.now() - t0) / 100) / 10;
    process.stderr.write(`bench: farm of ${n} ready in ${row.farmReadyS} s\n`);
    const inv = join(dir, 'inventory.yaml');
    try {
      for (const step of steps) {
        // the farm has no underlay (docs/farm.md): the baseline's port-forward probe and NAT discovery would find no
        // datagram anywhere, so up skips them (their checks warn)
        const cmd =
          step === 'verify'
            ? ['verify', '--connect-timeout', '300']
            : step === 'plan'
              ? ['plan', '--connect-timeout', '300', '--no-underlay-probes']
              : ['up', '--yes', '--connect-timeout', '300', '--no-underlay-probes'];
        const args = [...cmd, '--json', inv];
        const m = await measure(farm, dir, n, step, args);
        const { json, ...numbers } = m;
        row[step] = {
          ...numbers,
          ...(json && 'result' in json ? { result: json.result } : {}),
          ...(json && 'ok' in json ? { ok: json.ok } : {}),
          ...(json ? outcomeOf(json) : {}),
          // verify's own stage times and the cold-start probe's round trips (src/checks/collect.ts)
          ...(json && step === 'verify' && json.timings ? { timings: json.timings } : {}),
          ...(json && step === 'verify' && Array.isArray(json.checks) ? { checks: checkCounts(json.checks as Array<{ id: string; status: string }>) } : {}),
          ...(step.startsWith('up') ? { channelsPerNodePerPhase: channelsPerPhase(json), peakChannelsPerConnection: Math.max(0, ...Object.values((json?.peakChannels as Record<string, number>) ?? {})) } : {}),
        };
        process.stderr.write(`bench: ${n} ${step}: ${JSON.stringify(row[step])}\n`);
        // after every step: a run stopped later (a deadline) keeps what it measured
        writeResults([...rows, row]);
      }
    } finally {
      // (a farm that already died would never emit 'exit' again: awaiting it would end this process silently)
      if (farm.exitCode === null && farm.signalCode === null) {
        farm.kill('SIGTERM');
        await new Promise((r) => farm.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    }
    rows.push(row);
  }
  writeResults(rows);
}

/** Writes docs/farm-results.json (see main) and prints the table; returns nothing. */
function writeResults(rows: Record<string, unknown>[]): void {
  const out = join(repo, 'docs', `farm-results${process.env.MESHCTL_FARM_SUFFIX ?? ''}.json`);
  // one size at a time is the usual run on a shared machine: the file keeps the other sizes' latest rows (each row
  // names its own date, commit and load), and this run's rows replace the same sizes
  const kept = previousRows(out).filter((r) => !sizes.includes(r.nodes as number));
  const result = {
    command: 'npm run bench:farm -- SIZES (each row: its own command, date, commit and load)',
    machine: `${cpus().length} x ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}`,
    date: new Date().toISOString(),
    rows: [...kept, ...rows].sort((a, b) => (a.nodes as number) - (b.nodes as number)),
  };
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${markdown(result.rows)}\n(written to ${out})\n`);
}

/** The rows of an earlier results file that carry their own commit (older files' rows did not: dropped). */
function previousRows(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  try {
    const rows = (JSON.parse(readFileSync(file, 'utf8')) as { rows?: Record<string, unknown>[] }).rows ?? [];
    return rows.filter((r) => typeof r.commit === 'string');
  } catch {
    return [];
  }
}

const cell = (row: Record<string, unknown>, step: string, f: (m: Measured) => string) => {
  const m = row[step] as Measured | undefined;
  return m ? f(m) : '-';
};

const steps3 = ['up', 'up2', 'verify'];

/** the lowest and highest 1-minute load average seen at the steps' starts and ends */
function loadSpan(row: Record<string, unknown>): string {
  const loads = steps3.flatMap((s) => (row[s] as Measured | undefined)?.load ?? []);
  return loads.length ? `${Math.min(...loads)}-${Math.max(...loads)}` : '-';
}

function markdown(rows: Record<string, unknown>[]): string {
  const lines = [
    '| nodes | up: wall / CPU / RSS | 2nd up: wall / CPU / RSS | verify: wall / CPU / RSS | bytes sent per node (up, 2nd up, verify) | farm CPU per node (up, 2nd up, verify) | load (start-end of the steps) | render N configs | N x (N-1) matrix | commit |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const w = (m: Measured) => `${m.wallS} s / ${m.cpuS} s / ${m.rssMB} MB${m.exit ? ` (exit ${m.exit})` : ''}`;
  for (const r of rows) {
    lines.push(
      `| ${r.nodes} | ${cell(r, 'up', w)} | ${cell(r, 'up2', w)} | ${cell(r, 'verify', w)} | ${steps3.map((s) => cell(r, s, (m) => `${m.bytesPerNode}`)).join(', ')} | ${steps3.map((s) => cell(r, s, (m) => (m.farmCpuSPerNode !== undefined ? `${m.farmCpuSPerNode} s` : '-'))).join(', ')} | ${loadSpan(r)} | ${r.renderMs} ms (${r.renderedMB} MB) | ${r.matrixMs} ms (${r.cells} cells) | ${r.commit ?? '-'} |`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
