/**
 * `meshctl import`: what a hand-built wg-quick file holds that meshctl's inventory has no field for, and so the first
 * `up` removes (Q6 findings 1 and 3). Pure: it reads the node's wg-quick file as the facts probe filtered it on the
 * node (no PrivateKey or PresharedKey line, key-shaped values redacted), the numbers of the lines that filter dropped
 * (./probe.ts SECRET_LINES_FACT: a PresharedKey is seen by its line, never its value) and the live peers (`wg show
 * dump`, the preshared key only as set or not).
 *
 * What is named, per node, with the line of its file and what the first `up` does to it:
 * - a PresharedKey (file, or live only): up writes the file without it; the pair breaks at the next restart of one
 *   end (both must hold the same key or none): cuts traffic;
 * - an AllowedIPs entry beyond the mesh's overlay (a LAN or a default route behind a peer): up removes it and the
 *   route: cuts traffic to it;
 * - `Table =` other than auto: up removes it and wg-quick routes AllowedIPs itself; with PreUp/PostUp routes of the
 *   user's own (`ip route ...`), those routes go: cuts traffic;
 * - DNS =, PreUp/PostUp/PreDown/PostDown of the user's own (meshctl's key PostUp aside): removed; the restart runs
 *   `wg-quick down` with the new file, so the old PostDown (and resolvconf's `-d`) never runs and what the hooks set
 *   up stays until removed by hand;
 * - an IPv6 Address or AllowedIPs entry: the inventory has no IPv6 overlay, up removes it;
 * - a live peer that is in no file and is none of the hosts (added with `wg set`; SaveConfig = true would have saved
 *   it, the import turns SaveConfig off): up removes it: cuts traffic to it;
 * - a prefix in a file peer's live AllowedIPs that no line of the file gives it (`wg set IFACE peer K allowed-ips
 *   ...` by hand): beyond the overlay, up's `wg syncconf` sets the peer's AllowedIPs from the inventory and removes
 *   it: cuts traffic to it; IPv6: removed, as the file's. Compared as the kernel holds them (allowedBlock).
 * A loss that cuts traffic is a refusal unless the user passes --drop-unsupported (../commands/import.ts).
 */
import type { LivePeer } from '../render/wgdump.js';
import { cidrContains, formatCidr, isIpv4, parseCidr, type Cidr } from '../net/ipv4.js';
import { ipv6PrefixOf } from '../net/ipv6.js';
import type { SecretLines } from './probe.js';

/** A hook that adds a policy routing rule (`ip rule add`, `ip -4 rule add`): up's baseline refuses a node with one. */
const IP_RULE_ADD = /\bip\s+(?:-\S+\s+)*rule\s+add\b/;

/** One thing the import cannot carry over. */
export interface ImportLoss {
  /** the line in the node's wg-quick file (1-based, the whole file); undefined for live-only state or an older probe */
  line?: number;
  /** what it is, e.g. `PresharedKey of peer wk-1 (its value not read)` */
  what: string;
  /** what the first `up` does to it */
  effect: string;
  /** the loss stops traffic that flows now (a refusal without --drop-unsupported) */
  cutsTraffic: boolean;
}

/** A peer section of the file as scanned: header line, public key, AllowedIPs entries with their lines. */
export interface ScannedPeer {
  /** line of the [Peer] header, in the whole file when the secret lines are known */
  line?: number;
  publicKey?: string;
  allowedIps: Array<{ cidr: string; line?: number }>;
}

interface Scanned {
  iface: Array<{ key: string; value: string; line?: number }>;
  peers: ScannedPeer[];
}

/**
 * Line numbers of the filtered text (1-based) mapped to the file's: the filter dropped exactly the lines in
 * `secretLines.dropped`, so the n-th kept line is the n-th number not dropped. Without `secretLines` (an older probe):
 * undefined for every line, rather than a number that may be wrong.
 */
