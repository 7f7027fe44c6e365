/**
 * Facts every node holds about all its peers, kept as numbers until they are judged (issue 10): at 1,000 nodes a
 * verify or an `up` holds ~1e6 live peers (`wg show IFACE dump` lines) of each read, and ~1e6 route lookups, until
 * the last node has answered; as objects they were ~115 bytes a peer and ~56 bytes a lookup of the heap that V8 lets
 * grow to a multiple of what is live. Here a peer is 44 bytes and a lookup 2 outside V8's heap (typed arrays), and
 * both are read back as the same values, field for field and in the same key order, a fresh array per read.
 * Used by `up`'s ping phase (../engine/ping.ts) and verify's collection (./collect.ts).
 */
import type { RouteLookup } from '../facts/definitions.js';
import type { LivePeer } from '../render/wgdump.js';

/**
 * One string object per distinct text (issue 10), for values many nodes hold alike: a ping round's routes and peers
 * (../engine/ping.ts), a phase's check evidence (../engine/runner.ts), verify's live peers (./collect.ts); the
 * desired configs share whole peers (../topology/desired.ts). Peer N's key, /32 and route line appear on N-1 nodes,
 * and each parsed one is a slice that holds its node's whole output: at 1,000 nodes ~2e6 slices kept ~200 MB of
 * outputs alive until the run's end. Shared, they hold none. `list`: one frozen array per distinct list of texts.
 */
export function sharedText(): ((text: string) => string) & { list(texts: readonly string[]): string[] } {
  const seen = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const one = (text: string): string => {
    const known = seen.get(text);
    if (known !== undefined) return known;
    // a flat copy of its own, so the string kept does not hold the output it was cut from
    const own = Buffer.from(text, 'utf8').toString('utf8');
    seen.set(own, own);
    return own;
  };
  /** one frozen array per distinct list (a peer's AllowedIPs are the same list on every node that has it) */
  const list = (texts: readonly string[]): string[] => {
    // one text (a peer's own /32, the usual list) is its own key: no joined copy per lookup
    const key = texts.length === 1 ? texts[0]! : `\n${texts.join('\n')}`;
    let known = lists.get(key);
    if (!known) {
      known = Object.freeze(texts.map(one)) as string[];
      // a one-text key is the text itself: its shared copy, not a slice of an output
      lists.set(texts.length === 1 ? one(key) : key, known);
    }
    return known;
  };
  return Object.assign(one, { list });
}

/** Texts by number, for one round's tables (a key, endpoint or AllowedIPs list is one number per peer; 0: none). */
export class TextTable {
  readonly texts: unknown[] = [undefined];
  private readonly ids = new Map<unknown, number>();
  /** the number of `text` (a string, or a list already shared: one object per distinct list) */
  id(text: unknown): number {
    if (text === undefined) return 0;
    let id = this.ids.get(text);
    if (id === undefined) {
      id = this.texts.length;
      this.texts.push(text);
      this.ids.set(text, id);
    }
    return id;
  }
}

/** The numbers kept per live peer: latest handshake (0: never), rx bytes, tx bytes, keepalive (0: off). */
const PEER_NUMBERS = 4;
/** The text numbers kept per live peer: its public key's (times 2, plus 1 when a preshared key is set), endpoint's, AllowedIPs'. */
const PEER_TEXTS = 3;

/**
 * One node's live peers (a parsed `wg show IFACE dump`), kept as numbers: per peer its public key, endpoint and
 * AllowedIPs list as numbers into a TextTable shared by all nodes of a run (their texts flat copies, shared:
 * sharedText) and its handshake, transfer and keepalive in a Float64Array (exact for every number the parser gives),
 * 44 bytes a peer outside V8's heap. Read back (`peers`) as the LivePeer values they were parsed into
 * (../render/wgdump.ts parseWgDumpPeers: the same fields in the same key order), a fresh array per call.
 */
export class LivePeerTable {
  private readonly textIds: Uint32Array;
  private readonly numbers: Float64Array;

