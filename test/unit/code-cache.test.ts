/**
 * The V8 code cache of the vendor bundles (bin/code-cache.js, scripts/build.mjs; issue 10: start to the first SSH
 * login): the built CLI compiles ssh2, yaml and commander from the cache `npm run build` made, and a cache that is
 * missing, corrupt, foreign or made for other bytes is ignored, silently, and the bundle still works.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');
const DIST = join(ROOT, 'dist');
const VENDORS = ['ssh2', 'yaml', 'commander'];

/** Runs node on this script with the loader at hand; MESHCTL_DEBUG_CODE_CACHE reports what became of each cache. */
function node(args: string[], env: Record<string, string> = {}) {
  const run = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    cwd: ROOT,
    env: { ...process.env, MESHCTL_DEBUG_CODE_CACHE: '1', ...env },
  });
  return {
    ...run,
    statuses: Object.fromEntries([...run.stderr.matchAll(/^meshctl: code cache vendor-(\w+)\.cjs: (\w+)$/gm)].map((m) => [m[1]!, m[2]!])),
  };
}

/** A copy of dist/'s vendor bundles and caches in a temporary directory (the loader reads nothing else). */
function vendorCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-code-cache-'));
  for (const name of VENDORS)
    for (const ext of ['cjs', 'cache']) copyFileSync(join(DIST, `vendor-${name}.${ext}`), join(dir, `vendor-${name}.${ext}`));
  return dir;
}

/** Loads each vendor bundle of `dist` in a fresh node and uses it: the statuses, and whether all three worked. */
function loadAll(dist: string, env: Record<string, string> = {}) {
  const script = [
    `const { load } = require(${JSON.stringify(join(ROOT, 'bin', 'code-cache.js'))});`,
    `const dist = ${JSON.stringify(dist)};`,
    "const { Command } = load(dist, 'commander').commander;",
    "if (new Command('x').name() !== 'x') throw new Error('commander');",
    "if (load(dist, 'yaml').yaml.parse('a: [1, 2]').a[1] !== 2) throw new Error('yaml');",
    "const ssh2 = load(dist, 'ssh2');",
    "if (typeof ssh2.client !== 'function' || typeof ssh2.keyParser.parseKey !== 'function') throw new Error('ssh2');",
    "if (!(ssh2.keyParser.parseKey('not a key') instanceof Error)) throw new Error('ssh2 parseKey');",
    "process.stdout.write('works\\n');",
  ].join('\n');
  return node(['-e', script], env);
}

