/**
 * `npm run bench`: meshctl against the floor and against Ansible on labs of 4, 8, 16 and 32 nodes.
 *   npm run bench -- [--sizes 4,8,16,32] [--runs 3] [--no-ansible] [--control-persist SECONDS] [--out docs/bench.json] [--table-only]
 * For each size and run, three fresh labs of the same inventory (./inventory.ts), one after another:
 *   1. meshctl: cold `up --json`, a second `up --json` (nothing to change), `verify --json`, each in the lab's
 *      operator namespace under /usr/bin/time (wall, CPU, peak RSS);
 *   2. the floor (./floor.ts): the phases' scripts of run 1's plan on all nodes at once, no SSH;
 *   3. Ansible (./ansible/mesh.yml), cold and second run, when ansible-playbook is installed.
 * Medians over the runs go to docs/bench.json and docs/bench.md (./table.ts). Needs root (the lab); every lab is
 * removed when its part is done, also after a failure or Ctrl-C.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { readState } from '../../src/lab/state.js';
import { ansibleInventory } from './ansible-inventory.js';
import { type Floor, NodeShell, measureFloor, readPublicKeys } from './floor.js';
import { benchInventory, siteMix } from './inventory.js';
import { type BenchResults, type RunResult, type SizeResult, type ToolRun, firstStages, median, pageWithNotes } from './table.js';
import { DROPPED_ENV, toolEnv } from './tool-env.js';
import { benchControlDir, endControlMasters } from './control-master.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MESHCTL = join(ROOT, 'bin', 'meshctl.js');
const PYTHON_DEBS = '/var/cache/meshctl-bench/python-debs';
const CONTROL_DIR = benchControlDir(tmpdir());
/** python3 + python3-apt and what the lab's Debian base lacks of their dependencies (Ansible's modules need them). */
const PYTHON_PACKAGES = [
  'distro-info-data',
  'libgdbm6',
  'libpython3-stdlib',
  'libpython3.11-minimal',
  'libpython3.11-stdlib',
  'libreadline8',
  'libsqlite3-0',
  'media-types',
  'python-apt-common',
  'python3',
  'python3-apt',
  'python3-minimal',
  'python3.11',
  'python3.11-minimal',
  'readline-common',
];

interface Options {
  sizes: number[];
  runs: number;
  ansible: boolean;
  /** false: Ansible alone (for working on the playbook); the table then has no meshctl or floor numbers */
  meshctl: boolean;
  out: string;
  tableOnly: boolean;
  /**
   * `--control-persist SECONDS`: meshctl's three runs keep their SSH connections this long, as Ansible's do with
   * ControlPersist 60 s (scripts/bench/ansible/ansible.cfg). Off by default, as it is in meshctl: measured
   * 2026-12-01, the cold run then waits for the master's start (4 nodes: first login 469 ms instead of 222 ms), and
   * at 32 nodes the second `up` and `verify` were no nearer their floor (docs/bench.md's notes).
   */
  controlPersistS: number;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { sizes: [4, 8, 16, 32], runs: 3, ansible: true, meshctl: true, out: join(ROOT, 'docs', 'bench.json'), tableOnly: false, controlPersistS: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => argv[++i] ?? fail(`${arg} needs a value`);
    if (arg === '--sizes') options.sizes = value().split(',').map(Number);
    else if (arg === '--runs') options.runs = Number(value());
    else if (arg === '--no-ansible') options.ansible = false;
    else if (arg === '--only-ansible') options.meshctl = false;
    else if (arg === '--out') options.out = resolve(value());
    else if (arg === '--table-only') options.tableOnly = true;
    else if (arg === '--control-persist') options.controlPersistS = Number(value());
    else fail(`unknown option ${arg} (--sizes 4,8,16,32 --runs 3 --no-ansible --control-persist SECONDS --out FILE --table-only)`);
  }
  for (const n of options.sizes) siteMix(n);
  if (!(options.runs >= 1)) fail('--runs must be 1 or more');
  if (!Number.isInteger(options.controlPersistS) || options.controlPersistS < 0) fail('--control-persist must be whole seconds, 0 for off');
  return options;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

const log = (message: string) => process.stderr.write(`bench: ${message}\n`);

interface Proc {
  code: number;
  stdout: string;
  stderr: string;
  wallMs: number;
}

/** The environment of every timed process (./tool-env.ts: this one without NODE_EXTRA_CA_CERTS). */
const TOOL_ENV = toolEnv(process.env);
/** The dropped variables that this machine does set (what the table says was dropped). */
const droppedHere = DROPPED_ENV.filter((key) => process.env[key] !== undefined);

/** Runs argv, capturing its output; never throws for a non-zero exit. The environment is TOOL_ENV unless given. */
function run(argv: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Proc> {
  const started = performance.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: options.env ?? TOOL_ENV, cwd: options.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        wallMs: Math.round(performance.now() - started),
      }),
    );
  });
}

