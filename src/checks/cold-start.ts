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
 * B's counters count every datagram, not only ours. So first every direction sends at once and a receiver whose
 * counter grew by all its senders' bursts passes them all (two round trips, every node at once; the counters before
 * come from the checklist). A receiver left short is measured again hearing one sender at a time: directions are put
 * into slots (in each slot, every receiver has at most one sender; slots = the largest number of nodes dialling one
 * node), two more round trips per slot. Other traffic B receives can hide a drop (a false pass), never fake one.
 *
 * No direction is skipped for a fresh handshake (one younger than REKEY_AFTER_TIME): a handshake proves only that
 * datagrams passed on the pair's one 5-tuple (listen port to listen port), and a stateful firewall or NAT passes
 * those for as long as conntrack remembers the flow, whoever opened it: the other side's dial, or an earlier
 * session. That is the one-way pair this probe exists to find (test/lab/firewall.test.ts: a drop added after `up`,
 * handshakes fresh and pings passing, cold start failing). Its cost is small: two short round trips on a healthy
 * mesh, which verify runs beside its checklist (./collect.ts).
 */
import type { Inventory, Node } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { sh } from '../remote/shell.js';
import { endpointFor, formatEndpoint, type Endpoint } from '../topology/endpoints.js';
import { pathBetween, planPaths } from '../topology/paths.js';
import { splitSections, sectionScript, PATH_PRELUDE } from '../facts/sections.js';
import type { FactDef } from '../facts/definitions.js';

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
  const paths = planPaths(inventory);
  for (const to of inventory.nodes) {
    if (!reachable.has(to.name)) continue;
    let slot = 0;
    for (const from of inventory.nodes) {
      if (from.name === to.name || !reachable.has(from.name)) continue;
      const endpoint = endpointFor(inventory, from, to);
      // a pair relayed by relay: always has no session of its own to start, though its ends could dial
      if (!endpoint || pathBetween(paths, from.name, to.name)?.kind === 'relayed') continue;
      if (!slots[slot]) slots[slot] = [];
      slots[slot]!.push({ from: from.name, to: to.name, endpoint });
      slot++;
    }
  }
  return { slots };
}

/**
 * UDP counters of the node's network namespace: IPv4's (/proc/net/snmp) plus IPv6's (/proc/net/snmp6, Udp6*), so a
 * direction dialled over IPv6 (an `address6` pair) is counted where its datagrams arrive. The sum keeps the rule
 * above: other traffic can hide a drop, never fake one.
 */
export interface UdpCounters {
  inDatagrams: number;
  noPorts: number;
}

/**
 * The Udp lines of /proc/net/snmp (a header line of names, then a line of values), then /proc/net/snmp6's
 * `Udp6InDatagrams N` and `Udp6NoPorts N` lines (absent when the kernel has no IPv6).
 */
export const COUNTERS_COMMAND =
  "grep '^Udp:' /proc/net/snmp; grep -E '^Udp6(InDatagrams|NoPorts)[[:space:]]' /proc/net/snmp6 2>/dev/null; true";

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
  const v6 = (name: string) => Number(new RegExp(`^Udp6${name}\\s+(\\d+)\\s*$`, 'm').exec(text)?.[1] ?? 0);
  const inDatagrams = get('InDatagrams') + v6('InDatagrams');
  const noPorts = get('NoPorts') + v6('NoPorts');
  return Number.isInteger(inDatagrams) && Number.isInteger(noPorts) ? { inDatagrams, noPorts } : undefined;
}

/** The counters as a fact of verify's checklist (./probes.ts), so the first read costs no round trip of its own. */
export const UDP_COUNTERS_FACT: FactDef<UdpCounters | undefined> = {
  name: 'udpsnmp',
  command: () => COUNTERS_COMMAND,
  parse: (s) => parseUdpCounters(s?.body ?? ''),
};

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

