/**
 * Issue 10, fourth part: the facts probe's own cost on the node. Up's probe ran 24 processes on a converged lab node
 * (strace -f -e trace=execve on ms-1 of the homelab lab); it runs 16 now (src/facts/lean.ts: one `ip -batch`, one awk
 * for the clock, the key-line counts and the sysctl files' rp_filter lines, the secret-line grep inside the config's
 * awk, `head` only past the firewall cap, no `modinfo` without /lib/modules/RELEASE), with the same facts.
 *
 * test/fixtures/facts/issue10d/probe-old.sh is up's probe script before this change (commit 0987a55,
 * factsProbeScript({ interface: 'wg0', listenPort: 51820 })). The captures beside it are that script (`.old.txt`) and
 * this change's (`.new.txt`), run one right after the other on the same node of the homelab lab (`lab up
 * inventories/homelab.yaml`, `up`; then `lab exec NODE -- env SSH_CONNECTION=... sh SCRIPT`):
 *   converged-{ms-1,wk-1,wk-2,ctb-edge-1}: after `up`
 *   drifted-ms-1: `echo "# hand edit" >> wg0.conf`, a peer removed with `wg set`, all.rp_filter=1, the wg-quick@wg0
 *     wants symlink removed, an iptables DROP of UDP 51820, /etc/sysctl.d/50-hand.conf, an ip rule (table 100), a
 *     route via wg0 in table 100, a second address on wg0 and a multipath route through eth0 and wg0
 *   leftovers-wk-2: a k3s.service unit (+ daemon-reload), /etc/cni, a stray re-resolve script, and three secret lines
 *     appended to wg0.conf (a commented PrivateKey, a PostUp with a key value, a PrivateKey; a fresh `wg genkey`)
 *   down-wk-1: `ip link set wg0 down`
 *   fresh-ctb-edge-1: `systemctl disable --now wg-quick@wg0`, /etc/wireguard emptied, the sysctl file and drop-in gone
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { factsProbeScript, parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { CONFIG_TEXT_MAX_BYTES, FACTS } from '../../src/facts/definitions.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import { FIREWALL_PART_MAX_BYTES } from '../../src/firewall/verdict.js';
import { PATH_PRELUDE } from '../../src/facts/sections.js';
import { tempDir } from '../support/temp-dir.js';

const FIXTURES = 'test/fixtures/facts/issue10d';
const OLD_SCRIPT = readFileSync(`${FIXTURES}/probe-old.sh`, 'utf8');
const target = { interface: 'wg0', listenPort: 51820 };

/** Two probes a moment apart differ in the clock, the peers' order (wireguard-go) and counters, and firewall comments. */
function sameMoment(f: NodeFacts): unknown {
  // dpkgStatus: a fact the old script did not have (the new one reads it in the same awk: no process more)
  // wireguardFiles: nor this (Q9 F-perm-rollback: owners and modes from the stat the probe already ran, no process more)
  const { now: _now, dpkgStatus: _dpkg, wireguardFiles: _files, ...rest } = f;
  // live.forwarding: nor this (the interface's forwarding, read with the shell's builtin `read`: no process more)
  const { forwarding: _fwd, ...live } = f.live ?? { addresses: [], wgReadable: false };
  return {
    ...rest,
    ...(f.live ? { live } : {}),
    peers: [...f.peers].map(({ rxBytes: _rx, txBytes: _tx, ...peer }) => peer).sort((a, b) => a.publicKey.localeCompare(b.publicKey)),
    wireguardDetails: f.wireguardDetails?.map((d) => ({ ...d, allowedIps: [...d.allowedIps].sort() })),
    baseline: {
      ...f.baseline,
      firewallRuleset: JSON.parse(JSON.stringify(f.baseline.firewallRuleset ?? null).replace(/# (Generated|Completed) [^\\]*/g, '')),
    },
  };
}

const capture = (name: string) => parseFactsProbe(readFileSync(`${FIXTURES}/${name}.txt`, 'utf8'), target);

describe("up's facts probe with 16 processes (issue 10): the same facts as the old probe on lab captures", () => {
  const names = [
    'converged-ms-1',
    'converged-wk-1',
    'converged-wk-2',
    'converged-ctb-edge-1',
    'drifted-ms-1',
    'leftovers-wk-2',
    'down-wk-1',
    'fresh-ctb-edge-1',
  ];
  for (const name of names)
    it(`${name}: the same facts`, () => {
      assert.deepEqual(sameMoment(capture(`${name}.new`)), sameMoment(capture(`${name}.old`)));
    });

  it('the captures hold what the changed sections read (so the comparison is not vacuous)', () => {
    const drifted = capture('drifted-ms-1.new');
    assert.deepEqual(drifted.baseline.extraIpRules, ['100:\tfrom 10.99.0.0/24 lookup 100']);
    assert.deepEqual(drifted.live?.addresses, ['172.27.15.12/32', '10.97.0.1/24']);
    assert.deepEqual(drifted.interfaceRoutes, ['10.97.0.0/24', '172.27.15.11', '172.27.15.13', '172.27.15.31']);
    const details = drifted.wireguardDetails?.[0];
    assert.deepEqual(details?.addresses, ['172.27.15.12/32', '10.97.0.1/24']);
    // table 100's route and the multipath route's nexthop line (read as the old probe read it)
    assert.ok(details?.routes.includes('10.98.0.0/24') && details.routes.includes('nexthop/32'), String(details?.routes));
    assert.equal(drifted.sysctl.rpFilterAll, 1);
    assert.ok(drifted.sysctl.rpFilterFiles?.some((f) => f.path === '/etc/sysctl.d/50-hand.conf' && f.settings[0]?.value === 1));
    assert.match(drifted.config.text ?? '', /# hand edit/);
    assert.deepEqual(drifted.baseline.firewallDrops, ['-A INPUT -p udp -m udp --dport 51820 -j DROP']);
    const left = capture('leftovers-wk-2.new');
    assert.equal(left.config.hasPrivateKeyLine, true);
    assert.doesNotMatch(left.config.text ?? '', /private-?key\s*=|<\(echo/i);
    assert.deepEqual(left.baseline.leftoverUnits, ['k3s.service']);
    assert.deepEqual(left.baseline.leftoverPaths, ['/etc/cni']);
    assert.equal(capture('down-wk-1.new').interfaceRoutes.length, 0);
    assert.deepEqual(capture('down-wk-1.new').wireguardDetails?.[0]?.addresses, ['172.27.15.11/32']);
    const fresh = capture('fresh-ctb-edge-1.new');
    assert.equal(fresh.config.exists, false);
    assert.deepEqual(fresh.wireguardDetails, []);
    assert.equal(fresh.kernelModule, 'missing');
    assert.deepEqual([fresh.service.enabled, fresh.service.active], ['disabled', 'inactive']);
    // the lab's captures are one script's output byte for byte where nothing moved between the two runs
    const text = (name: string) =>
      readFileSync(`${FIXTURES}/${name}.txt`, 'utf8')
        .replace(/^\d{10}$/m, 'NOW')
        .replace(/^# (Generated|Completed) .*$/gm, '');
    assert.equal(text('drifted-ms-1.new'), text('drifted-ms-1.old'));
  });
});

/** Whether iproute2's `ip` runs here (the host-shell test reads this host's real routes, rules and addresses). */
const hasIp = spawnSync('sh', ['-c', 'command -v ip && ip -V'], { encoding: 'utf8' }).status === 0;
const which = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();

/**
 * A converged node for this host's shell: /etc/wireguard, /etc/sysctl.d and the drop-in in a temp directory, the
 * WireGuard interface played by `lo` (real `ip` and `ss` read it), and every tool on PATH a stand-in that logs its
 * name: wg, systemctl, iptables, iptables-nft-save and nft answer as a converged lab node did, the others run the real
 * tool. Returns each script's stdout and the tools it started.
 */
function hostNode({ iptablesTables = true } = {}) {
  const dir = tempDir('meshctl-parity-');
  const bin = join(dir, 'bin');
  const etc = join(dir, 'wireguard');
  mkdirSync(bin);
  mkdirSync(etc);
  const log = join(dir, 'calls');
  // not keys: test values of key shape (the .key's public half is what the stand-in wg prints)
  const key = 'aGVyZSBpcyBhIHByaXZhdGUga2V5IG9mIDMyIGJ5dGU=';
  const pub = 'cHVibGljIGtleSBvZiB0aGUgaW50ZXJmYWNlIDMyYnk=';
  const peers = ['cGVlciBwdWJsaWMga2V5IG51bWJlciBvbmUgMzIgYnk=', 'cGVlciBwdWJsaWMga2V5IG51bWJlciB0d28gMzIgYnk='];
  writeFileSync(join(etc, 'lo.key'), `${key}\n`, { mode: 0o600 });
  writeFileSync(join(etc, 'lo.pub'), `${pub}\n`, { mode: 0o644 });
  writeFileSync(
    join(etc, 'lo.conf'),
    [
      '# lo of host-1. Managed by meshctl: rewritten by `meshctl up` from the inventory;',
      '[Interface]',
      'Address = 127.0.0.1/8',
      'ListenPort = 51820',
      `# PrivateKey = ${key}`,
      `PrivateKey = ${key}`,
      `PostUp = wg set %i private-key <(echo ${key})`,
      'PostUp = wg set %i private-key /etc/wireguard/%i.key',
      '',
      '[Peer]',
      `PublicKey = ${peers[0]}`,
      'AllowedIPs = 10.66.0.2/32',
      '',
    ].join('\n'),
  );
  mkdirSync(join(dir, 'sysctl.d'));
  writeFileSync(join(dir, 'sysctl.d', '99-wireguard.conf'), 'net.ipv4.conf.all.rp_filter = 2\nnet.ipv4.conf.default.rp_filter = 2\n');
  writeFileSync(join(dir, 'sysctl.d', '50-hand.conf'), '# by hand\n net.ipv4.conf.lo.rp_filter=1\n');
  writeFileSync(join(dir, 'dropin.conf'), '[Service]\nExecReload=\n');
  const standIn = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\necho ${name} >> ${log}\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  const dump = [
    ['lo', key, pub, '51820', 'off'],
    ['lo', peers[0]!, '(none)', '192.0.2.2:51820', '10.66.0.2/32', '1796000000', '1000', '2000', 'off'],
    ['lo', peers[1]!, '(none)', '(none)', '10.66.0.3/32,10.66.1.0/24', '0', '0', '0', '25'],
  ];
  standIn(
    'wg',
    `case "$*" in pubkey) echo ${pub};; "show all dump") printf '%s\\n' ${dump.map((l) => `'${l.join('\t')}'`).join(' ')};; "show interfaces") echo lo;; *) exit 1;; esac`,
  );
  standIn('systemctl', 'case "$1" in is-enabled) echo enabled;; is-active) echo active;; esac');
  standIn('iptables', 'echo "iptables v1.8.9 (nf_tables)"');
  // nftables as iptables-nft leaves it: its filter table holds the DROP iptables-nft-save prints (or, without
  // tables, both print nothing of it)
  if (iptablesTables) {
    standIn('iptables-nft-save', `printf '*filter\\n:INPUT ACCEPT [0:0]\\n-A INPUT -p udp -m udp --dport 51820 -j DROP\\nCOMMIT\\n'`);
    standIn(
      'nft',
      `echo '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}]}'`,
    );
  } else {
    standIn('iptables-nft-save', 'true');
    standIn('nft', `echo '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}'`);
  }
  for (const tool of ['ip', 'ss', 'awk', 'grep', 'head', 'stat', 'sha256sum', 'date', 'wc', 'cat', 'tr', 'sed', 'id', 'hostname']) {
    const real = which(tool);
    if (real) standIn(tool, `exec ${real} "$@"`);
  }
  const run = (script: string) => {
    writeFileSync(log, '');
    const local = script
      .replace(PATH_PRELUDE, `export LC_ALL=C PATH=${bin}`)
      .replaceAll('[ -d /run/systemd/system ]', '[ -d / ]')
      .replaceAll('/etc/wireguard', etc)
      .replaceAll('/etc/sysctl.d', join(dir, 'sysctl.d'))
      .replaceAll('/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf', join(dir, 'dropin.conf'))
      .replaceAll('wg0', 'lo');
    const r = spawnSync('/bin/sh', ['-c', local], {
      encoding: 'utf8',
      env: { ...process.env, SSH_CONNECTION: '192.0.2.100 40000 192.0.2.2 22' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    return { stdout: r.stdout, calls, key };
  };
  return { run };
}

const countBy = (names: string[]) => {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
};

describe("up's facts probe in this host's shell (issue 10): old and new script, same facts, fewer processes", () => {
  const lo = { interface: 'lo', listenPort: 51820 };

  it('a converged node played by lo: the same facts from both scripts', { skip: !hasIp && 'no iproute2 here' }, () => {
    const node = hostNode();
    const old = node.run(OLD_SCRIPT);
    const now = node.run(factsProbeScript(target));
    const oldFacts = parseFactsProbe(old.stdout, lo);
    const newFacts = parseFactsProbe(now.stdout, lo);
    assert.deepEqual(sameMoment(newFacts), sameMoment(oldFacts));
    // not vacuous: the stand-in state is read, through every section this change touched
    assert.equal(newFacts.config.hasPrivateKeyLine, true);
    assert.match(newFacts.config.text ?? '', /private-key \/etc\/wireguard\/%i\.key/);
    assert.doesNotMatch(newFacts.config.text ?? '', /<\(echo/);
    assert.ok(!now.stdout.includes(now.key), 'no private key in the output');
    // the owners and modes the old script did not read, from the same one stat (the process count below is unchanged)
    assert.deepEqual(
      newFacts.wireguardFiles?.map(
        (f) =>
          `${f.path.replace(/^.*\/(wireguard|sysctl\.d)/, '$1').replace(/^.*\/(dropin\.conf)$/, '$1')} ${f.type} ${f.uid === process.getuid?.()}`,
      ),
      [
        'wireguard directory true',
        'wireguard/lo.key regular file true',
        'wireguard/lo.pub regular file true',
        'wireguard/lo.conf regular file true',
        // meshctl's other files root reads or runs, those the stand-in has (Q10 F1)
        'sysctl.d/99-wireguard.conf regular file true',
        'dropin.conf regular file true',
      ],
    );
    assert.equal(newFacts.peers.length, 2);
    assert.deepEqual(newFacts.wireguardDetails?.[0]?.allowedIps, ['10.66.0.2/32', '10.66.0.3/32', '10.66.1.0/24']);
    assert.ok(newFacts.wireguardDetails?.[0]?.addresses.includes('127.0.0.1/8'), JSON.stringify(newFacts.wireguardDetails));
    assert.ok(newFacts.baseline.firewallDrops.length === 1);
    assert.ok(newFacts.sysctl.rpFilterFiles?.some((f) => f.settings.some((s) => s.value === 2)));
    assert.ok(newFacts.sysctl.rpFilterFiles?.some((f) => f.settings.some((s) => s.key === 'net.ipv4.conf.lo.rp_filter')));
    assert.match(newFacts.sysctl.fileSha256 ?? '', /^[0-9a-f]{64}$/);
    assert.ok(Math.abs((newFacts.now ?? 0) - Date.now() / 1000) < 60, `the clock from awk: ${newFacts.now}`);
    assert.deepEqual([newFacts.service.enabled, newFacts.service.active], ['enabled', 'active']);
    assert.equal(newFacts.live?.forwarding, Number(readFileSync('/proc/sys/net/ipv4/conf/lo/forwarding', 'utf8')));
  });

  it('runs 16 processes where the old script ran 24 (no date, grep or head; ip twice, awk four times)', {
    skip: !hasIp && 'no iproute2 here',
  }, () => {
    const node = hostNode();
    const old = countBy(node.run(OLD_SCRIPT).calls);
    const now = countBy(node.run(factsProbeScript(target)).calls);
    const total = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
    // the old script's count here is the lab's (strace on ms-1): this stand-in node is a converged one
    assert.equal(total(old), 24, JSON.stringify(old));
    assert.equal(total(now), 16, JSON.stringify(now));
    assert.deepEqual(now, {
      wg: 2,
      awk: 4,
      sha256sum: 1,
      stat: 1,
      systemctl: 2,
      ip: 2,
      ss: 1,
      iptables: 1,
      'iptables-nft-save': 1,
      nft: 1,
    });
  });
});

describe("up's facts probe on a node whose nftables holds no iptables table (issue 10)", () => {
  const lo = { interface: 'lo', listenPort: 51820 };

  it('the same facts as the old script, without iptables-nft-save: 15 processes', { skip: !hasIp && 'no iproute2 here' }, () => {
    const node = hostNode({ iptablesTables: false });
    const old = node.run(OLD_SCRIPT);
    const now = node.run(factsProbeScript(target));
    assert.deepEqual(sameMoment(parseFactsProbe(now.stdout, lo)), sameMoment(parseFactsProbe(old.stdout, lo)));
    const counts = countBy(now.calls);
    assert.equal(counts['iptables-nft-save'], undefined, JSON.stringify(counts));
    assert.equal(
      Object.values(counts).reduce((a, b) => a + b, 0),
      15,
      JSON.stringify(counts),
    );
    assert.equal(countBy(old.calls)['iptables-nft-save'], 1);
  });
});

describe("up's facts probe past its caps (issue 10): the lean sections print what the shared ones printed", () => {
  /** Runs one section's command under this host's sh with `bin` first on PATH; `/etc/wireguard` is `etc`. */
  const section = (command: string, bin: string, etc: string) =>
    spawnSync('/bin/sh', ['-c', `PATH=${bin}:/usr/bin:/bin\n${command.replaceAll('/etc/wireguard', etc)}`], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
    }).stdout;

  it('firewall parts: one past the cap cut at the same byte, one just under it whole, as with head -c', () => {
    const dir = tempDir('meshctl-cap-');
    const tool = (name: string, body: string) => {
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    };
    tool('iptables', 'echo "iptables v1.8.9 (nf_tables)"');
    // a part past the cap (lines), one just under it, and one long line with no newline at its end
    tool('iptables-nft-save', `awk 'BEGIN { for (i = 0; i < 30000; i++) printf "-A INPUT -p udp --dport %d -j DROP\\n", i }'`);
    tool(
      'nft',
      `awk 'BEGIN { s = "x"; while (length(s) < ${FIREWALL_PART_MAX_BYTES} - 1) s = s s; printf "%s", substr(s, 1, ${FIREWALL_PART_MAX_BYTES} - 1) }'`,
    );
    const lean = section(LEAN_FACTS.firewallRuleset.command(target), dir, dir);
    const shared = section(FACTS.firewallRuleset.command(target), dir, dir);
    assert.ok(shared.length > 2 * FIREWALL_PART_MAX_BYTES - 10, String(shared.length));
    assert.equal(lean, shared);
  });

  it('a wg-quick file past its cap: the same first bytes and note from the one awk as from grep | awk | head', () => {
    const etc = tempDir('meshctl-cap-');
    const peer = (i: number) =>
      `[Peer]\n# node-${i}\nPublicKey = cGVlciBwdWJsaWMga2V5IG51bWJlciBvbmUgMzIgYnk=\nAllowedIPs = 10.66.${i >> 8}.${i & 255}/32\n\n`;
    const text = `[Interface]\nPrivateKey = ${Buffer.from('here is a private key of 32 byte').toString('base64')}\n${Array.from({ length: 12000 }, (_, i) => peer(i)).join('')}`;
    assert.ok(text.length > CONFIG_TEXT_MAX_BYTES);
    writeFileSync(join(etc, 'wg0.conf'), text);
    const lean = section(LEAN_FACTS.configText.command(target), '/nonexistent', etc);
    const shared = section(FACTS.configText.command(target), '/nonexistent', etc);
    assert.match(lean, /only its start was read/);
    assert.doesNotMatch(lean, /PrivateKey/);
    assert.equal(lean, shared);
  });
});
