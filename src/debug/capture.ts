/**
 * Packet captures for `meshctl debug --tcpdump`: scripts to start and stop tcpdump on a node, the provocation the
 * sender runs, and the pure reading of `tcpdump -n -r FILE` lines into counts.
 *
 * A capture is started as `timeout <S+5> tcpdump ... -w /tmp/meshctl-debug-XXXXXX/capture.pcap &` so it dies on its
 * own even if meshctl loses the connection; meshctl kills it (by the pid it printed) as soon as the provocation is
 * done, and always again in a finally block, also on Ctrl-C. The remote files are removed after download.
 *
 * The pcaps hold the overlay's plaintext (ICMP, and whatever else crosses wg0 meanwhile): they are written under
 * umask 077 into a private directory (`mktemp -d`, mode 0700), and a capture left behind by an earlier run that was
 * cut off (its tcpdump no longer running) is deleted by the next capture's start.
 */
import { shellQuote } from '../remote/shell.js';
import { PATH_PRELUDE, sectionScript, splitSections } from '../facts/sections.js';

export interface CaptureHandle {
  node: string;
  pid: number;
  /** remote private directory (mktemp -d, mode 0700) holding capture.pcap and capture.log */
  base: string;
}

/** The files of a capture in its directory. */
const pcapOf = (base: string) => `${base}/capture.pcap`;
const logOf = (base: string) => `${base}/capture.log`;

/**
 * Deletes captures of earlier runs whose tcpdump/timeout is gone (an interrupted run's): directories of this layout
 * and files of the older one (/tmp/meshctl-debug-XXXXXX.pcap). A capture whose process still runs (another
 * meshctl's, right now) is left alone.
 */
export const STALE_CAPTURE_CLEANUP = [
  'for old in /tmp/meshctl-debug-*; do',
  '  [ -e "$old" ] || continue',
  '  stem=${old%%.*}; busy=no',
  '  for p in $(pgrep -x tcpdump; pgrep -x timeout); do grep -q "$stem" /proc/$p/cmdline 2>/dev/null && busy=yes; done',
  '  [ $busy = no ] && rm -rf -- "$old"',
  'done',
].join('\n');

export const CAPTURE_PREFIX = '/tmp/meshctl-debug-';

/** The tcpdump filter: the node's WireGuard UDP port (underlay) and ICMP (wg0 pings and path-MTU errors). */
export const captureFilter = (listenPort: number) => `udp port ${Number(listenPort)} or icmp`;

export function startCaptureScript(listenPort: number, seconds: number): string {
  const lifetime = Math.ceil(seconds) + 5;
  return [
    PATH_PRELUDE,
    'command -v tcpdump >/dev/null 2>&1 || { echo "error=tcpdump is not installed"; exit 0; }',
    'umask 077',
    STALE_CAPTURE_CLEANUP,
    `f=$(mktemp -d ${CAPTURE_PREFIX}XXXXXX) && chmod 700 "$f" || { echo "error=mktemp failed"; exit 0; }`,
    // -Z root: tcpdump would otherwise drop to its own user before opening the output file in root's /tmp
    `nohup timeout ${lifetime} tcpdump --immediate-mode -Z root -U -n -s 256 -c 20000 -i any -w "$f/capture.pcap" ${shellQuote(captureFilter(listenPort))} </dev/null >"$f/capture.log" 2>&1 &`,
    'pid=$!',
    // wait (at most 3 s) until tcpdump says it listens, so the provocation is not sent into the void
    'i=0; while [ $i -lt 30 ] && ! grep -q listening "$f/capture.log" 2>/dev/null; do sleep 0.1; i=$((i+1)); done',
    'if grep -q listening "$f/capture.log" 2>/dev/null; then echo "pid=$pid base=$f"; else echo "pid=$pid base=$f"; echo "error=$(head -c 300 "$f/capture.log" | tr "\\n" " ")"; fi',
  ].join('\n');
}

export function parseStartCapture(node: string, stdout: string): CaptureHandle | { node: string; error: string; handle?: CaptureHandle } {
  const pid = /pid=(\d+)/.exec(stdout)?.[1];
  const base = /base=(\/tmp\/meshctl-debug-[A-Za-z0-9]+)/.exec(stdout)?.[1];
  const error = /error=(.*)$/m.exec(stdout)?.[1];
  const handle = pid && base ? { node, pid: Number(pid), base } : undefined;
  if (error || !handle) return { node, error: error?.trim() || 'capture did not start', ...(handle ? { handle } : {}) };
  return handle;
}

