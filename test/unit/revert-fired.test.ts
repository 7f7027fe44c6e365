/**
 * A new user's finding 7: a revert that fired by itself (its run interrupted or killed before it confirmed) left
 * /run/meshctl/revert-RUN/ with its `reverted` marker for good, and no run said the node had rolled itself back. Now
 * `up`'s facts probe lists such directories in a section of its own (no round trip more), a changing run removes
 * them there (under its run lock), and the report warns once per node. The node side runs under a real `sh` with
 * /run/meshctl moved into a temporary directory (nothing of the host is touched); `up` over scripted fake connections
 * (the facts: the bare-node capture of a lab node). The lab proof: test/lab/interrupt.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FIRED_SECTION, firedRollbacksScript, parseFiredRollbacks } from '../../src/engine/revert.js';
import { runUp, type Connector, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { FakeConnection } from '../support/fake-connection.js';

const FIRED = '0123456789abcdef';
const PENDING = 'fedcba9876543210';
const FAILED = 'aaaabbbbccccdddd';
/** 2026-12-01 17:02:09 UTC */
const AT = 1796058129;
const root = mkdtempSync(join(tmpdir(), 'meshctl-revert-fired-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** /run/meshctl under `caseDir` with a fired revert, a pending one and one that started and failed. */
function node(caseDir: string): string {
  const run = join(caseDir, 'run');
  const dir = (id: string) => join(run, `revert-${id}`);
  for (const id of [FIRED, PENDING, FAILED]) {
    mkdirSync(dir(id), { recursive: true });
    writeFileSync(join(dir(id), 'state'), 'active=active\n');
    writeFileSync(join(dir(id), 'revert.sh'), 'true\n');
  }
  writeFileSync(join(dir(FIRED), 'reverted'), `${AT}\n`);
  writeFileSync(join(dir(FIRED), 'log'), 'reverted at Tue Dec  1 17:02:09 UTC 2026\n');
  writeFileSync(join(dir(FAILED), 'log'), 'wg-quick: failed\n');
  return run;
}

function sh(caseDir: string, script: string): string {
  const result = spawnSync('sh', ['-c', script.replaceAll('/run/meshctl/', `${caseDir}/run/`)], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

describe('a revert that fired by itself', () => {
  it('the facts section lists it with its time and removes it; a pending revert and a failed one are kept', () => {
    const caseDir = join(root, 'remove');
    const run = node(caseDir);
    const out = sh(caseDir, firedRollbacksScript(true));
    assert.deepEqual(parseFiredRollbacks(out), [{ runId: FIRED, at: AT }]);
    assert.equal(existsSync(join(run, `revert-${FIRED}`)), false, 'the fired one is removed');
    assert.equal(existsSync(join(run, `revert-${PENDING}`, 'state')), true, 'a pending one is never touched');
    assert.equal(readFileSync(join(run, `revert-${FAILED}`, 'log'), 'utf8'), 'wg-quick: failed\n', 'a failed one keeps its log');
    // once: the next probe finds nothing
    assert.equal(sh(caseDir, firedRollbacksScript(true)), '');
  });

  it('with the run lock token: removed only where the lock file holds this run (an up refused by the lock leaves it)', () => {
    const OURS = '1111222233334444';
    const line = (run: string) => `holder=root@ops pid=4242 started=${AT} run=${run} boot=00ff pstart=7\n`;
    const cases: [string, string | undefined, boolean][] = [
      ['held-by-another', line('5555666677778888'), false],
      ['no-lock', undefined, false],
      // a token that merely starts like ours is another run's
      ['longer-token', line(`${OURS}ff`), false],
      ['ours', line(OURS), true],
      ['ours-last-field', `holder=root@ops pid=4242 started=${AT} run=${OURS}\n`, true],
    ];
    for (const [name, lock, removed] of cases) {
      const caseDir = join(root, `lock-${name}`);
      const run = node(caseDir);
      if (lock !== undefined) writeFileSync(join(run, 'lock'), lock);
      const script = firedRollbacksScript(true, OURS).replaceAll('/run/meshctl/lock', `${caseDir}/run/lock`);
      assert.deepEqual(parseFiredRollbacks(sh(caseDir, script)), [{ runId: FIRED, at: AT }], `${name}: listed either way`);
      assert.equal(!existsSync(join(run, `revert-${FIRED}`)), removed, `${name}: removed only under our lock`);
      assert.equal(existsSync(join(run, `revert-${PENDING}`, 'state')), true);
      if (lock !== undefined) assert.equal(readFileSync(join(run, 'lock'), 'utf8'), lock, 'the lock itself is only read');
    }
  });

  it('the lock check costs no exec: the section is shell builtins when nothing fired, and reads the lock with read', () => {
    const script = firedRollbacksScript(true, '1111222233334444');
    assert.doesNotMatch(script, /\b(cat|grep|sed|awk)\b/);
    assert.match(script, /read -r mc_l/);
    assert.throws(() => firedRollbacksScript(true, 'x; rm -rf /'), /bad lock token/);
  });

  it('without `remove` (a dry run) it is only listed', () => {
    const caseDir = join(root, 'list');
    const run = node(caseDir);
    assert.deepEqual(parseFiredRollbacks(sh(caseDir, firedRollbacksScript(false))), [{ runId: FIRED, at: AT }]);
    assert.equal(existsSync(join(run, `revert-${FIRED}`, 'reverted')), true);
  });

  it('nothing to find: no line, and an empty /run/meshctl is fine', () => {
    assert.equal(sh(join(root, 'empty'), firedRollbacksScript(true)), '');
  });

  it('reads only well-formed fired lines', () => {
    assert.deepEqual(parseFiredRollbacks(`fired=${FIRED} ${AT}\nfired=${FIRED}\nfired=../x 1\npending=${PENDING} 5\nnoise`), [
      { runId: FIRED, at: AT },
      { runId: FIRED },
    ]);
  });
});

describe('up: a revert that fired by itself since the last run', () => {
  const inventory = loadInventory('inventories/homelab.yaml');
  const bareFacts = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8');
  const section = (name: string, body: string) => `@@meshctl begin ${name}\n${body}\n@@meshctl end ${name} rc=0\n`;

  async function up(dryRun: boolean) {
    const probes: string[] = [];
    const connections = new Map(
      inventory.nodes.map((n) => [
        n.name,
        new FakeConnection(n.name, [
          {
            match: /@@meshctl begin uid/,
            reply: (script) => {
              probes.push(script);
              const fired = script.includes(`begin ${FIRED_SECTION}`)
                ? section(FIRED_SECTION, n.name === 'wk-1' ? `fired=${FIRED} ${AT}` : '')
                : '';
              return { stdout: `${script.includes('take_lock') ? section('lock', 'acquired') : ''}${fired}${bareFacts}` };
            },
          },
          { match: /take_lock/, reply: { stdout: 'acquired\n' } },
          { match: /rm -f/, reply: {} },
        ]),
      ]),
    );
    const connector: Connector = {
      connectAll: async () => ({ connections, failures: new Map(), close: async () => undefined }),
      connectOne: async () => {
        throw new Error('no new login expected');
      },
    };
    const view: UpView = { onEvent: () => undefined, gate: async () => true };
    const report = await runUp(inventory, connector, view, {
      signal: new AbortController().signal,
      playbookPath: 'test/fixtures/up/facts-only.yaml',
      ...(dryRun ? { dryRun: true } : {}),
    });
    return { report, probes };
  }

  it('a changing run warns once for the node, in the facts probe it already makes, which removes the directory', async () => {
    const { report, probes } = await up(false);
    assert.equal(probes.length, inventory.nodes.length, 'no round trip more');
    assert.ok(probes.every((p) => p.includes(`begin ${FIRED_SECTION}`) && p.includes('rm -rf "$o"')));
    assert.deepEqual(
      (report.warnings ?? []).filter((w) => /rolled itself back/.test(w)),
      [`wk-1 rolled itself back at 17:02:09 UTC (run ${FIRED}: not confirmed)`],
    );
  });

  it('a dry run warns and removes nothing', async () => {
    const { report, probes } = await up(true);
    assert.ok(probes.every((p) => p.includes(`begin ${FIRED_SECTION}`) && !p.includes('rm -rf "$o"')));
    assert.deepEqual(
      (report.warnings ?? []).filter((w) => /rolled itself back/.test(w)),
      [
        `wk-1 rolled itself back at 17:02:09 UTC (run ${FIRED}: not confirmed) (a dry run: its record stays in /run/meshctl, the next up removes it)`,
      ],
    );
  });
});
