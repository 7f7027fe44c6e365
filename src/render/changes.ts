/**
 * What writing the desired wg-quick file would change, and therefore how the service must pick it up:
 * - 'create'    no file yet;
 * - 'none'      the file means the design: byte-identical (write nothing, restart nothing: a second `up` must land
 *               here), or differing in comments and layout alone, a peer's name comment included (the file is
 *               rewritten, nothing is applied to the live interface: a renamed node cost every node a sync, Q5);
 * - 'peers'     only [Peer] content differs: write the file, then `wg syncconf`, which
 *               keeps the interface, its ifindex and the other peers' sessions (the syncconf input must carry
 *               the private key, see ./systemd.ts, or syncconf clears it);
 * - 'interface' [Interface] differs (Address, ListenPort, MTU, PostUp, extra settings...): write, then restart
 *               wg-quick@IFACE, because wg-quick applies those only when it brings the interface up; except the
 *               MTU, the Address and the relay's PostUp/PreDown lines alone (liveInterfaceChange), which the enable
 *               step applies to the running interface.
 */
import type { DesiredNodeConfig } from '../topology/desired.js';
import type { DriftItem } from './drift.js';
import { compareConfigToDesired } from './drift.js';
import { parseWgQuickConfig, postUpLoadingPrivateKey, renderWgQuickConfig, type ParsedWgQuickConfig } from './wgquick.js';
import { relayHooks } from './relay.js';

export type ConfigChangeKind = 'create' | 'none' | 'peers' | 'interface';

export interface ConfigChange {
  kind: ConfigChangeKind;
  /** human-readable lines: "+ peer wk-2", "- peer old-node", "~ peer ctb-edge-1 endpoint a -> b" */
  summary: string[];
}

const INTERFACE_LABELS: Record<string, string> = {
  address: 'Address',
  listenPort: 'ListenPort',
  mtu: 'MTU',
  saveConfig: 'SaveConfig',
  postUp: 'PostUp',
};

const PEER_LABELS: Record<string, string> = {
  allowedIps: 'AllowedIPs',
  endpoint: 'endpoint',
  persistentKeepalive: 'keepalive',
  publicKey: 'public key',
  presharedKey: 'preshared key',
  name: 'name comment',
};

/** Drift fields that live only in the file's comments: no change to the live interface. */
const COMMENT_ONLY: ReadonlySet<string> = new Set(['name']);

/** One summary line for one drift item, written as current -> desired. */
export function describeChange(item: DriftItem): string {
  if (item.field === 'peer') return item.expected === 'present' ? `+ peer ${item.peer}` : `- peer ${item.peer}`;
  if (item.field === 'syntax') return `~ line ${item.line}: ${item.message}`;
  if (item.field === 'interface') return '+ [Interface] section';
  if (item.field === 'privateKey') return '- interface PrivateKey line (the key stays in its own file on the node)';
  if (item.field === 'otherSetting') return `- interface ${item.actual}`;
  const subject =
    item.peer !== undefined
      ? `peer ${item.peer} ${PEER_LABELS[item.field] ?? item.field}`
      : `interface ${INTERFACE_LABELS[item.field] ?? item.field}`;
  return `~ ${subject} ${item.actual} -> ${item.expected}`;
}

/**
 * The change from `currentText` (undefined: no file) to `desired`. `rendered`: renderWgQuickConfig(desired) when the
 * caller has it already (issue 10: a 1,000-peer config is not rendered again to classify it); it is rendered only
 * when needed (a node that has a file).
 */
export function classifyConfigChange(currentText: string | undefined, desired: DesiredNodeConfig, rendered?: string): ConfigChange {
  if (currentText === undefined) {
    return {
      kind: 'create',
      summary: [
        `+ ${desired.interface}.conf: Address ${desired.address}, ListenPort ${desired.listenPort}, MTU ${desired.mtu}`,
        ...desired.peers.map((peer) => `+ peer ${peer.name}`),
      ],
    };
  }
  if (currentText === (rendered ?? renderWgQuickConfig(desired))) return { kind: 'none', summary: [] };

  const drift = compareConfigToDesired(parseWgQuickConfig(currentText), desired);
  const touchesInterface = drift.some((item) => item.peer === undefined);
  const summary = drift.map(describeChange);
  // Bytes differ but the meaning does not (header comment, a peer's name comment, spacing, order): the file is
  // rewritten, and nothing reaches the live interface (wg(8) never sees a comment)
  const live = drift.filter((item) => !COMMENT_ONLY.has(item.field));
  if (live.length === 0) {
    if (summary.length === 0) summary.push('~ comments or layout only (no change to the live interface)');
    return { kind: 'none', summary };
  }
  return { kind: touchesInterface ? 'interface' : 'peers', summary };
}

