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
 * Other traffic B receives can hide a drop (a false pass), never fake one: it only ADDS to the counters. So the
 * growth over a window bounds what each burst counted in it delivered, and a receiver left short is judged by what
 * its counters can tell (judgeWindow): in the first round already when its senders' bursts were sent in time for its
 * last look (all fail at once: a public node whose firewall drops every new flow costs one round trip), else after
 * one more read; the senders still open are then found by adaptive group testing, halves of a receiver's senders per
 * round, every receiver at once (runColdStartPlan): about log2(senders) + 1 rounds of two round trips for one bad
 * direction into a node, where hearing one sender at a time cost 2(N-1) round trips (a minute at 32 nodes, and the
 * farm's verify never finished at 100).
 *
 * No direction is skipped for a fresh handshake (one younger than REKEY_AFTER_TIME): a handshake proves only that
 * datagrams passed on the pair's one 5-tuple (listen port to listen port), and a stateful firewall or NAT passes
 * those for as long as conntrack remembers the flow, whoever opened it: the other side's dial, or an earlier
 * session. That is the one-way pair this probe exists to find (test/lab/firewall.test.ts: a drop added after `up`,
 * handshakes fresh and pings passing, cold start failing). Its cost is small: one short round trip on a healthy
 * mesh, which verify runs beside its checklist (./collect.ts).
 */
import { describeMovedAddress, type MovedAddress } from '../topology/moved-address.js';
import type { Inventory, Node } from '../inventory/types.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';
import { sh, shellQuote } from '../remote/shell.js';
import { endpointFor, formatEndpoint, type Endpoint } from '../topology/endpoints.js';
import { pathKind, planPaths } from '../topology/paths.js';
import { beginMarker, endMarker, splitSections, sectionScript, PATH_PRELUDE } from '../facts/sections.js';
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

/**
 * The directions, each in a slot where its receiver hears no other sender (slots = the most senders one receiver
 * has). The probe once measured a short receiver slot by slot; runColdStartPlan now measures the directions as a
 * whole and in groups, so only their union counts (fallback's plans put each direction in a slot of its own).
 */
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

/** An endpoint's host as it may stand unquoted in a list the shell splits: a DNS name or an IP address (../inventory/spec.ts). */
function plainHost(host: string): string {
  if (!/^[\w.:-]+$/.test(host)) throw new Error(`not a plain host: ${host}`);
  return host;
}

/**
 * The burst sections of one node (burst0.. in the order of `sends`), all in ONE bash when there is bash (issue 10: a
 * bash per direction was an exec per peer, 31 per node at 32 nodes): each direction a call of one shell function
 * whose group command's redirection opens its own socket (bash's /dev/udp connects a new one: a fresh source port)
 * and closes it when the group ends, in the one bash's own process (a subshell per direction was a fork per peer). A
 * direction whose socket cannot be opened prints bash's error and ends with status 3; the others still send. Without
 * bash, netcat's function (or `sent=0`), as burstCommand. The functions and the loop that calls them are written once
 * per script; the directions are ONE list of `HOST/PORT` words (`mc_dl`, handed to the bash as its `$1`), each pass
 * of the loop printing the section sectionScript printed for one call (issue 10: each direction's whole loop, twice,
 * was ~800 bytes of script per peer; then a section per direction, twice, 233 bytes per direction: 236 KB per node at
 * 1,000 nodes). Shell builtins only: no process per direction (apart from netcat's own, without bash).
 * Throws on a host that is not a plain DNS name or address (the inventory's rules admit no other).
 */
export function burstSections(sends: Direction[]): string[] {
  if (sends.length === 0) return [];
  const n = COLD_START_BURST;
  const payload = shellQuote(COLD_START_PAYLOAD);
  const list = sends.map((d) => `${plainHost(d.endpoint.host)}/${Number(d.endpoint.port)}`).join(' ');
  // burst0.. as sectionScript prints them, HOST and PORT cut from the word at its last `/`
  const loop = (fn: string, words: string) =>
    `mc_i=0; for mc_e in ${words}; do echo "${beginMarker('burst')}$mc_i"; { ${fn} "\${mc_e%/*}" "\${mc_e##*/}"; } 2>&1; printf '\\n${endMarker('burst')}%s rc=%s\\n' "$mc_i" "$?"; mc_i=$((mc_i+1)); done`;
  const inBash = [
    `mc_b() { { i=0; while [ $i -lt ${n} ]; do printf '%s\n' ${payload} >&3 2>/dev/null; i=$((i+1)); done; echo sent=${n}; } 3>"/dev/udp/$1/$2" || (exit 3); }`,
    loop('mc_b', '$1'),
  ];
  // one nc per datagram: nc would coalesce piped lines into fewer datagrams
  const alone = [
    `mc_nc() { if command -v nc >/dev/null 2>&1; then i=0; while [ $i -lt ${n} ]; do echo ${payload} | nc -u -w 0 "$1" "$2" 2>/dev/null; i=$((i+1)); done; echo sent=${n}; else echo 'sent=0 (neither bash nor nc)'; fi; }`,
    loop('mc_nc', '$mc_dl'),
  ];
  return [
    `mc_dl='${list}'`,
    `if command -v bash >/dev/null 2>&1; then ${sh`bash -c ${inBash.join('\n')}`.text} bash "$mc_dl"\nelse`,
    ...alone,
    'fi',
  ];
}

/**
 * The directions a script with burstSections sends, in their sections' order (`burst0`..), read back from its list:
 * for the stand-ins of nodes (unit tests, the farm bench) that answer a script without running it. Empty when the
 * script sends none.
 */
export function scriptBursts(script: string): Array<{ section: string; host: string; port: number }> {
  const list = /^mc_dl='([^']*)'$/m.exec(script)?.[1] ?? '';
  return list
    .split(' ')
    .filter(Boolean)
    .map((word, i) => {
      const at = word.lastIndexOf('/');
      return { section: sectionName(i), host: word.slice(0, at), port: Number(word.slice(at + 1)) };
    });
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
  /**
   * B's InDatagrams and NoPorts growth over the window that judged the direction; undefined when B's counters could
   * not be read. A direction passed with others (the sum of their bursts arrived) shows its share of the growth.
   */
  delta?: UdpCounters;
  /**
   * how many directions' bursts B's counters may have counted in that window, this one included, when more than one
   * and the direction failed on the window's growth (judgeWindow's `fail`): its own datagrams are at most `delta`
   */
  together?: number;
  /** why it could not be measured (a node failed, no sender tool) */
  error?: string;
}

