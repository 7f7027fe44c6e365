/**
 * Keys phase: the private key is generated on the node under umask 077 and never leaves it; only the public key
 * is printed. An existing key is kept (a mesh must not lose its identity on a re-run).
 */
import type { NodeAction } from '../engine/types.js';
import type { NodeFacts } from '../facts/node-facts.js';
import { sh } from '../remote/shell.js';
import { fileModePaths, wireguardPaths } from '../remote/wireguard.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';
import { parseWireGuardFileModes, WIREGUARD_FILE_STAT_FORMAT, type WireGuardFileMode } from '../facts/definitions.js';

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

/** A stat line of rotate-keys' reads: `wgfile=` then WIREGUARD_FILE_STAT_FORMAT (type|mode|uid|user|path). */
const STAT_LINE = `wgfile=${WIREGUARD_FILE_STAT_FORMAT}`;

/**
 * Shell lines that exit 1 (message on stderr) unless `path` is a regular file (not a symbolic link: stat without -L)
 * of root's with mode 0600, saying `what` it was about to be used for.
 */
const rootOnlyFileTest = (path: string, what: string) =>
  sh`mc_st=$(stat -c '%u %a %F' -- ${path}); if [ "$mc_st" != '0 600 regular file' ]; then echo ${`${path} is not a regular file of root's with mode 0600 (uid, mode, type: `}"$mc_st"${`): ${what}`} >&2; exit 1; fi`
    .text;

/**
 * rotate-keys, a read on one node: the public half of the key file (`current=`) and of the running interface
 * (`live=`), the owner and mode of every path of ../remote/wireguard.ts fileModePaths (`wgfile=` lines, those that
 * exist: as FACTS.wireguardFiles, judged by ../checks/file-modes.ts) and `confkey=yes` when IFACE.conf has a
 * PrivateKey or PresharedKey line (their values never printed). `listPeers`: also `peer=` the public key of every
 * peer the interface runs and IFACE.conf names (what ../engine/rotate.ts takes as the record of a pending key).
 *
 * With `generate` (the rotated node) it also makes a new private key in IFACE.key.new and prints only its public half
 * (`next=`) and `reused=yes|no`; the private key is never printed nor read back. First /etc/wireguard must be root's
 * and written by root alone (else exit 1, nothing made: another user could swap the files in it). A IFACE.key.new
 * left by an interrupted rotation is used again (`reused=yes`: peers may hold its public half) only when it is a
 * regular file of root's, mode 0600, holding a key whose public half is one of `pendingKeys` (public keys the peers
 * hold for this node that are no node's current key) and not the current one. Anything else in its place, and any
 * IFACE.key.new.meshctl-tmp, is removed, each printed as `leftover=REASON|STAT LINE` (REASON: `owner-mode` not root's
 * regular 0600 file, `not-a-key`, `current` the node's current key, `not-pending` held by no peer; a temp file is
 * printed only when not root's 0600); then the key is made in a fresh temp file: removed first, created with
 * noclobber (`set -C`: never written through a path another user made) under umask 077, checked to be root's 0600
 * and renamed to IFACE.key.new (Q10 F2: a planted wg0.key.new was used as "a pending key", and `wg genkey >` wrote
 * the new key into a planted temp file another user could read).
 */
