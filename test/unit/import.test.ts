/**
 * Issue 9 (take over a hand-built mesh) and issue 8, kind 3a (meshctl's own interface after wg-quick's SaveConfig
 * rewrote its file): the pure parts. Fixtures are real captures of the import probe (../../src/import/probe.ts) on
 * the four nodes of the lab's hand-built mesh, made by test/lab/adopt.test.ts with MESHCTL_CAPTURE_FIXTURES=1:
 * the key on a PrivateKey line of wg0.conf on ms-1 and wk-2 (wk-2 with SaveConfig = true), in wg0.key on wk-1 and
 * ctb-edge-1. converged-wk-1.txt is up's facts probe on a node meshctl built.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { judgeListenPort } from '../../src/engine/registry.js';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { inferInventory, type ImportedHost } from '../../src/import/infer.js';
import { interfaceOwnership } from '../../src/import/ownership.js';
import { adoptScript, parseAdoptOutput, parseUnderlay, saveConfigOffScript } from '../../src/import/probe.js';
import { changeWithoutRestart } from '../../src/import/restart.js';
import { keyLocationAsStyle } from '../../src/import/style.js';
import { mergeTargets, parseHostFlag, targetsFromSkeleton } from '../../src/import/targets.js';
import { NOTE_MARK, renderImportedInventory } from '../../src/import/yaml.js';
import { checkInventoryText } from '../../src/inventory/load.js';
import { holdsSecret } from '../../src/remote/redact.js';
import { compareConfigToDesired } from '../../src/render/drift.js';
import { parseWgQuickConfig } from '../../src/render/wgquick.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { captured, homelab, NODES } from '../support/handbuilt-hosts.js';
import { tempDir } from '../support/temp-dir.js';

const hosts = NODES.map(captured);
const keysOf = (list: ImportedHost[]) => new Map(list.map((h) => [h.target.name, h.facts.interfacePublicKey!]));

describe('import: facts of a hand-built mesh (captured)', () => {
  it('reads the underlay (the WireGuard interface left out) and nothing secret', () => {
    const ms1 = hosts[0]!;
    assert.deepEqual(
      ms1.underlay.addresses.map((a) => a.cidr),
      ['192.168.15.2/24'],
    );
    assert.equal(ms1.underlay.gateway, '192.168.15.1');
    assert.equal(ms1.facts.config.hasPrivateKeyLine, true);
    assert.doesNotMatch(ms1.facts.config.text ?? '', /privatekey/i);
    for (const h of hosts) {
      const raw = readFileSync(`test/fixtures/facts/handbuilt-${h.target.name}.txt`, 'utf8');
      assert.ok(!holdsSecret(raw, new Set(keysOf(hosts).values())), `${h.target.name}: a key-shaped value other than a public key`);
    }
  });
  it('parses underlay lines', () => {
    assert.deepEqual(parseUnderlay(['addr=host0@if12 192.168.15.2/24', 'gw=192.168.15.1 host0', 'addr=eth1 bogus']), {
      addresses: [{ dev: 'host0', cidr: '192.168.15.2/24' }],
      gateway: '192.168.15.1',
      gatewayDev: 'host0',
    });
  });
});

describe('import: the inventory inferred from the hand-built mesh', () => {
  const result = inferInventory(hosts, 'wg0');
  it('infers the reference design: one NAT site with its forwards, one public site, /32s in 172.27.15.0/24', () => {
    assert.deepEqual(result.problems, []);
    const draft = result.draft!;
    assert.deepEqual(draft.mesh, { interface: 'wg0', network: '172.27.15.0/24', listenPort: 51820, mtu: 1420, persistentKeepalive: 25 });
    assert.deepEqual(draft.sites, [
      { name: 'nat-1', kind: 'nat', lan: '192.168.15.0/24', router: '192.168.15.1', publicIp: '203.0.113.10' },
      { name: 'public-1', kind: 'public' },
    ]);
    for (const want of homelab.nodes) {
      const got = draft.nodes.find((n) => n.name === want.name)!;
      assert.equal(got.address, want.address);
      assert.equal(got.overlayIp, want.overlayIp);
      assert.equal(got.forwardedPort, want.forwardedPort);
      assert.equal(got.publicKey, keysOf(hosts).get(want.name));
    }
  });
  it('writes a file that validates, marks every guess, and means the same mesh as the runbook built', () => {
    const text = renderImportedInventory(result.draft!, result.notes, { hosts: NODES });
    const checked = checkInventoryText(text, 'imported.yaml');
    assert.ok(checked.ok, JSON.stringify(checked.problems));
    assert.match(text, new RegExp(`# ${NOTE_MARK} inferred: every node has a /32 Address`));
    assert.match(text, new RegExp(`# ${NOTE_MARK} a LAN behind a NAT router: peers outside dial 203\\.0\\.113\\.10:518`));
    assert.match(text, /ssh: \{ user: admin, become: sudo \}/);
    // the design it describes is the one the files hold: no peer differs (only the PrivateKey/SaveConfig style)
    const inventory = checked.inventory;
    for (const h of hosts) {
      const desired = desiredNodeConfig(inventory, h.target.name, keysOf(hosts));
      const peerDrift = compareConfigToDesired(parseWgQuickConfig(h.facts.config.text!), desired).filter(
        (i) => i.peer !== undefined && i.severity === 'fail',
      );
      assert.deepEqual(peerDrift, [], h.target.name);
    }
  });
  it("the network's note says what the Addresses are: a /24 on one node is not called a /32 (Q6, Q7)", () => {
    const wide = hosts.map((h, i) =>
      i === 0 ? { ...h, facts: { ...h.facts, live: { ...h.facts.live!, addresses: ['172.27.15.12/24'] } } } : h,
    );
    const note = inferInventory(wide, 'wg0').notes.find((n) => n.at === 'mesh.network')?.text ?? '';
    assert.match(
      note,
      /^inferred: the nodes' Addresses share no one subnet \(172\.27\.15\.0\/24 on 1, a \/32 on 3\), so 172\.27\.15\.0\/24 /,
    );
  });
  it('refuses a mesh with a peer that is none of the hosts given, and a host without a running interface', () => {
    const three = inferInventory(hosts.slice(0, 3), 'wg0');
    assert.equal(three.draft, undefined);
    assert.match(
      three.problems.join('\n'),
      /ms-1 has a peer .* \(\/etc\/wireguard\/wg0\.conf, AllowedIPs 172\.27\.15\.31\/32\) that is none of the hosts given/,
    );
    const down: ImportedHost = { ...hosts[1]!, facts: { ...hosts[1]!.facts, interfaces: ['lo'], interfacePublicKey: undefined } };
    assert.match(inferInventory([hosts[0]!, down], 'wg0').problems.join('\n'), /wk-1: no running wg0/);
  });
  it('flags a site no one dials from outside as a guess (a LAN with no way in)', () => {
    const homeOnly = hosts.slice(0, 3).map((h) => ({
      ...h,
      // ctb-edge-1 gone from the files and from the live interfaces (a live peer in no file is a loss: Q6 finding 3)
      facts: {
        ...h.facts,
        config: { ...h.facts.config, text: dropPeer(h.facts.config.text!, '172.27.15.31/32') },
        peers: h.facts.peers.filter((p) => !p.allowedIps.includes('172.27.15.31/32')),
      },
    }));
    const r = inferInventory(homeOnly, 'wg0');
    assert.deepEqual(r.problems, []);
    assert.equal(r.draft!.sites[0]!.kind, 'lan');
    assert.ok(r.notes.some((n) => n.at === 'sites.lan-1' && /CANNOT INFER/.test(n.text)));
  });
});

/** The file without the [Peer] section whose AllowedIPs is `allowed`. */
function dropPeer(text: string, allowed: string): string {
  return text
    .split(/\n(?=\[Peer\])/)
    .filter((block) => !block.includes(`AllowedIPs = ${allowed}`))
    .join('\n');
}

