/**
 * `meshctl import [SKELETON] [--host NAME=[USER@]HOST[:PORT]]... [-o FILE]`: take over a hand-built wg-quick mesh
 * (issue 9). Connects to every host, reads it with up's facts probe (nothing secret leaves a node), infers the
 * inventory (../import/infer.ts), checks that it validates, keeps every node's key pair on the node
 * (../import/probe.ts: a PrivateKey line moves into the key file there; the running interface is not touched), then
 * writes the inventory with every guess marked `# meshctl import:` and prints those. A following `meshctl up` changes
 * only what differs and restarts nothing that already runs as designed.
 * Every refusal is found before any node is changed: the probe checks each node's key read-only (../import/probe.ts
 * adoptCheckScript) and names what the inventory cannot hold (../import/losses.ts), refusing what cuts traffic unless
 * --drop-unsupported (Q6 findings 1-3); `--dry-run` refuses as a real run does.
 * Exit 0 done, 1 a node cannot be taken over (nothing changed, nothing written; only a write failing on a node or a
 * key changed since the probe is refused after other nodes were adopted), 2 bad input, 3 a host could not be connected.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { badInput, MeshctlError, type CommandResult } from '../errors.js';
import { checkInventoryText, readInventoryFile } from '../inventory/load.js';
import { formatProblem } from '../inventory/problems.js';
import type { Node } from '../inventory/types.js';
import { inferInventory, type DraftInventory, type ImportedHost, type ImportResult } from '../import/infer.js';
import {
  adoptScript,
  describeAdoption,
  foreseeAdoption,
  importProbeScript,
  parseAdoptOutput,
  parseImportProbe,
  type AdoptOutcome,
} from '../import/probe.js';
import { mergeTargets, parseHostFlag, targetsFromSkeleton } from '../import/targets.js';
import { NOTE_MARK, renderImportedInventory } from '../import/yaml.js';
import { interruptSignal } from '../interrupt.js';
import { redactSecrets } from '../remote/redact.js';
import { closeAll, connectAll } from '../transport/pool.js';
import type { Connection } from '../transport/types.js';
import { safeText } from '../ui/safe-text.js';
import { sshOptionsFromFlags, CONTROL_PERSIST_HELP } from './connect-options.js';
import { writeFileAtomic } from '../local/files.js';

interface ImportFlags {
  host: string[];
  output: string;
  interface?: string;
  listenPort: string;
  force?: boolean;
  dryRun?: boolean;
  dropUnsupported?: boolean;
  acceptNew?: boolean;
  connectTimeout?: string;
  controlPersist?: string;
}

const say = (line: string) => process.stderr.write(`${safeText(line)}\n`);

/** A Node the transport can connect to: only the SSH settings matter before the inventory exists. */
const connectable = (host: ImportedHost['target']): Node => ({
  name: host.name,
  site: '',
  address: host.ssh.host,
  overlayIp: '',
  listenPort: 0,
  ssh: host.ssh,
});

async function probeAll(
  targets: ImportedHost['target'][],
  connections: Map<string, Connection>,
  iface: string,
  listenPort: number,
): Promise<{ hosts: ImportedHost[]; problems: string[] }> {
  const hosts: ImportedHost[] = [];
  const problems: string[] = [];
  await Promise.all(
    targets.map(async (target) => {
      const connection = connections.get(target.name)!;
      try {
        const result = await connection.run(importProbeScript(iface, listenPort), { timeoutMs: 30_000, signal: interruptSignal });
        hosts.push({ target, ...parseImportProbe(result.stdout, iface, listenPort) });
      } catch (error) {
        problems.push(`${target.name}: ${(error as Error).message}`);
      }
    }),
  );
  const order = new Map(targets.map((t, i) => [t.name, i]));
  hosts.sort((a, b) => order.get(a.target.name)! - order.get(b.target.name)!);
  return { hosts, problems };
}

