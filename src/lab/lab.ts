/**
 * The lab's verbs: up, down, exec, run (meshctl inside the operator namespace), status.
 * `up` either finishes or removes everything it made; `down` sweeps by naming convention as well as by
 * state.json, so it also cleans after a crash halfway.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MeshctlError, badInput } from '../errors.js';
import { loadInventory } from '../inventory/load.js';
import { interruptSignal } from '../interrupt.js';
import { ensureCaches, pidAlive, type Progress } from './base.js';
import { applyNetwork, settleAll } from './network.js';
import { labDnsRecords, startLabDns, writeNodeResolvConf } from './dns.js';
import { prepareNode, startNode, waitReady, type PreparedNode, type StartedNode } from './nodes.js';
import { labPaths, labsRoot } from './paths.js';
import { LAB_SUDO_USER, infraNamespace, namespacePrefix, planLab, validateLabName, type LabPlan } from './plan.js';
import { cmdline, listPids, mountsBelow, netnsInode, processNetnsInode } from './procs.js';
import { readState, writeState, type LabState, type NodeState } from './state.js';
import * as sys from './sys.js';

export const DEFAULT_LAB = 'lab';

export interface UpOptions {
  name?: string;
  progress?: Progress;
  /** For programs embedding the lab (its tests make faulty nodes with it): runs on each node's root before its first boot. */
  beforeBoot?: (node: string, root: string) => void | Promise<void>;
}

/** Tools `lab up` needs, with the Debian package that brings each. */
const REQUIRED_TOOLS: [string[], string][] = [
  [['debootstrap'], 'debootstrap'],
  [['systemd-nspawn'], 'systemd-container'],
  [['ip'], 'iproute2'],
  [['iptables', 'nft'], 'iptables or nftables'],
  [['ssh-keygen'], 'openssh-client'],
  [['ssh-keyscan'], 'openssh-client'],
  [['dpkg-scanpackages'], 'dpkg-dev'],
  [['nsenter'], 'util-linux'],
  [['mount'], 'mount'],
  [['chroot'], 'coreutils'],
];

export function requireRoot(verb: string): void {
  if (process.getuid?.() !== 0) throw badInput(`lab ${verb} must run as root (it makes network namespaces, mounts and containers)`);
}

/** Names every missing tool at once, on one line. */
export function checkTools(path = process.env.PATH ?? ''): void {
  const missing = REQUIRED_TOOLS.filter(([tools]) => !tools.some((t) => sys.which(t, path))).map(
    ([tools, pkg]) => `${tools.join(' or ')} (package ${pkg})`,
  );
  if (missing.length > 0)
    throw badInput(`lab up needs tools that are missing: ${missing.join(', ')}; install them (scripts/setup.sh does)`);
}

const firewallTool = (): 'iptables' | 'nft' => (sys.which('iptables') ? 'iptables' : 'nft');

/** True when anything of a lab by this name exists (its directory or any namespace carrying its prefix). */
async function labExists(name: string): Promise<boolean> {
  return existsSync(labPaths(name).dir) || (await sys.netnsList()).some((ns) => ns.startsWith(namespacePrefix(name)));
}

function checkInterrupted(): void {
  if (interruptSignal.aborted) throw new MeshctlError('interrupted', 'interrupted');
}

export async function labUp(inventoryPath: string, options: UpOptions = {}): Promise<LabState> {
  const name = options.name ?? DEFAULT_LAB;
  const progress = options.progress ?? (() => undefined);
  const started = Date.now();
  validateLabName(name);
  requireRoot('up');
  checkTools();
  const inventory = loadInventory(inventoryPath);
  const plan = planLab(inventory, name);
  const dnsRecords = labDnsRecords(inventory, plan);
  if (Object.keys(dnsRecords).length > 0) plan.dns = dnsRecords;
  const paths = labPaths(name);
  if (await labExists(name)) throw badInput(`lab ${name} already exists (remove it with: meshctl lab down --name ${name})`);
  mkdirSync(labsRoot(), { recursive: true });
  try {
    mkdirSync(paths.dir, { mode: 0o700 }); // atomic claim of the name
  } catch {
    throw badInput(`lab ${name} already exists (remove it with: meshctl lab down --name ${name})`);
  }

  try {
    return await buildLab(name, resolve(inventoryPath), plan, progress, started, options.beforeBoot);
  } catch (error) {
    progress(`lab ${name}: up failed, removing what was made ...`);
    await labDown(name).catch((downError: Error) => progress(`lab ${name}: cleanup also failed: ${downError.message}`));
    if (error instanceof MeshctlError) throw error;
    throw new MeshctlError(`lab up failed: ${(error as Error).message}`, 'stop');
  }
}