export function rotateReadScript(
  iface: string,
  { generate, pendingKeys = [], listPeers = false }: { generate: boolean; pendingKeys?: readonly string[]; listPeers?: boolean },
): string {
  const p = wireguardPaths(iface);
  const next = `${p.privateKey}.new`;
  const tmp = `${next}.meshctl-tmp`;
  return [
    'set -e',
    'umask 077',
    sh`if [ ! -s ${p.privateKey} ]; then echo "no key file ${p.privateKey}: run meshctl up first" >&2; exit 1; fi`.text,
    sh`mc_cur=$(wg pubkey < ${p.privateKey}); echo "current=$mc_cur"`.text,
    sh`echo "live=$(wg show ${iface} public-key 2>/dev/null)"`.text,
    // every path up's baseline judges (../remote/wireguard.ts fileModePaths), so rotate-keys refuses what up refuses
    sh`stat -c ${STAT_LINE} -- ${fileModePaths(iface)} 2>/dev/null || true`.text,
    // the key lines' count only (as FACTS.configMeta), never their values
    sh`if [ -f ${p.config} ] && awk '{ l = tolower($0) } l ~ /^[[:space:]]*(privatekey|presharedkey)/ { f = 1 } END { exit !f }' ${p.config} 2>/dev/null; then echo confkey=yes; fi`
      .text,
    ...(listPeers
      ? [
          sh`wg show ${iface} peers 2>/dev/null | sed 's/^/peer=/' || true`.text,
          // PublicKey lines only (wg's keys are case-insensitive): a private key's line never matches
          sh`awk '{ l = tolower($0) } l ~ /^[[:space:]]*publickey[[:space:]]*=/ { sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); print "peer=" $0 }' ${p.config} 2>/dev/null || true`
            .text,
        ]
      : []),
    ...(generate
      ? [
          // the directory the key is made in: root's, written by root alone (judged before the rotation; again here)
          sh`mc_d=$(stat -c '%u %a' -- ${p.dir}); case "\${mc_d#* }" in *[2367]?|*[2367]) mc_dw=yes;; *) mc_dw=no;; esac`.text,
          sh`if [ "\${mc_d%% *}" != 0 ] || [ $mc_dw = yes ]; then echo ${`${p.dir} is not root's or is writable by group or others (uid, mode: `}"$mc_d"${`): no key is made in it; meshctl verify says how to fix it`} >&2; exit 1; fi`
            .text,
          sh`if [ -e ${tmp} ] || [ -L ${tmp} ]; then case "$(stat -c '%u %a %F' -- ${tmp})" in '0 600 regular file'|'0 600 regular empty file') ;; *) echo "leftover=owner-mode|$(stat -c ${WIREGUARD_FILE_STAT_FORMAT} -- ${tmp})";; esac; rm -f -- ${tmp}; fi`
            .text,
          'mc_why=none',
          sh`if [ -e ${next} ] || [ -L ${next} ]; then`.text,
          sh`  mc_ns=$(stat -c ${WIREGUARD_FILE_STAT_FORMAT} -- ${next})`.text,
          // stat's own `-c` spelling of "regular file|600|0|": a symbolic link, another owner or mode is not read
          `  case "$mc_ns" in`,
          `    'regular file|600|0|'*)`,
          sh`      if mc_np=$(wg pubkey < ${next} 2>/dev/null); then`.text,
          '        if [ "$mc_np" = "$mc_cur" ]; then mc_why=current; else',
          '          mc_why=not-pending',
          sh`          for mc_k in ${[...pendingKeys]}; do if [ "$mc_k" = "$mc_np" ]; then mc_why=; fi; done`.text,
          '        fi',
          '      else mc_why=not-a-key; fi;;',
          '    *) mc_why=owner-mode;;',
          '  esac',
          sh`  if [ -n "$mc_why" ]; then echo "leftover=$mc_why|$mc_ns"; rm -f -- ${next}; fi`.text,
          'fi',
          sh`if [ -z "$mc_why" ]; then echo reused=yes; else`.text,
          sh`  rm -f -- ${tmp}`.text,
          sh`  ( set -C; wg genkey > ${tmp} )`.text,
          `  ${rootOnlyFileTest(tmp, 'the new key is not used')}`,
          sh`  mv -f -- ${tmp} ${next}`.text,
          '  echo reused=no',
          'fi',
          sh`echo "next=$(wg pubkey < ${next})"`.text,
        ]
      : []),
  ].join('\n');
}

/** A file IFACE.key.new (or its temp file) a rotation found and removed: why, and its stat line. */
export interface LeftoverKeyFile {
  /** `owner-mode`: not a regular file of root's with mode 0600; `not-a-key`: `wg pubkey` refused it; `current`: the
   * node's current key; `not-pending`: its public half is held by no peer (no interrupted rotation left it) */
  reason: 'owner-mode' | 'not-a-key' | 'current' | 'not-pending';
  file: WireGuardFileMode;
}

