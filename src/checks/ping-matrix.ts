/**
 * The N x N ping matrix: every node pings every other node's overlay IP, all nodes at once, all peers of a node
 * at once (one script per node, one background job per peer). Used by `up` (its last gate) and by `verify`.
 *
 * Timing: a handshake that gets no answer is retried after REKEY_TIMEOUT (5 s), so the ping deadline is 7 s by
 * default; a healthy pair answers its 3 echo requests in ~0.1 s (DEFAULT_PING) and ping returns then, so a healthy
 * mesh is fast.
 *
 * The matrix as text for a terminal (renderMatrix) is ./matrix-render.ts: it needs chalk, which `up --json` never
 * uses and loaded with this module (issue 10: ~8 ms of CPU between the first SSH login and up's first phase).
 */
import type { Connection } from '../transport/types.js';
import { TransportError, checkDeadlineMs } from '../transport/types.js';
import { REKEY_TIMEOUT_S } from '../remote/wireguard.js';
import { PATH_PRELUDE, SectionStream, splitSections } from '../facts/sections.js';
import { pairKey } from '../inventory/types.js';
import {
  pingProbe,
  pingReaderShared,
  type NodePingResults,
  type PathMtuResult,
  type PingParams,
  type PingResult,
  type PingTarget,
  type Section,
} from './probes.js';

export type { PingTarget } from './probes.js';

export interface MatrixCell {
  /**
   * every echo request sent was answered, and at least one was sent: `count` replies before the deadline, or fewer
   * requests than `count` went out before it (a loaded node's ping starts late) and each of them was answered
   */
  ok: boolean;
  /** echo requests asked for (PingMatrixOptions.count); `transmitted` is below it when ping's deadline came first */
  asked?: number;
  /** percent of echo requests lost */
  loss: number;
  transmitted: number;
  received: number;
  /** average round trip */
  rttMs?: number;
  /** why there is no result (node not connected, ping's own error message) */
  error?: string;
  /** path MTU towards this peer, when probed */
  pmtu?: PathMtuResult;
}

export interface Matrix {
  /** row and column order */
  nodes: string[];
  /** cells[from][to]; no cell on the diagonal */
  cells: Record<string, Record<string, MatrixCell>>;
  /**
   * PingMatrixOptions.resetSessions: the pairs (pairKey strings, sorted) whose first contact got no answer, and whose
   * dialer therefore cleared its session with the other end before the round (its reset said so); absent when none
   */
  reset?: string[];
  /**
   * PingMatrixOptions.resetSessions, either round: the resets asked for that did not happen or lost the peer
   * (`NODE -> PEER: why`, sorted; ../engine/session-reset.ts readSessionReset); absent when none
   */
  notReset?: string[];
  /**
   * PingMatrixOptions.recheck, when a pair failed the first round: the pairs pinged again (pairKey strings, sorted),
   * those of them that then answered in every direction that had failed, and the second round's wall time, ms
   */
  recheck?: {
    pairs: string[];
    answered: string[];
    ms: number;
    /**
     * PingMatrixOptions.resetSessions: the pairs (pairKey strings, sorted) whose dialer cleared its WireGuard session
     * with the other end before pinging again; absent when none was
     */
    reset?: string[];
  };
}

/** PingMatrixOptions.resetSessions' answer (../engine/session-reset.ts SessionReset): the command, and its outcome read from its section */
export interface SessionResetScript {
  command: string;
  section: string;
  read(body: string | undefined): { reset: string[]; notReset: Array<{ peer: string; why: string; lost: boolean }> };
}

/**
 * A node's reset outcome into the round's lists (Matrix.reset, Matrix.notReset); a failed cell of a peer the reset
 * lost says so in its error.
 */
function noteReset(
  node: string,
  outcome: ReturnType<SessionResetScript['read']>,
  lists: { reset: Set<string>; notReset: Set<string> },
  row?: Record<string, MatrixCell>,
): void {
  for (const peer of outcome.reset) lists.reset.add(pairKey(node, peer));
  for (const { peer, why, lost } of outcome.notReset) {
    lists.notReset.add(`${node} -> ${peer}: ${why}`);
    const cell = row?.[peer];
    if (lost && row && cell && !cell.ok) row[peer] = { ...cell, error: `its session reset ${why}` };
  }
}

