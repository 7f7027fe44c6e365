/**
 * What `meshctl verify` prints: the JSON report (shape documented in docs/verify-json.md, version 3) and the text
 * view (the ping matrix, then a table of checks where passing checks of one kind on one node share a row).
 */
import chalk, { Chalk } from 'chalk';
import type { Inventory } from '../inventory/types.js';
import type { Matrix, MatrixCell } from './ping-matrix.js';
import { renderMatrix } from './matrix-render.js';
import { briefWhy, summarize, type Check, type CheckSummary, type PassedGroup } from './verify.js';
import { ExitCode, type Outcome } from '../errors.js';
import { safeText } from '../ui/safe-text.js';
import { pathBetween, pathKind, planPaths } from '../topology/paths.js';

export interface VerifyReport {
  /**
   * bumps when a field changes meaning or goes away; new fields may appear at any time. 2: `checks` lists passing
   * per-peer and per-pair checks only with --all-checks; else they are counted in `passed`. 3: `matrix` is a
   * ReportMatrix (an RTT array per row, `cells` only the cells that did not pass) and `paths` lists the pairs that
   * are not direct (`pathCounts` counts them all); --all-checks lists every cell and every path
   */
  version: 3;
  inventory: string;
  /** true when no check failed (warnings allowed, unless --strict) */
  ok: boolean;
  /** 0 no check failed, 1 a check failed (or, with --strict, warned), 3 a node could not be connected */
  exitCode: 0 | 1 | 3;
  /** every check, the ones counted in `passed` included */
  summary: CheckSummary;
  durationMs: number;
  nodes: Array<{ name: string; site: string; overlayIp: string; connected: boolean; error?: string }>;
  /** node checks, and per-peer and per-pair checks that warn or fail (all of them with --all-checks) */
  checks: Check[];
  /** the passing per-peer and per-pair checks not listed in `checks`, counted per node and id (empty with --all-checks) */
  passed: PassedGroup[];
  matrix: ReportMatrix | null;
  /** where the time went, ms: SSH logins, the checklist round, the cold-start probe, the ping round (path MTU in it) */
  timings?: VerifyTimings;
  /** per node: SSH session channels verify opened on its one connection (OpenSSH's MaxSessions counts them) */
  channels?: Record<string, number>;
  /**
   * the pairs whose path is not direct (relayed or none) as planned from the inventory (src/topology/paths.ts), with
   * their measured RTTs, in inventory order; with --all-checks every pair
   */
  paths: PathReport[];
  /** how many pairs have each kind of path (all pairs, whether `paths` lists them or not) */
  pathCounts: PathCounts;
}

/** Pairs by kind of path. */
export interface PathCounts {
  direct: number;
  relayed: number;
  none: number;
}

/**
 * The ping matrix as the report holds it (version 3, issue 10): N x (N-1) cells of ~400 bytes each made a 525 MB
 * report at 1,000 nodes, nearly all of them the same passing cell. So every pair's RTT sits in one array per row,
 * and `cells` lists only the cells that did not plainly pass (see plainPass); with --all-checks (`cellsListed: all`)
 * every cell, as version 2 did. A pair with no cell in `cells` passed: every echo request asked for was answered,
 * and the expected payload passed with DF when the path MTU was probed.
 */
export interface ReportMatrix {
  /** row and column order */
  nodes: string[];
  /** rttMs[i][j]: the average ping RTT from nodes[i] to nodes[j] in ms; null on the diagonal and where no reply came */
  rttMs: Array<Array<number | null>>;
  /** `not-passing`: `cells` holds only the cells that did not plainly pass; `all` (--all-checks): every cell */
  cellsListed: 'all' | 'not-passing';
  /** cells[from][to] (no diagonal), as said by `cellsListed`; a row with no cell listed is left out */
  cells: Record<string, Record<string, MatrixCell>>;
}

/**
 * A cell that passed with nothing to tell (left out of ReportMatrix.cells): answered, every echo request asked for
 * sent, no error, and its path MTU (when probed) the expected one.
 */
export function plainPass(cell: MatrixCell): boolean {
  return (
    cell.ok &&
    cell.error === undefined &&
    (cell.asked === undefined || cell.transmitted >= cell.asked) &&
    (cell.pmtu === undefined || (cell.pmtu.ok && !cell.pmtu.skipped))
  );
}

