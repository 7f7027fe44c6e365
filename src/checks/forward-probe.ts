/**
 * The port-forward probe (issue 11): before any config is pushed, a public node of the mesh sends UDP datagrams to
 * every NAT site's `publicIp:forwardedPort`, while every node of those sites watches what arrives. A forward that
 * lands on another node, on the wrong port, or on no node of the site is a STOP at the baseline gate, naming the
 * forward, the node it reached and the fix.
 *
 * How it is seen: each watching node opens a packet socket (AF_PACKET, what tcpdump uses) for a few seconds and
 * prints every UDP datagram that carries a probe token, with the addresses and ports it arrived with. A packet
 * socket sees the datagram whether or not anything listens on the port, so the same probe works before WireGuard
 * exists and with the interface already up and holding the port (where a short-lived listener could not bind).
 * It binds nothing, leaves nothing behind, and changes no state. The scripts are perl (perl-base is part of every
 * Debian and Ubuntu; most other distributions ship perl too); without perl the probe warns and judges nothing.
 *
 * Round trips: one command on each node taking part (over the run's own connections, see ./underlay-probe.ts):
 * the watchers start first, the sender as soon as every watcher says it listens, and repeats every probe a few
 * times. The watchers' output is read as it arrives (ProbeSession): once every forward was seen on its own node and
 * nowhere else, the watchers and the sender are ended after a short grace, so a correct mesh pays a few tenths of a
 * second; a probe that misses something, or sees a datagram on the wrong node, listens its whole window
 * (`timing.watchS`) and is judged as before. The first try uses FAST_PROBE (at most about 2 s); only a probe that
 * missed something is tried again with THOROUGH_PROBE, so a slow node start is not mistaken for a broken forward.
 */
import { describeMovedAddress, describeSightings, type MovedAddress } from '../topology/moved-address.js';
import type { CheckResult } from '../engine/types.js';
import type { Inventory, Node } from '../inventory/types.js';
import { publicAddressOf, siteOf } from '../inventory/types.js';
import { sh, shellQuote } from '../remote/shell.js';
import { type Connection, ENDED_EXIT, type ExecResult } from '../transport/types.js';

/**
 * When a probe listens and sends, seconds. The watchers are started first, over already open connections; each
 * prints `watching` once its socket is open, and the senders start as soon as every watcher has, or `delayS` after
 * the watchers were started if one has not said so by then (the fixed pause this replaced: never later than it).
 * The senders send `rounds` times, `intervalS` apart. The watchers stop listening `watchS` after they start, or,
 * once every datagram the probe expects has arrived where it should, `graceS` later (with the senders).
 */
export interface ProbeTiming {
  watchS: number;
  delayS: number;
  rounds: number;
  intervalS: number;
  graceS: number;
}

/** The first try: sends for 0.75 s from when the watchers listen (0.4 s at the latest), watches 2 s at most. */
export const FAST_PROBE: ProbeTiming = { watchS: 2, delayS: 0.4, rounds: 6, intervalS: 0.15, graceS: 0.15 };
/** The second try, only after a miss: sends for 2.7 s from when the watchers listen (1 s at the latest), watches 6 s at most. */
export const THOROUGH_PROBE: ProbeTiming = { watchS: 6, delayS: 1, rounds: 10, intervalS: 0.3, graceS: 0.3 };
/** A command's deadline for a probe of `timing`, ms: the watch window and 20 s for a slow channel. */
export const probeTimeoutMs = (timing: ProbeTiming) => (timing.watchS + 20) * 1000;
/** Every probe datagram starts with this, then a space and the token. */
export const PROBE_PREFIX = 'meshctl-forward-probe';

/** One UDP forward the inventory declares: `publicIp:port` on the site's router -> `address:listenPort` of `node`. */
export interface Forward {
  site: string;
  node: string;
  /** where peers dial the site: nat.publicHost (a DNS name, resolved by the sending node) or nat.publicIp */
  publicIp: string;
  port: number;
  address: string;
  listenPort: number;
  /** a random-looking word that names this forward in the datagrams */
  token: string;
}

