/**
 * One problem found in an input file (inventory, playbook), and how it is shown: `FILE:LINE:COL: FIELD.PATH: message`.
 * Positions are 1-based and point at the offending value (or, for a missing field, at the key of the map that
 * should hold it).
 */

export interface Position {
  line: number;
  col: number;
}

export interface Problem extends Position {
  /** dotted field path, e.g. `nodes.wk-1.overlayIp`, `mesh.reservedCidrs[1]`; `syntax` for YAML syntax errors */
  path: string;
  message: string;
}

export type PathPart = string | number;

/** `['nodes', 'wk-1', 'ssh', 'port']` -> `nodes.wk-1.ssh.port`; numbers become `[i]`. */
export function formatPath(path: readonly PathPart[]): string {
  if (path.length === 0) return '(root)';
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

/** The problem as one line: control characters in the path or message (a key holding a newline) are escaped. */
export const formatProblem = (file: string, problem: Problem) =>
  `${file}:${problem.line}:${problem.col}: ${oneLine(problem.path)}: ${oneLine(problem.message)}`;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
const oneLine = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, escapeControl);

/** JSON's escape (`\n`, `\u001b`) where it has one; `\u0085` for C1 and bidi controls, which JSON leaves raw. */
function escapeControl(char: string): string {
  const json = JSON.stringify(char).slice(1, -1);
  return json !== char ? json : `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** By position, then by path and message so the order is stable. Identical problems are kept once. */
export function sortProblems(problems: readonly Problem[]): Problem[] {
  const seen = new Set<string>();
  return [...problems]
    .sort((a, b) => a.line - b.line || a.col - b.col || a.path.localeCompare(b.path) || a.message.localeCompare(b.message))
    .filter((p) => {
      const key = `${p.line}:${p.col}:${p.path}:${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

/** Edit distance counting a swap of two neighbouring letters as one edit (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The closest candidate to a misspelt word, if one is close enough to be a plausible typo: within a third of the
 * longer word's length (1 to 3 edits), and never one that replaces every character (a site "c" is no typo of "a", a
 * new user's finding Q4-7).
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = candidate.toLowerCase() === lower ? 0 : editDistance(lower, candidate.toLowerCase());
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  if (!best) return undefined;
  const allowed = Math.max(1, Math.min(3, Math.floor(Math.max(word.length, best.candidate.length) / 3)));
  const longer = Math.max(word.length, best.candidate.length);
  return best.distance <= allowed && best.distance < longer ? best.candidate : undefined;
}

/** "a, b or c" */
export function listWords(words: readonly string[], conjunction = 'or'): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} ${conjunction} ${words[words.length - 1]}`;
}
