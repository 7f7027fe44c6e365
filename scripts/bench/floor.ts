/**
 * The floor: what the nodes themselves spend on each phase of `up`, with no SSH and no orchestrator. meshctl's own
 * scripts (its facts probe, the install/keys/config/enable scripts of a real cold run's plan, its ping-matrix
 * rounds) run on every node at once, entered with nsenter from the host, framed and guarded exactly as meshctl's
 * transport sends them (wrapCommand). What is left above this floor is meshctl's cost: process start, SSH, round
 * trips, checks, gates.
 */
import { spawn } from 'node:child_process';
import { runPingRound, matrixPasses, type Matrix } from '../../src/checks/ping-matrix.js';
import { FACTS } from '../../src/facts/definitions.js';
import { factsProbeScript } from '../../src/facts/node-facts.js';
import type { Inventory } from '../../src/inventory/types.js';
import type { Plan } from '../../src/engine/plan.js';
import { inContainer } from '../../src/lab/sys.js';
import { disarmScript } from '../../src/engine/revert.js';
import { firstContactPairs } from '../../src/topology/endpoints.js';
import { wrapCommand } from '../../src/transport/ssh.js';
import type { Connection, ExecResult, RunOptions } from '../../src/transport/types.js';

/** A `Connection` that runs a script as root inside a lab node (nsenter into its PID 1's namespaces), not over SSH. */
export class NodeShell implements Connection {
  readonly stats = { commands: 0, remoteMs: 0, connectMs: 0 };
  readonly target: string;
  constructor(
    readonly node: string,
    private readonly leaderPid: number,
  ) {
    this.target = `nsenter:${leaderPid}`;
  }

  run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    const wrapped = wrapCommand(script, { sudo: false, timeoutMs: options.timeoutMs ?? 60_000 });
    const argv = inContainer(this.leaderPid, ['sh', '-c', wrapped.command]);
    const started = performance.now();
    this.stats.commands++;
    return new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', reject);
      child.on('close', (code) => {
        const durationMs = Math.round(performance.now() - started);
        this.stats.remoteMs += durationMs;
        resolve({ code: code ?? 255, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), durationMs });
      });
      child.stdin.end(wrapped.input);
    });
  }

  async close(): Promise<void> {}
}

/** Wall time of fn, in ms. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { ms: Math.round(performance.now() - started), value };
}

/**
 * Runs each node's scripts (in order) on all nodes at once; resolves with the wall time of the slowest node.
 * Throws naming every node whose script failed: a floor measured on a failed phase would be meaningless.
 */
export async function onAllNodes(
  shells: Map<string, NodeShell>,
  scripts: (node: string) => Array<{ script: string; timeoutMs?: number }>,
): Promise<{ ms: number; outputs: Map<string, string> }> {
  const outputs = new Map<string, string>();
  const failures: string[] = [];
  const { ms } = await timed(() =>
    Promise.all(
      [...shells].map(async ([node, shell]) => {
        let stdout = '';
        for (const { script, timeoutMs } of scripts(node)) {
          const result = await shell.run(script, { timeoutMs: timeoutMs ?? 600_000 });
          stdout += result.stdout;
          if (result.code !== 0) failures.push(`${node}: exit ${result.code} ${result.stderr.trim().slice(0, 300)}`);
        }
        outputs.set(node, stdout);
      }),
    ),
  );
  if (failures.length > 0) throw new Error(`floor: a phase failed on ${failures.join('; ')}`);
  return { ms, outputs };
}

/** Floor per phase, ms. `pingWarm`: a ping round on sessions already up (a second `up`); `pingMtu`: verify's round, with path MTU. */
export interface Floor {
  facts: number;
  install: number;
  keys: number;
  config: number;
  enable: number;
  ping: number;
  pingWarm: number;
  pingMtu: number;
  /** facts + install + keys + config + enable + ping: a cold `up`'s floor */
  total: number;
  /**
   * the ping rounds' pairs that did not answer (`round: from -> to sent/received`), when any: the round's time is
   * kept (a failed pair waits for ping's whole deadline, so that round's floor is an upper bound) and the table marks it
   */
  failed?: string[];
}

/** Where an arm script keeps its run's snapshot (revertPaths): the run id is what disarmScript needs. */
const REVERT_DIR = /\/run\/meshctl\/revert-([0-9a-f]{8,32})/g;

/** The node-changing phases whose scripts come from the plan of a real cold run. */
const PLAN_PHASES = ['install', 'keys', 'config', 'enable'] as const;

/**
 * Measures the floor on a lab of bare nodes, from the plan of a cold `up` on an identical lab. That run's public
 * keys (`planKeys`, node -> key) are in its config scripts; the keys generated here replace them, so the mesh built
 * here is a real one (the ping rounds must pass, or this throws).
 */
