/**
 * Q4 item 3, debug's side: site home's public address moved and the inventory still says 203.0.113.10. debug --pair
 * blamed a missing port-forward (COLD-START-BLOCKED at router:home: "forward UDP 203.0.113.10:51821 ..."), the wrong
 * cause and the wrong fix, though every live endpoint the edge holds for the home's nodes read the new address.
 * Now the whole mesh's live endpoints are read (src/debug/run.ts movedOf) and the moved address is the cause.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyPair } from '../../src/debug/classify.js';
import { pairEvidence } from '../../src/debug/run.js';
import type { Collected } from '../../src/checks/collect.js';
import { factsFrom, healthyScenario, homelab, KEYS, type Scenario } from '../fixtures/probes/homelab.js';

/** The healthy homelab where every node outside site home sees the home's nodes at `address` (a fresh handshake). */
function seenAt(address: string, only?: string): Scenario {
  const s = healthyScenario();
  const { inventory } = homelab();
  const home = inventory.nodes.filter((n) => n.site === 'home');
  for (const n of inventory.nodes.filter((x) => x.site !== 'home'))
    for (const peer of s.nodes[n.name]!.peers) {
      const node = home.find((h) => KEYS[h.name] === peer.publicKey);
      if (node && (only === undefined || node.name === only)) peer.endpoint = `${address}:${40000 + Number(node.address.split('.')[3])}`;
    }
  return s;
}

/** ctb-edge-1 -> ms-1 cannot start a session from cold at the inventory's forward (nothing arrives). */
function blocked(s: Scenario): Collected {
  const collected = factsFrom(s) as Collected;
  collected.coldStart = {
    directions: [
      { from: 'ctb-edge-1', to: 'ms-1', endpoint: { host: '203.0.113.10', port: 51821 }, sent: 16, delta: { inDatagrams: 0, noPorts: 0 } },
    ],
    roundTrips: 1,
    ms: 10,
  };
  return collected;
}

test('Q4 item 3: a forward dialled at the old public address is named as the moved address, not a missing forward', () => {
  const found = classifyPair(pairEvidence(blocked(seenAt('203.0.113.99')), 'ctb-edge-1', 'ms-1'));
  assert.deepEqual(
    found.map((d) => d.cause),
    ['public-address-moved'],
  );
  const d = found[0]!;
  assert.equal(
    d.summary,
    "site home's public address moved to 203.0.113.99, but ctb-edge-1 dials ms-1 at 203.0.113.10:51821 (nat.publicIp 203.0.113.10)",
  );
  assert.match(
    d.explanation,
    /the inventory says nat\.publicIp 203\.0\.113\.10, ctb-edge-1 sees ms-1, wk-1 and wk-2 \(handshakes \d+-\d+ s old\) at 203\.0\.113\.99/,
  );
  assert.match(d.fix, /^If site home's public address changed, set sites\.home\.nat\.publicIp: 203\.0\.113\.99 /);
  assert.doesNotMatch(d.fix, /forward UDP/);
});

test('sightings at the inventory address: still the forward (cold-start-blocked); one node seen elsewhere: mentioned, not blamed', () => {
  const home = classifyPair(pairEvidence(blocked(healthyScenario()), 'ctb-edge-1', 'ms-1'));
  assert.deepEqual(
    home.map((d) => d.cause),
    ['cold-start-blocked'],
  );
  assert.doesNotMatch(home[0]!.explanation, /live endpoints/);
  const one = classifyPair(pairEvidence(blocked(seenAt('198.18.7.7', 'wk-1')), 'ctb-edge-1', 'ms-1'));
  assert.deepEqual(
    one.map((d) => d.cause),
    ['cold-start-blocked'],
  );
  assert.match(
    one[0]!.explanation,
    /ctb-edge-1 sees wk-1 \(handshake \d+ s old\) at 198\.18\.7\.7, while ctb-edge-1 sees ms-1 and wk-2 \(handshakes \d+-\d+ s old\) at 203\.0\.113\.10 \(the inventory's\)/,
  );
});

test("verify's cold-start verdict names the moved address when it is given the sightings (judgeDirection's moved)", async () => {
  const { judgeDirection } = await import('../../src/checks/cold-start.js');
  const { movedFromChecklists } = await import('../../src/topology/moved-address.js');
  const collected = blocked(seenAt('203.0.113.99'));
  const [moved] = movedFromChecklists(collected.inventory, collected.checklists);
  const direction = collected.coldStart!.directions[0]!;
  const judged = judgeDirection(direction, moved);
  assert.equal(judged.status, 'fail');
  assert.match(judged.message, /a new flow to 203\.0\.113\.10:51821 does not arrive: site home's public address seems to have moved/);
  assert.doesNotMatch(judged.message, /firewall check/);
  // without sightings (or at the inventory's address): the firewall, as before
  assert.match(judgeDirection(direction).message, /see ms-1's firewall check$/);
  assert.deepEqual(movedFromChecklists(collected.inventory, blocked(healthyScenario()).checklists), []);
});
