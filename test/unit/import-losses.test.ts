/**
 * Q6 findings 1, 2, 3, 6 and 7 on `meshctl import`:
 * - every refusal the adopting script can reach is found first by the read-only probe (adoptCheckScript), so no node
 *   is changed unless all can be taken over; both scripts run in real sh here, side by side, on the same files;
 * - what the inventory cannot hold (a PresharedKey, DNS, hooks, Table, IPv6, a network behind a peer, a live-only
 *   peer) is named with its line of the file (the secret lines counted on the node, never read), and refused when
 *   dropping it cuts traffic unless --drop-unsupported;
 * - a peer no host has is explained: a stale key in one file, or a node whose interface does not run.
 * The mesh is the captured hand-built one of ./import.test.ts (test/fixtures/facts/handbuilt-*.txt).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { filteredConfigCommand } from '../../src/facts/definitions.js';
import { inferInventory, type ImportedHost } from '../../src/import/infer.js';
import { importLosses } from '../../src/import/losses.js';
import { adoptCheckScript, adoptScript, parseAdoptOutput, SECRET_LINES_FACT } from '../../src/import/probe.js';
import { captured, NODES } from '../support/handbuilt-hosts.js';
import { tempDir } from '../support/temp-dir.js';

const hosts = NODES.map(captured);
const key = () => randomBytes(32).toString('base64');

/** A stand-in `wg`: `wg show wg0 public-key` prints $LIVE; `wg pubkey` prints pub-KEY, or fails for a key `bad…`. */
function fakeWg(): string {
  const bin = tempDir('meshctl-x6-bin-');
  writeFileSync(
    join(bin, 'wg'),
    '#!/bin/sh\ncase "$1" in\n  pubkey) read -r k; case "$k" in bad*|"") exit 1 ;; esac; echo "pub-$k" ;;\n  show) [ -n "$LIVE" ] && echo "$LIVE" || exit 1 ;;\n  *) exit 1 ;;\nesac\n',
    { mode: 0o755 },
  );
  return bin;
}
const snapshot = (dir: string) =>
  readdirSync(dir)
    .sort()
    .map((f) => `${f}:${readFileSync(join(dir, f), 'utf8')}`);