/** The report's form of `matrix` (pure): an RTT array per row, and the cells not plainly passing (every cell with `all`). */
export function reportMatrix(matrix: Matrix, all: boolean): ReportMatrix {
  const rttMs: Array<Array<number | null>> = [];
  const cells: ReportMatrix['cells'] = {};
  const n = matrix.nodes.length;
  for (const from of matrix.nodes) {
    const row = matrix.cells[from] ?? {};
    const rtts = new Array<number | null>(n);
    let listed: Record<string, MatrixCell> | undefined;
    for (let j = 0; j < n; j++) {
      const to = matrix.nodes[j]!;
      const cell = to === from ? undefined : row[to];
      rtts[j] = cell?.rttMs ?? null;
      if (cell && (all || !plainPass(cell))) {
        listed ??= {};
        listed[to] = cell;
      }
    }
    rttMs.push(rtts);
    if (listed) cells[from] = listed;
  }
  return { nodes: matrix.nodes, rttMs, cellsListed: all ? 'all' : 'not-passing', cells };
}

/** Each matrix's node name -> position, built once (a lookup per cell must not scan the names). */
const indexes = new WeakMap<ReportMatrix, ReadonlyMap<string, number>>();
function indexOf(matrix: ReportMatrix): ReadonlyMap<string, number> {
  let index = indexes.get(matrix);
  if (!index) {
    index = new Map(matrix.nodes.map((name, i) => [name, i]));
    indexes.set(matrix, index);
  }
  return index;
}

/**
 * The cell from `from` to `to` of a report's matrix (version 3): the one listed, else a stand-in for the plain pass
 * its RTT stands for (ok, its RTT; its counts are not in the report and read 0), for the text view and the graph.
 * Undefined on the diagonal, for a name not in the matrix, or for a cell missing from a matrix that lists all. `index`: node name -> position, built once by
 * the caller for many lookups.
 */
export function reportCell(
  matrix: ReportMatrix,
  from: string,
  to: string,
  index: ReadonlyMap<string, number> = indexOf(matrix),
): MatrixCell | undefined {
  const listed = matrix.cells[from]?.[to];
  if (listed) return listed;
  const i = index.get(from);
  const j = index.get(to);
  if (i === undefined || j === undefined || i === j || matrix.cellsListed === 'all') return undefined;
  const rtt = matrix.rttMs[i]?.[j];
  return { ok: true, loss: 0, transmitted: 0, received: 0, ...(rtt !== null && rtt !== undefined ? { rttMs: rtt } : {}) };
}

/**
 * verify's wall time by stage, ms. The checklist runs at the same time as the cold-start probe and the ping round
 * (../checks/collect.ts), so the stages overlap: collectMs is the wall time of all three together.
 */
export interface VerifyTimings {
  connectMs: number;
  checklistMs: number;
  /** the pre script on every node (part of coldStartMs: the probe's counters before) */
  preMs?: number;
  coldStartMs?: number;
  /** round trips of the cold-start probe after the pre script: 1 on a healthy mesh */
  coldStartRoundTrips?: number;
  pingMs: number;
  /** the first-contact round (part of pingMs): only when a pair had no fresh session */
  firstContactMs?: number;
  collectMs?: number;
}

/** One pair's path in the report: direct, relayed via R, or none, why, and the RTT the ping matrix measured. */
export interface PathReport {
  a: string;
  b: string;
  kind: 'direct' | 'relayed' | 'none';
  /** relayed pairs: the relay */
  via?: string;
  why: string;
  /** average ping RTT in ms over both directions (through the relay for a relayed pair), when any reply came */
  rttMs?: number;
  /** relayed pairs: the RTTs of the two legs, a to the relay and the relay to b (average of both directions), in ms */
  legsRttMs?: [number, number];
  /** relayed pairs that also have a direct path (relay: always): that path is not used, so its RTT is not measured */
  direct?: string;
}

const averageRtt = (matrix: Matrix | undefined, x: string, y: string): number | undefined => {
  const rtts = [matrix?.cells[x]?.[y], matrix?.cells[y]?.[x]].flatMap((c) => (c?.ok && c.rttMs !== undefined ? [c.rttMs] : []));
  return rtts.length ? Math.round((rtts.reduce((sum, v) => sum + v, 0) / rtts.length) * 1000) / 1000 : undefined;
};

/** Every pair's path and what the ping matrix measured on it (pure). */
export function pathReports(inventory: Inventory, matrix: Matrix | undefined): PathReport[] {
  return planPaths(inventory).pairs.map(({ a, b, path }) => pathReport(matrix, a, b, path));
}