/** A datagram a watcher saw: which token, from where, to which address and port (after the router's DNAT). */
export interface Sighting {
  token: string;
  source: string;
  destination: string;
  destinationPort: number;
}

/** What the probe found, for all forwards at once. */
export interface ForwardProbeReport {
  /** the public node that sent the probes; undefined when the mesh has none (nothing probed) */
  sender?: string;
  forwards: Forward[];
  /** node -> datagrams it saw (every watching node has an entry, possibly empty) */
  seen: Map<string, Sighting[]>;
  /** node -> why it could not take part (no perl, login failed, ...): its forwards are not judged */
  unavailable: Map<string, string>;
  /** watcher -> its site */
  siteOf: Map<string, string>;
}

/** The forwards to probe: every node of a nat site with a forwardedPort, in inventory order. */
export function forwardsOf(inventory: Inventory, nonce: string): Forward[] {
  return inventory.nodes.flatMap((node, i) => {
    const site = siteOf(inventory, node);
    if (site.kind !== 'nat' || node.forwardedPort === undefined) return [];
    return [
      {
        site: site.name,
        node: node.name,
        publicIp: publicAddressOf(site),
        port: node.forwardedPort,
        address: node.address,
        listenPort: node.listenPort,
        token: `${nonce}${i.toString(36)}`,
      },
    ];
  });
}

/** The nodes that watch: every node of a site that has at least one forward (a forward may land on any of them). */
export function watchersOf(inventory: Inventory, forwards: readonly Forward[]): Node[] {
  const sites = new Set(forwards.map((f) => f.site));
  return inventory.nodes.filter((n) => sites.has(n.site));
}

/** The node that sends: the first public node (a probe from inside a NAT site would test hairpinning instead). */
export const senderOf = (inventory: Inventory): Node | undefined => inventory.nodes.find((n) => siteOf(inventory, n).kind === 'public');

/**
 * perl: a packet socket (PF_PACKET 17, SOCK_DGRAM 2, ETH_P_IP 0x0800 in network order) for ARGV[0] seconds
 * (fractions too: the window is what 4-argument select leaves of its timeouts, as Linux reports it, because perl's
 * `time` counts whole seconds and Time::HiRes is not in perl-base); prints `watching` once the socket is open, then
 * `seen TOKEN SRC:SPORT DST:DPORT` once per token for incoming IPv4 UDP whose payload starts with the prefix, and an
 * empty line every 0.1 s: once meshctl ended the watcher (closed its channel), that write fails (SIGPIPE, or `last`
 * where SIGPIPE is ignored) and the watcher is gone within 0.1 s, even for a root login that sshd will not signal.
 */
const WATCH_PERL = String.raw`use strict; use Socket;
my ($secs, $prefix) = @ARGV;
socket(my $s, 17, 2, unpack('S', pack('n', 0x0800))) or die "packet socket: $!\n";
$| = 1; print "watching\n";
my $left = $secs; my $beat = 0; my %done; my $rin = ''; vec($rin, fileno($s), 1) = 1;
while ($left > 0) {
  my $wait = $left < 0.1 ? $left : 0.1;
  my ($n, $rest) = select(my $rout = $rin, undef, undef, $wait);
  last if $n < 0;
  $left -= $wait - $rest; $beat += $wait - $rest;
  if ($beat >= 0.1) { $beat = 0; print "\n" or last; }
  next unless $n > 0;
  my $from = recv($s, my $p, 65535, 0); next unless defined $from;
  next if length($from) >= 11 && unpack('C', substr($from, 10, 1)) == 4;
  next if length($p) < 28 || (unpack('C', $p) >> 4) != 4 || unpack('C', substr($p, 9, 1)) != 17;
  my $ihl = (unpack('C', $p) & 15) * 4; next if length($p) < $ihl + 8;
  my ($sp, $dp) = unpack('nn', substr($p, $ihl, 4)); my $data = substr($p, $ihl + 8);
  next unless $data =~ /^\Q$prefix\E ([0-9a-z]+)/; next if $done{$1}++;
  printf "seen %s %s:%d %s:%d\n", $1, inet_ntoa(substr($p, 12, 4)), $sp, inet_ntoa(substr($p, 16, 4)), $dp;
}`;