export function fileLineOf(secretLines: SecretLines | undefined): (filteredLine: number) => number | undefined {
  if (!secretLines) return () => undefined;
  const kept: number[] = [];
  for (let n = 1; n <= secretLines.total; n++) if (!secretLines.dropped.has(n)) kept.push(n);
  return (filteredLine) => kept[filteredLine - 1];
}

/** The filtered file's [Interface] settings and [Peer] sections, with file line numbers. */
export function scanConfig(text: string, secretLines: SecretLines | undefined): Scanned {
  const lineOf = fileLineOf(secretLines);
  const result: Scanned = { iface: [], peers: [] };
  let section: 'none' | 'interface' | 'peer' = 'none';
  text.split('\n').forEach((raw, index) => {
    const line = lineOf(index + 1);
    const content = raw.replace(/#.*/, '').trim();
    const header = /^\[\s*([A-Za-z]+)\s*\]$/.exec(content);
    if (header) {
      section = header[1]!.toLowerCase() === 'interface' ? 'interface' : header[1]!.toLowerCase() === 'peer' ? 'peer' : 'none';
      if (section === 'peer') result.peers.push({ ...(line !== undefined ? { line } : {}), allowedIps: [] });
      return;
    }
    const eq = content.indexOf('=');
    if (eq <= 0) return;
    const key = content.slice(0, eq).trim().toLowerCase();
    const value = content.slice(eq + 1).trim();
    if (section === 'interface') result.iface.push({ key, value, ...(line !== undefined ? { line } : {}) });
    if (section === 'peer') {
      const peer = result.peers[result.peers.length - 1]!;
      if (key === 'publickey') peer.publicKey = value;
      if (key === 'allowedips')
        for (const cidr of value
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean))
          peer.allowedIps.push({ cidr, ...(line !== undefined ? { line } : {}) });
    }
  });
  return result;
}

/** The peer section holding file line `line`: the last header before it. */
function peerAtLine(peers: readonly ScannedPeer[], line: number): ScannedPeer | undefined {
  let found: ScannedPeer | undefined;
  for (const p of peers) if (p.line !== undefined && p.line < line) found = p;
  return found;
}

/** A `PostUp = wg set %i private-key FILE` line: the key's, the adopting script's business (./probe.ts), not a hook. */
const KEY_HOOK = /^wg\s+set\s+%i\s+private-key\s+\S+$/;

export interface LossInput {
  /** the filtered wg-quick file (NodeFacts.config.text); undefined when there is none */
  text: string | undefined;
  secretLines?: SecretLines;
  /** the interface's live peers */
  livePeers: readonly LivePeer[];
  /** whether `livePeers` are the interface's (wg show worked) */
  liveReadable: boolean;
  /** public key -> node name, of every host given */
  hostKeys: ReadonlyMap<string, string>;
  /** public key -> overlay IP, of every host given */
  overlayIps: ReadonlyMap<string, string>;
  /** the mesh network the import infers, e.g. 172.27.15.0/24 */
  network: string;
}

const inNetwork = (network: Cidr | undefined, cidr: string): boolean => {
  const c = parseCidr(cidr, { strict: false });
  return !!(c && network && c.prefix >= network.prefix && cidrContains(network, c.network));
};

/**
 * One AllowedIPs entry as the kernel holds it, for comparing the file's entries with `wg show`'s: wg(8) masks the
 * address to its prefix, and an entry without a prefix is a host route (`10.77.0.5/24` -> `10.77.0.0/24`, `10.0.0.1` ->
 * `10.0.0.1/32`, `FD27:15:0::11/64` -> `fd27:15::/64`); undefined for anything else.
 */
export function allowedBlock(entry: string): string | undefined {
  const slash = entry.indexOf('/');
  const address = (slash < 0 ? entry : entry.slice(0, slash)).trim();
  const length = slash < 0 ? undefined : entry.slice(slash + 1).trim();
  if (length !== undefined && !/^\d{1,3}$/.test(length)) return undefined;
  if (isIpv4(address)) {
    const cidr = parseCidr(`${address}/${length ?? 32}`, { strict: false });
    return cidr ? formatCidr(cidr) : undefined;
  }
  const prefix = Number(length ?? 128);
  return prefix <= 128 ? ipv6PrefixOf(address, prefix) : undefined;
}