/** One pair's PathReport (see pathReports). */
function pathReport(matrix: Matrix | undefined, a: string, b: string, path: NonNullable<ReturnType<typeof pathBetween>>): PathReport {
  const rttMs = averageRtt(matrix, a, b);
  const base: PathReport = { a, b, kind: path.kind, why: path.why, ...(rttMs !== undefined ? { rttMs } : {}) };
  if (path.kind !== 'relayed') return base;
  const legA = averageRtt(matrix, a, path.via);
  const legB = averageRtt(matrix, path.via, b);
  return {
    ...base,
    via: path.via,
    ...(legA !== undefined && legB !== undefined ? { legsRttMs: [legA, legB] as [number, number] } : {}),
    ...(path.directExists
      ? { direct: 'a direct path exists but is not used (relay: always); its RTT is not measured: meshctl pings only through the mesh' }
      : {}),
  };
}

/**
 * The report's `paths` and `pathCounts` (pure): the pairs that are not direct (every pair with `all`), in inventory
 * order. A direct pair's path is not made at all (pathKind): at 1,000 nodes 499,500 pairs, nearly all direct, each
 * with its `why` made a report of hundreds of MB (issue 10).
 */
export function reportPaths(
  inventory: Inventory,
  matrix: Matrix | undefined,
  all: boolean,
): { paths: PathReport[]; pathCounts: PathCounts } {
  const plan = planPaths(inventory);
  const counts: PathCounts = { direct: 0, relayed: 0, none: 0 };
  const paths: PathReport[] = [];
  const names = inventory.nodes.map((n) => n.name);
  for (let i = 0; i < names.length; i++)
    for (let j = i + 1; j < names.length; j++) {
      const a = names[i]!;
      const b = names[j]!;
      const kind = pathKind(plan, a, b);
      if (kind === undefined) continue;
      counts[kind]++;
      if (kind === 'direct' && !all) continue;
      paths.push(pathReport(matrix, a, b, pathBetween(plan, a, b)!));
    }
  return { paths, pathCounts: counts };
}

/** `strict`: a warning fails the run too (for monitoring that must hear of a drift or a NAT collision). */
export function buildReport(
  inventory: Inventory,
  checks: Check[],
  matrix: Matrix | undefined,
  unreachable: Map<string, string>,
  durationMs: number,
  {
    strict = false,
    timings,
    channels,
    passed = [],
    allChecks = false,
  }: {
    strict?: boolean;
    timings?: VerifyTimings;
    channels?: Record<string, number>;
    passed?: PassedGroup[];
    /** --all-checks: every cell of the matrix and every path listed (else only what does not plainly pass / is not direct) */
    allChecks?: boolean;
  } = {},
): VerifyReport {
  const summary = summarize(checks, passed);
  const failed = summary.fail > 0 || (strict && summary.warn > 0);
  const outcome: Outcome = unreachable.size > 0 ? 'connect' : failed ? 'stop' : 'ok';
  // the report carries the exit code for scripts that read the JSON; the number comes from the one table
  const exitCode = ExitCode[outcome] as 0 | 1 | 3;
  return {
    version: 3,
    inventory: inventory.source,
    ok: outcome === 'ok',
    exitCode,
    summary,
    durationMs,
    nodes: inventory.nodes.map((n) => ({
      name: n.name,
      site: n.site,
      overlayIp: n.overlayIp,
      connected: !unreachable.has(n.name),
      ...(unreachable.has(n.name) ? { error: unreachable.get(n.name)! } : {}),
    })),
    checks,
    passed,
    matrix: matrix ? reportMatrix(matrix, allChecks) : null,
    ...(timings ? { timings } : {}),
    ...(channels ? { channels } : {}),
    ...reportPaths(inventory, matrix, allChecks),
  };
}

interface Row {
  node: string;
  check: string;
  status: Check['status'];
  message: string;
  evidence: string[];
}

/** The ids of per-pair checks (the others with a peer are per-peer): they share the text view's "pairs" row. */
const PAIR_IDS = new Set(['ping', 'path-mtu', 'cold-start']);

