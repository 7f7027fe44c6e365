/**
 * `meshctl rotate-keys [INVENTORY] [NODE...]`: new key pairs on the named nodes (all nodes when none is named), one
 * node after another (../engine/rotate.ts), then the ping matrix as the proof. Holds the run lock like `up`.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { Chalk } from 'chalk';
import { MeshctlError, type CommandResult } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import { throwIfLoginCut } from '../interrupted.js';
import { loadInventory, resolveInventoryPath } from '../inventory/load.js';
import { connectorFor, sshOptionsFromFlags, CONTROL_PERSIST_HELP } from './connect-options.js';
import { acquireLocks } from '../engine/lock.js';
import { currentPublicKeys, rotateNode, rotationPreflight, type RotationReport } from '../engine/rotate.js';
import { runPingMatrix } from '../engine/ping.js';
import { desiredNodeConfig } from '../topology/desired.js';
import type { Matrix } from '../checks/ping-matrix.js';
import { renderMatrix } from '../checks/matrix-render.js';
import { safeText } from '../ui/safe-text.js';
import type { Inventory } from '../inventory/types.js';
import { readState, updateState, writeState } from '../state/state.js';

interface RotateFlags {
  yes?: boolean;
  acceptNew?: boolean;
  json?: boolean;
  color?: boolean;
  connectTimeout?: string;
  controlPersist?: string;
  breakLock?: boolean;
}

/**
 * Splits the arguments: the first is the inventory when it names a file (or ends in .yaml/.yml), the rest are nodes.
 * Exported for tests.
 */
export function splitRotateArgs(args: string[], exists: (path: string) => boolean = existsSync): { inventory?: string; nodes: string[] } {
  const [first, ...rest] = args;
  if (first !== undefined && (/\.ya?ml$/i.test(first) || exists(first))) return { inventory: first, nodes: rest };
  return { nodes: args };
}

/**
 * Whether the ping matrix after the rotations is judged as after a change (first contact, a recheck of failed pairs,
 * their sessions reset: ../engine/ping.ts): only when some node's peers were (maybe) changed, its outcome `rotated`,
 * `rolled-back` or `incomplete`. A run that changed no peer (every rotation given up before its first peer, or
 * stopped before its turn) is judged as a converged mesh's round: a pair silent then is a finding, not a session to
 * reset (RV4 F1.5: it reset sessions when nothing had been rotated). Pure.
 */
export function peersChangedBy(reports: readonly RotationReport[]): boolean {
  return reports.some((report) => report.outcome !== 'not-rotated');
}

/**
 * The public keys a rotation leaves, by node, for the local state (src/state): every key read from the nodes after
 * the rotations (`live`), else (interrupted before that read) the new keys of the rotations that completed. Pure.
 */
export function keysAfterRotation(reports: readonly RotationReport[], live?: ReadonlyMap<string, string>): Record<string, string> {
  if (live) return Object.fromEntries([...live].filter(([, key]) => key !== undefined && key !== ''));
  return Object.fromEntries(reports.filter((r) => r.ok && r.newPublicKey).map((r) => [r.node, r.newPublicKey!]));
}

/**
 * Writes the rotated keys into the local state: `up --limit` renders a peer that does not answer from the state's
 * key, and the old key is gone from the node. The last applied run (lastApply) stays the last `up`/`down`. Returns a
 * warning when the state cannot be written (it is a cache: never a failure).
 */
export function recordRotatedKeys(inventory: Inventory, keys: Record<string, string>, now = new Date()): string | undefined {
  if (Object.keys(keys).length === 0) return undefined;
  try {
    const before = readState(inventory.source, inventory.mesh.interface);
    writeState(inventory.source, updateState(before, inventory, { publicKeys: new Map(Object.entries(keys)) }, { now, complete: false }));
    return undefined;
  } catch (error) {
    return `the local state was not updated with the new public keys: ${(error as Error).message}`;
  }
}

const short = (key?: string) => (key ? `${key.slice(0, 10)}…` : '?');

/**
 * One line per rotated node, naming its outcome (../engine/rotate.ts RotationOutcome) as it is on the nodes:
 * `rotated`, `NOT ROTATED` (nothing changed, or every change undone) or `INCOMPLETE` (what is where). Exported for tests.
 */
export function describeRotation(r: RotationReport): string {
  const when = r.interrupted ? ' (interrupted)' : '';
  if (r.outcome === 'not-rotated' || r.outcome === 'rolled-back') return `${r.node}: NOT ROTATED${when}: ${r.error ?? ''}`;
  if (r.outcome === 'incomplete') return `${r.node}: INCOMPLETE${when}: ${r.error ?? ''}`;
  const window = r.windowMs === undefined ? '' : `; its pairs' packets waited up to ${r.windowMs} ms (new key live to every peer updated)`;
  const note = r.error ? ` (${r.error})` : r.interrupted ? ' (interrupted after the peers were updated: the swap was completed)' : '';
  return `${r.node}: public key ${short(r.oldPublicKey)} -> ${short(r.newPublicKey)}${r.reusedPendingKey ? ' (a pending key of an interrupted rotation)' : ''}; ${r.peersUpdated.length} peers updated; old key file replaced${window}${note}`;
}

