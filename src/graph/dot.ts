/**
 * `verify --graph FILE`: a picture of the mesh in Graphviz DOT, written by us (no graph library).
 * Nodes are clustered by site; a NAT site shows its router with the port-forwards as its label; every pair of
 * nodes is one edge coloured by the pair's state (green ok, orange warnings, red a failing check, grey unknown);
 * a relayed pair's edge is dotted and labelled "via R", and a relay node says how many pairs it carries.
 * When FILE ends in .svg (or .png), `dot` renders it and the .dot source is written beside it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { publicAddressOf, type Inventory } from '../inventory/types.js';
import { MeshctlError } from '../errors.js';
import { writeFileAtomic } from '../local/files.js';
import type { Check, CheckStatus, PassedGroup } from '../checks/verify.js';
import { reportCell, type PathReport, type ReportMatrix } from '../checks/report.js';

export interface GraphInput {
  checks: Check[];
  /** verify's report matrix (version 3: an RTT array per row, the cells that did not pass) */
  matrix: ReportMatrix | null;
  nodes: Array<{ name: string; connected: boolean }>;
  /**
   * the pairs that are not direct (verify's report; every pair with --all-checks): a relayed pair's edge is dotted and
   * names its relay, a pair with none says so; a pair not listed is direct
   */
  paths?: PathReport[];
  /** verify's report (version 2 on): passing per-peer and per-pair checks counted, not listed in `checks` */
  passed?: PassedGroup[];
}

const COLORS = { pass: '#2e9e44', warn: '#f08c00', fail: '#d62828', unknown: '#9e9e9e' } as const;
const FILLS = { pass: '#e8f6ea', warn: '#fff1dc', fail: '#fde2e2', unknown: '#eeeeee' } as const;

/** Quotes a DOT ID or label. */
export const dotQuote = (text: string) => `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`;

/** Checks that concern the link between two nodes (either direction). */
const PAIR_IDS = new Set(['ping', 'path-mtu', 'handshake', 'peers', 'allowed-ips', 'endpoint', 'keepalive', 'route']);

const worst = (statuses: CheckStatus[]): CheckStatus | undefined =>
  statuses.includes('fail') ? 'fail' : statuses.includes('warn') ? 'warn' : statuses.length ? 'pass' : undefined;

/** The nodes whose passing pair checks the report counted (`passed`), once per input. */
const countedOf = new WeakMap<GraphInput, Set<string>>();
function countedNodes(input: GraphInput): Set<string> {
  const known = countedOf.get(input);
  if (known) return known;
  const nodes = new Set((input.passed ?? []).filter((g) => PAIR_IDS.has(g.id)).map((g) => g.node));
  countedOf.set(input, nodes);
  return nodes;
}

function edgeFor(a: string, b: string, input: GraphInput): { status: CheckStatus | 'unknown'; label: string } {
  const connected = (n: string) => input.nodes.find((x) => x.name === n)?.connected !== false;
  if (!connected(a) || !connected(b)) return { status: 'unknown', label: 'not reached' };
  const related = input.checks.filter((c) => PAIR_IDS.has(c.id) && ((c.node === a && c.peer === b) || (c.node === b && c.peer === a)));
  // no check listed for the pair: it passed when the report counted passing pair checks instead of listing them
  const counted = countedNodes(input).has(a) || countedNodes(input).has(b) ? 'pass' : 'unknown';
  const status = worst(related.map((c) => c.status)) ?? counted;
  if (status === 'pass') {
    const m = input.matrix;
    const rtts = m ? [reportCell(m, a, b)?.rttMs, reportCell(m, b, a)?.rttMs].filter((x): x is number => x !== undefined) : [];
    return { status, label: rtts.length ? `${(rtts.reduce((x, y) => x + y, 0) / rtts.length).toFixed(1)} ms` : 'ok' };
  }
  const bad = related.filter((c) => c.status === status);
  const lines = [...new Set(bad.map((c) => `${c.id} ${c.node}→${c.peer}`))];
  const shown = lines.slice(0, 3);
  if (lines.length > 3) shown.push(`+${lines.length - 3} more`);
  return { status, label: `${status === 'fail' ? 'FAIL' : 'WARN'}: ${shown.join('\n')}` };
}

/** "relay for 2 pairs" on a node that carries relayed pairs. */
function relayLabel(name: string, input: GraphInput): string[] {
  const carried = input.paths?.filter((p) => p.kind === 'relayed' && p.via === name).length ?? 0;
  return carried ? [`relay for ${carried} pair${carried === 1 ? '' : 's'}`] : [];
}

function nodeStatus(name: string, input: GraphInput): CheckStatus | 'unknown' {
  if (input.nodes.find((x) => x.name === name)?.connected === false) return 'unknown';
  return worst(input.checks.filter((c) => c.node === name && c.peer === undefined).map((c) => c.status)) ?? 'unknown';
}

