/**
 * debug on a pair whose live endpoints were changed by hand (/work/wt/Q3-findings.md, "Broken pair 2": on ms-1
 * `wg set wg0 peer <ctb-edge-1> endpoint 198.51.100.26:51820`, on ctb-edge-1 `wg set wg0 peer <ms-1> endpoint
 * 203.0.113.10:51829`). Before: HANDSHAKE-OK-PING-FAILS from a handshake made before the break (11 s, then 142 s
 * old), also when its own capture showed no handshake, with the fix to run the same --tcpdump command again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyPair, HANDSHAKE_WORKS_NOW_S, type Diagnosis, type PairEvidence } from '../../src/debug/classify.js';
import { pairEvidence } from '../../src/debug/run.js';
import type { Collected } from '../../src/checks/collect.js';
import { noPackets } from '../../src/debug/capture.js';
import { factsFrom, healthyScenario, KEYS, NOW, pairDown, type Scenario } from '../fixtures/probes/homelab.js';

/** The healthy homelab with ms-1 <-> ctb-edge-1 not pinging and both handshakes `age` s old (at the dump after pings). */
function broken(age: number, endpoints: boolean): Scenario {
  const s = healthyScenario();
  pairDown(s, 'ms-1', 'ctb-edge-1');
  for (const [self, other, endpoint] of [
    ['ms-1', 'ctb-edge-1', '198.51.100.26:51820'],
    ['ctb-edge-1', 'ms-1', '203.0.113.10:51829'],
  ] as const) {
    const peer = s.nodes[self]!.peers.find((p) => p.publicKey === KEYS[other])!;
    // the dump after the pings is read at NOW + 8 (factsFrom)
    peer.latestHandshake = NOW + 8 - age;
    if (endpoints) peer.endpoint = endpoint;
  }
  return s;
}

const evidence = (s: Scenario): PairEvidence => pairEvidence(factsFrom(s) as Collected, 'ms-1', 'ctb-edge-1');

/** ctb-edge-1's capture while ms-1 pinged it: ms-1's markers arrived (to the designed address), nothing else. */
function capturedNothing(e: PairEvidence): PairEvidence {
  return {
    ...e,
    capture: {
      markerSent: true,
      counts: { 'ms-1': { ...noPackets(), total: 12 }, 'ctb-edge-1': { ...noPackets(), udpFromSender: 3, markers: 3, total: 3 } },
    },
  };
}

const causes = (found: Diagnosis[]) => found.map((d) => `${d.cause}${d.node ? `@${d.node}` : ''}`);

test('a wrong live endpoint is the cause, even with a handshake from 11 s before the break; the fix is meshctl up', () => {
  const found = classifyPair(evidence(broken(11, true)));
  // ctb-edge-1's endpoint for ms-1 is where ms-1's NAT could have mapped it, with a live session: not named
  assert.deepEqual(causes(found), ['wrong-endpoint@ms-1']);
  const d = found[0]!;
  assert.equal(d.summary, 'ms-1 sends to ctb-edge-1 at 198.51.100.26:51820, not at the designed 198.51.100.25:51820');
  assert.match(d.explanation, /ctb-edge-1 is public: no NAT changes its address/);
  assert.match(d.fix, /^Run meshctl up: it sets ctb-edge-1's endpoint on ms-1 back to 198\.51\.100\.25:51820/);
  assert.ok(d.fix.includes(`wg set wg0 peer ${KEYS['ctb-edge-1']} endpoint 198.51.100.25:51820`), d.fix);
  assert.ok(
    d.evidence.includes('wg on ms-1: peer ctb-edge-1 endpoint 198.51.100.26:51820, designed 198.51.100.25:51820'),
    d.evidence.join('\n'),
  );
});

test('142 s later, with a capture that saw no handshake: still the endpoint, and the old handshake is not taken as working', () => {
  const e = capturedNothing(evidence(broken(142, true)));
  const found = classifyPair(e);
  assert.deepEqual(causes(found), ['wrong-endpoint@ms-1']);
  const hs = found[0]!.evidence.find((l) => l.startsWith('latest handshake:'))!;
  assert.match(hs, new RegExp(`142s ago \\(older than ${HANDSHAKE_WORKS_NOW_S} s: no evidence of a session now\\)`));
  assert.match(hs, /the capture on ctb-edge-1 saw no WireGuard datagram from ms-1/);
  assert.ok(
    found.every((d) => !d.fix.includes('--tcpdump')),
    'never the command just run',
  );
});

test('a handshake older than REKEY_AFTER_TIME + 15 s after the pings is no evidence: no handshake, not "ping fails"', () => {
  assert.equal(HANDSHAKE_WORKS_NOW_S, 135);
  assert.deepEqual(causes(classifyPair(evidence(broken(142, false)))), ['no-handshake']);
  // a younger one still is: the tunnel shook hands, the pings die inside it
  assert.deepEqual(causes(classifyPair(evidence(broken(100, false)))), ['handshake-ok-ping-fails']);
});

test('the capture wins over a recent handshake: it saw the tunnel carry nothing, so no "handshake works"', () => {
  const found = classifyPair(capturedNothing(evidence(broken(11, false))));
  assert.ok(!causes(found).includes('handshake-ok-ping-fails'), causes(found).join(', '));
  assert.ok(
    found.every((d) => !/debug --pair ms-1,ctb-edge-1 --tcpdump/.test(d.fix)),
    found.map((d) => d.fix).join('\n'),
  );
});

test('after a --tcpdump run, ping-fails does not suggest running it again', () => {
  const e = evidence(broken(11, false));
  // the capture saw the pings arrive in the tunnel and get answered: the tunnel works, the pings still fail
  e.capture = {
    markerSent: true,
    counts: {
      'ms-1': { ...noPackets(), icmpRepliesIn: 0, total: 9 },
      'ctb-edge-1': { ...noPackets(), udpFromSender: 9, markers: 3, icmpRequestsIn: 0, total: 9 },
    },
  };
  const found = classifyPair(e);
  assert.deepEqual(causes(found), ['handshake-ok-ping-fails']);
  assert.doesNotMatch(found[0]!.fix, /--tcpdump/);
  // without a capture it still suggests one
  assert.match(classifyPair(evidence(broken(11, false)))[0]!.fix, /^Run: meshctl debug --pair ms-1,ctb-edge-1 --tcpdump/);
});