export interface PingMatrixOptions {
  /** echo requests per pair (default 3) */
  count?: number;
  /** seconds between echo requests (default DEFAULT_PING.intervalSeconds, 0.05) */
  intervalSeconds?: number;
  /** ping -w, seconds (default REKEY_TIMEOUT_S + 2; keep it above REKEY_TIMEOUT_S) */
  deadlineSeconds?: number;
  /** probe the path MTU of every pair too, expecting this interface MTU (payload MTU - 28 with DF set) */
  mtu?: number;
  /**
   * pairs to ping one way first, one round before the matrix, so that a fresh pair does not start with two
   * crossing handshake initiations (../topology/endpoints.ts firstContactDialer); results are not kept
   */
  firstContact?: Array<{ from: string; to: string }>;
  /**
   * ping the pairs that failed once more before the round returns (RECHECK): both directions of every pair with a
   * failed cell, with a deadline that outlasts WireGuard's own recovery of a session that carries one direction only;
   * a cell that failed takes the second round's verdict. Off: the first round's verdict is the round's. `up` sets it
   * after a run that changed something (../engine/ping.ts), where the handshakes are new
   */
  recheck?: boolean;
  /**
   * RECHECK's reset (sessionResets): the shell command that `node` runs before its second-round pings to clear its WireGuard sessions
   * with `peers` (node names), so that its next packet starts a fresh handshake; undefined: none. Asked only of the
   * dialer of a failed pair (`firstContact`: the end that has the other's endpoint), never of both ends. Without it
   * (or without `firstContact`) the second round only waits for WireGuard's own new handshake
   */
  resetSessions?: (node: string, peers: readonly string[]) => SessionResetScript | undefined;
  /** sections to run on every node after its pings (same round trip); their output comes back in `after` */
  after?: Array<{ name: string; command: string }>;
  /**
   * per node whose script ran, as its output arrives: its `after` sections, its matrix row and why its script did
   * not finish (undefined when it did). When set, PingRound.after stays empty: a caller that reads each node's
   * sections here does not hold every node's at once until the last answers (issue 10: the routes and peer dump of
   * 1,000 nodes, ~140 MB)
   */
  onAfter?: (node: string, arrived: { after: Map<string, Section>; row: Record<string, MatrixCell>; failure?: string }) => void;
  /** per node: sections run beside its pings (same round trip: PingParams.beside); they come back in `beside` */
  beside?: (node: string) => PingParams['beside'] | undefined;
  signal?: AbortSignal;
  /**
   * start the round's first scripts (the first contact's, else the pings') at once and send them only when this
   * resolves (RunOptions.sendWhen: verify opens the ping channels while its cold-start probe runs, ./collect.ts);
   * `false`: none runs and every cell fails (the caller runs a round anew). It must resolve within
   * PING_AHEAD_WAIT_S of the call: the scripts' deadlines grow by that much.
   */
  sendWhen?: Promise<boolean>;
  /**
   * each row of the matrix kept as one slot per target (a CompactRow), not a dictionary of N-1 properties (issue 10:
   * ~63 bytes a pair, ~63 MB at 1,000 nodes, held by verify to its end), read as the same Record (cells[from][to],
   * its keys in target order, its JSON); verify's collection sets it (./collect.ts CollectOptions.compact)
   */
  compactRows?: boolean;
}

/** The longest a round started ahead (PingMatrixOptions.sendWhen) may wait for its go, seconds. */
export const PING_AHEAD_WAIT_S = 30;

export interface PingRound {
  matrix: Matrix;
  /** per node: the `after` sections */
  after: Map<string, Map<string, Section>>;
  /** nodes whose script could not run (connection lost) */
  errors: Map<string, string>;
  /** wall time of the first-contact round, ms, when there was one */
  firstContactMs?: number;
  /** per node whose script ran: the sections of PingMatrixOptions.beside that came back */
  beside?: Map<string, Map<string, Section>>;
}

/**
 * deadline: one unanswered handshake initiation is retried after REKEY_TIMEOUT; 2 s more let the retry's answer and the
 * pings arrive. Interval (issue 10): 0.05 s, so a converged pair's 3 echoes take 0.1 s instead of 0.4 s; the same 3
 * echoes answered before the same deadline, so the check is as strong. The pings run as root (the Connection
 * contract), and iputils ping(8) lets only root go below 2 ms (older iputils: below 0.2 s), fping(8) only
 * root below 10 ms per target (-p). A pair still handshaking queues its requests in WireGuard and answers them once
 * the session is up (ping -w keeps sending until `count` replies came): a fresh pair passes as before.
 */
export const DEFAULT_PING = { count: 3, intervalSeconds: 0.05, deadlineSeconds: REKEY_TIMEOUT_S + 2 } as const;

/**
 * WireGuard's KEEPALIVE_TIMEOUT, seconds (the WireGuard paper, section 6.1; wireguard-go device/constants.go
 * KeepaliveTimeout): a peer that sent data and heard nothing authenticated back for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
 * starts a new handshake.
 */
