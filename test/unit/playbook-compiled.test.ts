/**
 * The built-in playbook compiled at build time (scripts/build.mjs compilePlaybooks -> dist/playbook-up.json;
 * src/engine/playbook.ts compiledPlaybook; issue 10: no YAML parse and check of playbooks/up.yaml in every `up`):
 * it is what parsing and checking the YAML gives, and it is used only while the YAML's text is the one compiled.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtinPlaybookPath, checkPlaybookText, compiledPlaybook, type CompiledPlaybook } from '../../src/engine/playbook.js';
import { registryContract } from '../../src/engine/registry.js';
import { tempDir } from '../support/temp-dir.js';

const UP = builtinPlaybookPath('up');

/** playbooks/up.yaml parsed and checked against the registry, as loadPlaybook does without a compiled one. */
function parsed() {
  const result = checkPlaybookText(readFileSync(UP, 'utf8'), UP, registryContract);
  assert.ok(result.ok, JSON.stringify(result.problems));
  return result.playbook;
}

describe('the compiled built-in playbook', () => {
  it('npm run build wrote dist/playbook-up.json: the YAML text as it is now and exactly what parsing it gives', {
    skip: existsSync('dist/cli.js') ? false : 'dist/ is not built',
  }, () => {
    assert.ok(existsSync('dist/playbook-up.json'), 'dist/playbook-up.json');
    const compiled = JSON.parse(readFileSync('dist/playbook-up.json', 'utf8')) as CompiledPlaybook;
    assert.equal(compiled.yaml, readFileSync(UP, 'utf8'), 'the YAML changed since the build: npm run build');
    const { source, ...playbook } = parsed();
    assert.equal(source, UP);
    assert.deepEqual(compiled.playbook, playbook);
  });

  it('is taken only for the built-in path and only while the YAML text is the compiled one; a broken file is ignored', () => {
    const dir = tempDir('meshctl-compiled-playbook-');
    const file = join(dir, 'playbook-up.json');
    const text = readFileSync(UP, 'utf8');
    const { source: _, ...playbook } = parsed();
    // a mark that parsing never gives, to tell the compiled value from a parse
    const marked = { ...playbook, description: 'compiled' };
    writeFileSync(file, JSON.stringify({ yaml: text, playbook: marked }));
    assert.deepEqual(compiledPlaybook(UP, text, file), { ...marked, source: UP });
    // the YAML edited since the build (one byte more): parsed as usual
    assert.equal(compiledPlaybook(UP, `${text} `, file), undefined);
    // another playbook file with the same text (a copy the user passed with --playbook): not the built-in one
    const copy = join(dir, 'up.yaml');
    writeFileSync(copy, text);
    assert.equal(compiledPlaybook(copy, text, file), undefined);
    // missing, truncated, or of another shape
    assert.equal(compiledPlaybook(UP, text, join(dir, 'none.json')), undefined);
    writeFileSync(file, JSON.stringify({ yaml: text, playbook: marked }).slice(0, 100));
    assert.equal(compiledPlaybook(UP, text, file), undefined);
    writeFileSync(file, JSON.stringify({ yaml: text, playbook: { name: 'up' } }));
    assert.equal(compiledPlaybook(UP, text, file), undefined);
    writeFileSync(file, 'null');
    assert.equal(compiledPlaybook(UP, text, file), undefined);
  });
});
