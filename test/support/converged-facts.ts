/**
 * The converged homelab's facts as captured on a node (test/fixtures/facts/live-CAPTURE.txt: the facts probe's
 * output, wg0.conf the design at MTU 1420, the live interface as wg-quick left it), and the public keys they name.
 */
import { readFileSync } from 'node:fs';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';

/** The facts of `capture` (a file name under test/fixtures/facts), parsed for wg0 on port 51820. */
export function capturedFacts(capture = 'live-converged-ms-1.txt'): NodeFacts {
  return parseFactsProbe(readFileSync(`test/fixtures/facts/${capture}`, 'utf8'), { interface: 'wg0', listenPort: 51820 });
}

/**
 * Node name -> public key: every peer's from the `# NAME` comment above its PublicKey line in the captured wg0.conf,
 * and `self`'s own from its key file's public half.
 */
export function capturedKeys(facts: NodeFacts, self = 'ms-1'): Map<string, string> {
  const keys = new Map([...facts.config.text!.matchAll(/^# (\S+)\nPublicKey = (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  keys.set(self, facts.keys.publicKey!);
  return keys;
}
