/** The facts probe's parser on real output captured from lab nodes (test/fixtures/facts, see the file names). */
import { describeAction } from '../../src/engine/plan.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseFactsProbe } from '../../src/facts/node-facts.js';
import { planInstall } from '../../src/steps/install.js';
import { planKeys } from '../../src/steps/keys.js';
import { sha256 } from '../../src/steps/config.js';
import { renderReloadDropIn } from '../../src/render/systemd.js';

const target = { interface: 'wg0', listenPort: 51820 };
const fixture = (name: string) => readFileSync(`test/fixtures/facts/${name}`, 'utf8');

describe('facts probe parser', () => {
  it('reads a bare Debian 12 node: apt, systemd, no module, nothing of WireGuard yet, pristine baseline', () => {
    const facts = parseFactsProbe(fixture('bare-debian12.txt'), target);
    assert.equal(facts.uid, 0);
    assert.equal(facts.hostname, 'wk-1');
    assert.deepEqual(
      [facts.os.id, facts.os.versionId, facts.packageManager, facts.systemd, facts.kernelModule],
      ['debian', '12', 'apt', true, 'missing'],
    );
    assert.deepEqual([facts.tools.wg, facts.tools.wgQuick, facts.tools.wireguardGo], [false, false, false]);
    assert.equal(facts.config.exists, false);
    assert.equal(facts.keys.privateKeyExists, false);
    assert.deepEqual(facts.baseline, { extraIpRules: [], leftoverPaths: [], leftoverUnits: [], leftoverInterfaces: [], firewallDrops: [] });
    assert.deepEqual(facts.listenPortUsers, []);
    assert.equal(facts.service.reloadDropInSha256, undefined);
    assert.equal(facts.interfacePublicKey, undefined);
    assert.deepEqual(facts.peers, []);
    assert.deepEqual([facts.sysctl.rpFilterAll, facts.sysctl.rpFilterDefault, facts.sysctl.rpFilterInterface], [0, 0, undefined]);
    // and the planners take it from there
    assert.match(describeAction(planInstall(facts)!), /wireguard-tools wireguard-go \(apt\)/);
    assert.ok(planKeys(facts, 'wg0'));
  });

  it('reads the service of a node without wireguard-tools: is-enabled prints nothing, is-active "inactive"', () => {
    // Defect: the state was read by line position, so the empty is-enabled output moved "inactive" into `enabled`
    // and left `active` unknown.
    const facts = parseFactsProbe(fixture('bare-debian12.txt'), target);
    assert.equal(facts.service.enabled, 'unknown');
    assert.equal(facts.service.active, 'inactive');
  });

  it('reads named facts whatever their order and however many are empty', () => {
    const text = fixture('bare-debian12.txt');
    const sections = text.split(/(?=@@meshctl begin )/);
    const shuffled = [...sections.slice(0, -1).reverse(), sections.at(-1)!].join('');
    assert.deepEqual(parseFactsProbe(shuffled, target), parseFactsProbe(text, target));
  });

  it('reads the firewall rules that drop the listen port (iptables-save and nft, real capture)', () => {
    const facts = parseFactsProbe(fixture('firewall-drop-wk-1.txt'), target);
    assert.deepEqual(facts.baseline.firewallDrops, [
      '[0:0] -A INPUT -p udp -m udp --dport 51820 -j DROP',
      'udp dport 51820 counter packets 0 bytes 0 drop',
    ]);
    assert.deepEqual(parseFactsProbe(fixture('converged-wk-1.txt'), target).baseline.firewallDrops, []);
  });

  it('reads a converged node: our config (sha and text without a key line), key 0600 and its public half, service up, routes', () => {
    const facts = parseFactsProbe(fixture('converged-wk-1.txt'), target);
    assert.equal(facts.config.exists, true);
    assert.match(facts.config.sha256!, /^[0-9a-f]{64}$/);
    assert.equal(facts.config.managedByMeshctl, true);
    assert.equal(facts.config.hasPrivateKeyLine, false);
    assert.match(facts.config.text!, /^\[Interface\]$/m);
    assert.ok(facts.config.text!.endsWith('\n') && !facts.config.text!.endsWith('\n\n'));
    assert.equal(facts.keys.privateKeyMode, '600');
    assert.match(facts.keys.publicKey!, /^[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(facts.service, { enabled: 'enabled', active: 'active', reloadDropInSha256: sha256(renderReloadDropIn('wg0')) });
    assert.equal(facts.interfacePublicKey, facts.keys.publicKey, 'the interface runs with the key file');
    assert.deepEqual(facts.interfaceRoutes.sort(), ['172.27.15.12', '172.27.15.13', '172.27.15.31']);
    assert.deepEqual(facts.wireguardInterfaces, ['wg0']);
    assert.equal(facts.sysctl.rpFilterAll, 2);
    assert.equal(facts.listenPortUsers.length > 0, true, 'wireguard-go holds the port');
    assert.equal(facts.sysctl.rpFilterInterface, 2);
    assert.equal(facts.peers.length, 3);
    assert.ok(facts.now! > 1_700_000_000);
    assert.ok(facts.peers.every((p) => p.latestHandshake !== undefined && facts.now! - p.latestHandshake < 180));
    assert.equal(planInstall(facts), undefined);
    assert.equal(planKeys(facts, 'wg0'), undefined);
  });

  it('refuses output that stops before the end of the script', () => {
    const cut = fixture('converged-wk-1.txt').split('@@meshctl begin iprules')[0]!;
    assert.throws(() => parseFactsProbe(cut, target), /incomplete/);
  });
});