/** "ping, path-mtu (999 peers each)" or "ping 998, path-mtu 999 peers": what a node's passed groups counted. */
function countedText(groups: PassedGroup[]): string {
  const counts = new Set(groups.map((g) => g.peers));
  if (counts.size === 1) {
    const n = groups[0]!.peers;
    return `${groups.map((g) => g.id).join(', ')} (${n} peer${n === 1 ? '' : 's'}${groups.length > 1 ? ' each' : ''})`;
  }
  return `${groups.map((g) => `${g.id} ${g.peers}`).join(', ')} peers`;
}

/**
 * The compact view: per node, its passing checks collapse into at most three rows (node checks, per-peer checks,
 * pair checks) that name what passed (the peers by name when the checks are listed, else how many: `passed`); every
 * warning and failure keeps its own row with its evidence.
 */
export function checkRows(checks: Check[], passed: readonly PassedGroup[] = []): Row[] {
  const rows: Row[] = [];
  // one pass to group by node (a filter per node was O(nodes x checks))
  const byNode = new Map<string, Check[]>();
  for (const c of checks) {
    const mine = byNode.get(c.node);
    if (mine) mine.push(c);
    else byNode.set(c.node, [c]);
  }
  const groupsOf = new Map<string, PassedGroup[]>();
  for (const g of passed) {
    const mine = groupsOf.get(g.node);
    if (mine) mine.push(g);
    else groupsOf.set(g.node, [g]);
  }
  for (const node of new Set([...byNode.keys(), ...groupsOf.keys()])) {
    const mine = byNode.get(node) ?? [];
    const groups = groupsOf.get(node) ?? [];
    const passing = mine.filter((c) => c.status === 'pass');
    const ids = (list: Check[]) => [...new Set(list.map((c) => c.id))];
    const peersOf = (list: Check[]) => [...new Set(list.map((c) => c.peer!))];
    const nodeLevel = passing.filter((c) => c.peer === undefined);
    const peerLevel = passing.filter((c) => c.peer !== undefined && !PAIR_IDS.has(c.id));
    const pairLevel = passing.filter((c) => c.peer !== undefined && PAIR_IDS.has(c.id));
    const peerGroups = groups.filter((g) => !PAIR_IDS.has(g.id));
    const pairGroups = groups.filter((g) => PAIR_IDS.has(g.id));
    if (nodeLevel.length) rows.push({ node, check: 'node', status: 'pass', message: ids(nodeLevel).join(', '), evidence: [] });
    if (peerLevel.length)
      rows.push({
        node,
        check: 'peers',
        status: 'pass',
        message: `${ids(peerLevel).join(', ')} (${peersOf(peerLevel).join(', ')})`,
        evidence: [],
      });
    if (peerGroups.length) rows.push({ node, check: 'peers', status: 'pass', message: countedText(peerGroups), evidence: [] });
    if (pairLevel.length)
      rows.push({
        node,
        check: 'pairs',
        status: 'pass',
        message: `${ids(pairLevel).join(', ')} to ${peersOf(pairLevel).join(', ')}`,
        evidence: [],
      });
    if (pairGroups.length) rows.push({ node, check: 'pairs', status: 'pass', message: countedText(pairGroups), evidence: [] });
    for (const c of mine.filter((x) => x.status !== 'pass')) {
      rows.push({ node, check: c.peer ? `${c.id} ${c.peer}` : c.id, status: c.status, message: c.message, evidence: c.evidence });
    }
  }
  return rows;
}

