/**
 * The one run loop, for applying and for dry runs alike (the backend decides: ./backend.ts). Per phase:
 * plan each step on every node from the values earlier steps provided, run (or record) the actions with every host
 * in parallel (./scheduler.ts), collect the values they provide, judge the phase's checks, then the gate.
 * Per-node failures are values on that node (its later steps are skipped and its checks fail); only a gate stops
 * the run, so every node's evidence is shown. Cancellation is checked after every phase and every gate.
 * The view only draws the events this loop emits.
 */
import { setMaxListeners } from 'node:events';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { Matrix } from '../checks/ping-matrix.js';
import { firstByName, type Inventory, type Node } from '../inventory/types.js';
import { checkDeadlineMs, type Connection, type ExecResult, type RunOptions } from '../transport/types.js';
import { onForcedExit } from '../interrupt.js';
import { machineBoot } from './lock.js';
import type { Backend } from './backend.js';
import { describeAction, showStandIns, takesEffect, type Plan, type PlannedAction, type PlannedNode } from './plan.js';
import { checkNamed, stepNamed } from './registry.js';
import { forEachHost } from './scheduler.js';
import { sharedText } from './ping.js';
import { redactDeep, redactSecrets } from '../remote/redact.js';
import { CONFIRMING_CHECK, disarmScript, settleLeftovers, settleRollbacks, utcClock, type RollbackOptions } from './revert.js';
import type {
  ActionResult,
  Change,
  CheckDefinition,
  CheckResult,
  EngineEvent,
  MeshStep,
  NodePhaseReport,
  NodeStep,
  NodeValues,
  PhaseReport,
  PhaseSpec,
  Playbook,
  ValueName,
} from './types.js';

export interface RunContext {
  inventory: Inventory;
  playbook: Playbook;
  /** one open connection per node, by node name */
  connections: ReadonlyMap<string, Connection>;
  backend: Backend;
  signal: AbortSignal;
  /** hosts worked on at once (../engine/scheduler.ts DEFAULT_FORKS) */
  forks?: number;
  /** where step and check names are looked up (default: ./registry.ts; tests swap single steps) */
  registry?: Registry;
  /** a new, separate connection (the ssh-still-reachable check) */
  reconnect: (node: Node) => Promise<Connection>;
  /** what the view draws; called synchronously, must not throw */
  onEvent?: (event: EngineEvent) => void;
  /** shows a phase's report and answers whether to go on (a STOP report always stops, whatever it answers) */
  /**
   * Asked after each phase: go on? `confirm` is given after a confirming phase whose checks passed (its armed nodes
   * not yet disarmed): the change is confirmed only once the gate says go on, so "no" (or Ctrl-C) at that gate
   * reverts it as at any other gate. A gate that asks calls `confirm` after a yes, one that does not ask may call it
   * before it shows the report (then the confirmation is in it); the runner calls it after a yes otherwise. Once
   * called, `report` holds each node's `rollback` check, and its verdict is STOP when one failed (the window passed).
   */
  gate: (report: PhaseReport, isLast: boolean, confirm?: () => Promise<void>) => Promise<boolean>;
  /** arm a revert on each node before its change, disarmed once a confirming phase passed (./revert.ts) */
  rollback?: RollbackOptions;
  /**
   * In a phase whose checks include CONFIRMING_CHECK (`confirms`, never in a dry run), after the checks and before
   * this run's armed nodes are settled: confirms what earlier runs left unconfirmed (./revert.ts PendingRollbacks),
   * adding `rollback` checks to `reports` (a failed one STOPs the phase, so this run's changes are reverted, not
   * confirmed). `runFresh` runs a script over a NEW SSH login (runOverNewLogin), within its `timeoutMs`.
   */
  confirmEarlier?: (
    reports: NodePhaseReport[],
    confirms: boolean,
    runFresh: (node: string, script: string, timeoutMs: number) => Promise<ExecResult>,
  ) => Promise<void>;
  /** ms to wait after Ctrl-C for armed step scripts still running (default INTERRUPT_DRAIN_MS; tests shorten it) */
  interruptDrainMs?: number;
}

/**
 * How long, after the first Ctrl-C, the run waits for the changing step scripts still running on the nodes (the
 * install: a dpkg killed half-way leaves the node's packages broken, "dpkg was interrupted", a new user's finding;
 * and the armed ones that change a node's WireGuard config or interface, ./revert.ts withRevertArmed), ms. Such a script is not stopped at
 * Ctrl-C: it ends by itself (`wg-quick` and `systemctl restart` take seconds; the enable step's own deadline is the
 * transport's 60 s) and only then does the run revert the node, so the revert never races a script still changing
 * the node (killed half-way, a script can leave a `systemctl` job running that the revert's restart would race).
 * 30 s: twice the slowest wireguard-go restart seen on a loaded 2-core lab host (15 s, test/lab/rollback.test.ts), and
 * well inside the default 120 s rollback window. A script still running then is stopped as any other on
 * Ctrl-C (TERM, then KILL: the transport's run() returns only once its processes are gone) before the revert runs.
 * A second Ctrl-C ends meshctl at once (../interrupt.ts).
 */
