/**
 * `meshctl down [INVENTORY] [NODE...] [--purge]`: takes the mesh down on the named nodes (all nodes when none is
 * named). In order:
 * 1. the named nodes are probed read-only (src/steps/down.ts) and the plan is shown: what goes on each of them, and
 *    that the other nodes lose those peers; `--dry-run` stops here (and shows the others' plan, as `plan` would);
 * 2. a gate (or --yes);
 * 3. the other nodes run `up` with the inventory minus the named nodes: their configs lose those peers and the
 *    running interfaces get a `wg syncconf` (no restart, other sessions kept) and lose the peers' routes. When that
 *    run stops at a gate, the named nodes are left untouched;
 * 4. the named nodes, under the run lock: a rollback an interrupted `up` left pending cancelled first (its timer would
 *    bring the interface back: ../engine/revert.ts), wg-quick@IFACE stopped and disabled, the interface deleted, and with
 *    `--purge` the config, its backup, the key pair, the sysctl file and the drop-in removed.
 * The inventory is not edited: a later `up` with it builds the nodes again (drop them from it to keep them out).
 * The local state (src/state) forgets a purged node's key.
 *
 * A node dropped from the inventory (Q3 finding 8): `up` removes its peer from the others but leaves its own
 * interface up. `down INVENTORY NODE` with the inventory that no longer names it reaches it through the SSH target
 * the local state kept (src/state/state.ts), takes it down as above and then the state forgets it; `--forget` only
 * drops it from the state, without contacting it (a node that is gone for good).
 */
import type { Command } from 'commander';
import { Chalk, type ChalkInstance } from 'chalk';
import { existsSync } from 'node:fs';
import { MeshctlError, type CommandResult } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import { throwIfLoginCut } from '../interrupted.js';
import { loadInventory, resolveInventoryPath } from '../inventory/load.js';
import type { Inventory, Node } from '../inventory/types.js';
import { acquireLocks } from '../engine/lock.js';
import { countActions } from '../engine/plan.js';
import { runUp } from '../engine/up.js';
import { DOWN_DEADLINE_S, describeDownChange, downProbeScript, parseDownProbe, planDown, type DownChange } from '../steps/down.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';
import { createEngineView, promptTheme } from '../ui/engine-view.js';
import { renderPlan } from '../ui/plan-view.js';
import { safeText } from '../ui/safe-text.js';
import { RP_FILTER_SYSCTL_KEYS, RP_FILTER_SYSCTL_PATH } from '../render/sysctl.js';
import { recordRun } from '../state/record.js';
import { departedNodes, readState, type DepartedNode } from '../state/state.js';
import { connectorFor, sshOptionsFromFlags, CONTROL_PERSIST_HELP } from './connect-options.js';

interface DownFlags {
  purge?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  acceptNew?: boolean;
  color?: boolean;
  connectTimeout?: string;
  controlPersist?: string;
  breakLock?: boolean;
  forget?: boolean;
}

/** The nodes `down` works on: those the inventory names, and those only the local state still knows (departed). */
export interface DownTargets {
  /** every named node, inventory ones first (inventory order), then departed ones (as named) */
  names: string[];
  /** the named nodes the inventory no longer has, as the state knows them */
  departed: DepartedNode[];
  /** the nodes to connect to: the inventory's, and a departed node's name and SSH target */
  nodes: Node[];
}

/**
 * Resolves `down`'s node names (none: every inventory node) against the inventory, then against the nodes the local
 * state still knows that the inventory dropped. Throws MeshctlError (bad input, exit 2) naming every node neither
 * knows (without speaking of --limit, which `down` has not: Q3 finding 8), and every departed node the state
 * cannot reach (a state written before it kept SSH targets: then only the old inventory can).
 */