export interface ColdStartResult {
  directions: DirectionResult[];
  /** sequential round trips: 1 on a healthy mesh (see runColdStartPlan) */
  roundTrips: number;
  ms: number;
}

/**
 * Runs a script on a node and resolves with its stdout; rejects when the node cannot run it. `onStdout`, when the
 * runner can, gets the output as it arrives (the probe times when a sender's bursts were sent: see onTime).
 */
export type Runner = (node: string, script: string, onStdout?: (chunk: string) => void) => Promise<string>;

/**
 * One direction's part in a round: the datagrams its sender says it sent, or why it sent none. `maybe`: the
 * sender's script could not be run or read (the connection broke), so some of its datagrams may still have left:
 * they can only add to the receiver's counters.
 */
type Sent = { sent: number; error?: string; maybe?: boolean };

/**
 * How long after a sender's bursts were known sent (their output reached meshctl) its datagrams may still be on
 * their way to the receiver, ms. The output itself travelled from the sender to meshctl after the datagrams left,
 * so a direct path between two nodes takes about as long; half a second is a wide margin (our own choice).
 */
export const COLD_START_IN_FLIGHT_MS = 500;

/**
 * What one window of a receiver's counters says about the bursts counted in it. The rule is our own reasoning
 * from the counters' one property (see the file's header): anything else that arrives only ADDS to them, so
 *   - the growth bounds from above what any ONE burst counted in the window delivered (its datagrams are part of
 *     the sum, the rest is >= 0), and
 *   - the growth reaches the sum of the bursts only when they all arrived, or when other traffic made up for the
 *     missing ones (the false pass the probe has always accepted: other traffic can hide a drop, never fake one).
 * `sent`: the datagrams of each burst judged here (each > 0); `delta`: the growth over a window that began before
 * any of them was sent and ended after all of them arrived; `others`: bursts of the probe that may also be in the
 * growth but are not judged here (their senders were late or could not be read).
 * - `pass`: InDatagrams grew by at least every judged burst, and nothing else of ours was counted: each passes
 *   (the first round's rule, as before);
 * - `alone`: one burst and nothing else of ours: the growth is its own, judged by judgeDirection as one sender's
 *   measurement always was;
 * - `fail`: InDatagrams grew by at most half of the smallest burst: no burst could have reached judgeDirection's
 *   warn (more than half arrived), so each fails; "does not arrive" when NoPorts grew by at most half the smallest
 *   burst (none could have had most of its datagrams at a closed port), "nothing listens" when NoPorts fell short of
 *   the sum by less than half the smallest burst and nothing else of ours was counted (each burst had most of its
 *   datagrams reach the node's UDP layer and find no socket, a loss or two tolerated: judgeDirection's rule). A
 *   NoPorts growth between the two cannot say which burst it came from (one may have stopped at a firewall while
 *   another hit the closed port), so it is undecided;
 * - `undecided`: anything else (some bursts arrived, some did not: which needs smaller groups).
 */