/**
 * perl: sends `PREFIX TOKEN` to each `TOKEN HOST PORT` triple (ARGV[4..]) ARGV[0] times, ARGV[1] seconds apart,
 * printing `round N` after each round (meshctl ends a sender whose datagrams have all arrived: the next write fails
 * and the sender is gone). Source port ARGV[3]: 0 sends from one unbound UDP socket (a fresh port: a new flow through
 * every NAT); any other port is written into a UDP header sent on a raw socket (IPPROTO_UDP: the kernel adds the
 * IP header; checksum 0, "none", RFC 768), so the datagrams leave from that port even while WireGuard holds it.
 */
const SEND_PERL = String.raw`use strict; use Socket;
my ($rounds, $gap, $prefix, $sport, @t) = @ARGV;
my $s;
if ($sport) { socket($s, PF_INET, SOCK_RAW, 17) or die "raw socket: $!\n"; }
else { socket($s, PF_INET, SOCK_DGRAM, 0) or die "udp socket: $!\n"; }
$| = 1;
for my $r (1 .. $rounds) {
  for (my $i = 0; $i < @t; $i += 3) {
    my $data = "$prefix $t[$i]";
    $data = pack('nnnn', $sport, $t[$i + 2], 8 + length($data), 0) . $data if $sport;
    my $to = inet_aton($t[$i + 1]) or next; # a name that does not resolve: nothing to send
    send($s, $data, 0, sockaddr_in($sport ? 0 : $t[$i + 2], $to));
  }
  print "round $r\n" or last;
  select(undef, undef, undef, $gap);
}
print "sent\n";`;

const needPerl = 'command -v perl >/dev/null 2>&1 || { echo "no perl on this node" >&2; exit 3; }';

/** The watcher's script (POSIX sh running perl). */
export const watchScript = (timing: ProbeTiming = FAST_PROBE): string =>
  `${needPerl}\nexec perl -e ${shellQuote(WATCH_PERL)} ${sh`${timing.watchS} ${PROBE_PREFIX}`}\n`;

/** A datagram to send: `PREFIX token` to host:port. */
export interface ProbeTarget {
  token: string;
  host: string;
  port: number;
}

/** The sender's script (POSIX sh running perl); `sourcePort` 0: any port, else that one (raw socket). */
export const udpSendScript = (targets: readonly ProbeTarget[], sourcePort = 0, timing: ProbeTiming = FAST_PROBE): string =>
  `${needPerl}\nexec perl -e ${shellQuote(SEND_PERL)} ${sh`${timing.rounds} ${timing.intervalS} ${PROBE_PREFIX} ${sourcePort} ${targets.flatMap((t) => [t.token, t.host, String(t.port)])}`}\n`;

/** The forward probe's sender script: every forward's token to its publicIp:forwardedPort, from any port. */
export const sendScript = (forwards: readonly Forward[], timing: ProbeTiming = FAST_PROBE): string =>
  udpSendScript(
    forwards.map((f) => ({ token: f.token, host: f.publicIp, port: f.port })),
    0,
    timing,
  );

