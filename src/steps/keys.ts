/**
 * Keys phase: the private key is generated on the node under umask 077 and never leaves it; only the public key
 * is printed. An existing key is kept (a mesh must not lose its identity on a re-run).
 */
import type { NodeAction } from '../engine/types.js';
import type { NodeFacts } from '../facts/node-facts.js';
import { sh } from '../remote/shell.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';

/**
 * Whether IFACE.pub must be rewritten: it is missing, or the node found it is not the public half of the key file
 * (a copied private key, an old key's), or it is not mode 644. 'unchecked' (no wg yet, or facts from an older probe)
 * is left to the run that generates or derives the key, which rewrites a differing file anyway.
 */
export function publicKeyFileNeedsRepair(facts: NodeFacts): boolean {
  const file = facts.keys.publicKeyFile;
  if (!facts.keys.privateKeyExists || !file) return false;
  return (
    file.state === 'missing' || file.state === 'mismatch' || (file.state === 'match' && file.mode !== undefined && file.mode !== '644')
  );
}

/** Undefined when the node already has a key (mode 0600) whose public half the facts probe derived, and a right .pub. */
export function planKeys(facts: NodeFacts, iface: string): NodeAction | undefined {
  const keyOk = facts.keys.privateKeyExists && facts.keys.publicKey && facts.keys.privateKeyMode === '600';
  const p = wireguardPaths(iface);
  if (keyOk && publicKeyFileNeedsRepair(facts))
    return { changes: [{ kind: 'repair-public-key-file', path: p.publicKey }], script: keysScript(iface) };
  if (keyOk) return undefined;
  return {
    changes: [{ kind: facts.keys.privateKeyExists ? 'derive-public-key' : 'generate-key', path: p.privateKey }],
    script: keysScript(iface),
  };
}

/**
 * Keeps or makes the key, then writes IFACE.pub from `wg pubkey` when it differs (mode 644) and prints created|kept
 * and the public key (the .pub, printed only after it was made equal to `wg pubkey` output).
 */
function keysScript(iface: string): string {
  const p = wireguardPaths(iface);
  const tmp = `${p.privateKey}.meshctl-tmp`;
  const pubTmp = `${p.publicKey}.meshctl-tmp`;
  return [
    'set -e',
    'umask 077',
    sh`mkdir -p ${p.dir} && chmod 700 ${p.dir}`.text,
    sh`if [ -s ${p.privateKey} ]; then echo kept; else wg genkey > ${tmp} && mv -f ${tmp} ${p.privateKey} && echo created; fi`.text,
    sh`chmod 600 ${p.privateKey}`.text,
    // the .pub file is for people and other tools; write it only when it differs
    sh`wg pubkey < ${p.privateKey} > ${pubTmp}`.text,
    sh`if cmp -s ${pubTmp} ${p.publicKey}; then rm -f ${pubTmp}; else chmod 644 ${pubTmp} && mv -f ${pubTmp} ${p.publicKey}; fi`.text,
    sh`chmod 644 ${p.publicKey}`.text,
    // the file was just made equal to `wg pubkey` output above
    sh`cat ${p.publicKey}`.text,
  ].join('\n');
}

/**
 * Parses the keys action's output: first line created|kept, last line the public key.
 * @throws Error when the last line is not a WireGuard public key
 */
export function parseKeysOutput(stdout: string): { created: boolean; publicKey: string } {
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => l.trim());
  const publicKey = lines.at(-1) ?? '';
  if (!looksLikeWireGuardKey(publicKey)) throw new Error('the node did not return a valid WireGuard public key');
  return { created: lines[0] === 'created', publicKey };
}

/**
 * rotate-keys, first round trip on every node: the public half of the key file and of the running interface. On a
 * node being rotated (`generate`) also a new private key in IFACE.key.new (umask 077, mode 600; never printed, never
 * read back), and its public half. A .new left by an interrupted rotation is used again: its public key may already
 * be on the peers. Prints `current=`, `live=`, and with `generate` `next=` and `reused=yes|no`.
 */