export function judgeWindow(sent: readonly number[], delta: UdpCounters, others: number): 'pass' | 'alone' | 'fail' | 'undecided' {
  if (sent.length === 0) return 'undecided';
  const sum = sent.reduce((a, b) => a + b, 0);
  const least = Math.min(...sent);
  if (others === 0 && delta.inDatagrams >= sum) return 'pass';
  if (others === 0 && sent.length === 1) return 'alone';
  if (delta.inDatagrams * 2 > least) return 'undecided';
  // none could have had most of its datagrams at a closed port, or every one had (the bursts' shortfall together is
  // less than half the smallest: a loss or two, not a burst that stopped at a firewall)
  if (delta.noPorts * 2 <= least || (others === 0 && (sum - delta.noPorts) * 2 < least)) return 'fail';
  return 'undecided';
}

/** The section that follows a node's bursts in its first-round script (sendAndWatchScript): its marker arriving says they were sent. */
const afterBursts = (receives: boolean) => beginMarker(receives ? 'watch' : 'done');

/**
 * Reads the burst sections of one sender's output (sections burst0.. in the order of `mine`). A section without
 * `sent=N` is a burst that was not sent (its socket could not be opened; no bash nor nc): nothing left the node.
 */
function readSent(node: string, mine: Direction[], s: Map<string, { body: string }>, sent: Map<Direction, Sent>): void {
  mine.forEach((d, i) => {
    const body = s.get(sectionName(i))?.body ?? '';
    const n = Number(/sent=(\d+)/.exec(body)?.[1] ?? 0);
    sent.set(d, n > 0 ? { sent: n } : { sent: 0, error: `${node} could not send: ${body.split('\n')[0] || 'no output'}` });
  });
}

/** A sender's script that could not be run: each of its directions unmeasured, its datagrams perhaps sent. */
const notRun = (node: string, error: unknown): Sent => ({ sent: 0, error: `${node}: ${(error as Error).message}`, maybe: true });

/** The bursts of `directions` (each sender sends all of its own in one script), then each receiver's counters. */
async function sendThenRead(
  directions: Direction[],
  run: Runner,
  failures: Map<string, string>,
): Promise<{ sent: Map<Direction, Sent>; after: Map<string, UdpCounters | undefined> }> {
  const sent = new Map<Direction, Sent>();
  await Promise.all(
    [...groupBy(directions, (d) => d.from)].map(async ([node, mine]) => {
      try {
        readSent(node, mine, splitSections(await run(node, roundScript(false, mine))), sent);
      } catch (error) {
        for (const d of mine) sent.set(d, notRun(node, error));
      }
    }),
  );
  return { sent, after: await readCounters([...new Set(directions.map((d) => d.to))], run, failures) };
}