async function must(argv: string[], what: string): Promise<Proc> {
  const result = await run(argv);
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr.trim().slice(-800)}`);
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Labs

let currentLab: string | undefined;

async function labUp(inventory: string, name: string): Promise<number> {
  // `lab up` keeps a lab that is already up: one left by a bench run that died (seen: a 32-node run killed during
  // Ansible left its nodes with wireguard-tools installed, and the next run's "cold" up found nothing to install).
  // Every measurement needs fresh nodes, so a leftover lab of this name goes first.
  if (readState(name)) {
    log(`a lab named ${name} was left up (a run that died): taking it down first`);
    await must([process.execPath, MESHCTL, 'lab', 'down', '--name', name], `lab down ${name}`);
  }
  // a failed `lab up` removes what it made itself; only a lab that is up is ours to take down
  const { wallMs } = await must([process.execPath, MESHCTL, 'lab', 'up', inventory, '--name', name], `lab up ${name}`);
  currentLab = name;
  return wallMs;
}

async function labDown(): Promise<void> {
  if (!currentLab) return;
  const name = currentLab;
  endControlMasters(CONTROL_DIR); // a master left by a run that failed: its connections go with the lab
  await run([process.execPath, MESHCTL, 'lab', 'down', '--name', name]);
  currentLab = undefined;
}

function labInfo(name: string) {
  const state = readState(name);
  if (!state) throw new Error(`lab ${name} has no state`);
  return state;
}

function shellsOf(name: string): Map<string, NodeShell> {
  return new Map(labInfo(name).nodes.map((n) => [n.name, new NodeShell(n.name, n.leaderPid!)]));
}

/**
 * Runs a command in the lab's operator namespace under /usr/bin/time: wall time (measured here), CPU (user + sys of
 * the command and its waited-for children) and peak RSS of its largest process.
 */
async function timedInOperator(name: string, argv: string[], env: NodeJS.ProcessEnv): Promise<Proc & { cpuMs: number; rssKiB: number }> {
  const state = labInfo(name);
  const timeFile = join(tmpdir(), `meshctl-bench-time-${process.pid}`);
  const result = await run(
    ['ip', 'netns', 'exec', state.plan.operator.namespace, '/usr/bin/time', '-f', '%U %S %M', '-o', timeFile, ...argv],
    { env },
  );
  const [user, sys, rss] = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  rmSync(timeFile, { force: true });
  return { ...result, cpuMs: Math.round((user! + sys!) * 1000), rssKiB: rss! };
}

// ---------------------------------------------------------------------------------------------------------------
// meshctl

interface UpJson {
  result: string;
  changes: number;
  phases: { id: string; durationMs: number }[];
  /** up --json's timings, as meshctl writes them (an older meshctl's lack some of the first-connection stages) */
  timings: import('../../src/engine/up.js').UpReport['timings'];
  roundTrips: Record<string, number>;
  plan?: import('../../src/engine/plan.js').Plan;
  /** relay: auto made a second pass (src/engine/up.ts): the first pass, which did the cold work */
  firstPass?: { stoppedAt: string; phases: { id: string; durationMs: number }[]; plan?: import('../../src/engine/plan.js').Plan };
  fallbackRelays?: { relayedAtGate: string[] };
  matrix?: import('../../src/checks/ping-matrix.js').Matrix;
}

/**
 * Runs meshctl in the lab's operator namespace, timed. A non-zero exit throws (the report kept in /tmp), unless
 * `keepFailed`: then the run comes back with `failed` naming what failed, so the runs before it keep their numbers.
 */
async function meshctl(name: string, args: string[], keepFailed = false): Promise<{ run: ToolRun; json: unknown }> {
  const state = labInfo(name);
  // The bench measures time, not deadlines: at 32 nodes on 2 shared cores, wg-quick's start on every node at once
  // outlasts the 60 s per-command default (seen 2026-11-30), which would stop the run at enable. 300 s unless set.
  const env = {
    ...TOOL_ENV,
    MESHCTL_KNOWN_HOSTS: state.knownHosts,
    MESHCTL_IDENTITY: state.identity,
    MESHCTL_COMMAND_TIMEOUT: process.env.MESHCTL_COMMAND_TIMEOUT ?? '300',
    MESHCTL_CONTROL_DIR: CONTROL_DIR,
  };
  const result = await timedInOperator(name, [process.execPath, MESHCTL, ...args], env);
  let json: unknown;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    throw new Error(`meshctl ${args[0]} printed no JSON (exit ${result.code}): ${result.stderr.trim().slice(-800)}`);
  }
  if (result.code !== 0) {
    // the report says which gate stopped and why; keep it whole beside the bench's work files
    const saved = join(tmpdir(), `meshctl-bench-failed-${args[0]}-${Date.now()}.json`);
    writeFileSync(saved, result.stdout);
    const run = { wallMs: result.wallMs, cpuMs: result.cpuMs, rssKiB: result.rssKiB };
    if (keepFailed) {
      log(`meshctl ${args[0]} exited ${result.code}: ${failedChecks(json)} (report in ${saved}); its time is kept, marked failed`);
      return { run: { ...run, failed: failedChecks(json) }, json };
    }
    throw new Error(`meshctl ${args.join(' ')} exited ${result.code} (${stopSummary(json)}; report in ${saved}): ${result.stderr.trim().slice(-800)}`);
  }
  return { run: { wallMs: result.wallMs, cpuMs: result.cpuMs, rssKiB: result.rssKiB }, json };
}

/** A verify --json report's failed checks, in a few words: `3 of 9248 checks failed: ping office-12 -> home-8, ...`. */
function failedChecks(json: unknown): string {
  const checks = (json as { checks?: { node: string; peer?: string; id: string; status: string }[] }).checks ?? [];
  const failed = checks.filter((c) => c.status === 'fail');
  const named = failed.slice(0, 5).map((c) => `${c.id} ${c.node}${c.peer ? ` -> ${c.peer}` : ''}`);
  return `${failed.length} of ${checks.length} checks failed${named.length ? `: ${named.join(', ')}${failed.length > 5 ? ', ...' : ''}` : ''}`;
}

/** The phase that stopped an up --json report, with its nodes' errors and failed checks, in a few words. */
function stopSummary(json: unknown): string {
  const report = json as { phases?: { id: string; verdict: string; nodes: { node: string; error?: string; checks: { status: string }[] }[] }[] };
  const stopped = report.phases?.find((p) => p.verdict === 'STOP');
  if (!stopped) return 'no phase stopped';
  const bad = stopped.nodes.filter((n) => n.error || n.checks.some((c) => c.status === 'fail'));
  return `STOP at ${stopped.id}: ${JSON.stringify(bad).slice(0, 800)}`;
}

function upRun(run: ToolRun, report: UpJson): ToolRun {
  const trips = Object.values(report.roundTrips);
  return {
    ...run,
    // a second pass (relay: auto) adds its phases to the first's: the run's time per phase is both
    phasesMs: [...(report.firstPass?.phases ?? []), ...report.phases].reduce<Record<string, number>>(
      (sum, p) => ({ ...sum, [p.id]: (sum[p.id] ?? 0) + p.durationMs }),
      { connect: report.timings.connectMs },
    ),
    ...(report.fallbackRelays?.relayedAtGate.length ? { relayedAtGate: report.fallbackRelays.relayedAtGate } : {}),
    ...pingRounds(report.matrix),
    changes: report.changes,
    // wall - totalMs: process start, module loading, inventory and ~/.ssh/config before up's clock starts, and exit
    outsideUpMs: run.wallMs - report.timings.totalMs,
    roundTripsPerNode: { min: Math.min(...trips), max: Math.max(...trips), mean: trips.reduce((a, b) => a + b, 0) / trips.length },
    // start to the first TCP connect, login and ready connection (what issue 10's 300 ms is about), and the CPU then
    ...firstStages(report.timings),
  };
}

/** up --json's matrix cut to what the ping phase had to do beyond one round (ToolRun.pingRounds); {} when nothing. */
function pingRounds(matrix: UpJson['matrix']): Pick<ToolRun, 'pingRounds'> {
  if (!matrix?.reset && !matrix?.recheck) return {};
  const { reset = [], recheck } = matrix;
  return { pingRounds: { reset, recheck: recheck?.pairs ?? [], recheckReset: recheck?.reset ?? [], ...(recheck ? { recheckMs: recheck.ms } : {}) } };
}

async function measureMeshctl(name: string, inventory: string, controlPersistS: number) {
  // as the command deadline: at 32 nodes on 2 cores config + enable outlast the default 120 s rollback window
  // (src/engine/revert.ts), and the bench measures time, not deadlines
  const persist = controlPersistS > 0 ? ['--control-persist', String(controlPersistS)] : [];
  const up = ['up', inventory, '--yes', '--json', '--rollback-deadline', '900', ...persist];
  const cold = await meshctl(name, up);
  const coldReport = cold.json as UpJson;
  const second = await meshctl(name, up);
  // a failed verify still has a time worth keeping (and cold and second up theirs): it is marked, not thrown
  const verify = await meshctl(name, ['verify', inventory, '--json', ...persist], true);
  // the master's CPU over the three runs (not in their own CPU: it is not their waited-for child), then it goes
  const controlMasterCpuMs = endControlMasters(CONTROL_DIR);
  const secondReport = second.json as UpJson;
  // a pair that failed the cold run's first ping round under the lab's load: up relayed it and ran a second pass, so
  // this run is not a plain cold up (and the second up may move the pair back); the table's numbers keep it, marked
  if (coldReport.firstPass)
    log(`warning: the cold up relayed ${coldReport.fallbackRelays?.relayedAtGate.join(', ')} at the ping gate and ran a second pass`);
  const rounds = pingRounds(coldReport.matrix).pingRounds;
  if (rounds)
    log(`cold up's ping phase: ${rounds.reset.length} pair(s) reset before the round, ${rounds.recheck.length} pinged again${rounds.recheckMs !== undefined ? ` (${rounds.recheckMs} ms)` : ''}`);
  if (secondReport.changes !== 0) log(`warning: the second up changed ${secondReport.changes} things`);
  const inv = loadInventory(inventory);
  const keys = await readPublicKeys(shellsOf(name), inv.mesh.interface);
  return {
    cold: upRun(cold.run, coldReport),
    second: upRun(second.run, secondReport),
    verify: { ...verify.run, phasesMs: (verify.json as { timings: Record<string, number> }).timings },
    controlMasterCpuMs,
    // the floor replays the cold work: the first pass's plan when relay: auto made a second (which only relays)
    plan: coldReport.firstPass?.plan ?? coldReport.plan!,
    keys,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Ansible

const ansibleInstalled = () => spawnSync('sh', ['-c', 'command -v ansible-playbook'], { stdio: 'ignore' }).status === 0;

/** Downloads python3 + python3-apt once (apt-get download, Debian's own client) into a cache outside meshctl's. */
async function ensurePythonDebs(): Promise<string[]> {
  mkdirSync(PYTHON_DEBS, { recursive: true });
  const have = () => readdirSync(PYTHON_DEBS).filter((f) => f.endsWith('.deb'));
  if (have().length < PYTHON_PACKAGES.length) {
    log(`downloading python3 for the lab nodes into ${PYTHON_DEBS} ...`);
    const result = spawnSync('apt-get', ['download', ...PYTHON_PACKAGES], { cwd: PYTHON_DEBS, stdio: 'inherit' });
    if (result.status !== 0) throw new Error('apt-get download of python3 failed');
  }
  return have();
}

/** Ansible's prerequisite on managed nodes, installed before the clock starts: python3 (and python3-apt for its apt module). */
async function installPython(name: string): Promise<void> {
  const debs = await ensurePythonDebs();
  const state = labInfo(name);
  const shells = shellsOf(name);
  await Promise.all(
    state.nodes.map(async (node) => {
      const dir = join(node.root, 'var', 'cache', 'bench-python');
      mkdirSync(dir, { recursive: true });
      for (const deb of debs) cpSync(join(PYTHON_DEBS, deb), join(dir, deb));
      const result = await shells.get(node.name)!.run(PYTHON_INSTALL, { timeoutMs: 600_000 });
      if (result.code !== 0) throw new Error(`${node.name}: installing python3 failed: ${result.stderr.trim().slice(-500)}`);
    }),
  );
}

/** dpkg -i in three rounds: python3-minimal pre-depends on python3.11-minimal, python3 on python3-minimal. */
const PYTHON_INSTALL = [
  'set -e',
  'cd /var/cache/bench-python',
  'dpkg --force-unsafe-io -i libpython3.11-minimal_*.deb python3.11-minimal_*.deb >/dev/null',
  'dpkg --force-unsafe-io -i python3-minimal_*.deb >/dev/null',
  'dpkg --force-unsafe-io -i $(ls *.deb | grep -v -e 3.11-minimal_ -e python3-minimal_) >/dev/null',
  'cd / && rm -rf /var/cache/bench-python',
].join('\n');

interface AnsibleJson {
  plays: { play: { name: string; duration: { start: string; end: string } } }[];
  stats: Record<string, { failures: number; unreachable: number; changed: number }>;
}

async function ansible(name: string, inventoryFile: string, hosts: number, work: string): Promise<ToolRun> {
  const env = {
    ...TOOL_ENV,
    ANSIBLE_CONFIG: join(ROOT, 'scripts', 'bench', 'ansible', 'ansible.cfg'),
    ANSIBLE_LOCAL_TEMP: join(work, 'ansible-tmp'),
    ANSIBLE_SSH_CONTROL_PATH_DIR: join(work, 'cp'),
    ANSIBLE_NOCOLOR: '1',
  };
  const playbook = join(ROOT, 'scripts', 'bench', 'ansible', 'mesh.yml');
  const result = await timedInOperator(name, ['ansible-playbook', '-i', inventoryFile, '--forks', String(Math.max(hosts, 5)), playbook], env);
  let report: AnsibleJson;
  try {
    report = JSON.parse(result.stdout.slice(result.stdout.indexOf('{')));
  } catch {
    throw new Error(`ansible-playbook printed no JSON (exit ${result.code}): ${result.stderr.trim().slice(-800)}`);
  }
  const bad = Object.entries(report.stats).filter(([, s]) => s.failures > 0 || s.unreachable > 0);
  if (result.code !== 0 || bad.length > 0)
    throw new Error(`ansible-playbook failed (exit ${result.code}) on ${bad.map(([h]) => h).join(', ')}: ${result.stdout.slice(-1500)}`);
  const ms = (d: { start: string; end: string }) => Date.parse(d.end) - Date.parse(d.start);
  return {
    wallMs: result.wallMs,
    cpuMs: result.cpuMs,
    rssKiB: result.rssKiB,
    phasesMs: Object.fromEntries(report.plays.map((p) => [p.play.name, ms(p.play.duration)])),
    changes: Object.values(report.stats).reduce((sum, s) => sum + s.changed, 0),
  };
}

async function measureAnsible(name: string, inventory: Inventory, work: string) {
  await installPython(name);
  const state = labInfo(name);
  const file = join(work, `ansible-${name}.yml`);
  writeFileSync(file, ansibleInventory(inventory, { identityFile: state.identity, knownHosts: state.knownHosts }));
  const cold = await ansible(name, file, inventory.nodes.length, work);
  const second = await ansible(name, file, inventory.nodes.length, work);
  return { cold, second };
}

// ---------------------------------------------------------------------------------------------------------------

function machine() {
  const model = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? 'unknown';
  const ansibleVersion = ansibleInstalled()
    ? spawnSync('ansible-playbook', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]!.trim()
    : undefined;
  return {
    cpu: model,
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    ...(ansibleVersion ? { ansible: ansibleVersion } : {}),
  };
}

/** Median wall time of 10 runs of argv, ms (process start: `meshctl --version` against a bare `node -e 0`); env: TOOL_ENV unless given. */
async function startMs(argv: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 10; i++) times.push((await run(argv, { env })).wallMs);
  return median(times);
}

