/**
 * What the in-process benches (./plan-cost.ts, ./verify-cost.ts) share around their child runs: the median run of
 * several, and the lines that end their output (the table, the commit, node's version, the load).
 */
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';

/**
 * The bench's sizes (`100,250,1000`: each at least 2 nodes) and runs per size (at least 1) from its arguments
 * (`sizes` when none are given, 1 run). Throws `usage` when they are not whole numbers in range.
 */
export function sizesAndRuns(args: string[], sizes: string, usage: string): { sizes: number[]; runs: number } {
  const parsed = (args[0] ?? sizes).split(',').map(Number);
  const runs = Number(args[1] ?? 1);
  if (parsed.some((n) => !Number.isInteger(n) || n < 2) || !Number.isInteger(runs) || runs < 1) throw new Error(usage);
  return { sizes: parsed, runs };
}

/**
 * Every size's runs, each in a fresh child process (`node [nodeFlags] --import tsx SELF --one N [childArgs]`), so a
 * run's peak RSS is its own and no run warms the next; a run's figures are the last line of the child's stdout (JSON).
 * `report(n, run, cost, loadBefore)` prints one run's line as it ends (run counts from 1). Returns each size's median
 * run (medianRun), in the order of `sizes`. Throws what execFileSync throws for a child that fails.
 */
export function childRuns<T extends { cpuS: number }>(
  self: string,
  sizes: readonly number[],
  runs: number,
  options: { nodeFlags?: readonly string[]; childArgs?: readonly string[] },
  report: (n: number, run: number, cost: T, loadBefore: string) => void,
): T[] {
  return sizes.map((n) => {
    const measured: T[] = [];
    for (let i = 0; i < runs; i++) {
      const load = loadavg()[0]!.toFixed(1);
      const out = execFileSync(
        process.execPath,
        [...(options.nodeFlags ?? []), '--import', 'tsx', self, '--one', String(n), ...(options.childArgs ?? [])],
        { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const cost = JSON.parse(out.trim().split('\n').at(-1)!) as T;
      measured.push(cost);
      report(n, i + 1, cost, load);
    }
    return medianRun(measured);
  });
}

/** The median run of several by total CPU (`cpuS`), so its phases or stages belong to one real run. */
export function medianRun<T extends { cpuS: number }>(runs: T[]): T {
  const sorted = [...runs].sort((a, b) => a.cpuS - b.cpuS);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The bench's last lines: its table, then the commit measured, node's version and the load average. */
export function resultText(table: string): string {
  let commit = '?';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout (a copy of another tree, measured under this bench): no commit to name
  }
  return `\n${table}\n\ncommit ${commit}, node ${process.version}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`;
}

/** Runs a bench's main: an error is printed with its stack and exits 1. */
export function runBench(main: () => Promise<void>): void {
  main().catch((error) => {
    process.stderr.write(`${(error as Error).stack ?? error}\n`);
    process.exit(1);
  });
}