const safeBase = (base: string) => {
  if (!/^\/tmp\/meshctl-debug-[A-Za-z0-9]+$/.test(base)) throw new Error(`refusing to touch ${base}`);
  return base;
};

/** Stops the capture, prints its packets as text and the pcap in base64, then deletes every remote file of it. */
export function stopCaptureScript(handle: CaptureHandle, { download = true } = {}): string {
  const f = safeBase(handle.base);
  return [
    PATH_PRELUDE,
    // kill only our own capture: the pid must still be the `timeout` we started on this file
    `if grep -q ${shellQuote(f)} /proc/${handle.pid}/cmdline 2>/dev/null; then kill ${handle.pid} 2>/dev/null; fi`,
    `i=0; while [ $i -lt 20 ] && grep -q ${shellQuote(f)} /proc/${handle.pid}/cmdline 2>/dev/null; do sleep 0.1; i=$((i+1)); done`,
    sectionScript('packets', `tcpdump -n -r ${shellQuote(pcapOf(f))} 2>/dev/null | head -n 5000`),
    ...(download ? [sectionScript('pcap', `base64 ${shellQuote(pcapOf(f))}`)] : []),
    // tcpdump or timeout processes still writing this capture (the script's own shell holds the path too: not
    // pgrep -f; and the transport runs this script under a `timeout` of its own, our parent, whose argv holds it)
    sectionScript(
      'left',
      `for p in $(pgrep -x tcpdump; pgrep -x timeout); do [ "$p" = "$PPID" ] && continue; grep -q ${shellQuote(f)} /proc/$p/cmdline 2>/dev/null && echo $p; done; true`,
    ),
    `rm -f ${shellQuote(pcapOf(f))} ${shellQuote(logOf(f))}; rmdir ${shellQuote(f)}`,
    sectionScript('done', 'true'),
  ].join('\n');
}

export interface StoppedCapture {
  packets: string[];
  pcap?: Buffer;
  /** pids still matching the capture after the kill (should be none) */
  leftovers: number[];
  complete: boolean;
}

export function parseStopCapture(stdout: string): StoppedCapture {
  const s = splitSections(stdout);
  const b64 = s.get('pcap')?.body.replace(/\s+/g, '') ?? '';
  return {
    packets: (s.get('packets')?.body ?? '').split('\n').filter((l) => /^\d\d:\d\d:\d\d/.test(l)),
    ...(b64 && s.get('pcap')?.rc === 0 ? { pcap: Buffer.from(b64, 'base64') } : {}),
    leftovers: (s.get('left')?.body ?? '')
      .split('\n')
      .filter((l) => /^\d+$/.test(l.trim()))
      .map(Number),
    complete: s.has('done'),
  };
}

/** The last-resort cleanup (finally blocks): kill and delete, no output needed. */
export function cleanupCaptureScript(handle: CaptureHandle): string {
  const f = safeBase(handle.base);
  return `if grep -q ${shellQuote(f)} /proc/${handle.pid}/cmdline 2>/dev/null; then kill ${handle.pid} 2>/dev/null; fi; rm -f ${shellQuote(pcapOf(f))} ${shellQuote(logOf(f))}; rmdir ${shellQuote(f)} 2>/dev/null; true`;
}

// ---------------------------------------------------------------------------------------------------------------
// Provocation from the sender

export interface Provocation {
  /** the receiver's overlay IP: pinged over wg0 (this triggers a handshake when there is no session) */
  overlayIp: string;
  /** where the sender dials the receiver (its Endpoint): a marker datagram goes there, outside WireGuard */
  endpoint?: { host: string; port: number };
  /** unique payload of the marker datagram; its length tells it apart from WireGuard messages */
  marker: string;
  seconds: number;
  /** interface MTU: one DF ping of MTU-28 bytes shows whether large packets pass */
  mtu: number;
}

/**
 * Whether the provocation's `marker` section reports a marker datagram sent: one `sent` line per datagram. Its
 * "no endpoint: marker not sent" (a sender with no endpoint for the receiver) and "no bash" lines are not.
 */
export const markerWasSent = (markerBody: string): boolean => /^sent$/m.test(markerBody);

