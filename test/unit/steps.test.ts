import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { planInstall } from '../../src/steps/install.js';
import { planKeys, parseKeysOutput } from '../../src/steps/keys.js';
import { planConfig, sha256 } from '../../src/steps/config.js';
import { planService } from '../../src/steps/service.js';
import { atomicWriteScript, heredoc } from '../../src/steps/action.js';
import { describeAction } from '../../src/engine/plan.js';
import { renderReloadDropIn } from '../../src/render/systemd.js';

/** A freshly installed Debian node without WireGuard, without a kernel module (like the lab). */
function bareDebian(overrides: Partial<NodeFacts> = {}): NodeFacts {
  return {
    uid: 0,
    hostname: 'ms-1',
    os: { id: 'debian', versionId: '12', idLike: [], prettyName: 'Debian GNU/Linux 12 (bookworm)' },
    packageManager: 'apt',
    systemd: true,
    kernelModule: 'missing',
    tools: { wg: false, wgQuick: false, wireguardGo: false, tcpdump: true, ping: true },
    interfaces: ['lo', 'eth0'],
    wireguardInterfaces: [],
    wireguardConfigs: [],
    config: { exists: false, hasPrivateKeyLine: false, managedByMeshctl: false },
    interfaceRoutes: [],
    keys: { privateKeyExists: false },
    sysctl: { rpFilterAll: 0, rpFilterDefault: 0 },
    service: { enabled: 'disabled', active: 'inactive' },
    listenPortUsers: [],
    peers: [],
    baseline: { extraIpRules: [], leftoverPaths: [], leftoverUnits: [], leftoverInterfaces: [], firewallDrops: [] },
    ...overrides,
  };
}

const PUB = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';

describe('install planner', () => {
  it('installs wireguard-tools and wireguard-go (never the wireguard metapackage) without a kernel module', () => {
    const action = planInstall(bareDebian());
    assert.ok(action);
    assert.match(action.script, /apt-get install -y -qq --no-install-recommends wireguard-tools wireguard-go/);
    assert.doesNotMatch(action.script, /install[^\n]* wireguard( |$)/m);
  });

  it('installs only the tools where the kernel module can be loaded', () => {
    const action = planInstall(bareDebian({ kernelModule: 'available' }));
    assert.match(action!.script, /--no-install-recommends wireguard-tools >\/dev\/null/);
  });

  it('does nothing when the tools are present', () => {
    const facts = bareDebian({ tools: { wg: true, wgQuick: true, wireguardGo: true, tcpdump: true, ping: true } });
    assert.equal(planInstall(facts), undefined);
  });

  it('uses the node package manager', () => {
    assert.match(planInstall(bareDebian({ packageManager: 'apk' }))!.script, /apk add --no-cache wireguard-tools wireguard-go/);
    assert.match(
      planInstall(bareDebian({ packageManager: 'dnf', kernelModule: 'loaded' }))!.script,
      /dnf install -y -q wireguard-tools >\/dev\/null/,
    );
  });

  it('refuses a node without a known package manager', () => {
    assert.throws(() => planInstall(bareDebian({ packageManager: undefined })), /no supported package manager/);
  });
});

describe('keys planner', () => {
  it('generates under umask 077 and prints only the public key', () => {
    const action = planKeys(bareDebian(), 'wg0')!;
    assert.match(action.script, /umask 077/);
    assert.match(action.script, /wg genkey > \/etc\/wireguard\/wg0\.key\.meshctl-tmp/);
    // the only things printed are created/kept and the .pub file
    const printing = action.script.split('\n').filter((l) => /\b(cat|echo)\b/.test(l));
    for (const line of printing) assert.doesNotMatch(line, /cat \/etc\/wireguard\/wg0\.key\b(?!\.)/);
    assert.match(action.script, /cat \/etc\/wireguard\/wg0\.pub$/);
  });

  it('keeps an existing key: nothing to do when the public key is known and the mode is 0600', () => {
    const facts = bareDebian({ keys: { privateKeyExists: true, privateKeyMode: '600', publicKey: PUB } });
    assert.equal(planKeys(facts, 'wg0'), undefined);
  });

  it('never regenerates an existing key, only derives its public half', () => {
    const action = planKeys(bareDebian({ keys: { privateKeyExists: true, privateKeyMode: '644' } }), 'wg0')!;
    assert.match(action.script, /if \[ -s \/etc\/wireguard\/wg0\.key \]; then echo kept;/);
  });

  it('parses the output and rejects anything that is not a public key', () => {
    assert.deepEqual(parseKeysOutput(`created\n${PUB}\n`), { created: true, publicKey: PUB });
    assert.throws(() => parseKeysOutput('created\nnot-a-key\n'), /valid WireGuard public key/);
  });
});