async function adoptAll(result: ImportResult, connections: Map<string, Connection>, hosts: ImportedHost[], iface: string) {
  const outcomes = new Map<string, AdoptOutcome>();
  await Promise.all(
    hosts.map(async ({ target, facts }) => {
      const run = await connections
        .get(target.name)!
        .run(adoptScript(iface, facts.systemd), { timeoutMs: 30_000, signal: interruptSignal });
      const outcome = parseAdoptOutput(run.stdout);
      const expected = result.draft!.nodes.find((n) => n.name === target.name)!.publicKey;
      if (!outcome.refused && run.code !== 0)
        outcome.refused = `the adopting script failed (exit ${run.code}): ${run.stderr.trim().split('\n').pop() ?? ''}`;
      if (!outcome.refused && outcome.publicKey !== expected)
        outcome.refused = `its public key changed during the import (${outcome.publicKey ?? 'none'})`;
      outcomes.set(target.name, outcome);
    }),
  );
  return outcomes;
}

export function registerImport(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('import')
    .description('take over a hand-built wg-quick mesh: read every node (nothing secret), write an inventory of it, keep every key pair')
    .argument('[skeleton]', 'an inventory, or a skeleton of one with only nodes.NAME.ssh (host, port, user, become, identityFile)')
    .option(
      '--host <name=[user@]host[:port]>',
      'a node to import (repeatable; a non-root user gets become: sudo)',
      (v: string, all: string[]) => [...all, v],
      [],
    )
    .option('-o, --output <file>', 'the inventory to write', 'meshctl.yaml')
    .option('--interface <name>', "the WireGuard interface to take over (default: the skeleton's mesh.interface, else wg0)")
    .option('--listen-port <port>', 'the port whose users the probe lists (the import reads the real one from the interface)', '51820')
    .option('--force', 'overwrite the output file')
    .option('--dry-run', 'print the inventory and the notes; change nothing on the nodes, write no file (refuses as a real run would)')
    .option(
      '--drop-unsupported',
      'take the mesh over although the first up drops what cuts traffic and the inventory cannot hold (a PresharedKey, a network behind a peer in AllowedIPs, Table = off with its own routes, a live-only peer or a live-only AllowedIPs prefix of a peer); each is still named',
    )
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them')
    .option('--connect-timeout <seconds>', 'SSH connect timeout')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .action(async (skeleton: string | undefined, flags: ImportFlags) => {
      const fromFile = skeleton ? targetsFromSkeleton(readInventoryFile(skeleton), skeleton) : { targets: [] };
      const targets = mergeTargets(fromFile.targets, flags.host.map(parseHostFlag));
      const iface = flags.interface ?? fromFile.iface ?? 'wg0';
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(iface)) throw badInput(`--interface ${iface}: not an interface name`);
      const listenPort = Number(flags.listenPort);
      if (!Number.isInteger(listenPort) || listenPort < 1 || listenPort > 65535)
        throw badInput(`--listen-port ${flags.listenPort}: not a port`);
      if (!flags.dryRun && !flags.force && existsSync(flags.output))
        throw badInput(`${flags.output} exists: pass --force to overwrite it, or -o another file`);
      if (!flags.dryRun) checkWritable(flags.output);

      const { connections, failures, jumpHosts } = await connectAll(targets.map(connectable), sshOptionsFromFlags(flags, say));
      try {
        if (failures.size > 0) {
          for (const error of failures.values()) say(`meshctl import: ${error.message}`);
          finish('connect');
          return;
        }
        const { hosts, problems: probeProblems } = await probeAll(targets, connections, iface, listenPort);
        if (interruptSignal.aborted) throw new MeshctlError('interrupted', 'interrupted');
        const result = probeProblems.length
          ? { notes: [], problems: probeProblems }
          : inferInventory(hosts, iface, { dropUnsupported: flags.dropUnsupported === true });
        if (!result.draft || result.problems.length) {
          say('meshctl import: cannot take this mesh over (nothing changed, nothing written):');
          for (const p of result.problems) say(`  ${p}`);
          finish('stop');
          return;
        }
        const text = renderImportedInventory(result.draft, result.notes, { hosts: targets.map((t) => t.name) });
        const checked = checkInventoryText(text, flags.output);
        if (!checked.ok) {
          say('meshctl import: the inferred inventory does not validate (nothing changed, nothing written):');
          for (const p of checked.problems) say(`  ${formatProblem(flags.output, p)}`);
          process.stdout.write(redactSecrets(text, new Set(result.draft.nodes.map((n) => n.publicKey))));
          finish('stop');
          return;
        }
        if (flags.dryRun) {
          process.stdout.write(text);
          for (const line of dryRunLines(result.draft, hosts, iface, flags.output)) say(line);
          printNotes(result);
          finish('ok');
          return;
        }
        const outcomes = await adoptAll(result, connections, hosts, iface);
        const refused = [...outcomes].filter(([, o]) => o.refused);
        const systemdOf = new Map(hosts.map((h) => [h.target.name, h.facts.systemd]));
        for (const [name, o] of outcomes)
          say(o.refused ? `${name}: NOT taken over: ${o.refused}` : describeAdoption(name, o, iface, systemdOf.get(name) === true, true));
        if (refused.length) {
          say('meshctl import: not every node could be taken over; no inventory written');
          finish('stop');
          return;
        }
        // temp file + rename: an interrupted write leaves the old file or none, never half an inventory
        writeFileAtomic(flags.output, text, 0o644);
        say(`meshctl import: wrote ${flags.output}: ${result.draft.nodes.length} nodes, ${result.draft.sites.length} sites`);
        printNotes(result);
        say(`next: meshctl plan ${flags.output}   (then meshctl up ${flags.output})`);
        finish('ok');
      } finally {
        await closeAll(connections, jumpHosts);
      }
    });
}