/** Other labs' containers running now (the machine is shared): a number for the notes, not a measurement. */
const otherContainers = () => Number(spawnSync('sh', ['-c', 'pgrep -c systemd-nspawn || true'], { encoding: 'utf8' }).stdout.trim() || 0);

async function measureSize(n: number, run: number, options: Options, work: string): Promise<RunResult> {
  const inventoryFile = join(work, `bench-${n}.yaml`);
  writeFileSync(inventoryFile, benchInventory(n));
  const inventory = loadInventory(inventoryFile);
  const name = `bn${n}`;
  const load = { start: loadavg()[0]!, otherContainers: otherContainers() };

  let labMs = 0;
  let m: Awaited<ReturnType<typeof measureMeshctl>> | undefined;
  let floor: Floor | undefined;
  let floorError: string | undefined;
  if (options.meshctl) {
    log(`${n} nodes, run ${run}: meshctl ...`);
    labMs = await labUp(inventoryFile, name);
    m = await measureMeshctl(name, inventoryFile, options.controlPersistS).finally(labDown);
    log(`${n} nodes, run ${run}: floor ...`);
    await labUp(inventoryFile, name);
    const { plan, keys } = m;
    // a floor that could not be measured is recorded, not fatal: meshctl's numbers of this run stay
    floor = await measureFloor(inventory, shellsOf(name), plan, keys)
      .catch((error: Error) => {
        log(`floor failed: ${error.message}`);
        floorError = error.message.slice(0, 2000);
        return undefined;
      })
      .finally(labDown);
  }

  let a: { cold: ToolRun; second: ToolRun } | undefined;
  let ansibleError: string | undefined;
  if (options.ansible) {
    log(`${n} nodes, run ${run}: ansible ...`);
    await labUp(inventoryFile, name);
    // a failed Ansible run is recorded, not fatal: meshctl's and the floor's numbers of this run stay
    a = await measureAnsible(name, inventory, work)
      .catch((error: Error) => {
        log(`Ansible failed: ${error.message}`);
        ansibleError = error.message.slice(0, 2000);
        return undefined;
      })
      .finally(labDown);
  }
  return {
    labUpMs: labMs,
    load: { ...load, end: loadavg()[0]! },
    ...(floor ? { floor } : {}),
    ...(floorError ? { floorError } : {}),
    ...(m ? { meshctl: { cold: m.cold, second: m.second, verify: m.verify, controlMasterCpuMs: m.controlMasterCpuMs } } : {}),
    ...(a ? { ansible: a } : {}),
    ...(ansibleError ? { ansibleError } : {}),
  };
}

