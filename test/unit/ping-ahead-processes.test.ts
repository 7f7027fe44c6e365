/**
 * Issue 10: the processes of the ping round ahead (src/engine/ping-ahead.ts), counted in this host's shell. A second
 * `up` on a converged mesh runs it on every node inside the facts probe; after its pings it read the routes with an
 * `ip` of its own and the clock with a `date`, though the probe's one `ip -batch` had read the same routes a moment
 * before and the awk that masks the peers' dump can tell the time. Here the facts probe and the round ahead run as
 * one script (as up sends them) with every tool a stand-in that logs its name; the round ahead may start only its
 * pings, one `wg` and one awk. Its output must still be what the ping phase reads (same sections, same values).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadInventory } from '../../src/inventory/load.js';
import { factsBesidePingAhead, pingAheadScript, phasePingScript, splitAhead } from '../../src/engine/ping-ahead.js';
import { factsProbeScript } from '../../src/facts/node-facts.js';
import { PATH_PRELUDE, splitSections } from '../../src/facts/sections.js';
import { pingProbe } from '../../src/checks/probes.js';
import { pingParamsFor } from '../../src/checks/ping-matrix.js';
import { FACTS } from '../../src/facts/definitions.js';
import { tempDir } from '../support/temp-dir.js';

const inventory = loadInventory('inventories/homelab.yaml');
const node = inventory.nodes[0]!.name;
const peers = inventory.nodes.filter((n) => n.name !== node);
const iface = inventory.mesh.interface;
const which = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
const HANDSHAKE = 1796000000;

/**
 * A converged node in a temp dir: stand-ins for wg, ip, ping and date (canned answers), the real awk; all logged.
 * `nftWaitsForPing`: an `nft` too (the facts' firewall section runs it), which logs `nft-end` as it ends, and ends
 * only once a ping was logged, or after 10 s: whether the round ahead pings while the facts are still being read.
 */
