/**
 * `meshctl validate [INVENTORY] [--json]`: loads and checks an inventory, then shows what meshctl understood:
 * sites, nodes and, for every pair, the endpoint each side dials. Reads the file and nothing else: no
 * connection is ever attempted, whatever the inventory says.
 */
import { forwardClashWarnings } from '../topology/forward-clash.js';
import defaultChalk, { Chalk, type ChalkInstance } from 'chalk';
import type { Command } from 'commander';
import type { CommandResult } from '../errors.js';
import { checkInventoryText, inventoryError, loadInventory, readInventoryFile, resolveInventoryPath } from '../inventory/load.js';
import { formatProblem } from '../inventory/problems.js';
import { publicAddressOf, type Inventory, type Site } from '../inventory/types.js';
import { endpointFor, formatEndpoint, keepaliveFor, type Endpoint } from '../topology/endpoints.js';
import { planPaths, type PairPath } from '../topology/paths.js';
import { inventoryWithFallbacks } from '../state/record.js';

export interface PairSummary {
  a: string;
  b: string;
  /** what a dials to reach b (null: a cannot dial b and waits for b) */
  aToB: Endpoint | null;
  bToA: Endpoint | null;
  /** PersistentKeepalive seconds each side sets towards the other, null for none */
  aKeepalive: number | null;
  bKeepalive: number | null;
  /** at least one side can dial the other (a direct path exists; the pair may still be relayed by relay: always) */
  connects: boolean;
  /** the pair's path (src/topology/paths.ts): direct, relayed via a public node, or none; with why */
  path: PairPath;
}

export function pairSummaries(inventory: Inventory): PairSummary[] {
  const pairs: PairSummary[] = [];
  // each pair's path by its two names: a search of the list for each pair was N^4 (100 nodes: ~180 ms of CPU)
  const paths = new Map(planPaths(inventory).pairs.map((p) => [`${p.a}\0${p.b}`, p.path]));
  inventory.nodes.forEach((a, i) => {
    for (const b of inventory.nodes.slice(i + 1)) {
      const path = paths.get(`${a.name}\0${b.name}`)!;
      const aToB = endpointFor(inventory, a, b) ?? null;
      const bToA = endpointFor(inventory, b, a) ?? null;
      pairs.push({
        a: a.name,
        b: b.name,
        aToB,
        bToA,
        aKeepalive: keepaliveFor(inventory, a, b) ?? null,
        bKeepalive: keepaliveFor(inventory, b, a) ?? null,
        connects: aToB !== null || bToA !== null,
        path,
      });
    }
  });
  return pairs;
}

const RP_NAMES = ['off', 'strict', 'loose'] as const;

function describeSite(site: Site): string {
  switch (site.kind) {
    case 'nat':
      return `nat, LAN ${site.lan}, router ${site.router}, public ${site.publicHost ? `name ${site.publicHost}${site.publicIp ? ` (IP ${site.publicIp} when written)` : ''}` : `IP ${site.publicIp}`}`;
    case 'public':
      return 'public';
    case 'lan':
      return `lan (no way in), LAN ${site.lan}${site.router ? `, router ${site.router}` : ''}`;
  }
}

const pad = (text: string, width: number) => text.padEnd(width);