/** An [Interface] change of a file that a running interface takes without a restart (liveInterfaceChange). */
export interface LiveInterfaceChange {
  /** the MTU line changed, added or removed: `from` the file's MTU (undefined: no MTU line, wg-quick chose one) */
  mtu?: { from?: number; to: number };
  /** the Address line changed: `from` the file's addresses (IPv4 only), `to` the design's one address */
  address?: { from: string[]; to: string };
  /**
   * the node's relay role switched (../render/relay.ts): 'on', the file had no relay lines and the design has them;
   * 'off', the file had exactly meshctl's relay lines and the design has none
   */
  relay?: 'on' | 'off';
  /** [Peer] content differs too */
  peers: boolean;
}

/** The relay lines of a parsed file: its PostUps after the key's, and its PreDowns. */
const fileRelayLines = (parsed: ParsedWgQuickConfig) => ({
  postUp: parsed.interface?.postUp.slice(1) ?? [],
  preDown: (parsed.interface?.otherEntries ?? []).filter((e) => e.key.toLowerCase() === 'predown').map((e) => e.value),
});

const sameLines = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((line, i) => line === b[i]);

/**
 * The relay role a file's hooks switch from when the design's switch it (RelayRole): 'on' when the file has the key's
 * PostUp alone and no PreDown while the design relays, 'off' when it has exactly meshctl's relay PostUp and PreDown
 * lines for the interface while the design relays nothing. Undefined otherwise (the same role, a PostUp that loads the
 * key otherwise, hand-made hooks): those restart. `parsed` is returned with the design's hooks in place of the file's,
 * to judge what else differs.
 */
function relayRoleSwitch(
  parsed: ParsedWgQuickConfig,
  desired: DesiredNodeConfig,
): { relay: 'on' | 'off'; parsed: ParsedWgQuickConfig } | undefined {
  const iface = parsed.interface;
  if (!iface || iface.postUp[0] !== postUpLoadingPrivateKey(desired)) return undefined;
  const hooks = relayHooks(desired.interface);
  const have = fileRelayLines(parsed);
  const none = have.postUp.length === 0 && have.preDown.length === 0;
  const meshctls = sameLines(have.postUp, hooks.postUp) && sameLines(have.preDown, hooks.preDown);
  const relay = desired.relay ? (none ? 'on' : undefined) : meshctls ? 'off' : undefined;
  if (!relay) return undefined;
  const want = desired.relay ? hooks : { postUp: [], preDown: [] };
  const others = iface.otherEntries.filter((e) => e.key.toLowerCase() !== 'predown');
  const line = iface.line;
  return {
    relay,
    parsed: {
      ...parsed,
      interface: {
        ...iface,
        postUp: [iface.postUp[0]!, ...want.postUp],
        otherEntries: [...others, ...want.preDown.map((value) => ({ key: 'PreDown', value, line }))],
      },
    },
  };
}

/**
 * The change of a file whose only [Interface] differences from `desired` are its MTU and Address lines ([Peer]
 * differences aside): each with the file's value and the design's. Undefined for anything else: no file, a file that
 * means the design, any other [Interface] difference (ListenPort, PostUp, a PrivateKey line, a syntax problem...), or
 * an IPv6 address in the file (the live facts list IPv4 addresses only, so only a restart takes an IPv6 one away).
 * wg-quick(8) reads both only when it brings the interface up, and applies them there with `ip link set mtu N up dev
 * IFACE` (set_mtu_up) and `ip -4 address add ADDR dev IFACE` (add_addr), so such a change is made on a running
 * interface by the same commands (and the old address deleted), with no restart: a new user's findings Q3-6 (an MTU
 * change restarted every node at once, a 0.2-0.4 s cut) and Q6-9 (a hand-built mesh with /24 addresses restarted
 * every node at its first `up`: 2 of 400 pings lost).
 * The relay's PostUp and PreDown lines (../render/relay.ts) likewise: a membership change that switches a node's relay
 * role on or off changes only them, and the enable step runs the relay's set-up (the PostUp lines) or tear-down on
 * the running interface (a new user's finding Q8 F-relay-restart: the restart cut every pair of the public node for
 * ~8 s). Only meshctl's own lines switch live (relayRoleSwitch); any other hook difference still restarts.
 */
export function liveInterfaceChange(currentText: string | undefined, desired: DesiredNodeConfig): LiveInterfaceChange | undefined {
  if (currentText === undefined) return undefined;
  const original = parseWgQuickConfig(currentText);
  const role = relayRoleSwitch(original, desired);
  const parsed = role?.parsed ?? original;
  const drift = compareConfigToDesired(parsed, desired);
  const iface = drift.filter((item) => item.peer === undefined);
  if ((iface.length === 0 && !role) || !iface.every((item) => item.field === 'mtu' || item.field === 'address')) return undefined;
  const from = parsed.interface?.addresses ?? [];
  if (from.some((address) => address.includes(':'))) return undefined;
  const mtu = parsed.interface?.mtu;
  return {
    ...(iface.some((item) => item.field === 'mtu') ? { mtu: { ...(mtu !== undefined ? { from: mtu } : {}), to: desired.mtu } } : {}),
    ...(iface.some((item) => item.field === 'address') ? { address: { from, to: desired.address } } : {}),
    ...(role ? { relay: role.relay } : {}),
    peers: drift.length > iface.length,
  };
}