describe('import: the probe foresees every refusal of the adopting script, read-only (Q6 finding 2)', () => {
  const bin = fakeWg();
  const A = key();
  const B = key();
  const cases: Array<{ name: string; conf: (dir: string) => string; files?: Record<string, string>; live?: string }> = [
    { name: 'two PrivateKey lines', conf: () => `[Interface]\nPrivateKey = ${A}\nprivatekey=${B}\n` },
    { name: 'a PrivateKey line that is no key', conf: () => '[Interface]\nPrivateKey = bad\n' },
    { name: 'running with another key than the line', conf: () => `[Interface]\nPrivateKey = ${A}\n`, live: `pub-${B}` },
    { name: 'key file and line differ', conf: () => `[Interface]\nPrivateKey = ${A}\n`, files: { 'wg0.key': `${B}\n` } },
    { name: 'no key anywhere', conf: () => '[Interface]\nAddress = 10.0.0.1/32\n', live: `pub-${A}` },
    { name: 'running with another key than the key file', conf: () => '[Interface]\n', files: { 'wg0.key': `${A}\n` }, live: `pub-${B}` },
    {
      name: 'the tutorial layout: PostUp loads /etc/wireguard/privatekey',
      conf: (d) => `[Interface]\nPostUp = wg set %i private-key ${d}/privatekey\n`,
      files: { privatekey: `${A}\n` },
      live: `pub-${A}`,
    },
    { name: 'a PrivateKey line it runs with (taken over)', conf: () => `[Interface]\nPrivateKey = ${A}\n`, live: `pub-${A}` },
    { name: 'the key file it runs with (taken over)', conf: () => '[Interface]\n', files: { 'wg0.key': `${A}\n` }, live: `pub-${A}` },
  ];
  for (const c of cases)
    it(`${c.name}: the probe says what the adopting script would, and changes nothing`, () => {
      const run = (script: (dir: string) => string) => {
        const dir = tempDir('meshctl-x6-adopt-');
        writeFileSync(join(dir, 'wg0.conf'), c.conf(dir), { mode: 0o600 });
        for (const [f, text] of Object.entries(c.files ?? {})) writeFileSync(join(dir, f), text, { mode: 0o600 });
        const before = snapshot(dir);
        const r = spawnSync('/bin/sh', ['-c', script(dir)], {
          encoding: 'utf8',
          env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, LIVE: c.live ?? '' },
        });
        return { r, dir, before, after: snapshot(dir) };
      };
      const check = run((dir) => adoptCheckScript('wg0').replaceAll('/etc/wireguard/', `${dir}/`));
      const adopt = run((dir) => adoptScript('wg0', false).replaceAll('/etc/wireguard/', `${dir}/`));
      assert.equal(check.r.status, 0, check.r.stderr);
      assert.deepEqual(check.after, check.before, 'the check wrote nothing');
      assert.ok(!check.r.stdout.includes(A) && !check.r.stdout.includes(B), 'no key in its output');
      const foreseen = parseAdoptOutput(check.r.stdout).refused;
      const refused = parseAdoptOutput(adopt.r.stdout).refused;
      const same = (text: string | undefined, dir: string) => text?.replaceAll(dir, 'D').replace(/; wg0 loads its key from .*$/, '');
      assert.equal(same(foreseen, check.dir), same(refused, adopt.dir), `${check.r.stdout}\n--\n${adopt.r.stdout}`);
      assert.equal(adopt.r.status, refused ? 3 : 0, adopt.r.stdout + adopt.r.stderr);
      if (c.name.startsWith('the tutorial'))
        assert.match(
          foreseen ?? '',
          /; wg0 loads its key from \S+\/privatekey \(PostUp, line 2 of \S+\/wg0\.conf\): copy it where meshctl keeps it \(install -m 600 \S+\/privatekey \S+\/wg0\.key\)/,
        );
    });

  it('a foreseen refusal stops the import before any node is changed, and names the node', () => {
    const refusing = hosts.map((h) =>
      h.target.name === 'wk-1'
        ? { ...h, adoptRefusal: 'no key: neither /etc/wireguard/wg0.key nor a PrivateKey line in /etc/wireguard/wg0.conf' }
        : h,
    );
    const r = inferInventory(refusing, 'wg0');
    assert.equal(r.draft, undefined);
    assert.deepEqual(r.problems, [
      'wk-1: cannot keep its key pair: no key: neither /etc/wireguard/wg0.key nor a PrivateKey line in /etc/wireguard/wg0.conf',
    ]);
    assert.equal(inferInventory(refusing, 'wg0', { dropUnsupported: true }).draft, undefined, 'no flag takes a key refusal over');
  });
});

