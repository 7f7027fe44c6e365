/**
 * What the nodes themselves spend on a converged mesh: a second `up` and a `verify` beside the floor's own rounds,
 * in CPU seconds of the nodes (issue 10: "a second `up` at 32 within 1 s of one ping round's floor", "`verify`
 * within 1 s of the ping floor"). On a lab whose nodes all share this machine's cores, a run cannot take less wall
 * time than the CPU its nodes need divided by the cores; this measures that CPU, so what is above the floor can be
 * split into waits (meshctl's to cut) and work (the nodes': SSH logins, channels, shells).
 *
 *   node --import tsx scripts/bench/node-cpu.ts LAB INVENTORY [ROUNDS=5]
 *
 * LAB is a lab built from INVENTORY (`meshctl lab up INVENTORY --name LAB`) and converged by one `up` (this script
 * runs one first if the mesh is not up; its numbers are not counted). Each round runs, one after another on the
 * quiet lab: the floor's warm ping round (the second `up`'s floor: scripts/bench/floor.ts's `pingWarm`, through
 * nsenter, no SSH), `meshctl up INVENTORY --yes --json`, the floor's ping round with the path MTU (verify's floor:
 * `pingMtu`), `meshctl verify INVENTORY --json`; meshctl runs in the lab's operator namespace as the bench runs it.
 * Each round starts with what any SSH tool pays on the nodes (one OpenSSH login per node at once, running `true`) and
 * the floor's facts phase (meshctl's facts probe on every node at once, through nsenter).
 *
 * Nodes' CPU (seconds): user + system time of every process in the lab nodes' PID namespaces, with the reaped
 * children's (/proc/PID/stat fields 14-17, proc(5)), summed before and after each run: a process that ended during
 * the run is counted through the process that reaped it (its parent, or the node's systemd for an orphan). The
 * floor's scripts are started by nsenter from this process, which reaps them: their CPU is this process's children's
 * (its own cutime + cstime), added for the floor's runs. What runs outside the nodes' PID namespaces (the lab's
 * routers, the kernel's softirq work of the veth links) is not in it; the machine's busy CPU (/proc/stat: every
 * state but idle and iowait, proc(5)) is printed beside it, meshctl's and this process's included.
 * meshctl's CPU: its process and waited-for children (GNU time). Needs root and /usr/bin/time.
 *
 * Prints a line per run and, at the end, the medians per kind: wall, nodes' CPU, meshctl's CPU, and the wall time
 * the nodes' CPU needs at the least on this machine's cores (nodes' CPU / cores).
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { matrixPasses, runPingRound } from '../../src/checks/ping-matrix.js';
import { FACTS } from '../../src/facts/definitions.js';
import { factsProbeScript } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { readState } from '../../src/lab/state.js';
import { NodeShell, onAllNodes, timed } from './floor.js';
import { median } from './table.js';
import { toolEnv } from './tool-env.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MESHCTL = join(ROOT, 'bin', 'meshctl.js');
/** clock ticks per second for /proc/PID/stat's times (sysconf(_SC_CLK_TCK): 100 on every Linux this runs on) */
const CLK_TCK = 100;

const [labName, inventoryFile, roundsArg] = process.argv.slice(2);
if (!labName || !inventoryFile) {
  process.stderr.write('usage: node --import tsx scripts/bench/node-cpu.ts LAB INVENTORY [ROUNDS=5]\n');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 5);
const state = readState(labName);
if (!state) throw new Error(`lab ${labName} has no state (meshctl lab up ${inventoryFile} --name ${labName})`);
const inventory = loadInventory(inventoryFile);

/** The PID-namespace ids (`pid:[INODE]`) of the lab's nodes, from their systemd (PID 1 inside). */
const nodeNamespaces = new Set(state.nodes.map((n) => readlinkSync(`/proc/${n.leaderPid}/ns/pid`)));

/**
 * CPU seconds of every process in the nodes' PID namespaces, own and reaped children's (utime + stime + cutime +
 * cstime, proc(5)). A process that ends between two readings leaves the sum through its reaper's cutime/cstime.
 */
function nodesCpuS(): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!nodeNamespaces.has(readlinkSync(`/proc/${pid}/ns/pid`))) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // fields after the command name (which may hold blanks and parentheses): state is field 3, utime field 14
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      // the process ended while being read: its time is in its reaper's, read now or at the next reading
    }
  }
  return ticks / CLK_TCK;
}

/** This process's reaped children's CPU seconds (cutime + cstime of /proc/self/stat): the floor's nsenter'd scripts. */
function childrenCpuS(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

/** CPU seconds the whole machine was busy (the first line of /proc/stat: user, nice, system, irq, softirq, steal). */
function machineBusyS(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / CLK_TCK;
}

interface Sample {
  kind: string;
  wallS: number;
  nodesCpuS: number;
  machineCpuS: number;
  meshctlCpuS?: number;
  load: number;
  ok: boolean;
}

/** Runs meshctl in the lab's operator namespace under GNU time: its exit code and CPU seconds. */
function meshctl(args: string[]): Promise<{ code: number; cpuS: number }> {
  const timeFile = join(tmpdir(), `meshctl-node-cpu-${process.pid}`);
  const env = {
    ...toolEnv(process.env),
    MESHCTL_KNOWN_HOSTS: state!.knownHosts,
    MESHCTL_IDENTITY: state!.identity,
    MESHCTL_COMMAND_TIMEOUT: process.env.MESHCTL_COMMAND_TIMEOUT ?? '300',
  };
  const argv = ['ip', 'netns', 'exec', state!.plan.operator.namespace, '/usr/bin/time', '-f', '%U %S', '-o', timeFile, process.execPath, MESHCTL, ...args];
  return new Promise((done, fail) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      const [user, sys] = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
      rmSync(timeFile, { force: true });
      if (code !== 0) process.stderr.write(`meshctl ${args[0]} exited ${code}: ${stderr.trim().slice(-600)}\n`);
      done({ code: code ?? 255, cpuS: user! + sys! });
    });
  });
}