function standInNode(options: { nftWaitsForPing?: boolean } = {}) {
  const dir = tempDir('meshctl-ahead-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'calls');
  const tool = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\necho ${name} >> ${log}\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  const key = (i: number) => Buffer.alloc(32, i + 1).toString('base64');
  const dump = [
    [iface, 'PRIVATE', key(99), '51820', 'off'],
    ...peers.map((p, i) => [iface, key(i), '(none)', '(none)', `${p.overlayIp}/32`, String(HANDSHAKE), '100', '200', 'off']),
  ]
    .map((l) => `'${l.join('\t')}'`)
    .join(' ');
  const ifaceDump = peers.map(
    (p, i) => `'${[key(i), '(none)', '(none)', `${p.overlayIp}/32`, String(HANDSHAKE), '100', '200', 'off'].join('\t')}'`,
  );
  tool(
    'wg',
    `case "$*" in "show all dump") printf '%s\\n' ${dump};; "show ${iface} dump") printf '%s\\n' '${['PRIVATE', key(99), '51820', 'off'].join('\t')}' ${ifaceDump.join(' ')};; *) exit 1;; esac`,
  );
  const routes = peers.map((p) => `${p.overlayIp} proto kernel scope link`).join('\\n');
  // ip -batch: each command's answer, and the error line between parts (lean.ts IP_MARK_LINE); a plain route show too
  tool(
    'ip',
    `case "$*" in *batch*) while read -r l; do case $l in "route show dev ${iface}") printf '${routes}\\n';; "route show dev mc/end") echo 'Cannot find device "mc/end"' >&2;; esac; done;; *"route show dev ${iface}"*) printf '${routes}\\n';; esac`,
  );
  tool(
    'ping',
    'ip=; for a; do ip=$a; done; printf -- "--- %s ping statistics ---\\n1 packets transmitted, 1 received, 0%% packet loss, time 0ms\\n" "$ip"',
  );
  tool('date', `echo ${HANDSHAKE + 3}`);
  if (options.nftWaitsForPing)
    tool(
      'nft',
      // the host's grep and sleep by their paths: the script's PATH is the stand-ins' directory alone
      `i=0; while [ $i -lt 200 ] && ! ${which('grep')} -qx ping ${log}; do ${which('sleep')} 0.05; i=$((i + 1)); done; echo nft-end >> ${log}`,
    );
  tool('awk', `exec ${which('awk')} "$@"`);
  const run = (script: string) => {
    writeFileSync(log, '');
    // the interface must look present (routes are read only then); /sys/class/net/lo stands in for it
    const local = script.replaceAll(PATH_PRELUDE, `export LC_ALL=C PATH=${bin}`).replaceAll(`/sys/class/net/${iface}`, '/sys/class/net/lo');
    const r = spawnSync('/bin/sh', ['-c', local], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    const counts: Record<string, number> = {};
    for (const name of calls) counts[name] = (counts[name] ?? 0) + 1;
    return { stdout: r.stdout, counts, calls };
  };
  return { run };
}

const minus = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(a).flatMap(([k, v]) => (v - (b[k] ?? 0) > 0 ? [[k, v - (b[k] ?? 0)]] : [])));

describe('the ping round ahead on the node (issue 10): its pings, one wg and one awk', { skip: !which('awk') && 'no awk here' }, () => {
  const facts = factsProbeScript({ interface: iface, listenPort: 51820 });
  const ahead = pingAheadScript(inventory, node);

  // what up sends: the facts with the round ahead beside them (factsBesidePingAhead)
  const sent = factsBesidePingAhead(facts, inventory, node);

  it('starts no ip and no date of its own after the pings', () => {
    const n = standInNode();
    const alone = n.run(facts).counts;
    const both = n.run(sent).counts;
    assert.deepEqual(minus(both, alone), { ping: peers.length, wg: 1, awk: 1 });
  });

  it('pings while the facts are still being read, with the same processes and output as the round after them', () => {
    // the facts' nft ends only once a ping was logged (or after 10 s): a round that waits for the facts' end pings
    // only after it (issue 10: at 32 lab nodes the facts phase was the facts probe plus a ping round, one after the other)
    const n = standInNode({ nftWaitsForPing: true });
    const beside = n.run(sent);
    assert.ok(beside.calls.includes('nft-end'), 'the facts ran their firewall section');
    assert.ok(beside.calls.indexOf('ping') < beside.calls.indexOf('nft-end'), `pinged before the facts ended: ${beside.calls.join(' ')}`);
    // the same processes, and the same output (the shell's line numbers in its errors aside) as facts then round
    const after = n.run(`${facts}\n${ahead}`);
    assert.deepEqual(beside.counts, after.counts);
    // each part's sections by name (the pings' jobs end in any order), the clock (now: awk's srand) and the shell's
    // line numbers in its errors aside
    const same = (stdout: string) => {
      const { facts: f, ahead: a } = splitAhead(stdout.replace(/^(\S*sh: )\d+: /gm, '$1').replace(/^\d{10}$/gm, 'NOW'));
      const sections = (text: string | undefined) => [...splitSections(text ?? '').values()].sort((x, y) => x.name.localeCompare(y.name));
      return { f: sections(f), a: sections(a) };
    };
    assert.deepEqual(same(beside.stdout), same(after.stdout));
  });

  it("prints what the ping phase reads: every ping, the routes, the peers' dump and the clock", () => {
    const n = standInNode();
    const { ahead: round } = splitAhead(n.run(sent).stdout);
    assert.ok(round !== undefined);
    const targets = inventory.nodes.map((x) => ({ node: x.name, ip: x.overlayIp }));
    const ctx = { interface: iface, listenPort: 0 };
    const after = [FACTS.interfaceRoutes, FACTS.peers, FACTS.now].map((def) => ({ name: def.name, command: def.command(ctx) }));
    const params = pingParamsFor(node, targets, { count: 1, after });
    // the phase's own script is the one the round ahead stands in for (its parser reads the sections by name)
    assert.equal(pingProbe(params).script, phasePingScript(inventory, node));
    const parsed = pingProbe(params).parse(round);
    assert.equal(parsed.complete, true);
    for (const p of peers) assert.equal(parsed.ping.get(p.overlayIp)?.received, 1, p.name);
    const sections = parsed.after;
    assert.deepEqual(FACTS.interfaceRoutes.parse(sections.get('routes'), ctx).sort(), peers.map((p) => p.overlayIp).sort());
    const live = FACTS.peers.parse(sections.get('dump'), ctx);
    assert.deepEqual(live.problems, []);
    assert.equal(live.peers.length, peers.length);
    assert.ok(live.peers.every((p) => p.latestHandshake === HANDSHAKE));
    const now = FACTS.now.parse(sections.get('now'), ctx) ?? 0;
    // awk's clock (this host's), never before a handshake it showed
    assert.ok(Math.abs(now - Date.now() / 1000) < 60, `clock ${now}`);
  });
});
