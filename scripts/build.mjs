// `npm run build`, after tsc has type-checked: bundles the CLI with esbuild into dist/ (issue 10, start-up time).
//
// Why a bundle: node's ESM loader resolves, reads and links every module file on its own (about 250 of them for
// `up`: meshctl's, ssh2's, yaml's, commander's ...); one bundle split at the commands' dynamic imports costs about a
// third less CPU to start (`meshctl verify --help`: 875 -> 600 ms CPU, median of 10, on the loaded 2-core machine).
// Each command's code is still a chunk of its own, loaded when that command runs: `--help` loads no SSH code.
// ssh2, yaml and commander are bundled apart, as CommonJS (dist/vendor-*.cjs), and run with a V8 code cache made
// here (see VENDORS and bin/code-cache.js).
//
// What the bundle keeps as it was:
// - paths relative to a module (`new URL('../../playbooks/up.yaml', import.meta.url)`, the lab's path to cli.js):
//   each module's import.meta.url is rewritten to the URL its own file had under dist/ (every chunk sits in dist/).
// - native addons (ssh2's optional crypto binding, cpu-features): loaded from node_modules, where npm built them.
// - readable stack traces: names are kept (identifiers are not minified), and each chunk has a source map
//   (dist/*.js.map): `NODE_OPTIONS=--enable-source-maps meshctl ...` shows src/*.ts positions.
//
// Whitespace and syntax are minified (comments, indentation, `// src/...` markers go; names stay): the ssh2 chunk
// shrinks from 769 to 473 KB, and node reads and compiles less before the first login. Measured with
// scripts/bench/first-login.ts (4 sshd on loopback, median of 10, twice each, load 3.5-4.4): CPU at the first login
// 297/295 -> 282/277 ms, wall 398/364 -> 341/303 ms (issue 10: start to the first SSH connection).
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const outdir = join(root, 'dist');

/** Each src module's import.meta.url as it was in tsc's output (dist/<same path>.js), relative to its chunk in dist/. */
const moduleUrl = {
  name: 'module-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      let contents = await readFile(args.path, 'utf8');
      if (args.path.startsWith(`${src}/`) && contents.includes('import.meta.url')) {
        const own = `./${relative(src, args.path).replace(/\.ts$/, '.js')}`;
        contents = contents.replaceAll('import.meta.url', `new URL(${JSON.stringify(own)}, import.meta.url).href`);
      }
      return { contents, loader: 'ts' };
    });
  },
};

/** Native addons stay files in node_modules, required relative to dist/. */
const nativeAddons = {
  name: 'native-addons',
  setup(b) {
    b.onResolve({ filter: /\.node$/ }, (args) => ({ path: relative(outdir, join(args.resolveDir, args.path)), external: true }));
  },
};

/** A CommonJS file's text with its own __filename and __dirname (see commonJsPaths), when it uses them. */
function withPaths(path, contents) {
  if (!/\b__(dirname|filename)\b/.test(contents)) return contents;
  const own = JSON.stringify(relative(outdir, path));
  return `var __filename = require("node:path").join(__meshctlDist, ${own}), __dirname = require("node:path").dirname(__filename);\n${contents}`;
}

/**
 * CommonJS dependencies that use __dirname/__filename (ssh2's wasm loader) get their own file's values, found at run
 * time from where the chunk is (dist/, see the banner), so the tree may move after the build.
 */
const commonJsPaths = {
  name: 'commonjs-paths',
  setup(b) {
    b.onLoad({ filter: /\/node_modules\/.*\.c?js$/ }, async (args) => {
      const contents = await readFile(args.path, 'utf8');
      if (!/\b__(dirname|filename)\b/.test(contents)) return undefined;
      return { contents: withPaths(args.path, contents), loader: 'js' };
    });
  },
};

/**
 * What ssh2's client runs at load and meshctl never uses, made lazy (issue 10: ssh2's load is on the way to the first
 * login). Each is still bundled and still loads when it is used, so ssh2 behaves as before:
 * - lib/protocol/keyParser.js loads bcrypt-pbkdf (and tweetnacl, 62 KB) for passphrase-protected keys: meshctl never
 *   decrypts a key (encrypted ones are refused before a passphrase would be needed); loaded on the first use.
 * - lib/protocol/crypto.js compiles its poly1305 WebAssembly at load, and every connection waits for it: only its
 *   pure-JS chacha20-poly1305 needs it, which is used only without the native binding (sshcrypto.node, built by npm);
 *   with the binding the wait resolves at once, without it the module is compiled at load as before.
 * (Its SFTP subsystem is loaded at load too, by two modules, one of them for an `instanceof`-like test: left as is.)
 * Measured: importing the transport's chunk alone, CPU, median of 15 alternating: 59.4 -> 54.0 ms (load 12).
 * Each replacement must find its text: a build against another ssh2 that no longer has it fails here, not silently.
 */
