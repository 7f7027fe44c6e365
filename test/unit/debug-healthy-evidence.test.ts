/**
 * Item 4 of this session (finding 19's flaky lab test): `debug --pair` prints the cold-start evidence of a pair it
 * calls HEALTHY, each direction (bursts sent, the receiver's InDatagrams/NoPorts growth, how many senders its window
 * counted) and the probe's round trips, so a HEALTHY where COLD-START-BLOCKED was expected says why. The judge
 * (src/checks/cold-start.ts) is unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyPair } from '../../src/debug/classify.js';
import { pairEvidence, renderDebugReport, type DebugReport } from '../../src/debug/run.js';
import type { Collected } from '../../src/checks/collect.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { noPackets } from '../../src/debug/capture.js';

const plain = { bold: (s: string) => s, red: (s: string) => s, green: (s: string) => s, dim: (s: string) => s };

function healthyWithColdStart(): Collected {
  const collected = factsFrom(healthyScenario()) as Collected;
  collected.coldStart = {
    directions: [
      {
        from: 'ctb-edge-1',
        to: 'ms-1',
        endpoint: { host: '203.0.113.10', port: 51821 },
        sent: 16,
        delta: { inDatagrams: 32, noPorts: 0 },
        together: 2,
      },
      {
        from: 'ms-1',
        to: 'ctb-edge-1',
        endpoint: { host: '198.51.100.25', port: 51820 },
        sent: 16,
        delta: { inDatagrams: 16, noPorts: 0 },
      },
    ],
    roundTrips: 1,
    ms: 412,
  };
  return collected;
}

test('a HEALTHY pair shows each direction of its cold-start probe, and the text prints it', () => {
  const found = classifyPair(pairEvidence(healthyWithColdStart(), 'ms-1', 'ctb-edge-1'));
  assert.deepEqual(
    found.map((d) => d.cause),
    ['healthy'],
  );
  const evidence = found[0]!.evidence;
  for (const line of [
    'cold start ctb-edge-1 -> ms-1: pass (ctb-edge-1 can start a session with ms-1 from cold (a new flow to 203.0.113.10:51821 arrives))',
    '  ctb-edge-1 sent 16 datagrams from a fresh source port to 203.0.113.10:51821',
    '  ms-1 /proc/net/snmp Udp: InDatagrams +32, NoPorts +0',
    "  ms-1's counters counted the bursts of 2 senders at once: ctb-edge-1's arrivals are at most that growth",
    'cold start ms-1 -> ctb-edge-1: pass (ms-1 can start a session with ctb-edge-1 from cold (a new flow to 198.51.100.25:51820 arrives))',
    '  ctb-edge-1 /proc/net/snmp Udp: InDatagrams +16, NoPorts +0',
    'cold-start probe: 1 round trip, 412 ms',
  ])
    assert.ok(evidence.includes(line), `missing: ${line}\n${evidence.join('\n')}`);
  const report = { diagnoses: found, captures: [] } as unknown as DebugReport;
  const text = renderDebugReport(report, plain);
  assert.match(text, /ms-1 -> ctb-edge-1: HEALTHY/);
  assert.match(text, /^ {4}\| {3}ms-1 \/proc\/net\/snmp Udp: InDatagrams \+32, NoPorts \+0$/m);
});

test('a HEALTHY pair without a cold-start measurement says it was not probed', () => {
  const found = classifyPair(pairEvidence(factsFrom(healthyScenario()) as Collected, 'wk-1', 'ms-1'));
  assert.equal(found[0]!.cause, 'healthy');
  assert.ok(
    found[0]!.evidence.includes('cold start wk-1 <-> ms-1: not probed (no designed direction measured)'),
    found[0]!.evidence.join('\n'),
  );
});

test("finding 10: the sender's own capture line does not read as if it sent nothing", () => {
  const diagnosis = classifyPair(pairEvidence(healthyWithColdStart(), 'ctb-edge-1', 'ms-1'))[0]!;
  const counts = {
    'ctb-edge-1': { ...noPackets(), total: 55, responsesFromReceiver: 2, icmpRepliesIn: 3 },
    'ms-1': {
      ...noPackets(),
      total: 40,
      udpFromSender: 7,
      initiationsFromSender: 2,
      markers: 3,
      responsesToSender: 2,
      icmpRequestsIn: 3,
      icmpRepliesOut: 3,
    },
  };
  const capture = {
    sender: 'ctb-edge-1',
    receiver: 'ms-1',
    marker: 'x',
    markerSent: true,
    counts,
    packets: {},
    files: [],
    errors: {},
    leftovers: {},
  };
  const text = renderDebugReport({ diagnoses: [diagnosis], captures: [capture] } as unknown as DebugReport, plain);
  assert.doesNotMatch(text, /captured on ctb-edge-1: 55 packets; from ctb-edge-1: 0 UDP/);
  assert.match(
    text,
    /captured on ctb-edge-1 \(the sender: its own datagrams are counted where they arrive\): 55 packets; from ms-1's side: 2 handshake responses; ICMP on wg0 3 replies in/,
  );
  assert.match(text, /captured on ms-1: 40 packets; from ctb-edge-1: 7 UDP \(2 handshake initiations, 3 markers\)/);
});

test('with no failing pair the report calls no fix a suggestion (Q4-7)', () => {
  const text = renderDebugReport({ diagnoses: [], captures: [] } as unknown as DebugReport, plain);
  assert.match(text, /^No failing pair: nothing to debug\.$/m);
  assert.doesNotMatch(text, /the fixes above/);
  assert.match(text, /^debug changed nothing on the nodes\.$/m);
});
