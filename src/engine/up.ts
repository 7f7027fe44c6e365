/**
 * `meshctl up`: connect to every node (one connection each, in parallel), run the up playbook through the one run
 * loop (./runner.ts) with the executor backend, or the recorder for a dry run, and return a report that holds the
 * plan value. Output and prompting belong to the view; this module decides nothing about terminals.
 */
import type { Matrix } from '../checks/ping-matrix.js';
import type { Inventory } from '../inventory/types.js';
import type { Connection, ConnectTimeline } from '../transport/types.js';
import { executor, recorder } from './backend.js';
import { FirstLockGate, RunLocks } from './lock.js';
import { DEFAULT_FORKS } from './scheduler.js';
import { withPingAhead } from './ping-ahead.js';
import { underlayAhead } from './underlay-ahead.js';
import { RootCheck, sudoOf } from './root-check.js';
import { splitSections } from '../facts/sections.js';
import type { Registry } from './runner.js';
import { countActions, type Plan } from './plan.js';
import { builtinPlaybookPath, forInterface, loadPlaybook } from './playbook.js';
import { registryContract } from './registry.js';
import { runPlaybook } from './runner.js';
import { gatherOutsideKeys, limitInventory, membershipRegistry, outsideGiveUp } from './limit.js';
import { checkNamed, stepNamed, withoutUnderlayProbes } from './registry.js';
import {
  failedDirectPairs,
  keptFallbacks,
  pairsViaUnreached,
  passKept,
  passMayBeMixed,
  pairsBackToDirect,
  withFallbackRelays,
} from './fallback.js';
import { MeshctlError } from '../errors.js';
import { DEFAULT_ROLLBACK_DEADLINE_S, newRunId, PendingRollbacks } from './revert.js';
import type { EngineEvent, PhaseReport } from './types.js';
import { onForcedExit } from '../interrupt.js';

export interface Connector {
  /** one connection per node, all in parallel; every node's failure reported; close() ends them all */
  connectAll(inventory: Inventory): Promise<{ connections: Map<string, Connection>; failures: Map<string, Error>; close(): Promise<void> }>;
  connectOne(node: Inventory['nodes'][number]): Promise<Connection>;
}

/** What the engine needs from the command line; prompting is the view's, connecting the connector's. */
export interface UpOptions {
  signal: AbortSignal;
  /** plan, do not apply: read-only phases run as usual, every later phase is only recorded */
  dryRun?: boolean;
  playbookPath?: string;
  /** hosts at once (scheduler.ts DEFAULT_FORKS) */
  forks?: number;
  /** take over another run's lock (./lock.ts) */
  breakLock?: boolean;
  /**
   * --limit: work on these nodes only (names from ./limit.ts resolveLimit); every other node is read only for its
   * public key, and configs are still rendered from the whole inventory (./limit.ts)
   */
  limit?: readonly string[];
  /** public keys from the local state (../state/state.ts), for nodes outside the limit that do not answer */
  knownPublicKeys?: ReadonlyMap<string, string>;
  /** seconds a node's change may go unconfirmed before it reverts by itself; 0: arm no rollback (./revert.ts) */
  rollbackDeadlineS?: number;
  /** false: the baseline's port-forward probe and NAT discovery are not run, their checks warn (--no-underlay-probes) */
  underlayProbes?: boolean;
  /**
   * What the caller does with the report (the local state, the JSON or summary), run while the run's locks are
   * released and its connections closed (issue 10: those are the last round trips of a run, and the operator waited
   * for them before the report was written). runUp resolves once both are done; an error of this callback is
   * raised after the connections are closed.
   */
  withReport?: (report: UpReport) => Promise<void>;
  /**
   * Asked at a second Ctrl-C (../interrupt.ts onForcedExit: meshctl exits at once, so `withReport` never runs) with
   * what the nodes keep of the run so far, for the local state (RV3 F7: a second Ctrl-C in relay: auto's second pass
   * recorded nothing, although the first pass was kept: pairs it moved back to direct stayed recorded as relayed, a
   * cold up's keys unrecorded). Asked only once a phase of a changing run started; returns a line for stderr or
   * undefined, and must not throw.
   */
  onForcedExit?: (kept: KeptAtForcedExit) => string | undefined;
}

/**
 * What the nodes keep of an `up` cut short by a second Ctrl-C (UpOptions.onForcedExit), as far as the run knows:
 * the public keys it read or produced so far (by node), and the fallback pairs (pairKey strings) of the newest pass
 * the nodes kept (./fallback.ts passKept, judged on the phases run so far: a pass counts as kept once it went past
 * its enable gate, or without a rollback once its enable phase started); none kept: the state's pairs from before.
 */
