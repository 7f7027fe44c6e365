/**
 * The benchmark's result shapes (docs/bench.json), the median over runs, and the Markdown report (docs/bench.md).
 * Pure: `npm run bench -- --table-only` renders the Markdown again from the JSON.
 */
import type { Floor } from './floor.js';
import type { SiteMix } from './inventory.js';

/** One timed run of a tool. Times in ms, RSS in KiB (the largest process's peak, from /usr/bin/time %M). */
export interface ToolRun {
  wallMs: number;
  /** user + system CPU of the process and its waited-for children */
  cpuMs: number;
  rssKiB: number;
  /** meshctl: `connect` and each phase of `up --json`; Ansible: each play of the json callback */
  phasesMs?: Record<string, number>;
  changes?: number;
  /** meshctl up: wall time outside `up --json`'s totalMs (process start, loading, exit) */
  outsideUpMs?: number;
  /** meshctl: remote commands per node (up --json roundTrips) */
  roundTripsPerNode?: { min: number; max: number; mean: number };
  /** the run exited non-zero (verify only: its failed checks, in a few words); the table marks its time */
  failed?: string;
  /**
   * meshctl's cold up: pairs whose first ping round failed (the lab's load), relayed by relay: auto in a second pass
   * whose phases `phasesMs` adds to the first's
   */
  relayedAtGate?: string[];
  /**
   * meshctl up: the ping phase's pairs (pairKey strings) whose session was reset at the start of the round, that failed
   * the first round and were pinged again, and of those the ones reset first (up --json matrix.reset, matrix.recheck);
   * absent when the round needed none of it. What tells a run slowed by one-direction sessions (docs/transport-cost.md)
   */
  pingRounds?: { reset: string[]; recheck: string[]; recheckReset: string[]; recheckMs?: number };
  /**
   * meshctl up: ms from process start to the first node's connection ready (logged in, and root proved when the
   * connector proves it; up --json timings.firstConnectionMs)
   */
  firstConnectionMs?: number;
  /**
   * meshctl up: ms from process start to the first node's TCP connection established (up --json
   * timings.firstTcpConnectMs): meshctl's own part (start, loading, inventory); the node's sshd only accepts
   */
  firstTcpConnectMs?: number;
  /**
   * meshctl up: ms from process start to the first node's SSH login done (up --json timings.firstLoginMs); after the
   * TCP connect it includes the key exchange and the login, which wait on the node's sshd as well as on meshctl
   */
  firstLoginMs?: number;
  /** meshctl up: the process's CPU time (user + system, ms) when the first login was done (timings.firstLoginCpuMs) */
  firstLoginCpuMs?: number;
}

/** The stages of the first connection that `up --json` reports in `timings` (ms since meshctl's start; CPU in ms). */
export type FirstStages = Pick<ToolRun, 'firstConnectionMs' | 'firstTcpConnectMs' | 'firstLoginMs' | 'firstLoginCpuMs'>;

/** A run's first-connection stages from `up --json` timings: those it reports (an older meshctl reports fewer). */
export function firstStages(timings: FirstStages): FirstStages {
  const { firstConnectionMs, firstTcpConnectMs, firstLoginMs, firstLoginCpuMs } = timings;
  const stages = { firstConnectionMs, firstTcpConnectMs, firstLoginMs, firstLoginCpuMs };
  return Object.fromEntries(Object.entries(stages).filter(([, ms]) => ms !== undefined));
}

export interface RunResult {
  /** `lab up` of the meshctl lab, for the notes */
  labUpMs: number;
  /** 1-minute load average before and after, and other labs' containers running at the start (shared machine) */
  load: { start: number; end: number; otherContainers: number };
  /** absent with --only-ansible, as is meshctl */
  floor?: Floor;
  /** controlMasterCpuMs: CPU of the --control-persist master over the three runs (not in their cpuMs), ms */
  meshctl?: { cold: ToolRun; second: ToolRun; verify: ToolRun; controlMasterCpuMs?: number };
  ansible?: { cold: ToolRun; second: ToolRun };
  /** why Ansible has no numbers in this run */
  ansibleError?: string;
  /** why the floor has no numbers in this run */
  floorError?: string;
}

export interface SizeResult {
  nodes: number;
  mix: SiteMix;
  runs: RunResult[];
  /** every number the median of the runs' */
  median: RunResult;
}