export function rotateReadScript(iface: string, { generate }: { generate: boolean }): string {
  const p = wireguardPaths(iface);
  const next = `${p.privateKey}.new`;
  const tmp = `${next}.meshctl-tmp`;
  return [
    'set -e',
    'umask 077',
    sh`if [ ! -s ${p.privateKey} ]; then echo "no key file ${p.privateKey}: run meshctl up first" >&2; exit 1; fi`.text,
    sh`echo "current=$(wg pubkey < ${p.privateKey})"`.text,
    sh`echo "live=$(wg show ${iface} public-key 2>/dev/null)"`.text,
    ...(generate
      ? [
          sh`if [ -s ${next} ] && wg pubkey < ${next} >/dev/null 2>&1; then echo reused=yes; else wg genkey > ${tmp} && chmod 600 ${tmp} && mv -f ${tmp} ${next} && echo reused=no; fi`
            .text,
          sh`chmod 600 ${next}`.text,
          sh`echo "next=$(wg pubkey < ${next})"`.text,
        ]
      : []),
  ].join('\n');
}

/** What rotateReadScript printed. @throws Error when a key printed is not a WireGuard public key */
export function parseRotateRead(stdout: string): { current: string; live?: string; next?: string; reused: boolean } {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim() || undefined;
  const checked = (key: string, text: string | undefined) => {
    if (text !== undefined && !looksLikeWireGuardKey(text)) throw new Error(`the node printed no valid public key for ${key}`);
    return text;
  };
  const current = checked('current', value('current'));
  if (!current) throw new Error('the node did not print the public key of its key file');
  const live = checked('live', value('live'));
  const next = checked('next', value('next'));
  return { current, ...(live ? { live } : {}), ...(next ? { next } : {}), reused: value('reused') === 'yes' };
}

/**
 * rotate-keys, step 2 on the rotated node: the running interface takes the key in `keyFile` (IFACE.key.new to
 * rotate, IFACE.key to roll back); no file changes. WireGuard then sends nothing on the sessions made with the other
 * key (their receiving halves stay valid) and queues what the node sends until a handshake with the new key, which
 * the peers, once updated, start at once. Prints `live=` (the interface's public key afterwards).
 */
export function liveKeyScript(iface: string, keyFile: string): string {
  return ['set -e', sh`wg set ${iface} private-key ${keyFile}`.text, sh`echo "live=$(wg show ${iface} public-key)"`.text].join('\n');
}

/**
 * rotate-keys, a peer's live side after its config was rewritten and synced (the rotated node's key moved from
 * `fromKey` to `toKey`): the endpoint the peer last had for the node is kept on the new entry when the config gives
 * none (a node reached only where it roamed from), then one ping to the node's overlay address starts the
 * handshake with the new key at once (not at the next packet the peer sends).
 */
export function peerHandshakeScript(iface: string, fromKey: string, toKey: string, overlayIp: string): { before: string; after: string } {
  return {
    before: sh`mc_ep=$(wg show ${iface} endpoints | awk -v k=${fromKey} '$1 == k { print $2 }')`.text,
    after: [
      sh`case "$mc_ep" in ''|'(none)') ;; *) if [ "$(wg show ${iface} endpoints | awk -v k=${toKey} '$1 == k { print $2 }')" = '(none)' ]; then wg set ${iface} peer ${toKey} endpoint "$mc_ep"; fi;; esac`
        .text,
      sh`ping -n -c 1 -W 1 ${overlayIp} >/dev/null 2>&1 || true`.text,
    ].join('\n'),
  };
}

/**
 * rotate-keys, the last step on the rotated node (after every peer knows the new public key): the running interface
 * runs the new key (already so after liveKeyScript: then a no-op), IFACE.key.new replaces IFACE.key (rename: the old key file is gone in one step, and a restart
 * at any moment finds a key), IFACE.pub is rewritten, then one ping to each peer's overlay address starts the new
 * handshakes at once instead of at the next packet. Prints `live=` (the interface's public key afterwards).
 */
export function swapKeyScript(iface: string, peerOverlayIps: readonly string[]): string {
  const p = wireguardPaths(iface);
  const next = `${p.privateKey}.new`;
  const pubTmp = `${p.publicKey}.meshctl-tmp`;
  return [
    'set -e',
    'umask 077',
    sh`wg set ${iface} private-key ${next}`.text,
    sh`mv -f ${next} ${p.privateKey}`.text,
    sh`wg pubkey < ${p.privateKey} > ${pubTmp} && chmod 644 ${pubTmp} && mv -f ${pubTmp} ${p.publicKey}`.text,
    sh`echo "live=$(wg show ${iface} public-key)"`.text,
    sh`for ip in ${peerOverlayIps}; do ping -n -c 1 -W 1 "$ip" >/dev/null 2>&1 & done; wait; true`.text,
  ].join('\n');
}

/** Removes IFACE.key.new (a rotation given up before the swap). */
export const discardNewKeyScript = (iface: string): string => sh`rm -f ${`${wireguardPaths(iface).privateKey}.new`}`.text;
