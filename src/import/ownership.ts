/**
 * Whose is the WireGuard interface on a node (issue 8, kind 3a; issue 9, "take over an existing mesh")? Pure: the
 * node's facts in (../facts/node-facts.ts), a verdict out. Shared by up's facts and baseline checks
 * (listen-port-free, no-foreign-wireguard in ../engine/registry.ts) and by `meshctl import`.
 *
 * meshctl's own interface is recognised by more than the header comment of wg0.conf, which wg-quick drops when it
 * saves the live state (`SaveConfig = true`, on every stop):
 * - the header comment `Managed by meshctl` in IFACE.conf;
 * - meshctl's drop-in /etc/systemd/system/wg-quick@IFACE.service.d/meshctl-keep-key.conf (only `up` and `import`
 *   write it), together with the key file: the interface runs with the public half of /etc/wireguard/IFACE.key
 *   (`wg pubkey < IFACE.key` and `wg show IFACE public-key`, both derived on the node: only public keys compared).
 * An interface (or IFACE.conf) with the mesh's name that is none of these is a hand-built one: `meshctl import`
 * takes it over.
 */
import type { NodeFacts } from '../facts/node-facts.js';
import { wireguardPaths } from '../remote/wireguard.js';

export interface Ownership {
  /** meshctl made (or adopted) this interface: up may change it */
  own: boolean;
  /** what it was recognised by, in words (empty when not own) */
  by: string[];
  /**
   * Set when it is meshctl's but IFACE.conf is no longer meshctl's rendering: why, in words (wg-quick saved the
   * live state over it, or it was adopted by import / edited by hand). `up` rewrites it, keeping IFACE.conf.bak.
   */
  rewritten?: string;
  /** the interface or its config exists, is not meshctl's: a hand-built mesh (or another tool's) */
  handBuilt: boolean;
}

/** The subset of NodeFacts the verdict reads (so older captures and tests can give just these). */
export type OwnershipFacts = Pick<NodeFacts, 'interfaces' | 'interfacePublicKey'> & {
  config: Pick<NodeFacts['config'], 'exists' | 'text' | 'hasPrivateKeyLine' | 'managedByMeshctl'>;
  keys: Pick<NodeFacts['keys'], 'privateKeyExists' | 'publicKey'>;
  service: Pick<NodeFacts['service'], 'reloadDropInSha256'>;
};

/** `SaveConfig = true` in a (secret-filtered) wg-quick text: wg-quick saves the live state over the file on stop. */
export const savesConfig = (text: string | undefined): boolean => /^\s*SaveConfig\s*=\s*true\s*$/im.test(text ?? '');

/** Why IFACE.conf of an own interface differs from a rendering (only when the header comment is gone). */
function rewrittenWhy(facts: OwnershipFacts, iface: string): string | undefined {
  if (!facts.config.exists || facts.config.managedByMeshctl) return undefined;
  const file = wireguardPaths(iface).config;
  if (savesConfig(facts.config.text))
    return `${file} was rewritten by wg-quick (SaveConfig = true saves the live interface over it at every stop${facts.config.hasPrivateKeyLine ? ', private key included' : ''}): meshctl's header comment is gone`;
  return `${file} is not meshctl's rendering (adopted by \`meshctl import\`, or edited by hand)`;
}

/** Judges the interface `iface` on a node: meshctl's own, hand-built, or absent (neither). */
export function interfaceOwnership(facts: OwnershipFacts, iface: string): Ownership {
  const paths = wireguardPaths(iface);
  const present = facts.interfaces.includes(iface);
  const by: string[] = [];
  if (facts.config.managedByMeshctl) by.push(`the header comment of ${paths.config}`);
  // partial facts (older captures, tests) may lack the service and keys parts: then nothing is recognised by them
  const dropIn = facts.service?.reloadDropInSha256 !== undefined;
  const keyRuns =
    facts.keys?.privateKeyExists === true && facts.keys.publicKey !== undefined && facts.interfacePublicKey === facts.keys.publicKey;
  if (dropIn && (keyRuns || !present)) {
    by.push(`meshctl's drop-in ${paths.reloadDropIn}`);
    if (keyRuns) by.push(`${iface} runs with the key of ${paths.privateKey}`);
  }
  const own = by.length > 0;
  const rewritten = own ? rewrittenWhy(facts, iface) : undefined;
  return {
    own,
    by,
    ...(rewritten ? { rewritten } : {}),
    handBuilt: !own && (present || facts.config.exists),
  };
}

/** The command a user runs to take a hand-built mesh over, for messages: with the inventory they gave, if any. */
export const importHint = (inventorySource?: string): string =>
  `meshctl import ${inventorySource ? `${inventorySource} ` : ''}-o imported.yaml`;