export interface BenchResults {
  command: string;
  /** ISO start time */
  date: string;
  machine: { cpu: string; cores: number; kernel: string; node: string; ansible?: string };
  /** process start, median of 10, ms: `meshctl --version` and a bare `node -e 0` */
  /** process start, ms; `dropped`: variables of the machine's environment left out of every timed process (run.ts TOOL_ENV), `nodeWithDroppedMs` a bare node's start with them */
  start?: { versionMs: number; nodeMs: number; dropped?: string[]; nodeWithDroppedMs?: number };
  /** meshctl's runs had --control-persist this many seconds (absent: results of a bench without it) */
  controlPersistS?: number;
  sizes: SizeResult[];
}

const mid = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const m = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[m]! : (sorted[m - 1]! + sorted[m]!) / 2;
};

/** Field by field median of objects of one shape (numbers: the median; objects: recursively; a field some runs lack: from those that have it). */
export function median<T>(items: T[]): T {
  const first = items[0] as unknown;
  if (typeof first === 'number') return mid(items as number[]) as T;
  // lists (the floor's unanswered pairs) are not numbers to take a median of: the first run's
  if (first === null || typeof first !== 'object' || Array.isArray(first)) return first as T;
  const out: Record<string, unknown> = {};
  const keys = new Set(items.flatMap((item) => Object.keys(item as object)));
  for (const key of keys) {
    const values = items.map((item) => (item as Record<string, unknown>)[key]).filter((v) => v !== undefined);
    out[key] = median(values);
  }
  return out as T;
}

/** The --control-persist master's CPU per size (median of the runs), e.g. `4 nodes 0.3 s, 16 nodes 0.9 s`. */
const masterCpu = (sizes: SizeResult[]) =>
  sizes.map((size) => `${size.nodes} nodes ${s(size.median.meshctl?.controlMasterCpuMs)}`).join(', ') || '-';

const s = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? '-' : `${(ms / 1000).toFixed(1)} s`);
const signed = (ms: number) => (Number.isNaN(ms) ? '-' : `${ms < 0 ? '-' : '+'}${(Math.abs(ms) / 1000).toFixed(1)} s`);
const mb = (kib: number | undefined) => (kib === undefined || Number.isNaN(kib) ? '-' : `${Math.round(kib / 1024)} MB`);
/**
 * Ansible's time above the floor over meshctl's. When meshctl's own difference is zero or negative (it ran at the
 * floor, within the floor's run-to-run noise) there is no finite ratio: say so rather than print '-' as if a number
 * were missing.
 */
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(1)}x` : a > 0 ? 'no ratio: meshctl at the floor' : '-');

/** A tool that did not run (--only-ansible): every number NaN, shown as '-'. */
const NOT_RUN: ToolRun = { wallMs: Number.NaN, cpuMs: Number.NaN, rssKiB: Number.NaN };
const NO_FLOOR: Floor = { facts: NaN, install: NaN, keys: NaN, config: NaN, enable: NaN, ping: NaN, pingWarm: NaN, pingMtu: NaN, total: NaN };

/** The median of a size with every part present (missing parts as NOT_RUN / NO_FLOOR). */
const filled = (m: RunResult) => ({
  ...m,
  floor: m.floor ?? NO_FLOOR,
  meshctl: m.meshctl ?? { cold: NOT_RUN, second: NOT_RUN, verify: NOT_RUN },
});

function summaryTable(sizes: SizeResult[]): string[] {
  const rows = [
    '| nodes | floor | meshctl cold | above floor | Ansible cold | above floor | Ansible / meshctl above floor | meshctl 2nd | Ansible 2nd | ping floor (warm) | meshctl verify | ping+MTU floor |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const size of sizes) {
    const { nodes } = size;
    const m = filled(size.median);
    const { meshAbove, ansAbove } = aboveFloor(size);
    rows.push(
      `| ${nodes} | ${s(m.floor.total)} | ${s(m.meshctl.cold.wallMs)} | ${signed(meshAbove)} | ${s(m.ansible?.cold.wallMs)} | ${
        ansAbove === undefined ? '-' : signed(ansAbove)
      } | ${ansAbove === undefined ? '-' : ratio(ansAbove, meshAbove)} | ${s(m.meshctl.second.wallMs)} | ${s(m.ansible?.second.wallMs)} | ${s(
        m.floor.pingWarm,
      )} | ${s(m.meshctl.verify.wallMs)}${m.meshctl.verify.failed ? ' (failed)' : ''} | ${s(m.floor.pingMtu)} |`,
    );
  }
  // a failed verify keeps its time, and says what failed under the table
  // one run has its line too when its ping phase needed more than a round (the cause of a slow cold ping phase)
  const perRun = sizes.filter((size) => size.runs.length > 1 || size.runs.some((run) => run.meshctl?.cold.pingRounds)).map(perRunLine);
  const failed = sizes.flatMap(({ nodes, runs }) =>
    runs.flatMap((run, i) => [
      ...(run.meshctl?.verify.failed ? [`- ${nodes} nodes, run ${i + 1}: \`verify\` exited 1, ${run.meshctl.verify.failed}`] : []),
      ...(run.floor?.failed
        ? [`- ${nodes} nodes, run ${i + 1}: the floor's ping rounds had ${run.floor.failed.length} pairs unanswered (their time kept): ${run.floor.failed.slice(0, 5).join(', ')}`]
        : []),
      ...(run.floorError ? [`- ${nodes} nodes, run ${i + 1}: no floor: ${run.floorError.slice(0, 300)}`] : []),
    ]),
  );
  const notes = [...perRun, ...failed];
  return notes.length ? [...rows, '', ...notes] : rows;
}