export const KEEPALIVE_TIMEOUT_S = 10;

/**
 * RECHECK (PingMatrixOptions.recheck): the second round for the pairs that failed the first, both directions, each
 * node pinging only those peers. Why (docs/ping-round.md, 32-node lab, 2026-12-01): right after every node's
 * wg-quick starts at once on a loaded host, both ends of a pair send their first handshake initiation before the
 * other end has the peer; both retry REKEY_TIMEOUT later, at the same moment, and the two initiations cross. Both
 * handshakes complete, yet one end then sends with keys the other does not take: a session in one direction only
 * (captured: office-3 counted 332 bytes from home-6, which sent it 32 KB; office-6 took none of office-9's echo
 * replies). WireGuard mends it by itself: the end that hears nothing starts a new handshake KEEPALIVE_TIMEOUT +
 * REKEY_TIMEOUT (+ up to 1/3 s jitter) after it began sending (seen: 15.2 s), which a 7 s round does not wait for,
 * so `up` relayed a pair whose direct path worked. The deadline counts that timer from this round's start (both ends
 * send again here), plus 2 s for the answer, as DEFAULT_PING's; a pair that answers returns at once, and a pair
 * that stays broken is failed 17 s later than without it.
 */
export const RECHECK = { deadlineSeconds: KEEPALIVE_TIMEOUT_S + REKEY_TIMEOUT_S + 2 } as const;

/**
 * Which node clears its session with which peers before the second round (PingMatrixOptions.resetSessions; RECHECK's
 * reset). Waiting for that timer cost the cold `up` of the 32-node bench its ping phase's excess (2026-12-02: 24.0 s
 * against a 7.2 s floor; in the lab 4 pairs of 496 failed, each with the signature above: one end had taken ~1 KB of
 * the other's 25-72 KB, and the second round answered only after 5-7 s, when the deaf end's timer, started by its
 * pings of the first round, fired: docs/transport-cost.md). Any new handshake mends such a pair, whichever end starts
 * it. So before the second round the dialer of each failed pair (the end with the other's endpoint:
 * ../topology/endpoints.ts firstContactDialer) clears its session with the other end, and its first echo request
 * starts a fresh handshake at once; the other end keeps its session and only answers (it has keys to send with, so
 * it starts no initiation of its own to cross this one). A pair that really fails fails the fresh handshake too, and
 * still gets RECHECK's full deadline. The same reset runs earlier, at the start of the round, for each pair whose
 * dialer got no answer at its first contact (a one-direction session loses the request or the reply of any echo):
 * such a pair then passes the round and needs no second one.
 * `failed`: the failed pairs as [a, b]; `firstContact`: the dialers (PingMatrixOptions.firstContact); `pings`: the
 * nodes that ping in the second round (a dialer that does not clears nothing). Returns node -> peers (node names).
 */
export function sessionResets(
  failed: Iterable<readonly [string, string]>,
  firstContact: ReadonlyArray<{ from: string; to: string }>,
  pings: (node: string) => boolean,
): Map<string, Set<string>> {
  const dialerOf = new Map(firstContact.map((p) => [pairKey(p.from, p.to), p.from]));
  const resets = new Map<string, Set<string>>();
  for (const [a, b] of failed) {
    const dialer = dialerOf.get(pairKey(a, b));
    if (dialer === undefined || !pings(dialer)) continue;
    const peers = resets.get(dialer) ?? new Set<string>();
    if (peers.size === 0) resets.set(dialer, peers);
    peers.add(dialer === a ? b : a);
  }
  return resets;
}

/**
 * Whether a pair answered. iputils ping (ping(8), -w) exits 1 when fewer than `-c` replies came before the deadline,
 * which also happens when fewer than `-c` requests were *sent* before it (a node loaded by many containers starts its
 * pings late): a reply to every request sent is an answer, not a loss. Any other exit (2: ping's own error) or an
 * error line is not.
 */
function answered(ping: PingResult): boolean {
  if (ping.received <= 0) return false;
  if (ping.rc === 0) return true;
  return ping.rc === 1 && ping.received >= ping.transmitted && !ping.error && !ping.errors;
}