export const INTERRUPT_DRAIN_MS = 30_000;

/** Name lookup of steps and checks (own properties only: a playbook name is never a prototype member). */
export interface Registry {
  step(name: string): NodeStep | MeshStep | undefined;
  check(name: string): CheckDefinition | undefined;
}

const defaultRegistry: Registry = { step: stepNamed, check: checkNamed };

export interface RunResult {
  phases: PhaseReport[];
  /** what was applied (or, in a dry run, would be), in order */
  plan: Plan;
  /** the phase whose gate stopped the run */
  stoppedAt?: string;
  /**
   * Ctrl-C (the signal) ended the run: remote work in flight was stopped, except the arming steps' scripts, which
   * were waited for (INTERRUPT_DRAIN_MS); the nodes this run changed were then reverted (`rollbackNotes`)
   */
  interrupted: boolean;
  matrix?: Matrix;
  /** nodes whose change was never confirmed at the end of the run: rolled back now, or by themselves (./revert.ts) */
  rollbackNotes?: string[];
}

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * The state of one run: values per node, the first error per node, the plan so far.
 * The mesh maps steps and checks get are built once and shared, not once per node (issue 10: a map of N nodes built
 * for each of N nodes made every phase O(N^2) in the control process, 1e6 entries per step at 1,000 nodes).
 */
class RunState {
  readonly values = new Map<string, Partial<NodeValues>>();
  readonly errors = new Map<string, string>();
  /** nodes whose public key exists only after apply (dry run): their stand-in keys are shown as such */
  readonly standIns: string[] = [];
  changedSoFar = false;
  matrix?: Matrix;
  /** nodes with a revert armed by this run and not yet confirmed or reverted */
  readonly armed = new Set<string>();
  /**
   * per armed node, when its last arming step's script ended (local Unix ms): the node's timer was (re)armed before
   * then, so it fires by this plus the rollback deadline at the latest
   */
  readonly armedAt = new Map<string, number>();
  /** aborted INTERRUPT_DRAIN_MS after Ctrl-C: the signal of armed step scripts (see INTERRUPT_DRAIN_MS) */
  readonly drain = new AbortController();
  /** mesh(needs) by needs: dropped when a node is given a value one of those needs names (see provide) */
  private readonly meshes = new Map<string, { needs: readonly ValueName[]; mesh: Map<string, unknown> }>();
  /** liveMesh(needs) by needs, valid while `version` is unchanged (any value given or node failed bumps it) */
  private readonly liveMeshes = new Map<string, { version: number; mesh?: Map<string, unknown>; error?: unknown }>();
  private version = 0;

  constructor(readonly ctx: RunContext) {
    for (const node of ctx.inventory.nodes) this.values.set(node.name, {});
    // every armed node's script in flight listens on it (as on ../interrupt.ts's signal): no leak warning past 10 nodes
    setMaxListeners(0, this.drain.signal);
  }

  live(): Node[] {
    return this.ctx.inventory.nodes.filter((n) => !this.errors.has(n.name));
  }

  /** The declared values of a node; throws naming the first missing one (a step on this node failed before). */
  pick<N extends ValueName>(node: string, needs: readonly N[]): Pick<NodeValues, N> {
    const all = this.values.get(node)!;
    for (const need of needs) if (all[need] === undefined) throw new Error(`"${need}" is not known for ${node}`);
    return all as Pick<NodeValues, N>;
  }

  /** Gives a node values (a step's outputs); the only way values change, so the caches below stay right. */
  provide(node: string, provided: Partial<NodeValues>): void {
    Object.assign(this.values.get(node)!, provided);
    this.version++;
    const names = Object.keys(provided);
    for (const [key, entry] of this.meshes) if (entry.needs.some((need) => names.includes(need))) this.meshes.delete(key);
  }

  /**
   * The declared values of every node that has them all (failed nodes drop out of the mesh), built once per set of
   * needs and shared by every node's step (read-only: a step that wants more copies it, as ./limit.ts does). The
   * values are the nodes' own objects, as before, so later values show through.
   */
  mesh<N extends ValueName>(needs: readonly N[]): Map<string, Pick<NodeValues, N>> {
    const key = needs.join(',');
    const cached = this.meshes.get(key);
    if (cached) return cached.mesh as Map<string, Pick<NodeValues, N>>;
    const out = new Map<string, Pick<NodeValues, N>>();
    for (const [name, all] of this.values) if (needs.every((n) => all[n] !== undefined)) out.set(name, all as Pick<NodeValues, N>);
    this.meshes.set(key, { needs: [...needs], mesh: out });
    return out;
  }