async function buildLab(
  name: string,
  inventory: string,
  plan: LabPlan,
  progress: Progress,
  started: number,
  beforeBoot: UpOptions['beforeBoot'],
): Promise<LabState> {
  const paths = labPaths(name);
  const caches = await ensureCaches(progress);
  checkInterrupted();
  await raiseInotifyLimits(plan.nodes.length);

  const state: LabState = {
    name,
    inventory,
    createdAt: new Date().toISOString(),
    phase: 'building',
    firewall: firewallTool(),
    base: caches.base,
    repo: caches.repo,
    plan,
    namespaces: [],
    mounts: [],
    nodes: plan.nodes.map((n) => ({
      name: n.name,
      site: n.site,
      namespace: n.namespace,
      address: n.address,
      overlayIp: n.overlayIp,
      sshHost: n.sshHost,
      sshPort: n.sshPort,
      sshUser: n.sshUser,
      sudoUser: LAB_SUDO_USER,
      sudoUsers: n.sudoUsers,
      root: paths.node(n.name).root,
    })),
    identity: paths.identity,
    knownHosts: paths.knownHosts,
    sshConfig: paths.sshConfig,
  };
  writeState(state);
  await sys.sshKeygenUser(paths.identity, `meshctl-lab-${name}`);

  progress(`lab ${name}: networks (${plan.namespaces.length} namespaces, ${plan.links.length} links) ...`);
  await applyNetwork(plan, state.firewall, (ns) => state.namespaces.push(ns));
  writeState(state);
  if (plan.dns) await startLabDns(name, plan.internet.namespace, plan.dns);
  checkInterrupted();

  progress(`lab ${name}: preparing ${plan.nodes.length} nodes ...`);
  const operatorPub = readFileSync(paths.identityPub, 'utf8');
  const prepared = new Map<string, PreparedNode>();
  try {
    await settleAll(
      plan.nodes.map(async (node) => {
        prepared.set(
          node.name,
          await prepareNode(node, paths.node(node.name), caches.base, operatorPub, (point) => state.mounts.push(point)),
        );
        if (plan.dns) writeNodeResolvConf(paths.node(node.name).root);
        await beforeBoot?.(node.name, paths.node(node.name).root);
      }),
    );
  } finally {
    writeState(state);
  }
  checkInterrupted();

  progress(`lab ${name}: booting ${plan.nodes.length} nodes ...`);
  const byName = new Map(state.nodes.map((n) => [n.name, n]));
  // Containers start one at a time (each until its PID 1 exists, a fraction of a second), then boot in parallel:
  // systemd-nspawn sets up host-wide state (the cgroup hierarchy) as it starts, and nothing is gained by racing it.
  let previousStart: Promise<unknown> = Promise.resolve();
  const startInTurn = (node: (typeof plan.nodes)[number]) => {
    const start = previousStart.then(() => startNode(name, node, paths.node(node.name), caches.repo));
    previousStart = start.catch(() => undefined);
    return start;
  };
  try {
    await settleAll(
      plan.nodes.map(async (node) => {
        const ed25519 = prepared.get(node.name)!.hostKeys.find((k) => k.startsWith('ssh-ed25519 '))!;
        for (let attempt = 1; ; attempt++) {
          const run = await startInTurn(node);
          Object.assign(byName.get(node.name)!, run);
          writeState(state);
          try {
            await waitReady(node, run, plan.operator.namespace, ed25519, paths.node(node.name));
            break;
          } catch (error) {
            if (attempt >= BOOT_ATTEMPTS || error instanceof MeshctlError) throw error;
            progress(`lab ${name}: warning: ${(error as Error).message}\nlab ${name}: booting ${node.name} once more ...`);
            await stopContainer(run);
          }
        }
      }),
    );
  } finally {
    writeState(state);
  }

  for (const node of state.nodes) node.hostKeyFingerprints = prepared.get(node.name)!.fingerprints;
  writeFileSync(paths.knownHosts, knownHostsText(state.nodes, prepared));
  writeFileSync(paths.sshConfig, sshConfigText(state));
  state.phase = 'ready';
  writeState(state);
  progress(`lab ${name}: ready in ${((Date.now() - started) / 1000).toFixed(1)} s${caches.built ? ' (cache built)' : ''}`);
  return state;
}

