/**
 * Issue 8, kind 2: `up` converges the LIVE interface, not only the files. Each test changes a converged mesh by hand
 * (as `wg set`, `ip` or an interrupted run would), then checks that the plan names the change with its reason, that
 * `up` makes the live interface match the design again (`wg show wg0 dump`, `ip link` MTU, routes), that a second
 * `up` changes nothing, and that where a syncconf suffices the sessions of the untouched peers are kept.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab } from './harness.js';
import type { Plan } from '../../src/engine/plan.js';
import type { Change } from '../../src/engine/types.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig, type DesiredNodeConfig } from '../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { parseWgDumpPeers, type LivePeer } from '../../src/render/wgdump.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
/** a public key no node has (the peer a person added by hand) */
const STRANGER = 'M3fwNRy2GLHqnlPdDk0jYBeu7PH7VtluCk9pcbYBzhg=';

interface UpJson {
  result: string;
  changes: number;
  phases: { id: string; verdict: string; nodes: { node: string; changes: string[] }[] }[];
}

describeLab('up converges the live interface (issue 8, kind 2)', INVENTORY, (lab) => {
  const inventory = loadInventory(INVENTORY);
  const keys = new Map<string, string>();

  const sh = (node: string, script: string, stdin?: string) => lab().sh(node, script, stdin === undefined ? {} : { stdin });
  const up = async (inventoryPath = INVENTORY) => {
    const result = await lab().meshctl(['up', inventoryPath, '--yes', '--json']);
    assert.equal(result.code, 0, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
    return JSON.parse(result.stdout) as UpJson;
  };
  /** the typed changes a dry run plans in the enable phase, per node */
  const plannedEnable = async (): Promise<Map<string, Change[]>> => {
    const dry = await lab().meshctl(['up', INVENTORY, '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = (JSON.parse(dry.stdout) as { plan: Plan }).plan;
    const enable = plan.phases.find((p) => p.id === 'enable')!;
    return new Map(enable.nodes.map((n) => [n.node, n.actions.flatMap((a) => a.changes)]));
  };
  const enableChanges = (report: UpJson, node: string) =>
    report.phases.find((p) => p.id === 'enable')!.nodes.find((n) => n.node === node)?.changes ?? [];
  const desiredOf = (node: string): DesiredNodeConfig => desiredNodeConfig(inventory, node, keys);
  /** the live peers, without the dump's interface line (it holds the private key) */
  const livePeers = async (node: string): Promise<LivePeer[]> => parseWgDumpPeers(await sh(node, 'wg show wg0 dump | tail -n +2')).peers;

  /** The live interface of `node` is the design: peers, AllowedIPs, keepalive, endpoints (where no NAT roams), MTU, routes. */
  const assertLiveMatches = async (node: string) => {
    const desired = desiredOf(node);
    const live = new Map((await livePeers(node)).map((p) => [p.publicKey, p]));
    assert.deepEqual([...live.keys()].sort(), desired.peers.map((p) => p.publicKey).sort(), `${node}: live peers`);
    for (const want of desired.peers) {
      const have = live.get(want.publicKey)!;
      assert.deepEqual(have.allowedIps, want.allowedIps, `${node}: ${want.name} AllowedIPs`);
      assert.equal(have.persistentKeepalive, want.persistentKeepalive, `${node}: ${want.name} keepalive`);
      if (want.endpoint && !want.throughNat) assert.equal(have.endpoint, want.endpoint, `${node}: ${want.name} endpoint`);
    }
    assert.match(await sh(node, 'ip link show wg0'), new RegExp(`mtu ${desired.mtu} `), `${node}: MTU`);
    assert.match(await sh(node, 'ip -4 addr show dev wg0'), new RegExp(`inet ${desired.address.replace(/\./g, '\\.')} `));
    const routes = (await sh(node, 'ip -4 route show dev wg0'))
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]!);
    assert.deepEqual(routes.sort(), desired.peers.map((p) => p.allowedIps[0]!.replace(/\/32$/, '')).sort(), `${node}: routes via wg0`);
  };

  /** handshake time and received bytes per peer key: a peer re-created (session lost) starts again from zero */
  const sessions = async (node: string) =>
    new Map((await livePeers(node)).map((p) => [p.publicKey, { handshake: p.latestHandshake ?? 0, rx: p.rxBytes }]));
  const assertSessionsKept = async (node: string, before: Awaited<ReturnType<typeof sessions>>, peers: string[]) => {
    const after = await sessions(node);
    for (const name of peers) {
      const key = keys.get(name)!;
      const then = before.get(key)!;
      const now = after.get(key)!;
      assert.ok(then.handshake > 0 && now.handshake >= then.handshake, `${node}: the session with ${name} was lost`);
      assert.ok(now.rx >= then.rx, `${node}: the peer ${name} was re-created (received bytes ${then.rx} -> ${now.rx})`);
    }
  };
  const ifindex = (node: string) => sh(node, 'cat /sys/class/net/wg0/ifindex');
  const assertSecondRunChangesNothing = async () => {
    const again = await up();
    assert.equal(again.result, 'converged');
    assert.equal(again.changes, 0, JSON.stringify(again.phases.map((p) => p.nodes.filter((n) => n.changes.length))));
  };

  it('builds the mesh, and a second run plans nothing (the live comparison keeps a converged mesh at zero changes)', async () => {
    const first = await up();
    assert.equal(first.result, 'converged');
    for (const node of NODES) keys.set(node, (await sh(node, 'cat /etc/wireguard/wg0.pub')).trim());
    for (const node of NODES) await assertLiveMatches(node);
    // roamed endpoints (the edge sees the home nodes at the router's rewritten ports) are no difference
    await assertSecondRunChangesNothing();
  });

  it('(a) puts back a peer removed live with `wg set ... remove` (syncconf, the other sessions kept)', async () => {
    const before = await sessions('ms-1');
    const index = await ifindex('ms-1');
    await sh('ms-1', `wg set wg0 peer ${keys.get('ctb-edge-1')} remove`);
    const planned = (await plannedEnable()).get('ms-1') ?? [];
    assert.equal(planned.length, 1, JSON.stringify(planned));
    assert.equal(planned[0]!.kind, 'syncconf');
    assert.match((planned[0] as { why: string }).why, /live peers differ from wg0\.conf: no peer ctb-edge-1/);
    const report = await up();
    assert.equal(report.result, 'converged');
    assert.match(enableChanges(report, 'ms-1').join('; '), /wg syncconf wg0 \(live peers differ from wg0\.conf: no peer ctb-edge-1/);
    await assertLiveMatches('ms-1');
    assert.equal(await ifindex('ms-1'), index, 'ms-1 wg0 was recreated');
    await assertSessionsKept('ms-1', before, ['wk-1', 'wk-2']);
    await assertSecondRunChangesNothing();
  });

  it('(b) removes a peer and its route added by hand (also a route with another proto)', async () => {
    const before = await sessions('ms-1');
    await sh('ms-1', `wg set wg0 peer ${STRANGER} allowed-ips 10.66.0.0/16 endpoint 192.168.15.77:51820`);
    await sh('ms-1', 'ip route add 10.66.0.0/16 dev wg0 && ip route add 10.67.0.0/16 dev wg0 proto static');
    const planned = (await plannedEnable()).get('ms-1') ?? [];
    assert.equal(planned[0]?.kind, 'syncconf', JSON.stringify(planned));
    assert.match((planned[0] as { why: string }).why, /unknown peer M3fwNRy2GL… \(AllowedIPs 10\.66\.0\.0\/16\)/);
    const report = await up();
    assert.equal(report.result, 'converged');
    assert.match(enableChanges(report, 'ms-1').join('; '), /unknown peer/);
    await assertLiveMatches('ms-1');
    await assertSessionsKept('ms-1', before, ['wk-1', 'wk-2', 'ctb-edge-1']);
    await assertSecondRunChangesNothing();
  });

  it('(c) finishes an MTU change that a run wrote to wg0.conf but did not apply (set live, named with both values; the interface kept)', async () => {
    // the state before: the design had MTU 1380, and the interface runs with it
    const old = join(mkdtempSync(join(tmpdir(), 'meshctl-converge-')), 'homelab-mtu-1380.yaml');
    writeFileSync(old, readFileSync(INVENTORY, 'utf8').replace('mtu: 1420', 'mtu: 1380'));
    const oldConfig = renderWgQuickConfig(desiredNodeConfig(loadInventory(old), 'ms-1', keys));
    assert.match(oldConfig, /^MTU = 1380$/m);
    await sh('ms-1', 'cat > /etc/wireguard/wg0.conf && systemctl restart wg-quick@wg0', oldConfig);
    assert.match(await sh('ms-1', 'ip link show wg0'), /mtu 1380 /);
    // the interrupted run: it wrote the new file exactly as up renders it, then stopped before the restart
    await sh(
      'ms-1',
      'umask 077 && cat > /etc/wireguard/wg0.conf.meshctl-tmp && mv -f /etc/wireguard/wg0.conf.meshctl-tmp /etc/wireguard/wg0.conf',
      renderWgQuickConfig(desiredOf('ms-1')),
    );
    const planned = (await plannedEnable()).get('ms-1') ?? [];
    // RV2 finding 11: the file is the design and only the live MTU differs: set live, no restart of ms-1
    const why = "live MTU 1380, wg0.conf 1420: the file's MTU set on the running interface";
    assert.deepEqual(planned, [{ kind: 'set-mtu', iface: 'wg0', mtu: 1420, why }]);
    const index = await ifindex('ms-1');
    const report = await up();
    assert.equal(report.result, 'converged');
    // one action: the rollback armed on the node (issue 9), then the MTU set live that finishes the change
    const [action, ...others] = enableChanges(report, 'ms-1');
    assert.deepEqual(others, []);
    assert.match(
      action ?? '',
      /^arm a rollback on the node \(meshctl-revert-[0-9a-f]+-enable, in \d+ s unless confirmed\), set wg0 MTU 1420 live \(live MTU 1380, wg0\.conf 1420: the file's MTU set on the running interface; no restart, interface and sessions kept\)$/,
    );
    assert.deepEqual(report.phases.find((p) => p.id === 'config')!.nodes.find((n) => n.node === 'ms-1')?.changes ?? [], []);
    await assertLiveMatches('ms-1');
    assert.equal(await ifindex('ms-1'), index, 'ms-1: wg0 was re-created (a restart), not set live');
    await assertSecondRunChangesNothing();
  });

  it('resets a keepalive and an endpoint changed live with `wg set` (syncconf; a keepalive the file lacks switched off)', async () => {
    // The previous run's ping gate ended moments ago: a peer that received data and sent nothing back sends a
    // passive keepalive Keepalive-Timeout (10 s) later (WireGuard paper, section 6.5), and wk-2 would roam the
    // endpoint set by hand below back to wk-1's real one before the plan reads it. Let that quiet period pass.
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    const before1 = await sessions('wk-1');
    const before2 = await sessions('wk-2');
    // wk-1 -> ms-1: same site, the design has no keepalive; syncconf alone would keep the one set by hand
    await sh('wk-1', `wg set wg0 peer ${keys.get('ms-1')} persistent-keepalive 7`);
    // wk-2 -> ctb-edge-1: keepalive 25 switched off; wk-2 -> wk-1: a wrong LAN endpoint (no NAT between them)
    await sh(
      'wk-2',
      `wg set wg0 peer ${keys.get('ctb-edge-1')} persistent-keepalive off peer ${keys.get('wk-1')} endpoint 192.168.15.99:51820`,
    );
    const planned = await plannedEnable();
    const why = (node: string) => (planned.get(node)?.[0] as { why?: string } | undefined)?.why ?? '';
    assert.match(why('wk-1'), /peer ms-1 keepalive 7, wg0\.conf off/);
    assert.match(why('wk-2'), /peer ctb-edge-1 keepalive off, wg0\.conf 25/);
    assert.match(why('wk-2'), /peer wk-1 endpoint 192\.168\.15\.99:51820, wg0\.conf 192\.168\.15\.3:51820/);
    const report = await up();
    assert.equal(report.result, 'converged');
    for (const node of ['wk-1', 'wk-2']) {
      assert.match(enableChanges(report, node).join('; '), /wg syncconf wg0 \(live peers differ/, node);
      await assertLiveMatches(node);
    }
    await assertSessionsKept('wk-1', before1, ['wk-2', 'ctb-edge-1']);
    await assertSessionsKept('wk-2', before2, ['ms-1']);
    await assertSecondRunChangesNothing();
  });

  it('brings back an interface deleted by hand while wg-quick@wg0 stays active (restart, named)', async () => {
    await sh('wk-2', 'ip link del wg0');
    assert.equal((await sh('wk-2', 'systemctl is-active wg-quick@wg0')).trim(), 'active');
    const planned = (await plannedEnable()).get('wk-2') ?? [];
    assert.deepEqual(planned, [{ kind: 'restart', unit: 'wg-quick@wg0', why: 'wg0 is missing while wg-quick@wg0 is active' }]);
    const report = await up();
    assert.equal(report.result, 'converged');
    await assertLiveMatches('wk-2');
    await assertSecondRunChangesNothing();
  });
});
