/**
 * Dynamic public addresses (issue 11): nat.publicHost in the inventory, peers dialling the name, the rendered
 * config keeping it, the re-resolve timer's files and the config step's plan for them, and the script itself run
 * with real sh against a stand-in `wg` (bubblewrap puts a temporary /etc/wireguard in place; skipped without it).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkInventoryText, loadInventory } from '../../src/inventory/load.js';
import { endpointFor } from '../../src/topology/endpoints.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { dialledNames, endpointIsName, needsReresolve, renderReresolveFiles } from '../../src/render/reresolve.js';
import { planConfig, sha256 } from '../../src/steps/config.js';
import { describeAction } from '../../src/engine/plan.js';
import { renderReloadDropIn } from '../../src/render/systemd.js';
import { parseReresolve } from '../../src/facts/definitions.js';
import { planDown, parseDownProbe, describeDownChange } from '../../src/steps/down.js';
import { liveDrift } from '../../src/steps/service.js';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import type { Node } from '../../src/inventory/types.js';
import { judgeNatMapping, natedNodes, resolveScript, type NatDiscoveryReport } from '../../src/checks/nat-discovery.js';
import { parseWatchOutput } from '../../src/checks/forward-probe.js';
import { planLab } from '../../src/lab/plan.js';
import { dnsHostsText, labDnsRecords } from '../../src/lab/dns.js';

const INVENTORY = 'inventories/dynamic-dns.yaml';
const inventory = loadInventory(INVENTORY);
const node = (name: string): Node => inventory.nodes.find((n) => n.name === name)!;
const KEYS = new Map(inventory.nodes.map((n, i) => [n.name, Buffer.alloc(32, i + 1).toString('base64')]));
const desired = (name: string) => desiredNodeConfig(inventory, name, KEYS);

describe('nat.publicHost in the inventory', () => {
  it('loads publicHost beside publicIp, and publicHost alone (publicIp is optional then)', () => {
    const home = inventory.sites.find((s) => s.name === 'home')!;
    assert.deepEqual(home.kind === 'nat' && [home.publicHost, home.publicIp], ['home.dyn.example.net', '203.0.113.40']);
    const text = readFileSync(INVENTORY, 'utf8').replace(
      '{ publicHost: home.dyn.example.net, publicIp: 203.0.113.40 }',
      '{ publicHost: home.dyn.example.net. }',
    );
    const result = checkInventoryText(text, 'x.yaml');
    assert.equal(result.ok, true, JSON.stringify(!result.ok && result.problems));
  });

  it('a nat site with neither is one problem at the nat key, naming both fields', () => {
    const text = readFileSync(INVENTORY, 'utf8').replace('{ publicHost: home.dyn.example.net, publicIp: 203.0.113.40 }', '{}');
    const result = checkInventoryText(text, 'x.yaml');
    assert.equal(result.ok, false);
    assert.deepEqual(!result.ok && result.problems.map((p) => `${p.line}:${p.col}: ${p.path}: ${p.message}`), [
      '12:5: sites.home.nat.publicIp: missing required field (e.g. publicIp: 203.0.113.10, or publicHost: home.example.net for a dynamic address)',
    ]);
  });
});

describe('peers dial the name', () => {
  it('endpointFor: the name and the forwarded port from outside the site, the LAN address inside it', () => {
    assert.deepEqual(endpointFor(inventory, node('cafe-1'), node('home-1')), { host: 'home.dyn.example.net', port: 41001 });
    assert.deepEqual(endpointFor(inventory, node('edge-1'), node('home-2')), { host: 'home.dyn.example.net', port: 41002 });
    assert.deepEqual(endpointFor(inventory, node('home-2'), node('home-1')), { host: '192.168.40.2', port: 51820 });
  });

  it('the rendered wg0.conf keeps the name (wg-quick resolves it when the interface comes up)', () => {
    const text = renderWgQuickConfig(desired('cafe-1'));
    assert.match(text, /# home-1\nPublicKey = [^\n]+\nAllowedIPs = 172\.27\.40\.2\/32\nEndpoint = home\.dyn\.example\.net:41001\n/);
    assert.match(text, /Endpoint = home\.dyn\.example\.net:41002\n/);
  });

  it('needsReresolve: every node that dials at least one peer, by name or address (a roamed endpoint can die too)', () => {
    assert.deepEqual(
      inventory.nodes.map((n) => [n.name, needsReresolve(desired(n.name))]),
      [
        ['home-1', true],
        ['home-2', true],
        ['cafe-1', true],
        ['edge-1', true],
      ],
    );
    // the home's nodes dial only addresses (each other on the LAN, edge-1 at its public one)
    assert.deepEqual(dialledNames(desired('home-1')), []);
    const dialsNobody = { ...desired('home-1'), peers: desired('home-1').peers.map(({ endpoint: _, ...peer }) => peer) };
    assert.equal(needsReresolve(dialsNobody), false);
    assert.deepEqual(dialledNames(desired('edge-1')), ['home-1 at home.dyn.example.net:41001', 'home-2 at home.dyn.example.net:41002']);
    assert.deepEqual(['1.2.3.4:5', '[2001:db8::1]:51820', 'home.example.net:41001', 'x:1'].map(endpointIsName), [false, false, true, true]);
  });

  it('enable: a live endpoint that is the resolved address of a named endpoint is no drift (no syncconf on every up)', () => {
    // edge-1 -> home-1 crosses home's NAT; make a public peer dialled by name to test the non-NAT path too
    const text = readFileSync(INVENTORY, 'utf8').replace(
      'edge-1: { site: edge, address: 198.51.100.40, overlayIp: 172.27.40.5 }',
      'edge-1: { site: edge, address: 198.51.100.40, overlayIp: 172.27.40.5 }\n  edge-2: { site: edge, address: 198.51.100.41, overlayIp: 172.27.40.6, endpoint: "edge2.example.net:51820" }',
    );
    const named = loadInventory(INVENTORY, { text });
    const keys = new Map([...KEYS, ['edge-2', Buffer.alloc(32, 9).toString('base64')]]);
    const want = desiredNodeConfig(named, 'edge-1', keys);
    const peers = want.peers.map((p) => ({
      publicKey: p.publicKey,
      allowedIps: p.allowedIps,
      endpoint: p.name === 'edge-2' ? '198.51.100.41:51820' : p.endpoint?.includes('dyn') ? '203.0.113.40:41001' : undefined,
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      ...(p.persistentKeepalive ? { persistentKeepalive: p.persistentKeepalive } : {}),
    }));
    const facts = {
      peers,
      interfaceRoutes: want.peers.flatMap((p) => p.allowedIps),
      live: { mtu: want.mtu, addresses: [want.address], listenPort: want.listenPort, wgReadable: true },
    } as unknown as NodeFacts;
    const drift = liveDrift(facts, want);
    assert.deepEqual(drift.peers, []);
  });
});

/** A node as the lab's after keys: systemd, the interface configured, nothing of the timer yet. */
function facts(overrides: Partial<NodeFacts> = {}): NodeFacts {
  return {
    uid: 0,
    hostname: 'cafe-1',
    os: { id: 'debian', versionId: '12', idLike: [], prettyName: 'Debian GNU/Linux 12 (bookworm)' },
    packageManager: 'apt',
    systemd: true,
    kernelModule: 'loaded',
    tools: { wg: true, wgQuick: true, wireguardGo: false, tcpdump: true, ping: true },
    interfaces: ['lo', 'eth0'],
    wireguardInterfaces: [],
    wireguardConfigs: [],
    config: { exists: false, hasPrivateKeyLine: false, managedByMeshctl: false },
    interfaceRoutes: [],
    keys: { privateKeyExists: true },
    sysctl: { rpFilterAll: 2, rpFilterDefault: 2 },
    service: { enabled: 'disabled', active: 'inactive' },
    listenPortUsers: [],
    peers: [],
    baseline: { extraIpRules: [], leftoverPaths: [], leftoverUnits: [], leftoverInterfaces: [], firewallDrops: [] },
    ...overrides,
  };
}

