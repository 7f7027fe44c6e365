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
 * plus the answers in flight. Its own CPU is counted (`cpuMicros`) so the bench can report meshctl's alone when the
 * fakes run in meshctl's process (`--in-process`); by default they run in a process of their own (./fake-verify-relay.ts).
 * Delivery, as over SSH: an answer is handed on in pieces of about PIECE characters (RunOptions.onStdout, when given),
 * a turn of the event loop between two, so the nodes' answers arrive interleaved as a farm's do; the result's stdout
 * is the pieces joined (what the ssh transport keeps), or empty under RunOptions.discardStdout. The first script's and
 * the ping round's answers are made piece by piece as they are handed on (a line or a section at a time, the design's
 * peers read one by one), so the fakes hold no node's whole answer: what a node's answer costs in flight is
 * meshctl's (test/unit/fake-verify-pieces.test.ts: the pieces join to the answers made whole, as before).
 */
import { createHash } from 'node:crypto';
import type { Inventory } from '../../../src/inventory/types.js';
import { desiredNodeConfig, type DesiredNodeConfig } from '../../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../../src/render/wgquick.js';
import type { Connection, ConnectionStats, ExecResult, RunOptions } from '../../../src/transport/types.js';
import { checklistStdout, dumpLines, pingStdout, type FakeNode, type FakePeer } from '../../../test/fixtures/probes/homelab.js';
import { arrives, fakePublicKey } from './fake-node.js';
import { scriptBursts } from '../../../src/checks/cold-start.js';

/** The sections verify's pre script reads (src/checks/collect.ts PRE_FACTS); the checklist's are the rest. */
const PRE_SECTIONS = new Set(['now', 'pubkey', 'port', 'dump', 'udpsnmp']);

const section = (name: string, body: string, rc = 0) => `@@meshctl begin ${name}\n${body}\n@@meshctl end ${name} rc=${rc}\n`;
/** A section as the fixtures' serialisers write it (test/fixtures/probes/homelab.ts: a blank line before the end). */
const fixtureSection = (name: string, body: string, rc = 0) => `@@meshctl begin ${name}\n${body}\n\n@@meshctl end ${name} rc=${rc}\n`;

/**
 * The size of the pieces an answer is handed on in, characters: OpenSSH sends a channel's data in packets of up to
 * 32 KB, which ssh2 hands on one at a time (src/transport/ssh.ts decodes each into a string).
 */
export const PIECE = 32 * 1024;
/** In an answer's parts: hand on what is made so far, and wait a turn (the node runs its next command) */
const FLUSH = Symbol('flush');
type Part = string | typeof FLUSH;
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** The sections of a probe's stdout, in order (name, whole text). */
function sectionsOf(stdout: string): Array<{ name: string; text: string }> {
  const out: Array<{ name: string; text: string }> = [];
  const re = /^@@meshctl begin (\S+)\n[\s\S]*?^@@meshctl end \1 rc=\d+\n/gm;
  for (const m of stdout.matchAll(re)) out.push({ name: m[1]!, text: m[0] });
  return out;
}