/**
 * Throws bad input (exit 2) when the inventory could not be written to `output` (its directory missing or not
 * writable, or `output` a directory): checked before any node is contacted, since the inventory is written only
 * after every node's key pair was taken over, and a run that changed the nodes must not end without it.
 */
export function checkWritable(output: string): void {
  const dir = dirname(output);
  try {
    if (!statSync(dir).isDirectory()) throw badInput(`cannot write ${output}: ${dir} is not a directory`);
    accessSync(dir, constants.W_OK);
  } catch (error) {
    if (error instanceof MeshctlError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw badInput(
      `cannot write ${output}: ${code === 'ENOENT' ? `no directory ${dir}` : code === 'EACCES' ? `${dir} is not writable` : (error as Error).message}`,
    );
  }
  if (existsSync(output) && statSync(output).isDirectory()) throw badInput(`cannot write ${output}: it is a directory`);
}

/**
 * What a real run would then do and say, for `--dry-run` (Q6/Q7 finding 2: it printed the inventory and the notes only):
 * each node's adoption as the real run reports it (../import/probe.ts describeAdoption, foreseen from the probe), and
 * the file it would write, each marked as not done.
 */
export function dryRunLines(draft: DraftInventory, hosts: readonly ImportedHost[], iface: string, output: string): string[] {
  const keyOf = new Map(draft.nodes.map((n) => [n.name, n.publicKey]));
  return [
    ...hosts.map(({ target, facts }) =>
      describeAdoption(target.name, foreseeAdoption(facts, keyOf.get(target.name)!), iface, facts.systemd, false),
    ),
    `meshctl import: not done (dry run): would write ${output}: ${draft.nodes.length} nodes, ${draft.sites.length} sites (the inventory above); nothing was changed on the nodes`,
  ];
}

function printNotes(result: ImportResult): void {
  if (result.notes.length === 0) return;
  say(`check these (marked "# ${NOTE_MARK}" in the file):`);
  for (const note of result.notes) say(`  ${note.at}: ${note.text}`);
}