export interface KeptAtForcedExit {
  publicKeys: Record<string, string>;
  fallbackRelays: string[];
}

/** What `up` shows and what the view needs to draw it. */
export interface UpView {
  onEvent(event: EngineEvent): void;
  /** go on after `report`? `confirm`: see RunContext.gate (./runner.ts) */
  gate(report: PhaseReport, isLast: boolean, confirm?: () => Promise<void>): Promise<boolean>;
}

export interface UpReport {
  inventory: string;
  playbook: string;
  /** planned: a dry run went through every phase (its `changes` are what `up` would change) */
  result: 'converged' | 'planned' | 'stopped' | 'unreachable' | 'interrupted' | 'locked';
  /** the ping phase used the round run ahead in the facts probe (./ping-ahead.ts: nothing changed, all passed) */
  pingAhead?: boolean;
  /**
   * the baseline's underlay probes were started during the facts step (./underlay-ahead.ts: a node without its
   * interface); their SSH channels then count in `channels` under the phase that was running when they opened
   */
  underlayAhead?: boolean;
  /** result 'locked': which node, and who holds its run lock */
  locked?: string;
  /** notes about the run itself (a stale lock taken over) */
  warnings?: string[];
  /** what the run did that asks nothing of the operator (relay: auto: a pair back to direct), printed as `note:` */
  notes?: string[];
  /**
   * the nodes where an earlier run's unconfirmed change was found, still to go back by itself unless this run
   * confirmed it (./revert.ts PendingRollbacks): `plan` counts them as drift (the mesh changes on its own)
   */
  pendingReverts?: string[];
  dryRun: boolean;
  stoppedAt?: string;
  /**
   * actions run on all nodes by this run (0 on a converged mesh); in a dry run, actions planned. With a second pass
   * (relay: auto, `firstPass`), both passes' actions.
   */
  changes: number;
  /** the phases of the run's last pass (the only one, unless relay: auto made a second: `firstPass`) */
  phases: PhaseReport[];
  /** the plan value of the last pass: per phase and node, the typed changes and their scripts */
  plan?: Plan;
  /**
   * relay: auto (./fallback.ts): when the ping gate stopped the first pass on pairs planned direct and `up` ran
   * once more with them relayed, the first pass as it ran: where it stopped, its actions, phases and plan (the cold
   * work of a first `up`: install, keys, config, enable). `phases`, `plan` are then the second pass's.
   */
  firstPass?: { stoppedAt: string; changes: number; phases: PhaseReport[]; plan?: Plan };
  connectFailures: { node: string; error: string }[];
  matrix?: Matrix;
  /**
   * Wall times, ms. `totalMs` and `connectMs`: from `up`'s own start (after node's start, loading and the inventory),
   * so `totalMs` can be smaller than the stages below. `firstConnectionMs`: from the start of the meshctl process (performance.timeOrigin) to the
   * first node's login done (the connections start together: when the connect phase began plus the quickest
   * node's connect time); absent when no node connected. `firstTcpConnectMs` and `firstLoginMs`: from the same
   * start to the first node's TCP connect and to its first authenticated login (before the root probe), when the
   * transport keeps connection timelines. `firstLoginCpuMs`: this process's CPU time (user + system) when the first
   * node's login was done (not wall time: what start-up costs, whatever else runs on the machine).
   */
  timings: {
    totalMs: number;
    connectMs: number;
    firstConnectionMs?: number;
    firstTcpConnectMs?: number;
    firstLoginMs?: number;
    firstLoginCpuMs?: number;
    /** relay: auto: the probe of the fallback pairs' direct paths before the first phase (./fallback.ts), when it ran */
    fallbackProbeMs?: number;
  };
  /** remote commands per node */
  roundTrips: Record<string, number>;
  /** --control-persist: the nodes whose connection the control master lent from an earlier run (no login this run) */
  reusedConnections?: string[];
  /**
   * SSH session channels opened, by phase id then node ('connect': the login's root probe; 'other': outside
   * phases, e.g. the run lock); absent when the transport does not count channels (fakes)
   */
  channels?: Record<string, Record<string, number>>;
  /** per node, the most channels open at once on its connection (the transport caps it below MaxSessions 10) */
  peakChannels?: Record<string, number>;
  /** --limit: the nodes the run worked on (every other node was left as it was) */
  limit?: string[];
  /** public keys the run read or produced, by node (never a dry run's stand-in): for the local state */
  publicKeys?: Record<string, string>;
  /**
   * relay: auto (./fallback.ts): the pairs relayed after a failed direct handshake as the run leaves them (for the
   * local state), those it moved to a relay at the gate, and those whose direct path worked again
   */
  fallbackRelays?: { pairs: string[]; relayedAtGate: string[]; backToDirect: string[] };
}