export async function measureFloor(
  inventory: Inventory,
  shells: Map<string, NodeShell>,
  plan: Plan,
  planKeys: Map<string, string>,
): Promise<Floor> {
  const scriptsOf = (phase: string, node: string, swap: (s: string) => string = (s) => s) =>
    (plan.phases.find((p) => p.id === phase)?.nodes.find((n) => n.node === node)?.actions ?? []).map((a) => ({
      script: swap(a.script),
      ...(a.timeoutMs ? { timeoutMs: a.timeoutMs } : {}),
    }));
  const listenPort = new Map(inventory.nodes.map((n) => [n.name, n.listenPort]));
  const iface = inventory.mesh.interface;
  const facts = await onAllNodes(shells, (node) => [{ script: factsProbeScript({ interface: iface, listenPort: listenPort.get(node)! }) }]);
  const ms: Partial<Record<(typeof PLAN_PHASES)[number], number>> = {};
  let swap = (s: string) => s;
  // the plan's config and enable scripts arm a revert on each node (src/engine/revert.ts) that meshctl disarms at the
  // enable gate (its confirming check); left armed, the nodes undo the mesh when the window ends, mid-ping at 32 nodes
  const runIds = [...new Set(plan.phases.flatMap((p) => p.nodes.flatMap((n) => n.actions.flatMap((a) => [...a.script.matchAll(REVERT_DIR)].map((m) => m[1]!)))))];
  for (const phase of PLAN_PHASES) {
    const disarm = phase === 'enable' ? runIds.map((id) => ({ script: disarmScript(id) })) : [];
    ms[phase] = (await onAllNodes(shells, (node) => [...scriptsOf(phase, node, swap), ...disarm])).ms;
    if (phase === 'keys') swap = keySwapper(planKeys, await readPublicKeys(shells, iface));
  }
  const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
  const ctx = { interface: iface, listenPort: 0 };
  const after = [FACTS.interfaceRoutes, FACTS.peers, FACTS.now].map((def) => ({ name: def.name, command: def.command(ctx) }));
  const failed: string[] = [];
  const round = async (label: string, options: Parameters<typeof runPingRound>[2]) => {
    const { ms: roundMs, value } = await timed(() => runPingRound(shells, targets, options));
    if (!matrixPasses(value.matrix, { withMtu: options?.mtu !== undefined })) failed.push(...failedPairs(label, value.matrix));
    return roundMs;
  };
  const ping = await round('ping', { firstContact: firstContactPairs(inventory), after });
  const pingWarm = await round('pingWarm', { after });
  const pingMtu = await round('pingMtu', { mtu: inventory.mesh.mtu });
  const phases = { facts: facts.ms, install: ms.install!, keys: ms.keys!, config: ms.config!, enable: ms.enable!, ping };
  if (failed.length) process.stderr.write(`bench: floor: ${failed.length} pairs did not answer: ${failed.slice(0, 20).join(', ')}\n`);
  return { ...phases, pingWarm, pingMtu, total: Object.values(phases).reduce((a, b) => a + b, 0), ...(failed.length ? { failed } : {}) };
}

/** The cells of a round that did not pass, as `label: from -> to sent/received[, MTU largest/expected]`. */
function failedPairs(label: string, matrix: Matrix): string[] {
  return matrix.nodes.flatMap((from) =>
    Object.entries(matrix.cells[from] ?? {}).flatMap(([to, c]) =>
      c.ok && (!c.pmtu || c.pmtu.ok)
        ? []
        : [`${label}: ${from} -> ${to} ${c.received}/${c.transmitted}${c.pmtu && !c.pmtu.ok ? `, MTU ${c.pmtu.largest}/${c.pmtu.expected}` : ''}${c.error ? ` (${c.error})` : ''}`],
    ),
  );
}

/** Each node's public key (`IFACE.pub`, public by definition; the private key is never read). */
export async function readPublicKeys(shells: Map<string, Connection>, iface: string): Promise<Map<string, string>> {
  const keys = new Map<string, string>();
  await Promise.all(
    [...shells].map(async ([node, shell]) => {
      const result = await shell.run(`cat /etc/wireguard/${iface}.pub`);
      if (result.code !== 0) throw new Error(`${node}: no public key: ${result.stderr.trim()}`);
      keys.set(node, result.stdout.trim());
    }),
  );
  return keys;
}

/** Replaces each node's key of the planned run by its key here (the scripts are otherwise byte for byte the plan's). */
export function keySwapper(from: Map<string, string>, to: Map<string, string>): (script: string) => string {
  const pairs = [...from].map(([node, key]) => [key, to.get(node) ?? key] as const);
  return (script) => pairs.reduce((s, [a, b]) => s.split(a).join(b), script);
}
