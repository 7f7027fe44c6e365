/**
 * A line diff for showing what a dry run would write: `-` removed, `+` added, ` ` kept, with long runs of kept lines
 * folded to their first and last few.
 * Issue 10: a 1,000-peer wg-quick file has ~6,000 lines, and the LCS table this used was O(n*m) in time and memory
 * (36M cells per node). Now the common prefix and suffix are kept as they are, and the middle is diffed by Myers'
 * O(ND) algorithm (E. Myers, "An O(ND) Difference Algorithm and Its Variations", Algorithmica 1986), which is
 * linear in the lines for the few edits a config usually gets; past MAX_EDITS edits the middle is shown as removed
 * then added (a correct diff, not a minimal one) instead of searching on.
 */

export interface LineDiffOptions {
  /** kept lines shown around each change */
  context?: number;
}

/** The most edits (removed + added lines) Myers searches for in the middle before showing it as replaced whole. */
export const MAX_EDITS = 2000;

/**
 * Work done by lineDiff, for the scale tests (test/unit/scale-cost-config.test.ts): line comparisons made, and
 * steps of folding the kept runs (two per diff line).
 */
export const lineDiffWork = { comparisons: 0, foldSteps: 0 };

/** Diff of two texts; an absent `before` is a new file (every line added). Empty when they are equal. */
export function lineDiff(before: string | undefined, after: string, { context = 2 }: LineDiffOptions = {}): string[] {
  if (before === after) return [];
  const a = splitLines(before ?? '');
  const b = splitLines(after);
  if (a.length === 0)
    return foldUnchanged(
      b.map((line) => `+${line}`),
      context,
    );
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  lineDiffWork.comparisons += start + (a.length - endA) + 2;
  const ops: string[] = [];
  for (let i = 0; i < start; i++) ops.push(` ${a[i]}`);
  diffMiddle(a, start, endA, b, start, endB, ops);
  for (let i = endA; i < a.length; i++) ops.push(` ${a[i]}`);
  return foldUnchanged(ops, context);
}

/**
 * Appends the ops turning a[a0..a1) into b[b0..b1): Myers' greedy forward search, keeping each round's frontier
 * (O(D^2) memory) to walk the path back. Removals come before additions where both are possible, as diff(1) shows a
 * replaced line.
 */
function diffMiddle(a: string[], a0: number, a1: number, b: string[], b0: number, b1: number, ops: string[]): void {
  const n = a1 - a0;
  const m = b1 - b0;
  if (n === 0 || m === 0) {
    for (let i = a0; i < a1; i++) ops.push(`-${a[i]}`);
    for (let j = b0; j < b1; j++) ops.push(`+${b[j]}`);
    return;
  }
  const maxD = Math.min(n + m, MAX_EDITS);
  const offset = maxD + 1;
  const v = new Int32Array(2 * maxD + 3);
  // trace[d]: v's entries for k in [-d, d] after round d (the furthest x on each diagonal k = x - y)
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= maxD && found < 0; d++) {
    for (let k = -d; k <= d; k += 2) {
      // step down (an addition) from k+1, or right (a removal) from k-1; prefer the removal on a tie
      let x = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[a0 + x] === b[b0 + y]) {
        x++;
        y++;
        lineDiffWork.comparisons++;
      }
      lineDiffWork.comparisons++;
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
    trace.push(v.slice(offset - d, offset + d + 1));
  }
  if (found < 0) {
    // too many edits to search for: the whole middle replaced
    for (let i = a0; i < a1; i++) ops.push(`-${a[i]}`);
    for (let j = b0; j < b1; j++) ops.push(`+${b[j]}`);
    return;
  }
  // walk back from (n, m): each round d was a snake preceded by one edit
  const reversed: string[] = [];
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    const prev = trace[d - 1]!;
    const at = (k: number) => prev[k + d - 1]!;
    const k = x - y;
    const down = k === -d || (k !== d && at(k - 1) < at(k + 1));
    const prevK = down ? k + 1 : k - 1;
    // where the edit of round d ended: the snake (kept lines) runs from there to (x, y)
    const editX = down ? at(prevK) : at(prevK) + 1;
    while (x > editX) {
      reversed.push(` ${a[a0 + x - 1]}`);
      x--;
      y--;
    }
    if (down) {
      reversed.push(`+${b[b0 + y - 1]}`);
      y--;
    } else {
      reversed.push(`-${a[a0 + x - 1]}`);
      x--;
    }
  }
  while (x > 0 && y > 0) {
    reversed.push(` ${a[a0 + x - 1]}`);
    x--;
    y--;
  }
  for (let i = reversed.length - 1; i >= 0; i--) ops.push(reversed[i]!);
}

function splitLines(text: string): string[] {
  if (text === '') return [];
  return (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n');
}

/**
 * Keeps `context` kept lines next to each change and replaces the rest of a run with one "..." line. Linear: the
 * distance to the nearest change is found in one pass each way (a scan of all ops per op was O(n^2)).
 */
function foldUnchanged(ops: string[], context: number): string[] {
  const n = ops.length;
  lineDiffWork.foldSteps += 2 * n;
  const distance = new Array<number>(n).fill(Number.POSITIVE_INFINITY);
  let last = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    if (ops[i]![0] !== ' ') last = i;
    distance[i] = i - last;
  }
  last = Number.POSITIVE_INFINITY;
  for (let i = n - 1; i >= 0; i--) {
    if (ops[i]![0] !== ' ') last = i;
    distance[i] = Math.min(distance[i]!, last - i);
  }
  const out: string[] = [];
  let folded = 0;
  for (let i = 0; i < n; i++) {
    if (distance[i]! <= context) {
      if (folded) out.push(`  ... ${folded} unchanged line${folded === 1 ? '' : 's'}`);
      folded = 0;
      out.push(ops[i]!);
    } else {
      folded++;
    }
  }
  if (folded) out.push(`  ... ${folded} unchanged line${folded === 1 ? '' : 's'}`);
  return out;
}