function cellFrom(results: NodePingResults | undefined, ip: string, asked: number, error?: string): MatrixCell {
  const ping = results?.ping.get(ip);
  if (!ping) return { ok: false, asked, loss: 100, transmitted: 0, received: 0, error: error ?? 'not probed' };
  // the fields in the order the report has always printed them; one object per cell, no spread copies (issue 10:
  // N x (N-1) cells, 1e6 at 1,000 nodes)
  const ok = answered(ping);
  // rttMs in the literal, not added after: an added field moves the object's fields to a second array of its own
  const cell: MatrixCell = ping.rttMs
    ? { ok, asked, loss: ping.loss, transmitted: ping.transmitted, received: ping.received, rttMs: ping.rttMs.avg }
    : { ok, asked, loss: ping.loss, transmitted: ping.transmitted, received: ping.received };
  if (ping.error) cell.error = ping.error;
  const pmtu = results?.mtu.get(ip);
  if (pmtu) cell.pmtu = pmtu;
  return cell;
}

/**
 * One object per distinct cell of a round (issue 10: N x (N-1) cells, 1e6 at 1,000 nodes, kept in the report):
 * cells of the same content with no error (the usual answered pair: the same counts, and RTTs as ping prints them,
 * to the microsecond) are one frozen object, and so is their path MTU when it is the plain pass (the expected
 * payload passed at the first try): a path MTU per cell was four objects per pair (cell, pmtu, tries, try), a
 * third of verify's heap after the collection at 200 nodes. Equal content, so the matrix and its JSON are the same.
 */
type CellTable = Map<string, MatrixCell>;
function shareCell(cell: MatrixCell, table: CellTable | undefined): MatrixCell {
  if (!table || cell.error !== undefined) return cell;
  const p = cell.pmtu;
  const plainMtu = p?.ok && !p.skipped && p.tries.length === 1 && p.tries[0]!.ok && p.tries[0]!.size === p.expected;
  if (p !== undefined && !plainMtu) return cell;
  const key = `${cell.ok} ${cell.asked} ${cell.loss} ${cell.transmitted} ${cell.received} ${cell.rttMs}${p ? ` ${p.expected} ${p.largest}` : ''}`;
  const known = table.get(key);
  if (known) return known;
  if (p) {
    Object.freeze(p.tries[0]);
    Object.freeze(p.tries);
    Object.freeze(p);
  }
  table.set(key, Object.freeze(cell));
  return cell;
}

/** One node's row of the matrix: a cell for every target but itself, in target order (a CompactRow with `shape`). */
function rowFrom(
  from: string,
  targets: PingTarget[],
  results: NodePingResults | undefined,
  count: number,
  error?: string,
  table?: CellTable,
  shape?: RowShape,
): Record<string, MatrixCell> {
  if (shape) {
    const slots = new Array<MatrixCell | undefined>(shape.order.length);
    targets.forEach((to, i) => {
      if (to.node !== from) slots[i] = shareCell(cellFrom(results, to.ip, count, error), table);
    });
    return compactRow(shape, slots);
  }
  const row: Record<string, MatrixCell> = {};
  for (const to of targets) if (to.node !== from) row[to.node] = shareCell(cellFrom(results, to.ip, count, error), table);
  return row;
}

/** A key a plain object orders first, as an array index (ECMA-262 OrdinaryOwnPropertyKeys) below 2^32 - 1. */
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/** What a round's CompactRows share: the targets' node names in order, and each one's position (the first, if twice). */
interface RowShape {
  order: readonly string[];
  position: ReadonlyMap<string, number>;
}

const rowShape = (targets: readonly PingTarget[]): RowShape => {
  const position = new Map<string, number>();
  targets.forEach((t, i) => {
    if (!position.has(t.node)) position.set(t.node, i);
  });
  return { order: targets.map((t) => t.node), position };
};

/**
 * A row of the matrix as a slot per target (`slots[i]`: the cell of `shape.order[i]`, undefined for none), read as
 * the plain Record rowFrom makes (PingMatrixOptions.compactRows): its own enumerable keys are the targets with a
 * cell, in target order (Object.keys, for..in, JSON.stringify, deep equality), `row[to]` their cells, `row[to] =
 * cell` sets one (recheckRound), anything else is the plain object's (its prototype). A Proxy: one array of
 * pointers a row instead of a dictionary of N-1 properties. util.inspect shows the empty object behind it.
 */