/**
 * Counts the channels each connection opens per phase (from ConnectionStats.channels), by wrapping the event
 * stream: a phase's count is the difference between its phase-start and phase-done.
 */
class ChannelCounter {
  readonly byPhase: Record<string, Record<string, number>> = {};
  private readonly atStart = new Map<string, number>();
  constructor(private readonly connections: Map<string, Connection>) {
    this.byPhase.connect = this.snapshot((n) => n);
  }
  private snapshot(f: (n: number, node: string) => number): Record<string, number> {
    return Object.fromEntries([...this.connections].map(([node, c]) => [node, f(c.stats.channels ?? 0, node)]));
  }
  onEvent(event: EngineEvent): void {
    if (event.type === 'phase-start') for (const [node, c] of this.connections) this.atStart.set(node, c.stats.channels ?? 0);
    if (event.type === 'phase-done') this.byPhase[event.report.id] = this.snapshot((n, node) => n - (this.atStart.get(node) ?? n));
  }
  /** the report's fields; 'other' = total - the phases - connect */
  report(): Pick<UpReport, 'channels' | 'peakChannels'> {
    if ([...this.connections.values()].some((c) => c.stats.channels === undefined)) return {};
    const counted = (node: string) => Object.values(this.byPhase).reduce((sum, row) => sum + (row[node] ?? 0), 0);
    const other = this.snapshot((n, node) => n - counted(node));
    return {
      channels: { ...this.byPhase, other },
      peakChannels: Object.fromEntries([...this.connections].map(([node, c]) => [node, c.stats.peakChannels ?? 0])),
    };
  }
}

/**
 * --limit: the outside nodes' public keys (read-only from them, else from the local state). Throws MeshctlError
 * (outcome 'stop') naming every node whose key cannot be had: the limited configs could not be rendered.
 */
async function outsideKeysFor(inventory: Inventory, work: Inventory, connector: Connector, options: UpOptions, giveUp?: Promise<unknown>) {
  const inRun = new Set(work.nodes.map((n) => n.name));
  const outside = { ...inventory, nodes: inventory.nodes.filter((n) => !inRun.has(n.name)) };
  // their connections prove root by their first command too (./root-check.ts): a broken sudo is their failure
  const checked: Pick<Connector, 'connectAll'> = {
    async connectAll(nodes) {
      const connected = await connector.connectAll(nodes);
      return { ...connected, connections: new RootCheck(connected.connections, sudoOf(nodes, connected.connections)).connections };
    },
  };
  const found = await gatherOutsideKeys(checked, outside, options.knownPublicKeys ?? new Map(), options.signal, giveUp);
  if (found.missing.length)
    throw new MeshctlError(
      'cannot render the configs of the limited nodes: a peer outside --limit has no known public key; nothing was changed',
      'stop',
      found.missing.map((m) => m.why),
    );
  // Q4 item 6: no pair of the run's nodes through a relay that did not answer (./fallback.ts). RV4 F2.2: a relay
  // that had only not answered when the limited nodes were ready (a far or loaded node) is not taken as dead: such
  // relays of the run's pairs are logged into once more and waited for, and only one that fails to connect counts
  const lateRelays = found.notWaited.filter((n) => pairsViaUnreached(inventory, [n], inRun).length > 0);
  const answered = new Set<string>();
  if (lateRelays.length) {
    const again = await checked.connectAll({ ...outside, nodes: outside.nodes.filter((n) => lateRelays.includes(n.name)) });
    for (const n of lateRelays) if (again.connections.has(n) && !again.failures.has(n)) answered.add(n);
    await again.close();
  }
  const viaDead = pairsViaUnreached(
    inventory,
    found.fromState.filter((n) => !answered.has(n)),
    inRun,
  );
  if (viaDead.length)
    throw new MeshctlError(
      'not started: a pair of the limited nodes is relayed through a node that did not answer; nothing was changed',
      'stop',
      viaDead,
    );
  // finding 8: the nodes not waited for are read together; whether each had answered is not known, so not said
  const warnings = found.fromState.map((n) =>
    found.notWaited.includes(n)
      ? `${n}: its public key was taken from the local state (it had not answered when the limited nodes were ready)`
      : `${n} did not answer: its public key was taken from the local state`,
  );
  // only keys read from the nodes are news for the state; those taken from it are not
  const read = new Map([...found.keys].filter(([n]) => !found.fromState.includes(n)));
  return { keys: found.keys, read, warnings };
}