/** Peer `p` (the `i`-th of its node's design) as the node holds it live: a handshake at `handshake`, UDP counters. */
function fakePeer(p: DesiredNodeConfig['peers'][number], i: number, handshake: number): FakePeer {
  return {
    publicKey: p.publicKey,
    ...(p.endpoint ? { endpoint: p.endpoint } : {}),
    allowedIps: [...p.allowedIps],
    latestHandshake: handshake,
    rx: 3380 + i,
    tx: 3436 + i,
    ...(p.persistentKeepalive ? { keepalive: p.persistentKeepalive } : {}),
  };
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

  /**
   * The turn a node waits between two pieces of an answer (a turn of the event loop; ./fake-verify-relay.ts's server
   * also waits for its pipe to drain, as an SSH channel's window would make a node wait)
   */
  turn: () => Promise<unknown> = turn;
  /** The nodes' clock, seconds since the epoch (`options.now`: a fixed one, for comparing answers across runs) */
  readonly now: () => number;

  constructor(
    readonly inventory: Inventory,
    options: { now?: () => number } = {},
  ) {
    this.now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.keys = new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)]));
  }

  /** One connection per node, all "connected". */
  connections(): Map<string, Connection> {
    return new Map(this.inventory.nodes.map((n) => [n.name, new ConvergedNode(n.name, this)]));
  }

  /** Node `name` as a healthy node holds it now (made from the design at each call: the farm keeps nothing). */
  state(name: string, now: number): FakeNode {
    return this.stateOf(desiredNodeConfig(this.inventory, name, this.keys), now);
  }

  private stateOf(d: DesiredNodeConfig, now: number): FakeNode {
    const name = d.node;
    const self = this.inventory.nodes.find((n) => n.name === name)!;
    const rp = typeof this.inventory.mesh.rpFilter === 'number' ? this.inventory.mesh.rpFilter : 2;
    const peers: FakePeer[] = d.peers.map((p, i) => fakePeer(p, i, now - 20));
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

  /**
   * Node `d`'s state without its peers, file or routes (the checklist's sections that do not grow with the mesh). Its
   * file is the design's without peers: the first script's answer keeps sections cut from the head's checklist text
   * (slices, which keep that whole text alive) until the answer ends, and the whole design's file in it was ~70 kB a
   * node at 500 nodes, every node's at once while the checklists streamed: 37 MB of the 116 MB live in a heap
   * snapshot of the ping round (the fakes' memory, counted in the bench's RSS as meshctl's).
   */
  head(d: DesiredNodeConfig, now: number): FakeNode {
    const full = this.stateOf({ ...d, peers: [] }, now);
    return { ...full, peers: [], routes: {} };
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
    // the pre part first, as ssh streams it: meshctl starts the probes on it while the checklist "runs", whose
    // output is made (arrives) a turn later; each answer made part by part as deliver hands it on (its CPU the fake's)
    const parts = script.includes("begin pre-done'")
      ? this.first(script, this.farm.now())
      : /begin (udp|watch)'|^mc_dl='/m.test(script)
        ? this.one(() => this.coldStart(script))
        : /begin ping:|ping -n -q|fping/.test(script)
          ? this.pings(script)
          : this.one(() => this.unknownScript(script));
    const stdout = await this.deliver(parts, options);
    return { code: 0, stdout, stderr: '', durationMs: 0 };
  }

  /**
   * Hands `parts` on in pieces of about PIECE characters (RunOptions.onStdout), a turn between two; resolves with them
   * joined, or with '' under RunOptions.discardStdout (then nothing of them is kept here). Making a piece (its parts,
   * and joining them into the piece) is the fake's CPU, read once per piece, not once per part: a part is often one
   * peer's line (~5,000 parts a node at 1,000 nodes), and a reading of process.cpuUsage costs ~0.45 us, of which about
   * half fell outside the window it closed or opened, so was counted as meshctl's (~2 s at 1,000 nodes), and the
   * joining was too. What meshctl does with a piece (onStdout) and the turn between two are outside the window.
   */
  private async deliver(parts: Iterator<Part>, options: RunOptions): Promise<string> {
    const keep = !(options.discardStdout && options.onStdout);
    const kept: string[] = [];
    for (;;) {
      const before = process.cpuUsage();
      let piece = '';
      let done = false;
      for (;;) {
        const next = parts.next();
        if (next.done) {
          done = true;
          break;
        }
        if (next.value === FLUSH) break;
        piece += next.value;
        if (piece.length >= PIECE) break;
      }
      const used = process.cpuUsage(before);
      this.farm.cpuMicros += used.user + used.system;
      this.farm.onAnswer();
      if (piece !== '') {
        options.onStdout?.(piece, () => undefined);
        if (keep) kept.push(piece);
        await this.farm.turn();
      }
      if (done) break;
    }
    return kept.join('');
  }

  /**
   * Verify's first script's answer, part by part: the pre part (with uid when asked), then, a turn later, the
   * checklist's own sections, ending with `checklist-done` (the fixture's serialiser's text for each section,
   * test/fixtures/probes/homelab.ts checklistStdout, but the pre part's and confmeta, as the real command prints them:
   * its sha256 and key line counts, none of them here: meshctl renders no PrivateKey line).
   */
  private *first(script: string, now: number): Generator<Part> {
    const farm = this.farm;
    const d = desiredNodeConfig(farm.inventory, this.node, farm.keys);
    farm.answered.pre++;
    if (script.includes("begin uid'")) yield section('uid', '0');
    yield section('now', String(now)) + section('pubkey', d.publicKey) + section('port', String(d.listenPort));
    yield '@@meshctl begin dump\n';
    for (let i = 0; i < d.peers.length; i++) yield `${i ? '\n' : ''}${dumpLines([fakePeer(d.peers[i]!, i, now - 20)])}`;
    yield '\n@@meshctl end dump rc=0\n';
    yield farm.udp(this.node, 'udpsnmp');
    yield section('pre-done', '');
    yield FLUSH;
    if (!script.includes("begin confmeta'")) return;
    farm.answered.checklist++;
    const self = farm.inventory.nodes.find((n) => n.name === this.node)!;
    // the sections that do not grow with the mesh, as the fixture writes them (a node without peers, file or routes)
    const small = new Map(sectionsOf(checklistStdout(farm.head(d, now), [])).map((s) => [s.name, s.text]));
    yield small.get('addr')! + small.get('listen')! + small.get('pubfile')!;
    // the file's sha256 first (confmeta comes before it), hashed a peer at a time as the file is sent below (a node
    // hashes its file as a stream; made whole, a 1,000-peer file is a 158 kB string in V8's large-object space, which
    // only a full collection frees: the fakes' garbage in meshctl's heap)
    const head = renderWgQuickConfig({ ...d, peers: [] }).slice(0, -1);
    const peerText = (peer: DesiredNodeConfig['peers'][number]) => renderWgQuickConfig({ ...d, peers: [peer] }).slice(head.length, -1);
    const hash = createHash('sha256').update(head);
    for (const peer of d.peers) hash.update(peerText(peer));
    const sha256 = hash.update('\n').digest('hex');
    yield section('confmeta', `exists=yes\nsha256=${sha256}\nprivatekeylines=0\npresharedkeylines=0`);
    yield `@@meshctl begin conf\n${head}`;
    for (const peer of d.peers) yield peerText(peer);
    yield '\n\n\n@@meshctl end conf rc=0\n';
    // one route per peer via the interface (a peer's first AllowedIPs is its overlay /32; the design's own strings)
    const routed = new Set(d.peers.map((p) => p.allowedIps[0]!));
    for (const p of farm.inventory.nodes) {
      if (p.name === this.node) continue;
      const ip = p.overlayIp;
      yield routed.has(`${ip}/32`)
        ? fixtureSection(
            `route:${ip}`,
            JSON.stringify([{ dst: ip, dev: d.interface, prefsrc: self.overlayIp, flags: [], uid: 0, cache: [] }]),
          )
        : fixtureSection(`route:${ip}`, 'RTNETLINK answers: Network is unreachable', 2);
    }
    yield small.get('rpfilter')! + small.get('service')! + small.get('firewall')! + section('checklist-done', '');
  }

  /** An answer made whole when it is first asked for (inside deliver's window: the fake's CPU). */
  private *one(make: () => string): Generator<Part> {
    yield make();
  }

  /** A script no rule knew: counted, answered with nothing. */
  private unknownScript(script: string): string {
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

  /**
   * Every peer of the ping script answers (path MTU at the expected size passes); then the clock and the peers (the
   * fixture's serialiser's text, test/fixtures/probes/homelab.ts pingStdout), part by part.
   */
  private *pings(script: string): Generator<Part> {
    // the ping script lists its peers once, as positional parameters (`set -- IP...`, src/checks/probes.ts pingScript),
    // read one by one as their sections are made
    const ips = (function* () {
      for (const line of script.matchAll(/^set -- ((?:'?\d+\.\d+\.\d+\.\d+'? ?)+)$/gm))
        for (const m of line[1]!.matchAll(/\d+\.\d+\.\d+\.\d+/g)) yield m[0];
    })();
    const farm = this.farm;
    const now = farm.now();
    const d = desiredNodeConfig(farm.inventory, this.node, farm.keys);
    farm.answered.ping++;
    const expected = farm.inventory.mesh.mtu - 28;
    for (const ip of ips) {
      const one = pingStdout({ [ip]: { received: 3, rtt: 0.1 } }, undefined, now, expected);
      yield one.slice(0, one.indexOf('@@meshctl begin now\n'));
    }
    yield fixtureSection('now', String(now));
    yield '@@meshctl begin dump\n';
    for (let i = 0; i < d.peers.length; i++) yield `${i ? '\n' : ''}${dumpLines([fakePeer(d.peers[i]!, i, now - 1)])}`;
    yield '\n\n@@meshctl end dump rc=0\n';
    yield fixtureSection('done', '');
  }

  async close(): Promise<void> {}
}