function compactRow(shape: RowShape, slots: Array<MatrixCell | undefined>): Record<string, MatrixCell> {
  const at = (key: string | symbol): number | undefined => {
    if (typeof key !== 'string') return undefined;
    const i = shape.position.get(key);
    return i !== undefined && slots[i] !== undefined ? i : undefined;
  };
  return new Proxy({} as Record<string, MatrixCell>, {
    get(target, key, receiver) {
      const i = at(key);
      return i === undefined ? Reflect.get(target, key, receiver) : slots[i];
    },
    set(target, key, value, receiver) {
      const i = typeof key === 'string' ? shape.position.get(key) : undefined;
      if (i === undefined) return Reflect.set(target, key, value, receiver);
      slots[i] = value as MatrixCell;
      return true;
    },
    has(target, key) {
      return at(key) !== undefined || Reflect.has(target, key);
    },
    ownKeys(target) {
      // a plain object's order: array-index keys first, ascending, then the others as they were added (target order)
      const indexes: string[] = [];
      const keys: string[] = [];
      shape.order.forEach((name, i) => {
        if (slots[i] !== undefined && shape.position.get(name) === i)
          (ARRAY_INDEX.test(name) && Number(name) < 2 ** 32 - 1 ? indexes : keys).push(name);
      });
      indexes.sort((a, b) => Number(a) - Number(b));
      return [...indexes, ...keys, ...Reflect.ownKeys(target)];
    },
    getOwnPropertyDescriptor(target, key) {
      const i = at(key);
      if (i === undefined) return Reflect.getOwnPropertyDescriptor(target, key);
      return { value: slots[i], writable: true, enumerable: true, configurable: true };
    },
    deleteProperty(target, key) {
      const i = at(key);
      if (i === undefined) return Reflect.deleteProperty(target, key);
      slots[i] = undefined;
      return true;
    },
  });
}

/**
 * Builds the matrix from per-node parsed results (pure; exported for tests and for callers with their own I/O).
 * `count`: echo requests each pair was asked for (default DEFAULT_PING.count).
 */
export function buildMatrix(
  targets: PingTarget[],
  results: Map<string, NodePingResults>,
  errors: Map<string, string> = new Map(),
  count: number = DEFAULT_PING.count,
): Matrix {
  const nodes = targets.map((t) => t.node);
  const cells: Matrix['cells'] = {};
  for (const from of nodes) cells[from] = rowFrom(from, targets, results.get(from), count, errors.get(from));
  return { nodes, cells };
}

/** The ping script for one node: every target but itself. */
export function pingParamsFor(node: string, targets: PingTarget[], options: PingMatrixOptions = {}): PingParams {
  return {
    targets: targets.filter((t) => t.node !== node),
    count: options.count ?? DEFAULT_PING.count,
    intervalSeconds: options.intervalSeconds ?? DEFAULT_PING.intervalSeconds,
    deadlineSeconds: Math.max(options.deadlineSeconds ?? DEFAULT_PING.deadlineSeconds, 1),
    ...(options.mtu !== undefined ? { mtu: options.mtu } : {}),
    ...(options.after ? { after: options.after } : {}),
  };
}