const warningsOf = (...lists: string[][]) => {
  const warnings = lists.flat();
  return warnings.length ? { warnings } : {};
};

/** ms from process start to the first login done: `startedAt` (performance.now()) plus the quickest connect time. */
function firstConnectionMs(startedAt: number, connections: ReadonlyMap<string, Connection>): number | undefined {
  const times = [...connections.values()].map((c) => c.stats.connectMs);
  return times.length > 0 ? Math.round(startedAt + Math.min(...times)) : undefined;
}

/** The earliest time a connection reached `stage` (ms since process start, ConnectTimeline), if the transport keeps them. */
function firstStage(connections: ReadonlyMap<string, Connection>, stage: keyof ConnectTimeline): number | undefined {
  const times = [...connections.values()].flatMap((c) => (c.stats.timeline?.[stage] !== undefined ? [c.stats.timeline[stage]] : []));
  return times.length > 0 ? Math.round(Math.min(...times)) : undefined;
}

/**
 * The registry with the run lock folded into the facts probe (`gather-facts`): the lock's section runs first, so
 * the facts are read under the lock, and a node whose lock another run holds fails its facts step with the holder's
 * message (the facts gate then stops the run before anything changes). Issue 10: one round trip per node fewer.
 */
function lockingFacts(registry: Registry, locks: RunLocks): Registry {
  return {
    check: (name) => registry.check(name),
    step(name) {
      const step = registry.step(name);
      if (name !== 'gather-facts' || step?.scope !== 'node') return step;
      return {
        ...step,
        plan(input) {
          const planned = step.plan(input);
          const section = planned.action ? locks.sectionFor(input.node.name) : undefined;
          return section && planned.action
            ? { ...planned, action: { ...planned.action, script: `${section}\n${planned.action.script}` } }
            : planned;
        },
        outputs(input, action, result) {
          const refused = result?.ran ? locks.settle(input.node.name, splitSections(result.stdout ?? '')) : undefined;
          if (refused) throw new Error(refused.message);
          return step.outputs(input, action, result);
        },
      };
    },
  };
}

/**
 * The view, shown nothing until the first node's lock is this run's (FirstLockGate): its events are held until then
 * and shown in order; when the lock is not taken the view sees nothing of the run and no gate (the run then reports
 * `locked` or `unreachable`, or throws, exactly as when the first node's lock was taken in a round trip of its own).
 */
function heldUntilLocked(view: UpView, gate: FirstLockGate): UpView {
  let held: EngineEvent[] | undefined = [];
  const show = () => {
    for (const event of held ?? []) view.onEvent(event);
    held = undefined;
  };
  void gate.whenDecided().then((ours) => ours && show());
  return {
    onEvent: (event) => (held ? held.push(event) : view.onEvent(event)),
    async gate(report, isLast, confirm) {
      if (!(await gate.whenDecided())) return false;
      show();
      return view.gate(report, isLast, confirm);
    },
  };
}

/**
 * Runs `up` and reports; throws only for bad input (a playbook that does not load: exit 2 through main).
 * A node that cannot be connected makes the result 'unreachable' before anything runs anywhere.
 * The locks' release and the connections' close run beside `options.withReport` (issue 10); both are done when this
 * resolves or rejects.
 */
export async function runUp(inventory: Inventory, connector: Connector, outerView: UpView, options: UpOptions): Promise<UpReport> {
  const ending: Promise<void>[] = [];
  let report: UpReport;
  try {
    report = await runUpBody(inventory, connector, outerView, options, ending);
  } catch (error) {
    await Promise.allSettled(ending);
    throw error;
  }
  const [delivered] = await Promise.allSettled([options.withReport?.(report), ...ending]);
  if (delivered.status === 'rejected') throw delivered.reason;
  return report;
}

/**
 * runUp's run. `ending` gets the run's last remote work (locks released, then the connections closed), not waited
 * for here on the usual way out: runUp waits for it beside the caller's use of the report.
 */
