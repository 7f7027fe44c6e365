/**
 * A line diff for showing what a dry run would write: `-` removed, `+` added, ` ` kept, with long runs of kept lines
 * folded to their first and last few.
 * Issue 10: a 1,000-peer wg-quick file has ~6,000 lines, and the LCS table this used was O(n*m) in time and memory
 * (36M cells per node). Now the common prefix and suffix are kept as they are, and the middle is diffed by Myers'
 * O(ND) algorithm (E. Myers, "An O(ND) Difference Algorithm and Its Variations", Algorithmica 1986), which is
 * linear in the lines for the few edits a config usually gets; past MAX_EDITS edits the middle is shown as removed
 * then added (a correct diff, not a minimal one) instead of searching on.
 *
 * Why our own search and not a library's (the project takes a maintained library where one serves): two were
 * measured on a 1,000-peer config (6,009 lines), same output as this code on every case, CPU per diff (median,
 * process.cpuUsage, 2026-12-01, load 15-25 on 2 cores), this code / jsdiff / diff-sequences:
 *   one line changed 1.4 / 1.6 / 1.7 ms; a peer added 1.3 / 1.4 / 1.4; a peer removed 1.3 / 1.4 / 1.4;
 *   a new file (no search) 0.9 / 0.5 / 0.5; 200 edits 2.6 / 9.0 / 7.2; 1,000 edits (a setting added to every peer)
 *   15 / 175 / 21; 2,000 edits (every key rotated) 77 / 754 / 74; two unrelated 3,000-line texts 50 / 728 / 1.2;
 *   the peers in reverse order 66 / 747 / 565; 3,000 lines reversed 51 / 720 / 277.
 * - jsdiff (npm `diff` 9.0.0, `diffArrays` with `maxEditLength` = MAX_EDITS): 3-15x this code past a few edits,
 *   as its search allocates an object per step where this one keeps typed arrays. At 1,000 nodes a key rotation
 *   diffs every node's config: ~77 s of CPU here, ~750 s with it.
 * - diff-sequences (npm `@jest/diff-sequences` 30.5.0, jest's linear-space Myers over index callbacks): as fast for
 *   one edit or 1,000-2,000 in a row, but 2.8x for 200 scattered edits (its divide and conquer compares 60,572 lines
 *   where this compares 26,112), and it has no edit cap: texts whose lines are the same but reordered cost
 *   O((n+m)·D) until a comparison budget (16M here) stops it, 5-9x this code. Its cheaper case above (unrelated
 *   texts) came from a check of ours before the call (the lines both texts share bound the edits from below), not
 *   from the library.
 * Neither was within 1.5x of this code on every case, so the search stays ours.
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
