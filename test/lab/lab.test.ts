/**
 * `meshctl lab` end to end (issue 2's "Done when"): one homelab lab shared by the checks, a second lab beside it,
 * bad input, and a sealed host. Skipped when not root or without systemd-nspawn/debootstrap.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cachePaths, labDown, labExec, labPaths, labUp } from '../../src/lab/index.js';
import { mountsBelow } from '../../src/lab/procs.js';
import { which } from '../../src/lab/sys.js';
import { describeLab, labSkipReason, leftovers, runCli, sshArgv, uniqueLabName } from './harness.js';

const HOMELAB = 'inventories/homelab.yaml';
const canRun = labSkipReason() === undefined;

/** The host namespace's network state; the lab must never change it. */
function hostNetwork(): Record<string, string> {
  const run = (argv: string[]) => {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    return `${r.status}\n${r.stdout}`;
  };
  return {
    addr: run(['ip', '-j', 'addr']),
    route: run(['ip', '-j', 'route']),
    rule: run(['ip', '-j', 'rule']),
    nft: run(['nft', 'list', 'ruleset']),
    link: run(['ip', '-j', 'link']),
  };
}

const before = canRun ? hostNetwork() : {};
const cacheWarm = existsSync(join(cachePaths().base, cachePaths().stamp)) && existsSync(join(cachePaths().repo, cachePaths().stamp));
const scratch = mkdtempSync(join(tmpdir(), 'meshctl-lab-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

describeLab('meshctl lab on homelab.yaml', HOMELAB, (lab) => {
  it(`comes up in time (${cacheWarm ? 'warm cache: < 60 s' : 'cold cache: < 5 min'})`, () => {
    const { upSeconds, state } = lab();
    process.stdout.write(`# lab up took ${upSeconds.toFixed(1)} s (${cacheWarm ? 'warm' : 'cold'} cache)\n`);
    assert.ok(upSeconds < (cacheWarm ? 60 : 300), `lab up took ${upSeconds} s`);
    assert.equal(state.phase, 'ready');
    assert.deepEqual(state.nodes.map((n) => n.name).sort(), ['ctb-edge-1', 'ms-1', 'wk-1', 'wk-2']);
  });

  it('lets OpenSSH from the operator namespace log into every node as root, strict host keys; hostname and systemd are right', async () => {
    for (const node of lab().state.nodes) {
      const r = await lab().ssh(node.name, 'root', 'hostname; systemctl is-system-running; id -u');
      assert.equal(r.code, 0, `${node.name}: ${r.stderr}`);
      const [hostname, system, uid] = r.stdout.trim().split('\n');
      assert.equal(hostname, node.name);
      assert.match(system!, /^(running|degraded)$/);
      assert.equal(uid, '0');
    }
  });

  it('lets every sudo user log in and run sudo -n without a password (the inventory user and the standard one)', async () => {
    for (const node of lab().state.nodes) {
      assert.ok(node.sudoUsers.includes('meshadmin'));
      for (const user of node.sudoUsers) {
        const r = await lab().ssh(node.name, user, 'hostname; id -un; sudo -n true && sudo -n id -u');
        assert.equal(r.code, 0, `${user}@${node.name}: exit ${r.code}: ${r.stdout} ${r.stderr}`);
        assert.deepEqual(r.stdout.trim().split('\n'), [node.name, user, '0']);
        assert.equal(r.stderr.trim(), '', `no sudo warnings for ${user}@${node.name}`);
      }
    }
    // the inventory's wk-1 logs in as admin with sudo
    assert.deepEqual(lab().state.nodes.find((n) => n.name === 'wk-1')!.sudoUsers, ['meshadmin', 'admin']);
  });

  it('refuses a host key that is not in known_hosts (StrictHostKeyChecking=yes really checks)', async () => {
    const argv = sshArgv(lab().state, 'ms-1', 'root', 'true').map((a) =>
      a.startsWith('UserKnownHostsFile=') ? 'UserKnownHostsFile=/dev/null' : a,
    );
    const r = await lab().exec('operator', argv);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Host key verification failed|No .* host key is known/);
  });

  it('gives every node its own host keys (four distinct fingerprints)', () => {
    const r = spawnSync('ssh-keygen', ['-l', '-f', lab().state.knownHosts], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    const ed25519 = new Map<string, string>();
    const all = r.stdout.trim().split('\n');
    for (const line of all) {
      const [, fingerprint, host, type] = line.split(/\s+/);
      if (type === '(ED25519)') ed25519.set(host!, fingerprint!);
    }
    assert.equal(ed25519.size, 4);
    assert.equal(new Set(ed25519.values()).size, 4, 'ed25519 host keys differ');
    assert.equal(new Set(all.map((l) => l.split(/\s+/)[1])).size, all.length, 'no key of any type is shared');
  });

  it('has a real router: a datagram to 203.0.113.10:51821 from ctb-edge-1 arrives at ms-1 on port 51820', async () => {
    const listener = lab().exec('ms-1', ['timeout', '6', 'nc', '-lun', '51820']);
    await new Promise((r) => setTimeout(r, 1000));
    const sender = await lab().exec('ctb-edge-1', [
      'sh',
      '-c',
      'for i in 1 2 3 4 5 6; do echo "datagram-from-edge-$i" | nc -un -w0 203.0.113.10 51821; sleep 0.5; done',
    ]);
    assert.equal(sender.code, 0, sender.stderr);
    const received = await listener;
    assert.match(received.stdout, /datagram-from-edge-\d/);
    const rules = await lab().exec('router:home', ['iptables', '-t', 'nat', '-S', 'PREROUTING']);
    const dnat = rules.stdout.split('\n').filter((l) => l.includes('DNAT'));
    assert.equal(dnat.length, 3, 'exactly the three declared forwards');
    assert.ok(dnat.some((l) => l.includes('--dport 51821') && l.includes('--to-destination 192.168.15.2:51820')));
  });

  it('masquerades: traffic from ms-1 to 198.51.100.25 arrives with source 203.0.113.10', async () => {
    const capture = lab().exec('ctb-edge-1', [
      'timeout',
      '8',
      'tcpdump',
      '-n',
      '-l',
      '-i',
      'eth0',
      '-c',
      '1',
      'udp',
      'and',
      'dst',
      'port',
      '9999',
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    await lab().exec('ms-1', ['sh', '-c', 'for i in 1 2 3 4 5 6; do echo probe | nc -un -w0 198.51.100.25 9999; sleep 0.5; done']);
    const seen = await capture;
    assert.match(seen.stdout, /IP 203\.0\.113\.10\.\d+ > 198\.51\.100\.25\.9999: UDP/, seen.stdout + seen.stderr);
  });

  it('serves WireGuard from the local apt repository (not preinstalled), with no route out of the lab', async () => {
    const node = 'wk-2';
    const before = await lab().exec(node, ['dpkg-query', '-W', 'wireguard-tools']);
    assert.notEqual(before.code, 0, 'wireguard-tools is not preinstalled');
    const sources = await lab().exec(node, ['sh', '-c', 'cat /etc/apt/sources.list; ls /etc/apt/sources.list.d']);
    assert.equal(sources.stdout.trim(), 'deb [trusted=yes] file:/srv/meshctl-apt ./');
    const readOnly = await lab().exec(node, ['touch', '/srv/meshctl-apt/x']);
    assert.notEqual(readOnly.code, 0, 'the repository is mounted read-only');
    const install = await lab().exec(
      node,
      ['sh', '-c', 'apt-get update && apt-get install -y wireguard-tools wireguard-go && wg --version && command -v wireguard-go'],
      { timeoutMs: 120_000 },
    );
    assert.equal(install.code, 0, install.stdout + install.stderr);
    assert.match(install.stdout, /wireguard-tools v/);
    // no way out: node -> router -> internet, which has no default route
    assert.match((await lab().exec(node, ['ip', 'route', 'show', 'default'])).stdout, /default via 192\.168\.15\.1 dev eth0/);
    assert.match((await lab().exec('router:home', ['ip', 'route', 'show', 'default'])).stdout, /default via 169\.254\.0\.1 dev wan onlink/);
    assert.equal((await lab().exec('internet', ['ip', 'route', 'show', 'default'])).stdout.trim(), '');
    const out = await lab().exec('internet', ['ip', 'route', 'get', '1.1.1.1']);
    assert.notEqual(out.code, 0);
    assert.match(out.stderr, /unreachable/i);
  });

  it('exec passes stdio and the exit code through; run starts meshctl in the operator namespace', async () => {
    const r = runCli(['lab', 'exec', '--name', lab().name, 'ms-1', '--', 'sh', '-c', 'echo out; echo err >&2; hostname >&2; exit 7']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\nms-1\n');
    const op = runCli(['lab', 'exec', '--name', lab().name, 'operator', '--', 'ip', '-br', '-4', 'addr']);
    assert.match(op.stdout, /192\.168\.15\.254\/24/);
    const version = await lab().meshctl(['--version']);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
    const status = runCli(['lab', 'status', '--name', lab().name, '--json']);
    const [entry] = JSON.parse(status.stdout) as {
      nodes: { name: string; running: boolean; sudoUser: string; ssh: string; overlayIp: string }[];
    }[];
    assert.equal(entry!.nodes.length, 4);
    assert.ok(entry!.nodes.every((n) => n.running && n.sudoUser === 'meshadmin'));
    assert.ok(entry!.nodes.some((n) => n.ssh === 'admin@192.168.15.3' && n.overlayIp === '172.27.15.11'));
  });

  it('runs a second lab beside the first without interference (same public address, separate namespaces)', async () => {
    const inventory = join(scratch, 'two-public.yaml');
    writeFileSync(
      inventory,
      'mesh:\n  network: 172.27.15.0/24\nsites:\n  cloud:\n    public: true\nnodes:\n' +
        '  solo-1:\n    site: cloud\n    address: 198.51.100.25\n    overlayIp: 172.27.15.31\n' +
        '  solo-2:\n    site: cloud\n    address: 198.51.100.26\n    overlayIp: 172.27.15.32\n    ssh: { port: 2222, user: ops, become: sudo }\n',
    );
    const second = uniqueLabName('u');
    try {
      const state = await labUp(inventory, { name: second });
      const r = await labExec(second, 'operator', sshArgv(state, 'solo-1', 'root', 'hostname'));
      assert.equal(r.stdout.trim(), 'solo-1', r.stderr);
      // sshd on a non-default port, known_hosts as [host]:port, the inventory's user made with sudo
      const ops = await labExec(second, 'operator', sshArgv(state, 'solo-2', 'ops', 'hostname; sudo -n id -u'));
      assert.deepEqual(ops.stdout.trim().split('\n'), ['solo-2', '0'], ops.stderr);
      assert.match(readFileSync(state.knownHosts, 'utf8'), /^\[198\.51\.100\.26\]:2222 ssh-ed25519 /m);
      // 198.51.100.25 is ctb-edge-1 in the first lab and solo-1 in the second
      const first = await lab().ssh('ctb-edge-1', 'root', 'hostname');
      assert.equal(first.stdout.trim(), 'ctb-edge-1');
      await labDown(second);
      assert.deepEqual(await leftovers(second), []);
      const still = await lab().ssh('ms-1', 'root', 'hostname');
      assert.equal(still.stdout.trim(), 'ms-1', 'the first lab still works after the second went down');
    } finally {
      await labDown(second);
    }
  });

  it('rejects bad input with a one-line error, exit 2, and leaves nothing', async () => {
    const overlapping = join(scratch, 'overlapping.yaml');
    writeFileSync(
      overlapping,
      'mesh:\n  network: 172.27.15.0/24\nsites:\n' +
        '  home:\n    lan: 192.168.15.0/24\n    router: 192.168.15.1\n    nat: { publicIp: 203.0.113.10 }\n' +
        '  office:\n    lan: 192.168.15.0/24\n    router: 192.168.15.1\n    nat: { publicIp: 203.0.113.20 }\n' +
        'nodes:\n  a:\n    site: home\n    address: 192.168.15.2\n    overlayIp: 172.27.15.1\n    forwardedPort: 51820\n' +
        '  b:\n    site: office\n    address: 192.168.15.3\n    overlayIp: 172.27.15.2\n    forwardedPort: 51820\n',
    );
    // a PATH with every tool but debootstrap
    const fakePath = join(scratch, 'bin');
    spawnSync('mkdir', ['-p', fakePath]);
    for (const tool of [
      'systemd-nspawn',
      'ip',
      'iptables',
      'nft',
      'ssh-keygen',
      'ssh-keyscan',
      'dpkg-scanpackages',
      'nsenter',
      'mount',
      'chroot',
    ]) {
      const found = which(tool);
      if (found && !existsSync(join(fakePath, tool))) symlinkSync(found, join(fakePath, tool));
    }
    const cases: { what: string; name: string; args: string[]; env?: NodeJS.ProcessEnv; prefix?: string[]; message: RegExp }[] = [
      {
        what: 'not root',
        name: uniqueLabName('b'),
        args: [HOMELAB],
        prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
        message: /must run as root/,
      },
      {
        what: 'a missing tool',
        name: uniqueLabName('b'),
        args: [HOMELAB],
        env: { ...process.env, PATH: fakePath },
        message: /missing: debootstrap \(package debootstrap\);/,
      },
      {
        what: 'colliding addresses',
        name: uniqueLabName('b'),
        args: [overlapping],
        message: /sites home and office have overlapping LANs/,
      },
      { what: 'a name in use', name: lab().name, args: [HOMELAB], message: new RegExp(`lab ${lab().name} already exists`) },
      { what: 'a bad name', name: 'Bad.Name', args: [HOMELAB], message: /invalid lab name/ },
    ];
    for (const c of cases) {
      const r = runCli(['lab', 'up', ...c.args, '--name', c.name], { env: c.env, prefix: c.prefix });
      assert.equal(r.code, 2, `${c.what}: exit ${r.code}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `${c.what}: one line: ${r.stderr}`);
      assert.match(r.stderr, c.message, c.what);
      if (c.name !== lab().name && c.name !== 'Bad.Name') assert.deepEqual(await leftovers(c.name), [], c.what);
    }
    const still = await lab().ssh('wk-1', 'admin', 'hostname');
    assert.equal(still.stdout.trim(), 'wk-1', 'the lab whose name was reused is untouched');
  });

  it('down leaves no namespace, container, mount, interface, overlay directory or process; the host network never changed', async () => {
    const during = hostNetwork();
    const name = lab().name;
    const dir = labPaths(name).dir;
    assert.ok(mountsBelow(dir).length === 4, 'four overlay mounts while up');
    const started = Date.now();
    const report = await labDown(name);
    process.stdout.write(`# lab down took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    assert.equal(report.containers, 4);
    assert.equal(report.namespaces, 7);
    assert.deepEqual(await leftovers(name), []);
    const again = await labDown(name);
    assert.equal(again.found, false, 'down is idempotent');
    const afterDown = hostNetwork();
    for (const key of Object.keys(before)) {
      assert.equal(during[key], before[key], `host ${key} unchanged while the lab ran`);
      assert.equal(afterDown[key], before[key], `host ${key} unchanged after down`);
    }
  });
});