  /**
   * What checks judge against: every live node's values (throws as `pick` when a live node lacks one), built once
   * per set of needs while nothing changes (a phase's checks all run after its steps).
   */
  liveMesh<N extends ValueName>(needs: readonly N[]): Map<string, Pick<NodeValues, N>> {
    const key = needs.join(',');
    let entry = this.liveMeshes.get(key);
    if (!entry || entry.version !== this.version) {
      entry = { version: this.version };
      try {
        entry.mesh = new Map(this.live().map((n) => [n.name, this.pick(n.name, needs)]));
      } catch (error) {
        entry.error = error;
      }
      this.liveMeshes.set(key, entry);
    }
    if (entry.error !== undefined) throw entry.error;
    return entry.mesh as Map<string, Pick<NodeValues, N>>;
  }

  fail(node: string, step: string, error: unknown): void {
    if (!this.errors.has(node)) {
      this.errors.set(node, `${step}: ${errorMessage(error)}`);
      this.version++;
    }
  }

  /** Text shown for a plan: a stand-in key becomes `<new key of NODE>`. */
  show<T>(value: T): T {
    return this.standIns.length ? (JSON.parse(showStandIns(JSON.stringify(value), this.standIns)) as T) : value;
  }
}

interface NodeStepOutcome {
  action?: PlannedAction;
  warnings: string[];
}

/**
 * The most lines of a file's diff a plan keeps (the gate report of a dry run and `up --json` / `plan --json` show
 * them). Issue 10: a new file's diff is every line of it, and a cold node's wg-quick file at 1,000 nodes has ~7,000
 * lines, so the plan held N configs' worth of diff lines (~500 MB at 1,000 nodes, each line an object of its own)
 * beside the scripts that carry the same text. A diff of up to this many lines (a cold config of ~140 peers) is
 * kept whole, as before; a longer one keeps its first lines and a last line that says how many more there were.
 */
export const PLAN_DIFF_LINES = 1000;

/**
 * The change with its diff cut to PLAN_DIFF_LINES (a copy; a shorter diff leaves the change as it is). The kept lines
 * are held deflated, read back by an enumerable getter (a fresh array each time, as the plan's long scripts): as
 * string objects they were ~60 MB at 1,000 nodes (1,000 lines a node, held for the run; issue 10).
 */
function boundedDiff(change: Change): Change {
  if (change.kind !== 'write-file' || !change.diff || change.diff.length <= PLAN_DIFF_LINES) return change;
  const more = change.diff.length - PLAN_DIFF_LINES + 1;
  const kept = [
    ...change.diff.slice(0, PLAN_DIFF_LINES - 1),
    `  ... ${more} more diff lines not kept (${change.diff.length} in all; the plan keeps ${PLAN_DIFF_LINES})`,
  ].join('\n');
  const packed = deflateRawSync(kept, { level: 1 });
  const cut = { ...change };
  // the same key, so the same place in the change's JSON
  Object.defineProperty(cut, 'diff', {
    get: () => inflateRawSync(packed).toString('utf8').split('\n'),
    enumerable: true,
    configurable: true,
  });
  return cut;
}

async function runNodeStep(state: RunState, name: string, step: NodeStep, node: Node): Promise<NodeStepOutcome> {
  const { ctx } = state;
  const input = {
    node,
    inventory: ctx.inventory,
    values: state.pick(node.name, step.needs),
    mesh: state.mesh(step.needs),
    changedSoFar: state.changedSoFar,
    ...(ctx.rollback && !ctx.backend.recording ? { rollback: ctx.rollback } : {}),
  };
  const planned = step.plan(input);
  const action = planned.action;
  // cut at once: every node's plan is made before any runs (forks), so a whole diff per node was held at once
  if (action) action.changes = action.changes.map(boundedDiff);
  // armed before it runs: a step that fails half-way may have changed the node after arming
  const arms = Boolean(input.rollback && action?.changes.some((c) => c.kind === 'arm-rollback'));
  if (arms) state.armed.add(node.name);
  let result: ActionResult | undefined;
  try {
    // a changing script is not stopped by Ctrl-C: waited for (bounded: INTERRUPT_DRAIN_MS), an arming one then
    // reverted; a read (facts, pings) is stopped at once
    result = action
      ? await ctx.backend.run(
          ctx.connections.get(node.name)!,
          action,
          step.effect,
          step.effect === 'change' ? state.drain.signal : ctx.signal,
        )
      : undefined;
  } finally {
    if (arms) state.armedAt.set(node.name, Date.now());
  }
  const provided = step.outputs(input, action, result);
  state.provide(node.name, provided);
  const publicKey = (provided as Partial<NodeValues>).publicKey;
  if (publicKey && !publicKey.known) state.standIns.push(node.name);
  const warnings = planned.warnings ?? [];
  if (!action || step.effect !== 'change') return { warnings };
  const shown = state.show(action);
  return {
    action: plannedAction({ step: name, changes: shown.changes, summary: describeAction(shown) }, shown.script, action.timeoutMs),
    warnings,
  };
}