const LAZY_SSH2 = [
  {
    file: 'ssh2/lib/protocol/keyParser.js',
    from: "const bcrypt_pbkdf = require('bcrypt-pbkdf').pbkdf;",
    to: "function bcrypt_pbkdf(...args) { return require('bcrypt-pbkdf').pbkdf(...args); }",
  },
  {
    file: 'ssh2/lib/protocol/crypto.js',
    from: '  init: (() => {\n',
    to: '  init: binding ? Promise.resolve() : (() => {\n',
  },
];

/** Applies LAZY_SSH2 to the files it names (see there). */
const lazySsh2 = {
  name: 'lazy-ssh2',
  setup(b) {
    b.onLoad({ filter: /\/node_modules\/ssh2\/lib\/protocol\/(keyParser|crypto)\.js$/ }, async (args) => {
      let contents = await readFile(args.path, 'utf8');
      for (const edit of LAZY_SSH2.filter((e) => args.path.endsWith(`/node_modules/${e.file}`))) {
        if (contents.split(edit.from).length !== 2) throw new Error(`${edit.file}: "${edit.from.trim()}" is not there once (another ssh2?)`);
        contents = contents.replace(edit.from, edit.to);
      }
      return { contents: withPaths(args.path, contents), loader: 'js' };
    });
  },
};

// bundled CommonJS dependencies (ssh2) call require() and read __dirname; an ES module has neither of its own
const banner = [
  "import { createRequire as __meshctlCreateRequire } from 'node:module';",
  "import { fileURLToPath as __meshctlPath } from 'node:url';",
  'const require = __meshctlCreateRequire(import.meta.url);',
  "const __meshctlDist = __meshctlPath(new URL('.', import.meta.url));",
].join(' ');

/**
 * The banner stays only in chunks that use what it defines: esbuild puts it on every chunk, and each of the ~40
 * chunks `up` loads would otherwise make a require function and parse two URLs for nothing (issue 10: start-up).
 * The line is emptied, not removed, so the source maps' line numbers still hold. A chunk "uses" it when its text
 * names `require` (esbuild's __require helper reads the runtime chunk's own `require`) or `__meshctlDist`.
 */
async function dropUnusedBanners() {
  let dropped = 0;
  for (const file of await readdir(outdir)) {
    if (!file.endsWith('.js')) continue;
    const path = join(outdir, file);
    const text = await readFile(path, 'utf8');
    // the banner is the first line, or the second after the entry point's `#!` line
    const at = text.startsWith('#!') ? text.indexOf('\n') + 1 : 0;
    if (!text.startsWith(`${banner}\n`, at)) throw new Error(`${file}: the banner is not where esbuild puts it`);
    const rest = text.slice(at + banner.length);
    if (/\brequire\b|__meshctlDist/.test(rest)) continue;
    await writeFile(path, text.slice(0, at) + rest);
    dropped++;
  }
  return dropped;
}

/**
 * Third-party CommonJS libraries on the way to the first login, each bundled alone into dist/vendor-NAME.cjs and run
 * through bin/code-cache.js with a V8 code cache made here (issue 10: node 20 keeps no compiled code between runs,
 * and compiling ssh2, yaml and commander was about an eighth of the CPU before the first login). `VENDORS[NAME]`:
 * what src/ imports of it (the specifier) -> the property of the vendor bundle's exports that is that module.
 * Node 20 has no `module.enableCompileCache` (22.1) and vm.SourceTextModule needs a flag, while vm.Script takes
 * `cachedData`: hence CommonJS bundles of these three, while meshctl's own code stays ES modules.
 */
const VENDORS = {
  ssh2: { 'ssh2/lib/client.js': 'client', 'ssh2/lib/protocol/keyParser.js': 'keyParser' },
  yaml: { yaml: 'yaml' },
  commander: { commander: 'commander' },
};
/** The loader's path as dist/'s chunks require it (see bin/code-cache.js). */
const LOADER = '../bin/code-cache.js';

/** The vendor bundles' entries: `vendor:NAME` exports each part of VENDORS[NAME] under its property name. */
const vendorEntries = {
  name: 'vendor-entries',
  setup(b) {
    b.onResolve({ filter: /^vendor:/ }, (args) => ({ path: args.path.slice('vendor:'.length), namespace: 'vendor-entry' }));
    b.onLoad({ filter: /.*/, namespace: 'vendor-entry' }, (args) => ({
      contents: Object.entries(VENDORS[args.path])
        .map(([specifier, key]) => `exports[${JSON.stringify(key)}] = require(${JSON.stringify(specifier)});`)
        .join('\n'),
      resolveDir: root,
      loader: 'js',
    }));
  },
};