export function provokeScript(p: Provocation): string {
  const ip = shellQuote(p.overlayIp);
  const count = Math.max(3, Math.round(p.seconds / 0.5));
  const marker = p.endpoint
    ? `if command -v bash >/dev/null 2>&1; then for n in 1 2 3; do bash -c 'printf %s "$0" > /dev/udp/$1/$2' ${shellQuote(p.marker)} ${shellQuote(p.endpoint.host)} ${Number(p.endpoint.port)} && echo sent; sleep 0.2; done; else echo "no bash: marker not sent"; fi`
    : 'echo "no endpoint: marker not sent"';
  return [
    PATH_PRELUDE,
    sectionScript('marker', marker),
    sectionScript('ping', `ping -n -q -c ${count} -i 0.5 -w ${Math.ceil(p.seconds) + 1} ${ip}`),
    sectionScript('large', `ping -n -q -M do -s ${Number(p.mtu) - 28} -c 3 -i 0.2 -W 1 ${ip}`),
    sectionScript('done', 'true'),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Reading packets

export interface CaptureCounts {
  /** UDP datagrams that came in from the sender (its LAN address or its site's public IP) */
  udpFromSender: number;
  /** of those, WireGuard handshake initiations (148 bytes) */
  initiationsFromSender: number;
  /** handshake responses (92 bytes) this node sent towards the sender */
  responsesToSender: number;
  /** WireGuard traffic in the other direction: responses (92 bytes) received from the receiver's side */
  responsesFromReceiver: number;
  /** marker datagrams received */
  markers: number;
  /** ICMP echo requests / replies seen on the WireGuard interface */
  icmpRequestsIn: number;
  icmpRepliesOut: number;
  icmpRepliesIn: number;
  /** all packets read */
  total: number;
}

interface Line {
  iface: string;
  dir: string;
  src: string;
  sport?: number;
  dst: string;
  dport?: number;
  udpLength?: number;
  icmp?: 'request' | 'reply';
}

const LINE = /^\S+\s+(\S+)\s+(In|Out|M|B|P|)\s*IP (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))? > (\d+\.\d+\.\d+\.\d+)(?:\.(\d+))?: (.*)$/;

export function parsePacketLine(text: string): Line | undefined {
  const m = LINE.exec(text.trim());
  if (!m) return undefined;
  const rest = m[7]!;
  const udp = /UDP, length (\d+)/.exec(rest);
  const icmp = /ICMP echo (request|reply)/.exec(rest);
  return {
    iface: m[1]!,
    dir: m[2]!,
    src: m[3]!,
    ...(m[4] ? { sport: Number(m[4]) } : {}),
    dst: m[5]!,
    ...(m[6] ? { dport: Number(m[6]) } : {}),
    ...(udp ? { udpLength: Number(udp[1]) } : {}),
    ...(icmp ? { icmp: icmp[1] as 'request' | 'reply' } : {}),
  };
}

export interface CountContext {
  /** underlay addresses the sender's datagrams may come from (its address; its site's public IP behind NAT) */
  senderAddresses: string[];
  /** underlay addresses the receiver's datagrams may come from, as the sender sees them */
  receiverAddresses: string[];
  senderOverlay: string;
  receiverOverlay: string;
  markerLength: number;
  /** the WireGuard interface name (wg0) */
  iface: string;
}

/** Counts of a capture that saw nothing (every counter 0). */
export const noPackets = (): CaptureCounts => ({
  udpFromSender: 0,
  initiationsFromSender: 0,
  responsesToSender: 0,
  responsesFromReceiver: 0,
  markers: 0,
  icmpRequestsIn: 0,
  icmpRepliesOut: 0,
  icmpRepliesIn: 0,
  total: 0,
});

export function countPackets(lines: string[], ctx: CountContext): CaptureCounts {
  const c = noPackets();
  const fromSender = new Set(ctx.senderAddresses);
  const fromReceiver = new Set(ctx.receiverAddresses);
  for (const text of lines) {
    const l = parsePacketLine(text);
    if (!l) continue;
    c.total++;
    if (l.udpLength !== undefined) {
      const incoming = l.dir !== 'Out';
      if (incoming && fromSender.has(l.src)) {
        c.udpFromSender++;
        if (l.udpLength === 148) c.initiationsFromSender++;
        if (l.udpLength === ctx.markerLength) c.markers++;
      }
      if (!incoming && fromSender.has(l.dst) && l.udpLength === 92) c.responsesToSender++;
      if (incoming && fromReceiver.has(l.src) && l.udpLength === 92) c.responsesFromReceiver++;
    } else if (l.icmp) {
      if (l.icmp === 'request' && l.dir !== 'Out' && l.src === ctx.senderOverlay) c.icmpRequestsIn++;
      if (l.icmp === 'reply' && l.dir === 'Out' && l.dst === ctx.senderOverlay) c.icmpRepliesOut++;
      if (l.icmp === 'reply' && l.dir !== 'Out' && l.src === ctx.receiverOverlay) c.icmpRepliesIn++;
    }
  }
  return c;
}