/**
 * Scripts at least this long (bytes) are kept deflated in the plan and inflated when read. Issue 10: the config
 * step's script carries the node's whole wg-quick file (~160 kB at 1,000 nodes), and the plan keeps every node's
 * script for `up --json` / `plan --json` (165 MB at 1,000 nodes; ~45 MB deflated: the keys are the part that does
 * not compress). A small mesh's scripts stay plain strings.
 */
export const PLAN_SCRIPT_PACKED_AT = 16 * 1024;

/**
 * A plan's action, the same fields in the same order as always; a long script is an enumerable getter over its
 * deflated bytes, so JSON.stringify, src/ui/json-text.ts and every reader see the same string (a copy each time).
 */
function plannedAction(head: Omit<PlannedAction, 'script' | 'timeoutMs'>, script: string, timeoutMs?: number): PlannedAction {
  const action = { ...head } as PlannedAction;
  if (script.length < PLAN_SCRIPT_PACKED_AT) action.script = script;
  else {
    const packed = deflateRawSync(script, { level: 1 });
    Object.defineProperty(action, 'script', { get: () => inflateRawSync(packed).toString('utf8'), enumerable: true, configurable: true });
  }
  if (timeoutMs) action.timeoutMs = timeoutMs;
  return action;
}

async function runMeshStep(state: RunState, name: string, step: MeshStep): Promise<void> {
  const { ctx } = state;
  const nodes = state
    .live()
    .map((node) => ({ node, connection: ctx.connections.get(node.name)!, values: state.pick(node.name, step.needs) }));
  try {
    const output = await step.run({ inventory: ctx.inventory, nodes, changedSoFar: state.changedSoFar, signal: ctx.signal });
    for (const [node, values] of output.values) state.provide(node, values);
    for (const [node, error] of output.errors) state.fail(node, name, error);
    state.matrix = output.matrix ?? state.matrix;
  } catch (error) {
    for (const node of nodes) state.fail(node.node.name, name, error);
  }
}

async function judge(state: RunState, checks: string[], node: Node): Promise<CheckResult[]> {
  const error = state.errors.get(node.name);
  if (error) return [{ id: 'step', status: 'fail', message: error }];
  return Promise.all(
    checks.map(async (id) => {
      const definition = (state.ctx.registry ?? defaultRegistry).check(id)!;
      try {
        return await definition.evaluate({
          node,
          inventory: state.ctx.inventory,
          values: state.pick(node.name, definition.needs),
          reconnect: state.ctx.reconnect,
          mesh: state.liveMesh(definition.needs),
          changedSoFar: state.changedSoFar,
        });
      } catch (e) {
        return { id, status: 'fail', message: errorMessage(e) } satisfies CheckResult;
      }
    }),
  );
}

/** Runs one node step on every live node (at most `forks` at once) and records each node's action or failure. */
async function runStepOnNodes(
  state: RunState,
  phase: PhaseSpec,
  name: string,
  step: NodeStep,
  planned: Map<string, PlannedNode>,
): Promise<void> {
  const { ctx } = state;
  const live = state.live();
  const settled = await forEachHost(
    live,
    async (node) => {
      ctx.onEvent?.({ type: 'step-start', phase: phase.id, step: name, node: node.name });
      return runNodeStep(state, name, step, node);
    },
    { forks: ctx.forks, signal: ctx.signal },
  );
  settled.forEach((outcome, i) => {
    const node = live[i]!;
    const entry = planned.get(node.name)!;
    if (outcome.ok) {
      if (outcome.value.action) entry.actions.push(outcome.value.action);
      entry.warnings.push(...outcome.value.warnings);
    } else state.fail(node.name, name, outcome.error);
    ctx.onEvent?.({
      type: 'step-done',
      phase: phase.id,
      step: name,
      node: node.name,
      changes: outcome.ok && outcome.value.action ? [outcome.value.action.summary] : [],
      warnings: outcome.ok ? outcome.value.warnings : [],
      ...(outcome.ok ? {} : { error: state.errors.get(node.name) }),
    });
  });
}

/** A node's part of the gate report: what was done, and the checks (a dry run's planned phase judges nothing). */
async function reportNode(
  state: RunState,
  phase: PhaseSpec,
  node: Node,
  entry: PlannedNode,
  onlyPlanned: boolean,
  known: Set<string>,
  shared: (text: string) => string,
): Promise<NodePhaseReport> {
  const error = state.errors.get(node.name);
  const stepFailure: CheckResult[] = error ? [{ id: 'step', status: 'fail', message: error }] : [];
  // node content in messages, evidence and errors: every key-shaped value but the run's public keys (`known`) is redacted
  const checks = redactDeep(onlyPlanned ? stepFailure : await judge(state, phase.checks, node), known);
  // evidence lines are mostly the same texts on every node (each node's route to peer P reads alike): one string
  // each for the phase's reports (issue 10: ~1e6 evidence lines at 1,000 nodes, kept in the report to its end)
  for (const check of checks) if (check.evidence) check.evidence = check.evidence.map(shared);
  const diff = state.ctx.backend.recording
    ? entry.actions.flatMap((a) => a.changes.flatMap((c) => (c.kind === 'write-file' && c.diff ? c.diff : [])))
    : [];
  return {
    node: node.name,
    changes: entry.actions.map((a) => a.summary),
    ...(entry.warnings.length ? { warnings: entry.warnings } : {}),
    ...(diff.length ? { diff } : {}),
    checks,
    ...(error ? { error: redactSecrets(error, known) } : {}),
  };
}