describe('ownership: meshctl recognises its own interface by more than a comment (issue 8, kind 3a)', () => {
  const converged = parseFactsProbe(readFileSync('test/fixtures/facts/converged-wk-1.txt', 'utf8'), {
    interface: 'wg0',
    listenPort: 51820,
  });
  /** what wg-quick's save_config makes of meshctl's file: no comments, SaveConfig = true, PrivateKey back in */
  const savedOver = (facts: NodeFacts): NodeFacts => ({
    ...facts,
    config: {
      ...facts.config,
      text: `${(facts.config.text ?? '')
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n')
        .replace('SaveConfig = false', 'SaveConfig = true')}`,
      hasPrivateKeyLine: true,
      managedByMeshctl: false,
    },
  });
  const node = homelab.nodes.find((n) => n.name === 'wk-1')!;

  it("a hand-built wg0 is not meshctl's; up names the import instead of a busy port", () => {
    const ms1 = hosts[0]!.facts;
    assert.deepEqual(interfaceOwnership(ms1, 'wg0'), { own: false, by: [], handBuilt: true });
    const check = judgeListenPort(ms1, homelab.nodes[0]!, homelab);
    assert.equal(check.status, 'fail');
    assert.match(check.message, /this looks like a hand-built mesh: run `meshctl import inventories\/homelab\.yaml -o imported\.yaml`/);
  });
  it('after wg-quick saved over the file: recognised by its drop-in and key file, explained, a warning (not a stop)', () => {
    const facts = savedOver(converged);
    const owner = interfaceOwnership(facts, 'wg0');
    assert.equal(owner.own, true);
    assert.deepEqual(owner.by, [
      "meshctl's drop-in /etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf",
      'wg0 runs with the key of /etc/wireguard/wg0.key',
    ]);
    const check = judgeListenPort(facts, node, homelab);
    assert.equal(check.status, 'warn', check.message);
    assert.match(
      check.message,
      /rewritten by wg-quick \(SaveConfig = true .*private key included\): meshctl's header comment is gone: up rewrites it from the inventory, keeping \/etc\/wireguard\/wg0\.conf\.bak/,
    );
    // ... and without the drop-in it is not recognised (the key file alone is also what a runbook makes)
    assert.equal(interfaceOwnership({ ...facts, service: { ...facts.service, reloadDropInSha256: undefined } }, 'wg0').own, false);
  });
  it('the rewrite needs no restart: the interface runs as designed with its key file (syncconf at most)', () => {
    const live = parseFactsProbe(readFileSync('test/fixtures/facts/live-converged-ms-1.txt', 'utf8'), {
      interface: 'wg0',
      listenPort: 51820,
    });
    const facts = savedOver(live);
    const keys = new Map(homelab.nodes.map((n) => [n.name, n.name === 'ms-1' ? facts.keys.publicKey! : peerKey(live, n.overlayIp)]));
    const desired = desiredNodeConfig(homelab, 'ms-1', keys);
    assert.equal(changeWithoutRestart(facts, desired, 'interface'), 'peers');
    // a live MTU that differs still restarts, and so does another key, and another hook
    assert.equal(changeWithoutRestart({ ...facts, live: { ...facts.live!, mtu: 1380 } }, desired, 'interface'), 'interface');
    assert.equal(changeWithoutRestart({ ...facts, interfacePublicKey: keys.get('wk-1') }, desired, 'interface'), 'interface');
    const hook = {
      ...facts,
      config: {
        ...facts.config,
        text: facts.config.text!.replace('[Interface]', '[Interface]\nPostUp = iptables -A FORWARD -i wg0 -j ACCEPT'),
      },
    };
    assert.equal(changeWithoutRestart(hook, desired, 'interface'), 'interface');
  });
});

