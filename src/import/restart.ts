/**
 * Does taking over a file need a restart? Issue 9: "a following `up` changes only what differs, with no restart
 * where a reload suffices". A hand-built wg0.conf (or one wg-quick saved over meshctl's, SaveConfig = true) differs
 * from meshctl's rendering in [Interface] lines that change nothing on the running interface:
 * - the PrivateKey line, or a PostUp that loads the key file: the new PostUp loads the same key, which the interface
 *   already runs with (its public key equals `wg pubkey < IFACE.key`, both derived on the node);
 * - SaveConfig: wg-quick reads it only when it stops the interface, and it reads the file as it is then (ours);
 * - Address, ListenPort, MTU written differently (or MTU left out) while the live value is the designed one.
 * When every [Interface] difference is one of these, a rewrite of the file needs no restart: the change is the peers'
 * (`wg syncconf`, which keeps every session) or none. Anything else (another hook, DNS, Table, a live value that
 * differs) keeps the restart. Pure.
 */
import type { NodeFacts } from '../facts/node-facts.js';
import type { ConfigChangeKind } from '../render/changes.js';
import { compareConfigToDesired, type DriftItem } from '../render/drift.js';
import { parseWgQuickConfig } from '../render/wgquick.js';
import { liveDrift } from '../steps/service.js';
import type { DesiredNodeConfig } from '../topology/desired.js';

/** A PostUp that does what meshctl's does: load the conventional key file (written with %i or the interface name). */
export const loadsKeyFile = (postUp: string, iface: string): boolean =>
  new RegExp(`^wg set %i private-key /etc/wireguard/(%i|${iface.replace(/[^\w]/g, '\\$&')})\\.key$`).test(postUp.trim());

/** Whether one [Interface] drift item is a difference the running interface does not see. */
function cosmetic(item: DriftItem, postUps: readonly string[], iface: string): boolean {
  switch (item.field) {
    case 'privateKey':
    case 'saveConfig':
      return true;
    case 'postUp':
      return postUps.every((p) => loadsKeyFile(p, iface));
    case 'address':
    case 'listenPort':
    case 'mtu':
      // the live values are compared below (liveDrift): the file's spelling alone needs no restart
      return true;
    default:
      return false;
  }
}

/**
 * The change kind `up` should act on for a file it rewrites: `change` as classifyConfigChange (or the PrivateKey
 * rule) found it, lowered from 'interface' to 'peers' or 'none' when the running interface already is the designed
 * [Interface] with the node's own key file (see the module comment).
 */
export function changeWithoutRestart(facts: NodeFacts, desired: DesiredNodeConfig, change: ConfigChangeKind): ConfigChangeKind {
  if (change !== 'interface' || facts.config.text === undefined) return change;
  const iface = desired.interface;
  const keyRuns = facts.keys.privateKeyExists && facts.keys.publicKey !== undefined && facts.interfacePublicKey === facts.keys.publicKey;
  if (!keyRuns || !facts.interfaces.includes(iface) || !facts.live?.wgReadable) return change;
  if (liveDrift(facts, desired).restart.length > 0) return change;
  const parsed = parseWgQuickConfig(facts.config.text);
  const postUps = parsed.interface?.postUp ?? [];
  const drift = compareConfigToDesired(parsed, desired).filter((item) => item.severity !== 'info' || item.peer !== undefined);
  const interfaceItems = drift.filter((item) => item.peer === undefined && item.field !== 'syntax');
  if (!parsed.interface || !interfaceItems.every((item) => cosmetic(item, postUps, iface))) return change;
  return drift.some((item) => item.peer !== undefined) ? 'peers' : 'none';
}