/** One run's wall time above its own floor, ms: cold `up` of meshctl and of Ansible (NaN / undefined when not run). */
function runAbove(run: RunResult): { mesh: number; ans: number | undefined } {
  const floor = run.floor?.total ?? Number.NaN;
  return { mesh: (run.meshctl?.cold.wallMs ?? Number.NaN) - floor, ans: run.ansible ? run.ansible.cold.wallMs - floor : undefined };
}

/**
 * What each tool's cold `up` adds above the floor, ms: the median over runs of each run's own difference (issue 10:
 * "judge meshctl by what it adds above the floor measured in the same run"). A difference of medians taken per column
 * pairs one run's tool time with another run's floor, and at 4 nodes, where meshctl's part is a few tenths of a
 * second, that alone moved the ratio by half.
 */
export function aboveFloor(size: Pick<SizeResult, 'runs'>): { meshAbove: number; ansAbove: number | undefined } {
  // a run without a floor (or without meshctl's numbers) has no difference: the others' median, as the per-column
  // medians skip a missing field; NaN when no run has one
  const runs = size.runs.map(runAbove);
  const mesh = runs.map((run) => run.mesh).filter(Number.isFinite);
  const ans = runs.map((run) => run.ans).filter((ms): ms is number => ms !== undefined && Number.isFinite(ms));
  return { meshAbove: mesh.length ? mid(mesh) : Number.NaN, ansAbove: ans.length ? mid(ans) : undefined };
}

/** Under the summary: each run's own differences and ratio, so the spread behind a median is on the page. */
function perRunLine(size: SizeResult): string {
  const runs = size.runs.map((run) => {
    const { mesh, ans } = runAbove(run);
    const relayed = run.meshctl?.cold.relayedAtGate;
    const pass = relayed?.length ? ` (meshctl's cold up relayed ${relayed.join(', ')} at the ping gate: a second pass)` : '';
    return `${signed(mesh)} / ${ans === undefined ? '- (no Ansible numbers)' : `${signed(ans)} (${ratio(ans, mesh)})`}${pass}${roundsNote(run.meshctl?.cold.pingRounds)}`;
  });
  return `- ${size.nodes} nodes, above the floor per run (meshctl / Ansible (ratio)): ${runs.join('; ')}`;
}

/** ToolRun.pingRounds in words: ` (cold ping phase: 2 pairs reset before the round, 1 pinged again in 0.4 s: a-1 b-2)` */
function roundsNote(rounds: ToolRun['pingRounds']): string {
  if (!rounds) return '';
  const again = rounds.recheck.length
    ? `, ${rounds.recheck.length} pinged again${rounds.recheckMs === undefined ? '' : ` in ${s(rounds.recheckMs)}`} (${rounds.recheck.join(', ')}${
        rounds.recheckReset.length ? `; ${rounds.recheckReset.length} of them reset first` : ''
      })`
    : '';
  return ` (cold ping phase: ${rounds.reset.length} pair(s) reset before the round${rounds.reset.length ? ` (${rounds.reset.join(', ')})` : ''}${again})`;
}

const ms = (value: number | undefined) => (value === undefined ? '-' : `${Math.round(value)} ms`);

