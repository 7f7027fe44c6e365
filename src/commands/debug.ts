/**
 * `meshctl debug [INVENTORY] [--pair A,B | --node N] [--tcpdump] [--seconds S] [--json]`: runs the debug playbook
 * on each failing pair (or the one named) and names the cause, with evidence and a suggested fix (never applied).
 * Exit 0 when no pair is failing, 1 when a cause was found, 3 when a node could not be connected.
 */
import { inventoryWithFallbacks, statePublicKeys } from '../state/record.js';
import type { Command } from 'commander';
import chalk, { Chalk } from 'chalk';
import { resolveInventoryPath, loadInventory } from '../inventory/load.js';
import { connectAll, closeAll } from '../transport/pool.js';
import { sshOptionsFromFlags, CONTROL_PERSIST_HELP } from './connect-options.js';
import { interruptSignal } from '../interrupt.js';
import { throwIfLoginCut } from '../interrupted.js';
import { MeshctlError, badInput, type CommandResult } from '../errors.js';
import { renderDebugReport, runDebug, writeBundle } from '../debug/run.js';

interface DebugFlags {
  pair?: string;
  node?: string;
  tcpdump?: boolean;
  seconds?: string;
  json?: boolean;
  acceptNew?: boolean;
  connectTimeout?: string;
  controlPersist?: string;
  color?: boolean;
}

export function registerDebug(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('debug')
    .description(
      'find why pairs of nodes cannot talk: two-ended evidence, optional packet captures, a named cause and a suggested fix (changes nothing)',
    )
    .argument('[inventory]', 'inventory file (default: $MESHCTL_INVENTORY, then ./meshctl.yaml)')
    .option('--pair <a,b>', 'debug this pair (a is the sender when it can dial b)')
    .option('--node <name>', 'debug the failing pairs of this node')
    .option('--tcpdump', 'capture at both ends while provoking traffic; saves the pcaps and the report in ./meshctl-debug-<time>/')
    .option('--seconds <s>', 'how long to provoke and capture', '5')
    .option('--json', 'print the report as JSON')
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them')
    .option('--connect-timeout <seconds>', 'SSH connect timeout (default: ssh config ConnectTimeout or 10)')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .option('--no-color', 'plain output')
    .action(async (inventoryArg: string | undefined, flags: DebugFlags) => {
      if (flags.pair && flags.node) throw badInput('--pair and --node exclude each other');
      const pair = flags.pair?.split(',').map((s) => s.trim());
      if (pair && (pair.length !== 2 || !pair[0] || !pair[1] || pair[0] === pair[1]))
        throw badInput(`--pair wants two different node names: A,B (got ${flags.pair})`);
      const seconds = Number(flags.seconds ?? 5);
      if (!Number.isFinite(seconds) || seconds < 1 || seconds > 120) throw badInput('--seconds must be between 1 and 120');
      // pairs relay: auto moved to a relay after a failed handshake are planned as the nodes run them
      const loaded = loadInventory(resolveInventoryPath(inventoryArg));
      const inventory = inventoryWithFallbacks(loaded);
      // names checked before any node is contacted (as every other input): a typo is bad input, not a run
      const unknown = [...(pair ?? []), ...(flags.node ? [flags.node] : [])].filter(
        (n) => !inventory.nodes.some((node) => node.name === n),
      );
      if (unknown.length) throw badInput(`no node named ${unknown.join(', ')} in ${inventory.source}`);
      const { connections, failures, jumpHosts } = await connectAll(
        inventory.nodes,
        sshOptionsFromFlags(flags, (line) => process.stderr.write(`${line}\n`)),
      );
      try {
        // Ctrl-C during the logins: how far they got (../interrupted.ts), once the connections made are closed (finally)
        throwIfLoginCut(
          inventory.nodes.map((n) => n.name),
          failures,
        );
        const report = await runDebug(inventory, connections, failures, {
          ...(pair ? { pair: [pair[0]!, pair[1]!] as [string, string] } : {}),
          ...(flags.node ? { node: flags.node } : {}),
          tcpdump: !!flags.tcpdump,
          seconds,
          signal: interruptSignal,
          // an unreached node's peer entries are judged with its key from the local state (Q9 F-debug-placeholder)
          stateKeys: () => statePublicKeys(loaded),
          ...(flags.json ? {} : { progress: (line: string) => process.stderr.write(`${line}\n`) }),
        });
        const plain = new Chalk({ level: 0 });
        const color = process.stdout.isTTY && !flags.json && flags.color !== false && !process.env.NO_COLOR;
        const c = color ? new Chalk({ level: Math.max(chalk.level, 1) as 1 | 2 | 3 }) : plain;
        const text = renderDebugReport(report, { bold: c.bold, red: c.red.bold, green: c.green, dim: c.dim });
        await writeBundle(report, renderDebugReport(report, { bold: plain.bold, red: plain.red, green: plain.green, dim: plain.dim }));
        process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : text);
        if (interruptSignal.aborted) throw new MeshctlError('interrupted', 'interrupted');
        const found = report.diagnoses.some((d) => d.cause !== 'healthy');
        finish(failures.size > 0 ? 'connect' : found ? 'stop' : 'ok');
      } finally {
        await closeAll(connections, jumpHosts);
      }
    });
}
