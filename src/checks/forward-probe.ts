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
 * Round trips: one SSH login per node taking part (opened together), then one command on each at once: the
 * watchers run for WATCH_SECONDS, the sender starts after a short pause and repeats every probe a few times.
 */
import type { CheckResult } from '../engine/types.js';
import type { Inventory, Node } from '../inventory/types.js';
import { publicAddressOf, siteOf } from '../inventory/types.js';
import { sh, shellQuote } from '../remote/shell.js';
import type { Connection } from '../transport/types.js';

/** How long each watcher listens, seconds: the sender sends from 1 s to 4 s after it starts (slack for a slow login). */
export const WATCH_SECONDS = 6;
const SEND_ROUNDS = 10;
const SEND_INTERVAL_S = 0.3;
const SEND_DELAY_S = 1;
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
 * perl: a packet socket (PF_PACKET 17, SOCK_DGRAM 2, ETH_P_IP 0x0800 in network order) for ARGV[0] seconds;
 * prints `seen TOKEN SRC:SPORT DST:DPORT` once per token for incoming IPv4 UDP whose payload starts with the prefix.
 */
const WATCH_PERL = String.raw`use strict; use Socket;
my ($secs, $prefix) = @ARGV;
socket(my $s, 17, 2, unpack('S', pack('n', 0x0800))) or die "packet socket: $!\n";
print "watching\n"; $| = 1;
my $end = time + $secs; my %done; my $rin = ''; vec($rin, fileno($s), 1) = 1;
while ((my $left = $end - time) > 0) {
  next unless select(my $rout = $rin, undef, undef, $left) > 0;
  my $from = recv($s, my $p, 65535, 0); next unless defined $from;
  next if length($from) >= 11 && unpack('C', substr($from, 10, 1)) == 4;
  next if length($p) < 28 || (unpack('C', $p) >> 4) != 4 || unpack('C', substr($p, 9, 1)) != 17;
  my $ihl = (unpack('C', $p) & 15) * 4; next if length($p) < $ihl + 8;
  my ($sp, $dp) = unpack('nn', substr($p, $ihl, 4)); my $data = substr($p, $ihl + 8);
  next unless $data =~ /^\Q$prefix\E ([0-9a-z]+)/; next if $done{$1}++;
  printf "seen %s %s:%d %s:%d\n", $1, inet_ntoa(substr($p, 12, 4)), $sp, inet_ntoa(substr($p, 16, 4)), $dp;
}`;

/**
 * perl: after ARGV[0] seconds, sends `PREFIX TOKEN` to each `TOKEN HOST PORT` triple (ARGV[5..]) ARGV[1] times,
 * ARGV[2] seconds apart. Source port ARGV[4]: 0 sends from one unbound UDP socket (a fresh port: a new flow through
 * every NAT); any other port is written into a UDP header sent on a raw socket (IPPROTO_UDP: the kernel adds the
 * IP header; checksum 0, "none", RFC 768), so the datagrams leave from that port even while WireGuard holds it.
 */
const SEND_PERL = String.raw`use strict; use Socket;
my ($delay, $rounds, $gap, $prefix, $sport, @t) = @ARGV;
my $s;
if ($sport) { socket($s, PF_INET, SOCK_RAW, 17) or die "raw socket: $!\n"; }
else { socket($s, PF_INET, SOCK_DGRAM, 0) or die "udp socket: $!\n"; }
select(undef, undef, undef, $delay);
for my $r (1 .. $rounds) {
  for (my $i = 0; $i < @t; $i += 3) {
    my $data = "$prefix $t[$i]";
    $data = pack('nnnn', $sport, $t[$i + 2], 8 + length($data), 0) . $data if $sport;
    my $to = inet_aton($t[$i + 1]) or next; # a name that does not resolve: nothing to send
    send($s, $data, 0, sockaddr_in($sport ? 0 : $t[$i + 2], $to));
  }
  select(undef, undef, undef, $gap);
}
print "sent\n";`;

const needPerl = 'command -v perl >/dev/null 2>&1 || { echo "no perl on this node" >&2; exit 3; }';

/** The watcher's script (POSIX sh running perl). */
export const watchScript = (seconds = WATCH_SECONDS): string =>
  `${needPerl}\nexec perl -e ${shellQuote(WATCH_PERL)} ${sh`${seconds} ${PROBE_PREFIX}`}\n`;

/** A datagram to send: `PREFIX token` to host:port. */
export interface ProbeTarget {
  token: string;
  host: string;
  port: number;
}

