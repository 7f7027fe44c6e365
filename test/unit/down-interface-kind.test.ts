/**
 * Q9 F-down-eth0: an inventory whose mesh.interface was `eth0` passed validate, and `down --yes` deleted eth0 on every
 * node (`if [ -e /sys/class/net/eth0 ]; then ip link del eth0; fi`): every node lost its uplink and SSH. `down` now
 * deletes only a WireGuard interface (../../src/steps/down.ts isWireGuardTest), refuses a node where the name is
 * anything else, and tests it again in the script itself.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { netnsSkipReason, withNetns } from '../support/netns.js';
import { downProbeScript, parseDownProbe, planDown, type DownFacts } from '../../src/steps/down.js';
import { planService } from '../../src/steps/service.js';
import type { NodeFacts } from '../../src/facts/node-facts.js';

const facts = (over: Partial<DownFacts>): DownFacts => ({
  systemd: false,
  active: '',
  enabled: '',
  interfacePresent: true,
  interfaceIsWireGuard: true,
  reresolveOn: false,
  files: [],
  dropInDir: false,
  pendingRollbacks: [],
  ...over,
});

describe('down deletes only a WireGuard interface', () => {
  it('an interface of the mesh name that is not WireGuard: refused, nothing planned, no script', () => {
    const plan = planDown(facts({ interfaceIsWireGuard: false, files: ['/etc/wireguard/eth0.conf'] }), 'eth0', true);
    assert.deepEqual(plan.changes, []);
    assert.equal(plan.script, undefined);
    assert.match(plan.refused ?? '', /^eth0 is not a WireGuard interface there .*never deletes it; is mesh\.interface right/);
    // a WireGuard one is deleted as before
    const wg = planDown(facts({}), 'wg0', false);
    assert.deepEqual(
      wg.changes.map((c) => c.kind),
      ['delete-interface'],
    );
    assert.equal(wg.refused, undefined);
  });

  it('the real probe and script in a network namespace: a tun link (as wireguard-go makes, without its socket) is seen as not WireGuard and survives the delete', (t) => {
    const skip = netnsSkipReason();
    if (skip) return t.skip(skip);
    withNetns('mc-down', (run) => {
      // the name of a NIC, of no WireGuard kind: the probe must not call it WireGuard
      run('ip tuntap add dev eth0 mode tun && ip link set eth0 up');
      const probed = parseDownProbe(run(downProbeScript('eth0')));
      assert.equal(probed.interfacePresent, true);
      assert.equal(probed.interfaceIsWireGuard, false);
      assert.ok(planDown(probed, 'eth0', false).refused);
      // the script's own test (the probe said WireGuard, the interface changed since): eth0 is not deleted
      const { script } = planDown(facts({}), 'eth0', false);
      run(script!);
      assert.match(run('ip -br link show dev eth0'), /^eth0\s/);
    });
  });

  it("up's enable step takes down only a WireGuard interface of the mesh's name (RV6 F5: `wg-quick down wg0 || ip link del wg0` deleted any kind)", (t) => {
    const skip = netnsSkipReason();
    if (skip) return t.skip(skip);
    // the unit not running and an interface of its name there: the step takes that interface down before enabling
    const node = {
      uid: 0,
      systemd: true,
      interfaces: ['lo', 'wg0'],
      wireguardInterfaces: [],
      service: { enabled: 'disabled', active: 'inactive' },
      peers: [],
      interfaceRoutes: [],
      baseline: { extraIpRules: [], leftoverPaths: [], leftoverUnits: [], leftoverInterfaces: [], firewallDrops: [] },
    } as unknown as NodeFacts;
    const script = planService(node, 'wg0', 'create', ['172.27.15.12/32']).action!.script;
    const takeDown = script.split('\n').find((line) => line.includes('ip link del wg0'));
    assert.ok(takeDown, script);
    withNetns('mc-enable', (run) => {
      run('ip tuntap add dev wg0 mode tun && ip link set wg0 up');
      // PATH without wg-quick as on a node where it refuses: only the guard stands between the tun link and `ip link del`
      assert.throws(() => run(takeDown!), /wg0 exists and is not a WireGuard interface/);
      assert.match(run('ip -br link show dev wg0'), /^wg0\s/);
    });
    // a WireGuard interface (the kernel's DEVTYPE, wireguard-go's UAPI socket) is taken down as before
    assert.match(
      takeDown!,
      /^if \{ grep -qx DEVTYPE=wireguard .*; then wg-quick down wg0 >\/dev\/null 2>&1 \|\| ip link del wg0 \|\| true; else /,
    );
  });
});