/** The table of checks; `passed`: the passing checks the report counted instead of listing (one row per group with --verbose). */
export function renderChecks(checks: Check[], options: { color: boolean; verbose?: boolean; passed?: readonly PassedGroup[] }): string {
  const c = options.color ? new Chalk({ level: Math.max(chalk.level, 1) as 1 | 2 | 3 }) : new Chalk({ level: 0 });
  const shown = options.verbose
    ? [
        ...checks.map((k) => ({
          node: k.node,
          check: k.peer ? `${k.id} ${k.peer}` : k.id,
          status: k.status,
          message: k.message,
          evidence: k.evidence,
        })),
        ...(options.passed ?? []).map((g) => ({
          node: g.node,
          check: g.id,
          status: 'pass' as const,
          message: `${g.peers} peer${g.peers === 1 ? '' : 's'}: pass (not listed: --all-checks lists them)`,
          evidence: [],
        })),
      ]
    : checkRows(checks, options.passed);
  // messages and evidence quote node output: escaped before our colours are added (../ui/safe-text.ts)
  const rows = shown.map((r) => ({
    ...r,
    node: safeText(r.node),
    check: safeText(r.check),
    message: safeText(r.message),
    evidence: r.evidence.map(safeText),
  }));
  // a loop, not Math.max(...rows): a row per argument overflowed the stack at ~100,000 rows (a 250-node farm's
  // 62,250 cold-start warnings)
  let wNode = 4;
  let wCheck = 5;
  for (const r of rows) {
    wNode = Math.max(wNode, r.node.length);
    wCheck = Math.max(wCheck, r.check.length);
  }
  const tone = (s: Check['status']) => (s === 'pass' ? c.green('pass') : s === 'warn' ? c.hex('#ff8800')('WARN') : c.red.bold('FAIL'));
  const lines = [c.bold(`${'node'.padEnd(wNode)}  ${'check'.padEnd(wCheck)}  ${'    '}  result`)];
  for (const r of rows) {
    lines.push(`${r.node.padEnd(wNode)}  ${r.check.padEnd(wCheck)}  ${tone(r.status)}  ${r.message}`);
    for (const e of r.evidence) lines.push(c.dim(`${' '.repeat(wNode + wCheck + 10)}| ${e}`));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The pairs that are not direct, one line each (relayed via R with RTTs, or none), then a count; '' when all are
 * direct. `counts`: the pairs by kind when `paths` lists only some (verify's report, version 3); else counted from it.
 */
export function renderPaths(paths: PathReport[], { measured = true, counts }: { measured?: boolean; counts?: PathCounts } = {}): string {
  const other = paths.filter((p) => p.kind !== 'direct');
  if (other.length === 0) return '';
  const ms = (v: number | undefined) => (v === undefined ? 'no reply' : `${v} ms`);
  const rtt = (p: PathReport) =>
    measured ? `${ms(p.rttMs)}${p.legsRttMs ? ` (legs ${p.legsRttMs[0]} + ${p.legsRttMs[1]} ms)` : ''}; ` : '';
  const lines = other.map((p) =>
    p.kind === 'relayed'
      ? `  ${p.a} <-> ${p.b}  relayed via ${p.via}: ${rtt(p)}${p.why}${measured && p.direct ? `; ${p.direct}` : ''}`
      : `  ${p.a} <-> ${p.b}  no path: ${p.why}`,
  );
  const byKind = (['direct', 'relayed', 'none'] as const)
    .map((k) => `${counts ? counts[k] : paths.filter((p) => p.kind === k).length} ${k}`)
    .join(', ');
  return `Paths (${byKind})\n${lines.map(safeText).join('\n')}\n`;
}

export function renderReport(report: VerifyReport, options: { color: boolean; verbose?: boolean }): string {
  const c = options.color ? new Chalk({ level: Math.max(chalk.level, 1) as 1 | 2 | 3 }) : new Chalk({ level: 0 });
  const parts: string[] = [];
  if (report.matrix) {
    const relayed = new Map(report.paths.filter((p) => p.kind === 'relayed').map((p) => [`${p.a}\u0000${p.b}`, p.via!]));
    const m = report.matrix;
    parts.push(
      c.bold('Ping matrix (rows ping columns over the overlay)'),
      renderMatrix(
        { nodes: m.nodes, cells: {} },
        {
          ...options,
          relayed,
          cellAt: (from, to) => reportCell(m, from, to),
          // rows of nodes not reached: not measured (finding 5)
          // briefly: the node's connect check below says it in full (briefWhy)
          unreached: new Map(
            report.nodes.flatMap((n) => (n.connected ? [] : [[n.name, safeText(briefWhy(n.error ?? 'not connected'))] as const])),
          ),
        },
      ),
    );
  }
  const paths = renderPaths(report.paths, { counts: report.pathCounts });
  if (paths) parts.push(paths);
  parts.push(renderChecks(report.checks, { ...options, passed: report.passed }));
  const s = report.summary;
  const verdict =
    report.exitCode === 0
      ? c.green.bold('HEALTHY')
      : report.exitCode === 3
        ? c.red.bold('UNREACHABLE NODES')
        : c.red.bold('PROBLEMS FOUND');
  parts.push(
    `${verdict}: ${s.pass} pass, ${s.warn} warn, ${s.fail} fail (${(report.durationMs / 1000).toFixed(1)} s)${report.exitCode === 1 ? ' - run `meshctl debug` to find the causes' : ''}\n`,
  );
  return parts.join('\n');
}