/** `[host]:port` when the port is not 22, as OpenSSH and meshctl's transport look it up. */
export const knownHostsName = (host: string, port: number) => (port === 22 ? host : `[${host}]:${port}`);

function knownHostsText(nodes: NodeState[], prepared: Map<string, PreparedNode>): string {
  return nodes.flatMap((n) => prepared.get(n.name)!.hostKeys.map((key) => `${knownHostsName(n.sshHost, n.sshPort)} ${key}\n`)).join('');
}

function sshConfigText(state: LabState): string {
  const lines = [
    `# lab ${state.name}: use from the operator namespace, e.g.`,
    `#   ip netns exec ${state.plan.operator.namespace} ssh -F ${state.sshConfig} NODE`,
    '',
  ];
  for (const node of state.nodes) {
    lines.push(
      `Host ${node.name}`,
      `  HostName ${node.sshHost}`,
      `  Port ${node.sshPort}`,
      `  User ${node.sshUser}`,
      `  IdentityFile ${state.identity}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${state.knownHosts}`,
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      '',
    );
  }
  return lines.join('\n');
}

/** Each node's systemd takes inotify instances from the host-wide per-user limit (lab.md); raise it when low. */
async function raiseInotifyLimits(nodes: number): Promise<void> {
  const wanted: [string, number][] = [
    ['/proc/sys/fs/inotify/max_user_instances', Math.max(4096, nodes * 64)],
    ['/proc/sys/fs/inotify/max_user_watches', Math.max(524288, nodes * 8192)],
  ];
  for (const [file, value] of wanted) {
    const current = Number((await sys.readSysctlFile(file)).stdout.trim());
    if (!(current >= value)) await sys.writeSysctlFile(file, String(value));
  }
}

export interface DownReport {
  name: string;
  found: boolean;
  containers: number;
  processes: number;
  mounts: number;
  namespaces: number;
}

/**
 * Removes everything of a lab: containers (SIGTERM to nspawn = orderly shutdown, then SIGKILL), any process left
 * in a lab namespace, overlay mounts, namespaces, the lab directory. Idempotent; the caches stay.
 */