  constructor(
    peers: readonly LivePeer[],
    private readonly texts: TextTable,
    shared: ReturnType<typeof sharedText>,
  ) {
    this.textIds = new Uint32Array(peers.length * PEER_TEXTS);
    this.numbers = new Float64Array(peers.length * PEER_NUMBERS);
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i]!;
      const t = PEER_TEXTS * i;
      this.textIds[t] = texts.id(shared(peer.publicKey)) * 2 + (peer.hasPresharedKey ? 1 : 0);
      this.textIds[t + 1] = texts.id(peer.endpoint === undefined ? undefined : shared(peer.endpoint));
      this.textIds[t + 2] = texts.id(shared.list(peer.allowedIps));
      const at = PEER_NUMBERS * i;
      this.numbers[at] = peer.latestHandshake ?? 0;
      this.numbers[at + 1] = peer.rxBytes;
      this.numbers[at + 2] = peer.txBytes;
      this.numbers[at + 3] = peer.persistentKeepalive ?? 0;
    }
  }

  /** How many peers. */
  get length(): number {
    return this.numbers.length / PEER_NUMBERS;
  }

  /**
   * Each peer's public key, in order (the `publicKey` of what `peers` gives), without making the peers: for a reader
   * of the keys alone (./collect.ts knownPublicKeys: every node's, ~1e6 at 1,000 nodes, made only to be dropped).
   */
  publicKeys(): string[] {
    const n = this.length;
    const keys = new Array<string>(n);
    const texts = this.texts.texts;
    for (let i = 0; i < n; i++) keys[i] = texts[this.textIds[PEER_TEXTS * i]! >>> 1] as string;
    return keys;
  }

  /**
   * The peers as LivePeer values, a fresh array of fresh objects per call: read it once per use (two reads are two
   * arrays, so `indexOf` across them finds nothing). Not cached, not even weakly: a phase's checks run in one job,
   * and V8 keeps every WeakRef target read in a job alive to its end, so all nodes' peers were held at once again
   * (seen in a heap snapshot at 250 nodes).
   */
  peers(): LivePeer[] {
    const n = this.length;
    const peers = new Array<LivePeer>(n);
    const texts = this.texts.texts;
    for (let i = 0; i < n; i++) {
      const t = PEER_TEXTS * i;
      const keyId = this.textIds[t]!;
      // the fields in parseWgDumpPeers' order (src/render/wgdump.ts)
      const peer = { publicKey: texts[keyId >>> 1] as string, hasPresharedKey: (keyId & 1) === 1 } as LivePeer;
      const endpoint = texts[this.textIds[t + 1]!] as string | undefined;
      if (endpoint !== undefined) peer.endpoint = endpoint;
      peer.allowedIps = texts[this.textIds[t + 2]!] as string[];
      const at = PEER_NUMBERS * i;
      const latestHandshake = this.numbers[at]!;
      if (latestHandshake > 0) peer.latestHandshake = latestHandshake;
      peer.rxBytes = this.numbers[at + 1]!;
      peer.txBytes = this.numbers[at + 2]!;
      const persistentKeepalive = this.numbers[at + 3]!;
      if (persistentKeepalive > 0) peer.persistentKeepalive = persistentKeepalive;
      peers[i] = peer;
    }
    return peers;
  }
}

/**
 * `target[field]` as an own, enumerable getter that reads `table` (a fresh array per read: LivePeerTable.peers), in
 * the property's place when `target` has it already (its key order, and so its JSON, unchanged).
 */
export function peersFrom<T extends object>(target: T, field: keyof T & string, table: LivePeerTable): T {
  const get = () => table.peers();
  Object.defineProperty(target, field, { enumerable: true, configurable: true, get });
  if (field === 'peers') peerTables.set(target, { table, get });
  return target;
}

/** The table each `peers` getter reads (peersFrom), with the getter, by the object that has it. */
const peerTables = new WeakMap<object, { table: LivePeerTable; get: () => LivePeer[] }>();

/**
 * The LivePeerTable that `target.peers` reads, when peersFrom made it a getter of one and it still is; else undefined
 * (the peers are a plain value, or were set anew since: read `target.peers`).
 */
export function peerTableOf(target: object): LivePeerTable | undefined {
  const kept = peerTables.get(target);
  if (!kept) return undefined;
  return Object.getOwnPropertyDescriptor(target, 'peers')?.get === kept.get ? kept.table : undefined;
}

/**
 * What a run's RouteRows share: every node's overlay address in inventory order (a row's addresses are all but its
 * node's own), each address's position, and the distinct lookups without their `dst`, each one frozen object
 * (`shapes[0]`: none) with its number by content.
 */
