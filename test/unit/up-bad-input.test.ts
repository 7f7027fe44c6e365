/**
 * `meshctl up` on every broken inventory fixture: exit 2, the fixture's exact file:line:col lines, and not one
 * network attempt (the guard exits 99 on any TCP/UDP/DNS use), all under the real CLI entry.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { NETWORK_GUARD } from '../support/network-guard.js';

const BAD = 'test/fixtures/inventories/bad';
const fixtures = readdirSync(BAD)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => `${BAD}/${f}`);
const expectedLines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('# expect: '))
    .map((l) => `${path}:${l.slice('# expect: '.length)}`);

describe('meshctl up on broken inventories', () => {
  it(`has at least 30 broken fixtures (found ${fixtures.length})`, () => assert.ok(fixtures.length >= 30));

  const run = spawnSync(process.execPath, ['--import', NETWORK_GUARD, '--import', 'tsx', 'test/support/run-main-many.ts'], {
    // first: a valid inventory without --yes and without a terminal (stdin is this pipe); it also loads the up
    // command's modules, so that the fixtures' timings measure the checks and not module loading
    input: JSON.stringify([['up', 'inventories/homelab.yaml'], ...fixtures.map((f) => ['up', f, '--yes'])]),
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0' },
    timeout: 120_000,
  });
  const results =
    run.status === 0
      ? (JSON.parse(run.stdout) as { code: number; stdout: string; stderr: string; ms: number; cpuMs: number; maxRssBytes: number }[])
      : [];

  it('ran every fixture without any network attempt', () => {
    assert.equal(run.status, 0, `runner exit ${run.status}: ${run.stderr}`);
    assert.doesNotMatch(run.stderr, /NETWORK ATTEMPT/);
    assert.equal(results.length, fixtures.length + 1);
  });

  it('refuses to run gates without a terminal and without --yes: exit 2, before connecting to anything', () => {
    const result = results[0]!;
    assert.equal(result.code, 2);
    assert.match(result.stderr, /no terminal to confirm the gates: run with --yes/);
  });

  fixtures.forEach((path, i) => {
    it(`${path.slice(BAD.length + 1)}: exit 2 with its exact error lines`, () => {
      const result = results[i + 1]!;
      assert.equal(result.code, 2, result.stderr);
      const lines = result.stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.startsWith(path));
      assert.deepEqual(lines, expectedLines(path));
      // bounded: the budget for any bad input is 1 s and 200 MB (peak RSS of the whole process so far). The
      // second is CPU time, not wall time: at load 140-200 a check of a few ms waited longer than 1 s for the CPU
      assert.ok(result.cpuMs < 1000, `took ${result.cpuMs.toFixed(0)} ms of CPU (${result.ms.toFixed(0)} ms wall)`);
      assert.ok(result.maxRssBytes < 200 * 2 ** 20, `peak RSS ${(result.maxRssBytes / 2 ** 20).toFixed(0)} MB`);
    });
  });
});
