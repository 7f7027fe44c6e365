// Loads dist/vendor-NAME.cjs (ssh2, yaml, commander, bundled alone by scripts/build.mjs) with a V8 code cache, so
// that node does not compile them again on every run (issue 10: start to the first SSH login). Node 20 keeps no
// compiled code between runs (module.enableCompileCache came in 22.1) and vm.SourceTextModule needs a flag, so these
// CommonJS bundles are compiled by vm.Script with `cachedData`, the way node's own CommonJS loader would run them.
//
// The cache, dist/vendor-NAME.cache, is made by `npm run build` (`node bin/code-cache.js make DIST NAME...`): the
// SHA-256 of the bundle's bytes, then V8's data. It is only ever a shortcut: a cache that is missing, made for other
// bytes (V8 itself checks only the source's length), or that V8 rejects (another node or V8 flags, corrupt data) is
// ignored and the bundle compiled as usual, silently. MESHCTL_CODE_CACHE=0 ignores every cache (to measure without);
// MESHCTL_DEBUG_CODE_CACHE=1 writes what became of each one to stderr
// ("meshctl: code cache vendor-ssh2.cjs: accepted|rejected|stale|missing|off").
'use strict';
const { createHash } = require('node:crypto');
const { readFileSync, renameSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { join } = require('node:path');
const { Script } = require('node:vm');

/** bytes of the SHA-256 at the head of a cache file */
const DIGEST_BYTES = 32;
/** each vendor bundle's module.exports, by name: loaded once per process */
const loaded = new Map();

const bundleFile = (dist, name) => join(dist, `vendor-${name}.cjs`);
const cacheFile = (dist, name) => join(dist, `vendor-${name}.cache`);
const digest = (bytes) => createHash('sha256').update(bytes).digest();

/** The bundle's text as node's CommonJS loader wraps a module (plus __meshctlDist: see scripts/build.mjs, commonJsPaths). */
const wrap = (text) => `(function (exports, require, module, __filename, __dirname, __meshctlDist) {${text}\n})`;

/** V8's data from the cache file, when it was made for exactly these bytes; otherwise why not. */
function cachedDataFor(dist, name, bytes) {
  if (process.env.MESHCTL_CODE_CACHE === '0') return { status: 'off' };
  let cache;
  try {
    cache = readFileSync(cacheFile(dist, name));
  } catch {
    return { status: 'missing' };
  }
  if (cache.length <= DIGEST_BYTES || !digest(bytes).equals(cache.subarray(0, DIGEST_BYTES))) return { status: 'stale' };
  return { data: cache.subarray(DIGEST_BYTES) };
}

/** Compiles the bundle (with V8's data when there is any) and runs its module body; returns the script and module. */
function run(dist, name, text, cachedData) {
  const file = bundleFile(dist, name);
  const script = new Script(wrap(text), { filename: file, ...(cachedData ? { cachedData } : {}) });
  const module = { exports: {}, id: file, filename: file, loaded: false };
  script.runInThisContext()(module.exports, createRequire(file), module, file, dist, dist);
  module.loaded = true;
  return { script, module };
}

/**
 * module.exports of dist/vendor-NAME.cjs (`dist`: the absolute path of dist/), compiled with its code cache when
 * that is valid (see the top of this file). Throws only what loading the bundle itself throws.
 */
function load(dist, name) {
  const done = loaded.get(name);
  if (done) return done;
  const bytes = readFileSync(bundleFile(dist, name));
  const { data, status } = cachedDataFor(dist, name, bytes);
  const { script, module } = run(dist, name, bytes.toString('utf8'), data);
  if (process.env.MESHCTL_DEBUG_CODE_CACHE)
    process.stderr.write(
      `meshctl: code cache vendor-${name}.cjs: ${data ? (script.cachedDataRejected ? 'rejected' : 'accepted') : status}\n`,
    );
  loaded.set(name, module.exports);
  return module.exports;
}

/**
 * Writes dist/vendor-NAME.cache for each name (build time): the bundle is compiled and its module body run first, then
 * `exercise[NAME](exports)` when there is one (scripts/code-cache-exercise.cjs: ssh2's login), so the cache also holds
 * the functions that run at load and on the way to the first login. Written to a temporary file and renamed (a run
 * that reads it meanwhile sees the old cache or the new one, never half of one).
 */
async function make(dist, names, exercise = {}) {
  for (const name of names) {
    const bytes = readFileSync(bundleFile(dist, name));
    const { script, module } = run(dist, name, bytes.toString('utf8'));
    await exercise[name]?.(module.exports);
    const temporary = `${cacheFile(dist, name)}.${process.pid}.tmp`;
    writeFileSync(temporary, Buffer.concat([digest(bytes), script.createCachedData()]));
    renameSync(temporary, cacheFile(dist, name));
  }
}

module.exports = { load, make };

// `node bin/code-cache.js make DIST [--exercise FILE] NAME...` (scripts/build.mjs)
if (require.main === module && process.argv[2] === 'make') {
  const [dist, ...rest] = process.argv.slice(3);
  const at = rest.indexOf('--exercise');
  const exercise = at >= 0 ? require(rest.splice(at, 2)[1]) : {};
  make(dist, rest, exercise).then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`meshctl: could not make the code caches: ${error.stack ?? error}\n`);
      process.exit(1);
    },
  );
}
