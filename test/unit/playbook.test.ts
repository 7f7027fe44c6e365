/**
 * The playbook loader: every broken playbook under test/fixtures/playbooks states its exact problems in
 * `# expect: LINE:COL: FIELD.PATH: message` comments at the top; loading it against the test registry below must
 * throw a MeshctlError (exit 2) naming the file, with exactly those lines, in that order. Then the registry
 * contracts (needs/provides), the names-only registry of today's engine, and `meshctl up --playbook BAD.yaml`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadPlaybook } from '../../src/engine/playbook.js';
import { ExitCode, MeshctlError } from '../../src/errors.js';
import { TEST_REGISTRY } from '../fixtures/playbooks/registry.js';
import { NETWORK_GUARD } from '../support/network-guard.js';
import { tempDir } from '../support/temp-dir.js';

const DIR = 'test/fixtures/playbooks';

const expectedLines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('# expect: '))
    .map((line) => `${path}:${line.slice('# expect: '.length)}`);

function errorOf(load: () => unknown): MeshctlError {
  try {
    load();
  } catch (error) {
    assert.ok(error instanceof MeshctlError, `expected a MeshctlError, got ${String(error)}`);
    return error;
  }
  assert.fail('loaded without problems');
}

describe('broken playbooks report their exact problems', () => {
  const files = readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml') && f !== 'good.yaml')
    .sort();
  it('there are fixtures for every kind of problem', () => assert.ok(files.length >= 7, `only ${files.length}`));
  for (const file of files) {
    const path = `${DIR}/${file}`;
    it(file, () => {
      const expected = expectedLines(path);
      assert.ok(expected.length > 0, `${path} has no "# expect:" line`);
      const error = errorOf(() => loadPlaybook(path, TEST_REGISTRY));
      assert.equal(error.exitCode, ExitCode.badInput);
      assert.equal(error.message, `playbook ${path} has ${expected.length === 1 ? '1 problem' : `${expected.length} problems`}`);
      assert.deepEqual(error.details, expected);
    });
  }
});

describe('loadPlaybook', () => {
  it('loads a playbook that meets every contract, with defaults for what it leaves out', () => {
    const playbook = loadPlaybook(`${DIR}/good.yaml`, TEST_REGISTRY);
    assert.equal(playbook.source, `${DIR}/good.yaml`);
    assert.deepEqual(
      playbook.phases.map((p) => p.id),
      ['facts', 'baseline', 'install', 'keys', 'config', 'enable'],
    );
    assert.deepEqual(playbook.phases[1], { id: 'baseline', title: 'baseline', steps: [], checks: ['no-foreign-wireguard'], go: '' });
    assert.equal(playbook.phases[5]!.go, 'wg-quick is running everywhere and every node pings every other one.\n');
  });

  it("the built-in playbook's titles name the mesh's own interface, not wg0 (Q6: a mesh on wghome was told 'Push wg0.conf')", async () => {
    const { builtinPlaybookPath, forInterface } = await import('../../src/engine/playbook.js');
    const { registryContract } = await import('../../src/engine/registry.js');
    const playbook = forInterface(loadPlaybook(builtinPlaybookPath('up'), registryContract), 'wghome');
    const texts = playbook.phases.flatMap((p) => [p.title, p.go]);
    assert.ok(texts.includes('Push wghome.conf and rp_filter'), texts.join(' | '));
    assert.ok(!texts.some((t) => /wg0|\{interface\}/.test(t)), texts.join(' | '));
  });

  it("the built-in playbook satisfies the real registry's contracts; the same phases out of order do not", async () => {
    const { builtinPlaybookPath } = await import('../../src/engine/playbook.js');
    const { registryContract } = await import('../../src/engine/registry.js');
    const playbook = loadPlaybook(builtinPlaybookPath('up'), registryContract);
    assert.deepEqual(
      playbook.phases.map((p) => p.id),
      ['facts', 'baseline', 'install', 'keys', 'config', 'enable', 'verify'],
    );
    // config before keys: write-config needs the public keys that only generate-keys provides
    const text = readFileSync(builtinPlaybookPath('up'), 'utf8');
    const keys = text.slice(text.indexOf('  - id: keys'), text.indexOf('  - id: config'));
    const swapped = text.replace(keys, '').replace('  - id: enable', `${keys}  - id: enable`);
    const file = join(tempDir('meshctl-playbook-'), 'swapped.yaml');
    writeFileSync(file, swapped);
    const error = errorOf(() => loadPlaybook(file, registryContract));
    assert.equal(error.exitCode, 2);
    assert.ok(
      error.details.some((l) =>
        /^.*swapped\.yaml:\d+:\d+: phases\[\d\]\.steps\[0\]: step "write-config" needs "publicKey", which no earlier phase provides \(provided by: generate-keys\)$/.test(
          l,
        ),
      ),
      error.details.join('\n'),
    );
  });

  it('a names-only registry has no contracts: order is not checked, names are', () => {
    const names = { steps: new Set(TEST_REGISTRY.steps.keys()), checks: new Set(TEST_REGISTRY.checks.keys()) };
    assert.equal(loadPlaybook(`${DIR}/step-need-not-provided.yaml`, names).phases.length, 5);
    const error = errorOf(() => loadPlaybook(`${DIR}/unknown-step.yaml`, names));
    assert.deepEqual(error.details, expectedLines(`${DIR}/unknown-step.yaml`));
  });

  it('a missing file and a non-regular file: one line, exit 2', () => {
    for (const [path, reason] of [
      ['nope.yaml', 'no such file'],
      ['/dev/zero', 'not a regular file'],
    ]) {
      const error = errorOf(() => loadPlaybook(path!, TEST_REGISTRY));
      assert.equal(error.exitCode, ExitCode.badInput);
      assert.equal(error.message, `cannot read playbook ${path}: ${reason}`);
    }
  });
});

describe('meshctl up --playbook BAD.yaml', () => {
  it('exits 2 with the file:line:col line on stderr, before contacting any node', () => {
    const path = `${DIR}/misspelt-key.yaml`;
    const run = spawnSync(process.execPath, ['--import', NETWORK_GUARD, '--import', 'tsx', 'test/support/run-main-many.ts'], {
      input: JSON.stringify([['up', '--playbook', path, '--dry-run', 'inventories/homelab.yaml']]),
      encoding: 'utf8',
      env: { ...process.env, FORCE_COLOR: '0' },
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `runner exit ${run.status}: ${run.stderr}`);
    assert.doesNotMatch(run.stderr, /NETWORK ATTEMPT/);
    const [result] = JSON.parse(run.stdout) as { code: number; stdout: string; stderr: string }[];
    assert.equal(result!.code, 2, result!.stderr);
    assert.equal(result!.stderr, [`meshctl: playbook ${path} has 1 problem`, ...expectedLines(path).map((l) => `  ${l}`), ''].join('\n'));
  });
});