export class RouteLookups {
  readonly shapes: Array<Omit<RouteLookup, 'dst'> | undefined> = [undefined];
  private readonly ids = new Map<string, number>();
  /** each address's position in `ips` */
  readonly position: ReadonlyMap<string, number>;

  constructor(readonly ips: readonly string[]) {
    this.position = new Map(ips.map((ip, i) => [ip, i]));
  }

  /** The number of `lookup`'s content but its `dst` (parseRouteGet's fields, in its order). */
  id(lookup: RouteLookup): number {
    const { dev, gateway, prefsrc, error } = lookup;
    const key = `${dev ?? '\u0001'}\u0000${gateway ?? '\u0001'}\u0000${prefsrc ?? '\u0001'}\u0000${error ?? '\u0001'}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      // parseRouteGet's fields in its order, each text a flat copy of its own (not a slice of an output)
      const own = (text: string | undefined) => (text === undefined ? undefined : Buffer.from(text, 'utf8').toString('utf8'));
      const shape: Omit<RouteLookup, 'dst'> = {};
      if (dev !== undefined) shape.dev = own(dev)!;
      if (gateway !== undefined) shape.gateway = own(gateway)!;
      if (prefsrc !== undefined) shape.prefsrc = own(prefsrc)!;
      if (error !== undefined) shape.error = own(error)!;
      id = this.shapes.length;
      this.shapes.push(Object.freeze(shape));
      this.ids.set(Buffer.from(key, 'utf8').toString('utf8'), id);
    }
    return id;
  }
}

/**
 * One node's route lookups (`ip route get IP` of each other node's overlay address, ../facts/definitions.ts
 * parseRouteGet: a JSON lookup per peer in verify's checklist), kept as one number each as they arrive (RouteLookups:
 * on a healthy mesh one distinct lookup per node, `dev wg0 prefsrc` its own address), instead of an object each:
 * 4 bytes a peer outside V8's heap, ~56 bytes before (issue 10). Read back (`lookups`) as the lookups made, field for
 * field and in parseRouteGet's key order, in the addresses' order, a fresh array per call.
 */
export class RouteRow {
  /** per other node (inventory order, the node itself left out): its lookup's number in `run.shapes`, 0 when none came */
  private readonly ids: Uint32Array;
  private readonly self: number;

  /** `node`: the row's own address (not asked). */
  constructor(
    private readonly run: RouteLookups,
    node: string,
  ) {
    this.self = run.position.get(node) ?? run.ips.length;
    this.ids = new Uint32Array(run.ips.length - (this.self < run.ips.length ? 1 : 0));
  }

  private at(ip: string): number | undefined {
    const i = this.run.position.get(ip);
    if (i === undefined || i === this.self) return undefined;
    return i < this.self ? i : i - 1;
  }

  /** Whether `ip` is one of the row's addresses (then `set` keeps its lookup). */
  asks(ip: string): boolean {
    return this.at(ip) !== undefined;
  }

  /** Keeps `lookup` (its `dst` one of the row's addresses: asks) as the lookup of its address; the last one given wins. */
  set(lookup: RouteLookup): void {
    const i = this.at(lookup.dst);
    if (i !== undefined) this.ids[i] = this.run.id(lookup);
  }

  /** Whether a lookup of `ip` came. */
  has(ip: string): boolean {
    const i = this.at(ip);
    return i !== undefined && this.ids[i] !== 0;
  }

  /** The lookup of `ip` that came (a fresh object), else undefined. */
  get(ip: string): RouteLookup | undefined {
    const i = this.at(ip);
    const shape = i === undefined ? undefined : this.run.shapes[this.ids[i]!];
    return shape ? { dst: this.run.ips[i! < this.self ? i! : i! + 1]!, ...shape } : undefined;
  }

  /** Whether every address's lookup came. */
  complete(): boolean {
    return this.ids.every((id) => id !== 0);
  }

  /** Every address's lookup (complete rows only), in inventory order: fresh objects, `dst` the address asked. */
  lookups(): RouteLookup[] {
    const out = new Array<RouteLookup>(this.ids.length);
    const { ips, shapes } = this.run;
    for (let i = 0; i < this.ids.length; i++) out[i] = { dst: ips[i < this.self ? i : i + 1]!, ...shapes[this.ids[i]!] };
    return out;
  }
}