describe('import: what the inventory cannot hold is named by its line, and refused when it cuts traffic (Q6 findings 1, 3)', () => {
  const psk = key();
  const own = key();
  // a hand-built file of the kinds Q6 met (mesh A): secrets are real-looking keys, read only by the node-side filters
  const lines = [
    '[Interface]', //                                        1
    'Address = 172.27.15.12/24, fd27:15::12/64', //           2
    `PrivateKey = ${own}`, //                                 3
    'ListenPort = 51820', //                                  4
    'DNS = 192.168.15.1', //                                  5
    'Table = off', //                                         6
    'PostUp = ip route add 172.27.15.0/24 dev %i', //         7
    'PostDown = iptables -t nat -D POSTROUTING -o lan0 -j MASQUERADE', // 8
    'PostUp = wg set %i private-key /etc/wireguard/%i.key', // 9 (meshctl's own: not a loss)
    '', //                                                    10
    '[Peer]', //                                              11
    '# wk-1', //                                              12
    `PublicKey = ${hosts[1]!.facts.interfacePublicKey!}`, //  13
    `PresharedKey = ${psk}`, //                               14
    'AllowedIPs = 172.27.15.11/32, 10.77.0.0/24', //          15
    'AllowedIPs = fd27:15::11/128', //                        16
    '', //                                                    17
    '[Peer]', //                                              18
    `PublicKey = ${hosts[2]!.facts.interfacePublicKey!}`, //  19
    'AllowedIPs = 172.27.15.0/24', //                         20 (the overlay: up's own routing decides)
    '',
  ];
  const dir = tempDir('meshctl-x6-losses-');
  const conf = join(dir, 'wg0.conf');
  writeFileSync(conf, lines.join('\r\n'));
  const ctx = { interface: 'wg0', listenPort: 51820 };
  const secretOut = execFileSync('/bin/sh', ['-c', SECRET_LINES_FACT.command(ctx).replaceAll('/etc/wireguard/wg0.conf', conf)], {
    encoding: 'utf8',
  });
  const filtered = execFileSync('/bin/sh', ['-c', filteredConfigCommand(conf, join(dir, 'wg0.key'))], { encoding: 'utf8' });
  const secretLines = SECRET_LINES_FACT.parse({ body: secretOut, rc: 0 } as never, ctx)!;

  it('the node-side count gives line numbers and kinds only, never a value', () => {
    assert.equal(secretOut, '3 privatekey\n14 presharedkey\nlines 20\n');
    assert.ok(!filtered.includes(psk) && !filtered.includes(own));
  });
  const keys = new Map(hosts.map((h) => [h.facts.interfacePublicKey!, h.target.name]));
  const overlay = new Map(
    hosts.map((h, i) => [h.facts.interfacePublicKey!, ['172.27.15.12', '172.27.15.11', '172.27.15.13', '172.27.15.31'][i]!]),
  );
  const lossesOf = (text: string) =>
    importLosses({ text, secretLines, livePeers: [], liveReadable: true, hostKeys: keys, overlayIps: overlay, network: '172.27.15.0/24' });
  const losses = lossesOf(filtered);
  it('names each with its line of the file and what up does to it', () => {
    const got = losses.map((l) => `${l.line} ${l.cutsTraffic ? 'CUT' : 'note'} ${l.what}`);
    assert.deepEqual(got.sort(), [
      '14 CUT PresharedKey of peer wk-1 (its value not read)',
      '15 CUT AllowedIPs 10.77.0.0/24 of peer wk-1 (beyond the overlay 172.27.15.0/24: a network behind that peer)',
      '16 note AllowedIPs fd27:15::11/128 of peer wk-1 (IPv6)',
      '2 note Address fd27:15::12/64 (IPv6)',
      '5 note DNS = 192.168.15.1',
      '6 CUT Table = off',
      '7 note PostUp = ip route add 172.27.15.0/24 dev %i',
      '8 note PostDown = iptables -t nat -D POSTROUTING -o lan0 -j MASQUERADE',
    ]);
    assert.match(losses.find((l) => l.line === 8)!.effect, /never runs/);
    assert.match(losses.find((l) => l.line === 14)!.effect, /breaks at the next restart/);
  });
  it("FwMark is named, and an up hook's policy rule says up's baseline will STOP on it (Q7: both went unsaid)", () => {
    const marked = filtered
      .replace('PostUp = ip route add 172.27.15.0/24 dev %i', 'PostUp = ip -4 rule add fwmark 0x1234 table 1234')
      .replace('DNS = 192.168.15.1', 'DNS = 192.168.15.1\nFwMark = 0x1234');
    const got = lossesOf(marked);
    assert.equal(got.find((l) => l.what === 'FwMark = 0x1234')?.cutsTraffic, false, JSON.stringify(got));
    assert.match(got.find((l) => l.what.startsWith('PostUp = ip -4 rule add'))!.effect, /baseline STOP \(default-ip-rules/);
    assert.doesNotMatch(losses.find((l) => l.line === 7)!.effect, /default-ip-rules/, 'a route is no policy rule');
  });
  it('Table = off without routes of its own does not cut traffic', () => {
    const plain = filtered.replace('PostUp = ip route add 172.27.15.0/24 dev %i', 'PostUp = logger up');
    const table = lossesOf(plain).find((l) => l.what === 'Table = off');
    assert.equal(table?.cutsTraffic, false);
  });

  // the captured mesh, with ms-1's file given a DNS line and a LAN behind wk-1, and a live PSK on wk-2's peer ms-1
  const ms1 = hosts[0]!;
  const ms1Text = ms1.facts.config
    .text!.replace('MTU = 1420', 'MTU = 1420\nDNS = 192.168.15.1')
    .replace('AllowedIPs = 172.27.15.11/32', 'AllowedIPs = 172.27.15.11/32, 10.77.0.0/24');
  const ms1Lines = ms1Text.split('\n').length;
  const changed: ImportedHost[] = hosts.map((h) => {
    if (h.target.name === 'ms-1')
      // ms-1's PrivateKey sat on line 5 of the real file (the capture has it filtered out)
      return {
        ...h,
        facts: { ...h.facts, config: { ...h.facts.config, text: ms1Text } },
        secretLines: { dropped: new Map([[5, 'privatekey' as const]]), total: ms1Lines },
      };
    if (h.target.name === 'wk-2')
      return {
        ...h,
        secretLines: { dropped: new Map(), total: h.facts.config.text!.split('\n').length - 1 },
        facts: {
          ...h.facts,
          peers: h.facts.peers.map((p) => (p.publicKey === ms1.facts.interfacePublicKey ? { ...p, hasPresharedKey: true } : p)),
        },
      };
    return h;
  });
  it('refuses, naming node, line and the flag, when dropping it cuts traffic', () => {
    const r = inferInventory(changed, 'wg0');
    assert.equal(r.draft, undefined);
    assert.equal(r.problems.length, 2, r.problems.join('\n'));
    assert.match(
      r.problems[0]!,
      /^ms-1: \/etc\/wireguard\/wg0\.conf line 18: AllowedIPs 10\.77\.0\.0\/24 of peer wk-1 .*up removes it .*pass --drop-unsupported/,
    );
    assert.match(
      r.problems[1]!,
      /^wk-2: live wg0: a PresharedKey on the live interface for peer ms-1, in no line of the file: .*breaks at the next restart/,
    );
  });
  it('--drop-unsupported takes it over, every loss still named in the notes (and the inventory)', () => {
    const r = inferInventory(changed, 'wg0', { dropUnsupported: true });
    assert.deepEqual(r.problems, []);
    assert.ok(r.draft);
    const said = r.notes.filter((n) => n.at === 'nodes.ms-1' || n.at === 'nodes.wk-2').map((n) => `${n.at} ${n.text}`);
    assert.equal(said.length, 3, said.join('\n'));
    assert.match(
      said.join('\n'),
      /nodes\.ms-1 not carried over: \/etc\/wireguard\/wg0\.conf line 6: DNS = 192\.168\.15\.1: up writes the file without it/,
    );
    assert.match(
      said.join('\n'),
      /nodes\.ms-1 DROPPED \(--drop-unsupported\): \/etc\/wireguard\/wg0\.conf line 18: AllowedIPs 10\.77\.0\.0\/24/,
    );
    assert.match(said.join('\n'), /nodes\.wk-2 DROPPED \(--drop-unsupported\): live wg0: a PresharedKey/);
  });
  it('the captured runbook mesh loses nothing: no note of this kind', () => {
    const r = inferInventory(hosts, 'wg0');
    assert.deepEqual(r.problems, []);
    assert.ok(!r.notes.some((n) => /not carried over|DROPPED/.test(n.text)), JSON.stringify(r.notes));
  });
});

describe('import: a peer no host has is explained (Q6 finding 6)', () => {
  const wk1Key = hosts[1]!.facts.interfacePublicKey!;
  it('a stale key in one file: names the file, the host at that address and the key it runs with', () => {
    const stale = key();
    const r = inferInventory(
      hosts.map((h) =>
        h.target.name === 'wk-2'
          ? { ...h, facts: { ...h.facts, config: { ...h.facts.config, text: h.facts.config.text!.replace(wk1Key, stale) } } }
          : h,
      ),
      'wg0',
    );
    assert.equal(r.problems.length, 1, r.problems.join('\n'));
    assert.match(
      r.problems[0]!,
      new RegExp(
        `^wk-2 has a peer ${stale.replace(/[+/]/g, '\\$&')} \\(/etc/wireguard/wg0\\.conf, AllowedIPs 172\\.27\\.15\\.11/32\\) at wk-1's overlay address 172\\.27\\.15\\.11, but wk-1 runs with ${wk1Key.replace(/[+/]/g, '\\$&')}: a stale key in wk-2's file`,
      ),
    );
    assert.doesNotMatch(r.problems[0]!, /add its SSH target/);
  });
  it("a node whose wg-quick is stopped: the others' peers for it point at it, not at a missing SSH target", () => {
    const r = inferInventory(
      hosts.map((h) =>
        h.target.name === 'wk-1' ? { ...h, facts: { ...h.facts, interfaces: ['lo', 'host0'], interfacePublicKey: undefined } } : h,
      ),
      'wg0',
    );
    assert.match(r.problems[0]!, /^wk-1: no running wg0/);
    const others = r.problems.slice(1);
    assert.equal(others.length, 3, r.problems.join('\n'));
    for (const p of others) {
      assert.match(
        p,
        /at the Address of wk-1's \/etc\/wireguard\/wg0\.conf, and wk-1 runs no wg0, so its key is not known: start it there/,
      );
      assert.doesNotMatch(p, /add its SSH target/);
    }
  });
});
