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
 * counter grew by all its senders' bursts passes them all. That is ONE round trip, every node at once (the counters
 * before come from verify's pre script): each node sends its own bursts, then watches its own counters (shell
 * builtins, no process per look) until they grew by all the bursts addressed to it, or COLD_START_WATCH runs out.
 * A healthy mesh waits only for its datagrams to arrive; it used to pay a second round trip to read the counters.
 * A receiver left short is measured again hearing one sender at a time: its counters are read once more (after
 * every first-round script has ended, so no late datagram of that round can count for a slot), then directions are
 * put into slots (in each slot, every receiver has at most one sender; slots = the largest number of nodes dialling
 * one node), two round trips per slot. Other traffic B receives can hide a drop (a false pass), never fake one; the
 * watch ends at the first look that shows enough, so it gives other traffic no more time than the old read did.
 *
 * No direction is skipped for a fresh handshake (one younger than REKEY_AFTER_TIME): a handshake proves only that
 * datagrams passed on the pair's one 5-tuple (listen port to listen port), and a stateful firewall or NAT passes
 * those for as long as conntrack remembers the flow, whoever opened it: the other side's dial, or an earlier
 * session. That is the one-way pair this probe exists to find (test/lab/firewall.test.ts: a drop added after `up`,
 * handshakes fresh and pings passing, cold start failing). Its cost is small: one short round trip on a healthy
 * mesh, which verify runs beside its checklist (./collect.ts).
 */
import type { Inventory, Node } from '../inventory/types.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';
import { sh } from '../remote/shell.js';
import { endpointFor, formatEndpoint, type Endpoint } from '../topology/endpoints.js';
import { pathKind, planPaths } from '../topology/paths.js';
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
      if (!endpoint || pathKind(paths, from.name, to.name) === 'relayed') continue;
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

/**
 * The lines COUNTERS_COMMAND's two greps print, read by the shell's own `read` (issue 10: no process): what
 * verify's scripts run; parseUdpCounters reads both alike.
 */
export const COUNTERS_READ = [
  'while IFS= read -r mc_l; do case $mc_l in Udp:*) printf \'%s\\n\' "$mc_l" ;; esac; done < /proc/net/snmp',
  '[ -r /proc/net/snmp6 ] && while IFS= read -r mc_l; do case $mc_l in Udp6InDatagrams[[:space:]]*|Udp6NoPorts[[:space:]]*) printf \'%s\\n\' "$mc_l" ;; esac; done < /proc/net/snmp6',
  'true',
].join('\n');

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

/**
 * The burst sections of one node (burst0.. in the order of `sends`), all in ONE bash when there is bash (issue 10: a
 * bash per direction was an exec per peer, 31 per node at 32 nodes): each direction a group command whose
 * redirection opens its own socket (bash's /dev/udp connects a new one: a fresh source port) and closes it when the
 * group ends, in the one bash's own process (a subshell per direction was a fork per peer). A direction whose
 * socket cannot be opened prints bash's error and ends with status 3; the others still send. Without bash,
 * burstCommand's sections (netcat, or `sent=0`).
 */
export function burstSections(sends: Direction[]): string[] {
  if (sends.length === 0) return [];
  const n = COLD_START_BURST;
  const inBash = sends.map((d, i) => {
    const target = `/dev/udp/${d.endpoint.host}/${d.endpoint.port}`;
    const one = sh`{ i=0; while [ $i -lt ${n} ]; do printf '%s
' ${COLD_START_PAYLOAD} >&3 2>/dev/null; i=$((i+1)); done; echo sent=${n}; } 3>${target} || (exit 3)`;
    return sectionScript(sectionName(i), one.text);
  });
  const alone = sends.map((d, i) => sectionScript(sectionName(i), burstCommand(d.endpoint)));
  return [`if command -v bash >/dev/null 2>&1; then ${sh`bash -c ${inBash.join('\n')}`.text}\nelse`, ...alone, 'fi'];
}

/** One node's script for a round: its counters (when it receives) and its bursts (when it sends), in sections. */
export function roundScript(read: boolean, sends: Direction[]): string {
  return [
    PATH_PRELUDE,
    ...(read ? [sectionScript('udp', COUNTERS_READ)] : []),
    ...burstSections(sends),
    sectionScript('done', 'true'),
  ].join('\n');
}

/**
 * How long a receiver watches its counters in the first round: up to `polls` looks, `intervalSeconds` apart (2 s in
 * all), time for senders whose scripts start a little later (their channels open at slightly different moments).
 * Running out only leaves the receiver short, to be measured again slot by slot: it bounds the time, not the verdict.
 */
export const COLD_START_WATCH = { polls: 40, intervalSeconds: 0.05 } as const;

