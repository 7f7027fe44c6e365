/**
 * An in-process fake of a CONVERGED mesh node behind the Connection seam (src/transport/types.ts), for measuring
 * what `meshctl verify` costs meshctl itself at farm scale (./verify-cost.ts), with no SSH, sandbox or process.
 * Each node runs the design meshctl would have given it (desiredNodeConfig over the farm's inventory, every node's
 * public key ./fake-node.ts fakePublicKey) and answers verify's three scripts as a healthy node would:
 *   1. the first script (src/checks/collect.ts firstScript): uid 0, its clock, live key, port, peers (handshakes 20 s
 *      old) and UDP counters, streamed first as the pre part (RunOptions.onStdout, as ssh delivers it), then the
 *      checklist: `ip -j addr`, `ss`, the key file, the wg-quick file meshctl renders for it (and confmeta with its
 *      sha256 and key line counts, as the real command prints them), one route per peer via
 *      the interface, rp_filter loose, the service active, an empty firewall (the shapes of the real tools' captures:
 *      test/fixtures/probes/homelab.ts, whose serialisers this reuses);
 *   2. the cold-start probe (src/checks/cold-start.ts): every burst sent, and counters that grew by more than every
 *      burst addressed to the node (so every direction passes);
 *   3. the ping + path-MTU round: every peer in the script answers 3 of 3, the expected payload passes with DF, then
 *      the clock and the peers again.
 * A script it does not know is answered with exit 0 and counted in `unknown`. Nothing is kept between scripts but
 * the node's counter: each answer is made from the design when its turn comes, so the process's RSS is meshctl's own
 * plus the answers in flight. Its own CPU is counted (`cpuMicros`) so the bench can report meshctl's alone.
 */
import { createHash } from 'node:crypto';
import type { Inventory } from '../../../src/inventory/types.js';
import { desiredNodeConfig } from '../../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../../src/render/wgquick.js';
import type { Connection, ConnectionStats, ExecResult, RunOptions } from '../../../src/transport/types.js';
import { checklistStdout, dumpLines, pingStdout, type FakeNode, type FakePeer } from '../../../test/fixtures/probes/homelab.js';
import { arrives, fakePublicKey } from './fake-node.js';
import { scriptBursts } from '../../../src/checks/cold-start.js';

/** The sections verify's pre script reads (src/checks/collect.ts PRE_FACTS); the checklist's are the rest. */
const PRE_SECTIONS = new Set(['now', 'pubkey', 'port', 'dump', 'udpsnmp']);

const section = (name: string, body: string, rc = 0) => `@@meshctl begin ${name}\n${body}\n@@meshctl end ${name} rc=${rc}\n`;

/** The sections of a probe's stdout, in order (name, whole text). */
function sectionsOf(stdout: string): Array<{ name: string; text: string }> {
  const out: Array<{ name: string; text: string }> = [];
  const re = /^@@meshctl begin (\S+)\n[\s\S]*?^@@meshctl end \1 rc=\d+\n/gm;
  for (const m of stdout.matchAll(re)) out.push({ name: m[1]!, text: m[0] });
  return out;
}

/** What the converged farm's nodes share: the design's inputs, the fakes' own CPU, the scripts no rule knew. */
export class ConvergedFarm {
  /** CPU time spent inside the fakes' answers (µs, user + system), to subtract from the process's */
  cpuMicros = 0;
  /** first line of each script no rule knew, with how often it came */
  readonly unknown = new Map<string, number>();
  /** the answers made so far, by script (the pre part, the checklist, the cold-start probe, the ping round) */
  readonly answered = { pre: 0, checklist: 0, coldStart: 0, ping: 0 };
  /** called as each answer has been made (the bench's memory trace samples then) */
  onAnswer: () => void = () => undefined;
  readonly keys: Map<string, string>;
  /** per node: its UDP counter (grows by GROWTH at every read, more than every burst it can be sent) */
  readonly counters = new Map<string, number>();

  constructor(readonly inventory: Inventory) {
    this.keys = new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)]));
  }

  /** One connection per node, all "connected". */
  connections(): Map<string, Connection> {
    return new Map(this.inventory.nodes.map((n) => [n.name, new ConvergedNode(n.name, this)]));
  }

  /** Node `name` as a healthy node holds it now (made from the design at each call: the farm keeps nothing). */
  state(name: string, now: number): FakeNode {
    const d = desiredNodeConfig(this.inventory, name, this.keys);
    const self = this.inventory.nodes.find((n) => n.name === name)!;
    const rp = typeof this.inventory.mesh.rpFilter === 'number' ? this.inventory.mesh.rpFilter : 2;
    const peers: FakePeer[] = d.peers.map((p, i) => ({
      publicKey: p.publicKey,
      ...(p.endpoint ? { endpoint: p.endpoint } : {}),
      allowedIps: [...p.allowedIps],
      latestHandshake: now - 20,
      rx: 3380 + i,
      tx: 3436 + i,
      ...(p.persistentKeepalive ? { keepalive: p.persistentKeepalive } : {}),
    }));
    return {
      name,
      now,
      iface: { up: true, mtu: d.mtu, addresses: [d.address], ifindex: 5 },
      listen: [`UNCONN 0      0      0.0.0.0:${d.listenPort} 0.0.0.0:* users:(("wireguard-go",pid=812,fd=9))`],
      livePublicKey: d.publicKey,
      filePublicKey: d.publicKey,
      listenPort: d.listenPort,
      peers,
      config: renderWgQuickConfig(d),
      routes: Object.fromEntries(d.peers.map((p) => [p.allowedIps[0]!.replace('/32', ''), { dev: d.interface, prefsrc: self.overlayIp }])),
      rp: { all: rp, default: rp, iface: rp },
      service: { active: 'active', enabled: 'enabled' },
      firewall: ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT'],
    };
  }

  /** The node's UDP counters section (`name`: udp in the probe, udpsnmp in the pre script), grown since the last read. */
  udp(node: string, name: string): string {
    const value = (this.counters.get(node) ?? 0) + GROWTH;
    this.counters.set(node, value);
    return section(name, `Udp: InDatagrams NoPorts\nUdp: ${value} 0`);
  }
}