describe('the config step installs the re-resolve timer', () => {
  const configText = renderWgQuickConfig(desired('cafe-1'));
  const files = renderReresolveFiles();
  const input = {
    iface: 'wg0',
    configText,
    sysctlText: 'net.ipv4.conf.all.rp_filter = 2\n',
    rpFilter: 2 as const,
    reloadDropInText: renderReloadDropIn('wg0'),
    reresolve: { files, names: dialledNames(desired('cafe-1')) },
  };
  const converged = {
    config: { exists: true, sha256: sha256(configText), hasPrivateKeyLine: false, managedByMeshctl: true },
    sysctl: { fileSha256: sha256(input.sysctlText), rpFilterAll: 2, rpFilterDefault: 2 },
    service: { enabled: 'enabled', active: 'active', reloadDropInSha256: sha256(input.reloadDropInText) },
  } as const;
  const installed = {
    scriptSha256: sha256(files.script),
    serviceSha256: sha256(files.service),
    timerSha256: sha256(files.timer),
    enabled: 'enabled',
    active: 'active',
  };

  it('writes the script and both units atomically, reloads systemd and enables the timer', () => {
    const plan = planConfig(facts(converged), input);
    assert.equal(
      describeAction(plan.action!),
      'write /usr/local/lib/meshctl/reresolve-endpoints, write /etc/systemd/system/meshctl-reresolve@.service, write /etc/systemd/system/meshctl-reresolve@.timer, enable --now meshctl-reresolve@wg0.timer',
    );
    const script = plan.action!.script;
    assert.match(
      script,
      /mv -f \/usr\/local\/lib\/meshctl\/reresolve-endpoints\.meshctl-tmp \/usr\/local\/lib\/meshctl\/reresolve-endpoints/,
    );
    assert.match(script, /chmod 755 \/usr\/local\/lib\/meshctl\/reresolve-endpoints\.meshctl-tmp/);
    assert.match(
      script,
      /systemctl daemon-reload\nsystemctl enable --no-reload meshctl-reresolve@wg0\.timer 2>&1\nsystemctl restart meshctl-reresolve@wg0\.timer/,
    );
    assert.doesNotMatch(script, /wg0\.key/, 'no private key is touched');
  });

  it('one daemon-reload for the reload drop-in and the timer units together (a cold node)', () => {
    const cold = planConfig(facts({ ...converged, service: { ...converged.service, reloadDropInSha256: undefined } }), input);
    const script = cold.action!.script;
    assert.equal(script.match(/^systemctl daemon-reload$/gm)?.length, 1, script);
    assert.ok(script.indexOf('systemctl daemon-reload') > script.indexOf('mv -f /etc/systemd/system/meshctl-reresolve@.timer.meshctl-tmp'));
    assert.ok(script.indexOf('systemctl daemon-reload') < script.indexOf('systemctl enable --no-reload meshctl-reresolve@wg0.timer'));
  });

  it('changes nothing on a node that has it (idempotent), and enables a timer someone stopped', () => {
    assert.equal(planConfig(facts({ ...converged, reresolve: installed }), input).action, undefined);
    const stopped = planConfig(facts({ ...converged, reresolve: { ...installed, active: 'inactive' } }), input);
    assert.equal(describeAction(stopped.action!), 'enable --now meshctl-reresolve@wg0.timer');
  });

  it('removes it where the node dials no peer any more', () => {
    const { reresolve: _, ...withoutNames } = input;
    const plan = planConfig(facts({ ...converged, reresolve: installed }), withoutNames);
    assert.match(
      describeAction(plan.action!),
      /^remove \/etc\/systemd\/system\/meshctl-reresolve@\.timer \(this node dials no peer any more\)/,
    );
    assert.match(plan.action!.script, /systemctl disable --now --no-reload meshctl-reresolve@wg0\.timer/);
    assert.equal(planConfig(facts(converged), withoutNames).action, undefined, 'nothing installed, nothing to remove');
  });

  it('warns on a node without systemd and changes nothing for the timer there', () => {
    const plan = planConfig(facts({ ...converged, systemd: false }), input);
    assert.equal(plan.action, undefined);
    assert.match(
      plan.warnings![0]!,
      /^no systemd on this node: nothing re-resolves the DNS names it dials \(home-1 at home\.dyn\.example\.net:41001, home-2/,
    );
    // a node that dials only addresses gets the timer where systemd runs, and no warning where it does not
    const addressesOnly = { ...input, reresolve: { files, names: [] } };
    assert.equal(planConfig(facts({ ...converged, systemd: false }), addressesOnly).warnings, undefined);
  });

  it('reads the fact back', () => {
    const sha = sha256(files.timer);
    assert.deepEqual(parseReresolve(`script=\nservice=\ntimer=${sha}\nenabled=enabled\nactive=active\n`), {
      timerSha256: sha,
      enabled: 'enabled',
      active: 'active',
    });
  });

  it('down disables a running timer, with or without --purge (Q8: it kept firing every 30 s); --purge removes its files', () => {
    const probe = [
      'systemd=yes',
      'active=active',
      'enabled=enabled',
      'reresolve=on',
      'file=/etc/systemd/system/meshctl-reresolve@.timer',
      'file=/usr/local/lib/meshctl/reresolve-endpoints',
      '',
    ].join('\n');
    const plan = planDown(parseDownProbe(probe), 'wg0', true);
    assert.deepEqual(plan.changes.map(describeDownChange), [
      'stop and disable wg-quick@wg0 (was active, enabled)',
      'stop and disable meshctl-reresolve@wg0.timer (was installed by meshctl)',
      'remove /etc/systemd/system/meshctl-reresolve@.timer',
      'remove /usr/local/lib/meshctl/reresolve-endpoints',
      'systemctl daemon-reload (the drop-in or timer units are gone)',
    ]);
    assert.deepEqual(planDown(parseDownProbe(probe), 'wg0', false).changes.map(describeDownChange), [
      'stop and disable wg-quick@wg0 (was active, enabled)',
      'stop and disable meshctl-reresolve@wg0.timer (was installed by meshctl)',
    ]);
    // run again: the timer is off, its files kept: nothing to do for it
    const after = probe
      .replace('active=active', 'active=inactive')
      .replace('enabled=enabled', 'enabled=disabled')
      .replace('reresolve=on\n', '');
    assert.deepEqual(planDown(parseDownProbe(after), 'wg0', false).changes, []);
  });
});

const hasBwrap = spawnSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).status === 0 && process.getuid?.() === 0;

