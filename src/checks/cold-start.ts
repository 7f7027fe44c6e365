/**
 * Can each designed direction of each pair start a session from cold? (issue 8, kind 4.) A tunnel that is up now
 * proves little: the other side may have dialled out, so conntrack lets its answers in, and once the entry expires a
 * firewall that drops NEW datagrams cuts the pair for good. So for every direction where A dials B (endpointFor), A
 * sends a burst of datagrams to B's endpoint from a FRESH source port (a new flow: no conntrack entry helps it) and B's
 * kernel UDP counters (/proc/net/snmp Udp: InDatagrams, NoPorts, counted after the firewall) say whether they arrived.
 *
 * The datagrams are not WireGuard messages (their first byte is no message type), so WireGuard drops them unread; they
 * go only to the endpoints the inventory designs, i.e. between the nodes themselves.
 *
 * B's counters count every datagram, not only ours, so B must hear one sender at a time: directions are put into
 * slots (in each slot, every receiver has at most one sender), and a slot is two round trips (send, then read),
 * after one first read: 1 + 2 x slots round trips in all, every node at once (slots = the largest number of nodes
 * dialling one node). Other traffic B receives in a slot can hide a drop (a false pass), never fake one.
 */
import type { Inventory, Node } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { sh } from '../remote/shell.js';
import { endpointFor, formatEndpoint, type Endpoint } from '../topology/endpoints.js';
import { splitSections, sectionScript, PATH_PRELUDE } from '../facts/sections.js';

/** Datagrams per direction. */
export const COLD_START_BURST = 16;
/** The payload: not WireGuard-shaped (byte 0 is 'm', no message type), so WireGuard drops it unread. */
export const COLD_START_PAYLOAD = 'meshctl cold-start probe';

/** One designed direction: `from` dials `to` at `endpoint`. */
export interface Direction {
  from: string;
  to: string;
  endpoint: Endpoint;
}

/** The directions, each in a slot where its receiver hears no other sender. */
export interface ColdStartPlan {
  slots: Direction[][];
}

/** Every direction in which a node dials another (endpointFor), among the nodes in `reachable`, put into slots. */
export function planColdStart(inventory: Inventory, reachable: ReadonlySet<string>): ColdStartPlan {
  const slots: Direction[][] = [];
  for (const to of inventory.nodes) {
    if (!reachable.has(to.name)) continue;
    let slot = 0;
    for (const from of inventory.nodes) {
      if (from.name === to.name || !reachable.has(from.name)) continue;
      const endpoint = endpointFor(inventory, from, to);
      if (!endpoint) continue;
      if (!slots[slot]) slots[slot] = [];
      slots[slot]!.push({ from: from.name, to: to.name, endpoint });
      slot++;
    }
  }
  return { slots };
}

/** UDP counters of /proc/net/snmp (the node's network namespace). */
export interface UdpCounters {
  inDatagrams: number;
  noPorts: number;
}

/** The Udp lines of /proc/net/snmp (a header line of names, then a line of values). */
export const COUNTERS_COMMAND = "grep '^Udp:' /proc/net/snmp";

/** Reads /proc/net/snmp's Udp lines by their names; undefined when the node printed no counters. */
export function parseUdpCounters(text: string): UdpCounters | undefined {
  const lines = text
    .split('\n')
    .filter((l) => l.startsWith('Udp:'))
    .map((l) => l.trim().split(/\s+/).slice(1));
  const names = lines.find((l) => l.includes('InDatagrams'));
  const values = lines.find((l) => l.length > 0 && l.every((v) => /^\d+$/.test(v)));
  if (!names || !values) return undefined;
  const get = (name: string) => Number(values[names.indexOf(name)]);
  const inDatagrams = get('InDatagrams');
  const noPorts = get('NoPorts');
  return Number.isInteger(inDatagrams) && Number.isInteger(noPorts) ? { inDatagrams, noPorts } : undefined;
}

/**
 * The sender's command for one direction: a new UDP socket (bash's /dev/udp connects it, so the kernel picks a fresh
 * ephemeral source port), COLD_START_BURST datagrams, closed; netcat when there is no bash. Prints `sent=N`.
 */
export function burstCommand(endpoint: Endpoint): string {
  const n = COLD_START_BURST;
  const target = `/dev/udp/${endpoint.host}/${endpoint.port}`;
  const inner = sh`exec 3>${target} || exit 3; i=0; while [ $i -lt ${n} ]; do printf '%s\\n' ${COLD_START_PAYLOAD} >&3 2>/dev/null; i=$((i+1)); done; echo sent=${n}`;
  const viaBash = sh`bash -c ${inner.text}`;
  // one nc per datagram: nc would coalesce piped lines into fewer datagrams
  const viaNc = sh`i=0; while [ $i -lt ${n} ]; do echo ${COLD_START_PAYLOAD} | nc -u -w 0 ${endpoint.host} ${endpoint.port} 2>/dev/null; i=$((i+1)); done; echo sent=${n}`;
  return `if command -v bash >/dev/null 2>&1; then ${viaBash.text}; elif command -v nc >/dev/null 2>&1; then ${viaNc.text}; else echo 'sent=0 (neither bash nor nc)'; fi`;
}

const sectionName = (i: number) => `burst${i}`;

/** One node's script for a round: its counters (when it receives) and its bursts (when it sends), in sections. */
export function roundScript(read: boolean, sends: Direction[]): string {
  return [
    PATH_PRELUDE,
    ...(read ? [sectionScript('udp', COUNTERS_COMMAND)] : []),
    ...sends.map((d, i) => sectionScript(sectionName(i), burstCommand(d.endpoint))),
    sectionScript('done', 'true'),
  ].join('\n');
}