/** Runs the ping (and path-MTU) script on every connected node at once. Nodes without a connection get failed cells. */
export async function runPingRound(
  connections: Map<string, Connection>,
  targets: PingTarget[],
  options: PingMatrixOptions = {},
): Promise<PingRound> {
  // a round started ahead counts its time from its go
  let firstContactStarted = Date.now();
  void options.sendWhen?.then(() => (firstContactStarted = Math.max(firstContactStarted, Date.now())));
  const ahead = options.sendWhen ? { sendWhen: options.sendWhen, waitMs: PING_AHEAD_WAIT_S * 1000 } : undefined;
  // the dialers whose first contact got no answer: with resetSessions, each clears its session with those peers at
  // the start of its script of the round (sessionResets' reason: a session that carries one direction only fails
  // the first contact, and would fail the round too and wait for the second)
  const unanswered = options.firstContact?.length
    ? await firstContactRound(connections, targets, options.firstContact, options.signal, ahead)
    : new Map<string, Set<string>>();
  const resetFirst = new Set<string>();
  const notReset = new Set<string>();
  const firstContactMs = options.firstContact?.length ? Date.now() - firstContactStarted : undefined;
  const count = options.count ?? DEFAULT_PING.count;
  // each node's row is built as its output arrives, and its parsed results dropped then (issue 10: holding every
  // node's parsed pings until the last one answered kept N x (N-1) results beside the matrix, ~1e6 at 1,000 nodes);
  // the rows are placed in target order first, so the report lists them in that order whatever answers first
  const nodes = targets.map((t) => t.node);
  const cells: Matrix['cells'] = {};
  for (const node of nodes) cells[node] = {};
  const rowed = new Set<string>();
  const table: CellTable = new Map();
  const shape = options.compactRows ? rowShape(targets) : undefined;
  // equal ping results one object across the round (PingOutputReader): the nodes' outputs arrive interleaved
  const readers = pingReaderShared(targets);
  const errors = new Map<string, string>();
  const after = new Map<string, Map<string, Section>>();
  const beside = new Map<string, Map<string, Section>>();
  /** PingMatrixOptions.recheck: the finished nodes with a failed cell, and their first round's after sections */
  const held = new Map<string, Map<string, Section>>();
  // worst case per node: the deadline, plus a path-MTU confirmation (DF_CONFIRM: the deadline again) and binary
  // search (~12 DF probes of up to 1.2 s each)
  // (raised to MESHCTL_COMMAND_TIMEOUT when longer: 32 lab nodes on 2 loaded cores, and a node probing 999 peers on a
  // loaded farm, cut this script short)
  const timeoutMs = checkDeadlineMs(
    ((options.deadlineSeconds ?? DEFAULT_PING.deadlineSeconds) * (options.mtu !== undefined ? 2 : 1) +
      (options.mtu !== undefined ? 20 : 0) +
      15) *
      1000 +
      (ahead?.waitMs ?? 0),
  );
  await Promise.all(
    targets.map(async ({ node }) => {
      const connection = connections.get(node);
      if (!connection) {
        errors.set(node, `${node} is not connected`);
        return;
      }
      const besideNode = options.beside?.(node);
      const probe = pingProbe({ ...pingParamsFor(node, targets, options), ...(besideNode ? { beside: besideNode } : {}) });
      const silent = unanswered.get(node);
      const clear = silent && options.resetSessions ? options.resetSessions(node, [...silent]) : undefined;
      let resetBody: string | undefined;
      const script = clear !== undefined ? `${PATH_PRELUDE}\n${clear.command}\n${probe.script}` : probe.script;
      // the output read as it arrives, each section parsed then, and none of it kept by the transport (issue 10: a
      // node's ping output is ~0.3 MB at 1,000 nodes, ~2,000 sections, every node's held whole and cut at its end)
      const reader = probe.reader(readers);
      const stream = new SectionStream((section) => {
        if (section.name === clear?.section) resetBody = section.body;
        reader.add(section);
      });
      try {
        const result = await connection.run(script, {
          timeoutMs,
          ...(options.signal ? { signal: options.signal } : {}),
          // after a first contact (started ahead itself) the gate has said go already
          ...(ahead ? { sendWhen: ahead.sendWhen } : {}),
          onStdout: (piece) => stream.write(piece),
          discardStdout: true,
        });
        stream.endWith(result.stdout);
        const parsed = reader.results();
        if (besideNode) beside.set(node, parsed.beside ?? new Map());
        if (!parsed.complete)
          errors.set(
            node,
            result.code === 124 ? 'ping script timed out' : `ping script ended early (exit ${result.code}) ${result.stderr.trim()}`.trim(),
          );
        const row = rowFrom(node, targets, parsed, count, errors.get(node), table, shape);
        if (clear) noteReset(node, clear.read(resetBody), { reset: resetFirst, notReset }, row);
        cells[node] = row;
        rowed.add(node);
        const failure = errors.get(node);
        // a finished node with a failed cell waits for the recheck: its row and after sections are read after it
        if (options.recheck && failure === undefined && Object.values(row).some((cell) => !cell.ok)) {
          held.set(node, parsed.after);
          return;
        }
        if (!options.onAfter) after.set(node, parsed.after);
        options.onAfter?.(node, { after: parsed.after, row, ...(failure !== undefined ? { failure } : {}) });
      } catch (error) {
        errors.set(node, error instanceof TransportError ? error.message : String((error as Error)?.message ?? error));
      }
    }),
  );
  const recheck =
    held.size > 0 ? await recheckRound({ connections, targets, options, cells, held, errors, table, count, notReset }) : undefined;
  for (const [node, sections] of held) {
    if (!options.onAfter) after.set(node, sections);
    options.onAfter?.(node, { after: sections, row: cells[node]! });
  }
  // nodes without a row (not connected, or their script failed): every cell failed with the node's error
  for (const node of nodes)
    if (!rowed.has(node)) cells[node] = rowFrom(node, targets, undefined, count, errors.get(node), undefined, shape);
  // RV-9: judged once every row is there: a pair whose other end had no row yet (filled in as failed just above) was
  // listed as answered while the matrix showed that direction failed
  if (recheck) recheck.answered = answeredPairs(recheck.pairs, cells);
  return {
    matrix: {
      nodes,
      cells,
      ...(resetFirst.size > 0 ? { reset: [...resetFirst].sort() } : {}),
      ...(notReset.size > 0 ? { notReset: [...notReset].sort() } : {}),
      ...(recheck ? { recheck } : {}),
    },
    after,
    errors,
    ...(firstContactMs !== undefined ? { firstContactMs } : {}),
    ...(options.beside ? { beside } : {}),
  };
}