describe('the re-resolve script (real sh; stand-in wg and getent on PATH)', { skip: !hasBwrap && 'needs bwrap as root' }, () => {
  const key = (name: string) => KEYS.get(name)!;
  const now = () => Math.floor(Date.now() / 1000);
  /**
   * Runs the script for cafe-1's config (home-1 at home.dyn.example.net:41001, home-2 at :41002, edge-1 at
   * 198.51.100.40:51820). `live` and `handshakes` are what `wg show wg0 endpoints` and `latest-handshakes` print: one
   * `KEY<TAB>VALUE` line per peer, `(none)` for no endpoint and 0 for no handshake (the shapes captured on a lab node);
   * handshakes default to 10 s ago for every live peer. `wg set` calls are recorded, one per line.
   */
  const run = (
    resolved: Record<string, string>,
    live: string,
    options: { handshakes?: string; args?: string[]; strace?: boolean; script?: string } = {},
  ) => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-reresolve-'));
    const handshakes =
      options.handshakes ??
      live
        .split('\n')
        .filter(Boolean)
        .map((l) => `${l.split('\t')[0]}\t${now() - 10}\n`)
        .join('');
    try {
      const etc = join(dir, 'wireguard');
      const bin = join(dir, 'bin');
      mkdirSync(etc);
      mkdirSync(bin);
      writeFileSync(join(etc, 'wg0.conf'), renderWgQuickConfig(desired('cafe-1')));
      writeFileSync(join(dir, 'script'), options.script ?? renderReresolveFiles().script, { mode: 0o755 });
      const hosts = Object.entries(resolved)
        .map(([name, ip]) => `[ "$2" = ${name} ] && echo "${ip}      STREAM $2" && exit 0`)
        .join('\n');
      writeFileSync(join(bin, 'getent'), `#!/bin/sh\n${hosts}\nexit 2\n`);
      writeFileSync(
        join(bin, 'wg'),
        [
          '#!/bin/sh',
          `if [ "$1 $2 $3" = 'show wg0 endpoints' ]; then printf '%s' '${live}'; exit 0; fi`,
          `if [ "$1 $2 $3" = 'show wg0 latest-handshakes' ]; then printf '%s' '${handshakes}'; exit 0; fi`,
          `echo "wg $*" >> ${dir}/calls`,
          '',
        ].join('\n'),
      );
      for (const f of ['getent', 'wg']) chmodSync(join(bin, f), 0o755);
      const command = ['sh', join(dir, 'script'), 'wg0', ...(options.args ?? [])];
      const traced = options.strace ? ['strace', '-f', '-qq', '-z', '-e', 'trace=execve', '-o', join(dir, 'trace'), ...command] : command;
      const result = spawnSync(
        'bwrap',
        ['--dev-bind', '/', '/', '--bind', etc, '/etc/wireguard', '--setenv', 'PATH', `${bin}:/usr/bin:/bin`, ...traced],
        { encoding: 'utf8' },
      );
      const read = (f: string) => {
        try {
          return readFileSync(join(dir, f), 'utf8');
        } catch {
          return '';
        }
      };
      // programs started, by name (the script's own `sh` excluded): strace's execve lines (-z: those that succeeded)
      const programs = read('trace')
        .split('\n')
        .filter((l) => /execve\("/.test(l) && !/ = -1 /.test(l))
        .map((l) => /execve\("[^"]*\/([^/"]+)"/.exec(l)![1]!)
        .slice(1);
      return { out: result.stdout, err: result.stderr, code: result.status, calls: read('calls'), programs };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const reEscape = (text: string) => text.replace(/[+/=.()[\]]/g, '\\$&');
  const setCall = (peer: string, endpoint: string) => `wg set wg0 peer ${key(peer)} endpoint ${endpoint}\n`;

  // DNS names, as before: the address each name resolves to now, whatever the handshake
  it('sets the endpoint of each peer whose live address is not what its name resolves to now', () => {
    const live = `${key('home-1')}\t203.0.113.40:41001\n${key('home-2')}\t203.0.113.40:41002\n${key('edge-1')}\t198.51.100.40:51820\n`;
    const { calls, out } = run({ 'home.dyn.example.net': '203.0.113.77' }, live);
    assert.match(
      out,
      new RegExp(
        `^wg0: home\\.dyn\\.example\\.net is now 203\\.0\\.113\\.77 \\(live was 203\\.0\\.113\\.40:41001\\): endpoint of peer ${reEscape(key('home-1'))} set again$`,
        'm',
      ),
    );
    assert.equal(calls, setCall('home-1', 'home.dyn.example.net:41001') + setCall('home-2', 'home.dyn.example.net:41002'));
  });

  it('leaves peers alone whose address is current, whatever port NAT roamed them to, while their handshake is fresh', () => {
    const live = `${key('home-1')}\t203.0.113.77:60001\n${key('home-2')}\t203.0.113.77:41002\n${key('edge-1')}\t198.51.100.40:51820\n`;
    assert.equal(run({ 'home.dyn.example.net': '203.0.113.77' }, live).calls, '');
  });

  it('a name that does not resolve changes nothing', () => {
    const live = `${key('home-1')}\t(none)\n`;
    const { calls, err } = run({}, live);
    assert.equal(calls, '');
    assert.match(err, /home\.dyn\.example\.net does not resolve; peer \S+ keeps its endpoint/);
  });

  // stale handshakes: a live endpoint that is not the configured one is set back, address or port
  const RESOLVED = { 'home.dyn.example.net': '203.0.113.40' };
  const handshakes = (ages: Record<string, number | 'never'>) =>
    Object.entries(ages)
      .map(([peer, age]) => `${key(peer)}\t${age === 'never' ? 0 : now() - age}\n`)
      .join('');

  it('stale + moved: an address peer roamed to a port that died is set back to its configured endpoint', () => {
    // a-1's view of p-2 in test/lab/relay.test.ts after the router's conntrack flush, here cafe-1's of edge-1
    const live = `${key('home-1')}\t203.0.113.40:41001\n${key('home-2')}\t203.0.113.40:41002\n${key('edge-1')}\t198.51.100.40:39600\n`;
    const { calls, out } = run(RESOLVED, live, { handshakes: handshakes({ 'home-1': 5, 'home-2': 5, 'edge-1': 200 }) });
    assert.equal(calls, setCall('edge-1', '198.51.100.40:51820'));
    assert.match(
      out,
      new RegExp(
        `^wg0: peer ${reEscape(key('edge-1'))}: latest handshake 2\\d\\d s ago, live endpoint 198\\.51\\.100\\.40:39600 is not the configured 198\\.51\\.100\\.40:51820: set back$`,
        'm',
      ),
    );
  });

  it('fresh + moved: a roamed peer with a fresh handshake keeps its endpoint (address or name), a stale one beside it does not', () => {
    const live = `${key('home-1')}\t203.0.113.40:60001\n${key('home-2')}\t203.0.113.40:60002\n${key('edge-1')}\t198.51.100.40:39600\n`;
    const { calls } = run(RESOLVED, live, { handshakes: handshakes({ 'home-1': 10, 'home-2': 240, 'edge-1': 120 }) });
    assert.equal(calls, setCall('home-2', 'home.dyn.example.net:41002'), 'only home-2, by name: its address is current but its port moved');
  });

  it('stale + same: a stale peer at its configured endpoint is not touched (nothing to set back)', () => {
    const live = `${key('home-1')}\t203.0.113.40:41001\n${key('home-2')}\t203.0.113.40:60002\n${key('edge-1')}\t198.51.100.40:51820\n`;
    const { calls } = run(RESOLVED, live, { handshakes: handshakes({ 'home-1': 900, 'home-2': 900, 'edge-1': 900 }) });
    assert.equal(calls, setCall('home-2', 'home.dyn.example.net:41002'));
  });

  it('never handshaken (0) counts as stale', () => {
    const live = `${key('home-1')}\t203.0.113.40:41001\n${key('home-2')}\t203.0.113.40:41002\n${key('edge-1')}\t198.51.100.40:39600\n`;
    const { calls, out } = run(RESOLVED, live, { handshakes: handshakes({ 'home-1': 'never', 'home-2': 'never', 'edge-1': 'never' }) });
    assert.equal(calls, setCall('edge-1', '198.51.100.40:51820'));
    assert.match(out, /: no handshake yet, live endpoint 198\.51\.100\.40:39600 is not the configured 198\.51\.100\.40:51820: set back$/m);
  });

  it('STALE_SECONDS (second argument) sets the age; a peer the interface does not have is not added', () => {
    const live = `${key('home-1')}\t203.0.113.40:60001\n${key('edge-1')}\t198.51.100.40:39600\n`;
    const ages = handshakes({ 'home-1': 20, 'edge-1': 20 });
    assert.equal(run(RESOLVED, live, { handshakes: ages }).calls, '', 'the default age: 20 s is fresh');
    assert.equal(
      run(RESOLVED, live, { handshakes: ages, args: ['5'] }).calls,
      setCall('edge-1', '198.51.100.40:51820') + setCall('home-1', 'home.dyn.example.net:41001'),
    );
    const bad = run(RESOLVED, live, { args: ['soon'] });
    assert.equal(bad.code, 2);
    assert.match(bad.err, /STALE_SECONDS is not a number: soon/);
  });

  const hasStrace = spawnSync('sh', ['-c', 'command -v strace'], { encoding: 'utf8' }).status === 0;
  it('few processes per run: both wg show views and one awk, a getent (+ awk) per name, date only to judge a moved one', {
    skip: !hasStrace && 'needs strace',
  }, () => {
    const live = `${key('home-1')}\t203.0.113.40:41001\n${key('home-2')}\t203.0.113.40:41002\n${key('edge-1')}\t198.51.100.40:51820\n`;
    // the getent stand-in is itself a shell script: its own `sh` is not counted
    const quiet = run(RESOLVED, live, { strace: true })
      .programs.filter((p) => p !== 'sh' && p !== 'dash')
      .sort();
    // sorted: the two ends of a pipeline start in either order
    assert.deepEqual(quiet, ['awk', 'awk', 'getent', 'wg', 'wg'], quiet.join(' '));
    const moved = `${key('home-1')}\t203.0.113.40:41001\n${key('home-2')}\t203.0.113.40:41002\n${key('edge-1')}\t198.51.100.40:39600\n`;
    const acting = run(RESOLVED, moved, { strace: true, handshakes: handshakes({ 'home-1': 5, 'home-2': 5, 'edge-1': 200 }) });
    assert.deepEqual(acting.programs.filter((p) => p !== 'sh' && p !== 'dash').sort(), ['awk', 'awk', 'date', 'getent', 'wg', 'wg', 'wg']);
  });
});

describe('NAT discovery judges a named site by what the name resolves to on the node', () => {
  const four = readFileSync('inventories/four-sites.yaml', 'utf8');
  // site a named by DNS; its publicIp left out of date on purpose (a dynamic address moved since it was written)
  const named = loadInventory('four-named.yaml', {
    text: four.replace('publicIp: 203.0.113.10', 'publicIp: 203.0.113.11\n      publicHost: a.dyn.example.net'),
  });
  const captured = (observer: string) => parseWatchOutput(readFileSync(`test/fixtures/nat-discovery/observer-${observer}.txt`, 'utf8'));
  const report = (resolved: string[] | undefined): NatDiscoveryReport => ({
    observers: ['p-1', 'p-2'],
    tokens: new Map(natedNodes(named).map((n) => [n.name, `q1n${named.nodes.indexOf(n).toString(36)}`])),
    seen: new Map([
      ['p-1', captured('p-1')],
      ['p-2', captured('p-2')],
    ]),
    unavailable: new Map(),
    ...(resolved ? { resolved: new Map([['a-2', resolved]]) } : {}),
  });
  const a2 = named.nodes.find((n) => n.name === 'a-2')!;

  it('passes when the name resolves to the address the datagrams came from (a stale publicIp does not matter)', () => {
    const verdict = judgeNatMapping(report(['203.0.113.10']), named, a2);
    assert.equal(verdict.status, 'pass');
    assert.match(
      verdict.message,
      /^site a: public address 203\.0\.113\.10 \(what a\.dyn\.example\.net resolves to\); endpoint-independent/,
    );
  });

  it('fails (the site has forwards) when the name points elsewhere, naming the name and the fix', () => {
    const verdict = judgeNatMapping(report(['203.0.113.99']), named, a2);
    assert.equal(verdict.status, 'fail');
    assert.match(
      verdict.message,
      /public address 203\.0\.113\.10, but a\.dyn\.example\.net \(nat\.publicHost\) resolves to 203\.0\.113\.99: peers would dial that; update the DNS name/,
    );
    assert.equal(judgeNatMapping(report(undefined), named, a2).status, 'fail', 'not resolved: nothing shows the name is right');
  });

  it('the discovery asks the node, not the operator, to resolve the name', () => {
    assert.equal(resolveScript('a.dyn.example.net'), "getent ahosts a.dyn.example.net | awk '{ print $1 }' | sort -u; true");
  });
});

describe('the lab serves the names', () => {
  it('one record per publicHost, at the address the lab gives the router', () => {
    const plan = planLab(inventory, 'dnsunit');
    const records = labDnsRecords(inventory, plan);
    assert.deepEqual(records, { 'home.dyn.example.net': '203.0.113.40' });
    assert.equal(dnsHostsText(records), '203.0.113.40 home.dyn.example.net\n');
    assert.deepEqual(
      labDnsRecords(loadInventory('inventories/four-sites.yaml'), planLab(loadInventory('inventories/four-sites.yaml'), 'dnsunit')),
      {},
    );
  });
});