/** The public keys of this run (../remote/redact.ts shows these, redacts any other key-shaped value). */
function knownPublicKeysOfRun(state: RunState): Set<string> {
  const known = new Set<string>();
  for (const values of state.values.values()) {
    const facts = values.facts;
    const keys = [values.publicKey?.key, facts?.keys.publicKey, facts?.interfacePublicKey, ...(facts?.peers ?? []).map((p) => p.publicKey)];
    for (const key of keys) if (key) known.add(key);
  }
  return known;
}

/** What runPhase returns: the phase's report and plan, and for a confirming phase that passed, its confirmation. */
interface PhaseOutcome {
  report: PhaseReport;
  planned: PlannedNode[];
  /** disarms the phase's armed nodes (see RunContext.gate); runs once however often it is called */
  confirm?: () => Promise<void>;
  /** the phase's disarms held ahead, unused: they end, running nothing (a gate said no, Ctrl-C) */
  drop: () => void;
}

async function runPhase(state: RunState, phase: PhaseSpec): Promise<PhaseOutcome> {
  const { ctx } = state;
  const started = Date.now();
  const nodes = ctx.inventory.nodes;
  const planned = new Map<string, PlannedNode>(nodes.map((n) => [n.name, { node: n.name, actions: [], warnings: [] }]));
  ctx.onEvent?.({ type: 'phase-start', phase, nodes: state.live().map((n) => n.name) });
  // a dry run neither changes nodes nor probes a mesh that may not exist: such a phase is only planned
  let onlyPlanned = false;
  for (const name of phase.steps) {
    // after Ctrl-C nothing new starts: the steps in flight were waited for (runStepOnNodes)
    if (ctx.signal.aborted) break;
    const step = (ctx.registry ?? defaultRegistry).step(name)!;
    if (step.effect !== 'read' && ctx.backend.recording) onlyPlanned = true;
    if (step.scope === 'node') await runStepOnNodes(state, phase, name, step, planned);
    else if (!ctx.backend.recording || step.effect === 'read') await runMeshStep(state, name, step);
  }
  if ([...planned.values()].some((p) => p.actions.some((a) => a.changes.some(takesEffect)))) state.changedSoFar = true;
  // the run's public keys, once per phase (every node's facts list its N-1 peers: per node this was O(N^2))
  const known = knownPublicKeysOfRun(state);
  const shared = sharedText();
  const confirms = phase.checks.includes(CONFIRMING_CHECK);
  // issue 10: the disarm's channels opened while the confirming checks (a fresh login per node) run
  const disarms = ctx.rollback && confirms && !ctx.backend.recording && !ctx.signal.aborted ? openDisarms(state, ctx.rollback) : undefined;
  let reports: NodePhaseReport[];
  let settle: (() => Promise<void>) | undefined;
  try {
    // after Ctrl-C no checks (their remote work, fresh logins included): the run goes to its reverts
    const judged = !onlyPlanned && !ctx.signal.aborted;
    reports = await Promise.all(nodes.map((node) => reportNode(state, phase, node, planned.get(node.name)!, !judged, known, shared)));
    // earlier runs' pending reverts first (one that went back STOPs the phase before this run confirms its own), then
    // this run's armed nodes; after Ctrl-C neither: the armed nodes are reverted at the end of the run (runPlaybook)
    const settleNow = async () => {
      if (ctx.signal.aborted) return;
      if (ctx.confirmEarlier)
        await ctx.confirmEarlier(reports, confirms && !ctx.backend.recording, (node, script, timeoutMs) =>
          runOverNewLogin(ctx, node, script, { timeoutMs }),
        );
      if (!ctx.rollback || state.armed.size === 0) return;
      if (confirms && tooLateToConfirm(state, ctx.rollback, reports)) return;
      await settleRollbacks(rollbackInput(state, ctx.rollback, reports, confirms, disarms));
    };
    // a confirming phase that passed is confirmed once its gate says go on: "no" at that gate reverted nothing and
    // confirmed the change before the question was asked (a new user's finding, stop 25); a failed node is reverted
    // at once, and so is the rest of a phase that stops
    if (confirms && !ctx.backend.recording && !ctx.signal.aborted && !reports.some(failedNode)) settle = settleNow;
    else await settleNow();
  } finally {
    // whatever the phase decided (a revert, nothing after Ctrl-C): a channel opened ahead and not used runs nothing
    if (!settle) disarms?.drop();
  }
  const verdict = reports.some(failedNode) ? 'STOP' : onlyPlanned ? 'PLANNED' : 'GO';
  const report: PhaseReport = { id: phase.id, title: phase.title, go: phase.go, verdict, durationMs: Date.now() - started, nodes: reports };
  ctx.onEvent?.({ type: 'phase-done', report });
  let confirmed: Promise<void> | undefined;
  const confirm = settle
    ? () =>
        (confirmed ??= (async () => {
          try {
            await settle!();
          } finally {
            disarms?.drop();
          }
          // a node that went back by itself meanwhile (its window passed while the gate waited): the phase stops
          if (reports.some(failedNode)) report.verdict = 'STOP';
        })())
    : undefined;
  return {
    report,
    planned: [...planned.values()].filter((p) => p.actions.length > 0 || p.warnings.length > 0),
    ...(confirm ? { confirm } : {}),
    drop: () => disarms?.drop(),
  };
}