export function resolveDownTargets(
  inventory: Inventory,
  departed: readonly DepartedNode[],
  asked: readonly string[],
  options: { forget?: boolean } = {},
): DownTargets {
  if (asked.length === 0) return { names: inventory.nodes.map((n) => n.name), departed: [], nodes: [...inventory.nodes] };
  const wanted = [...new Set(asked.map((n) => n.trim()).filter((n) => n.length > 0))];
  const inInventory = inventory.nodes.filter((n) => wanted.includes(n.name));
  const known = new Map(departed.map((d) => [d.name, d]));
  const rest = wanted.filter((n) => !inInventory.some((i) => i.name === n));
  const unknown = rest.filter((n) => !known.has(n));
  if (unknown.length)
    throw new MeshctlError(
      `down names ${unknown.length === 1 ? 'a node' : 'nodes'} neither in ${inventory.source} nor in its local state: ${unknown.join(', ')}`,
      'badInput',
      [
        `nodes in the inventory: ${inventory.nodes.map((n) => n.name).join(', ')}`,
        ...(departed.length
          ? [`nodes only the local state knows (dropped from the inventory): ${departed.map((d) => d.name).join(', ')}`]
          : []),
      ],
    );
  const gone = rest.map((n) => known.get(n)!);
  const renamed = gone.filter((d) => d.sameMachineAs !== undefined);
  if (renamed.length && !options.forget)
    throw new MeshctlError(
      `${renamed.map((d) => `${d.name} is the same machine as ${d.sameMachineAs} in ${inventory.source}`).join('; ')} (the same WireGuard key, or the same SSH host and port): down would take the renamed node's live interface down`,
      'badInput',
      ['nothing to take down: the next complete up forgets the old name, or `down --forget` drops it from the local state now'],
    );
  const unreachable = options.forget ? [] : gone.filter((d) => !d.ssh).map((d) => d.name);
  if (unreachable.length)
    throw new MeshctlError(
      `${unreachable.join(', ')}: dropped from ${inventory.source}, and its local state (written by an older meshctl) does not say how to reach ${unreachable.length === 1 ? 'it' : 'them'}`,
      'badInput',
      ['run down with an inventory that still names them, or add --forget to drop them from the local state only'],
    );
  return {
    names: [...inInventory.map((n) => n.name), ...gone.map((d) => d.name)],
    departed: gone,
    nodes: [
      ...inInventory,
      // only the name and the SSH target are used to connect (../transport); the rest is what the state knows
      // (a node without one is only ever forgotten, never contacted: --forget)
      ...gone.flatMap((d) =>
        d.ssh ? [{ name: d.name, site: '', address: d.ssh.host, overlayIp: d.overlayIp, listenPort: d.listenPort, ssh: d.ssh }] : [],
      ),
    ],
  };
}

/**
 * Splits `down`'s words into the inventory and the node names: the first word is the inventory when it names an
 * existing file or ends in .yaml/.yml; otherwise every word is a node and the inventory is the default one.
 */
export function splitDownArgs(
  words: readonly string[],
  isFile: (path: string) => boolean = existsSync,
): { inventory?: string; nodes: string[] } {
  const [first, ...rest] = words;
  if (first !== undefined && (/\.ya?ml$/i.test(first) || isFile(first))) return { inventory: first, nodes: rest };
  return { nodes: [...words] };
}

interface NodeDownPlan {
  node: string;
  changes: DownChange[];
  script?: string;
  /** the script's deadline, ms (planDown) */
  timeoutMs?: number;
}

/**
 * What removing meshctl's sysctl file does not do (Q3 finding 9): the live rp_filter values stay as meshctl set them
 * until the next boot, when the node's remaining sysctl files (or the kernel's defaults) apply. meshctl does not know
 * what the node had before its first `up` (it keeps no record of it), so it names the keys rather than guess a value.
 */
export function rpFilterLiveNote(changes: readonly DownChange[]): string | undefined {
  if (!changes.some((c) => c.kind === 'remove-file' && c.path === RP_FILTER_SYSCTL_PATH)) return undefined;
  return `note: ${RP_FILTER_SYSCTL_KEYS.join(' and ')} keep their live value until the next boot, when the node's other sysctl files apply (meshctl did not record what they were before it); \`sysctl -w KEY=VALUE\` sets one now`;
}

