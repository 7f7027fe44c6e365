/**
 * A pair whose ping sent fewer echo requests than asked before its deadline, and got an answer to each, answered:
 * at 32 lab nodes on 2 cores `verify` failed three such cells ("2 sent, 2 received, 0% loss", ping exit 1) with the
 * message "answers only partly (0% loss)". The ping outputs are real captures (iputils 20221126, loopback):
 * `ping -q -c 5 -i 1 -w 2` (the deadline comes after 2 requests, exit 1) and `ping -q -c 3 -i 0.2 -w 2` (exit 0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildMatrix } from '../../src/checks/ping-matrix.js';
import { parsePingSummary, type NodePingResults } from '../../src/checks/probes.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';

const capture = (name: string) => {
  const text = readFileSync(`test/fixtures/probes/issue10/${name}`, 'utf8');
  const rc = Number(/rc=(\d+)\s*$/.exec(text)![1]);
  return parsePingSummary(text, rc);
};

const targets = [
  { node: 'a', ip: '172.27.15.1' },
  { node: 'b', ip: '172.27.15.2' },
];

function matrixWith(ping: ReturnType<typeof parsePingSummary>, count = 3) {
  const results = new Map<string, NodePingResults>([
    ['a', { ping: new Map([['172.27.15.2', ping]]), mtu: new Map(), after: new Map(), complete: true }],
  ]);
  return buildMatrix(targets, results, new Map(), count);
}

test('ping sent 2 of 5 before its deadline (exit 1) and both were answered: the cell answers', () => {
  const ping = capture('ping-deadline-before-count.txt');
  assert.equal(ping.rc, 1);
  assert.equal(ping.transmitted, 2);
  assert.equal(ping.received, 2);
  const cell = matrixWith(ping, 5).cells.a!.b!;
  assert.equal(cell.ok, true);
  assert.equal(cell.asked, 5);
});

test('every request answered with exit 0 answers; a lost request, an error or exit 2 does not', () => {
  assert.equal(matrixWith(capture('ping-all-answered.txt')).cells.a!.b!.ok, true);
  const full = capture('ping-all-answered.txt');
  assert.equal(matrixWith({ ...full, received: 2, loss: 33, rc: 1 }).cells.a!.b!.ok, false, 'one of 3 sent lost');
  assert.equal(matrixWith({ ...full, rc: 2 }).cells.a!.b!.ok, false, "ping's own error exit");
  assert.equal(matrixWith({ ...full, rc: 1, error: 'ping: sendmsg: Operation not permitted' }).cells.a!.b!.ok, false);
  assert.equal(matrixWith({ ...full, transmitted: 0, received: 0, loss: 100, rc: 1 }).cells.a!.b!.ok, false, 'nothing sent');
});

test('verify passes such a pair and says ping sent fewer than asked; a partly answered pair names its counts', () => {
  const s = healthyScenario();
  s.pings['ms-1']!['wk-1'] = { received: 2, transmitted: 2, rtt: 2.6 };
  s.pings['ms-1']!['wk-2'] = { received: 1, transmitted: 3, rtt: 0.6 };
  const checks = evaluateVerify(factsFrom(s)).filter((c) => c.id === 'ping' && c.node === 'ms-1');
  const short = checks.find((c) => c.peer === 'wk-1')!;
  assert.equal(short.status, 'pass', short.message);
  assert.match(short.message, /answered 2 of 3 asked/);
  const partly = checks.find((c) => c.peer === 'wk-2')!;
  assert.equal(partly.status, 'fail');
  assert.match(partly.message, /answers only partly \(1 of 3 echo requests answered\)/);
});
