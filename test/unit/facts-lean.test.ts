/**
 * Issue 10: up's facts probe runs fewer processes (shell builtins for /proc, /sys and small files, fewer pipes), with
 * the same facts. Each pair of fixtures in test/fixtures/facts/issue10 is the probe before (`.old.txt`, commit
 * 19104a8) and after (`.new.txt`) this change, run one right after the other on the same node of a 4-node bench
 * lab (scripts/bench/inventory.ts, `lab up`, then `up`), as meshctl runs it (ssh from the operator namespace;
 * home-2 logs in as admin and uses sudo):
 *   converged-home-1, converged-home-2: after `up`
 *   drifted-home-1: after, on home-1, `echo "# hand edit" >> /etc/wireguard/wg0.conf`, `wg set wg0 peer <first> remove`,
 *     `sysctl -w net.ipv4.conf.all.rp_filter=1`, rm of the wg-quick@wg0 wants symlink,
 *     `iptables -A INPUT -p udp --dport 51820 -j DROP`, and /etc/sysctl.d/50-hand.conf setting all.rp_filter = 1
 *   leftovers-home-2: after, on home-2, a k3s.service unit file (+ daemon-reload), /etc/cni and a stray
 *     /usr/local/lib/meshctl/reresolve-endpoints (so the re-resolve timer's state is asked)
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { FACTS, readFact, splitSections } from '../../src/facts/definitions.js';
import { sectionScript } from '../../src/facts/sections.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import { factsProbeScript, factsProbeScriptShared } from '../../src/facts/node-facts.js';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../support/temp-dir.js';

const target = { interface: 'wg0', listenPort: 51820 };
const capture = (name: string) => readFileSync(`test/fixtures/facts/issue10/${name}.txt`, 'utf8');
const facts = (name: string) => parseFactsProbe(capture(name), target);

/**
 * What may differ between two runs a second apart (the clock, the order wireguard-go lists its peers in and their
 * byte counters (keepalives flow), the times in iptables-save's comments) and the two
 * differences the change makes on purpose, both asserted apart below: firewallDrops is read from the ruleset fact's
 * iptables rules (no counters, no nft-syntax copy), and the re-resolve timer's state is not asked without its files.
 */