export function registerRotateKeys(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('rotate-keys')
    .description('new WireGuard key pairs on nodes (made on the node), every peer updated live, the old key gone; then the ping matrix')
    .argument('[args...]', 'INVENTORY (default: $MESHCTL_INVENTORY, then ./meshctl.yaml), then the nodes to rotate (default: all)')
    .option('-y, --yes', 'do it (required: rotation changes every node)')
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them (changed keys are always refused)')
    .option('--json', 'print a JSON report on stdout')
    .option('--no-color', 'plain output')
    .option('--break-lock', 'take over the run lock of another meshctl run (only when that run died: check first)')
    .option('--connect-timeout <seconds>', 'SSH connect timeout (default: ssh config ConnectTimeout or 10)')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .addHelpText(
      'after',
      '\nExit codes: 0 rotated and the ping matrix passes, 1 a rotation or the matrix failed, 2 bad input, 3 a node could not be connected, 130 interrupted.',
    )
    .action(async (args: string[], flags: RotateFlags) => {
      const split = splitRotateArgs(args);
      const inventory = loadInventory(resolveInventoryPath(split.inventory));
      const unknown = split.nodes.filter((name) => !inventory.nodes.some((n) => n.name === name));
      if (unknown.length) throw new MeshctlError(`no node ${unknown.map(safeText).join(', ')} in ${inventory.source}`, 'badInput');
      if (!flags.yes) throw new MeshctlError('rotate-keys changes every node of the mesh: run with --yes', 'badInput');
      const rotated = split.nodes.length ? inventory.nodes.filter((n) => split.nodes.includes(n.name)) : inventory.nodes;
      const out = flags.json ? process.stderr : process.stdout;
      const color = flags.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
      const chalk = new Chalk({ level: color ? 1 : 0 });
      const connector = connectorFor(sshOptionsFromFlags(flags, (line) => out.write(`${line}\n`)));
      const { connections, failures, close } = await connector.connectAll(inventory);
      try {
        // Ctrl-C during the logins: how far they got (../interrupted.ts), once the connections made are closed (finally)
        throwIfLoginCut(
          inventory.nodes.map((n) => n.name),
          failures,
        );
        if (failures.size > 0)
          throw new MeshctlError(
            `could not connect to ${failures.size} of ${inventory.nodes.length} nodes; nothing was changed`,
            'connect',
            [...[...failures].map(([n, e]) => `${n}: ${e.message}`)],
          );
        const lock = await acquireLocks(connections, { breakLock: flags.breakLock ?? false, signal: interruptSignal });
        if (!lock.ok) throw new MeshctlError(`not started: ${lock.message}`, 'stop');
        const reports: RotationReport[] = [];
        let matrix: Matrix | undefined;
        let live: Map<string, string> | undefined;
        try {
          for (const w of lock.warnings) out.write(`warning: ${w}\n`);
          const ctx = { inventory, connections, signal: interruptSignal };
          // every node takes part (a peer takes the new key live): all must be up before any key changes
          const unfit = await rotationPreflight(ctx, new Set(rotated.map((n) => n.name)));
          if (interruptSignal.aborted) throw new MeshctlError('interrupted before any key was rotated; nothing was changed', 'interrupted');
          if (unfit.length)
            throw new MeshctlError(
              `not started: ${unfit.length} of ${inventory.nodes.length} nodes cannot take part in the rotation; nothing was changed`,
              'stop',
              unfit.map((line) => safeText(line)),
            );
          for (const node of rotated) {
            if (interruptSignal.aborted || (reports.length > 0 && !reports.at(-1)!.ok)) {
              out.write(
                `${safeText(node.name)}: not rotated (${interruptSignal.aborted ? 'interrupted' : 'stopped'} before its turn; nothing changed)\n`,
              );
              continue;
            }
            const report = await rotateNode(ctx, node);
            reports.push(report);
            out.write(`${safeText(describeRotation(report))}\n`);
          }
          if (!interruptSignal.aborted) {
            const keys = await currentPublicKeys(ctx);
            live = keys;
            const nodes = inventory.nodes.map((node) => ({
              node,
              connection: connections.get(node.name)!,
              values: { desired: desiredNodeConfig(inventory, node.name, keys) },
            }));
            matrix = (await runPingMatrix({ inventory, nodes, changedSoFar: peersChangedBy(reports), signal: interruptSignal })).matrix;
          }
        } finally {
          await lock.release();
          const warning = recordRotatedKeys(inventory, keysAfterRotation(reports, live));
          if (warning) out.write(`warning: ${warning}\n`);
        }
        if (matrix) out.write(`\n${chalk.bold('Ping matrix')} (overlay, from row to column)\n${renderMatrix(matrix, { color })}`);
        const matrixOk = matrix ? Object.values(matrix.cells).every((row) => Object.values(row).every((c) => c.ok)) : false;
        if (flags.json) process.stdout.write(`${JSON.stringify({ rotations: reports, matrix, ok: matrixOk }, null, 2)}\n`);
        if (interruptSignal.aborted) return finish('interrupted');
        const ok = reports.length === rotated.length && reports.every((r) => r.ok) && matrixOk;
        out.write(
          ok
            ? chalk.green.bold(`\nrotated ${reports.length} key${reports.length === 1 ? '' : 's'}; the mesh passes\n`)
            : chalk.red.bold('\nrotation incomplete or the ping matrix fails\n'),
        );
        finish(ok ? 'ok' : 'stop');
      } finally {
        await close();
      }
    });
}