describe('config planner', () => {
  const input = {
    iface: 'wg0',
    configText: '[Interface]\nAddress = 172.27.15.12/32\n',
    sysctlText: 'net.ipv4.conf.all.rp_filter = 2\n',
    rpFilter: 2 as const,
    reloadDropInText: renderReloadDropIn('wg0'),
  };
  const dropInPath = '/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf';

  it('writes both files atomically and applies rp_filter from its own file only', () => {
    const plan = planConfig(bareDebian(), input);
    assert.ok(plan.writeConfig && plan.writeSysctl && plan.applySysctl);
    assert.match(plan.action!.script, /mv -f \/etc\/wireguard\/wg0\.conf\.meshctl-tmp \/etc\/wireguard\/wg0\.conf/);
    // a fresh copy of root's (umask 077), never the old file's owner and mode (`cp -p`: Q9 F-perm-rollback)
    assert.match(
      plan.action!.script,
      /cp \/etc\/wireguard\/wg0\.conf \/etc\/wireguard\/wg0\.conf\.bak\.meshctl-tmp; \} && mv -f \/etc\/wireguard\/wg0\.conf\.meshctl-tmp \/etc\/wireguard\/wg0\.conf && \{ .* mv -f \/etc\/wireguard\/wg0\.conf\.bak\.meshctl-tmp \/etc\/wireguard\/wg0\.conf\.bak; \}/,
    );
    assert.doesNotMatch(plan.action!.script, /cp -p/);
    assert.match(plan.action!.script, /sysctl -q -p \/etc\/sysctl\.d\/99-wireguard\.conf/);
    assert.doesNotMatch(plan.action!.script, /sysctl --system/);
  });

  it('is a no-op when every file and the kernel values already match', () => {
    const facts = bareDebian({
      config: { exists: true, sha256: sha256(input.configText), hasPrivateKeyLine: false, managedByMeshctl: true },
      sysctl: { fileSha256: sha256(input.sysctlText), rpFilterAll: 2, rpFilterDefault: 2 },
      service: { enabled: 'enabled', active: 'active', reloadDropInSha256: sha256(input.reloadDropInText) },
    });
    const plan = planConfig(facts, input);
    assert.equal(plan.action, undefined);
  });

  it('writes the reload drop-in where systemd runs, then daemon-reload; only when it differs; never without systemd', () => {
    const converged = {
      config: { exists: true, sha256: sha256(input.configText), hasPrivateKeyLine: false, managedByMeshctl: true },
      sysctl: { fileSha256: sha256(input.sysctlText), rpFilterAll: 2, rpFilterDefault: 2 },
    } as const;
    const missing = planConfig(bareDebian({ ...converged, service: { enabled: 'enabled', active: 'active' } }), input);
    assert.equal(missing.writeReloadDropIn, true);
    assert.equal(missing.writeConfig, false);
    assert.match(missing.action!.script, /mkdir -p -m 755 \/etc\/systemd\/system\/wg-quick@wg0\.service\.d/);
    // the rename ends the write's line (its here-document's body follows), the sha256 line, then daemon-reload
    assert.match(
      missing.action!.script,
      new RegExp(`mv -f ${dropInPath}\\.meshctl-tmp ${dropInPath} \\|\\| [^\n]*\n(?:[^\n]*\n)*?MESHCTL_EOF\n.*\nsystemctl daemon-reload`),
    );
    assert.match(describeAction(missing.action!), /a reload keeps the key/);
    const edited = planConfig(
      bareDebian({ ...converged, service: { enabled: 'enabled', active: 'active', reloadDropInSha256: sha256('edited by hand') } }),
      input,
    );
    assert.equal(edited.writeReloadDropIn, true);
    const noSystemd = planConfig(bareDebian({ ...converged, systemd: false }), input);
    assert.equal(noSystemd.writeReloadDropIn, false);
    assert.equal(noSystemd.action, undefined);
  });

  it('re-applies rp_filter when the kernel drifted from a correct file', () => {
    const facts = bareDebian({
      config: { exists: true, sha256: sha256(input.configText), hasPrivateKeyLine: false, managedByMeshctl: true },
      sysctl: { fileSha256: sha256(input.sysctlText), rpFilterAll: 1, rpFilterDefault: 2 },
    });
    const plan = planConfig(facts, input);
    assert.equal(plan.writeConfig, false);
    assert.equal(plan.writeSysctl, false);
    assert.equal(plan.applySysctl, true);
  });
});