function costTable(sizes: SizeResult[]): string[] {
  const rows = [
    '| nodes | SSH round trips per node (cold / 2nd) | meshctl start to first TCP connect (cold / 2nd) | start to first SSH login (cold / 2nd) | start to first connection ready (cold / 2nd) | CPU at first login (cold / 2nd) | meshctl CPU (cold / 2nd / verify) | meshctl peak RSS (cold) | Ansible CPU (cold) | Ansible peak RSS |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const both = (field: 'firstTcpConnectMs' | 'firstLoginMs' | 'firstConnectionMs' | 'firstLoginCpuMs', m: { cold: ToolRun; second: ToolRun }) =>
    `${ms(m.cold[field])} / ${ms(m.second[field])}`;
  const trips = (run: ToolRun) => (run.roundTripsPerNode ? `${run.roundTripsPerNode.min}-${run.roundTripsPerNode.max}` : '-');
  for (const { nodes, median } of sizes) {
    const m = filled(median);
    rows.push(
      `| ${nodes} | ${trips(m.meshctl.cold)} / ${trips(m.meshctl.second)} | ${both('firstTcpConnectMs', m.meshctl)} | ${both('firstLoginMs', m.meshctl)} | ${both('firstConnectionMs', m.meshctl)} | ${both('firstLoginCpuMs', m.meshctl)} | ${s(m.meshctl.cold.cpuMs)} / ${s(m.meshctl.second.cpuMs)} / ${s(
        m.meshctl.verify.cpuMs,
      )} | ${mb(m.meshctl.cold.rssKiB)} | ${s(m.ansible?.cold.cpuMs)} | ${mb(m.ansible?.cold.rssKiB)} |`,
    );
  }
  rows.push(
    '',
    "From meshctl's start (the process's, before node loads anything) to the first node's TCP connect is meshctl's part " +
      "alone (node's start, loading, the inventory); from there to the first login the key exchange and the login wait " +
      "on the node's sshd as well; the connection is ready when `up`'s first command proved root. CPU: meshctl's own " +
      '(user + system) when the first login was done, which the load on the machine does not stretch as it does wall time.',
  );
  return rows;
}

/** Phase rows: [label, floor field, meshctl phase id, Ansible play name]. */
const PHASES: [string, Exclude<keyof Floor, 'failed'> | undefined, string | undefined, string | undefined][] = [
  ['connect (SSH)', undefined, 'connect', undefined],
  ['facts', 'facts', 'facts', undefined],
  ['baseline checks', undefined, 'baseline', undefined],
  ['install', 'install', 'install', 'install'],
  ['keys', 'keys', 'keys', 'keys'],
  ['config (files, sysctl, daemon-reload)', 'config', 'config', 'config'],
  ['enable (wg-quick, wireguard-go)', 'enable', 'enable', 'enable'],
  ['ping matrix', 'ping', 'verify', 'ping'],
];

function phaseTable(size: SizeResult): string[] {
  const m = filled(size.median);
  const rows = [
    `| phase, ${size.nodes} nodes | floor | meshctl | above floor | Ansible | meshctl 2nd | Ansible 2nd |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const [label, floorKey, meshId, ansName] of PHASES) {
    const floor = floorKey ? m.floor[floorKey] : 0;
    const mesh = meshId ? m.meshctl.cold.phasesMs?.[meshId] : undefined;
    rows.push(
      `| ${label} | ${floorKey ? s(floor) : '-'} | ${s(mesh)} | ${mesh === undefined ? '-' : signed(mesh - floor)} | ${s(
        ansName ? m.ansible?.cold.phasesMs?.[ansName] : undefined,
      )} | ${s(meshId ? m.meshctl.second.phasesMs?.[meshId] : undefined)} | ${s(ansName ? m.ansible?.second.phasesMs?.[ansName] : undefined)} |`,
    );
  }
  const inPhases = Object.values(m.meshctl.cold.phasesMs ?? {}).reduce((a, b) => a + b, 0);
  rows.push(
    `| rest of the process (start, lock, exit) | - | ${s(m.meshctl.cold.wallMs - inPhases)} | ${signed(m.meshctl.cold.wallMs - inPhases)} | - | ${s(
      m.meshctl.second.wallMs - Object.values(m.meshctl.second.phasesMs ?? {}).reduce((a, b) => a + b, 0),
    )} | - |`,
  );
  rows.push(
    `| **total** (above floor: the runs' own differences, as in the summary) | ${s(m.floor.total)} | ${s(m.meshctl.cold.wallMs)} | ${signed(aboveFloor(size).meshAbove)} | ${s(m.ansible?.cold.wallMs)} | ${s(
      m.meshctl.second.wallMs,
    )} | ${s(m.ansible?.second.wallMs)} |`,
  );
  return rows;
}

/** Everything from this line on in docs/bench.md is hand-written notes, kept when the page is generated again. */
export const NOTES_MARK = '<!-- notes: written by hand, kept by npm run bench -->';

/** The generated page followed by the notes of the page it replaces (`previous`), when that had any. */
export function pageWithNotes(results: BenchResults, previous: string | undefined): string {
  const at = previous?.indexOf(NOTES_MARK) ?? -1;
  return at < 0 ? renderMarkdown(results) : `${renderMarkdown(results)}\n${previous!.slice(at)}`;
}

/** docs/bench.md */
export function renderMarkdown(results: BenchResults): string {
  const { machine } = results;
  // sizes merged from separate invocations can have different run counts: say each one's
  const counts = results.sizes.map((size) => size.runs.length);
  const plural = (n: number) => `${n} run${n === 1 ? '' : 's'}`;
  const runsText = counts.every((n) => n === counts[0])
    ? `Median of ${plural(counts[0] ?? 0)} per size`
    : `Median of the runs of each size (${results.sizes.map((size) => `${size.nodes} nodes: ${plural(size.runs.length)}`).join(', ')})`;
  const loads = results.sizes.flatMap((size) => size.runs.map((r) => r.load));
  const loadRange = loads.length
    ? `load average ${Math.min(...loads.map((l) => l.start)).toFixed(1)} to ${Math.max(...loads.flatMap((l) => [l.start, l.end])).toFixed(1)}, up to ${Math.max(
        ...loads.map((l) => l.otherContainers),
      )} other containers running when a size started`
    : '';
  return [
    '# Benchmark: meshctl, the floor and Ansible',
    '',
    `Generated by \`${results.command}\` (scripts/bench/run.ts) on ${results.date.slice(0, 16).replace('T', ' ')} UTC; the raw numbers of every run are in [bench.json](bench.json).`,
    `Regenerate this page from that file alone with \`npm run bench -- --table-only\`.`,
    '',
    `Machine: ${machine.cpu}, ${machine.cores} cores, Linux ${machine.kernel}, node ${machine.node}${machine.ansible ? `, ${machine.ansible}` : ''}.`,
    `${runsText}; ${loadRange}.`,
    ...(results.start
      ? [`Process start (median of 10): \`meshctl --version\` ${results.start.versionMs} ms, a bare \`node -e 0\` ${results.start.nodeMs} ms.`]
      : []),
    ...(results.start?.dropped?.length
      ? [
          `This machine's environment sets ${results.start.dropped.map((v) => `\`${v}\``).join(', ')}, with which node parses a CA bundle at start (a bare \`node -e 0\` ${results.start.nodeWithDroppedMs} ms); meshctl opens no TLS connection and an operator's shell does not normally set it, so every timed process runs without it.`,
        ]
      : []),
    '',
    'Each size is an inventory from scripts/bench/inventory.ts: two NAT sites whose nodes all have a UDP port-forward,',
    'and public nodes (a quarter). Each tool gets fresh lab nodes (Debian 12 containers on this machine, all sharing its',
    'cores). **floor**: the same phases with no SSH and no orchestrator: meshctl\'s own scripts (its facts probe, the',
    "install/keys/config/enable scripts of the cold run's plan, its ping rounds) run on all nodes at once through",
    "nsenter. **Ansible**: scripts/bench/ansible/mesh.yml (forks = hosts, pipelining, ControlPersist, no fact",
    'gathering), through the same SSH path from the lab\'s operator namespace; its nodes get python3 before the clock',
    'starts. Wall times include process start. meshctl\'s ping phase pings one side of each pair first after a change',
    '(so does the floor); Ansible pings all pairs at once.',
    ...(results.controlPersistS
      ? [
          '',
          `**meshctl** runs its cold \`up\`, second \`up\` and \`verify\` with \`--control-persist ${results.controlPersistS}\`, as Ansible's runs have`,
          "ControlPersist: the second `up` and `verify` reuse the cold run's SSH connections, held by meshctl's background",
          `master, whose own CPU is not in meshctl's CPU columns (its CPU over the cold and second \`up\` and \`verify\` together,`,
          `median of the bench's runs: ${masterCpu(results.sizes)}).`,
        ]
      : []),
    '',
    '## Summary',
    '',
    'Each "above floor" is the median of the runs\' own differences (a run\'s tool time minus the floor measured in that run); the other columns are medians per column.',
    '',
    ...summaryTable(results.sizes),
    '',
    ...costTable(results.sizes),
    '',
    '## By phase (cold run)',
    '',
    ...results.sizes.flatMap((size) => [...phaseTable(size), '']),
  ].join('\n');
}
