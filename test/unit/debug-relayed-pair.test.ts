/**
 * Q4 item 7c: `debug --pair b-1,c-1` on a relayed pair examined its legs (b-1 -> p-1, p-1 -> c-1) and never said so:
 * the word "relay" did not appear, and an answer headed "b-1 -> p-1" had no link to the pair asked about. The report
 * now names the relay and the plan's reason first, and heads each leg's cause with the pair it stands for.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadInventory } from '../../src/inventory/load.js';
import { type DebugReport, relayDiagnoses, relayedPairsOf, renderDebugReport } from '../../src/debug/run.js';
import { planPaths } from '../../src/topology/paths.js';
import type { Check } from '../../src/checks/verify.js';

const plain = { bold: (s: string) => s, red: (s: string) => s, green: (s: string) => s, dim: (s: string) => s };

test('a relayed pair: the report says via which relay and why, and each leg names its pair', () => {
  const inventory = loadInventory('inventories/four-sites.yaml');
  const relayed = relayedPairsOf(
    inventory,
    [
      ['b-1', 'c-1'],
      ['a-1', 'p-2'],
    ],
    planPaths(inventory),
  );
  assert.deepEqual(
    relayed.map((r) => ({ pair: r.pair, via: r.via, legs: r.legs })),
    [
      {
        pair: ['b-1', 'c-1'],
        via: 'p-1',
        legs: [
          ['b-1', 'p-1'],
          ['p-1', 'c-1'],
        ],
      },
    ],
    'a direct pair (a-1 <-> p-2) is not listed',
  );
  const diagnosis = (sender: string, receiver: string) => ({
    sender,
    receiver,
    cause: 'service-down',
    node: 'p-1',
    summary: 'wg-quick@wg0 is inactive on p-1',
    explanation: 'x',
    fix: 'y',
    evidence: [],
  });
  const text = renderDebugReport(
    { diagnoses: [diagnosis('b-1', 'p-1'), diagnosis('p-1', 'c-1')], captures: [], relayed } as unknown as DebugReport,
    plain,
  );
  assert.match(
    text,
    /^b-1 <-> c-1 is relayed via p-1 \(b-1 is behind NAT with no forward and c-1 is behind carrier NAT\): examined as its legs b-1 <-> p-1 and p-1 <-> c-1$/m,
  );
  assert.match(text, /^b-1 -> p-1 \(leg of b-1 <-> c-1 via p-1\): SERVICE-DOWN \(at p-1\)$/m);
  assert.match(text, /^p-1 -> c-1 \(leg of b-1 <-> c-1 via p-1\): SERVICE-DOWN \(at p-1\)$/m);
});

test('a relayed pair whose relay does not forward is a diagnosis at the relay, though its legs are healthy (Q7)', () => {
  const inventory = loadInventory('inventories/four-sites.yaml');
  const relayed = relayedPairsOf(inventory, [['b-1', 'c-1']], planPaths(inventory));
  const off: Check = {
    node: 'p-1',
    id: 'relay',
    status: 'fail',
    message: 'relays b-1<->c-1, but forwarding is off on wg0: the relayed pairs cannot pass',
    evidence: ['net.ipv4.conf.wg0.forwarding = 0'],
  };
  const diagnoses = relayDiagnoses(relayed, [off, { ...off, node: 'p-2' }, { ...off, status: 'pass' }]);
  assert.deepEqual(
    diagnoses.map((d) => [d.sender, d.receiver, d.cause, d.node]),
    [['b-1', 'c-1', 'relay-not-forwarding', 'p-1']],
  );
  assert.deepEqual(diagnoses[0]!.evidence, ['net.ipv4.conf.wg0.forwarding = 0']);
  const text = renderDebugReport({ diagnoses, captures: [], relayed } as unknown as DebugReport, plain);
  assert.match(text, /^b-1 -> c-1: RELAY-NOT-FORWARDING \(at p-1\)$/m);
  assert.doesNotMatch(text, /No failing pair/);
});
