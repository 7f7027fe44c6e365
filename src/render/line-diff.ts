/**
 * A line diff for showing what a dry run would write: `-` removed, `+` added, ` ` kept, with long runs of kept lines
 * folded to their first and last few. Files here are a few dozen lines, so a plain LCS table is enough.
 */

export interface LineDiffOptions {
  /** kept lines shown around each change */
  context?: number;
}

/** Diff of two texts; an absent `before` is a new file (every line added). Empty when they are equal. */
export function lineDiff(before: string | undefined, after: string, { context = 2 }: LineDiffOptions = {}): string[] {
  if (before === after) return [];
  const a = splitLines(before ?? '');
  const b = splitLines(after);
  // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..]
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  }
  const ops: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push(` ${a[i++]}`);
      j++;
    } else if (i < a.length && (j === b.length || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) {
      // removals before additions, as diff(1) shows a replaced line
      ops.push(`-${a[i++]}`);
    } else {
      ops.push(`+${b[j++]}`);
    }
  }
  return foldUnchanged(ops, context);
}

function splitLines(text: string): string[] {
  if (text === '') return [];
  return (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n');
}

/** Keeps `context` kept lines next to each change and replaces the rest of a run with one "..." line. */
function foldUnchanged(ops: string[], context: number): string[] {
  const changed = ops.map((op) => op[0] !== ' ');
  const near = (index: number) => changed.some((c, k) => c && Math.abs(k - index) <= context);
  const out: string[] = [];
  let folded = 0;
  ops.forEach((op, index) => {
    if (changed[index] || near(index)) {
      if (folded) out.push(`  ... ${folded} unchanged line${folded === 1 ? '' : 's'}`);
      folded = 0;
      out.push(op);
    } else {
      folded++;
    }
  });
  if (folded) out.push(`  ... ${folded} unchanged line${folded === 1 ? '' : 's'}`);
  return out;
}