/** What the first `up` removes from this node's wg-quick setup (see the module comment), in file order. */
export function importLosses(input: LossInput): ImportLoss[] {
  const losses: ImportLoss[] = [];
  const nameOf = (key: string | undefined) => (key ? (input.hostKeys.get(key) ?? `${key.slice(0, 10)}…`) : 'without a PublicKey');
  const network = parseCidr(input.network, { strict: false });
  /** public key -> the blocks of its AllowedIPs in the file (allowedBlock), every [Peer] section of that key */
  const filePeers = new Map<string, Set<string>>();
  const pskPeers = new Set<string>();
  if (input.text !== undefined) {
    const scanned = scanConfig(input.text, input.secretLines);
    for (const p of scanned.peers)
      if (p.publicKey) {
        const blocks = filePeers.get(p.publicKey) ?? new Set<string>();
        for (const a of p.allowedIps) blocks.add(allowedBlock(a.cidr) ?? a.cidr);
        filePeers.set(p.publicKey, blocks);
      }
    const hooks = scanned.iface.filter((e) => /^(pre|post)(up|down)$/.test(e.key) && !KEY_HOOK.test(e.value));
    const routeHooks = hooks.some((h) => /\broute\b/.test(h.value));
    // an [Interface] setting the inventory has no field for, named as `Key = value` at its line (D4: one shape)
    const setting = (e: Scanned['iface'][number], key: string, effect: string, cutsTraffic = false) =>
      losses.push({ ...(e.line !== undefined ? { line: e.line } : {}), what: `${key} = ${e.value}`, effect, cutsTraffic });
    for (const e of scanned.iface) {
      if (e.key === 'dns')
        setting(
          e,
          'DNS',
          "up writes the file without it; the restart's wg-quick down reads the new file, so resolvconf is not told to remove this interface's nameserver (remove it by hand) and it is not set again",
        );
      if (e.key === 'table' && e.value.toLowerCase() !== 'auto')
        setting(
          e,
          'Table',
          `up writes the file without it: wg-quick then routes every AllowedIPs itself${routeHooks ? ", and the routes this file's own PreUp/PostUp add are not added again" : ''}`,
          routeHooks,
        );
      if (e.key === 'fwmark' && !['off', '0', '0x0'].includes(e.value.toLowerCase()))
        setting(
          e,
          'FwMark',
          "the inventory has no fwmark: up writes the file without it and the live interface's packets lose the mark (policy routing that matches it stops matching)",
        );
      if (e.key === 'address')
        for (const a of e.value.split(',').map((v) => v.trim()))
          if (a.includes(':'))
            losses.push({
              ...(e.line !== undefined ? { line: e.line } : {}),
              what: `Address ${a} (IPv6)`,
              effect: 'the inventory has no IPv6 overlay: up removes the address',
              cutsTraffic: false,
            });
    }
    for (const h of hooks)
      losses.push({
        ...(h.line !== undefined ? { line: h.line } : {}),
        what: `${h.key === 'preup' ? 'PreUp' : h.key === 'postup' ? 'PostUp' : h.key === 'predown' ? 'PreDown' : 'PostDown'} = ${h.value}`,
        effect: /down$/.test(h.key)
          ? "up writes the file without it, and the restart's wg-quick down reads the new file: it never runs; undo by hand what the file's up hooks set up"
          : `up writes the file without it: what it set up stays until undone by hand (the restart's wg-quick down reads the new file, so no PostDown of this file runs) and it is not set up again${
              IP_RULE_ADD.test(h.value)
                ? "; the policy rule it adds makes up's baseline STOP (default-ip-rules: an extra ip rule) until it is deleted by hand (ip rule del ...)"
                : ''
            }`,
        cutsTraffic: false,
      });
    for (const [line, kind] of input.secretLines?.dropped ?? []) {
      if (kind !== 'presharedkey') continue;
      const peer = peerAtLine(scanned.peers, line);
      if (peer?.publicKey) pskPeers.add(peer.publicKey);
      losses.push({
        line,
        what: `PresharedKey of peer ${nameOf(peer?.publicKey)} (its value not read)`,
        effect:
          'the inventory has no preshared keys: up writes the file without it; the pair breaks at the next restart of either end, when one holds the key and the other not',
        cutsTraffic: true,
      });
    }
    for (const p of scanned.peers)
      for (const a of p.allowedIps) {
        const own = p.publicKey ? input.overlayIps.get(p.publicKey) : undefined;
        if (a.cidr.includes(':')) {
          losses.push({
            ...(a.line !== undefined ? { line: a.line } : {}),
            what: `AllowedIPs ${a.cidr} of peer ${nameOf(p.publicKey)} (IPv6)`,
            effect: 'the inventory has no IPv6 overlay: up removes it and its route',
            cutsTraffic: false,
          });
          continue;
        }
        if ((own !== undefined && a.cidr.split('/')[0] === own) || inNetwork(network, a.cidr)) continue;
        losses.push({
          ...(a.line !== undefined ? { line: a.line } : {}),
          what: `AllowedIPs ${a.cidr} of peer ${nameOf(p.publicKey)} (beyond the overlay ${input.network}: a network behind that peer)`,
          effect: `the inventory has no field for it: up removes it and its route, and traffic to ${a.cidr} through the tunnel stops`,
          cutsTraffic: true,
        });
      }
  }
  if (input.liveReadable)
    for (const p of input.livePeers) {
      // without the secret lines (an older probe) the file's PresharedKey lines are unknown: no claim about them
      if (p.hasPresharedKey && !pskPeers.has(p.publicKey) && (input.secretLines || input.text === undefined))
        losses.push({
          what: `a PresharedKey on the live interface for peer ${nameOf(p.publicKey)}, in no line of the file`,
          effect:
            'meshctl does not manage preshared keys: the pair breaks at the next restart of either end, when one holds the key and the other not',
          cutsTraffic: true,
        });
      if (input.text !== undefined && !filePeers.has(p.publicKey) && !input.hostKeys.has(p.publicKey))
        losses.push({
          what: `a live peer ${p.publicKey} (AllowedIPs ${p.allowedIps.join(', ') || 'none'}) in no line of the file and none of the hosts given (added with wg set?)`,
          effect: 'up removes it (the import turns SaveConfig off, so wg-quick never saves it into the file)',
          cutsTraffic: true,
        });
      // Q6/Q7 finding 5: a prefix given to a peer of the file on the live interface only (`wg set wg0 peer K
      // allowed-ips ...` by hand): up sets the peer's AllowedIPs from the inventory, as it does the file's own
      const inFile = filePeers.get(p.publicKey);
      if (inFile)
        for (const cidr of p.allowedIps) {
          if (inFile.has(allowedBlock(cidr) ?? cidr)) continue;
          const where = `in AllowedIPs of peer ${nameOf(p.publicKey)} on the live interface only, in no line of the file (added with wg set?)`;
          if (cidr.includes(':'))
            losses.push({
              what: `a prefix ${cidr} (IPv6) ${where}`,
              effect: 'the inventory has no IPv6 overlay: up removes it from the live interface',
              cutsTraffic: false,
            });
          else if (!inNetwork(network, cidr))
            losses.push({
              what: `a prefix ${cidr} (beyond the overlay ${input.network}: a network behind that peer) ${where}`,
              effect: `the inventory has no field for it: up sets the peer's AllowedIPs from the inventory (wg syncconf), which removes it, and traffic to ${cidr} through the tunnel stops (the import turns SaveConfig off, so wg-quick never saves it into the file)`,
              cutsTraffic: true,
            });
        }
    }
  return losses;
}