/** Reads a watcher's output: its `seen` lines (anything else is ignored). */
export function parseWatchOutput(stdout: string): Sighting[] {
  const out: Sighting[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^seen ([0-9a-z]+) (\d+\.\d+\.\d+\.\d+:\d+) (\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(line.trim());
    if (m) out.push({ token: m[1]!, source: m[2]!, destination: m[3]!, destinationPort: Number(m[4]) });
  }
  return out;
}

/** What a watcher or sender that a stopped probe never started "returns": no output, not a failure (ProbeSession.failed). */
const NOT_RUN: ExecResult = { code: ENDED_EXIT, stdout: '', stderr: '', durationMs: 0 };

/** Sightings by watcher, as they arrive. */
export type LiveSightings = ReadonlyMap<string, readonly Sighting[]>;

/**
 * One probe run's pacing, in meshctl (both probes use it), so that a correct mesh pays only for what it needs:
 * - the senders start as soon as every watcher has printed `watching` or finished (a node without perl never says
 *   it), or `timing.delayS` after the session began, whichever comes first;
 * - the watchers' output is read as it arrives (RunOptions.onStdout); once `complete` holds for the sightings so far,
 *   every watcher and sender still running is ended `timing.graceS` later (their output so far is their result).
 *   A probe that never completes (a datagram missed, or seen where it must not be) listens its whole window.
 * Start it right before the watchers; `close()` it when every command has settled.
 */
export class ProbeSession {
  private readonly seen = new Map<string, Sighting[]>();
  private readonly ends = new Set<() => void>();
  private readonly ready: Promise<void>;
  private release: () => void = () => undefined;
  private fallback?: NodeJS.Timeout;
  private grace?: NodeJS.Timeout;
  private finished = false;
  private stopped = false;

  /** `watchers`: how many watchers will be started (the senders wait for each of them to listen). */
  constructor(
    private readonly timing: ProbeTiming,
    private waiting: number,
    private readonly complete: (seen: LiveSightings) => boolean,
  ) {
    this.ready = new Promise((resolve) => (this.release = resolve));
    if (waiting <= 0) this.release();
    else this.fallback = setTimeout(() => this.release(), timing.delayS * 1000);
  }

  /** Runs the watcher script on `connection` as `name`'s watcher; its result's stdout is all it printed. */
  async watch(name: string, connection: Connection): Promise<ExecResult> {
    let listening = false;
    let partial = '';
    const onStdout = (chunk: string, end: () => void) => {
      this.track(end);
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!listening && line.trim() === 'watching') {
          listening = true;
          this.listening();
        }
        for (const sighting of parseWatchOutput(line)) this.sighted(name, sighting);
      }
    };
    try {
      if (this.stopped) return NOT_RUN;
      return await connection.run(watchScript(this.timing), { timeoutMs: probeTimeoutMs(this.timing), onStdout });
    } finally {
      if (!listening) this.listening();
    }
  }

  /**
   * Runs a sender `script` on `connection` once the watchers listen (see the class); resolves with its result.
   * Issue 10: the sender's channel and login shell (sudo included) start at once, beside the watchers', and only its
   * script waits for them (RunOptions.sendWhen): in the lab that start took 50-150 ms on a busy node, after which the
   * watchers were listening and the senders had not begun. A stopped probe sends no script (the shell ends at once).
   */
  async send(connection: Connection, script: string): Promise<ExecResult> {
    if (this.stopped) return NOT_RUN;
    const go = this.ready.then(() => !this.stopped);
    return connection.run(script, {
      timeoutMs: probeTimeoutMs(this.timing),
      onStdout: (_chunk, end) => this.track(end),
      sendWhen: go,
    });
  }

  /** Whether `result` says its command failed (one this session ended after the probe completed did not). */
  failed(result: ExecResult): boolean {
    return result.code !== 0 && !(result.code === ENDED_EXIT && this.finished);
  }

  /** Clears the timers (call when every watcher and sender has settled). */
  close(): void {
    clearTimeout(this.fallback);
    clearTimeout(this.grace);
  }

  /**
   * Stops the probe, whatever it saw so far: every watcher and sender still running is ended now, as when the probe
   * completes (its channel closed: a watcher's next heartbeat or a sender's next round fails, so each is gone within
   * 0.15 s; one that has printed nothing yet is ended at its first line), and none starts after. For a probe whose
   * result nobody waits for any more (../engine/underlay-ahead.ts: a run that stopped at the facts gate).
   */
  stop(): void {
    this.stopped = true;
    this.finished = true;
    this.close();
    for (const end of this.ends) end();
    this.release();
  }

  /** stop() once `signal` aborts (at once if it has); returns what removes the listener (call once the probe settled). */
  stopOn(signal: AbortSignal | undefined): () => void {
    if (!signal) return () => undefined;
    const onAbort = () => this.stop();
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  }

  private track(end: () => void): void {
    if (this.finished) end();
    else this.ends.add(end);
  }

  private listening(): void {
    if (--this.waiting > 0) return;
    clearTimeout(this.fallback);
    this.release();
  }

  /** A new sighting: complete starts the grace; one that spoils it (a datagram on the wrong node) cancels it. */
  private sighted(name: string, sighting: Sighting): void {
    this.seen.set(name, [...(this.seen.get(name) ?? []), sighting]);
    if (this.finished) return;
    if (!this.complete(this.seen)) {
      clearTimeout(this.grace);
      this.grace = undefined;
      return;
    }
    this.grace ??= setTimeout(() => {
      this.finished = true;
      for (const end of this.ends) end();
    }, this.timing.graceS * 1000);
  }
}