/**
 * Shell: sets mc_udp to InDatagrams + NoPorts of /proc/net/snmp (by the header's names: 0 when they are not the first
 * two) plus Udp6InDatagrams + Udp6NoPorts of /proc/net/snmp6, with builtins only (one look costs no process).
 * The same sum as parseUdpCounters' inDatagrams + noPorts; NoPorts counts too, so a port nobody listens on ends the
 * watch instead of waiting it out (judgeDirection names that case).
 */
const SUM_COUNTERS = [
  'mc_sum() { mc_udp=0; mc_h=',
  '  while read -r mc_k mc_a mc_b mc_r; do [ "$mc_k" = Udp: ] || continue',
  '    if [ -z "$mc_h" ]; then mc_h="$mc_a $mc_b"; elif [ "$mc_h" = "InDatagrams NoPorts" ]; then mc_udp=$((mc_a + mc_b)); fi',
  '  done < /proc/net/snmp',
  '  [ -r /proc/net/snmp6 ] || return 0',
  '  while read -r mc_k mc_v; do case $mc_k in Udp6InDatagrams|Udp6NoPorts) mc_udp=$((mc_udp + mc_v)) ;; esac; done < /proc/net/snmp6; }',
].join('\n');

/**
 * The receiver's watch: looks at its counters until InDatagrams + NoPorts reach `target` (the sum before, plus every
 * burst addressed to it) or `watch` runs out (a `sleep` that refuses fractions ends it at once). Prints
 * `looks=N sum=S` (S: the last look's sum).
 * Throws on a target that is not a whole number (it is written into the script).
 */
export function watchCommand(target: number, watch: { polls: number; intervalSeconds: number } = COLD_START_WATCH): string {
  if (!Number.isSafeInteger(target)) throw new Error(`bad counter target ${target}`);
  const polls = Math.max(0, Math.floor(watch.polls));
  const interval = Number(watch.intervalSeconds);
  return [
    SUM_COUNTERS,
    `mc_i=0; mc_sum`,
    `while [ "$mc_udp" -lt ${target} ] && [ $mc_i -lt ${polls} ]; do sleep ${interval} 2>/dev/null || break; mc_i=$((mc_i + 1)); mc_sum; done`,
    `echo "looks=$mc_i sum=$mc_udp"`,
  ].join('\n');
}

/**
 * One node's script for the first round: its bursts (when it dials), then (when it receives and its counters before
 * are known) the watch for `target` and its counters in the `udp` section, read by parseUdpCounters.
 */
