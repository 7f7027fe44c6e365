/**
 * Keys phase: the private key is generated on the node under umask 077 and never leaves it; only the public key
 * is printed. An existing key is kept (a mesh must not lose its identity on a re-run).
 */
import { wireguardPaths, type NodeFacts } from '../facts/node-facts.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';
import type { RemoteAction } from './action.js';

/** Undefined when the node already has a key whose public half the facts probe derived. */
export function planKeys(facts: NodeFacts, iface: string): RemoteAction | undefined {
  if (facts.keys.privateKeyExists && facts.keys.publicKey && facts.keys.privateKeyMode === '600') return undefined;
  const p = wireguardPaths(iface);
  return {
    description: facts.keys.privateKeyExists
      ? `derive the public key of the existing ${p.privateKey}`
      : `generate ${p.privateKey} on the node`,
    script: [
      'set -e',
      'umask 077',
      `mkdir -p ${p.dir} && chmod 700 ${p.dir}`,
      `if [ -s ${p.privateKey} ]; then echo kept; else wg genkey > ${p.privateKey}.meshctl-tmp && mv -f ${p.privateKey}.meshctl-tmp ${p.privateKey} && echo created; fi`,
      `chmod 600 ${p.privateKey}`,
      // the .pub file is for people and other tools; write it only when it differs
      `wg pubkey < ${p.privateKey} > ${p.publicKey}.meshctl-tmp`,
      `if cmp -s ${p.publicKey}.meshctl-tmp ${p.publicKey}; then rm -f ${p.publicKey}.meshctl-tmp; else chmod 644 ${p.publicKey}.meshctl-tmp && mv -f ${p.publicKey}.meshctl-tmp ${p.publicKey}; fi`,
      `cat ${p.publicKey}`,
    ].join('\n'),
  };
}

/** Parses the keys action's output: first line created|kept, last line the public key. */
export function parseKeysOutput(stdout: string): { created: boolean; publicKey: string } {
  const lines = stdout
    .trim()
    .split('\n')
    .map((l) => l.trim());
  const publicKey = lines.at(-1) ?? '';
  if (!looksLikeWireGuardKey(publicKey)) throw new Error('the node did not return a valid WireGuard public key');
  return { created: lines[0] === 'created', publicKey };
}