/** The DOT source (pure). */
export function renderDot(inventory: Inventory, input: GraphInput, title?: string): string {
  const lines: string[] = [];
  const fails = input.checks.filter((c) => c.status === 'fail').length;
  const heading =
    title ?? `meshctl verify: ${inventory.source} (${fails === 0 ? 'healthy' : `${fails} failing check${fails === 1 ? '' : 's'}`})`;
  lines.push('graph mesh {');
  lines.push(
    `  graph [label=${dotQuote(heading)}, labelloc=t, fontname="Helvetica", fontsize=16, rankdir=LR, nodesep=0.6, ranksep=1.4, pad=0.3];`,
  );
  lines.push('  node [fontname="Helvetica", fontsize=11, shape=box, style="rounded,filled", penwidth=2];');
  lines.push('  edge [fontname="Helvetica", fontsize=10, penwidth=2.5];');

  for (const site of inventory.sites) {
    const members = inventory.nodes.filter((n) => n.site === site.name);
    const kind = site.kind === 'nat' ? `NAT ${site.lan}` : site.kind === 'lan' ? `LAN ${site.lan}` : 'public';
    lines.push(`  subgraph ${dotQuote(`cluster_${site.name}`)} {`);
    lines.push(
      `    label=${dotQuote(`site ${site.name} (${kind})`)}; style="rounded,dashed"; color="#777777"; fontname="Helvetica"; fontsize=12;`,
    );
    if (site.kind === 'nat') {
      const forwards = members
        .filter((n) => n.forwardedPort !== undefined)
        .map((n) => `${publicAddressOf(site)}:${n.forwardedPort} → ${n.name} (${n.address}:${n.listenPort})`);
      const label = [
        `router ${site.router}`,
        `public ${[site.publicHost, site.publicIp].filter(Boolean).join(' ')}`,
        ...(forwards.length ? ['forwards:', ...forwards] : ['no forwards']),
      ].join('\n');
      lines.push(
        `    ${dotQuote(`router:${site.name}`)} [label=${dotQuote(label)}, shape=note, style=filled, fillcolor="#f4f4f4", color="#555555", penwidth=1];`,
      );
    }
    for (const n of members) {
      const status = nodeStatus(n.name, input);
      const nodeFails = input.checks.filter((c) => c.node === n.name && c.peer === undefined && c.status === 'fail').map((c) => c.id);
      const label = [
        n.name,
        `${n.address}`,
        `overlay ${n.overlayIp}`,
        ...relayLabel(n.name, input),
        ...(status === 'unknown' ? ['NOT REACHED'] : nodeFails.length ? [`FAIL: ${nodeFails.join(', ')}`] : []),
      ].join('\n');
      lines.push(
        `    ${dotQuote(n.name)} [label=${dotQuote(label)}, color=${dotQuote(COLORS[status])}, fillcolor=${dotQuote(FILLS[status])}];`,
      );
    }
    if (site.kind === 'nat') {
      // the router sits in front of its nodes: invisible edges keep it on the public side of the cluster
      for (const n of members)
        lines.push(`    ${dotQuote(`router:${site.name}`)} -- ${dotQuote(n.name)} [style=dotted, color="#aaaaaa", penwidth=1];`);
    }
    lines.push('  }');
  }

  const names = inventory.nodes.map((n) => n.name);
  // by pair, once: a find per pair was O(pairs^2)
  const pathOf = new Map((input.paths ?? []).map((p) => [`${p.a}\u0000${p.b}`, p]));
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const a = names[i]!;
      const b = names[j]!;
      const edge = edgeFor(a, b, input);
      const path = pathOf.get(`${a}\u0000${b}`);
      if (path?.kind === 'relayed') edge.label = `via ${path.via}\n${edge.label}`;
      if (path?.kind === 'none') edge.label = `no path\n${edge.label}`;
      const style = edge.status === 'unknown' ? 'dashed' : path?.kind === 'relayed' ? 'dotted' : 'solid';
      const sameSite = inventory.nodes[i]!.site === inventory.nodes[j]!.site;
      lines.push(
        `  ${dotQuote(a)} -- ${dotQuote(b)} [color=${dotQuote(COLORS[edge.status])}, fontcolor=${dotQuote(COLORS[edge.status])}, style=${style}, label=${dotQuote(edge.label)}${sameSite ? ', constraint=false' : ''}];`,
      );
    }
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

const run = promisify(execFile);

/** Renders DOT text to a file with Graphviz (`dot -Tsvg` / `-Tpng`). */
export async function renderWithDot(dotText: string, format: 'svg' | 'png', outFile: string): Promise<void> {
  let rendered: Buffer;
  try {
    // to stdout, then written as meshctl writes its other files (../local/files.ts): `dot -o` opens the path with
    // fopen "w", which follows a symlink planted there (RV6: the F-state-symlink class)
    const child = run('dot', [`-T${format}`], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
    child.child.stdin?.end(dotText);
    rendered = (await child).stdout;
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: Buffer | string };
    if (e.code === 'ENOENT')
      throw new MeshctlError('Graphviz `dot` is not installed (apt-get install graphviz); write a .dot file instead', 'badInput');
    throw new MeshctlError(`dot failed: ${e.stderr?.toString().trim() || e.message}`, 'badInput');
  }
  writeFileAtomic(outFile, rendered, 0o644);
}

/** Writes FILE: .svg/.png rendered by dot with the .dot source beside it, anything else as DOT. Returns the paths. */
export async function writeGraph(file: string, inventory: Inventory, input: GraphInput, title?: string): Promise<string[]> {
  const dotText = renderDot(inventory, input, title);
  const match = /\.(svg|png)$/i.exec(file);
  // written through a temp file of a random name and a rename (../local/files.ts): never through a planted symlink
  if (!match) {
    writeFileAtomic(file, dotText, 0o644);
    return [file];
  }
  const dotFile = file.replace(/\.(svg|png)$/i, '.dot');
  writeFileAtomic(dotFile, dotText, 0o644);
  await renderWithDot(dotText, match[1]!.toLowerCase() as 'svg' | 'png', file);
  return [file, dotFile];
}
