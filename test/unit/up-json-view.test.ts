/**
 * `up --json` (issue 10: start-up): the run's view draws nothing and asks nothing, so it loads no listr2 (the
 * terminal's view, src/ui/engine-view.ts, is imported only when it draws), and its gates go on unless a check said
 * STOP, as the terminal's view does with --yes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JSON_VIEW } from '../../src/commands/up.js';
import type { PhaseReport } from '../../src/engine/types.js';
import { writeRefusingInventory } from '../support/refusing-inventory.js';
import { tempDir } from '../support/temp-dir.js';

test('`up --json` runs to its report without loading listr2 (nor inquirer): nodes that refuse, exit 3', async () => {
  const dir = tempDir('meshctl-json-view-');
  const inventory = await writeRefusingInventory(dir);
  writeFileSync(join(dir, 'ssh_config'), '');
  const trace = join(dir, 'modules');
  const run = spawnSync(
    process.execPath,
    ['--import', './test/support/trace-modules.mjs', '--import', 'tsx', 'src/cli.ts', 'up', '--yes', '--json', inventory],
    {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        MESHCTL_SSH_CONFIG: join(dir, 'ssh_config'),
        MESHCTL_KNOWN_HOSTS: join(dir, 'known_hosts'),
        MESHCTL_TRACE_MODULES: trace,
      },
    },
  );
  // the nodes cannot be reached: exit 3, with the JSON report on stdout
  assert.equal(run.status, 3, run.stderr);
  assert.equal((JSON.parse(run.stdout) as { result: string }).result, 'unreachable');
  const loaded = readFileSync(trace, 'utf8').split('\n');
  assert.ok(
    loaded.some((url) => url.endsWith('/src/engine/up.ts')),
    'the trace sees the engine: the run went past its start',
  );
  assert.deepEqual(
    loaded.filter((url) => /node_modules\/(listr2|inquirer|@inquirer)\/|\/src\/ui\/engine-view\.ts$/.test(url)),
    [],
  );
});

test("the --json view's gate goes on unless the checks said STOP, and shows nothing", async () => {
  const report = (verdict: PhaseReport['verdict']) => ({ id: 'facts', title: 'facts', verdict }) as PhaseReport;
  assert.equal(await JSON_VIEW.gate(report('STOP'), false), false);
  assert.equal(await JSON_VIEW.gate(report('GO'), false), true);
  assert.equal(await JSON_VIEW.gate(report('PLANNED'), true), true);
  assert.equal(JSON_VIEW.onEvent({ type: 'phase-start' } as never), undefined);
});