export function sendAndWatchScript(
  sends: Direction[],
  target: number | undefined,
  watch: { polls: number; intervalSeconds: number } = COLD_START_WATCH,
): string {
  return [
    PATH_PRELUDE,
    ...burstSections(sends),
    ...(target !== undefined ? [sectionScript('watch', watchCommand(target, watch)), sectionScript('udp', COUNTERS_READ)] : []),
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

type Sent = { sent: number; error?: string };

/** Reads the burst sections of one sender's output (sections burst0.. in the order of `mine`). */
function readSent(node: string, mine: Direction[], s: Map<string, { body: string }>, sent: Map<Direction, Sent>): void {
  mine.forEach((d, i) => {
    const body = s.get(sectionName(i))?.body ?? '';
    const n = Number(/sent=(\d+)/.exec(body)?.[1] ?? 0);
    sent.set(d, n > 0 ? { sent: n } : { sent: 0, error: `${node} could not send: ${body.split('\n')[0] || 'no output'}` });
  });
}

/** The bursts of `directions` (each sender sends all of its own in one script), then each receiver's counters. */
async function sendThenRead(
  directions: Direction[],
  run: Runner,
  failures: Map<string, string>,
): Promise<{ sent: Map<Direction, Sent>; after: Map<string, UdpCounters | undefined> }> {
  const sent = new Map<Direction, Sent>();
  await Promise.all(
    [...new Set(directions.map((d) => d.from))].map(async (node) => {
      const mine = directions.filter((d) => d.from === node);
      try {
        readSent(node, mine, splitSections(await run(node, roundScript(false, mine))), sent);
      } catch (error) {
        for (const d of mine) sent.set(d, { sent: 0, error: `${node}: ${(error as Error).message}` });
      }
    }),
  );
  return { sent, after: await readCounters([...new Set(directions.map((d) => d.to))], run, failures) };
}

/**
 * The first round in one round trip per node: every node sends its bursts, then a receiver whose counters before are
 * in `before` watches them until all the bursts addressed to it have arrived (sendAndWatchScript) and prints them.
 */
async function sendAndWatch(
  directions: Direction[],
  run: Runner,
  failures: Map<string, string>,
  before: ReadonlyMap<string, UdpCounters | undefined>,
  watch: { polls: number; intervalSeconds: number },
): Promise<{ sent: Map<Direction, Sent>; after: Map<string, UdpCounters | undefined> }> {
  const sent = new Map<Direction, Sent>();
  const after = new Map<string, UdpCounters | undefined>();
  const receivers = new Set(directions.map((d) => d.to));
  const nodes = [...new Set(directions.flatMap((d) => [d.from, d.to]))];
  await Promise.all(
    nodes.map(async (node) => {
      const mine = directions.filter((d) => d.from === node);
      const was = before.get(node);
      const into = directions.filter((d) => d.to === node).length;
      const target = receivers.has(node) && was ? was.inDatagrams + was.noPorts + into * COLD_START_BURST : undefined;
      try {
        const s = splitSections(await run(node, sendAndWatchScript(mine, target, watch)));
        readSent(node, mine, s, sent);
        if (receivers.has(node)) after.set(node, parseUdpCounters(s.get('udp')?.body ?? ''));
      } catch (error) {
        for (const d of mine) sent.set(d, { sent: 0, error: `${node}: ${(error as Error).message}` });
        if (receivers.has(node)) {
          failures.set(node, (error as Error).message);
          after.set(node, undefined);
        }
      }
    }),
  );
  return { sent, after };
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
 * Runs the plan. First every direction at once, in one round trip (sendAndWatch): a receiver whose InDatagrams grew
 * by at least all its senders' bursts passes every direction into it. Only the receivers left short are measured
 * again: their counters read once more (a receiver that heard nothing at all fails every direction into it there),
 * then slot by slot (one sender each at a time), to tell which direction does not arrive. `initial`: each receiver's counters read just before (verify's pre script reads them: no round trip of
 * its own); receivers missing there are read first. `run` runs a script on a node and resolves with its stdout (it
 * rejects when the node cannot run it). `watch`: how long a receiver waits for its bursts (COLD_START_WATCH).
 * Round trips: 1 on a healthy mesh, plus 1 and then 2 per slot when a receiver is short.
 */
export async function runColdStartPlan(
  plan: ColdStartPlan,
  run: Runner,
  initial: ReadonlyMap<string, UdpCounters> = new Map(),
  watch: { polls: number; intervalSeconds: number } = COLD_START_WATCH,
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
  const record = (d: Direction, s: Sent | undefined, delta: UdpCounters | undefined) => {
    const sent = s ?? { sent: 0, error: 'not sent' };
    const error =
      sent.error ?? (delta ? undefined : `${d.to}'s UDP counters could not be read${failures.has(d.to) ? `: ${failures.get(d.to)}` : ''}`);
    results.set(d, { ...d, sent: sent.sent, ...(delta ? { delta } : {}), ...(error ? { error } : {}) });
  };

  // every direction at once: bursts and watch in one round trip
  roundTrips += 1;
  const beforeFirst = new Map(counters);
  const first = await sendAndWatch(all, run, failures, counters, watch);
  const short = new Set<string>();
  for (const to of new Set(all.map((d) => d.to))) {
    const into = all.filter((d) => d.to === to);
    const delta = deltaOf(counters.get(to), first.after.get(to));
    counters.set(to, first.after.get(to));
    const expected = into.reduce((n, d) => n + (first.sent.get(d)?.sent ?? 0), 0);
    if (delta && expected > 0 && delta.inDatagrams >= expected && into.every((d) => !first.sent.get(d)?.error))
      for (const d of into)
        record(d, first.sent.get(d), { inDatagrams: Math.floor(delta.inDatagrams / into.length), noPorts: delta.noPorts });
    // short, even with one sender: its burst may have come after the watch ran out (a sender whose script started
    // late), so only the slot rounds, which read after the sends, may call a direction dropped
    else short.add(to);
  }
  if (short.size === 0) return { directions: all.map((d) => results.get(d)!).filter(Boolean), roundTrips, ms: Date.now() - started };

  // the receivers left short: read again now that every first-round script has ended (a burst of a sender that
  // started after the receiver's watch ran out must not count for a slot), then one sender at a time
  roundTrips++;
  for (const [node, c] of await readCounters([...short], run, failures)) counters.set(node, c);
  // a receiver whose counters did not grow at all since before the first round heard none of its senders, late ones
  // included (every first-round script has ended): each direction into it that was sent is dropped, and hearing the
  // senders one at a time cannot change that. Skipping its slots keeps an all-blocked receiver (a public node
  // dialled by every other node) at one round trip, not two per sender. Counters only grow: other traffic can hide
  // a drop here, as in the slots, never fake one.
  for (const to of short) {
    const total = deltaOf(beforeFirst.get(to), counters.get(to));
    const heardNothing = total !== undefined && total.inDatagrams === 0 && total.noPorts === 0;
    if (!heardNothing) continue;
    for (const d of all.filter((x) => x.to === to)) record(d, first.sent.get(d), total);
    short.delete(to);
  }
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
      const result = await connection.run(script, {
        timeoutMs: checkDeadlineMs(30_000),
        ...(options.signal ? { signal: options.signal } : {}),
      });
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