function renderDownPlan(plans: NodeDownPlan[], remaining: Inventory, purge: boolean, chalk: ChalkInstance): string {
  const lines = [chalk.bold(`── Take the mesh down${purge ? ' and purge' : ''}`)];
  for (const p of plans) {
    lines.push(`  ${chalk.bold(p.node)}`);
    if (p.changes.length === 0) lines.push('    nothing to do (already down)');
    for (const c of p.changes) lines.push(`    ${safeText(describeDownChange(c))}`);
    const note = rpFilterLiveNote(p.changes);
    if (note) lines.push(`    ${note}`);
  }
  const names = plans.map((p) => p.node).join(', ');
  lines.push(
    remaining.nodes.length
      ? `  ${chalk.bold('others')} (${remaining.nodes.map((n) => n.name).join(', ')}): peers ${names} removed from wg0.conf and the live interface where they still are (wg syncconf, no restart), their routes deleted`
      : '  no other node in the inventory',
  );
  return `${lines.join('\n')}\n`;
}

/** Asks `message` (default no); plain when `color` is false (finding 31: inquirer colours it otherwise). */
async function confirm(message: string, color: boolean): Promise<boolean> {
  try {
    // loaded only when a question is asked (0.3-0.5 s of start-up otherwise)
    const { default: inquirer } = await import('inquirer');
    // a stop request (SIGTERM, SIGHUP, a SIGINT from outside the prompt: ../interrupt.ts) ends the question too
    const prompt = inquirer.createPromptModule({ signal: interruptSignal });
    const { go } = await prompt<{ go: boolean }>([{ type: 'confirm', name: 'go', message, default: false, ...promptTheme(color) }]);
    return go;
  } catch (error) {
    if (['ExitPromptError', 'AbortPromptError'].includes((error as Error).name))
      throw new MeshctlError('interrupted at the gate', 'interrupted');
    throw error;
  }
}

/**
 * Probes the named nodes and plans their part; throws (exit 1) when a probe fails or a node's interface of the mesh's
 * name is not a WireGuard one (nothing is done on any node then: Q9 F-down-eth0).
 */
async function probeAll(connections: ReadonlyMap<string, Connection>, iface: string, purge: boolean): Promise<NodeDownPlan[]> {
  const plans = await Promise.all(
    [...connections].map(async ([node, connection]) => {
      const probe = await connection.run(downProbeScript(iface), { timeoutMs: 20_000, signal: interruptSignal });
      if (probe.code !== 0)
        throw new MeshctlError(`${node}: the read-only probe failed (exit ${probe.code})`, 'stop', [probe.stderr.trim()]);
      return { node, ...planDown(parseDownProbe(probe.stdout), iface, purge) };
    }),
  );
  const refused = plans.filter((p) => p.refused);
  if (refused.length)
    throw new MeshctlError(
      `not taking the mesh down: ${iface} is not a WireGuard interface on ${refused.map((p) => p.node).join(', ')}; nothing was changed`,
      'stop',
      refused.map((p) => `${p.node}: ${p.refused}`),
    );
  return plans;
}

/** Runs each node's down script; returns the failures (node: message). */
async function applyAll(connections: ReadonlyMap<string, Connection>, plans: NodeDownPlan[]): Promise<string[]> {
  const failures: string[] = [];
  await Promise.all(
    plans.map(async (p) => {
      if (!p.script) return;
      const result = await connections
        .get(p.node)!
        .run(p.script, { timeoutMs: checkDeadlineMs(p.timeoutMs ?? DOWN_DEADLINE_S * 1000), signal: interruptSignal });
      if (result.code !== 0)
        failures.push(`${p.node}: exit ${result.code}: ${(result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ')}`);
    }),
  );
  return failures;
}