export async function labDown(name: string = DEFAULT_LAB): Promise<DownReport> {
  validateLabName(name);
  requireRoot('down');
  const paths = labPaths(name);
  const prefix = namespacePrefix(name);
  const state = readState(name);
  const namespaces = [...new Set([...(await sys.netnsList()).filter((ns) => ns.startsWith(prefix)), ...(state?.namespaces ?? [])])];
  const report: DownReport = {
    name,
    found: existsSync(paths.dir) || namespaces.length > 0,
    containers: 0,
    processes: 0,
    mounts: 0,
    namespaces: 0,
  };

  // Containers: nspawn processes whose root is under the lab dir or whose netns is the lab's.
  const netnsFlag = `--network-namespace-path=/run/netns/${prefix}`;
  const isLabNspawn = (pid: number) => {
    const args = cmdline(pid);
    return (
      args.length > 0 && args[0]!.endsWith('systemd-nspawn') && args.some((a) => a.startsWith(`${paths.dir}/`) || a.startsWith(netnsFlag))
    );
  };
  const nspawns = listPids().filter(isLabNspawn);
  report.containers = nspawns.length;
  for (const pid of nspawns) signal(pid, 'SIGTERM');
  await waitGone(nspawns, 15_000);
  for (const pid of nspawns) if (pidAlive(pid)) signal(pid, 'SIGKILL');

  // Anything still inside a lab namespace (node processes after a SIGKILL, a stray `ip netns exec`).
  const inodes = new Set(namespaces.map(netnsInode).filter((i): i is number => i !== undefined));
  const stray = listPids().filter((pid) => pid !== process.pid && inodes.has(processNetnsInode(pid) ?? -1));
  report.processes = stray.length;
  for (const pid of stray) signal(pid, 'SIGKILL');
  await waitGone([...nspawns, ...stray], 5_000);

  for (const point of mountsBelow(paths.dir)) {
    if ((await sys.umount(point)).code !== 0) await sys.umountLazy(point);
    report.mounts++;
  }
  for (const ns of namespaces) {
    await sys.netnsDelete(ns);
    report.namespaces++;
  }
  const leftMounts = mountsBelow(paths.dir);
  if (leftMounts.length > 0)
    throw new MeshctlError(`lab ${name}: could not unmount ${leftMounts.join(', ')}; not removing ${paths.dir}`, 'stop');
  rmSync(paths.dir, { recursive: true, force: true });
  const leftNs = (await sys.netnsList()).filter((ns) => ns.startsWith(prefix));
  if (leftNs.length > 0) throw new MeshctlError(`lab ${name}: could not delete namespaces ${leftNs.join(', ')}`, 'stop');
  return report;
}

/**
 * A node whose boot went wrong (a unit failed, logins still refused) gets one more boot, as a person would reboot it;
 * the warning keeps what went wrong visible.
 */
const BOOT_ATTEMPTS = 2;

/**
 * Stops one container the way `down` does: SIGTERM makes systemd-nspawn power the node off. If it hangs, SIGKILL
 * goes to nspawn and to the node's PID 1 (which takes the rest of its PID namespace with it).
 */