/** What one direction's probe saw. */
export interface DirectionResult extends Direction {
  sent: number;
  /** B's InDatagrams and NoPorts growth over the slot; undefined when B's counters could not be read */
  delta?: UdpCounters;
  /** why it could not be measured (a node failed, no sender tool) */
  error?: string;
}

export interface ColdStartResult {
  directions: DirectionResult[];
  roundTrips: number;
  ms: number;
}

type Runner = (node: string, script: string) => Promise<string>;

/**
 * Runs the plan: a first read on every receiver, then per slot the bursts and a read. `run` runs a script on a node
 * and resolves with its stdout (it rejects when the node cannot run it). All nodes of a round at once.
 */
export async function runColdStartPlan(plan: ColdStartPlan, run: Runner): Promise<ColdStartResult> {
  const started = Date.now();
  let roundTrips = 0;
  const receivers = [...new Set(plan.slots.flat().map((d) => d.to))];
  const counters = new Map<string, UdpCounters | undefined>();
  const failures = new Map<string, string>();
  const readAll = async (nodes: string[]) => {
    roundTrips++;
    const read = await Promise.all(
      nodes.map(async (node) => {
        try {
          const s = splitSections(await run(node, roundScript(true, [])));
          return [node, parseUdpCounters(s.get('udp')?.body ?? '')] as const;
        } catch (error) {
          failures.set(node, (error as Error).message);
          return [node, undefined] as const;
        }
      }),
    );
    return new Map(read);
  };
  for (const [node, c] of await readAll(receivers)) counters.set(node, c);
  const results: DirectionResult[] = [];
  for (const slot of plan.slots) {
    const senders = [...new Set(slot.map((d) => d.from))];
    roundTrips++;
    const sent = new Map<Direction, { sent: number; error?: string }>();
    await Promise.all(
      senders.map(async (node) => {
        const mine = slot.filter((d) => d.from === node);
        try {
          const s = splitSections(await run(node, roundScript(false, mine)));
          mine.forEach((d, i) => {
            const body = s.get(sectionName(i))?.body ?? '';
            const n = Number(/sent=(\d+)/.exec(body)?.[1] ?? 0);
            sent.set(d, n > 0 ? { sent: n } : { sent: 0, error: `${node} could not send: ${body.split('\n')[0] || 'no output'}` });
          });
        } catch (error) {
          for (const d of mine) sent.set(d, { sent: 0, error: `${node}: ${(error as Error).message}` });
        }
      }),
    );
    const after = await readAll([...new Set(slot.map((d) => d.to))]);
    for (const d of slot) {
      const before = counters.get(d.to);
      const now = after.get(d.to);
      counters.set(d.to, now);
      const s = sent.get(d) ?? { sent: 0, error: 'not sent' };
      const delta =
        before && now ? { inDatagrams: now.inDatagrams - before.inDatagrams, noPorts: now.noPorts - before.noPorts } : undefined;
      const error =
        s.error ?? (delta ? undefined : `${d.to}'s UDP counters could not be read${failures.has(d.to) ? `: ${failures.get(d.to)}` : ''}`);
      results.push({ ...d, sent: s.sent, ...(delta ? { delta } : {}), ...(error ? { error } : {}) });
    }
  }
  return { directions: results, roundTrips, ms: Date.now() - started };
}

/** Runs the cold-start probe on the reachable nodes over their connections. */
export function runColdStart(
  inventory: Inventory,
  connections: Map<string, Connection>,
  options: { signal?: AbortSignal } = {},
): Promise<ColdStartResult> {
  const plan = planColdStart(inventory, new Set(connections.keys()));
  return runColdStartPlan(plan, async (node, script) => {
    const connection = connections.get(node);
    if (!connection) throw new Error('not connected');
    const result = await connection.run(script, { timeoutMs: 30_000, ...(options.signal ? { signal: options.signal } : {}) });
    return result.stdout;
  });
}

export type ColdStartStatus = 'pass' | 'warn' | 'fail';

/** The verdict for one direction: all arrived (pass), none or few (fail), some (warn), not measured (warn). */
export function judgeDirection(r: DirectionResult): { status: ColdStartStatus; message: string; evidence: string[] } {
  const at = formatEndpoint(r.endpoint);
  const evidence = [
    `${r.from} sent ${r.sent} datagrams from a fresh source port to ${at}`,
    ...(r.delta ? [`${r.to} /proc/net/snmp Udp: InDatagrams +${r.delta.inDatagrams}, NoPorts +${r.delta.noPorts}`] : []),
    ...(r.error ? [r.error] : []),
  ];
  if (r.error || !r.delta || r.sent === 0)
    return {
      status: 'warn',
      message: `could not test whether ${r.from} can start a session with ${r.to}: ${r.error ?? 'not measured'}`,
      evidence,
    };
  const { inDatagrams, noPorts } = r.delta;
  if (inDatagrams >= r.sent)
    return { status: 'pass', message: `${r.from} can start a session with ${r.to} from cold (a new flow to ${at} arrives)`, evidence };
  if (noPorts >= r.sent)
    return {
      status: 'fail',
      message: `${r.from} cannot start a session with ${r.to}: datagrams to ${at} arrive, but nothing listens on that port`,
      evidence,
    };
  const arrived = Math.max(0, inDatagrams);
  if (arrived * 2 > r.sent)
    return {
      status: 'warn',
      message: `only some of ${r.from}'s datagrams to ${at} reached ${r.to} (${arrived} of ${r.sent}): a lossy path or a rate limit`,
      evidence,
    };
  return {
    status: 'fail',
    message: `${r.from} cannot start a session with ${r.to} from cold: a new flow to ${at} does not arrive (a one-way pair: a session that ${r.to} opened works only while conntrack remembers it); see ${r.to}'s firewall check`,
    evidence,
  };
}

export type { Node };
