/**
 * `meshctl verify [INVENTORY] [--json] [--graph FILE]`: read-only health check of a running mesh.
 * One connection per node, started as soon as the inventory is read (the checks load while the nodes answer); on it
 * the checklist script runs beside the cold-start probe and the ping + path-MTU round (../checks/collect.ts), all
 * nodes in parallel. Exit 0 when no check failed (warnings allowed, unless --strict), 1 when one did, 3 when a node could not
 * be connected.
 */
import { inventoryWithFallbacks, statePublicKeys } from '../state/record.js';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveInventoryPath, loadInventory } from '../inventory/load.js';
import { connectorFor, sshOptionsFromFlags, CONTROL_PERSIST_HELP } from './connect-options.js';
import { interruptSignal } from '../interrupt.js';
import { throwIfLoginCut } from '../interrupted.js';
import { MeshctlError, type CommandResult } from '../errors.js';

/**
 * What verify needs once it is connected, loaded while the nodes answer (the connections start first: issue 10,
 * start-up). The graph writer only with --graph.
 */
const loadChecks = async () => {
  // one module, one import: fewer files for node's module loader (./verify-run.ts)
  const run = await import('./verify-run.js');
  return { verifyConnected: run.verifyConnected, renderReport: run.renderReport };
};

interface VerifyFlags {
  json?: boolean;
  graph?: string;
  verbose?: boolean;
  acceptNew?: boolean;
  mtu?: boolean;
  deadline?: string;
  strict?: boolean;
  connectTimeout?: string;
  controlPersist?: string;
  allChecks?: boolean;
  /** false with --no-color */
  color?: boolean;
}

/**
 * Whether verify's text view is coloured: only on a terminal, never with --no-color or NO_COLOR set to anything but
 * the empty string (no-color.org), as up, plan, down, rotate-keys and validate decide. `--json` has no colour at all.
 */
export function verifyColor(flags: { color?: boolean }, stdout: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return flags.color !== false && Boolean(stdout.isTTY) && !env.NO_COLOR;
}

export function registerVerify(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('verify')
    .description(
      'check a running mesh: interfaces, listeners, peers, AllowedIPs, endpoints, handshakes, routes, rp_filter, MTU, drift; N x N ping matrix and path MTU (read-only)',
    )
    .argument('[inventory]', 'inventory file (default: $MESHCTL_INVENTORY, then ./meshctl.yaml)')
    .option('--json', 'print the report as JSON (shape: docs/verify-json.md)')
    .option('--graph <file>', 'write a picture of the mesh: DOT, or SVG (with the .dot beside it) when the name ends in .svg')
    .option('-v, --verbose', 'one row per check, also for passing ones')
    .option('--no-mtu', 'skip the path-MTU probes')
    .option(
      '--deadline <seconds>',
      'ping deadline per pair, whole seconds up to 3600 (6 or more: a lost handshake is retried after 5 s)',
      '7',
    )
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them')
    .option('--connect-timeout <seconds>', 'SSH connect timeout (default: ssh config ConnectTimeout or 10)')
    .option('--no-color', 'plain output')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .option('--strict', 'warnings fail too (exit 1): drift, a NAT mapping collision, a missing key file')
    .option(
      '--all-checks',
      'list every passing per-peer and per-pair check (with its evidence) instead of counting them per node (implied by --verbose)',
    )
    .action(async (inventoryArg: string | undefined, flags: VerifyFlags) => {
      const started = Date.now();
      const loaded = loadInventory(resolveInventoryPath(inventoryArg));
      const deadline = parsePingDeadline(flags.deadline);
      if (flags.graph) checkGraphTarget(flags.graph);
      const connectStarted = Date.now();
      // no separate root probe (an `id -u` round trip and a channel per node): the first script proves root
      // (../checks/collect.ts proveRoot), and a node where it does not fails as the probe would have failed it
      const connector = connectorFor({ ...sshOptionsFromFlags(flags, (line) => process.stderr.write(`${line}\n`)), probe: false });
      // ssh -G, key exchange and login of every node start now; the checks load once the first one is in
      connector.start(loaded.nodes);
      // the local state is read once the connections are under way (issue 10); it changes no node's SSH target.
      // Pairs relay: auto moved to a relay after a failed handshake are planned as the nodes run them
      const inventory = inventoryWithFallbacks(loaded);
      let checks: Awaited<ReturnType<typeof loadChecks>>;
      try {
        await connector.underWay();
        checks = await loadChecks();
      } catch (error) {
        await connector.release();
        throw error;
      }
      const { connections, failures, close } = await connector.connectAll(inventory);
      const connectMs = Date.now() - connectStarted;
      try {
        // Ctrl-C during the logins: how far they got (../interrupted.ts), once the connections made are closed (finally)
        throwIfLoginCut(
          inventory.nodes.map((n) => n.name),
          failures,
        );
        const done = await checks.verifyConnected(inventory, connections, failures, {
          pathMtu: flags.mtu !== false,
          deadlineSeconds: deadline,
          signal: interruptSignal,
          strict: flags.strict ?? false,
          allChecks: !!(flags.allChecks || flags.verbose),
          started,
          connectMs,
          // an unreached node's peers are judged with its key from the local state (finding 5)
          stateKeys: () => statePublicKeys(loaded),
        });
        if (!done || interruptSignal.aborted) throw new MeshctlError('interrupted', 'interrupted');
        const { report } = done;
        // in pieces: the N x (N-1) matrix at farm scale (src/ui/json-text.ts)
        if (flags.json) await (await import('../ui/json-text.js')).writeJson(process.stdout, report, 2);
        else
          process.stdout.write(
            checks.renderReport(report, { color: verifyColor(flags, process.stdout, process.env), verbose: !!flags.verbose }),
          );
        // after the report: a picture that cannot be written (a full disk, no `dot`) loses no result
        if (flags.graph) {
          const { writeGraph } = await import('../graph/dot.js');
          let written: string[];
          try {
            written = await writeGraph(flags.graph, inventory, report);
          } catch (error) {
            throw new MeshctlError(`--graph ${flags.graph}: not written (the report above is complete): ${(error as Error).message}`);
          }
          if (!flags.json) process.stderr.write(`graph written: ${written.join(', ')}\n`);
        }
        finish(done.unreachable > 0 ? 'connect' : report.ok ? 'ok' : 'stop');
      } finally {
        await close();
      }
    });
}

/** The longest --deadline, seconds: an hour is already far past any handshake retry (REKEY_TIMEOUT is 5 s). */
export const MAX_PING_DEADLINE_S = 3600;

/**
 * --deadline: whole seconds in [1, MAX_PING_DEADLINE_S] (7 when not given), as ping's `-w` takes them: iputils ping
 * refuses a fraction ("invalid argument: '2.5'"), which made every ping of the round fail. Throws MeshctlError
 * (bad input) naming the flag.
 */
export function parsePingDeadline(value: string | undefined): number {
  const seconds = Number(value ?? 7);
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PING_DEADLINE_S)
    throw new MeshctlError(`--deadline must be a whole number of seconds from 1 to ${MAX_PING_DEADLINE_S}, not "${value}"`);
  return seconds;
}

/**
 * Refuses a --graph file whose directory does not exist, before any node is contacted (the whole verify ran, then
 * the write failed). Throws MeshctlError (bad input) naming the flag and the directory.
 */
export function checkGraphTarget(file: string): void {
  const dir = dirname(resolve(file));
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new MeshctlError(`--graph ${file}: the directory ${dir} does not exist`);
}
