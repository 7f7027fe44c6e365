/**
 * The simulated farm's node tools (scripts/bench/farm/sim/farmsim: one perl program run as wg, wg-quick, ip,
 * systemctl, ...), run as meshctl's scripts run them: `/bin/sh -c` inside a node's bubblewrap sandbox (the farm's
 * own sandboxArgs: read-only host /usr, the node's /etc, /run and tools, an empty network namespace), two nodes.
 * It checks what meshctl reads (wg(8)'s `show all dump` with the interface column, ip's `-j -force -batch -` with
 * one JSON line per command, systemctl's quiet `is-active -q`, the reachability rule behind ping and fping) and
 * that a call starts no process of its own beyond meshctl's PostUp hook (counted: what made the farm expensive).
 * Needs root and bwrap (skipped otherwise).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcTemplate, nodeDirs, sandboxArgs, simCopy } from '../../scripts/bench/farm/farm.js';
import type { FarmNode } from '../../scripts/bench/farm/inventory.js';

const canRun = process.getuid?.() === 0 && spawnSync('bwrap', ['--version']).status === 0;
const skip = canRun ? false : 'needs root and bwrap';

const nodes: FarmNode[] = [
  { name: 'pub-0000', site: 'edge', address: '198.18.0.2', overlayIp: '100.80.0.2' },
  { name: 'pub-0001', site: 'edge', address: '198.18.0.3', overlayIp: '100.80.0.3' },
];

let root = '';
/** Runs SCRIPT on node I as the farm runs a command (a sandbox per command here: same mounts, same namespaces). */
function run(i: number, script: string, stdin = '') {
  const r = spawnSync('bwrap', sandboxArgs(root, nodes[i]!, script), { input: stdin, encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const conf = (self: FarmNode, peer: FarmNode, peerKey: string) =>
  [
    '[Interface]',
    `Address = ${self.overlayIp}/16`,
    'ListenPort = 51820',
    'MTU = 1420',
    'PostUp = wg set %i private-key /etc/wireguard/%i.key',
    '',
    '[Peer]',
    `# ${peer.name}`,
    `PublicKey = ${peerKey}`,
    `AllowedIPs = ${peer.overlayIp}/32`,
    'PersistentKeepalive = 25',
    '',
  ].join('\n');

describe('farm node tools (scripts/bench/farm/sim/farmsim)', { skip }, () => {
  const pubs: string[] = [];
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'farm-sim-'));
    mkdirSync(join(root, 'nodes'));
    mkdirSync(join(root, 'index'));
    simCopy(root);
    etcTemplate(join(root, 'etc-template'));
    nodes.forEach((node, i) => {
      nodeDirs(root, join(root, 'etc-template'), node);
      writeFileSync(join(root, 'index', node.overlayIp), `${node.name} ${i}\n`);
    });
    writeFileSync(join(root, 'index', 'ips'), `${nodes.map((n) => n.overlayIp).join('\n')}\n`);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('install brings wg and wg-quick; dpkg-query answers for the package', () => {
    assert.notEqual(run(0, 'command -v wg').code, 0);
    for (const i of [0, 1]) {
      const r = run(
        i,
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends wireguard-tools && command -v wg && command -v wg-quick && wg --version',
      );
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /\/usr\/local\/sbin\/wg\n\/usr\/local\/sbin\/wg-quick\nwireguard-tools v/);
    }
    assert.equal(run(0, "dpkg-query -W -f '${Status}\\n' wireguard-tools").out, 'install ok installed\n');
    assert.equal(run(0, 'dpkg-query -W nothing-such').code, 1);
  });

  it('keys: genkey gives 32 bytes; pubkey is stable and differs per key', () => {
    for (const i of [0, 1]) {
      const r = run(
        i,
        'umask 077; wg genkey > /etc/wireguard/wg0.key && wg pubkey < /etc/wireguard/wg0.key && wg pubkey < /etc/wireguard/wg0.key',
      );
      assert.equal(r.code, 0, r.err);
      const [a, b] = r.out.trim().split('\n');
      assert.match(a!, /^[A-Za-z0-9+/]{43}=$/);
      assert.equal(a, b);
      pubs.push(a!);
    }
    assert.notEqual(pubs[0], pubs[1]);
    assert.equal(run(0, 'echo | wg pubkey').code, 1);
  });

  it('systemctl enable --now brings the interface up from the file, PostUp loading the key', () => {
    for (const i of [0, 1]) {
      writeFileSync(join(root, 'nodes', nodes[i]!.name, 'etc', 'wireguard', 'wg0.conf'), conf(nodes[i]!, nodes[1 - i]!, pubs[1 - i]!));
      const r = run(
        i,
        'systemctl enable --now wg-quick@wg0 2>&1; systemctl is-active wg-quick@wg0; systemctl is-enabled wg-quick@wg0; systemctl is-active -q wg-quick@wg0 && echo quiet-ok',
      );
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /Created symlink .*\nactive\nenabled\nquiet-ok\n$/);
      assert.equal(run(i, 'wg show wg0 public-key').out, `${pubs[i]}\n`);
    }
  });

  it("wg show all dump leads each line with the interface (what up's probe parses); the pair handshakes", () => {
    const lines = run(0, 'wg show all dump')
      .out.trim()
      .split('\n')
      .map((l) => l.split('\t'));
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.length, 5);
    assert.deepEqual([lines[0]![0], lines[0]![2], lines[0]![3]], ['wg0', pubs[0], '51820']);
    assert.equal(lines[1]!.length, 9);
    assert.deepEqual([lines[1]![0], lines[1]![1], lines[1]![4], lines[1]![8]], ['wg0', pubs[1], '100.80.0.3/32', '25']);
    assert.ok(Number(lines[1]![5]) > 0, 'a handshake: both ends have each other');
    // per interface: no name column
    assert.equal(run(0, 'wg show wg0 dump').out.split('\n')[1]!.split('\t').length, 8);
  });

  it('ping and fping answer for a configured pair; DF beyond the MTU fails', () => {
    assert.match(run(0, 'ping -n -q -c 3 -i 0.2 -w 7 100.80.0.3').out, /3 packets transmitted, 3 received, 0% packet loss/);
    const f = run(0, 'fping -q -c 3 -p 200 -i 1 -t 7000 100.80.0.3 100.80.0.9 2>&1');
    assert.equal(f.code, 1);
    assert.match(f.out, /^100\.80\.0\.3 : xmt\/rcv\/%loss = 3\/3\/0%.*\n100\.80\.0\.9 : xmt\/rcv\/%loss = 3\/0\/100%\n$/);
    assert.equal(run(0, 'ping -n -q -M do -s 1393 -c 2 100.80.0.3').code, 1);
    assert.equal(run(0, 'ping -n -q -M do -s 1392 -c 2 100.80.0.3').code, 0);
  });

  it('a peer removed on one end: the pair fails from both ends', () => {
    assert.equal(run(1, `wg set wg0 peer ${pubs[0]} remove`).code, 0);
    assert.equal(run(0, 'ping -c 1 100.80.0.3').code, 1);
    assert.equal(run(1, 'ping -c 1 100.80.0.2').code, 1);
    assert.equal(run(1, `wg set wg0 peer ${pubs[0]} allowed-ips 100.80.0.2/32`).code, 0);
    assert.equal(run(0, 'ping -c 1 100.80.0.3').code, 0);
  });

  it("ip -j -force -batch -: one JSON line per command, a failed one skipped (verify's checklist)", () => {
    const r = run(
      0,
      "ip -j -force -batch - <<'EOF'\naddr show dev wg0\naddr show dev nope0\nroute get 100.80.0.3\nroute get 10.9.9.9\nEOF",
    );
    const lines = r.out.trim().split('\n');
    assert.equal(lines.length, 3, r.out);
    assert.equal(JSON.parse(lines[0]!)[0].ifname, 'wg0');
    assert.equal(JSON.parse(lines[1]!)[0].dev, 'wg0');
    assert.equal(JSON.parse(lines[2]!)[0].dev, 'eth0');
    // without -force the first failure ends the batch
    assert.equal(run(0, "printf 'addr show dev nope0\\nroute get 100.80.0.3\\n' | ip -j -batch -").out, '');
  });

  it('the reload drop-in is run as rendered; addconf merges a known peer', () => {
    const dropin = join(root, 'nodes', nodes[0]!.name, 'etc', 'systemd', 'system', 'wg-quick@wg0.service.d');
    mkdirSync(dropin, { recursive: true });
    writeFileSync(
      join(dropin, 'meshctl-keep-key.conf'),
      "[Service]\nExecReload=\nExecReload=/bin/bash -c 'echo reloaded-$$$$ > /tmp/r; wg show %i listen-port >> /tmp/r'\n",
    );
    const r = run(0, 'systemctl reload wg-quick@wg0 && cat /tmp/r');
    assert.match(r.out, /^reloaded-\d+\n51820\n$/, r.err);
    // (through a pipe, as meshctl's sync pipes into it: /dev/stdin of a socket cannot be opened, with wg(8) too)
    const add = run(
      0,
      'cat | wg addconf wg0 /dev/stdin && wg show wg0 allowed-ips',
      `[Peer]\nPublicKey = ${pubs[1]}\nAllowedIPs = 10.1.0.0/24\n`,
    );
    assert.equal(add.out, `${pubs[1]}\t100.80.0.3/32 10.1.0.0/24\n`, add.err);
  });

  it("a simulated tool starts no process but meshctl's own hooks (execve counted)", {
    skip: spawnSync('strace', ['-V']).status === 0 ? false : 'no strace',
  }, () => {
    // each simulated call is exactly one exec (the tool itself) after the shell's
    const execs = (i: number, script: string) => {
      const r = spawnSync(
        'strace',
        ['-f', '-qq', '-e', 'trace=execve', '-e', 'signal=none', 'bwrap', ...sandboxArgs(root, nodes[i]!, script)],
        { encoding: 'utf8' },
      );
      return r.stderr
        .split('\n')
        .filter((l) => /execve\(/.test(l) && !/ENOENT/.test(l))
        .map((l) => /execve\("([^"]+)"/.exec(l)![1]!);
    };
    const calls = [
      'wg show all dump',
      'wg show wg0 dump',
      'fping -q -c 3 100.80.0.3',
      'ip -j route get 100.80.0.3',
      'systemctl is-active wg-quick@wg0',
      'ss -Hulnp',
      'sysctl -q -p /dev/null',
    ];
    const seen = execs(0, calls.map((c) => `${c} >/dev/null 2>&1`).join('; '));
    // bwrap, the sandbox's sh, then one exec per call
    assert.deepEqual(
      seen.slice(2).map((p) => p.replace(/.*\//, '')),
      calls.map((c) => c.split(' ')[0]),
      seen.join(' '),
    );
    assert.deepEqual(
      seen.slice(2).map((p) => p.replace(/.*\//, '')),
      calls.map((c) => c.split(' ')[0]),
    );
    // systemctl restart: wg-quick down and up in-process; the one extra exec is the PostUp hook's bash (then its wg)
    const restart = execs(0, 'systemctl restart wg-quick@wg0')
      .slice(2)
      .map((p) => p.replace(/.*\//, ''));
    assert.deepEqual(restart, ['systemctl', 'bash', 'wg']);
  });

  it("the rollback's timer at an absolute UTC time (src/engine/revert.ts since finding 18) is recorded and answers is-active", () => {
    const unit = 'meshctl-revert-0123456789abcdef-config';
    const armed = run(
      0,
      `systemd-run --quiet --unit=${unit} --on-calendar="2030-01-02 03:04:05 UTC" --timer-property=AccuracySec=1s /bin/true`,
    );
    assert.equal(armed.code, 0, armed.err);
    assert.equal(run(0, `systemctl is-active ${unit}.timer`).out.trim(), 'active');
    assert.equal(run(0, `systemctl stop ${unit}.timer && systemctl is-active ${unit}.timer`).out.trim(), 'inactive');
  });
});
