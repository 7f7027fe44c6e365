/**
 * A line diff for showing what a dry run would write: `-` removed, `+` added, ` ` kept, with long runs of kept lines
 * folded to their first and last few.
 *
 * The diff itself is jsdiff's (npm `diff`, its `diffArrays` over our lines): Myers' O(ND) algorithm (E. Myers, "An
 * O(ND) Difference Algorithm and Its Variations", Algorithmica 1986), which walks the common prefix first and stops
 * looking at diagonals once they reach the edge of the files, so a few edits in a 6,000-line config (a 1,000-peer
 * wg-quick file, issue 10) cost about the lines once. Why `diffArrays` and not `diffLines` / `structuredPatch`: the
 * lines are split here as before (a missing newline at the end of a text is no change, and no "\ No newline" line),
 * its `comparator` option lets lineDiffWork count the library's own work, and the fold below is this project's
 * format. Its `maxEditLength` bounds the search (MAX_EDITS); its `timeout` is not used, as a wall-clock limit would
 * make the output depend on the machine's load.
 * Cost against the Myers search of our own it replaced (same output on these, CPU per diff of a 1,000-peer file,
 * 2026-12-01): one line changed or a peer added 1-2 ms either way; a new file no search at all; 200 edits 9.6 vs
 * 2.3 ms; 1,000 edits (a setting added to every peer) 174 vs 18 ms; 2,000 (every key rotated) 700 vs 85 ms: its
 * search allocates per step where ours kept typed arrays. The few edits a config usually gets cost the same.
 */
import { diffArrays } from 'diff';

export interface LineDiffOptions {
  /** kept lines shown around each change */
  context?: number;
}

/**
 * The most edits (removed + added lines) searched for (jsdiff's `maxEditLength`) before the text is shown as
 * replaced whole: every old line removed, then every new line added (a correct diff, not a minimal one).
 */
export const MAX_EDITS = 2000;

/**
 * Work done by lineDiff, for the scale tests (test/unit/scale-cost-config.test.ts) and `npm run bench:plan`: line
 * comparisons jsdiff made (counted by its `comparator` option), and steps of folding the kept runs (two per diff line).
 */
export const lineDiffWork = { comparisons: 0, foldSteps: 0 };

const countedEquals = (a: string, b: string): boolean => {
  lineDiffWork.comparisons++;
  return a === b;
};

/** Diff of two texts; an absent `before` is a new file (every line added). Empty when they are equal. */
export function lineDiff(before: string | undefined, after: string, { context = 2 }: LineDiffOptions = {}): string[] {
  if (before === after) return [];
  const a = splitLines(before ?? '');
  const b = splitLines(after);
  // a new file: every line added, no search (a cold node's config at farm scale)
  if (a.length === 0) return b.map((line) => `+${line}`);
  const changes = diffArrays(a, b, { comparator: countedEquals, maxEditLength: MAX_EDITS });
  if (changes === undefined) return [...a.map((line) => `-${line}`), ...b.map((line) => `+${line}`)];
  const ops: string[] = [];
  for (const change of changes) {
    const mark = change.removed ? '-' : change.added ? '+' : ' ';
    for (const line of change.value) ops.push(mark + line);
  }
  return foldUnchanged(ops, context);
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
