/**
 * Relays (issue 11) in what people read: validate's pair list, verify's paths (JSON and text), the ping checks and
 * matrix, and --graph, on inventories/four-sites.yaml (b-1/c-1 relayed via p-1, b-2/c-1 via p-2).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { pairSummaries, renderSummary } from '../../src/commands/validate.js';
import { buildReport, pathReports, renderPaths } from '../../src/checks/report.js';
import { checkVerifyReport } from '../../src/checks/report-schema.js';
import type { Matrix, MatrixCell } from '../../src/checks/ping-matrix.js';
import { renderMatrix } from '../../src/checks/matrix-render.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { renderDot } from '../../src/graph/dot.js';
import { planColdStart } from '../../src/checks/cold-start.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NETWORK_GUARD } from '../support/network-guard.js';
import { relayLegs } from '../../src/debug/run.js';

const inventory = loadInventory('inventories/four-sites.yaml');
const NODES = inventory.nodes.map((n) => n.name);

/** Every pair answers; RTTs as measured in the lab: 0.5 ms a hop, about twice that through a relay. */
function matrix(rtt: (from: string, to: string) => number | undefined): Matrix {
  const cells: Matrix['cells'] = {};
  for (const from of NODES) {
    cells[from] = {};
    for (const to of NODES) {
      if (from === to) continue;
      const ms = rtt(from, to);
      const cell: MatrixCell =
        ms === undefined
          ? { ok: false, loss: 100, transmitted: 3, received: 0 }
          : { ok: true, loss: 0, transmitted: 3, received: 3, rttMs: ms };
      cells[from]![to] = cell;
    }
  }
  return { nodes: NODES, cells };
}
const relayedPair = (x: string, y: string) => [x, y].sort().join() === 'b-1,c-1' || [x, y].sort().join() === 'b-2,c-1';
const measured = matrix((x, y) => (relayedPair(x, y) ? 1.1 : 0.5));

describe('validate shows each pair path', () => {
  it('pairSummaries carries the path; the text says relayed via p-1 and why, and no pair "will not connect"', () => {
    const pair = pairSummaries(inventory).find((p) => p.a === 'b-1' && p.b === 'c-1')!;
    assert.equal(pair.connects, false);
    assert.deepEqual(pair.path, {
      kind: 'relayed',
      via: 'p-1',
      directExists: false,
      why: 'b-1 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-1',
    });
    const text = renderSummary(inventory);
    assert.match(text, /b-1 <-> c-1 {2}relayed via p-1: b-1 is behind NAT with no forward and c-1 is behind carrier NAT\n/);
    assert.match(text, /b-2 <-> c-1 {2}relayed via p-2: /);
    assert.match(text, /2 pair\(s\) relayed through p-1, p-2 \(forwarding on wg0 only; meshctl does not punch holes through NAT\)/);
    assert.doesNotMatch(text, /will not connect|cannot connect/);
  });
});

