import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matrixPasses, pingMatrix, pingParamsFor } from '../../src/checks/ping-matrix.js';
import { renderMatrix } from '../../src/checks/matrix-render.js';
import { pingScript } from '../../src/checks/probes.js';
import type { Connection } from '../../src/transport/types.js';
import { factsFrom, healthyScenario, pingStdout } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

test('renderMatrix: N x N, rows ping columns, diagonal dash, no colour codes without colour', () => {
  const text = renderMatrix(factsFrom(SCENARIOS['forward-misdirected']!()).matrix!, { color: false });
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 5);
  assert.match(lines[0]!, /^from \\ to\s+ms-1\s+wk-1\s+wk-2\s+ctb-edge-1$/);
  assert.match(lines[1]!, /^ms-1\s+-\s+ok 0\.60ms\s+ok 0\.60ms\s+FAIL 100%$/);
  assert.match(lines[4]!, /^ctb-edge-1\s+FAIL 100%\s+ok/);
  assert.doesNotMatch(text, /\u001b\[/);
});

test('renderMatrix with colour: green ok, red FAIL, orange MTU', () => {
  const text = renderMatrix(factsFrom(SCENARIOS.mtu!()).matrix!, { color: true });
  assert.match(text, /\u001b\[32mok/);
  assert.match(text, /MTU 1232/);
  const failing = renderMatrix(factsFrom(SCENARIOS['service-down']!()).matrix!, { color: true });
  assert.match(failing, /\u001b\[31m.*FAIL/);
});

test('matrixPasses', () => {
  assert.equal(matrixPasses(factsFrom(healthyScenario()).matrix!), true);
  assert.equal(matrixPasses(factsFrom(SCENARIOS.mtu!()).matrix!), false);
  assert.equal(matrixPasses(factsFrom(SCENARIOS.mtu!()).matrix!, { withMtu: false }), true);
});

test('pingMatrix runs one script per node at once and fills missing nodes with failures', async () => {
  const targets = [
    { node: 'a', ip: '172.27.15.1' },
    { node: 'b', ip: '172.27.15.2' },
    { node: 'c', ip: '172.27.15.3' },
  ];
  const scripts: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const fake = (node: string): Connection => ({
    node,
    target: node,
    stats: { commands: 0, remoteMs: 0, connectMs: 0 },
    close: async () => {},
    run: async (script) => {
      scripts.push(script);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      const others = targets.filter((t) => t.node !== node);
      return {
        code: 0,
        stdout: pingStdout(Object.fromEntries(others.map((t) => [t.ip, { received: 3, rtt: 0.5 }]))),
        stderr: '',
        durationMs: 20,
      };
    },
  });
  const m = await pingMatrix(
    new Map([
      ['a', fake('a')],
      ['b', fake('b')],
    ]),
    targets,
  );
  assert.equal(scripts.length, 2);
  assert.equal(maxInFlight, 2);
  assert.equal(m.cells.a!.b!.ok, true);
  assert.equal(m.cells.a!.b!.rttMs, 0.5);
  assert.equal(m.cells.c!.a!.ok, false);
  assert.match(m.cells.c!.a!.error!, /not connected/);
  assert.equal(m.cells.a!.c!.ok, true); // c answered a's pings; only c's own row is unknown
  // the deadline covers REKEY_TIMEOUT (5 s): never below 6 s by default
  assert.match(scripts[0]!, /-w 7 /);
  // the peers are the script's positional parameters, each written once
  assert.match(pingScript(pingParamsFor('a', targets)), /^set -- (.* )?172\.27\.15\.2( |$)/m);
  assert.match(pingScript(pingParamsFor('a', targets)), /ping -n -q -c 3 -i 0\.05 -w 7 "\$ip"/);
});