/** The public key of the live peer of `facts` whose AllowedIPs is ip/32. */
function peerKey(facts: NodeFacts, ip: string): string {
  return facts.peers.find((p) => p.allowedIps.includes(`${ip}/32`))?.publicKey ?? '';
}

describe('verify: where the key sits is reported, not failed', () => {
  it('a PrivateKey line instead of the PostUp, and SaveConfig = true, are warnings', () => {
    const wk2 = hosts[2]!;
    const parsed = parseWgQuickConfig(`[Interface]\nPrivateKey = (dropped on the node)\n${wk2.facts.config.text!}`);
    const desired = desiredNodeConfig(homelab, 'wk-2', keysOf(hosts));
    const items = keyLocationAsStyle(compareConfigToDesired(parsed, desired), parsed, 'wg0');
    const iface = items.filter((i) => i.peer === undefined && i.field !== 'syntax');
    assert.deepEqual(
      iface.map((i) => [i.field, i.severity]),
      [
        ['saveConfig', 'warn'],
        ['postUp', 'warn'],
        ['privateKey', 'warn'],
      ],
    );
    assert.match(iface[1]!.message, /private key sits in wg0\.conf \(PrivateKey line\)/);
  });
});

describe('import targets', () => {
  it('--host NAME=[USER@]HOST[:PORT]; a non-root user gets sudo', () => {
    assert.deepEqual(parseHostFlag('wk-1=admin@192.168.15.3:2222'), {
      name: 'wk-1',
      ssh: { host: '192.168.15.3', port: 2222, user: 'admin', become: 'sudo' },
    });
    assert.deepEqual(parseHostFlag('ms-1=192.168.15.2').ssh, { host: '192.168.15.2', port: 22, user: 'root', become: 'none' });
    assert.throws(() => parseHostFlag('ms-1'), /expected NAME=\[USER@\]HOST\[:PORT\]/);
    assert.throws(() => parseHostFlag('ms-1=h:99999'), /not a port/);
  });
  it('a skeleton (or a whole inventory) gives the ssh settings, the host defaulting to the address', () => {
    const { targets, iface } = targetsFromSkeleton(readFileSync('inventories/homelab.yaml', 'utf8'), 'homelab.yaml');
    assert.equal(iface, 'wg0');
    assert.deepEqual(
      targets,
      homelab.nodes.map((n) => ({ name: n.name, ssh: n.ssh })),
    );
    const skeleton = targetsFromSkeleton('nodes:\n  a: { ssh: { host: 10.0.0.1, user: ops, become: sudo, port: 2200 } }\n', 's.yaml');
    assert.deepEqual(skeleton.targets, [{ name: 'a', ssh: { host: '10.0.0.1', port: 2200, user: 'ops', become: 'sudo' } }]);
    assert.throws(() => targetsFromSkeleton('nodes:\n  a: {}\n', 's.yaml'), /no ssh.host and no address/);
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'nodes: {}',
    ];
    assert.throws(() => targetsFromSkeleton(bomb.join('\n'), 's.yaml'), /s\.yaml: /);
    assert.throws(() => mergeTargets([], []), /no hosts/);
    assert.throws(() => mergeTargets([parseHostFlag('a=h'), parseHostFlag('b=h')], []), /a and b are one SSH target/);
  });
  it('turns SaveConfig = true off in wg0.conf, atomically and only when it is on (real sh; Q3 finding 9)', () => {
    const dir = tempDir('meshctl-saveconfig-');
    const conf = join(dir, 'wg0.conf');
    const text = ['[Interface]', 'Address = 172.27.15.13/24', 'SaveConfig=TRUE', '# SaveConfig = true', 'MTU = 1420', ''].join('\n');
    writeFileSync(conf, text);
    const run = () => execFileSync('/bin/sh', ['-c', saveConfigOffScript(conf)], { encoding: 'utf8' });
    assert.equal(run(), 'saveconfig=off\n');
    assert.equal(
      readFileSync(conf, 'utf8'),
      text.replace('SaveConfig=TRUE', 'SaveConfig = false'),
      'the comment and every other line kept',
    );
    assert.equal(statSync(conf).mode & 0o777, 0o600);
    assert.equal(run(), '', 'idempotent: nothing to turn off the second time');
    assert.deepEqual(readdirSync(dir), ['wg0.conf'], 'no temp file left');
    assert.equal(
      parseAdoptOutput(`key=kept\nconf=kept\nsaveconfig=off\npublic=${hosts[0]!.facts.interfacePublicKey}\n`).saveConfigOff,
      true,
    );
  });
  it('a failing SaveConfig rewrite refuses (exit 3, temp file removed) instead of going on silently (RV2 S3-6)', () => {
    const dir = tempDir('meshctl-saveconfig-fail-');
    const conf = join(dir, 'wg0.conf');
    const text = ['[Interface]', 'SaveConfig = true', ''].join('\n');
    writeFileSync(conf, text);
    // a chmod that fails stands in for a full disk or a read-only /etc (root ignores directory modes)
    const bin = tempDir('meshctl-failing-chmod-');
    writeFileSync(join(bin, 'chmod'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const script = saveConfigOffScript(conf);
    assert.doesNotMatch(script, /[\t\r]/, 'no raw TAB or CR in the remote script');
    // under set -e, as adoptScript runs it, with a command after it that must not be reached
    const r = spawnSync('/bin/sh', ['-c', `set -e\n${script}\necho went-on`], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
    });
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /^refused=could not turn SaveConfig off in .*wg0\.conf/);
    assert.doesNotMatch(r.stdout, /went-on|saveconfig=off/);
    assert.equal(parseAdoptOutput(r.stdout).refused?.startsWith('could not turn SaveConfig off'), true);
    assert.equal(readFileSync(conf, 'utf8'), text, 'the file untouched');
    assert.deepEqual(readdirSync(dir), ['wg0.conf'], 'no temp file left');
  });
  for (const failing of ['key', 'conf'] as const) {
    it(`adopting: a failed ${failing === 'key' ? 'key move' : 'rewrite of the file'} refuses and stops, the key never in neither place (real sh; RV3 F6)`, () => {
      const dir = tempDir('meshctl-adopt-');
      const key = randomBytes(32).toString('base64');
      const text = ['[Interface]', 'Address = 172.27.15.13/32', `PrivateKey = ${key}`, 'ListenPort = 51820', ''].join('\n');
      writeFileSync(join(dir, 'wg0.conf'), text);
      // stand-ins: `wg show` finds no interface, `wg pubkey` answers per key; the `mv` onto the ${failing} file fails
      // (an immutable file, an SELinux denial), every other mv is the real one
      const bin = tempDir('meshctl-adopt-bin-');
      writeFileSync(join(bin, 'wg'), '#!/bin/sh\ncase "$1" in pubkey) read -r k; echo "pub-$k" ;; *) exit 1 ;; esac\n', { mode: 0o755 });
      const target = failing === 'key' ? 'wg0.key' : 'wg0.conf';
      writeFileSync(join(bin, 'mv'), `#!/bin/sh\ncase "$3" in *${target}) exit 1 ;; esac\nexec /bin/mv "$@"\n`, { mode: 0o755 });
      const script = adoptScript('wg0', false).replaceAll('/etc/wireguard/', `${dir}/`);
      const r = spawnSync('/bin/sh', ['-c', script], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
      });
      assert.equal(r.status, 3, r.stdout + r.stderr);
      const said = parseAdoptOutput(r.stdout);
      assert.equal(said.confRewritten, false);
      assert.doesNotMatch(r.stdout, /public=/, 'stopped');
      // the key is still where wg-quick reads it: in the file (untouched), and in the key file once moved
      assert.equal(readFileSync(join(dir, 'wg0.conf'), 'utf8'), text);
      if (failing === 'key') {
        assert.match(said.refused ?? '', /^could not move the key to .*wg0\.key: it stays in .*wg0\.conf/);
        assert.deepEqual(readdirSync(dir), ['wg0.conf'], 'no temp file with the key left');
      } else {
        assert.equal(said.key, 'moved');
        assert.match(said.refused ?? '', /^could not rewrite .*wg0\.conf without its PrivateKey line/);
        assert.equal(readFileSync(join(dir, 'wg0.key'), 'utf8').trim(), key);
        assert.deepEqual(readdirSync(dir).sort(), ['wg0.conf', 'wg0.key'], 'no temp file left');
      }
    });
  }
  it('adopting: a failed copy of the key into its temp file refuses, removes the part written and changes nothing (real sh; RV4 F4.2)', () => {
    const dir = tempDir('meshctl-adopt-copy-');
    const text = ['[Interface]', 'Address = 172.27.15.13/32', `PrivateKey = ${randomBytes(32).toString('base64')}`, ''].join('\n');
    writeFileSync(join(dir, 'wg0.conf'), text);
    // stand-ins: `wg show` finds no interface; an awk whose output goes to a file (the copy aside, not the count
    // through a pipe) writes part of it and fails, as on a full disk
    const bin = tempDir('meshctl-adopt-copy-bin-');
    writeFileSync(join(bin, 'wg'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    writeFileSync(join(bin, 'awk'), '#!/bin/sh\nif [ -f /dev/stdout ]; then printf part; exit 1; fi\nexec /usr/bin/awk "$@"\n', {
      mode: 0o755,
    });
    const script = adoptScript('wg0', false).replaceAll('/etc/wireguard/', `${dir}/`);
    const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` } });
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.match(parseAdoptOutput(r.stdout).refused ?? '', /^could not copy the key of .*wg0\.conf aside/);
    assert.equal(readFileSync(join(dir, 'wg0.conf'), 'utf8'), text);
    assert.deepEqual(readdirSync(dir), ['wg0.conf'], 'no temp file with part of the key left');
  });
  it("reads the adopting script's words and public key only", () => {
    const key = hosts[0]!.facts.interfacePublicKey!;
    assert.deepEqual(parseAdoptOutput(`key=moved\nconf=rewritten\ndropin=abc\npublic=${key}\n`), {
      key: 'moved',
      confRewritten: true,
      publicKey: key,
    });
    assert.deepEqual(parseAdoptOutput('refused=wg0 does not run with the key of /etc/wireguard/wg0.key\n'), {
      confRewritten: false,
      refused: 'wg0 does not run with the key of /etc/wireguard/wg0.key',
    });
  });
});
