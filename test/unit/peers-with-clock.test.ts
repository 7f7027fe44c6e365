/**
 * Issue 10 (node-side cost): verify reads each node's peers and clock after its ping round from ONE `wg show IFACE
 * dump` whose awk prints the clock (src/facts/lean.ts peersWithClock, as up's round ahead already did), not a `date`
 * beside it: one exec fewer per node (a `date` per node in verify's round on the 16-node lab, strace 2026-12-01).
 *
 * In this host's shell, with stand-ins for `wg` and `date` that log their runs: the sections parse to what the shared
 * definitions' (FACTS.peers, FACTS.now) parse to, with no `date` (it runs only when the awk printed no clock). Then, on
 * fake converged nodes, the script verify's ping round sends holds these sections.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectVerify } from '../../src/checks/collect.js';
import { FACTS, factsScript, readFact, splitSections } from '../../src/facts/definitions.js';
import { peersWithClock } from '../../src/facts/lean.js';
import { PATH_PRELUDE, sectionScript } from '../../src/facts/sections.js';
import { withRun } from '../../src/transport/types.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';
import { tempDir } from '../support/temp-dir.js';

const ctx = { interface: 'wg0', listenPort: 0 };
// test values of key shape, not keys
const PRIVATE = 'aGVyZSBpcyBhIHByaXZhdGUga2V5IG9mIDMyIGJ5dGU=';
const DUMP = [
  ['wg0', PRIVATE, 'cHVibGljIGtleSBvZiB0aGUgaW50ZXJmYWNlIDMyYnk=', '51820', 'off'],
  ['cGVlciBwdWJsaWMga2V5IG51bWJlciBvbmUgMzIgYnk=', '(none)', '192.0.2.2:51820', '10.66.0.2/32', '1796000000', '1000', '2000', 'off'],
  [
    'cGVlciBwdWJsaWMga2V5IG51bWJlciB0d28gMzIgYnk=',
    'cHJlc2hhcmVkIGtleSBvZiAzMiBieXRlcyBhbmQgbW8=',
    '(none)',
    '10.66.0.3/32',
    '0',
    '0',
    '0',
    '25',
  ],
];

/** Runs `script` with stand-in wg (the dump above, or its error with `noWg`) and date; the two facts and the tools run. */
function run(script: string, { noWg = false } = {}) {
  const dir = tempDir('meshctl-peers-clock-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'calls');
  writeFileSync(log, '');
  const standIn = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\necho ${name} >> ${log}\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  standIn(
    'wg',
    noWg
      ? 'echo "Unable to access interface: Protocol not supported" >&2; exit 1'
      : `printf '%s\\n' ${DUMP.map((l) => `'${l.join('\t')}'`).join(' ')}`,
  );
  standIn('date', 'echo 1796000100');
  const awk = spawnSync('sh', ['-c', 'command -v awk'], { encoding: 'utf8' }).stdout.trim();
  standIn('awk', `exec ${awk} "$@"`);
  const out = spawnSync('/bin/sh', ['-c', script.replace(PATH_PRELUDE, `export LC_ALL=C PATH=${bin}`)], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  assert.ok(!out.stdout.includes(PRIVATE), 'no private key in the output');
  const sections = splitSections(out.stdout);
  return {
    peers: readFact(FACTS.peers, sections, ctx),
    now: readFact(FACTS.now, sections, ctx),
    calls: readFileSync(log, 'utf8').split('\n').filter(Boolean),
  };
}

const lean = () => [PATH_PRELUDE, ...peersWithClock(ctx.interface).map((s) => sectionScript(s.name, s.command))].join('\n');
const shared = () => factsScript([FACTS.now, FACTS.peers], ctx);

describe('the peers and the clock after a ping round from one dump (issue 10)', () => {
  it("the shared definitions' peers, the clock from the dump's awk, no date", () => {
    const now = run(lean());
    const old = run(shared());
    assert.deepEqual(now.peers, old.peers);
    assert.equal(now.peers.peers.length, 2);
    assert.equal(now.peers.peers[1]?.hasPresharedKey, true);
    // the host's clock through awk's srand(), not the stand-in date's
    assert.ok(Math.abs((now.now ?? 0) - Date.now() / 1000) < 60, String(now.now));
    // one pipeline: its two processes start in either order
    assert.deepEqual(now.calls.sort(), ['awk', 'wg']);
    assert.deepEqual(old.calls.sort(), ['awk', 'date', 'wg']);
  });

  it("no interface: the same peers (wg said why); the clock still from the dump's awk (it reads an empty dump)", () => {
    const now = run(lean(), { noWg: true });
    const old = run(shared(), { noWg: true });
    assert.deepEqual(now.peers, old.peers);
    assert.ok(Math.abs((now.now ?? 0) - Date.now() / 1000) < 60, String(now.now));
    assert.ok(!now.calls.includes('date'));
  });

  it("verify's ping round sends these sections (fake converged nodes)", async () => {
    await withConvergedFarm(3, async (inventory, farm) => {
      const sent: string[] = [];
      const connections = new Map(
        [...farm.connections()].map(([name, c]) => [
          name,
          withRun(c, (script, options) => {
            sent.push(script);
            return c.run(script, options);
          }),
        ]),
      );
      const collected = await collectVerify(inventory, connections, new Map(), { pathMtu: true });
      const pings = sent.filter((s) => /ping -n -q|fping /.test(s));
      assert.equal(pings.length, 3);
      for (const script of pings) {
        for (const section of peersWithClock(inventory.mesh.interface))
          assert.ok(script.includes(sectionScript(section.name, section.command)));
        assert.doesNotMatch(script, /^\{ date \+%s$/m);
      }
      for (const after of collected.afterPing!.values()) assert.equal(after.peers.length, 2);
    });
  });
});