/**
 * The second round of PingMatrixOptions.recheck (RECHECK): every pair with a failed cell of a finished node, both
 * directions (so that both ends send again, and the end that hears nothing starts WireGuard's new handshake), each
 * node pinging only those peers. A failed cell of a held node takes this round's cell (its path MTU too, when
 * probed); a cell that passed keeps its own. A held node's after sections become this round's (read after its
 * pings: the new handshake shows), or stay the first round's when its script did not finish. `held` is updated
 * in place; a connection that fails here leaves the first round's cells. With PingMatrixOptions.resetSessions, the
 * dialer of each failed pair (sessionResets) runs its reset first, in the same script and round trip.
 */
async function recheckRound(round: {
  connections: Map<string, Connection>;
  targets: PingTarget[];
  options: PingMatrixOptions;
  cells: Matrix['cells'];
  held: Map<string, Map<string, Section>>;
  errors: Map<string, string>;
  table: CellTable;
  count: number;
  notReset: Set<string>;
}): Promise<NonNullable<Matrix['recheck']>> {
  const { connections, targets, options, cells, held, errors, table, count, notReset } = round;
  const started = Date.now();
  const ipOf = new Map(targets.map((t) => [t.node, t.ip]));
  const pairs = new Set<string>();
  const peersOf = new Map<string, Set<string>>();
  const add = (from: string, to: string) => {
    const peers = peersOf.get(from) ?? new Set<string>();
    if (peers.size === 0) peersOf.set(from, peers);
    peers.add(to);
  };
  const failed: Array<[string, string]> = [];
  for (const from of held.keys())
    for (const [to, cell] of Object.entries(cells[from] ?? {})) {
      if (cell.ok) continue;
      pairs.add(pairKey(from, to));
      failed.push([from, to]);
      add(from, to);
      // the other end pings too when its own script finished (a node with no connection pings nothing)
      if (connections.has(to) && cells[to]?.[from] && !errors.has(to)) add(to, from);
    }
  const resets = options.resetSessions
    ? sessionResets(failed, options.firstContact ?? [], (node) => peersOf.has(node))
    : new Map<string, Set<string>>();
  const reset = new Set<string>();
  const deadlineSeconds = Math.max(RECHECK.deadlineSeconds, options.deadlineSeconds ?? DEFAULT_PING.deadlineSeconds);
  await Promise.all(
    [...peersOf].map(async ([node, peers]) => {
      const mine = held.has(node);
      const clear = resets.has(node) ? options.resetSessions?.(node, [...resets.get(node)!]) : undefined;
      const probe = pingProbe({
        targets: [...peers].map((peer) => ({ node: peer, ip: ipOf.get(peer)! })),
        count,
        intervalSeconds: options.intervalSeconds ?? DEFAULT_PING.intervalSeconds,
        deadlineSeconds,
        // the path MTU and the after sections only where this round's cells and sections are kept
        ...(mine && options.mtu !== undefined ? { mtu: options.mtu } : {}),
        ...(mine && options.after ? { after: options.after } : {}),
      });
      try {
        // the reset first, in the same round trip: its own prelude, then the probe (whose prelude repeats it)
        const script = clear !== undefined ? `${PATH_PRELUDE}\n${clear.command}\n${probe.script}` : probe.script;
        const result = await connections.get(node)!.run(script, {
          timeoutMs: checkDeadlineMs(
            (deadlineSeconds * (mine && options.mtu !== undefined ? 2 : 1) + (mine && options.mtu !== undefined ? 20 : 0) + 15) * 1000,
          ),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        const outcome = clear?.read(splitSections(result.stdout).get(clear.section)?.body);
        if (!mine) {
          if (outcome) noteReset(node, outcome, { reset, notReset });
          return;
        }
        const parsed = probe.parse(result.stdout);
        const row = cells[node]!;
        for (const peer of peers) {
          const ip = ipOf.get(peer)!;
          if (!row[peer]!.ok && parsed.ping.has(ip)) row[peer] = shareCell(cellFrom(parsed, ip, count), table);
        }
        if (outcome) noteReset(node, outcome, { reset, notReset }, row);
        if (parsed.complete) held.set(node, parsed.after);
      } catch {
        // the first round's cells and sections stand
      }
    }),
  );
  const sorted = [...pairs].sort();
  return {
    pairs: sorted,
    answered: answeredPairs(sorted, cells),
    ms: Date.now() - started,
    ...(reset.size > 0 ? { reset: [...reset].sort() } : {}),
  };
}

/**
 * The recheck's pairs (pairKey strings) whose cells now pass both ways. A direction with no cell is not held against
 * the pair: a node outside the run's rows (--limit) has none. Call it once every row of the run is filled in.
 */
export function answeredPairs(pairs: readonly string[], cells: Matrix['cells']): string[] {
  return pairs.filter((pair) => {
    const [a, b] = pair.split(' ') as [string, string];
    return cells[a]?.[b]?.ok !== false && cells[b]?.[a]?.ok !== false;
  });
}

/**
 * FIRST_CONTACT: one echo per pair from its dialer; a fresh session answers in one round trip plus the handshake.
 * The deadline outlasts one REKEY_TIMEOUT retry (DEFAULT_PING's): right after `up` changed both ends of a pair, the
 * dialer's first handshake initiation (sent as soon as its PersistentKeepalive is set) may reach the other end
 * before that end has the peer, and is dropped; WireGuard retries it only REKEY_TIMEOUT (+ up to 1/3 s jitter)
 * later. With a shorter round (3 s until 2026-12) the other end dialled back in the matrix round before that retry:
 * behind a NAT router with a port-forward (Linux DNAT + MASQUERADE, as the lab's and most home routers), that
 * second flow between the same two sockets clashed with the dialer's own outgoing one in the router's conntrack, the
 * router gave the peer's packets another source port, and the dialer roamed to it (lab, site a: a-1 saw p-2 at
 * 198.51.100.12:39600 instead of :51820). That endpoint lives only as long as the router's conntrack entry: after a
 * router reboot the dialer sends to a port nothing listens on and, as a public peer keeps no keepalive, stays cut
 * off until the peer sends to it (test/lab/relay.test.ts). A round that gets its answer returns at once; only a pair
 * that does not answer waits the longer deadline.
 */
export const FIRST_CONTACT = { count: 1, intervalSeconds: 0.2, deadlineSeconds: DEFAULT_PING.deadlineSeconds } as const;

async function firstContactRound(
  connections: Map<string, Connection>,
  targets: PingTarget[],
  pairs: Array<{ from: string; to: string }>,
  signal?: AbortSignal,
  ahead?: { sendWhen: Promise<boolean>; waitMs: number },
): Promise<Map<string, Set<string>>> {
  const ipOf = new Map(targets.map((t) => [t.node, t.ip]));
  // grouped in one pass: filtering all ~N^2/2 pairs once per dialer was O(N^3) (0.5e9 steps at 1,000 nodes)
  const byDialer = new Map<string, PingTarget[]>();
  for (const p of pairs) {
    const ip = ipOf.get(p.to);
    if (ip === undefined) continue;
    const list = byDialer.get(p.from) ?? [];
    if (list.length === 0) byDialer.set(p.from, list);
    list.push({ node: p.to, ip });
  }
  const unanswered = new Map<string, Set<string>>();
  await Promise.all(
    [...byDialer].map(async ([from, peers]) => {
      const connection = connections.get(from);
      if (!connection || peers.length === 0) return;
      const probe = pingProbe({ targets: peers, ...FIRST_CONTACT });
      // the matrix that follows judges every pair; what came back only names the peers that did not answer (a
      // script that did not run or finish names none: nothing is known of its pairs)
      const result = await connection
        .run(probe.script, {
          timeoutMs: checkDeadlineMs((FIRST_CONTACT.deadlineSeconds + 15) * 1000 + (ahead?.waitMs ?? 0)),
          ...(signal ? { signal } : {}),
          ...(ahead ? { sendWhen: ahead.sendWhen } : {}),
        })
        .catch(() => undefined);
      if (!result) return;
      const parsed = probe.parse(result.stdout);
      if (!parsed.complete) return;
      const silent = peers.filter((peer) => {
        const ping = parsed.ping.get(peer.ip);
        return ping !== undefined && !answered(ping);
      });
      if (silent.length > 0) unanswered.set(from, new Set(silent.map((peer) => peer.node)));
    }),
  );
  return unanswered;
}

/**
 * The ping matrix of `up` phase 7 and `verify`: every node pings every other one's overlay IP, all at once.
 * `connections` by node name; `targets` in display order (a node missing from `connections` gets failed cells).
 */
export async function pingMatrix(
  connections: Map<string, Connection>,
  targets: PingTarget[],
  options: PingMatrixOptions = {},
): Promise<Matrix> {
  return (await runPingRound(connections, targets, options)).matrix;
}

/** True when every off-diagonal cell passed (and its path MTU, when probed). */
export function matrixPasses(matrix: Matrix, { withMtu = true } = {}): boolean {
  return matrix.nodes.every((from) =>
    matrix.nodes.every((to) => {
      if (from === to) return true;
      const cell = matrix.cells[from]?.[to];
      return !!cell && cell.ok && (!withMtu || !cell.pmtu || cell.pmtu.ok);
    }),
  );
}
