/**
 * The inventory loader's work before the first SSH connect (issue 10), counted, not timed: the parse and checks run
 * with V8's TurboFan off (src/schema/interpreted.ts) and walk the YAML document no more than they need to.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { checkInventoryText } from '../../src/inventory/load.js';
import { nodeSetsTurbofan, turbofanSwitches, withoutTurbofan } from '../../src/schema/interpreted.js';
import { parseTree, treeWork } from '../../src/schema/yaml-tree.js';
import { benchInventory } from '../../scripts/bench/inventory.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('the inventory loader with TurboFan off', () => {
  it('switches TurboFan off once per load and back on, even though the parse inside asks too', () => {
    const before = { ...turbofanSwitches };
    const result = checkInventoryText(benchInventory(32), 'bench.yaml');
    assert.equal(result.ok, true);
    // node's own options in this test process do not mention TurboFan (else nothing would switch)
    assert.equal(nodeSetsTurbofan(), false);
    assert.deepEqual(turbofanSwitches, { off: before.off + 1, on: before.on + 1 });
  });

  it('switches it back on when the work throws', () => {
    const before = { ...turbofanSwitches };
    assert.throws(
      () =>
        withoutTurbofan(() => {
          throw new Error('boom');
        }),
      /boom/,
    );
    assert.deepEqual(turbofanSwitches, { off: before.off + 1, on: before.on + 1 });
  });

  it("leaves node's own --opt / --no-turbofan / --jitless alone", () => {
    assert.equal(nodeSetsTurbofan(['--no-opt'], ''), true);
    assert.equal(nodeSetsTurbofan([], '--max-old-space-size=100 --turbofan'), true);
    assert.equal(nodeSetsTurbofan(['--no-turbofan=true'], ''), true);
    assert.equal(nodeSetsTurbofan(['--jitless'], ''), true);
    assert.equal(nodeSetsTurbofan(['--optimize-for-size', '--import', 'tsx'], '--opt-foo'), false);
  });

  it("compiles none of yaml's parser with TurboFan while loading, and the probe does see TurboFan's work without it", () => {
    // In a child node that can ask V8 (%GetOptimizationStatus) and compiles on the main thread
    // (--no-concurrent-recompilation), so what is optimised is decided before the question, not by timing.
    const load = pathToFileURL(join(ROOT, 'src', 'inventory', 'load.ts')).href;
    const bench = pathToFileURL(join(ROOT, 'scripts', 'bench', 'inventory.ts')).href;
    const script = `
      const yaml = await import('yaml');
      const { checkInventoryText } = await import(${JSON.stringify(load)});
      const { benchInventory } = await import(${JSON.stringify(bench)});
      const text = benchInventory(100);
      const functions = [yaml.Lexer, yaml.Parser, yaml.Composer].flatMap((c) =>
        Object.getOwnPropertyNames(c.prototype).map((name) => Object.getOwnPropertyDescriptor(c.prototype, name).value).filter((f) => typeof f === 'function'));
      const optimised = () => functions.filter((f) => (%GetOptimizationStatus(f) & 16) !== 0).length;
      for (let i = 0; i < 20; i++) if (!checkInventoryText(text, 'bench.yaml').ok) throw new Error('not ok');
      const whileLoading = optimised();
      for (let i = 0; i < 20; i++) yaml.parseDocument(text, { lineCounter: new yaml.LineCounter() });
      console.log(JSON.stringify({ whileLoading, plain: optimised() }));
    `;
    const child = spawnSync(
      process.execPath,
      ['--allow-natives-syntax', '--no-concurrent-recompilation', '--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: ROOT, encoding: 'utf8' },
    );
    assert.equal(child.status, 0, child.stderr);
    const counts = JSON.parse(child.stdout.trim().split('\n').at(-1)!);
    assert.equal(counts.whileLoading, 0);
    assert.ok(counts.plain > 0, `parsing without the loader optimised none of yaml's parser (${child.stdout})`);
  });
});

describe("parseTree's passes over the document", () => {
  it('makes no alias walk on a file without a * (the 32-node bench inventory)', () => {
    const before = treeWork.documentWalks;
    const parsed = parseTree(benchInventory(32));
    assert.equal(parsed.syntaxBroken, false);
    assert.equal(treeWork.documentWalks - before, 0);
  });

  it('makes one when the file has aliases, and follows them as before', () => {
    const before = treeWork.documentWalks;
    const parsed = parseTree('defaults: &d { user: admin }\nnodes:\n  a: { ssh: *d }\n');
    assert.equal(treeWork.documentWalks - before, 1);
    assert.deepEqual(parsed.problems, []);
    const nodes = parsed.root?.kind === 'map' ? parsed.root.entries.get('nodes') : undefined;
    const a = nodes?.kind === 'map' ? nodes.entries.get('a') : undefined;
    const ssh = a?.kind === 'map' ? a.entries.get('ssh') : undefined;
    assert.equal(ssh?.kind === 'map' ? (ssh.entries.get('user') as { value?: unknown }).value : undefined, 'admin');
  });

  it('still reports an alias to nothing when a * is only in a value with no anchor', () => {
    const parsed = parseTree('a: *nowhere\n');
    assert.equal(parsed.syntaxBroken, false);
    assert.match(parsed.problems[0]?.message ?? '', /alias \*nowhere does not name an earlier anchor/);
  });
});