/** The summary `validate` prints; `chalk` colours it (default: chalk's own detection of the terminal). */
export function renderSummary(inventory: Inventory, chalk: ChalkInstance = defaultChalk): string {
  const { mesh } = inventory;
  const lines: string[] = [];
  lines.push(`${chalk.green('valid')}: ${inventory.source}`);
  lines.push(
    `mesh   ${mesh.interface}, overlay ${mesh.network}, listen port ${mesh.listenPort}, MTU ${mesh.mtu}, ` +
      `keepalive ${mesh.persistentKeepalive > 0 ? `${mesh.persistentKeepalive} s` : 'off'}, rp_filter ${RP_NAMES[mesh.rpFilter]}` +
      (mesh.reservedCidrs.length > 0 ? `, reserved ${mesh.reservedCidrs.join(' ')}` : ''),
  );
  lines.push('', chalk.bold(`sites (${inventory.sites.length})`));
  const siteWidth = Math.max(...inventory.sites.map((s) => s.name.length));
  for (const site of inventory.sites) lines.push(`  ${pad(site.name, siteWidth)}  ${describeSite(site)}`);

  lines.push('', chalk.bold(`nodes (${inventory.nodes.length})`));
  const nameWidth = Math.max(...inventory.nodes.map((n) => n.name.length));
  const nodeSiteWidth = Math.max(...inventory.nodes.map((n) => n.site.length));
  const addressWidth = 40;
  for (const node of inventory.nodes) {
    const site = inventory.sites.find((s) => s.name === node.site);
    const forwarded = node.forwardedPort !== undefined && site?.kind === 'nat' ? ` <- ${publicAddressOf(site)}:${node.forwardedPort}` : '';
    const ssh = `${node.ssh.user}@${node.ssh.host}:${node.ssh.port}${node.ssh.become === 'sudo' ? ' (sudo)' : ''}`;
    lines.push(
      `  ${pad(node.name, nameWidth)}  ${pad(node.site, nodeSiteWidth)}  ${pad(`${node.address}:${node.listenPort}${forwarded}`, addressWidth)}` +
        `  overlay ${pad(node.overlayIp, 15)}  ssh ${ssh}`,
    );
  }

  const pairs = pairSummaries(inventory);
  lines.push('', chalk.bold(`who dials whom (${pairs.length} ${pairs.length === 1 ? 'pair' : 'pairs'})`));
  const side = (from: string, to: string, endpoint: Endpoint | null, keepalive: number | null) =>
    endpoint
      ? `${from} -> ${formatEndpoint(endpoint)}${keepalive !== null ? ` (keepalive ${keepalive})` : ''}`
      : `${from} waits for ${to} to dial in`;
  // a loop, not Math.max(...): one stack argument per pair overflowed the stack at 1,000 nodes (499,500 pairs)
  const widest = (lengths: (pair: (typeof pairs)[number]) => number) => pairs.reduce((w, p) => Math.max(w, lengths(p)), 0);
  const pairWidth = widest((p) => `${p.a} <-> ${p.b}`.length);
  const leftWidth = widest((p) => side(p.a, p.b, p.aToB, p.aKeepalive).length);
  for (const pair of pairs) {
    const direct = pair.path.kind === 'direct';
    const left = side(pair.a, pair.b, pair.aToB, pair.aKeepalive);
    const right = direct
      ? side(pair.b, pair.a, pair.bToA, pair.bKeepalive)
      : pair.path.kind === 'relayed'
        ? chalk.cyan(`relayed via ${pair.path.via}: ${pair.path.why.replace(/: relayed via .*$/, '')}`)
        : chalk.yellow(`no path: ${pair.path.why}: this pair will not connect`);
    const middle = direct ? `${pad(left, leftWidth)}  ` : '';
    lines.push(`  ${pad(`${pair.a} <-> ${pair.b}`, pairWidth)}  ${middle}${right}`.trimEnd());
  }
  const relayed = pairs.filter((p) => p.path.kind === 'relayed');
  if (relayed.length > 0) {
    const relays = [...new Set(relayed.map((p) => (p.path.kind === 'relayed' ? p.path.via : '')))];
    lines.push(
      '',
      `${relayed.length} pair(s) relayed through ${relays.join(', ')} (forwarding on ${mesh.interface} only; meshctl does not punch holes through NAT)`,
    );
  }
  const broken = pairs.filter((p) => p.path.kind === 'none').length;
  if (broken > 0) lines.push('', chalk.yellow(`warning: ${broken} pair(s) cannot connect: their ping check will fail`));
  // Q4 item 4: a forward whose external port is not the listen port, on a node that dials the public nodes dialling it
  for (const warning of forwardClashWarnings(inventory)) lines.push('', chalk.yellow(`warning: ${warning}`));
  return `${lines.join('\n')}\n`;
}

/**
 * The inventory at `path` with the pairs relay: auto moved to a relay after a failed handshake, as the local state
 * beside it records them (what `plan` and `up` design and the nodes run): validate's pair list shows such a pair
 * relayed, with why, instead of direct (a new user's finding Q4-7). Reads the state file only; contacts nothing.
 * @throws InventoryError (exit 2) for an invalid inventory, as loadInventory
 */
export function withStateFallbacks(path: string): Inventory {
  return inventoryWithFallbacks(loadInventory(path));
}

export function registerValidate(program: Command, _finish?: (result: CommandResult) => void): void {
  program
    .command('validate')
    .description('check an inventory (nothing is contacted) and show the mesh it describes: sites, nodes, who dials whom')
    .argument('[inventory]', 'inventory file (default: $MESHCTL_INVENTORY, then ./meshctl.yaml)')
    .option('--json', 'print the normalised inventory and pairs (or the problems) as JSON on stdout')
    .option('--no-color', 'plain output')
    .action((arg: string | undefined, options: { json?: boolean; color?: boolean }) => {
      const path = resolveInventoryPath(arg);
      if (!options.json) {
        // as up, plan, down and rotate-keys: colour only on a terminal, never with --no-color or NO_COLOR (no-color.org)
        const color = options.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
        process.stdout.write(renderSummary(withStateFallbacks(path), new Chalk({ level: color ? 1 : 0 })));
        return;
      }
      // JSON mode still reports problems on stderr (and exits 2) through the usual error path
      const result = checkInventoryText(readInventoryFile(path), path);
      if (!result.ok) {
        const problems = result.problems.map((p) => ({ ...p, text: formatProblem(path, p) }));
        process.stdout.write(`${JSON.stringify({ ok: false, file: path, problems }, null, 2)}\n`);
        throw inventoryError(path, result.problems);
      }
      const output = { ok: true, file: path, inventory: result.inventory, pairs: pairSummaries(result.inventory) };
      process.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
    });
}