/** The first round's answer: what was sent, each receiver's counters after its watch, and the watch's timing. */
interface FirstRound {
  sent: Map<Direction, Sent>;
  after: Map<string, UdpCounters | undefined>;
  /** when each node's bursts were known sent (performance.now(): the marker after them arrived, else the script's end) */
  sentAt: Map<string, number>;
  /** when each receiver's script was started (performance.now(): it cannot have begun before) */
  startedAt: Map<string, number>;
  /** how many looks each receiver's watch took after its first (each after a sleep of watch.intervalSeconds) */
  looks: Map<string, number>;
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
): Promise<FirstRound> {
  const round: FirstRound = { sent: new Map(), after: new Map(), sentAt: new Map(), startedAt: new Map(), looks: new Map() };
  const into = groupBy(directions, (d) => d.to);
  const from = groupBy(directions, (d) => d.from);
  const nodes = [...new Set(directions.flatMap((d) => [d.from, d.to]))];
  await Promise.all(
    nodes.map(async (node) => {
      const mine = from.get(node) ?? [];
      const was = before.get(node);
      const receives = into.has(node);
      const target = receives && was ? was.inDatagrams + was.noPorts + into.get(node)!.length * COLD_START_BURST : undefined;
      const marker = afterBursts(target !== undefined);
      let seen = '';
      const onStdout = (chunk: string) => {
        if (round.sentAt.has(node)) return;
        const at = Math.max(0, seen.length - marker.length);
        seen += chunk;
        if (seen.indexOf(marker, at) >= 0) {
          round.sentAt.set(node, performance.now());
          seen = '';
        }
      };
      round.startedAt.set(node, performance.now());
      try {
        const s = splitSections(await run(node, sendAndWatchScript(mine, target, watch), onStdout));
        if (!round.sentAt.has(node)) round.sentAt.set(node, performance.now());
        readSent(node, mine, s, round.sent);
        if (receives) {
          round.after.set(node, parseUdpCounters(s.get('udp')?.body ?? ''));
          const looks = /looks=(\d+)/.exec(s.get('watch')?.body ?? '')?.[1];
          if (looks !== undefined) round.looks.set(node, Number(looks));
        }
      } catch (error) {
        for (const d of mine) round.sent.set(d, notRun(node, error));
        if (receives) {
          failures.set(node, (error as Error).message);
          round.after.set(node, undefined);
        }
      }
    }),
  );
  return round;
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

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/**
 * The senders of one receiver still to be judged after the first round, and what the next group round tests
 * (adaptive group testing by halves, our own design; see runColdStartPlan): `suspects` hold a shortfall (the last
 * window over them, or over them and a group that then passed, came up short), `unknown` were left out of the
 * windows since (they are tested together, once the suspects are judged).
 */
interface Search {
  suspects: Direction[];
  unknown: Direction[];
  /** the receiver's counters when the next round's bursts are sent (read after every burst before them ended) */
  before: UdpCounters | undefined;
}

/** The group the receiver hears next: half the suspects (the smaller half), the last suspect, or every unknown one. */
function nextGroup(search: Search): { group: Direction[]; half: boolean } | undefined {
  const { suspects, unknown } = search;
  if (suspects.length > 1) return { group: suspects.slice(0, Math.floor(suspects.length / 2)), half: true };
  if (suspects.length === 1) return { group: suspects, half: false };
  return unknown.length ? { group: unknown, half: false } : undefined;
}

/**
 * Moves the search on after a window over `group` (nextGroup's) said `verdict` about its members; members judged
 * elsewhere (a sender that could not send) are already out of `tested`.
 * - half of the suspects passed: the shortfall is in the other half, which stays suspect;
 * - half of the suspects judged (failed, or a single member measured alone): the other half may hold no shortfall
 *   of its own: it joins the unknown;
 * - half of the suspects undecided: they are the suspects now, the other half joins the unknown;
 * - the last suspect or the unknown judged: gone; the unknown undecided: they are the suspects now.
 */
function advance(search: Search, tested: { group: Direction[]; half: boolean }, verdict: 'judged' | 'passed' | 'undecided'): void {
  const inGroup = new Set(tested.group);
  const rest = search.suspects.filter((d) => !inGroup.has(d));
  if (tested.half) {
    if (verdict === 'passed') search.suspects = rest;
    else {
      search.suspects = verdict === 'undecided' ? tested.group : [];
      search.unknown = [...search.unknown, ...rest];
    }
    return;
  }
  if (search.suspects.length && tested.group.every((d) => search.suspects.includes(d))) {
    search.suspects = verdict === 'undecided' ? tested.group : [];
    return;
  }
  search.unknown = [];
  if (verdict === 'undecided') search.suspects = tested.group;
}

/**
 * Runs the plan (its directions; the slots are not measured one by one any more).
 *
 * Round 1, one round trip (sendAndWatch): every node sends its bursts, every receiver watches its counters until
 * they grew by all the bursts addressed to it. Then, per receiver, judgeWindow over that window:
 * - the sum arrived: every direction into it passes (as always);
 * - a direction whose sender could not send (no socket, no tool, its script failed) is "not measured" at once: no
 *   later round would send differently, and hearing the others alone cannot change that;
 * - the watch ran out: a sender is ON TIME when its bursts were known sent (the marker after them reached meshctl)
 *   COLD_START_IN_FLIGHT_MS before the receiver's last look could have been (its script started no earlier than
 *   meshctl started it, and each look came after a sleep of the watch's interval): its datagrams were in the
 *   counters of that look, so the growth bounds each one's, and when all the senders were on time that window is
 *   judged whole (one sender alone: its verdict; little growth: all fail, e.g. a public node whose firewall drops
 *   every new flow, in ONE round trip). A late sender is never judged on that window: its datagrams may have come
 *   after the last look.
 * A receiver with a late sender (or no counters) is read again once every first-round script has ended (one round
 *   trip for all of them), and its senders still open are judged on the window from before round 1 to that read
 *   (every one of their bursts is in it: the old "heard nothing at all" rule, generalised by judgeWindow).
 * Group rounds, for the senders still open (adaptive group testing by halves, our own design after the classic
 *   binary splitting: each receiver's counters give one sum per window, so one group per receiver per round; all
 *   receivers at once): every node sends the bursts of the groups it is in, then each receiver's counters are read
 *   (two round trips per round, the read after every burst was sent, as the slots were). A group that delivered the
 *   sum passes at once, a group whose growth rules out any warn fails at once, a single sender is judged alone,
 *   anything else is split (nextGroup, advance). One sender failing among k: about log2(k) + 1 rounds (k-1 rounds
 *   one sender at a time before: 2(N-1) round trips for a public node dialled by everyone).
 * `initial`: each receiver's counters read just before (verify's pre script reads them: no round trip of its own);
 * receivers missing there are read first. `run`: see Runner. `watch`: how long a receiver waits for its bursts in
 * round 1 (COLD_START_WATCH). Round trips: 1 on a healthy mesh and when every direction into a receiver fails on
 * time; plus 1 when a sender was late; plus 2 per group round.
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
  const record = (d: Direction, s: Sent | undefined, delta: UdpCounters | undefined, together = 1) => {
    const sent = s ?? { sent: 0, error: 'not sent' };
    const error =
      sent.error ?? (delta ? undefined : `${d.to}'s UDP counters could not be read${failures.has(d.to) ? `: ${failures.get(d.to)}` : ''}`);
    // built field by field, in the keys' order: the spreads cost ~8 us a direction (N (N-1) of them; issue 10)
    const result: DirectionResult = { from: d.from, to: d.to, endpoint: d.endpoint, sent: sent.sent };
    if (delta) result.delta = delta;
    if (together > 1) result.together = together;
    if (error) result.error = error;
    results.set(d, result);
  };
  /** Records a window's verdict over `members` (judgeWindow's): 'judged' or 'passed', or 'undecided' (nothing recorded). */
  const apply = (
    members: Direction[],
    sent: Map<Direction, Sent>,
    delta: UdpCounters,
    others: number,
  ): 'judged' | 'passed' | 'undecided' => {
    const verdict = judgeWindow(
      members.map((d) => sent.get(d)!.sent),
      delta,
      others,
    );
    if (verdict === 'undecided') return verdict;
    // a pass shows each its share, as the first round always did; a fail the growth that bounds each one's
    const share = { inDatagrams: Math.floor(delta.inDatagrams / members.length), noPorts: delta.noPorts };
    for (const d of members) record(d, sent.get(d), verdict === 'pass' ? share : delta, verdict === 'fail' ? members.length + others : 1);
    return verdict === 'pass' ? 'passed' : 'judged';
  };

  // round 1: every direction at once, bursts and watch in one round trip
  roundTrips += 1;
  const beforeFirst = new Map(counters);
  const first = await sendAndWatch(all, run, failures, counters, watch);
  const searches = new Map<string, Search>();
  const readAgain = new Map<string, { open: Direction[]; others: number }>();
  for (const [to, into] of groupBy(all, (d) => d.to)) {
    const after = first.after.get(to);
    // a sender that could not send: not measured, now (its datagrams, if its script ran after all, only add)
    const maybe = into.filter((d) => first.sent.get(d)?.maybe).length;
    const sending = into.filter((d) => {
      const s = first.sent.get(d);
      if (s && s.sent > 0 && !s.error) return true;
      record(d, s, deltaOf(beforeFirst.get(to), after));
      return false;
    });
    if (!sending.length) continue;
    const delta = deltaOf(beforeFirst.get(to), after);
    const lastLook = (first.startedAt.get(to) ?? 0) + (first.looks.get(to) ?? 0) * watch.intervalSeconds * 1000;
    const late = sending.filter((d) => (first.sentAt.get(d.from) ?? Number.POSITIVE_INFINITY) + COLD_START_IN_FLIGHT_MS > lastLook);
    let open = sending;
    if (delta) {
      if (
        late.length === 0 ||
        judgeWindow(
          sending.map((d) => first.sent.get(d)!.sent),
          delta,
          maybe,
        ) === 'pass'
      ) {
        if (apply(sending, first.sent, delta, maybe) !== 'undecided') open = [];
      } else {
        // the on-time senders alone: the late ones' datagrams may be in the growth too (they only add)
        const onTime = sending.filter((d) => !late.includes(d));
        if (apply(onTime, first.sent, delta, maybe + late.length) !== 'undecided') open = late;
      }
    }
    if (!open.length) continue;
    if (delta && late.length === 0 && maybe === 0) searches.set(to, { suspects: open, unknown: [], before: after });
    else readAgain.set(to, { open, others: maybe + sending.length - open.length });
  }

  // receivers with a late sender (or no counters): read again now that every first-round script has ended, and
  // judge their open senders on the whole window since before round 1, which holds every burst sent to them
  if (readAgain.size) {
    roundTrips++;
    const again = await readCounters([...readAgain.keys()], run, failures);
    for (const [to, { open, others }] of readAgain) {
      const after = again.get(to);
      const delta = deltaOf(beforeFirst.get(to), after);
      const verdict = delta ? apply(open, first.sent, delta, others) : 'undecided';
      if (verdict === 'undecided') searches.set(to, { suspects: open, unknown: [], before: after });
    }
  }

  // group rounds: one group per receiver per round, every receiver at once
  for (let round = 0; searches.size > 0; round++) {
    const groups = new Map<string, { group: Direction[]; half: boolean }>();
    for (const [to, search] of searches) {
      const next = nextGroup(search);
      if (!next) searches.delete(to);
      else if (!search.before || round >= all.length) {
        // no counters to start from (read twice in vain), or a search that cannot end: not measured
        for (const d of [...search.suspects, ...search.unknown]) record(d, first.sent.get(d), undefined);
        searches.delete(to);
      } else groups.set(to, next);
    }
    if (!groups.size) break;
    roundTrips += 2;
    const { sent, after } = await sendThenRead(
      [...groups.values()].flatMap((g) => g.group),
      run,
      failures,
    );
    for (const [to, tested] of groups) {
      const search = searches.get(to)!;
      const delta = deltaOf(search.before, after.get(to));
      search.before = after.get(to);
      const others = tested.group.filter((d) => sent.get(d)?.maybe).length;
      const sending = tested.group.filter((d) => {
        const s = sent.get(d);
        if (s && s.sent > 0 && !s.error) return true;
        record(d, s, delta);
        return false;
      });
      // senders that could not send are judged (not measured): out of the search
      const gone = new Set(tested.group.filter((d) => !sending.includes(d)));
      search.suspects = search.suspects.filter((d) => !gone.has(d));
      search.unknown = search.unknown.filter((d) => !gone.has(d));
      if (!delta) {
        for (const d of [...search.suspects, ...search.unknown]) record(d, sent.get(d) ?? first.sent.get(d), undefined);
        searches.delete(to);
        continue;
      }
      if (!sending.length) continue;
      advance(search, { group: sending, half: tested.half }, apply(sending, sent, delta, others));
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
    async (node, script, onStdout) => {
      const connection = connections.get(node);
      if (!connection) throw new Error('not connected');
      const result = await connection.run(script, {
        timeoutMs: checkDeadlineMs(30_000),
        ...(onStdout ? { onStdout: (chunk: string) => onStdout(chunk) } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return result.stdout;
    },
    options.initial,
  );
}

export type ColdStartStatus = 'pass' | 'warn' | 'fail';

/** Whether judgeDirection passes, without making its message and evidence (verify counts the passes: issue 10). */
export function directionPasses(r: DirectionResult): boolean {
  return !r.error && !!r.delta && r.sent !== 0 && r.delta.inDatagrams >= r.sent;
}

/**
 * Whether a direction's datagrams reached its receiver's UDP layer and found no socket there: NoPorts (counted after
 * the firewall, for a datagram to a port nobody listens on) grew by most of the burst, a loss or two tolerated, while
 * InDatagrams did not. Such datagrams prove the path and the receiver's firewall pass new flows; what is left is that
 * nothing listens on the port dialled (the receiver's interface is down, or listens on another port). Q8 saw +14 and
 * +15 of 16 for a wg-quick that was stopped. Other traffic to closed ports only adds to NoPorts, as to every counter
 * here (the file's header): it can make a drop look like this, never this look like a drop.
 */
export function arrivedAtClosedPort(r: Pick<DirectionResult, 'sent' | 'delta'>): boolean {
  if (!r.delta || r.sent <= 0) return false;
  const { inDatagrams, noPorts } = r.delta;
  return noPorts >= r.sent || (noPorts * 2 > r.sent && Math.max(0, inDatagrams) * 2 <= r.sent);
}

/**
 * The verdict for one direction: all arrived (pass), none or few (fail), some (warn), not measured (warn). `moved`:
 * the live endpoints of the whole mesh see the target's NAT site at another public address (Q4 item 3,
 * ../topology/moved-address.ts); a flow to the inventory's address that does not arrive then names that move, with
 * its fix, instead of the target's firewall.
 */
export function judgeDirection(r: DirectionResult, moved?: MovedAddress): { status: ColdStartStatus; message: string; evidence: string[] } {
  const at = formatEndpoint(r.endpoint);
  const evidence = [
    `${r.from} sent ${r.sent} datagrams from a fresh source port to ${at}`,
    ...(r.delta ? [`${r.to} /proc/net/snmp Udp: InDatagrams +${r.delta.inDatagrams}, NoPorts +${r.delta.noPorts}`] : []),
    ...(r.together && r.together > 1
      ? [`${r.to}'s counters counted the bursts of ${r.together} senders at once: ${r.from}'s arrivals are at most that growth`]
      : []),
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
  // most of the burst at a closed port proves the path and the firewall pass it, and names the one cause left
  if (arrivedAtClosedPort(r))
    return {
      status: 'fail',
      message:
        `${r.from} cannot start a session with ${r.to}: datagrams to ${at} arrive` +
        (noPorts >= r.sent ? '' : ` (${Math.min(noPorts, r.sent)} of ${r.sent} counted)`) +
        `, but nothing listens on that port (${r.to}'s firewall passed them: its WireGuard interface is down or listens on another port)`,
      evidence,
    };
  const arrived = Math.max(0, inDatagrams);
  if (arrived * 2 > r.sent)
    return {
      status: 'warn',
      message: `only some of ${r.from}'s datagrams to ${at} reached ${r.to} (${arrived} of ${r.sent}): a lossy path or a rate limit`,
      evidence,
    };
  if (moved?.agree && r.endpoint.host === moved.inventoryIp)
    return {
      status: 'fail',
      message: `${r.from} cannot start a session with ${r.to} from cold: a new flow to ${at} does not arrive: ${describeMovedAddress(moved)}`,
      evidence,
    };
  return {
    status: 'fail',
    message: `${r.from} cannot start a session with ${r.to} from cold: a new flow to ${at} does not arrive (a one-way pair: a session that ${r.to} opened works only while conntrack remembers it); see ${r.to}'s firewall check`,
    evidence,
  };
}

export type { Node };