/** The sender's script (POSIX sh running perl); `sourcePort` 0: any port, else that one (raw socket). */
export const udpSendScript = (targets: readonly ProbeTarget[], sourcePort = 0): string =>
  `${needPerl}\nexec perl -e ${shellQuote(SEND_PERL)} ${sh`${SEND_DELAY_S} ${SEND_ROUNDS} ${SEND_INTERVAL_S} ${PROBE_PREFIX} ${sourcePort} ${targets.flatMap((t) => [t.token, t.host, String(t.port)])}`}\n`;

/** The forward probe's sender script: every forward's token to its publicIp:forwardedPort, from any port. */
export const sendScript = (forwards: readonly Forward[]): string =>
  udpSendScript(forwards.map((f) => ({ token: f.token, host: f.publicIp, port: f.port })));

/** Reads a watcher's output: its `seen` lines (anything else is ignored). */
export function parseWatchOutput(stdout: string): Sighting[] {
  const out: Sighting[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^seen ([0-9a-z]+) (\d+\.\d+\.\d+\.\d+:\d+) (\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(line.trim());
    if (m) out.push({ token: m[1]!, source: m[2]!, destination: m[3]!, destinationPort: Number(m[4]) });
  }
  return out;
}

const forwardText = (f: Forward) => `${f.publicIp}:${f.port} (site ${f.site}) -> ${f.node} ${f.address}:${f.listenPort}`;

/**
 * The verdict on `node`'s forward from a finished probe: pass when its datagrams reached `node` at its listenPort
 * and no other node; fail when they reached another node, another port, or no node of the site (with the fix);
 * warn when the probe could not judge. Nodes without a forward pass.
 */
export function judgeForward(report: ForwardProbeReport, node: Node, id = 'forward-reaches-node'): CheckResult {
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
  return {
    id,
    status: 'fail',
    message: `forward ${forward.publicIp}:${forward.port} reaches no node of site ${forward.site} (it should reach ${node.name} at ${forward.address}:${forward.listenPort}): ${fix}, and check that ${forward.publicIp} is still the site's public address`,
    evidence,
  };
}

/**
 * Runs the probe over the whole mesh: logs into the sender and every watcher (`open`), starts the watchers and the
 * sender together, and collects what each saw. Never throws for a node: a node that cannot take part is listed in
 * `unavailable`. Every connection it opens is closed.
 */
export async function runForwardProbe(
  inventory: Inventory,
  open: (node: Node) => Promise<Connection>,
  nonce: string = randomNonce(),
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
  const taking = [...watchers, sender];
  const connections = new Map<string, Connection>();
  await Promise.all(
    taking.map(async (node) => {
      try {
        connections.set(node.name, await open(node));
      } catch (error) {
        report.unavailable.set(node.name, `cannot log in: ${(error as Error).message}`);
      }
    }),
  );
  try {
    if (!connections.has(sender.name)) return report;
    const timeoutMs = (WATCH_SECONDS + 20) * 1000;
    const watching = watchers
      .filter((w) => connections.has(w.name))
      .map(async (w) => {
        const result = await connections.get(w.name)!.run(watchScript(), { timeoutMs });
        if (result.code !== 0) report.unavailable.set(w.name, firstLine(result.stderr) || `watcher exited ${result.code}`);
        else report.seen.set(w.name, parseWatchOutput(result.stdout));
      });
    const sending = connections
      .get(sender.name)!
      .run(sendScript(forwards), { timeoutMs })
      .then((result) => {
        if (result.code !== 0) report.unavailable.set(sender.name, firstLine(result.stderr) || `sender exited ${result.code}`);
      });
    const settled = await Promise.allSettled([...watching, sending]);
    settled.forEach((s) => {
      if (s.status === 'rejected') report.unavailable.set('probe', (s.reason as Error).message);
    });
  } finally {
    await Promise.all([...connections.values()].map((c) => c.close().catch(() => undefined)));
  }
  return report;
}

const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';

export const randomNonce = () =>
  Math.random()
    .toString(36)
    .slice(2, 8)
    .replace(/[^0-9a-z]/g, 'x');

/**
 * One probe per run, shared by every node's check: the first node's check starts it, the others await the same
 * report. Keyed by the run's `reconnect` function (a new one per run), so a later run probes afresh.
 */
const probes = new WeakMap<object, Promise<ForwardProbeReport>>();

export function sharedForwardProbe(inventory: Inventory, open: (node: Node) => Promise<Connection>): Promise<ForwardProbeReport> {
  let probe = probes.get(open);
  if (!probe) {
    probe = runForwardProbe(inventory, open);
    probes.set(open, probe);
  }
  return probe;
}