export function registerDown(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('down')
    .description(
      'take the mesh down on some nodes (interface, service; --purge: configs, keys, sysctl file, drop-in) and remove their peers from the others',
    )
    .argument(
      '[inventory-and-nodes...]',
      'inventory file (default: $MESHCTL_INVENTORY, then ./meshctl.yaml), then node names (default: every node)',
    )
    .option('--purge', 'also remove the config, its backup, the key pair, the sysctl file and the drop-in')
    .option('-y, --yes', 'do not ask (gates whose checks fail still stop)')
    .option('--dry-run', 'change nothing: show what would be done on the named nodes and on the others')
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them (changed keys are always refused)')
    .option('--no-color', 'plain output')
    .option('--break-lock', 'take over the run lock of another meshctl run (only when that run died: check first)')
    .option(
      '--forget',
      'for nodes dropped from the inventory: only drop them from the local state, without contacting them (a node gone for good)',
    )
    .option('--connect-timeout <seconds>', 'SSH connect timeout (default: ssh config ConnectTimeout or 10)')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .addHelpText(
      'after',
      '\nThe inventory is not changed: drop the nodes from it, or a later `up` sets them up again.\nA node already dropped from the inventory is reached through the SSH target the local state kept (<inventory>.state.json), then forgotten by it.\nExit codes: 0 done (or planned), 1 a gate said STOP or a node failed, 2 bad input, 3 a node could not be connected, 130 interrupted.',
    )
    .action(async (words: string[], flags: DownFlags) => {
      const args = splitDownArgs(words);
      const inventory = loadInventory(resolveInventoryPath(args.inventory));
      const state = readState(inventory.source, inventory.mesh.interface);
      const chosen = resolveDownTargets(inventory, departedNodes(state, inventory), args.nodes, { forget: flags.forget ?? false });
      const names = chosen.names;
      const targets = { ...inventory, nodes: chosen.nodes };
      const remaining = { ...inventory, nodes: inventory.nodes.filter((n) => !names.includes(n.name)) };
      const purge = flags.purge ?? false;
      if (flags.forget) return forgetDeparted(inventory, chosen, finish);
      const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
      if (!interactive && !flags.yes && !flags.dryRun)
        throw new MeshctlError('no terminal to confirm: run with --yes (or --dry-run to see what would be done)', 'badInput');
      const color = flags.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
      const chalk = new Chalk({ level: color ? 1 : 0 });
      const out = process.stdout;
      const connector = connectorFor(sshOptionsFromFlags(flags, (line) => out.write(`${line}\n`)));
      const { connections, failures, close } = await connector.connectAll(targets);
      try {
        // Ctrl-C during the logins: how far they got (../interrupted.ts), once the connections made are closed (finally)
        throwIfLoginCut(names, failures);
        if (failures.size)
          throw new MeshctlError(
            `could not connect to ${failures.size} of ${names.length} nodes; nothing was changed`,
            'connect',
            [...failures].map(([n, e]) => `${n}: ${e.message}`),
          );
        const plans = await probeAll(connections, inventory.mesh.interface, purge);
        out.write(renderDownPlan(plans, remaining, purge, chalk));
        if (flags.dryRun) {
          if (remaining.nodes.length) await planOthers(remaining, connector, chalk, out);
          return finish('ok');
        }
        if (!flags.yes && !(await confirm(`take the mesh down on ${names.join(', ')}${purge ? ' and purge it' : ''}?`, color)))
          return finish('stop');
        if (remaining.nodes.length) {
          const view = createEngineView({ yes: flags.yes ?? false, interactive, json: false, color, out });
          const others = await runUp(remaining, connector, view, { signal: interruptSignal, breakLock: flags.breakLock ?? false });
          // Ctrl-C while logging in to the other nodes: nothing was changed yet on any node (the named ones come after)
          if (others.result === 'unreachable')
            throwIfLoginCut(
              remaining.nodes.map((n) => n.name),
              others.connectFailures,
            );
          for (const warning of others.warnings ?? []) out.write(`warning: ${warning}\n`);
          if (others.result !== 'converged') {
            out.write(chalk.red.bold(`\nthe other nodes did not converge (${others.result}): ${names.join(', ')} left as they were\n`));
            return finish(others.result === 'interrupted' ? 'interrupted' : others.result === 'unreachable' ? 'connect' : 'stop');
          }
          // Q3-9: said only when this run removed something; a second down changed nothing there
          out.write(
            others.changes > 0
              ? `\n${names.join(', ')} removed from the peers of ${remaining.nodes.length} node(s)\n`
              : `\n${names.join(', ')} already no peer of the ${remaining.nodes.length} other node(s): nothing changed there\n`,
          );
        }
        const lock = await acquireLocks(connections, { breakLock: flags.breakLock ?? false, signal: interruptSignal });
        if (!lock.ok) throw new MeshctlError(`not started: ${lock.message}`, 'stop');
        let failed: string[];
        try {
          failed = await applyAll(connections, plans);
        } finally {
          await lock.release();
        }
        const recorded = recordRun(inventory, {
          command: 'down',
          result: failed.length ? 'failed' : 'down',
          nodes: names,
          publicKeys: {},
          complete: false,
          // a purged node's key is gone; a node the inventory dropped is down and nothing names it any more
          forget: names.filter((n) => (purge || chosen.departed.some((d) => d.name === n)) && !failed.some((f) => f.startsWith(`${n}:`))),
        });
        if (recorded.warning) out.write(`warning: ${recorded.warning}\n`);
        if (failed.length) throw new MeshctlError(`down failed on ${failed.length} node(s)`, 'stop', failed);
        const count = plans.reduce((sum, p) => sum + p.changes.length, 0);
        out.write(
          chalk.green.bold(`mesh down on ${names.join(', ')}: ${count} change${count === 1 ? '' : 's'}${purge ? ' (purged)' : ''}\n`),
        );
        finish('ok');
      } finally {
        await close();
      }
    });
}

