/**
 * Issue 10: our side's filter of a node's wg-quick file (filterConfigText, run on every node's config in every facts
 * probe) redacts in ONE pass over the text, not one redactSecrets call per line, and gives what the per-line filter
 * gave: every line but a `PublicKey =` line redacted, those kept whole. Counted (redactPasses), never timed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dropSecretLines, filterConfigText } from '../../src/facts/definitions.js';
import { redactPasses, redactSecrets } from '../../src/remote/redact.js';

/** The filter as it was: redactSecrets on each line but the PublicKey lines. */
const perLine = (text: string) =>
  dropSecretLines(text)
    .split('\n')
    .map((line) => (/^\s*publickey\s*=/i.test(line) ? line : redactSecrets(line)))
    .join('\n');

const key = (n: number) => Buffer.alloc(32, n).toString('base64');

function config(peers: number): string {
  const lines = ['# managed by meshctl', '[Interface]', 'Address = 172.27.20.9/24', 'ListenPort = 51820', 'MTU = 1420'];
  lines.push('PostUp = wg set %i private-key /etc/wireguard/%i.key', 'SaveConfig = false');
  for (let i = 0; i < peers; i++)
    lines.push(
      '',
      '[Peer]',
      `# node-${i}`,
      `PublicKey = ${key(i + 1)}`,
      `AllowedIPs = 172.27.20.${i + 10}/32`,
      `Endpoint = 198.51.100.${i}:51820`,
    );
  return `${lines.join('\n')}\n`;
}

/** Lines a hand-edited file may hold: secrets in every spelling, key-shaped runs anywhere, CRs, odd PublicKey lines. */
const TRICKY = [
  `PrivateKey = ${key(90)}`,
  `  Private Key = ${key(91)}`,
  `#PresharedKey = ${key(92)}`,
  `; preshared_key=${key(93)}`,
  `PostUp = echo ${key(94)} | wg set %i private-key /dev/stdin`,
  `Address = 10.0.0.1/32 # ${key(95)}`,
  `  publickey=${key(96)}`,
  `\tPublicKey = ${key(97)}\r`,
  `PublicKey\t= ${key(98)} # ${key(99)}`,
  `xPublicKey = ${key(100)}`,
  `# PublicKey = ${key(101)}`,
  `Endpoint = host:1\r`,
  `${key(102)}=== trailing`,
  'DNS = 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  '',
];

describe('filterConfigText: one redaction pass per config (issue 10)', () => {
  it('redacts a config of 31 peers in one pass (the per-line filter made one per line: ~190)', () => {
    const text = config(31);
    redactPasses.count = 0;
    filterConfigText(text);
    assert.equal(redactPasses.count, 1);
  });

  it('gives what the per-line filter gave, on a rendered config and on hand-edited lines', () => {
    for (const text of [config(3), config(31), `${TRICKY.join('\n')}\n`, TRICKY.join('\n'), `${config(2)}${TRICKY.join('\n')}`]) {
      assert.equal(filterConfigText(text), perLine(text));
    }
    // and each tricky line on its own, with and without a line before it
    for (const line of TRICKY) {
      assert.equal(filterConfigText(line), perLine(line), line);
      assert.equal(filterConfigText(`[Peer]\n${line}\n`), perLine(`[Peer]\n${line}\n`), line);
    }
  });

  it('keeps PublicKey lines whole and redacts key-shaped runs elsewhere', () => {
    const out = filterConfigText(`PublicKey = ${key(7)}\nAddress = 10.0.0.1/32 # ${key(8)}\n`);
    assert.ok(out.includes(`PublicKey = ${key(7)}`));
    assert.ok(!out.includes(key(8)));
  });
});