/** The bursts of `directions` (each sender sends all of its own in one script), then each receiver's counters. */
async function sendThenRead(
  directions: Direction[],
  run: Runner,
  failures: Map<string, string>,
): Promise<{ sent: Map<Direction, { sent: number; error?: string }>; after: Map<string, UdpCounters | undefined> }> {
  const sent = new Map<Direction, { sent: number; error?: string }>();
  await Promise.all(
    [...new Set(directions.map((d) => d.from))].map(async (node) => {
      const mine = directions.filter((d) => d.from === node);
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
  return { sent, after: await readCounters([...new Set(directions.map((d) => d.to))], run, failures) };
}

async function readCounters(nodes: string[], run: Runner, failures: Map<string, string>): Promise<Map<string, UdpCounters | undefined>> {
  const read = await Promise.all(
    nodes.map(async (node) => {
      try {
        return [node, parseUdpCounters(splitSections(await run(node, roundScript(true, []))).get('udp')?.body ?? '')] as const;
      } catch (error) {
        failures.set(node, (error as Error).message);
        return [node, undefined] as const;
      }
    }),
  );
  return new Map(read);
}

const deltaOf = (before: UdpCounters | undefined, after: UdpCounters | undefined): UdpCounters | undefined =>
  before && after ? { inDatagrams: after.inDatagrams - before.inDatagrams, noPorts: after.noPorts - before.noPorts } : undefined;

/**
 * Runs the plan. First every direction at once (one send round, one read round): a receiver whose InDatagrams grew
 * by at least all its senders' bursts passes every direction into it. Only the receivers left short are measured
 * again, slot by slot (one sender each at a time), to tell which direction does not arrive. `initial`: each
 * receiver's counters read just before (the checklist reads them: no round trip of its own); receivers missing there
 * are read first. `run` runs a script on a node and resolves with its stdout (it rejects when the node cannot run it).
 * Round trips: 2 on a healthy mesh, plus 2 per slot when a receiver is short.
 */
export async function runColdStartPlan(
  plan: ColdStartPlan,
  run: Runner,
  initial: ReadonlyMap<string, UdpCounters> = new Map(),
): Promise<ColdStartResult> {
  const started = Date.now();
  let roundTrips = 0;
  const failures = new Map<string, string>();
  const all = plan.slots.flat();
  const counters = new Map<string, UdpCounters | undefined>(initial);
  const unread = [...new Set(all.map((d) => d.to))].filter((n) => !counters.has(n));
  if (unread.length) {
    roundTrips++;
    for (const [node, c] of await readCounters(unread, run, failures)) counters.set(node, c);
  }
  const results = new Map<Direction, DirectionResult>();
  const record = (d: Direction, s: { sent: number; error?: string } | undefined, delta: UdpCounters | undefined) => {
    const sent = s ?? { sent: 0, error: 'not sent' };
    const error =
      sent.error ?? (delta ? undefined : `${d.to}'s UDP counters could not be read${failures.has(d.to) ? `: ${failures.get(d.to)}` : ''}`);
    results.set(d, { ...d, sent: sent.sent, ...(delta ? { delta } : {}), ...(error ? { error } : {}) });
  };

  // every direction at once
  roundTrips += 2;
  const first = await sendThenRead(all, run, failures);
  const short = new Set<string>();
  for (const to of new Set(all.map((d) => d.to))) {
    const into = all.filter((d) => d.to === to);
    const delta = deltaOf(counters.get(to), first.after.get(to));
    counters.set(to, first.after.get(to));
    const expected = into.reduce((n, d) => n + (first.sent.get(d)?.sent ?? 0), 0);
    if (delta && expected > 0 && delta.inDatagrams >= expected && into.every((d) => !first.sent.get(d)?.error))
      for (const d of into)
        record(d, first.sent.get(d), { inDatagrams: Math.floor(delta.inDatagrams / into.length), noPorts: delta.noPorts });
    else if (into.length === 1) record(into[0]!, first.sent.get(into[0]!), delta);
    else short.add(to);
  }

  // the receivers left short: one sender at a time
  for (const slot of plan.slots) {
    const mine = slot.filter((d) => short.has(d.to));
    if (!mine.length) continue;
    roundTrips += 2;
    const { sent, after } = await sendThenRead(mine, run, failures);
    for (const d of mine) {
      record(d, sent.get(d), deltaOf(counters.get(d.to), after.get(d.to)));
      counters.set(d.to, after.get(d.to));
    }
  }
  return { directions: all.map((d) => results.get(d)!).filter(Boolean), roundTrips, ms: Date.now() - started };
}

/** Runs the cold-start probe on the reachable nodes over their connections. */
export function runColdStart(
  inventory: Inventory,
  connections: Map<string, Connection>,
  options: { signal?: AbortSignal; initial?: ReadonlyMap<string, UdpCounters> } = {},
): Promise<ColdStartResult> {
  const plan = planColdStart(inventory, new Set(connections.keys()));
  return runColdStartPlan(
    plan,
    async (node, script) => {
      const connection = connections.get(node);
      if (!connection) throw new Error('not connected');
      const result = await connection.run(script, { timeoutMs: 30_000, ...(options.signal ? { signal: options.signal } : {}) });
      return result.stdout;
    },
    options.initial,
  );
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