function comparable(f: NodeFacts): unknown {
  const { now: _now, ...rest } = f;
  const noTimerFile = f.reresolve && !f.reresolve.scriptSha256 && !f.reresolve.serviceSha256 && !f.reresolve.timerSha256;
  return {
    ...rest,
    peers: [...f.peers].map(({ rxBytes: _rx, txBytes: _tx, ...peer }) => peer).sort((a, b) => a.publicKey.localeCompare(b.publicKey)),
    wireguardDetails: f.wireguardDetails?.map((d) => ({ ...d, allowedIps: [...d.allowedIps].sort() })),
    ...(noTimerFile ? { reresolve: 'no timer file' } : {}),
    baseline: {
      ...f.baseline,
      firewallDrops: f.baseline.firewallDrops.length > 0,
      firewallRuleset: JSON.parse(JSON.stringify(f.baseline.firewallRuleset).replace(/# (Generated|Completed) [^\\]*/g, '')),
    },
  };
}

describe('facts probe with fewer processes (issue 10): the same facts as before', () => {
  for (const name of ['converged-home-1', 'converged-home-2', 'drifted-home-1', 'leftovers-home-2'])
    it(`${name}: the new probe's facts equal the old probe's`, () => {
      assert.deepEqual(comparable(facts(`${name}.new`)), comparable(facts(`${name}.old`)));
    });

  it('the drifted capture shows every drift the plan must see (so the comparison above is not vacuous)', () => {
    const converged = facts('converged-home-1.new');
    const drifted = facts('drifted-home-1.new');
    assert.notEqual(drifted.config.sha256, converged.config.sha256);
    assert.match(drifted.config.text ?? '', /# hand edit/);
    assert.equal(drifted.peers.length, converged.peers.length - 1);
    assert.equal(drifted.sysctl.rpFilterAll, 1);
    assert.ok(drifted.sysctl.rpFilterFiles?.some((f) => f.path === '/etc/sysctl.d/50-hand.conf' && f.settings[0]?.value === 1));
    assert.equal(converged.service.enabled, 'enabled');
    assert.equal(drifted.service.enabled, 'disabled');
    // the drop rule, read from the ruleset fact now (the separate iptables-save/nft section is gone)
    assert.deepEqual(drifted.baseline.firewallDrops, ['-A INPUT -p udp -m udp --dport 51820 -j DROP']);
    assert.deepEqual(converged.baseline.firewallDrops, []);
    assert.equal(capture('drifted-home-1.new').includes('@@meshctl begin firewall\n'), false);
  });

  it('reads leftover units from list-unit-files lines, the re-resolve timer only when one of its files exists', () => {
    const left = facts('leftovers-home-2.new');
    assert.deepEqual(left.baseline.leftoverUnits, ['k3s.service']);
    assert.deepEqual(left.baseline.leftoverPaths, ['/etc/cni']);
    assert.match(left.reresolve?.scriptSha256 ?? '', /^[0-9a-f]{64}$/);
    assert.equal(left.reresolve?.active, 'inactive');
    // no file of the timer: systemctl is not asked, and planReresolve reads neither value then
    assert.deepEqual(facts('converged-home-1.new').reresolve, { enabled: '', active: '' });
  });

  it('reads the sudo login address through the ancestors of the probe (home-2 logs in as admin)', () => {
    assert.equal(facts('converged-home-2.new').operatorAddress?.nodeAddress, '192.168.20.11');
  });
});

describe('facts read by the shell alone (issue 10)', () => {
  /** Runs one fact's command under this host's sh with an empty PATH: only builtins can answer. Read-only. */
  const builtinOnly = (def: (typeof FACTS)[keyof typeof FACTS]) => {
    const script = `PATH=/nonexistent\n${sectionScript(def.name, def.command(target))}`;
    const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
    return readFact(def as never, splitSections(r.stdout), target) as unknown;
  };

  it('uid and hostname come from /proc without id or hostname', () => {
    assert.equal(builtinOnly(FACTS.uid), process.getuid?.());
    assert.equal(builtinOnly(FACTS.hostname), hostname());
  });

  it('interfaces, rp_filter and the ifindex come from /sys and /proc without ls or cat', () => {
    const ls = spawnSync('ls', ['/sys/class/net'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    assert.deepEqual(builtinOnly(FACTS.interfaces), ls);
    const all = Number(readFileSync('/proc/sys/net/ipv4/conf/all/rp_filter', 'utf8'));
    assert.equal((builtinOnly(FACTS.rpFilter) as { all?: number }).all, all);
    const lo = { interface: 'lo', listenPort: 1 };
    const script = `PATH=/nonexistent\n${sectionScript('ifindex', FACTS.interfaceIndex.command(lo))}`;
    const out = spawnSync('sh', ['-c', script], { encoding: 'utf8' }).stdout;
    assert.equal(readFact(FACTS.interfaceIndex, splitSections(out), lo), Number(readFileSync('/sys/class/net/lo/ifindex', 'utf8')));
  });
});

/**
 * Issue 10, second part (src/facts/lean.ts: one `wg show all dump`, one `stat`, one `sha256sum`, one `wg pubkey` per
 * probe). Each pair in test/fixtures/facts/issue10b is the probe of the shared definitions (`.old.txt`,
 * factsProbeScriptShared) and up's lean probe (`.new.txt`), run one right after the other on the same node of the
 * homelab lab (`lab up inventories/homelab.yaml`, then `up`), through ssh from the operator namespace as meshctl runs
 * them (wk-* log in as admin and use sudo):
 *   converged-ms-1, converged-wk-1: after `up`
 *   drifted-ms-1: `echo "# hand edit" >> wg0.conf`, one peer removed with `wg set`, all.rp_filter=1, the
 *     wg-quick@wg0 wants symlink removed, an iptables DROP of UDP 51820, /etc/sysctl.d/50-hand.conf
 *   leftovers-wk-2: a k3s.service unit (+ daemon-reload), /etc/cni, a stray re-resolve script (its sha256 and the
 *     timer's state are read)
 *   down-ctb-edge-1: `ip link del wg0` (wireguard-go gone), a .pub that does not hold the key, a symlink link.conf
 */
const capture10b = (name: string) => readFileSync(`test/fixtures/facts/issue10b/${name}.txt`, 'utf8');

/** Two probes a second apart differ in the clock, the peers' order (wireguard-go) and counters, and firewall comments. */
function sameMoment(f: NodeFacts): unknown {
  const { now: _now, operatorAddress, ...rest } = f;
  return {
    ...rest,
    operatorAddress: { ...operatorAddress },
    peers: [...f.peers].map(({ rxBytes: _rx, txBytes: _tx, ...peer }) => peer).sort((a, b) => a.publicKey.localeCompare(b.publicKey)),
    wireguardDetails: f.wireguardDetails?.map((d) => ({ ...d, allowedIps: [...d.allowedIps].sort() })),
    baseline: {
      ...f.baseline,
      firewallRuleset: JSON.parse(JSON.stringify(f.baseline.firewallRuleset).replace(/# (Generated|Completed) [^\\]*/g, '')),
    },
  };
}

describe("up's lean facts probe (issue 10): the same facts as the shared definitions, fewer processes", () => {
  const names = ['converged-ms-1', 'converged-wk-1', 'drifted-ms-1', 'leftovers-wk-2', 'down-ctb-edge-1'];
  for (const name of names)
    it(`${name}: the lean probe's facts equal the shared definitions'`, () => {
      const old = parseFactsProbe(capture10b(`${name}.old`), target);
      const lean = parseFactsProbe(capture10b(`${name}.new`), target);
      assert.deepEqual(sameMoment(lean), sameMoment(old));
    });

  it('the lean probe has the sections of the shared one, in the same order (only commands differ)', () => {
    const sections = (script: string) => [...script.matchAll(/^echo '@@meshctl begin (\S+)'$/gm)].map((m) => m[1]);
    const lean = sections(factsProbeScript(target));
    assert.deepEqual(lean, sections(factsProbeScriptShared(target)));
    assert.ok(lean.length > 30);
    assert.notEqual(factsProbeScript(target), factsProbeScriptShared(target));
  });

  it('the captures cover what the lean sections read differently (so the comparison above is not vacuous)', () => {
    const converged = parseFactsProbe(capture10b('converged-ms-1.new'), target);
    assert.equal(converged.peers.length, 3);
    assert.equal(converged.live?.listenPort, 51820);
    assert.equal(converged.live?.wgReadable, true);
    assert.match(converged.interfacePublicKey ?? '', /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(converged.keys.publicKeyFile?.state, 'match');
    assert.equal(converged.keys.privateKeyMode, '600');
    assert.match(converged.config.sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.match(converged.sysctl.fileSha256 ?? '', /^[0-9a-f]{64}$/);
    assert.match(converged.service.reloadDropInSha256 ?? '', /^[0-9a-f]{64}$/);
    assert.equal(converged.wireguardDetails?.[0]?.allowedIps.length, 3);
    const drifted = parseFactsProbe(capture10b('drifted-ms-1.new'), target);
    assert.equal(drifted.peers.length, 2);
    assert.match(drifted.config.text ?? '', /# hand edit/);
    const left = parseFactsProbe(capture10b('leftovers-wk-2.new'), target);
    assert.match(left.reresolve?.scriptSha256 ?? '', /^[0-9a-f]{64}$/);
    const down = parseFactsProbe(capture10b('down-ctb-edge-1.new'), target);
    assert.equal(down.live, undefined);
    assert.deepEqual(down.wireguardInterfaces, []);
    assert.equal(down.keys.publicKeyFile?.state, 'mismatch');
    assert.ok(down.wireguardConfigs.includes('link.conf'));
  });

  it('runs wg twice (the dump, wg pubkey), stat and sha256sum once where the shared definitions ran them 9, 3 and 3 times', () => {
    const dir = tempDir('meshctl-lean-');
    const log = join(dir, 'calls');
    const key = 'aGVyZSBpcyBhIHByaXZhdGUga2V5IG9mIDMyIGJ5dGU=';
    const pub = 'cHVibGljIGtleSBvZiB0aGUgaW50ZXJmYWNlIDMyYnk=';
    writeFileSync(join(dir, 'wg0.key'), `${key}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'wg0.pub'), `${pub}\n`);
    writeFileSync(join(dir, 'wg0.conf'), '[Interface]\n# Managed by meshctl\nListenPort = 51820\n');
    writeFileSync(join(dir, 'sysctl.conf'), 'net.ipv4.conf.all.rp_filter = 2\n');
    writeFileSync(join(dir, 'dropin.conf'), '[Service]\n');
    const standIn = (name: string, body: string) => {
      writeFileSync(join(dir, name), `#!/bin/sh\necho ${name} >> ${log}\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    };
    standIn(
      'wg',
      `case "$*" in pubkey) echo ${pub};; "show interfaces") echo wg0;; "show all dump") printf 'wg0\\t%s\\t%s\\t51820\\toff\\n' ${key} ${pub};; esac; exit 0`,
    );
    standIn('stat', 'exec /usr/bin/stat "$@"');
    standIn('sha256sum', 'exec /usr/bin/sha256sum "$@"');
    const calls = (script: string) => {
      writeFileSync(log, '');
      const local = script
        .replaceAll('/etc/wireguard', dir)
        .replaceAll('/etc/sysctl.d/99-wireguard.conf', join(dir, 'sysctl.conf'))
        .replaceAll('/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf', join(dir, 'dropin.conf'));
      const out = spawnSync('sh', ['-c', `PATH=${dir}:/usr/bin:/bin\n${local}`], { encoding: 'utf8' }).stdout;
      const counts: Record<string, number> = {};
      for (const name of readFileSync(log, 'utf8').split('\n').filter(Boolean)) counts[name] = (counts[name] ?? 0) + 1;
      return { counts, out };
    };
    const lean = Object.values(LEAN_FACTS);
    const shared = lean.map((l) => Object.values(FACTS).find((f) => f.name === l.name)!);
    const leanRun = calls(lean.map((d) => sectionScript(d.name, d.command(target))).join('\n'));
    const sharedRun = calls(shared.map((d) => sectionScript(d.name, d.command(target))).join('\n'));
    assert.deepEqual(leanRun.counts, { wg: 2, stat: 1, sha256sum: 1 });
    // the shared definitions' third stat: FACTS.wireguardFiles (owners and modes; up's lean probe reads them from its one stat)
    assert.deepEqual(sharedRun.counts, { wg: 9, stat: 3, sha256sum: 3 });
    assert.ok(!leanRun.out.includes(key), 'no private key in the output');
    const s = splitSections(leanRun.out);
    assert.deepEqual(readFact(LEAN_FACTS.keyFile, s, target), { exists: true, mode: '600', publicKey: pub });
    assert.deepEqual(readFact(LEAN_FACTS.publicKeyFileState, s, target), { state: 'match', mode: '644' });
    assert.equal(readFact(LEAN_FACTS.configText, s, target), '[Interface]\n# Managed by meshctl\nListenPort = 51820\n');
    const sharedSections = splitSections(sharedRun.out);
    for (const def of [LEAN_FACTS.configMeta, LEAN_FACTS.sysctlFileSha256, LEAN_FACTS.reloadDropInSha256])
      assert.deepEqual(readFact(def as never, s, target), readFact(def as never, sharedSections, target), def.name);
  });

  it('the private key never leaves the awk that reads `wg show all dump` (a stand-in wg prints one)', () => {
    const dir = tempDir('meshctl-lean-');
    const priv = 'aGVyZSBpcyBhIHByaXZhdGUga2V5IG9mIDMyIGJ5dGU=';
    const pub = 'cHVibGljIGtleSBvZiB0aGUgaW50ZXJmYWNlIDMyYnk=';
    const peer = 'cGVlciBwdWJsaWMga2V5IG51bWJlciBvbmUgMzIgYnk=';
    const psk = 'cHJlc2hhcmVkIGtleSB2YWx1ZSBoZXJlIDMyIGJ5dGU=';
    const dump = [
      ['wg0', priv, pub, '51820', 'off'],
      ['wg0', peer, psk, '203.0.113.7:51820', '10.9.0.2/32,10.9.1.0/24', '1796000000', '10', '20', '25'],
      ['wg9', priv, pub, '51999', 'off'],
    ];
    writeFileSync(
      join(dir, 'wg'),
      `#!/bin/sh
[ "$*" = "show all dump" ] || exit 3
printf '%s\\n' ${dump.map((l) => `'${l.join('\t')}'`).join(' ')}
`,
    );
    chmodSync(join(dir, 'wg'), 0o755);
    const defs = [LEAN_FACTS.wireguardInterfaces, LEAN_FACTS.interfacePublicKey, LEAN_FACTS.peers, LEAN_FACTS.interfaceListenPort];
    const script = `PATH=${dir}:/usr/bin:/bin\n${defs.map((d) => sectionScript(d.name, d.command(target))).join('\n')}`;
    const out = spawnSync('sh', ['-c', script], { encoding: 'utf8' }).stdout;
    assert.ok(!out.includes(priv) && !out.includes(psk), out);
    const s = splitSections(out);
    assert.deepEqual(readFact(LEAN_FACTS.wireguardInterfaces, s, target), ['wg0', 'wg9']);
    assert.equal(readFact(LEAN_FACTS.interfacePublicKey, s, target), pub);
    assert.equal(readFact(LEAN_FACTS.interfaceListenPort, s, target), 51820);
    const peers = readFact(LEAN_FACTS.peers, s, target).peers;
    assert.equal(peers.length, 1);
    assert.equal(peers[0]?.publicKey, peer);
    assert.deepEqual(peers[0]?.allowedIps, ['10.9.0.2/32', '10.9.1.0/24']);
    assert.equal(s.get('port')?.rc, 0);
    const other = { interface: 'wg5', listenPort: 1 };
    const missing = spawnSync(
      'sh',
      ['-c', `PATH=${dir}:/usr/bin:/bin\n${sectionScript('port', LEAN_FACTS.interfaceListenPort.command(other))}`],
      {
        encoding: 'utf8',
      },
    ).stdout;
    assert.equal(splitSections(missing).get('port')?.rc, 1, 'wg cannot read an interface it does not list');
  });
});

/**
 * Issue 10, third part (src/facts/lean.ts): up's probe runs `systemctl list-unit-files` for leftover units only when
 * a file of such a name is in a unit directory. The wg-quick unit's state stays `is-enabled` + `is-active`: a
 * `systemctl show` was tried and dropped, because its UnitFileState is systemd's cached answer (captured on a lab
 * node after the wants symlink was removed by hand: test/fixtures/probes/issue10/drifted-home-1.systemctl.txt).
 */
describe('facts probe asks systemctl less (issue 10)', () => {
  /** The service section up's probe runs: the lean one when there is one (as ../../src/facts/node-facts.ts picks). */
  const probeService = Object.values(LEAN_FACTS).find((l) => l.name === FACTS.service.name) ?? FACTS.service;

  /** Runs a section under this host's sh with a `systemctl` that logs its calls (systemd's presence assumed). */
  const withStubSystemctl = (command: string, answer: string) => {
    const dir = tempDir('mc-systemctl-');
    writeFileSync(join(dir, 'systemctl'), `#!/bin/sh\necho "$*" >> ${dir}/calls\n${answer}\n`);
    chmodSync(join(dir, 'systemctl'), 0o755);
    const script = `PATH=${dir}:/usr/bin:/bin\n${command.replaceAll('[ -d /run/systemd/system ]', '[ -d / ]')}`;
    const out = spawnSync('sh', ['-c', script], { encoding: 'utf8' }).stdout;
    let calls: string[] = [];
    try {
      calls = readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n').filter(Boolean);
    } catch {
      // no call
    }
    return { out, calls };
  };

  it('a wants symlink removed by hand: up sees `disabled` although systemctl show still says enabled', () => {
    // the stand-in answers as systemd 252 did on home-1 in that state (the capture named above)
    const captured = readFileSync('test/fixtures/probes/issue10/drifted-home-1.systemctl.txt', 'utf8');
    assert.match(captured, /UnitFileState=enabled/);
    assert.match(captured, /is-enabled=disabled/);
    const answers = `case "$*" in *show*) printf 'Id=wg-quick@wg0.service\\nActiveState=active\\nUnitFileState=enabled\\n';; *is-enabled*) echo disabled; exit 1;; *is-active*) echo active;; esac`;
    const { out } = withStubSystemctl(probeService.command(target), answers);
    assert.equal(keyValuesOf(out).enabled, 'disabled', out);
    assert.equal(keyValuesOf(out).active, 'active', out);
  });

  it('no leftover unit file in any unit directory: list-unit-files is not run', () => {
    const { out, calls } = withStubSystemctl(LEAN_FACTS.leftoverUnits.command(target), 'echo k3s.service enabled enabled');
    assert.equal(out.trim(), '');
    assert.deepEqual(calls, []);
  });
});

const keyValuesOf = (text: string) =>
  Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

/**
 * test/fixtures/facts/issue10c: up's probe before this change (`.old.txt`, commit 50e051e) and after (`.new.txt`),
 * one right after the other on the same node of the homelab lab after `up`, through ssh from the operator namespace as
 * meshctl runs them (wk-* log in as admin and use sudo): converged-ms-1, converged-wk-1; leftovers-wk-2 (a k3s.service
 * unit file + daemon-reload, /etc/cni); down-ms-1 (`systemctl disable --now wg-quick@wg0`).
 */
describe("up's facts probe with one systemctl (issue 10): the same facts as before on lab captures", () => {
  const capture10c = (name: string) => parseFactsProbe(readFileSync(`test/fixtures/facts/issue10c/${name}.txt`, 'utf8'), target);
  for (const name of ['converged-ms-1', 'converged-wk-1', 'leftovers-wk-2', 'down-ms-1'])
    it(`${name}: the same facts`, () => {
      assert.deepEqual(sameMoment(capture10c(`${name}.new`)), sameMoment(capture10c(`${name}.old`)));
    });

  it('the captures differ where the changed sections read (not vacuous)', () => {
    assert.deepEqual(capture10c('leftovers-wk-2.new').baseline.leftoverUnits, ['k3s.service']);
    assert.deepEqual(capture10c('converged-ms-1.new').baseline.leftoverUnits, []);
    assert.deepEqual(capture10c('converged-wk-1.new').service, {
      enabled: 'enabled',
      active: 'active',
      reloadDropInSha256: capture10c('converged-wk-1.old').service.reloadDropInSha256,
    });
    assert.equal(capture10c('down-ms-1.new').service.enabled, 'disabled');
    assert.equal(capture10c('down-ms-1.new').service.active, 'inactive');
  });
});