describe("verify's paths", () => {
  it('reports every pair with its kind, relay, why and RTT through the relay, and the legs; the JSON matches the spec', () => {
    const report = buildReport(inventory, [], measured, new Map(), 10, { allChecks: true });
    assert.deepEqual(checkVerifyReport(JSON.parse(JSON.stringify(report))), []);
    assert.equal(report.paths.length, 28);
    assert.deepEqual(report.pathCounts, { direct: 26, relayed: 2, none: 0 });
    // without --all-checks (version 3): only the pairs that are not direct, the same two, and the same counts
    const compact = buildReport(inventory, [], measured, new Map(), 10);
    assert.deepEqual(checkVerifyReport(JSON.parse(JSON.stringify(compact))), []);
    assert.deepEqual(
      compact.paths,
      report.paths.filter((p) => p.kind !== 'direct'),
    );
    assert.deepEqual(compact.pathCounts, report.pathCounts);
    assert.deepEqual(
      report.paths.filter((p) => p.kind !== 'direct'),
      [
        {
          a: 'b-1',
          b: 'c-1',
          kind: 'relayed',
          via: 'p-1',
          why: 'b-1 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-1',
          rttMs: 1.1,
          legsRttMs: [0.5, 0.5],
        },
        {
          a: 'b-2',
          b: 'c-1',
          kind: 'relayed',
          via: 'p-2',
          why: 'b-2 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-2',
          rttMs: 1.1,
          legsRttMs: [0.5, 0.5],
        },
      ],
    );
    assert.equal(report.paths.find((p) => p.a === 'a-1' && p.b === 'b-1')!.kind, 'direct');
  });

  it('a pair relayed by relay: always says its direct RTT is not measured', () => {
    const always = { ...inventory, nodes: inventory.nodes.map((n) => (n.name === 'a-1' ? { ...n, relay: 'always' as const } : n)) };
    const path = pathReports(always, measured).find((p) => p.a === 'a-1' && p.b === 'b-1')!;
    assert.equal(path.kind, 'relayed');
    assert.match(path.direct!, /direct path exists but is not used \(relay: always\); its RTT is not measured/);
    assert.match(
      renderPaths(pathReports(always, measured)),
      /a-1 <-> b-1 {2}relayed via p-\d: 0\.5 ms \(legs 0\.5 \+ 0\.5 ms\); relay: always on a-1/,
    );
    // and cold-start does not probe a direction that carries no session of its own
    const directions = planColdStart(always, new Set(NODES)).slots.flat();
    assert.ok(!directions.some((d) => [d.from, d.to].sort().join() === 'a-1,b-1'));
    assert.ok(directions.some((d) => d.from === 'b-1' && d.to === 'a-2'));
  });

  it('the text lists the pairs that are not direct, with counts; nothing when all are direct', () => {
    const text = renderPaths(pathReports(inventory, measured));
    assert.equal(
      text,
      [
        'Paths (26 direct, 2 relayed, 0 none)',
        '  b-1 <-> c-1  relayed via p-1: 1.1 ms (legs 0.5 + 0.5 ms); b-1 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-1',
        '  b-2 <-> c-1  relayed via p-2: 1.1 ms (legs 0.5 + 0.5 ms); b-2 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-2',
        '',
      ].join('\n'),
    );
    assert.match(renderPaths(pathReports(inventory, undefined), { measured: false }), /b-1 <-> c-1 {2}relayed via p-1: b-1 is behind/);
    assert.equal(renderPaths(pathReports(inventory, measured).filter((p) => p.kind === 'direct')), '');
  });

  it('a relayed ping check says it went through the relay, passing or failing', () => {
    const failing = matrix((x, y) => (relayedPair(x, y) && x === 'b-1' ? undefined : 0.5));
    const checks = evaluateVerify({ inventory, desired: new Map(), checklists: new Map(), unreachable: new Map(), matrix: failing });
    const ping = (node: string, peer: string) => checks.find((c) => c.id === 'ping' && c.node === node && c.peer === peer)!;
    assert.equal(ping('c-1', 'b-1').message, 'b-1 answers in 0.5 ms (relayed via p-1)');
    assert.equal(ping('b-1', 'c-1').status, 'fail');
    assert.equal(ping('b-1', 'c-1').message, 'c-1 does not answer (relayed via p-1)');
    assert.ok(
      ping('b-1', 'c-1').evidence.includes('path: b-1 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-1'),
    );
    assert.equal(ping('a-1', 'b-1').message, 'b-1 answers in 0.5 ms');
  });

  it('the matrix marks relayed cells and names the relays', () => {
    const relayed = new Map([
      ['b-1\u0000c-1', 'p-1'],
      ['b-2\u0000c-1', 'p-2'],
    ]);
    const text = renderMatrix(measured, { color: false, relayed });
    const row = text.split('\n').find((l) => l.startsWith('c-1 '))!;
    assert.match(row, /ok 0\.50ms\s+ok 0\.50ms\s+ok 0\.50ms\s+ok 1\.10ms\*\s+ok 1\.10ms\*/);
    assert.match(text, /\* relayed \(via p-1, p-2\): the ping goes through the relay\n$/);
    assert.doesNotMatch(renderMatrix(measured, { color: false }), /\*/);
  });

  it('--graph draws a relayed pair dotted, labelled via the relay, and the relay node says what it carries', () => {
    const checks = evaluateVerify({ inventory, desired: new Map(), checklists: new Map(), unreachable: new Map(), matrix: measured });
    const report = buildReport(inventory, checks, measured, new Map(), 10);
    const dot = renderDot(inventory, report);
    assert.match(dot, /"b-1" -- "c-1" \[[^\]]*style=dotted, label="via p-1\\n/);
    assert.match(dot, /"a-1" -- "b-1" \[[^\]]*style=solid/);
    assert.match(dot, /"p-1" \[label="p-1\\n198\.51\.100\.11\\noverlay 172\.27\.40\.41\\nrelay for 1 pair(\\n|")/);
  });
});

describe('relay: never is refused before anything changes', () => {
  it('validate, plan and up exit 2 naming every pair that needs a relay, and contact nothing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-relay-'));
    try {
      const file = join(dir, 'never.yaml');
      const text = readFileSync('inventories/four-sites.yaml', 'utf8').replace(
        '  persistentKeepalive: 25\n',
        '  persistentKeepalive: 25\n  relay: never\n',
      );
      writeFileSync(file, text);
      for (const command of [['validate'], ['plan'], ['up', '--yes']]) {
        // the guard makes any socket or DNS lookup exit 99: refusing must come before any connection
        const result = spawnSync(
          process.execPath,
          ['--import', NETWORK_GUARD, '--import', 'tsx', 'src/cli.ts', command[0]!, file, ...command.slice(1)],
          {
            encoding: 'utf8',
            env: { ...process.env, FORCE_COLOR: '0', HOME: dir },
            timeout: 30_000,
          },
        );
        assert.doesNotMatch(result.stderr, /NETWORK ATTEMPT/);
        assert.equal(result.status, 2, `${command[0]}: ${result.stderr}`);
        assert.match(result.stderr, /has 2 problems/);
        assert.match(
          result.stderr,
          /:\d+:\d+: mesh\.relay: b-1 <-> c-1 has no direct path and relay: never forbids a relay: b-1 is behind NAT with no forward and c-1 is behind carrier NAT/,
        );
        assert.match(result.stderr, /mesh\.relay: b-2 <-> c-1 has no direct path and relay: never forbids a relay/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('debug on a relayed pair', () => {
  it('examines the two legs through the relay instead (the pair has no tunnel of its own), each once', () => {
    assert.deepEqual(
      relayLegs(inventory, [
        ['b-1', 'c-1'],
        ['b-1', 'p-1'],
        ['a-1', 'b-1'],
        ['b-2', 'c-1'],
      ]),
      [
        ['b-1', 'p-1'],
        ['p-1', 'c-1'],
        ['a-1', 'b-1'],
        ['b-2', 'p-2'],
        ['p-2', 'c-1'],
      ],
    );
  });
});
