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
