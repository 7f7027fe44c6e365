/**
 * Q6/Q7 finding 2: `import --dry-run` printed the inventory and the notes only; the real run then also says, per
 * node, that the PrivateKey line moves from wg0.conf into wg0.key and that SaveConfig = true is turned off. The dry
 * run must say all of it, marked as not done. On the captured hand-built mesh (test/fixtures/facts/handbuilt-*.txt:
 * the key on a PrivateKey line on ms-1 and wk-2, wk-2 with SaveConfig = true, in wg0.key on wk-1 and ctb-edge-1),
 * and, for the foresight itself, side by side with the real adopting script in real sh on the same files.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dryRunLines } from '../../src/commands/import.js';
import { filteredConfigCommand } from '../../src/facts/definitions.js';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { inferInventory } from '../../src/import/infer.js';
import { adoptScript, describeAdoption, foreseeAdoption, parseAdoptOutput } from '../../src/import/probe.js';
import { captured, NODES } from '../support/handbuilt-hosts.js';
import { tempDir } from '../support/temp-dir.js';

const hosts = NODES.map(captured);

describe('import --dry-run says what the real run would do on each node, marked as not done (Q6/Q7)', () => {
  const draft = inferInventory(hosts, 'wg0').draft!;
  const lines = dryRunLines(draft, hosts, 'wg0', 'imported.yaml');
  const lineOf = (node: string) => lines.find((l) => l.startsWith(`${node}: `)) ?? '';
  it('one line per node, each "not done (dry run)", then the file it would write', () => {
    assert.equal(lines.length, NODES.length + 1, lines.join('\n'));
    for (const node of NODES) assert.match(lineOf(node), /^\S+: not done \(dry run\): key pair would be kept \(/);
    assert.match(lines.at(-1)!, /^meshctl import: not done \(dry run\): would write imported\.yaml: 4 nodes, 2 sites/);
  });
  it('ms-1 and wk-2: the PrivateKey line would move into wg0.key; wk-2 only: SaveConfig would be turned off', () => {
    for (const node of ['ms-1', 'wk-2'])
      assert.match(lineOf(node), /would move the PrivateKey line of wg0\.conf into \/etc\/wireguard\/wg0\.key on the node/);
    for (const node of ['wk-1', 'ctb-edge-1']) assert.match(lineOf(node), /\(already in \/etc\/wireguard\/wg0\.key\)/);
    assert.match(lineOf('wk-2'), /SaveConfig = true would be set to false in wg0\.conf/);
    for (const node of ['ms-1', 'wk-1', 'ctb-edge-1']) assert.doesNotMatch(lineOf(node), /SaveConfig/);
    for (const node of NODES) {
      assert.match(lineOf(node), /would write \/etc\/systemd\/system\/wg-quick@wg0\.service\.d\/\S+ \(a reload keeps the key\)/);
      assert.ok(lineOf(node).includes(`public ${draft.nodes.find((n) => n.name === node)!.publicKey}`));
    }
  });
  it('the real run says the same things done', () => {
    const ms1 = foreseeAdoption(hosts[0]!.facts, 'K');
    assert.equal(
      describeAdoption('ms-1', ms1, 'wg0', false, true),
      'ms-1: key pair kept (PrivateKey line moved from wg0.conf into /etc/wireguard/wg0.key on the node), public K',
    );
  });
});

describe('the foresight matches what the adopting script then does (real sh)', () => {
  const key = randomBytes(32).toString('base64');
  const bin = tempDir('meshctl-x7-bin-');
  // a stand-in `wg`: `wg show` prints the live key, `wg pubkey` pub-KEY (the key itself never printed)
  writeFileSync(join(bin, 'wg'), '#!/bin/sh\ncase "$1" in\n  pubkey) read -r k; echo "pub-$k" ;;\n  show) echo "$LIVE" ;;\nesac\n', {
    mode: 0o755,
  });
  const layouts = [
    { name: 'a PrivateKey line, SaveConfig = true', conf: `[Interface]\nPrivateKey = ${key}\nSaveConfig = true\n`, keyFile: false },
    { name: 'a PrivateKey line, saveconfig=TRUE # comment', conf: `[Interface]\nPrivateKey=${key}\nsaveconfig=TRUE # x\n`, keyFile: false },
    { name: 'the key in wg0.key and on a line', conf: `[Interface]\nPrivateKey = ${key}\n# SaveConfig = true\n`, keyFile: true },
    { name: 'the key in wg0.key only, SaveConfig = false', conf: '[Interface]\nSaveConfig = false\n', keyFile: true },
  ];
  for (const layout of layouts)
    it(layout.name, () => {
      const dir = tempDir('meshctl-x7-adopt-');
      writeFileSync(join(dir, 'wg0.conf'), layout.conf, { mode: 0o600 });
      if (layout.keyFile) writeFileSync(join(dir, 'wg0.key'), `${key}\n`, { mode: 0o600 });
      // the file as the facts probe reads it: filtered on the node
      const text = execFileSync('/bin/sh', ['-c', filteredConfigCommand(join(dir, 'wg0.conf'), join(dir, 'wg0.key'))], {
        encoding: 'utf8',
      });
      assert.ok(!text.includes(key));
      const facts = {
        config: { exists: true, text, hasPrivateKeyLine: layout.conf.includes('PrivateKey'), managedByMeshctl: false },
        keys: { privateKeyExists: layout.keyFile },
      } as unknown as NodeFacts;
      const r = spawnSync('/bin/sh', ['-c', adoptScript('wg0', false).replaceAll('/etc/wireguard/', `${dir}/`)], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, LIVE: `pub-${key}` },
      });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const done = parseAdoptOutput(r.stdout);
      const foreseen = foreseeAdoption(facts, `pub-${key}`);
      assert.deepEqual(
        { key: foreseen.key, confRewritten: foreseen.confRewritten, saveConfigOff: foreseen.saveConfigOff ?? false },
        { key: done.key, confRewritten: done.confRewritten, saveConfigOff: done.saveConfigOff ?? false },
        r.stdout,
      );
    });
});