/**
 * Whether the forward probe has all it needs: every forward seen on its own node at its listenPort, and no forward's
 * datagram on any other node (that is a verdict too, but one worth the whole window: see ProbeSession).
 */
export const forwardsComplete =
  (forwards: readonly Forward[]) =>
  (seen: LiveSightings): boolean =>
    forwards.every((f) => seen.get(f.node)?.some((s) => s.token === f.token && s.destinationPort === f.listenPort)) &&
    [...seen].every(([name, sightings]) => sightings.every((s) => (forwards.find((f) => f.token === s.token)?.node ?? name) === name));

const forwardText = (f: Forward) => `${f.publicIp}:${f.port} (site ${f.site}) -> ${f.node} ${f.address}:${f.listenPort}`;

/**
 * The verdict on `node`'s forward from a finished probe: pass when its datagrams reached `node` at its listenPort
 * and no other node; fail when they reached another node, another port, or no node of the site (with the fix);
 * warn when the probe could not judge. Nodes without a forward pass. `moved`: the running mesh's live endpoints see
 * the node's site at another public address (../topology/moved-address.ts): a forward that reaches no node is then
 * said to be that move, with its fix, before the router's forward.
 */
export function judgeForward(report: ForwardProbeReport, node: Node, id = 'forward-reaches-node', moved?: MovedAddress): CheckResult {
  const forward = report.forwards.find((f) => f.node === node.name);
  if (!forward) return { id, status: 'pass', message: 'no port-forward points at this node' };
  const what = forwardText(forward);
  if (!report.sender) return { id, status: 'warn', message: `forward ${what} not probed: the mesh has no public node to send from` };
  const down = [...report.unavailable].filter(
    ([name]) => name === report.sender || name === 'probe' || report.siteOf.get(name) === forward.site,
  );
  if (down.length > 0)
    return {
      id,
      status: 'warn',
      message: `forward ${what} not probed: ${down.map(([name, why]) => `${name}: ${why}`).join('; ')}`,
    };
  const reached = [...report.seen].flatMap(([name, sightings]) =>
    sightings.filter((s) => s.token === forward.token).map((s) => ({ name, ...s })),
  );
  const evidence = [
    `probe: ${report.sender} sent UDP to ${forward.publicIp}:${forward.port}; watched ${[...report.siteOf].flatMap(([name, site]) => (site === forward.site ? [name] : [])).join(', ')}`,
    ...reached.map((r) => `${r.name} saw it from ${r.source} at ${r.destination}:${r.destinationPort}`),
  ];
  const fix = `fix the port-forward on site ${forward.site}'s router: UDP ${forward.port} -> ${forward.address}:${forward.listenPort}`;
  const right = reached.find((r) => r.name === node.name && r.destinationPort === forward.listenPort);
  const others = reached.filter((r) => r.name !== node.name);
  if (right && others.length === 0) return { id, status: 'pass', message: `forward ${what} reaches ${node.name}`, evidence };
  if (others.length > 0)
    return {
      id,
      status: 'fail',
      message: `forward ${forward.publicIp}:${forward.port} should reach ${node.name} (${forward.address}:${forward.listenPort}) but lands on ${others.map((o) => `${o.name} (${o.destination}:${o.destinationPort})`).join(', ')}: ${fix}`,
      evidence,
    };
  const mine = reached.find((r) => r.name === node.name);
  if (mine)
    return {
      id,
      status: 'fail',
      message: `forward ${forward.publicIp}:${forward.port} reaches ${node.name} on port ${mine.destinationPort}, not its listenPort ${forward.listenPort}: ${fix}`,
      evidence,
    };
  // Q4 item 3: the running mesh sees the site at another address: that is the cause to name, not a missing forward
  if (moved && moved.seen !== forward.publicIp)
    return {
      id,
      status: 'fail',
      message: `forward ${forward.publicIp}:${forward.port} reaches no node of site ${forward.site}: ${describeMovedAddress(moved)}; if it did not, ${fix}`,
      evidence: [...evidence, `live endpoints: ${describeSightings(moved.sightings)}`],
    };
  return {
    id,
    status: 'fail',
    message: `forward ${forward.publicIp}:${forward.port} reaches no node of site ${forward.site} (it should reach ${node.name} at ${forward.address}:${forward.listenPort}): ${fix}, and check that ${forward.publicIp} is still the site's public address`,
    evidence,
  };
}