/** A counter's growth per read: more than the bursts of every other node of the largest farm (16 x 999). */
const GROWTH = 1_000_000;

/** One converged node. */
export class ConvergedNode implements Connection {
  readonly stats: ConnectionStats = { commands: 0, remoteMs: 0, connectMs: 0 };
  readonly target: string;

  constructor(
    readonly node: string,
    private readonly farm: ConvergedFarm,
  ) {
    this.target = `root@${node}:22`;
  }

  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    if (!(await arrives(this.stats, options))) return { code: 0, stdout: '', stderr: '', durationMs: 0 };
    const timed = <T>(make: () => T): T => {
      const before = process.cpuUsage();
      try {
        return make();
      } finally {
        const used = process.cpuUsage(before);
        this.farm.cpuMicros += used.user + used.system;
        this.farm.onAnswer();
      }
    };
    if (script.includes("begin pre-done'")) {
      const now = Math.floor(Date.now() / 1000);
      const pre = timed(() => this.pre(script, now));
      // the pre part first, as ssh streams it: meshctl starts the probes on it while the checklist "runs", whose
      // output is made (arrives) a turn later
      options.onStdout?.(pre, () => undefined);
      await new Promise((resolve) => setImmediate(resolve));
      const rest = script.includes("begin confmeta'") ? timed(() => this.checklist(now)) : '';
      options.onStdout?.(rest, () => undefined);
      return { code: 0, stdout: pre + rest, stderr: '', durationMs: 0 };
    }
    const stdout = timed(() => this.answer(script));
    return { code: 0, stdout, stderr: '', durationMs: 0 };
  }

  /** The pre part of verify's first script (with uid when asked). */
  private pre(script: string, now: number): string {
    const n = this.farm.state(this.node, now);
    this.farm.answered.pre++;
    return [
      ...(script.includes("begin uid'") ? [section('uid', '0')] : []),
      section('now', String(now)),
      section('pubkey', n.livePublicKey!),
      section('port', String(n.listenPort)),
      section('dump', dumpLines(n.peers)),
      this.farm.udp(this.node, 'udpsnmp'),
      section('pre-done', ''),
    ].join('');
  }

  /** The checklist part of verify's first script: the checklist's own sections, ending with `checklist-done`. */
  private checklist(now: number): string {
    const n = this.farm.state(this.node, now);
    this.farm.answered.checklist++;
    const peerIps = this.farm.inventory.nodes.filter((p) => p.name !== this.node).map((p) => p.overlayIp);
    // confmeta as the real command prints it for the file (src/facts/definitions.ts configMeta): its sha256 and key
    // line counts (none: meshctl renders no PrivateKey line), which the fixture's serialiser leaves out
    const meta = section(
      'confmeta',
      `exists=yes\nsha256=${createHash('sha256').update(n.config!).digest('hex')}\nprivatekeylines=0\npresharedkeylines=0`,
    );
    return sectionsOf(checklistStdout(n, peerIps))
      .filter((s) => !PRE_SECTIONS.has(s.name))
      .map((s) => (s.name === 'done' ? section('checklist-done', '') : s.name === 'confmeta' ? meta : s.text))
      .join('');
  }

  private answer(script: string): string {
    if (/begin (udp|watch)'|^mc_dl='/m.test(script)) return this.coldStart(script);
    if (/begin ping:|ping -n -q|fping/.test(script)) return this.pings(script);
    const head = script.split('\n').find((l) => l.trim() && !l.startsWith('export ')) ?? '';
    this.farm.unknown.set(head.slice(0, 80), (this.farm.unknown.get(head.slice(0, 80)) ?? 0) + 1);
    return '';
  }

  /** A cold-start round: every burst sent (`sent=16`), the counters grown past every burst, the watch satisfied. */
  private coldStart(script: string): string {
    // the burst sections, from the script's one list of directions (scriptBursts)
    this.farm.answered.coldStart++;
    const parts = scriptBursts(script).map((b) => section(b.section, 'sent=16'));
    if (script.includes("begin watch'")) parts.push(section('watch', 'looks=0 sum=0'));
    if (script.includes("begin udp'")) parts.push(this.farm.udp(this.node, 'udp'));
    parts.push(section('done', ''));
    return parts.join('');
  }

  /** Every peer of the ping script answers (path MTU at the expected size passes); then the clock and the peers. */
  private pings(script: string): string {
    const ips = new Set<string>();
    // the ping script lists its peers once, as positional parameters (`set -- IP...`, src/checks/probes.ts pingScript)
    for (const line of script.matchAll(/^set -- ((?:'?\d+\.\d+\.\d+\.\d+'? ?)+)$/gm))
      for (const m of line[1]!.matchAll(/\d+\.\d+\.\d+\.\d+/g)) ips.add(m[0]);
    const now = Math.floor(Date.now() / 1000);
    const n = this.farm.state(this.node, now);
    this.farm.answered.ping++;
    const results = Object.fromEntries([...ips].map((ip) => [ip, { received: 3, rtt: 0.1 }]));
    return pingStdout(
      results,
      n.peers.map((p) => ({ ...p, latestHandshake: now - 1 })),
      now,
      this.farm.inventory.mesh.mtu - 28,
    );
  }

  async close(): Promise<void> {}
}