/**
 * The least time left of a node's rollback window for its disarm to be sent, ms: min(10 s, a quarter of the window).
 * A disarm sent later may meet the node's timer firing (the gate's question waited), and one node gone back while the
 * others are confirmed splits the mesh (a review's finding, stop 25).
 */
const confirmMarginMs = (deadlineS: number) => Math.min(10_000, (deadlineS * 1000) / 4);

/**
 * Whether this run's armed nodes can no longer be confirmed safely (confirmMarginMs): then none is, each gets a failed
 * `rollback` check in `reports` (the phase STOPs, and runPlaybook reverts them all: a mesh change is a set).
 */
function tooLateToConfirm(state: RunState, rollback: RollbackOptions, reports: NodePhaseReport[]): boolean {
  const now = Date.now();
  const due = [...state.armed].map((node) => ({ node, due: (state.armedAt.get(node) ?? now) + rollback.deadlineS * 1000 }));
  const first = due.reduce<{ node: string; due: number } | undefined>((a, b) => (a && a.due <= b.due ? a : b), undefined);
  if (!first || now < first.due - confirmMarginMs(rollback.deadlineS)) return false;
  for (const report of reports)
    if (state.armed.has(report.node))
      report.checks.push({
        id: 'rollback',
        status: 'fail',
        message: `not confirmed: the answer came at ${utcClock(now)}, too near ${first.node}'s rollback (${utcClock(first.due)}) to confirm every node before it; reverted, run up again`,
      });
  return true;
}

/** What the second interrupt says of the run lock it leaves (a dead run's lock is taken over where ./lock.ts can prove it dead). */
const LOCK_LEFT = () =>
  `the run lock stays (${machineBoot() !== undefined ? 'the next up from this machine takes it over' : 'the next up needs --break-lock'})`;

/** What revertNowScript (./revert.ts) prints when it took the node back, or found nothing of the run to take back. */
const REVERT_ANSWER = /^rollback=(reverted|none)$/m;

/**
 * The line a second Ctrl-C prints (onForcedExit) for a run with a revert armed on `armed` (the nodes not confirmed,
 * each once): which of them roll back by themselves and by when their timer starts it (`dueMs`, Unix ms: the end of
 * the node's last arming step plus the deadline, never before the node's own timer, which counts from its arm; the
 * rollback then takes seconds more, a wg-quick restart: Q4 saw nodes back 2-7 s after a printed "by"), which the immediate revert
 * after the first Ctrl-C already took back (`settled`: those are back; one it found unchanged is not named), and
 * those it was handed to the transport for and has not answered yet (`sent`: it goes on on the node if it reached
 * it, the timer is the fallback).
 * Undefined when no node is armed.
 */
export function forcedExitNote(
  armed: readonly string[],
  settled: ReadonlyMap<string, 'reverted' | 'unchanged'>,
  dueMs: (node: string) => number,
  sent: ReadonlySet<string> = new Set(),
): string | undefined {
  const nodes = [...new Set(armed)];
  if (nodes.length === 0) return undefined;
  const unsettled = nodes.filter((node) => !settled.has(node));
  // a revert already sent goes on on the node after meshctl ends (a new user saw every node back 1 s after the first
  // Ctrl-C while the note said each "rolls back by itself"): it is not skipped, its answer is only not awaited. `sent`
  // counts a revert from when it was handed to the transport, which may still be queued or on a dead connection (RV4
  // F3.3): the words claim only that it started, and name the timer for a node it did not reach
  const underway = unsettled.filter((node) => sent.has(node));
  const left = unsettled.filter((node) => !sent.has(node));
  const back = nodes.filter((node) => settled.get(node) === 'reverted');
  const by = (node: string) => `${node} by ${utcClock(dueMs(node))}`;
  const parts = [
    ...(left.length
      ? [
          `the immediate rollback is skipped; ${left.map((node) => `${node} starts rolling back by itself by ${utcClock(dueMs(node))}`).join(', ')}`,
        ]
      : []),
    ...(underway.length
      ? [
          `the rollback started for ${underway.join(', ')} goes on without meshctl where it reached the node (its answer not awaited); where it did not, or does not finish, the node's own timer starts its rollback (${underway.map(by).join(', ')})`,
        ]
      : []),
    ...(back.length
      ? [`${back.join(', ')} ${back.length === 1 ? 'is' : 'are'} back on the previous config and interface state (reverted)`]
      : []),
  ];
  return `second interrupt: ${parts.length ? parts.join('; ') : 'nothing of this run was left to roll back'}; ${LOCK_LEFT()}`;
}