async function runUpBody(
  inventory: Inventory,
  connector: Connector,
  outerView: UpView,
  options: UpOptions,
  ending: Promise<void>[],
): Promise<UpReport> {
  const started = Date.now();
  const playbookPath = options.playbookPath ?? builtinPlaybookPath('up');
  const playbook = forInterface(loadPlaybook(playbookPath, registryContract), inventory.mesh.interface);
  const limited = options.limit && options.limit.length < inventory.nodes.length ? options.limit : undefined;
  const work = limited ? limitInventory(inventory, limited) : inventory;
  const connectStarted = performance.now();
  // the run's own connections begin beside the outside nodes' key reads (finding 8: an outside node whose key the
  // local state holds is waited for only until a little after them: ./limit.ts outsideGiveUp)
  const connecting = connector.connectAll(work);
  const outside = limited
    ? await outsideKeysFor(inventory, work, connector, options, outsideGiveUp(connecting, connectStarted)).catch(async (error: unknown) => {
        await (await connecting.catch(() => undefined))?.close();
        throw error;
      })
    : { keys: new Map<string, string>(), read: new Map<string, string>(), warnings: [] };
  const learnt = new Map(outside.read);
  // the probes may start during the facts step only where the baseline's probe step follows it (the built-in
  // playbook): the result is judged at the next gate, never later; --no-underlay-probes starts nothing
  const probesFollowFacts =
    options.underlayProbes !== false &&
    playbook.phases[0]?.steps.includes('gather-facts') === true &&
    playbook.phases[1]?.steps.includes('probe-underlay') === true;
  /**
   * The inventory, the part this run works on and the registry, with these pairs relayed after a failure.
   * `around`: wraps the steps' own registry, inside --limit's (which hands every step the whole inventory).
   */
  const planWith = (fallbacks: readonly string[], around: (own: Registry) => Registry = (own) => own) => {
    const whole = withFallbackRelays(inventory, fallbacks);
    const registry = membershipRegistry(
      around({ step: options.underlayProbes === false ? withoutUnderlayProbes : stepNamed, check: checkNamed }),
      { whole, outsideKeys: outside.keys, onPublicKey: (node, key) => learnt.set(node, key) },
    );
    return { whole, work: limited ? limitInventory(whole, limited) : whole, registry };
  };
  const connected = await connecting;
  const { failures, close } = connected;
  // the first command on each node proves root when the connector skipped its own probe (./root-check.ts)
  const rootCheck = new RootCheck(connected.connections, sudoOf(work, connected.connections));
  const { connections } = rootCheck;
  const connectMs = Date.now() - started;
  const first = firstStage(connections, 'readyMs') ?? firstConnectionMs(connectStarted, connections);
  const stages = {
    firstTcpConnectMs: firstStage(connections, 'tcpMs'),
    firstLoginMs: firstStage(connections, 'loginMs'),
    firstLoginCpuMs: firstStage(connections, 'loginCpuMs'),
  };
  const timingsNow = () => ({
    totalMs: Date.now() - started,
    connectMs,
    ...(first !== undefined ? { firstConnectionMs: first } : {}),
    ...Object.fromEntries(Object.entries(stages).filter(([, ms]) => ms !== undefined)),
  });
  const counter = new ChannelCounter(connections);
  /** the locks' release, once started at the end of the run (see runUp) */
  let released: Promise<void> | undefined;
  const base = {
    inventory: inventory.source,
    playbook: playbookPath,
    dryRun: options.dryRun ?? false,
    connectFailures: [...failures].map(([node, e]) => ({ node, error: e.message })),
    ...(limited ? { limit: [...limited] } : {}),
  };
  try {
    if (failures.size > 0) {
      return {
        ...base,
        result: 'unreachable',
        changes: 0,
        phases: [],
        timings: timingsNow(),
        roundTrips: {},
      };
    }
    // a run that changes nodes holds their lock (./lock.ts); plans and dry runs read only and take none. The first
    // node's lock is taken alone; the others' in their facts probe when the playbook starts with it (issue 10: one
    // round trip and one channel fewer per node), else (or before the direct-path probe of relay: auto) at once here
    const earlier = inventory.mesh.fallbackRelays ?? [];
    const locks = options.dryRun ? undefined : new RunLocks(connections, { breakLock: options.breakLock ?? false, signal: options.signal });
    const folded = locks !== undefined && earlier.length === 0 && playbook.phases[0]?.steps[0] === 'gather-facts';
    // the first node's lock in its facts probe too (issue 10), the other nodes' probes held until it is ours
    // (./lock.ts FirstLockGate); only when every node's probe starts at once (a held node must not hold a fork)
    const firstGate =
      locks && folded && (options.forks ?? DEFAULT_FORKS) >= connections.size
        ? new FirstLockGate(connections, locks, options.signal)
        : undefined;
    const view = firstGate ? heldUntilLocked(outerView, firstGate) : outerView;
    /** A node where commands do not run as root: unreachable, as when the login's probe found it (nothing changed). */
    const notRoot = (): UpReport | undefined =>
      rootCheck.failures.size === 0
        ? undefined
        : {
            ...base,
            connectFailures: [...rootCheck.failures].map(([node, e]) => ({ node, error: e.message })),
            result: 'unreachable',
            changes: 0,
            phases: [],
            timings: timingsNow(),
            roundTrips: {},
          };
    /**
     * Ctrl-C before the run was under its lock (the first node's lock not answered yet in its facts probe, or still
     * being taken on its own): an interrupted run that changed nothing, as `run`'s phases say (a facts phase whose
     * probes were stopped) when there is one. Before, runUp rejected with the interrupt's reason: meshctl printed
     * "meshctl: interrupted" with no summary, and recorded nothing.
     */
    const interruptedEarly = (run?: { phases: PhaseReport[]; plan: Plan }): UpReport => ({
      ...base,
      result: 'interrupted',
      changes: 0,
      phases: run?.phases ?? [],
      ...(run ? { plan: run.plan } : {}),
      timings: timingsNow(),
      roundTrips: Object.fromEntries([...connections].map(([name, c]) => [name, c.stats.commands])),
      ...counter.report(),
      ...warningsOf(outside.warnings, locks?.warnings ?? []),
    });
    let refused: Awaited<ReturnType<RunLocks['takeFirst']>>;
    /** unregisters the record at a second Ctrl-C (UpOptions.onForcedExit) */
    let forgetForcedExit: (() => void) | undefined;
    try {
      refused = locks ? ((firstGate ? undefined : await locks.takeFirst()) ?? (folded ? undefined : await locks.takeRest())) : undefined;
    } catch (error) {
      const unreachable = notRoot();
      if (!unreachable && !options.signal.aborted) throw error;
      await locks?.release();
      return unreachable ?? interruptedEarly();
    }
    if (refused) {
      await locks?.release();
      const unreachable = notRoot();
      if (unreachable) return unreachable;
      return { ...base, result: 'locked', locked: refused.message, changes: 0, phases: [], timings: timingsNow(), roundTrips: {} };
    }
    try {
      // relay: auto (./fallback.ts): pairs relayed after an earlier failure go back to direct once their path works
      const probeStarted = Date.now();
      const backToDirect = earlier.length ? await pairsBackToDirect(work, connections, options.signal) : [];
      // the probe's time is outside every phase: said in the notes and the timings, so a run that changed nothing
      // does not leave seconds unexplained (a new user's finding 9)
      const fallbackProbeMs = earlier.length ? Date.now() - probeStarted : undefined;
      const stillRelayed = earlier.filter((p) => !backToDirect.includes(p) && p.split(' ').every((name) => connections.has(name)));
      let fallbacks = earlier.filter((p) => !backToDirect.includes(p));
      let aheadUsed = false;
      let probedAhead = false;
      // an earlier, interrupted run's revert still pending on a node: confirmed at the confirming gate (./revert.ts)
      // a changing run (under the run lock) also removes the records of reverts that fired by themselves
      const pending = new PendingRollbacks({ removeFired: !options.dryRun, ...(locks ? { lockRun: locks.holder.run } : {}) });
      const runConnections = firstGate?.connections ?? connections;
      // what the nodes keep so far, for a second Ctrl-C (UpOptions.onForcedExit, RV3 F7): the pass in flight's pairs
      // and its phases as the events tell them (a phase started and not done reads 'RUNNING'), the first pass once
      // a second one runs
      const enablePhase = playbook.phases.find((p) => p.steps.includes('enable-service'))?.id;
      // --no-rollback arms no revert: a pass cut at its enable gate is then kept, not reverted (RV3 F1)
      const armed = !options.dryRun && options.rollbackDeadlineS !== 0;
      const inFlight = { pairs: [] as readonly string[], phases: [] as { id: string; verdict: string }[] };
      let firstSoFar: { pairs: readonly string[]; kept: boolean } | undefined;
      const keptSoFar = (): KeptAtForcedExit => {
        const now = {
          pairs: inFlight.pairs,
          kept: passKept({ phases: inFlight.phases, stoppedAt: inFlight.phases.at(-1)?.id }, enablePhase, false, armed),
        };
        return {
          publicKeys: Object.fromEntries(learnt),
          fallbackRelays: firstSoFar ? keptFallbacks(earlier, firstSoFar, now) : keptFallbacks(earlier, now),
        };
      };
      forgetForcedExit =
        options.onForcedExit && !options.dryRun
          ? onForcedExit(() => (inFlight.phases.length ? options.onForcedExit!(keptSoFar()) : undefined))
          : undefined;
      const pass = async (fallbackPairs: readonly string[]) => {
        inFlight.pairs = fallbackPairs;
        inFlight.phases = [];
        // issue 10: the baseline's underlay probes, started during the facts step (./underlay-ahead.ts)
        const probesAhead = probesFollowFacts ? underlayAhead(runConnections) : undefined;
        const { work: passWork, registry: planned } = planWith(fallbackPairs, probesAhead?.registry);
        // issue 10: the ping round ahead, in the facts probe (./ping-ahead.ts); a dry run pings nothing
        const ahead = options.dryRun ? undefined : withPingAhead(planned);
        const registry = ahead ?? planned;
        try {
          return await runPass(
            passWork,
            // the lock's section first: a node whose lock another run holds is not read for pending reverts (a
            // concurrent run's live arm is not an earlier run's leftover)
            folded ? lockingFacts(pending.registry(registry), locks) : pending.registry(registry),
            ahead,
            probesAhead?.connections ?? runConnections,
          );
        } finally {
          // whatever ended the pass (a gate's STOP, Ctrl-C): no probe left running on any node
          await probesAhead?.end();
          probedAhead ||= probesAhead?.started() ?? false;
        }
      };
      const runPass = (
        passWork: Inventory,
        registry: Registry,
        ahead: ReturnType<typeof withPingAhead> | undefined,
        passConnections: ReadonlyMap<string, Connection>,
      ) =>
        runPlaybook({
          inventory: passWork,
          registry,
          playbook,
          connections: passConnections,
          backend: options.dryRun ? recorder : executor,
          signal: options.signal,
          ...(options.forks ? { forks: options.forks } : {}),
          reconnect: (node) => connector.connectOne(node),
          onEvent: (event) => {
            if (event.type === 'phase-start') inFlight.phases.push({ id: event.phase.id, verdict: 'RUNNING' });
            // the report itself: a confirm that finds a node gone back sets its verdict to STOP afterwards
            if (event.type === 'phase-done') inFlight.phases.splice(-1, 1, event.report);
            counter.onEvent(event);
            view.onEvent(event);
          },
          gate: async (report, isLast, confirm) => {
            aheadUsed = ahead?.used() ?? false;
            return view.gate(report, isLast, confirm);
          },
          // over a NEW login (the runner's runFresh), never the run's own connection: the change being confirmed was
          // made by an earlier run, after which this run's connection may not have logged in (--control-persist
          // lends an older one); before this run's own nodes are disarmed (./revert.ts PendingRollbacks.confirm)
          confirmEarlier: (reports, confirms, runFresh) => pending.confirm(reports, confirms, runFresh),
          ...(options.dryRun || options.rollbackDeadlineS === 0
            ? {}
            : { rollback: { runId: newRunId(), deadlineS: options.rollbackDeadlineS ?? DEFAULT_ROLLBACK_DEADLINE_S } }),
        });
      let run = await pass(fallbacks);
      if (firstGate && firstGate.ours !== true) {
        // the first node's lock was not taken: nothing ran anywhere else; said as when it was taken alone
        const unreachableFirst = notRoot();
        if (unreachableFirst) return unreachableFirst;
        const lockRefused = locks?.refusal();
        if (lockRefused)
          return { ...base, result: 'locked', locked: lockRefused.message, changes: 0, phases: [], timings: timingsNow(), roundTrips: {} };
        // Ctrl-C before the first node's probe answered its lock: no other node was sent anything
        if (options.signal.aborted) return interruptedEarly(run);
        throw firstGate.firstError ?? new Error(`${firstGate.first}: the run lock was not answered`);
      }
      const unreachable = notRoot();
      if (unreachable && !run.interrupted) return unreachable;
      const lockRefused = locks?.refusal();
      // refused in a facts probe: the facts gate stopped the run before anything changed; said as before, a locked run
      if (lockRefused && !run.interrupted)
        return { ...base, result: 'locked', locked: lockRefused.message, changes: 0, phases: [], timings: timingsNow(), roundTrips: {} };
      // the ping gate said no for pairs planned direct: once more with those pairs relayed (relay: auto)
      const pingPhase = playbook.phases.find((p) => p.steps.includes('ping-matrix'))?.id;
      // an interrupted ping round failed nothing (a new user saw "now relayed" for pairs that never were)
      const failed =
        !options.dryRun &&
        !run.interrupted &&
        !options.signal.aborted &&
        run.stoppedAt !== undefined &&
        run.stoppedAt === pingPhase &&
        run.matrix
          ? failedDirectPairs(planWith(fallbacks).work, run.matrix)
          : [];
      // the first pass's work stays in the report: it changed the nodes as much as the second (a cold up's install,
      // keys, config, enable), and a report of the second alone read as if those never ran
      let firstPass: UpReport['firstPass'];
      // what the nodes kept of each pass (./fallback.ts passKept): a reverted pass's relays are not recorded (R4)
      const first = { pairs: fallbacks, kept: passKept(run, enablePhase, options.dryRun ?? false, armed) };
      let second: { pairs: readonly string[]; kept: boolean } | undefined;
      if (failed.length > 0) {
        firstPass = { stoppedAt: run.stoppedAt!, changes: countActions(run.plan), phases: run.phases, plan: run.plan };
        firstSoFar = first;
        run = await pass([...fallbacks, ...failed]);
        second = { pairs: [...fallbacks, ...failed], kept: passKept(run, enablePhase, options.dryRun ?? false, armed) };
      }
      fallbacks = keptFallbacks(earlier, first, second);
      const mixed = passMayBeMixed(run, enablePhase, options.dryRun ?? false, armed);
      const relayedNow = second?.kept ? failed : [];
      const movedBack = second?.kept || first.kept ? backToDirect : [];
      const fallbackNotes = [
        ...relayedNow.map(
          (p) =>
            `${p.replace(' ', ' and ')}: the direct handshake failed at the gate, now relayed (relay: auto); a later up moves them back once the direct path works`,
        ),
        ...failed
          .filter((p) => !relayedNow.includes(p))
          .map(
            (p) =>
              `${p.replace(' ', ' and ')}: the direct handshake failed at the gate; the pass that relayed them ${armed ? 'was reverted before it was confirmed' : 'stopped before its enable step'}, so they are still direct (run up again)`,
          ),
        ...backToDirect
          .filter((p) => !movedBack.includes(p))
          .map(
            (p) =>
              `${p.replace(' ', ' and ')}: the direct path works again, but the pass that moved them back ${armed ? 'was reverted before it was confirmed' : 'stopped before its enable step'}: still relayed (run up again)`,
          ),
        ...stillRelayed.map(
          (p) =>
            `${p.replace(' ', ' and ')}: the direct path still does not work (the probe of the fallback pairs took ${((fallbackProbeMs ?? 0) / 1000).toFixed(1)} s), stays relayed (relay: auto)`,
        ),
        ...(mixed
          ? [
              `the run ended at its enable gate with no rollback armed (--no-rollback): nothing was reverted, so some nodes may run the new configs and others the old ones; run up again`,
            ]
          : []),
      ];
      const warnings = [
        ...(locks?.warnings ?? []),
        ...pending.firedNotes(),
        ...(run.rollbackNotes ?? []),
        ...pending.notes(),
        ...fallbackNotes,
      ];
      // good news, said as a note and not a warning (a new user's finding Q4-7)
      const notes = movedBack.map((p) => `${p.replace(' ', ' and ')}: the direct path works again, back to direct`);
      return {
        ...base,
        result: run.interrupted ? 'interrupted' : run.stoppedAt ? 'stopped' : options.dryRun ? 'planned' : 'converged',
        ...(run.stoppedAt ? { stoppedAt: run.stoppedAt } : {}),
        changes: countActions(run.plan) + (firstPass?.changes ?? 0),
        phases: run.phases,
        plan: run.plan,
        ...(firstPass ? { firstPass } : {}),
        ...(run.matrix ? { matrix: run.matrix } : {}),
        ...(aheadUsed ? { pingAhead: true } : {}),
        ...(probedAhead ? { underlayAhead: true } : {}),
        timings: { ...timingsNow(), ...(fallbackProbeMs !== undefined ? { fallbackProbeMs } : {}) },
        roundTrips: Object.fromEntries([...connections].map(([name, c]) => [name, c.stats.commands])),
        ...(connections.size && [...connections.values()].some((c) => c.stats.reused !== undefined)
          ? { reusedConnections: [...connections].filter(([, c]) => c.stats.reused).map(([name]) => name) }
          : {}),
        ...counter.report(),
        ...warningsOf(outside.warnings, warnings),
        ...(notes.length ? { notes } : {}),
        ...(pending.found.size ? { pendingReverts: [...pending.found.keys()] } : {}),
        publicKeys: Object.fromEntries(learnt),
        ...(earlier.length || fallbacks.length || failed.length
          ? { fallbackRelays: { pairs: fallbacks, relayedAtGate: relayedNow, backToDirect: movedBack } }
          : {}),
      };
    } finally {
      // from here the caller records the report (UpOptions.withReport)
      forgetForcedExit?.();
      // started here, waited for in runUp (beside the caller's use of the report); never rejects
      released = locks?.release();
    }
  } finally {
    // the connections close once the release was started on every node (it must reach each node before its close)
    ending.push(
      (async () => {
        await released;
        await close();
      })(),
    );
  }
}