/** What rotateReadScript printed (fields without a line are absent). */
export interface RotateRead {
  current: string;
  live?: string;
  next?: string;
  /** a IFACE.key.new of an interrupted rotation was used again */
  reused: boolean;
  /** the `wgfile=` lines: owner and mode of the WireGuard files (absent: the node printed none) */
  files?: WireGuardFileMode[];
  /** IFACE.conf has a PrivateKey or PresharedKey line */
  confHoldsKey?: boolean;
  /** `listPeers`: the peers' public keys the interface runs or IFACE.conf names (valid keys only, once each) */
  peerKeys?: string[];
  /** `generate`: the files removed instead of used */
  leftovers?: LeftoverKeyFile[];
}

const LEFTOVER_REASONS = new Set<LeftoverKeyFile['reason']>(['owner-mode', 'not-a-key', 'current', 'not-pending']);

/** What rotateReadScript printed. @throws Error when a key printed is not a WireGuard public key */
export function parseRotateRead(stdout: string): RotateRead {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim() || undefined;
  const all = (key: string) => [...stdout.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!.trim());
  const checked = (key: string, text: string | undefined) => {
    if (text !== undefined && !looksLikeWireGuardKey(text)) throw new Error(`the node printed no valid public key for ${key}`);
    return text;
  };
  const current = checked('current', value('current'));
  if (!current) throw new Error('the node did not print the public key of its key file');
  const live = checked('live', value('live'));
  const next = checked('next', value('next'));
  const files = parseWireGuardFileModes(all('wgfile').join('\n'));
  const peerKeys = [...new Set(all('peer').filter(looksLikeWireGuardKey))];
  const leftovers = all('leftover').flatMap((line): LeftoverKeyFile[] => {
    const [reason, ...stat] = line.split('|');
    const [file] = parseWireGuardFileModes(stat.join('|'));
    return file && LEFTOVER_REASONS.has(reason as LeftoverKeyFile['reason']) ? [{ reason: reason as LeftoverKeyFile['reason'], file }] : [];
  });
  return {
    current,
    ...(live ? { live } : {}),
    ...(next ? { next } : {}),
    reused: value('reused') === 'yes',
    ...(files.length ? { files } : {}),
    ...(value('confkey') === 'yes' ? { confHoldsKey: true } : {}),
    ...(peerKeys.length ? { peerKeys } : {}),
    ...(leftovers.length ? { leftovers } : {}),
  };
}

/** A leftover key file in words: "/etc/wireguard/wg0.key.new: regular file, mode 0600, owner nobody (uid 65534): not root's". */
export function describeLeftover({ reason, file }: LeftoverKeyFile): string {
  const why =
    reason === 'owner-mode'
      ? "not a regular file of root's with mode 0600"
      : reason === 'not-a-key'
        ? 'not a WireGuard private key'
        : reason === 'current'
          ? "the node's current key"
          : 'its public key is held by no peer, so no interrupted rotation left it';
  return `${file.path} (${file.type}, mode 0${file.mode.padStart(3, '0')}, owner ${file.owner} (uid ${file.uid}): ${why})`;
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
    rootOnlyFileTest(next, 'not used; nothing changed'),
    sh`wg set ${iface} private-key ${next}`.text,
    sh`mv -f ${next} ${p.privateKey}`.text,
    rootOnlyFileTest(p.privateKey, 'after the rename: its key may be known to another user'),
    sh`rm -f -- ${pubTmp}`.text,
    sh`( set -C; wg pubkey < ${p.privateKey} > ${pubTmp} ) && chmod 644 ${pubTmp} && mv -f ${pubTmp} ${p.publicKey}`.text,
    sh`echo "live=$(wg show ${iface} public-key)"`.text,
    sh`for ip in ${peerOverlayIps}; do ping -n -c 1 -W 1 "$ip" >/dev/null 2>&1 & done; wait; true`.text,
  ].join('\n');
}

/** Removes IFACE.key.new (a rotation given up before the swap). */
export const discardNewKeyScript = (iface: string): string => sh`rm -f ${`${wireguardPaths(iface).privateKey}.new`}`.text;