describe('service planner', () => {
  const routes = ['172.27.15.11/32', '172.27.15.13/32'];
  const running = bareDebian({
    service: { enabled: 'enabled', active: 'active' },
    interfaces: ['lo', 'eth0', 'wg0'],
    interfaceRoutes: ['172.27.15.11', '172.27.15.13'],
  });

  it('enables and starts a new service', () => {
    assert.match(planService(bareDebian(), 'wg0', 'create', routes).action!.script, /systemctl enable --now --no-reload wg-quick@wg0/);
  });

  it('does nothing on a converged node', () => {
    assert.equal(planService(running, 'wg0', 'none', routes).action, undefined);
    assert.equal(planService({ ...running, interfacePublicKey: PUB }, 'wg0', 'none', routes, PUB).action, undefined);
  });

  it('loads the key file again into an interface that runs without it (or with another), keeping the interface', () => {
    const keyless = planService(running, 'wg0', 'none', routes, PUB).action!;
    assert.equal(describeAction(keyless), 'load /etc/wireguard/wg0.key into wg0 again (it ran with no key)');
    assert.match(keyless.script, /^wg set wg0 private-key \/etc\/wireguard\/wg0\.key$/m);
    assert.doesNotMatch(keyless.script, /restart|wg-quick down/);
    const other = planService(
      { ...running, interfacePublicKey: 'M3fwNRy2GLHqnlPdDk0jYBeu7PH7VtluCk9pcbYBzhg=' },
      'wg0',
      'none',
      routes,
      PUB,
    ).action!;
    assert.match(describeAction(other), /it ran with another key/);
    // a restart or syncconf loads the key anyway; no interface yet: PostUp will
    assert.doesNotMatch(planService(running, 'wg0', 'peers', routes, PUB).action!.script, /wg set wg0 private-key/);
    assert.equal(planService({ ...running, interfaces: ['lo', 'eth0'] }, 'wg0', 'none', [], PUB).action, undefined);
  });

  it('reloads (keeps the interface) when only peers changed, and syncs the /32 routes', () => {
    const script = planService(running, 'wg0', 'peers', routes).action!.script;
    assert.match(script, /wg addconf wg0 \/dev\/stdin/);
    // the stock `systemctl reload` syncs a key-less file and would clear the interface's private key
    assert.doesNotMatch(script, /restart|systemctl reload/);
    assert.match(script, /ip -4 route replace "\$r" dev wg0/);
  });

  it('keeps the wanted routes when syncing: `ip route show` prints host routes without /32', () => {
    const script = planService(running, 'wg0', 'peers', routes).action!.script;
    const prune = script.split('\n').find((l) => l.includes('ip -4 route del'))!;
    // run the pruning loop against what `ip route show` prints: one wanted route, one stale
    const shown = '172.27.15.11\n172.27.15.99\n';
    const dry = prune
      .replace(/ip -4 route show dev wg0 proto boot scope link/, `printf '${shown.replaceAll('\n', '\\n')}'`)
      .replaceAll('ip -4 route del', 'echo del');
    const deleted = execFileSync('sh', ['-c', dry], { encoding: 'utf8' }).trim();
    assert.equal(deleted, 'del 172.27.15.99 dev wg0');
  });

  it('restores a peer route removed by hand even when the config did not change', () => {
    const drifted = { ...running, interfaceRoutes: ['172.27.15.11'] };
    const plan = planService(drifted, 'wg0', 'none', routes);
    assert.match(describeAction(plan.action!), /restore route 172\.27\.15\.13\/32 via wg0/);
    assert.match(plan.action!.script, /ip -4 route replace "\$r" dev wg0/);
  });

  it('restarts when the [Interface] section changed', () => {
    assert.match(planService(running, 'wg0', 'interface', routes).action!.script, /systemctl restart wg-quick@wg0/);
  });

  it('uses wg-quick up without systemd, with a warning', () => {
    const plan = planService(bareDebian({ systemd: false }), 'wg0', 'create', routes);
    assert.match(plan.action!.script, /wg-quick up wg0/);
    assert.match(plan.warning!, /reboot/);
  });
});

describe('atomic writes', () => {
  it('uses a heredoc delimiter that cannot occur in the content', () => {
    const doc = heredoc('a\nMESHCTL_EOF\n');
    assert.equal(doc.start, "<<'MESHCTL_EOF_'");
  });

  it('writes to a temp file in the same directory, sets the mode, then renames', () => {
    const script = atomicWriteScript('/etc/x.conf', 'hello\n', { mode: '644' });
    // one `&&` chain (Q9 F-immutable: its failure removes the temp file): the commands in order in the text
    const order = ['umask 077', 'chmod 644 /etc/x.conf.meshctl-tmp', 'mv -f /etc/x.conf.meshctl-tmp /etc/x.conf'].map((l) =>
      script.indexOf(l),
    );
    assert.ok(order.every((i) => i >= 0) && order[0]! < order[1]! && order[1]! < order[2]!, script);
  });
});