/**
 * In meshctl's own bundle, an import of a vendored module from src/ becomes its part of the vendor bundle's exports,
 * loaded through the loader (one instance per process, whichever chunk asks first).
 */
const vendorImports = {
  name: 'vendor-imports',
  setup(b) {
    const parts = new Map(
      Object.entries(VENDORS).flatMap(([name, specs]) => Object.entries(specs).map(([spec, key]) => [spec, { name, key }])),
    );
    b.onResolve({ filter: /^(ssh2|yaml|commander)(\/|$)/ }, (args) => {
      const part = parts.get(args.path);
      if (!part || !args.importer.startsWith(`${src}/`)) return undefined;
      return { path: args.path, namespace: 'vendor-part', pluginData: part };
    });
    b.onResolve({ filter: /^\.\.\/bin\/code-cache\.js$/ }, (args) => ({ path: args.path, external: true }));
    b.onLoad({ filter: /.*/, namespace: 'vendor-part' }, (args) => {
      const { name, key } = args.pluginData;
      return {
        contents: `module.exports = require(${JSON.stringify(LOADER)}).load(__meshctlDist, ${JSON.stringify(name)})[${JSON.stringify(key)}];`,
        loader: 'js',
      };
    });
  },
};

/**
 * Each vendor bundle's code cache (dist/vendor-NAME.cache), made by a node of its own with no options (bin/code-cache.js
 * make): V8 takes a cache only from the same V8 version and flags, so a node that differs at run time just compiles.
 * ssh2's cache is made after a login over loopback (scripts/code-cache-exercise.cjs), so it holds the client's path.
 */
function makeCodeCaches() {
  const exercise = join(root, 'scripts', 'code-cache-exercise.cjs');
  execFileSync(process.execPath, [join(root, 'bin', 'code-cache.js'), 'make', outdir, '--exercise', exercise, ...Object.keys(VENDORS)], {
    stdio: 'inherit',
  });
}

/** The built-in playbooks that `up` and `plan` load (playbooks/NAME.yaml), compiled by compilePlaybooks. */
const PLAYBOOKS = ['up'];

/**
 * Checks each built-in playbook against meshctl's registry, as loadPlaybook does, and writes the result beside the
 * chunks (dist/playbook-NAME.json: the YAML text and the Playbook), which loadPlaybook then takes instead of parsing
 * while the YAML's text is unchanged (src/engine/playbook.ts, compiledPlaybook; issue 10). The YAML stays the source.
 * A problem in a playbook fails the build with the checker's own message.
 */
async function compilePlaybooks() {
  const script = join(outdir, `.compile-playbooks-${process.pid}.mjs`);
  const names = JSON.stringify(PLAYBOOKS);
  await build({
    stdin: {
      contents: [
        "import { readFileSync, writeFileSync } from 'node:fs';",
        "import { builtinPlaybookPath, compiledPlaybookPath, loadPlaybook } from './src/engine/playbook.ts';",
        "import { registryContract } from './src/engine/registry.ts';",
        `for (const name of ${names}) {`,
        '  const path = builtinPlaybookPath(name);',
        '  const { source, ...playbook } = loadPlaybook(path, registryContract);',
        "  const yaml = readFileSync(path, 'utf8');",
        '  writeFileSync(compiledPlaybookPath(name), `${JSON.stringify({ yaml, playbook })}\n`);',
        '}',
      ].join('\n'),
      resolveDir: root,
      sourcefile: 'compile-playbooks.ts',
      loader: 'ts',
    },
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    outfile: script,
    logLevel: 'warning',
    banner: { js: banner },
    plugins: [moduleUrl, nativeAddons, lazySsh2, commonJsPaths],
  });
  try {
    // a fresh node: the playbook module's URL resolves from dist/, as in the bundle (no compiled file exists yet)
    execFileSync(process.execPath, [script], { stdio: 'inherit' });
  } finally {
    await rm(script, { force: true });
  }
}

await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: Object.fromEntries(Object.keys(VENDORS).map((name) => [`vendor-${name}`, `vendor:${name}`])),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outdir,
  outExtension: { '.js': '.cjs' },
  sourcemap: true,
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  plugins: [vendorEntries, nativeAddons, lazySsh2, commonJsPaths],
});
await build({
  entryPoints: [join(src, 'cli.ts')],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir,
  chunkNames: '[name]-[hash]',
  sourcemap: true,
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
  banner: { js: banner },
  plugins: [vendorImports, moduleUrl, nativeAddons, lazySsh2, commonJsPaths],
});
await dropUnusedBanners();
makeCodeCaches();
await compilePlaybooks();
