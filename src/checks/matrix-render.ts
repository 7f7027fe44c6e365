/**
 * The ping matrix (./ping-matrix.ts) as text for a terminal: an N x N table, rows pinging columns. Apart from the
 * pinging code because it needs chalk, which `up --json` never uses (issue 10: loading chalk cost ~8 ms of CPU
 * between the first SSH login and up's first phase; measured 2026-12-01, docs/transport-cost.md).
 */
import chalk, { Chalk } from 'chalk';
import type { Matrix, MatrixCell } from './ping-matrix.js';

export interface RenderMatrixOptions {
  color: boolean;
  /** relayed pairs, keyed `a\u0000b` (either order) -> relay: their cells get a `*` and a legend line names the relay */
  relayed?: ReadonlyMap<string, string>;
  /** where a cell is read (default matrix.cells[from][to]): verify's report holds its passing cells as RTTs only */
  cellAt?: (from: string, to: string) => MatrixCell | undefined;
  /** the rows to show (nodes that pinged: `up --limit`'s), in matrix order; default every node */
  rows?: readonly string[];
  /**
   * nodes that were not reached, with why (verify's report: nodes not connected): their rows pinged nothing, so
   * their cells read `n/m` (not measured) and a legend line says why, not FAIL (finding 5)
   */
  unreached?: ReadonlyMap<string, string>;
  /**
   * the run was interrupted while it pinged (Q8 F-intr-matrix: up's Ctrl-C during the ping matrix): a cell with no
   * echo request sent (cut before its ping ran or reported: notMeasured) reads `n/m` with a legend line, not FAIL;
   * a ping that ran and lost its requests stays FAIL
   */
  interrupted?: boolean;
}

/**
 * Whether a cell holds no measurement: no echo request was sent, or none that reported (its ping was not run, or its
 * output was cut). A cell that failed with requests sent and lost was measured. Pure.
 */
export function notMeasured(cell: MatrixCell | undefined): boolean {
  return !!cell && !cell.ok && cell.transmitted === 0 && cell.received === 0;
}

/** The pairs of `matrix` (from -> to, among `rows`) whose cell holds no measurement (notMeasured). */
export function unmeasuredCells(matrix: Matrix, rows: readonly string[] = matrix.nodes): Array<[string, string]> {
  return rows.flatMap((from) =>
    matrix.nodes.filter((to) => to !== from && notMeasured(matrix.cells[from]?.[to])).map((to) => [from, to] as [string, string]),
  );
}

function cellText(cell: MatrixCell | undefined): { text: string; tone: 'ok' | 'fail' | 'warn' | 'none' } {
  if (!cell) return { text: '?', tone: 'none' };
  if (!cell.ok) {
    if (cell.received > 0) return { text: `FAIL ${cell.loss}%`, tone: 'fail' };
    return { text: cell.transmitted > 0 ? 'FAIL 100%' : 'FAIL', tone: 'fail' };
  }
  const rtt = cell.rttMs !== undefined ? ` ${cell.rttMs < 10 ? cell.rttMs.toFixed(2) : cell.rttMs.toFixed(0)}ms` : '';
  if (cell.pmtu && !cell.pmtu.ok) return { text: `ok${rtt} MTU ${cell.pmtu.largest + 28}`, tone: 'warn' };
  return { text: `ok${rtt}`, tone: 'ok' };
}

/**
 * An N x N table: rows are the pinging node (from), columns the pinged one (to); '-' on the diagonal; only the
 * rows in `options.rows` when given (finding 29: `up --limit` pings from its nodes only).
 * Cells: `ok 0.42ms`, `FAIL 100%`, or `ok 0.42ms MTU 1300` (in orange) when large packets do not pass; `n/m` in the
 * row of a node in `options.unreached`, and for a cell not measured in an `options.interrupted` run.
 */
export function renderMatrix(matrix: Matrix, options: RenderMatrixOptions): string {
  const c = options.color ? new Chalk({ level: Math.max(chalk.level, 1) as 1 | 2 | 3 }) : new Chalk({ level: 0 });
  const corner = 'from \\ to';
  const viaOf = (x: string, y: string) => options.relayed?.get(`${x}\u0000${y}`) ?? options.relayed?.get(`${y}\u0000${x}`);
  const header = [corner, ...matrix.nodes];
  const rowNodes = options.rows ? matrix.nodes.filter((n) => options.rows!.includes(n)) : matrix.nodes;
  const rows = rowNodes.map((from) => [
    { text: from, tone: 'none' as const },
    ...matrix.nodes.map((to) => {
      if (from === to) return { text: '-', tone: 'none' as const };
      if (options.unreached?.has(from)) return { text: 'n/m', tone: 'warn' as const };
      const at = options.cellAt ? options.cellAt(from, to) : matrix.cells[from]?.[to];
      if (options.interrupted && notMeasured(at)) return { text: 'n/m', tone: 'warn' as const };
      const cell = cellText(at);
      return viaOf(from, to) ? { ...cell, text: `${cell.text}*` } : cell;
    }),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.text.length)));
  const paint = (text: string, tone: string) =>
    tone === 'ok' ? c.green(text) : tone === 'fail' ? c.red.bold(text) : tone === 'warn' ? c.hex('#ff8800')(text) : text;
  const lines = [
    header
      .map((h, i) => c.bold(h.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
    ...rows.map((row) =>
      row
        .map((cell, i) => paint(cell.text.padEnd(widths[i]!), cell.tone))
        .join('  ')
        .trimEnd(),
    ),
  ];
  const relays = [...new Set(options.relayed?.values() ?? [])];
  if (relays.length) lines.push(`* relayed (via ${relays.join(', ')}): the ping goes through the relay`);
  for (const [node, why] of options.unreached ?? [])
    if (rowNodes.includes(node)) lines.push(`n/m not measured: ${node} unreachable (${why})`);
  if (options.interrupted && rowNodes.some((from) => matrix.nodes.some((to) => to !== from && notMeasured(matrix.cells[from]?.[to]))))
    lines.push('n/m not measured: the run was interrupted before these pings ended');
  return `${lines.join('\n')}\n`;
}