async function stopContainer(started: StartedNode): Promise<void> {
  signal(started.nspawnPid, 'SIGTERM');
  await waitGone([started.nspawnPid], 15_000);
  if (pidAlive(started.nspawnPid)) {
    signal(started.nspawnPid, 'SIGKILL');
    signal(started.leaderPid, 'SIGKILL');
    await waitGone([started.nspawnPid, started.leaderPid], 5_000);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(pidAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

function loadState(name: string): LabState {
  validateLabName(name);
  const state = readState(name);
  if (!state) throw badInput(`no lab named ${name} (see meshctl lab status)`);
  return state;
}

/** argv that runs `command` at a target of a lab: a node (inside its container) or `router:SITE`, `internet`, `operator`. */
export function targetArgv(name: string, target: string, command: string[]): string[] {
  requireRoot('exec');
  const state = loadState(name);
  if (command.length === 0) throw badInput('lab exec needs a command after --');
  const node = state.nodes.find((n) => n.name === target);
  if (node) {
    if (!node.leaderPid || !isNodeRunning(node)) throw badInput(`node ${target} of lab ${name} is not running`);
    return sys.inContainer(node.leaderPid, command);
  }
  const ns = infraNamespace(state.plan, target);
  if (!ns) {
    const choices = [
      ...state.nodes.map((n) => n.name),
      ...state.plan.routers.flatMap((r) => [`router:${r.site}`, ...(r.carrier ? [`carrier:${r.site}`] : [])]),
      'internet',
      'operator',
    ];
    throw badInput(`lab ${name} has no target ${target} (one of: ${choices.join(', ')})`);
  }
  return sys.inNetns(ns, command);
}

export function isNodeRunning(node: NodeState): boolean {
  if (!node.leaderPid || !node.nspawnPid || !pidAlive(node.nspawnPid)) return false;
  return readProcStatusPpid(node.leaderPid) === node.nspawnPid;
}

function readProcStatusPpid(pid: number): number | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('PPid:'));
    return line ? Number(line.split(/\s+/)[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command at a lab target and captures its output (for tests and other engineers' code). */
export async function labExec(
  name: string,
  target: string,
  argv: string[],
  options: { stdin?: string | Buffer; timeoutMs?: number } = {},
): Promise<ExecResult> {
  return sys.run(targetArgv(name, target, argv), { stdin: options.stdin, timeoutMs: options.timeoutMs });
}

/** Same, with stdio passed through (the CLI's `lab exec`). */
export const labExecInherit = (name: string, target: string, argv: string[]) => sys.runInherit(targetArgv(name, target, argv));

/**
 * argv + env that run meshctl itself in the operator namespace: the same node, loader flags and entry script as
 * this process (dist/cli.js when built, src/cli.ts through tsx otherwise), with the lab's known_hosts and key.
 */
export function meshctlInOperator(name: string, args: string[]): { argv: string[]; env: NodeJS.ProcessEnv } {
  requireRoot('run');
  const state = loadState(name);
  const here = fileURLToPath(import.meta.url);
  const entry = join(dirname(here), '..', `cli${extname(here)}`);
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--test'));
  if (extname(here) === '.ts' && !execArgv.some((a) => a.includes('tsx'))) execArgv.push('--import', 'tsx');
  const env: NodeJS.ProcessEnv = { ...process.env, MESHCTL_KNOWN_HOSTS: state.knownHosts, MESHCTL_IDENTITY: state.identity };
  // The test runner marks its children; meshctl run here is a plain CLI process.
  delete env.NODE_TEST_CONTEXT;
  return { argv: sys.inNetns(state.plan.operator.namespace, [process.execPath, ...execArgv, entry, ...args]), env };
}

export async function labRunMeshctl(
  name: string,
  args: string[],
  options: { stdin?: string; timeoutMs?: number } = {},
): Promise<ExecResult> {
  const { argv, env } = meshctlInOperator(name, args);
  return sys.run(argv, { env, stdin: options.stdin, timeoutMs: options.timeoutMs });
}

export async function labRunMeshctlInherit(name: string, args: string[]): Promise<number> {
  const { argv, env } = meshctlInOperator(name, args);
  return sys.runInherit(argv, env);
}

export interface LabStatus {
  name: string;
  phase: LabState['phase'] | 'broken';
  inventory?: string;
  dir: string;
  operatorNamespace?: string;
  knownHosts?: string;
  identity?: string;
  nodes: {
    name: string;
    site: string;
    ssh: string;
    sshUser: string;
    sudoUser: string;
    overlayIp: string;
    namespace: string;
    running: boolean;
  }[];
}

export function labStatus(only?: string): LabStatus[] {
  if (only !== undefined) validateLabName(only);
  const root = labsRoot();
  const names = only !== undefined ? [only] : existsSync(root) ? readdirSync(root).sort() : [];
  return names
    .filter((n) => existsSync(labPaths(n).dir))
    .map((name) => {
      const state = readState(name);
      if (!state) return { name, phase: 'broken' as const, dir: labPaths(name).dir, nodes: [] };
      return {
        name,
        phase: state.phase,
        inventory: state.inventory,
        dir: labPaths(name).dir,
        operatorNamespace: state.plan.operator.namespace,
        knownHosts: state.knownHosts,
        identity: state.identity,
        nodes: state.nodes.map((n) => ({
          name: n.name,
          site: n.site,
          ssh: `${n.sshUser}@${knownHostsName(n.sshHost, n.sshPort)}`,
          sshUser: n.sshUser,
          sudoUser: n.sudoUser,
          overlayIp: n.overlayIp,
          namespace: n.namespace,
          running: isNodeRunning(n),
        })),
      };
    });
}
