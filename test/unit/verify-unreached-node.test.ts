/**
 * Finding 5: verify with one node's sshd down (its WireGuard still up). Its peers' checks are judged with its key from
 * the local state (withStateKeys), else by the live peer that holds its AllowedIPs; its own row is "not measured",
 * not failed. Fixtures: the homelab scenario's real probe output (test/fixtures/probes/homelab.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateVerify, evaluateVerifyCompact, withStateKeys, type Check } from '../../src/checks/verify.js';
import { buildReport, renderReport } from '../../src/checks/report.js';
import { publicKeysFrom } from '../../src/checks/collect.js';
import { desiredMesh } from '../../src/topology/desired.js';
import { renderMatrix } from '../../src/checks/matrix-render.js';
import { factsFrom, healthyScenario, KEYS } from '../fixtures/probes/homelab.js';

/** The facts as collectVerify leaves them when wk-2 could not be reached: no checklist, its key a stand-in. */
function wk2Unreached() {
  const facts = factsFrom(healthyScenario());
  facts.checklists.delete('wk-2');
  facts.afterPing?.delete('wk-2');
  facts.unreachable.set('wk-2', 'connect ECONNREFUSED');
  const { keys, unknown } = publicKeysFrom(facts.inventory, facts.checklists);
  return { ...facts, publicKeys: keys, unknownKeys: unknown, desired: new Map(desiredMesh(facts.inventory, keys).map((d) => [d.node, d])) };
}

const about = (checks: Check[], id: string, peer: string) => checks.filter((c) => c.id === id && c.peer === peer && c.node !== peer);

test('the peers of an unreached node are judged with its key from the local state: handshake and peers pass', () => {
  const facts = withStateKeys(wk2Unreached(), () => new Map([['wk-2', KEYS['wk-2']!]]), desiredMesh);
  assert.deepEqual([...(facts.keysFromState ?? [])], ['wk-2']);
  const checks = evaluateVerify(facts);
  const handshakes = about(checks, 'handshake', 'wk-2');
  assert.equal(handshakes.length, 3);
  for (const c of handshakes) assert.equal(c.status, 'pass', `${c.node}: ${c.message}`);
  for (const c of about(checks, 'peers', 'wk-2')) assert.equal(c.status, 'pass', `${c.node}: ${c.message}`);
  assert.equal(checks.filter((c) => /not a peer with its key/.test(c.message)).length, 0);
});

test("without a state key, the handshake is judged by the live peer holding the node's AllowedIPs", () => {
  const facts = withStateKeys(wk2Unreached(), () => new Map(), desiredMesh);
  const handshakes = about(evaluateVerify(facts), 'handshake', 'wk-2');
  assert.equal(handshakes.length, 3);
  for (const c of handshakes) {
    assert.equal(c.status, 'pass', `${c.node}: ${c.message}`);
    assert.match(c.message, /its key is unknown: judged by the peer holding \d+\.\d+\.\d+\.\d+\/32/);
  }
});

test('a state key another node already has is not taken (a cloned key stays unknown)', () => {
  const facts = withStateKeys(wk2Unreached(), () => new Map([['wk-2', KEYS['ms-1']!]]), desiredMesh);
  assert.equal(facts.keysFromState, undefined);
});

test("the unreached node's own row is not measured, not failed; the connect check still fails (exit 3)", () => {
  const facts = withStateKeys(wk2Unreached(), () => new Map([['wk-2', KEYS['wk-2']!]]), desiredMesh);
  const checks = evaluateVerify(facts);
  const own = checks.filter((c) => c.node === 'wk-2');
  assert.deepEqual(own.find((c) => c.id === 'connect')?.status, 'fail');
  assert.equal(
    own.find((c) => c.id === 'connect')?.message,
    'cannot connect: connect ECONNREFUSED (its peers are judged with its public key from the local state)',
  );
  const pings = own.filter((c) => c.id === 'ping');
  assert.equal(pings.length, 3);
  for (const c of pings) {
    assert.equal(c.status, 'warn');
    assert.equal(c.message, 'not measured: wk-2 unreachable (connect ECONNREFUSED)');
  }
  assert.equal(own.filter((c) => c.status === 'fail').length, 1, own.map((c) => `${c.id} ${c.status} ${c.message}`).join('\n'));
  const text = renderMatrix(facts.matrix!, { color: false, unreached: facts.unreachable });
  const row = text.split('\n').find((l) => l.startsWith('wk-2'))!;
  assert.doesNotMatch(row, /FAIL|ok/);
  assert.equal(row.match(/n\/m/g)?.length, 3);
  assert.match(text, /^n\/m not measured: wk-2 unreachable \(connect ECONNREFUSED\)$/m);
});

test("a long reason (a changed host key's) is said once, by the connect check; the pairs and the footnote name it briefly (Q3 finding 9)", () => {
  const hostKey =
    'HOST KEY CHANGED: the host offers ED25519 key SHA256:1AUHtvPzFq0c2q9Jb3Xy7u8v9w0x1y2z3A4B5C6D7E8 but /var/lib/meshctl/labs/x/known_hosts:8 has a different ED25519 key for 192.168.15.4; this could be a man-in-the-middle attack, so meshctl refuses (--accept-new never accepts a changed key). If the node was reinstalled, check its new key out of band, then: ssh-keygen -R 192.168.15.4 -f /var/lib/meshctl/labs/x/known_hosts';
  const facts = withStateKeys(wk2Unreached(), () => new Map([['wk-2', KEYS['wk-2']!]]), desiredMesh);
  facts.unreachable.set('wk-2', hostKey);
  const verdicts = evaluateVerifyCompact(facts);
  const pings = verdicts.checks.filter((c) => c.node === 'wk-2' && c.id === 'ping');
  assert.equal(pings.length, 3);
  for (const c of pings) assert.equal(c.message, 'not measured: wk-2 unreachable (HOST KEY CHANGED: its connect check says why)');
  const text = renderReport(buildReport(facts.inventory, verdicts.checks, facts.matrix, facts.unreachable, 1, verdicts), { color: false });
  assert.equal(text.split('ssh-keygen -R').length - 1, 1, text);
  assert.match(text, /^n\/m not measured: wk-2 unreachable \(HOST KEY CHANGED: its connect check says why\)$/m);
});