/** A node's phase report that failed: its step threw, or a check failed. */
const failedNode = (n: NodePhaseReport) => Boolean(n.error) || n.checks.some((c) => c.status === 'fail');

/**
 * The disarm's channels of a confirming phase, opened ahead (issue 10). A confirmed node is disarmed only after the
 * whole phase was judged (./revert.ts settleRollbacks: a mesh change is a set), and that disarm's channel open, exec
 * request and login shell (sudo included) were one more round trip to each node after the slowest fresh login. Here
 * each armed node's disarm command is started on the run's connection before the checks, its script held back
 * (RunOptions.sendWhen); the script is sent only when settleRollbacks asks for exactly that disarm on that node, and
 * every other outcome (a revert, a STOP, Ctrl-C, a thrown check) sends nothing: the remote shell reads an empty
 * script and ends, having run nothing. So the node sees the same disarm at the same point of the run, one round trip
 * sooner. A held command that ended before it was asked for (its deadline, a lost connection), or has waited half its
 * deadline (which runs from its open: it could be cut mid-script), is not used: the disarm then runs on a new
 * channel, as before.
 */
interface DisarmsAhead {
  /** the disarm on `node`'s channel opened ahead, when `script` is that disarm and its command still waits; else undefined */
  take(node: string, script: string): Promise<ExecResult> | undefined;
  /** every held command not taken runs nothing and ends */
  drop(): void;
}

/** Opens the disarm's channel ahead on every armed node whose steps in this phase did not fail (see DisarmsAhead). */
function openDisarms(state: RunState, rollback: RollbackOptions): DisarmsAhead {
  const script = disarmScript(rollback.runId);
  // the held command's deadline runs from its channel's open, not from its script's send: one held through most of
  // it (slow checks) could be cut mid-disarm, so past half of it the disarm goes on a new channel with its whole own
  const deadlineMs = checkDeadlineMs(60_000);
  const opened = Date.now();
  const held = new Map<string, { send: (go: boolean) => void; result: Promise<ExecResult>; ended: boolean }>();
  for (const node of state.armed) {
    if (state.errors.has(node)) continue;
    let send: (go: boolean) => void = () => undefined;
    const go = new Promise<boolean>((resolve) => (send = resolve));
    const entry = { send, ended: false, result: Promise.resolve<ExecResult>({ code: 0, stdout: '', stderr: '', durationMs: 0 }) };
    entry.result = state.ctx.connections.get(node)!.run(script, { timeoutMs: deadlineMs, sendWhen: go });
    // ended before it was asked for: never used (take), so its error is nobody's
    entry.result.then(
      () => (entry.ended = true),
      () => (entry.ended = true),
    );
    held.set(node, entry);
  }
  return {
    take(node, asked) {
      const entry = held.get(node);
      if (!entry) return undefined;
      held.delete(node);
      const use = asked === script && !entry.ended && Date.now() - opened < deadlineMs / 2;
      entry.send(use);
      return use ? entry.result : undefined;
    },
    drop() {
      for (const entry of held.values()) entry.send(false);
      held.clear();
    },
  };
}

/** What ./revert.ts needs to settle this run's armed nodes over the run's connections (a disarm held ahead first). */
function rollbackInput(state: RunState, rollback: RollbackOptions, reports: NodePhaseReport[], confirms: boolean, ahead?: DisarmsAhead) {
  const { ctx } = state;
  return {
    runId: rollback.runId,
    deadlineS: rollback.deadlineS,
    armed: state.armed,
    reports,
    confirms,
    loginProven: state.changedSoFar,
    run: (node: string, script: string) =>
      ahead?.take(node, script) ?? ctx.connections.get(node)!.run(script, { timeoutMs: checkDeadlineMs(60_000) }),
    runFresh: (node: string, script: string) => runOverNewLogin(ctx, node, script, { timeoutMs: checkDeadlineMs(30_000) }),
  };
}

/**
 * Runs `script` on `node` over a NEW SSH login (ctx.reconnect), closed afterwards: what confirms a change (a login
 * made after it) for this run's own nodes (a playbook without a confirming phase) and for an earlier run's pending
 * revert (RunContext.confirmEarlier). Rejects when the login fails; `options` as Connection.run's.
 */
export async function runOverNewLogin(
  ctx: Pick<RunContext, 'reconnect' | 'inventory'>,
  node: string,
  script: string,
  options: RunOptions,
): Promise<ExecResult> {
  const fresh = await ctx.reconnect(firstByName(ctx.inventory.nodes, node)!);
  try {
    return await fresh.run(script, options);
  } finally {
    await fresh.close();
  }
}

