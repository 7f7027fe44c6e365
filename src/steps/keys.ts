/**
 * Keys phase: the private key is generated on the node under umask 077 and never leaves it; only the public key
 * is printed. An existing key is kept (a mesh must not lose its identity on a re-run).
 */
import type { NodeAction } from '../engine/types.js';
import type { NodeFacts } from '../facts/node-facts.js';
import { sh } from '../remote/shell.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';

/** Undefined when the node already has a key (mode 0600) whose public half the facts probe derived. */
export function planKeys(facts: NodeFacts, iface: string): NodeAction | undefined {
  if (facts.keys.privateKeyExists && facts.keys.publicKey && facts.keys.privateKeyMode === '600') return undefined;
  const p = wireguardPaths(iface);
  const tmp = `${p.privateKey}.meshctl-tmp`;
  const pubTmp = `${p.publicKey}.meshctl-tmp`;
  return {
    changes: [{ kind: facts.keys.privateKeyExists ? 'derive-public-key' : 'generate-key', path: p.privateKey }],
    script: [
      'set -e',
      'umask 077',
      sh`mkdir -p ${p.dir} && chmod 700 ${p.dir}`.text,
      sh`if [ -s ${p.privateKey} ]; then echo kept; else wg genkey > ${tmp} && mv -f ${tmp} ${p.privateKey} && echo created; fi`.text,
      sh`chmod 600 ${p.privateKey}`.text,
      // the .pub file is for people and other tools; write it only when it differs
      sh`wg pubkey < ${p.privateKey} > ${pubTmp}`.text,
      sh`if cmp -s ${pubTmp} ${p.publicKey}; then rm -f ${pubTmp}; else chmod 644 ${pubTmp} && mv -f ${pubTmp} ${p.publicKey}; fi`.text,
      sh`cat ${p.publicKey}`.text,
    ].join('\n'),
  };
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
