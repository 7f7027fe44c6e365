/**
 * The facts probe bounds what a node's wg-quick file can make meshctl read (issue 8, kind 6: a 66 MB wg0.conf took
 * 1.2 GB in a dry run): the text sent is cut on the node at CONFIG_TEXT_MAX_BYTES with a note, while the sha256 is
 * still of the whole file. The real probe commands run with sh against a temporary file standing in for wg0.conf.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFIG_TEXT_CUT_NOTE, CONFIG_TEXT_MAX_BYTES, FACTS, factsScript, readFact, splitSections } from '../../src/facts/definitions.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import { symlinkSync } from 'node:fs';

const ctx = { interface: 'wg0', listenPort: 51820 };

/** `lean`: up's probe (../../src/facts/lean.ts); `symlink`: wg0.conf is a symlink to the file (its size is not stat's). */
function probe(content: string, { lean = false, symlink = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-facts-'));
  try {
    const file = join(dir, 'wg0.conf');
    writeFileSync(symlink ? join(dir, 'target.conf') : file, content);
    if (symlink) symlinkSync(join(dir, 'target.conf'), file);
    const defs = lean ? [LEAN_FACTS.configMeta, LEAN_FACTS.configText] : [FACTS.configMeta, FACTS.configText];
    const script = factsScript(defs, ctx).replaceAll('/etc/wireguard/wg0.conf', file);
    const out = spawnSync('sh', ['-c', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(out.status, 0, out.stderr);
    const sections = splitSections(out.stdout);
    return {
      bytes: Buffer.byteLength(out.stdout),
      meta: readFact(FACTS.configMeta, sections, ctx),
      text: readFact(FACTS.configText, sections, ctx),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const variant of [{}, { lean: true }, { lean: true, symlink: true }])
  describe(`the wg-quick file in the facts probe ${JSON.stringify(variant)}`, () => {
    const peer = (i: number) =>
      `[Peer]\nPublicKey = ${Buffer.alloc(32, i % 251).toString('base64')}\nAllowedIPs = 10.${i >> 16}.${(i >> 8) & 255}.${i & 255}/32\n`;

    it('a 6 MB file: at most 1 MiB of text and a note leave the node; the sha256 is of the whole file', () => {
      const big = `[Interface]\n# Managed by meshctl\n${Array.from({ length: 60_000 }, (_, i) => peer(i)).join('')}`;
      assert.ok(big.length > 5 * CONFIG_TEXT_MAX_BYTES);
      const { bytes, meta, text } = probe(big, variant);
      assert.ok(bytes < CONFIG_TEXT_MAX_BYTES + 4096, `${bytes} bytes of probe output`);
      assert.equal(meta.sha256, createHash('sha256').update(big).digest('hex'));
      assert.ok(text!.startsWith('[Interface]\n# Managed by meshctl\n[Peer]\n'));
      assert.ok(text!.endsWith(`\n${CONFIG_TEXT_CUT_NOTE}\n`), text!.slice(-200));
    });

    it('a file under the cap comes whole, without the note', () => {
      const small = `[Interface]\n# Managed by meshctl\n${peer(1)}`;
      const { text } = probe(small, variant);
      assert.equal(text, small);
    });
  });