/**
 * Options of one probe run: the token nonce (random by default), the timing (FAST_PROBE by default), and `signal`:
 * once it aborts the probe stops (ProbeSession.stop) and resolves with what was seen so far, which is no verdict
 * (for a caller that no longer wants one).
 */
export interface ProbeRunOptions {
  nonce?: string;
  timing?: ProbeTiming;
  signal?: AbortSignal;
}

/**
 * Runs the probe over the whole mesh on connections that are already open (the run's own: no extra login), keyed
 * by node name: starts the watchers, then the sender (ProbeSession), and collects what each saw. Never throws for a node:
 * a node without a connection, or whose command failed, is listed in `unavailable`. Closes nothing.
 */
export async function runForwardProbe(
  inventory: Inventory,
  connections: ReadonlyMap<string, Connection>,
  { nonce = randomNonce(), timing = FAST_PROBE, signal }: ProbeRunOptions = {},
): Promise<ForwardProbeReport> {
  const forwards = forwardsOf(inventory, nonce);
  const sender = senderOf(inventory);
  const watchers = watchersOf(inventory, forwards);
  const report: ForwardProbeReport = {
    forwards,
    seen: new Map(),
    unavailable: new Map(),
    siteOf: new Map(watchers.map((w) => [w.name, w.site])),
    ...(sender ? { sender: sender.name } : {}),
  };
  if (!sender || forwards.length === 0) return report;
  for (const node of [...watchers, sender]) if (!connections.has(node.name)) report.unavailable.set(node.name, NOT_CONNECTED);
  if (!connections.has(sender.name)) return report;
  const present = watchers.filter((w) => connections.has(w.name));
  const session = new ProbeSession(timing, present.length, forwardsComplete(forwards));
  const unhook = session.stopOn(signal);
  const watching = present.map(async (w) => {
    const result = await session.watch(w.name, connections.get(w.name)!);
    if (session.failed(result)) report.unavailable.set(w.name, firstLine(result.stderr) || `watcher exited ${result.code}`);
    else report.seen.set(w.name, parseWatchOutput(result.stdout));
  });
  const sending = session.send(connections.get(sender.name)!, sendScript(forwards, timing)).then((result) => {
    if (session.failed(result)) report.unavailable.set(sender.name, firstLine(result.stderr) || `sender exited ${result.code}`);
  });
  const settled = await Promise.allSettled([...watching, sending]);
  unhook();
  session.close();
  settled.forEach((s) => {
    if (s.status === 'rejected') report.unavailable.set('probe', (s.reason as Error).message);
  });
  return report;
}

/** Why a node took no part: it is not in the run (it failed an earlier gate, or is outside --limit). */
export const NOT_CONNECTED = 'not connected in this run';

/**
 * Whether a second, slower try could change a verdict: some forward's datagrams were seen by no watcher at all
 * while every node taking part answered. A forward seen on the wrong node or port is a verdict already; a node that
 * could not take part warns, and trying again would not help it.
 */
export const forwardProbeMissed = (report: ForwardProbeReport): boolean =>
  report.unavailable.size === 0 &&
  report.forwards.some((f) => ![...report.seen.values()].some((sightings) => sightings.some((s) => s.token === f.token)));

const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';

export const randomNonce = () =>
  Math.random()
    .toString(36)
    .slice(2, 8)
    .replace(/[^0-9a-z]/g, 'x');