describe("the vendor bundles' code cache", {
  skip: existsSync(join(DIST, 'cli.js')) ? false : 'dist/ is not built (npm run build)',
}, () => {
  it('npm run build made a cache for each bundle, and the built CLI compiles with it (V8 accepts it)', () => {
    const validate = node(['bin/meshctl.js', 'validate', 'inventories/homelab.yaml']);
    assert.equal(validate.status, 0, validate.stderr);
    assert.deepEqual(validate.statuses, { commander: 'accepted', yaml: 'accepted' });
    const all = loadAll(DIST);
    assert.equal(all.status, 0, all.stderr);
    assert.equal(all.stdout, 'works\n');
    assert.deepEqual(all.statuses, { commander: 'accepted', yaml: 'accepted', ssh2: 'accepted' });
  });

  it('each cache holds V8 data, and MESHCTL_CODE_CACHE=0 compiles without them (to measure against)', () => {
    for (const name of VENDORS) {
      const cache = readFileSync(join(DIST, `vendor-${name}.cache`));
      assert.ok(cache.length > 32 + 4096, `vendor-${name}.cache holds V8 data (${cache.length} bytes)`);
    }
    const off = loadAll(DIST, { MESHCTL_CODE_CACHE: '0' });
    assert.equal(off.status, 0, off.stderr);
    assert.deepEqual(off.statuses, { commander: 'off', yaml: 'off', ssh2: 'off' });
  });

  it('each cache holds what a run compiles on its way to the first login, not only the module body (scripts/code-cache-exercise.cjs)', () => {
    // the same bundles' caches made without the exercise: V8 data only for the functions their module bodies ran
    const dir = vendorCopy();
    try {
      const made = spawnSync(process.execPath, [join(ROOT, 'bin', 'code-cache.js'), 'make', dir, ...VENDORS], { encoding: 'utf8' });
      assert.equal(made.status, 0, made.stderr);
      for (const name of VENDORS) {
        const loadOnly = readFileSync(join(dir, `vendor-${name}.cache`)).length;
        const built = readFileSync(join(DIST, `vendor-${name}.cache`)).length;
        // counted in bytes of compiled code: ssh2's kex, ciphers, packets, auth and channels; yaml's parser and
        // visitor; commander's parsing and help add about as much again as the module bodies
        assert.ok(built > loadOnly * 1.5, `vendor-${name}: built ${built} bytes, module body only ${loadOnly} bytes`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a corrupt cache (V8 data damaged, digest intact) is rejected by V8 and the bundles still work', () => {
    const dir = vendorCopy();
    try {
      for (const name of VENDORS) {
        const file = join(dir, `vendor-${name}.cache`);
        const cache = readFileSync(file);
        for (let i = 32 + 8; i < cache.length; i += 7) cache[i] = cache[i]! ^ 0x5a;
        writeFileSync(file, cache);
      }
      const run = loadAll(dir);
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout, 'works\n');
      assert.deepEqual(run.statuses, { commander: 'rejected', yaml: 'rejected', ssh2: 'rejected' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a foreign cache (another bundle's), a cache for other bytes of the same length, a truncated or missing one: ignored", () => {
    const dir = vendorCopy();
    try {
      // yaml gets commander's cache: made for other bytes
      copyFileSync(join(DIST, 'vendor-commander.cache'), join(dir, 'vendor-yaml.cache'));
      // commander's bundle changes one byte (same length: V8's own check, the source's length, would pass)
      const bundle = join(dir, 'vendor-commander.cjs');
      const text = readFileSync(bundle, 'utf8');
      const at = text.lastIndexOf('"use strict"') >= 0 ? text.indexOf('var ') : 0;
      writeFileSync(bundle, `${text.slice(0, at)}var ${text.slice(at + 4)}`.replace(/\n$/, ' '));
      assert.equal(readFileSync(bundle).length, readFileSync(join(DIST, 'vendor-commander.cjs')).length);
      // ssh2's cache: only part of the digest
      writeFileSync(join(dir, 'vendor-ssh2.cache'), readFileSync(join(DIST, 'vendor-ssh2.cache')).subarray(0, 20));
      const run = loadAll(dir);
      assert.equal(run.status, 0, run.stderr);
      assert.equal(run.stdout, 'works\n');
      assert.deepEqual(run.statuses, { commander: 'stale', yaml: 'stale', ssh2: 'stale' });
      for (const name of VENDORS) rmSync(join(dir, `vendor-${name}.cache`));
      const missing = loadAll(dir);
      assert.equal(missing.status, 0, missing.stderr);
      assert.deepEqual(missing.statuses, { commander: 'missing', yaml: 'missing', ssh2: 'missing' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the built CLI runs with every cache corrupt (the whole tree copied, bin/ and dist/)', () => {
    const tree = mkdtempSync(join(tmpdir(), 'meshctl-code-cache-tree-'));
    try {
      for (const part of ['bin', 'dist', 'package.json', 'playbooks', 'schema', 'inventories'])
        cpSync(join(ROOT, part), join(tree, part), { recursive: true });
      symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
      for (const name of VENDORS)
        writeFileSync(
          join(tree, 'dist', `vendor-${name}.cache`),
          Buffer.concat([readFileSync(join(DIST, `vendor-${name}.cache`)).subarray(0, 32), Buffer.alloc(4096, 7)]),
        );
      const run = spawnSync(process.execPath, [join(tree, 'bin', 'meshctl.js'), 'validate', join(tree, 'inventories', 'homelab.yaml')], {
        encoding: 'utf8',
        env: { ...process.env, MESHCTL_DEBUG_CODE_CACHE: '1' },
      });
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /^valid: /);
      assert.match(run.stderr, /vendor-commander\.cjs: rejected/);
      assert.match(run.stderr, /vendor-yaml\.cjs: rejected/);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });

  it('the loader is the one the chunks require, and src/ gets ssh2, yaml and commander only from the vendor bundles', () => {
    const require = createRequire(import.meta.url);
    assert.equal(typeof require(join(ROOT, 'bin', 'code-cache.js')).load, 'function');
    const chunks = spawnSync('grep', ['-l', '-F', 'code-cache.js', '-r', DIST, '--include=*.js'], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n');
    assert.ok(chunks.length >= 1 && chunks[0] !== '', 'a chunk requires ../bin/code-cache.js');
    // the ES chunks bundle none of the three (their sources are in the vendor bundles' maps only)
    const esSources = spawnSync('sh', ['-c', `cat ${DIST}/*.js.map`], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout;
    for (const lib of ['node_modules/ssh2/lib/client.js', 'node_modules/yaml/dist/', 'node_modules/commander/lib/command.js'])
      assert.ok(!esSources.includes(lib), `${lib} is not in an ES chunk`);
  });
});