/** Writes the page, keeping the hand-written notes of the one it replaces. */
function writeMarkdown(file: string, results: BenchResults): void {
  writeFileSync(file, pageWithNotes(results, existsSync(file) ? readFileSync(file, 'utf8') : undefined));
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const mdFile = options.out.replace(/\.json$/, '.md');
  if (options.tableOnly) {
    writeMarkdown(mdFile, JSON.parse(readFileSync(options.out, 'utf8')) as BenchResults);
    log(`wrote ${mdFile}`);
    return;
  }
  if (process.getuid?.() !== 0) fail('needs root (it builds labs)');
  if (options.ansible && !ansibleInstalled()) {
    log('ansible-playbook is not installed: Ansible is left out (bash scripts/setup.sh ansible installs it)');
    options.ansible = false;
  }
  const work = mkdtempSync(join(tmpdir(), 'meshctl-bench-'));
  const stop = () => {
    void labDown().finally(() => process.exit(130));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const started = new Date();
  const start: BenchResults['start'] = {
    versionMs: await startMs([process.execPath, MESHCTL, '--version']),
    nodeMs: await startMs([process.execPath, '-e', '0']),
    ...(droppedHere.length > 0 ? { dropped: droppedHere, nodeWithDroppedMs: await startMs([process.execPath, '-e', '0'], process.env) } : {}),
  };
  const sizes: SizeResult[] = [];
  const results = (): BenchResults => ({
    command: `npm run bench -- --sizes ${options.sizes.join(',')} --runs ${options.runs}${options.ansible ? '' : ' --no-ansible'}${
      options.controlPersistS > 0 ? ` --control-persist ${options.controlPersistS}` : ''
    }`,
    date: started.toISOString(),
    machine: machine(),
    start,
    ...(options.meshctl && options.controlPersistS > 0 ? { controlPersistS: options.controlPersistS } : {}),
    sizes,
  });
  try {
    for (const n of options.sizes) {
      const runs: RunResult[] = [];
      for (let r = 1; r <= options.runs; r++) runs.push(await measureSize(n, r, options, work));
      sizes.push({ nodes: n, mix: siteMix(n), runs, median: median(runs) });
      // written after every size, so a long run that is stopped keeps what it measured
      mkdirSync(dirname(options.out), { recursive: true });
      writeFileSync(options.out, `${JSON.stringify(results(), null, 2)}\n`);
      writeMarkdown(mdFile, results());
      log(`${n} nodes done; wrote ${options.out} and ${mdFile}`);
    }
  } finally {
    await labDown();
    rmSync(work, { recursive: true, force: true });
    rmSync(CONTROL_DIR, { recursive: true, force: true });
  }
}

main().catch(async (error: Error) => {
  await labDown();
  process.stderr.write(`bench: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