/** The dry run's view of the other nodes: `up`'s plan with the named nodes left out. */
async function planOthers(
  remaining: Inventory,
  connector: ReturnType<typeof connectorFor>,
  chalk: ChalkInstance,
  out: NodeJS.WritableStream,
) {
  const view = { onEvent: () => undefined, gate: async (r: { verdict: string }) => r.verdict !== 'STOP' };
  const report = await runUp(remaining, connector, view, { signal: interruptSignal, dryRun: true });
  if (report.result !== 'planned' || !report.plan) {
    out.write(`the others could not be planned (${report.result}${report.stoppedAt ? ` at ${report.stoppedAt}` : ''})\n`);
    return;
  }
  // applied by this down without --dry-run; `meshctl up` with the same inventory would keep the named nodes instead
  // a node the others no longer have as a peer (an earlier up dropped it): they have nothing to change (Q5 finding 4)
  out.write(
    `${chalk.bold('── The other nodes')} (${countActions(report.plan)} action(s))\n${renderPlan(report.plan, chalk, 'run this down without --dry-run to apply')}`,
  );
}

/**
 * `down --forget`: drops the named nodes from the local state without contacting them, for a node dropped from the
 * inventory that is gone for good (its interface cannot be taken down, and `plan`/`up` would otherwise keep naming
 * it). Refused (exit 2) for a node the inventory still names: its state is the mesh's, and `up` would rebuild it.
 */
function forgetDeparted(inventory: Inventory, chosen: DownTargets, finish: (result: CommandResult) => void): void {
  const still = chosen.names.filter((n) => !chosen.departed.some((d) => d.name === n));
  if (still.length)
    throw new MeshctlError(
      `--forget only drops nodes the inventory no longer names; ${inventory.source} still names ${still.join(', ')}`,
      'badInput',
    );
  const recorded = recordRun(inventory, {
    command: 'down',
    result: 'forgotten',
    nodes: chosen.names,
    publicKeys: {},
    complete: false,
    forget: chosen.names,
  });
  if (recorded.warning) throw new MeshctlError(recorded.warning, 'stop');
  process.stdout.write(
    `${chosen.names.join(', ')} forgotten by the local state; not contacted (${inventory.mesh.interface} on ${chosen.names.length === 1 ? 'it' : 'them'}, if still up, is left as it is)\n`,
  );
  finish('ok');
}