/** Runs a playbook phase by phase with its gates; never throws for a node's failure (see the module doc). */
export async function runPlaybook(ctx: RunContext): Promise<RunResult> {
  const state = new RunState(ctx);
  const plan: Plan = {
    version: 1,
    inventory: ctx.inventory.source,
    playbook: ctx.playbook.source,
    dryRun: ctx.backend.recording,
    phases: [],
  };
  const phases: PhaseReport[] = [];
  const ended = (extra: Partial<RunResult>): RunResult => ({
    phases,
    plan,
    interrupted: false,
    ...(state.matrix ? { matrix: state.matrix } : {}),
    ...extra,
  });
  const dueMs = (node: string) => (state.armedAt.get(node) ?? Date.now()) + (ctx.rollback?.deadlineS ?? 0) * 1000;
  // the run's last revert (after Ctrl-C: every changed node at once): the nodes it settles, and those it took back or
  // found unchanged so far (a second Ctrl-C meanwhile names only the others as left to their timers)
  const settling = new Set<string>();
  const settledNow = new Map<string, 'reverted' | 'unchanged'>();
  /** the nodes the revert was sent to (its answer may not have come yet) */
  const sentNow = new Set<string>();
  const result = (extra: Partial<RunResult>): Promise<RunResult> | RunResult => {
    if (!ctx.rollback || state.armed.size === 0) return ended(extra);
    const input = rollbackInput(state, ctx.rollback, [], false);
    if (extra.interrupted) for (const node of state.armed) settling.add(node);
    return settleLeftovers({
      ...input,
      run: async (node, script) => {
        sentNow.add(node);
        const answer = await input.run(node, script);
        const said = answer.code === 0 ? REVERT_ANSWER.exec(answer.stdout)?.[1] : undefined;
        if (said) settledNow.set(node, said === 'reverted' ? 'reverted' : 'unchanged');
        return answer;
      },
      interrupted: extra.interrupted ?? false,
      completed: !extra.interrupted && !extra.stoppedAt,
      dueMs,
    }).then((notes) => ended({ ...extra, rollbackNotes: notes }));
  };
  // Ctrl-C: the armed step scripts in flight get INTERRUPT_DRAIN_MS to end by themselves
  let drainTimer: NodeJS.Timeout | undefined;
  const startDrain = () => {
    drainTimer = setTimeout(
      () => state.drain.abort(new Error(`interrupted: still running ${Math.round(drainMs / 1000)} s after Ctrl-C, stopped`)),
      drainMs,
    );
  };
  const drainMs = ctx.interruptDrainMs ?? INTERRUPT_DRAIN_MS;
  if (ctx.signal.aborted) startDrain();
  else ctx.signal.addEventListener('abort', startDrain, { once: true });
  // a second Ctrl-C ends meshctl at once (../interrupt.ts): it says which nodes then roll back by themselves, and when;
  // those the immediate revert already took back are said to be back (a new user's finding: after the revert had run,
  // the note still said every node would roll back by itself)
  const forgetExitNote = onForcedExit(() => forcedExitNote(ctx.rollback ? [...state.armed, ...settling] : [], settledNow, dueMs, sentNow));
  try {
    for (const [index, phase] of ctx.playbook.phases.entries()) {
      if (ctx.signal.aborted) return await result({ interrupted: true });
      const { report, planned, confirm, drop } = await runPhase(state, phase);
      phases.push(report);
      plan.phases.push({ id: phase.id, title: phase.title, nodes: planned });
      if (ctx.signal.aborted) {
        drop();
        return await result({ interrupted: true, stoppedAt: phase.id });
      }
      let goOn: boolean;
      try {
        goOn = await ctx.gate(report, index === ctx.playbook.phases.length - 1, confirm);
      } catch (error) {
        // Ctrl-C at a prompt (inquirer's own, no signal) or a view that failed: what this run changed and did not
        // confirm goes back now, as after Ctrl-C; the error is the caller's (a review's finding: it left the nodes armed)
        drop();
        const settled = await result({ interrupted: true, stoppedAt: phase.id });
        // the view's "interrupted at the gate" (../errors.ts MeshctlError, outcome 'interrupted') is Ctrl-C: the run
        // ends as interrupted, its notes said; anything else is thrown on once the nodes went back
        if ((error as { outcome?: unknown }).outcome === 'interrupted') return settled;
        throw error;
      }
      // a yes confirms the phase's change (a gate that does not know `confirm`); no, or Ctrl-C: reverted (result)
      if (goOn && !ctx.signal.aborted && confirm) await confirm();
      else drop();
      if (ctx.signal.aborted) return await result({ interrupted: true, stoppedAt: phase.id });
      if (report.verdict === 'STOP') goOn = false;
      if (!goOn) return await result({ stoppedAt: phase.id });
    }
    return await result({});
  } finally {
    forgetExitNote();
    ctx.signal.removeEventListener('abort', startDrain);
    clearTimeout(drainTimer);
  }
}