/** Runs `work` and measures it; `floor`: its scripts run under nsenter from this process (their CPU is its children's). */
async function measure(kind: string, work: () => Promise<{ ok: boolean; meshctlCpuS?: number }>, floor = false): Promise<Sample> {
  const load = loadavg()[0]!;
  const [cpu0, children0, machine0] = [nodesCpuS(), childrenCpuS(), machineBusyS()];
  const { ms, value } = await timed(work);
  const nsenterd = floor ? childrenCpuS() - children0 : 0;
  const sample = { kind, wallS: ms / 1000, nodesCpuS: nodesCpuS() - cpu0 + nsenterd, machineCpuS: machineBusyS() - machine0, load, ...value };
  const mine = sample.meshctlCpuS === undefined ? '' : `, meshctl CPU ${sample.meshctlCpuS.toFixed(2)} s`;
  process.stdout.write(
    `${kind}: wall ${sample.wallS.toFixed(2)} s, nodes' CPU ${sample.nodesCpuS.toFixed(2)} s${mine}, machine busy ${sample.machineCpuS.toFixed(2)} s, load ${load.toFixed(1)}${sample.ok ? '' : ' FAILED'}\n`,
  );
  return sample;
}

const shells = new Map(state.nodes.map((n) => [n.name, new NodeShell(n.name, n.leaderPid!)]));
const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
const after = [FACTS.interfaceRoutes, FACTS.peers, FACTS.now].map((def) => ({ name: def.name, command: def.command({ interface: inventory.mesh.interface, listenPort: 0 }) }));
const floorRound = (withMtu: boolean) => async () => {
  const { matrix } = await runPingRound(shells, targets, withMtu ? { mtu: inventory.mesh.mtu } : { after });
  return { ok: matrixPasses(matrix, { withMtu }) };
};
/**
 * What any SSH tool pays on the nodes before it does anything: one OpenSSH login per node, all at once, each running
 * `true` in one session channel (the lab's ssh_config, key and known_hosts; `ssh` itself runs on the host side).
 */
const logins = async () => {
  const codes = await Promise.all(
    state.nodes.map(
      (n) =>
        new Promise<number>((done) => {
          const argv = ['ip', 'netns', 'exec', state.plan.operator.namespace, 'ssh', '-F', state.sshConfig, n.name, 'true'];
          spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' }).on('close', (code) => done(code ?? 255));
        }),
    ),
  );
  return { ok: codes.every((c) => c === 0) };
};
/** The floor's facts phase: meshctl's facts probe on every node at once (scripts/bench/floor.ts measureFloor's). */
const floorFacts = async () => {
  const ports = new Map(inventory.nodes.map((n) => [n.name, n.listenPort]));
  await onAllNodes(shells, (node) => [{ script: factsProbeScript({ interface: inventory.mesh.interface, listenPort: ports.get(node)! }) }]);
  return { ok: true };
};
const up = ['up', inventoryFile, '--yes', '--json', '--rollback-deadline', '900'];
const tool = (args: string[]) => async () => {
  const { code, cpuS } = await meshctl(args);
  return { ok: code === 0, meshctlCpuS: cpuS };
};

process.stdout.write(`lab ${labName}: ${state.nodes.length} nodes, ${cpus().length} cores, ${rounds} rounds\n`);
await measure('converge (not counted)', tool(up));
const samples: Sample[] = [];
for (let round = 1; round <= rounds; round++) {
  samples.push(await measure('logins', logins));
  samples.push(await measure('floor facts', floorFacts, true));
  samples.push(await measure('floor pingWarm', floorRound(false), true));
  samples.push(await measure('second up', tool(up)));
  samples.push(await measure('floor pingMtu', floorRound(true), true));
  samples.push(await measure('verify', tool(['verify', inventoryFile, '--json'])));
}
const cores = cpus().length;
process.stdout.write(
  `\n| run (median of ${rounds}) | wall | nodes' CPU | its least wall on ${cores} cores | meshctl CPU | machine busy | failed runs |\n|---|---|---|---|---|---|---|\n`,
);
for (const kind of ['logins', 'floor facts', 'floor pingWarm', 'second up', 'floor pingMtu', 'verify']) {
  const of = samples.filter((s) => s.kind === kind);
  const cpu = median(of.map((s) => s.nodesCpuS));
  const mine = of.some((s) => s.meshctlCpuS !== undefined) ? `${median(of.map((s) => s.meshctlCpuS ?? 0)).toFixed(2)} s` : '-';
  process.stdout.write(
    `| ${kind} | ${median(of.map((s) => s.wallS)).toFixed(2)} s | ${cpu.toFixed(2)} s | ${(cpu / cores).toFixed(2)} s | ${mine} | ${median(of.map((s) => s.machineCpuS)).toFixed(2)} s | ${of.filter((s) => !s.ok).length} |\n`,
  );
}
