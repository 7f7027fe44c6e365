/**
 * Start-up: `meshctl --version` and `--help` load only the command table (no SSH, listr2, inquirer or schema code),
 * and the table's summaries are the commands' own descriptions.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnsDuring } from '../support/spawns.js';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { COMMANDS, buildProgram } from '../../src/main.js';
import { connectorFor } from '../../src/commands/connect-options.js';
import type { Inventory, Node } from '../../src/inventory/types.js';
import { tempDir } from '../support/temp-dir.js';

/** The modules (file URLs under src/ and node_modules/) resolved while `src/cli.ts` runs with these arguments. */
function modulesLoaded(args: string[]): string[] {
  return traced(['--import', 'tsx', 'src/cli.ts', ...args]).loaded;
}

/** Runs node with these arguments: its stdout and the file URLs of the modules it resolved. */
function traced(nodeArgs: string[]): { stdout: string; loaded: string[] } {
  const trace = join(tempDir('meshctl-trace-'), 'modules');
  const run = spawnSync(process.execPath, ['--import', './test/support/trace-modules.mjs', ...nodeArgs], {
    encoding: 'utf8',
    env: { ...process.env, MESHCTL_TRACE_MODULES: trace },
  });
  assert.equal(run.status, 0, run.stderr);
  const loaded = readFileSync(trace, 'utf8')
    .split('\n')
    .filter((url) => url.startsWith('file:'));
  return { stdout: run.stdout, loaded };
}

/**
 * What start-up must not load: the SSH, progress, prompt and schema code and the `--json` writer's library (loaded by
 * the command that runs).
 */
const HEAVY = [
  /node_modules\/ssh2\//,
  /node_modules\/@discoveryjs\/json-ext\//,
  /node_modules\/listr2\//,
  /node_modules\/(@inquirer|inquirer)\//,
  /node_modules\/yaml\//,
  /\/src\/schema\//,
  /\/src\/transport\//,
];

describe('start-up', () => {
  it('every command summary in the table is the description the command registers', async () => {
    const program = await buildProgram();
    for (const entry of COMMANDS) {
      const command = program.commands.find((c) => c.name() === entry.name);
      assert.ok(command, `${entry.name} is registered`);
      assert.equal(command.description(), entry.summary, `summary of ${entry.name}`);
    }
    assert.deepEqual(program.commands.map((c) => c.name()).sort(), COMMANDS.map((c) => c.name).sort());
  });

  for (const args of [['--version'], ['--help']]) {
    it(`meshctl ${args.join(' ')} loads no SSH, listr2, inquirer, yaml or schema code`, () => {
      const loaded = modulesLoaded(args);
      assert.ok(
        loaded.some((url) => url.endsWith('/src/version.ts')),
        `the trace sees meshctl itself: ${loaded.join(' ')}`,
      );
      assert.deepEqual(
        loaded.filter((url) => HEAVY.some((pattern) => pattern.test(url))),
        [],
      );
    });
  }

  it('bin/meshctl.js --version answers by itself: no other module of meshctl is loaded (dist/ is not even read)', () => {
    const { stdout, loaded } = traced(['--require', './test/support/trace-required.cjs', 'bin/meshctl.js', '--version']);
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    assert.equal(stdout, `${version}\n`);
    assert.ok(
      loaded.some((url) => url.endsWith('/bin/meshctl.js')),
      `the trace sees the entry point: ${loaded.join(' ')}`,
    );
    assert.deepEqual(
      loaded.filter((url) => !url.endsWith('/bin/meshctl.js')),
      [],
    );
  });

  it('`up` loads neither ssh2 nor the engine, the view or listr2 before it starts connecting (they load meanwhile)', () => {
    const loaded = modulesLoaded(['up', '--help']);
    assert.ok(
      loaded.some((url) => url.endsWith('/src/commands/up.ts')),
      'up --help loads the up command',
    );
    const later = [
      /node_modules\/ssh2\//,
      /node_modules\/listr2\//,
      /node_modules\/(@inquirer|inquirer)\//,
      /\/src\/transport\/ssh\.ts$/,
      /\/src\/engine\/runner\.ts$/,
      /\/src\/ui\/engine-view\.ts$/,
    ];
    assert.deepEqual(
      loaded.filter((url) => later.some((pattern) => pattern.test(url))),
      [],
    );
  });

  it("`up --json` loads no chalk: what up imports once it has connected (up-run) leaves the terminal's text out", () => {
    // issue 10: chalk (and the ping matrix's text) loaded with the engine cost ~8 ms of CPU between the first SSH
    // login and the first phase, and a --json run never draws; a terminal's summary imports them at the end
    const { loaded } = traced(['--import', 'tsx', '--input-type=module', '-e', 'await import("./src/commands/up-run.ts");']);
    assert.ok(
      loaded.some((url) => url.endsWith('/src/engine/runner.ts')) && loaded.some((url) => url.endsWith('/src/checks/ping-matrix.ts')),
      `the trace sees the engine and the ping round: ${loaded.length} modules`,
    );
    assert.deepEqual(
      loaded.filter((url) => /node_modules\/chalk\/|\/src\/checks\/matrix-render\.ts$/.test(url)),
      [],
    );
  });

  it('running a command loads what it needs (the trace would see ssh2)', () => {
    const loaded = modulesLoaded(['debug', '--help']);
    assert.ok(
      loaded.some((url) => /node_modules\/ssh2\//.test(url)),
      'debug --help loads the debug command with its SSH code',
    );
  });

  it('`verify` loads ssh2 and its checks only when it connects (they load while the nodes answer)', () => {
    const loaded = modulesLoaded(['verify', '--help']);
    assert.ok(
      loaded.some((url) => /\/commands\/verify\.(ts|js)$/.test(url)),
      'verify --help loads the verify command',
    );
    assert.deepEqual(
      loaded.filter((url) => /node_modules\/ssh2\/|\/checks\/(collect|verify|report)\.(ts|js)$/.test(url)),
      [],
    );
  });

  it("`up`'s early connector asks every node's `ssh -G` through one child process, not one spawn per node", {
    skip: spawnSync('sh', ['-c', 'command -v ssh']).status === 0 ? false : 'no ssh client',
  }, async () => {
    // a spawn blocks this process until the child has exec'd (30-120 ms each on a loaded machine), and up's first
    // connection waited for all of them (issue 10). A port nothing listens on: each connection is refused at once.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    const dir = tempDir('meshctl-early-spawns-');
    writeFileSync(join(dir, 'ssh_config'), '');
    const env = { PATH: process.env.PATH, HOME: dir, MESHCTL_SSH_CONFIG: join(dir, 'ssh_config'), MESHCTL_KNOWN_HOSTS: join(dir, 'kh') };
    const nodes = ['a', 'b', 'c', 'd'].map(
      (name, i): Node =>
        ({ name, ssh: { host: `127.0.0.${i + 1}`, port, user: 'root', become: 'none', identityFile: join(dir, 'none') } }) as Node,
    );
    const { spawns } = await spawnsDuring(async () => {
      const connector = connectorFor({ env, connectTimeoutMs: 60_000 });
      connector.start(nodes);
      const { connections, failures } = await connector.connectAll({ nodes } as unknown as Inventory);
      assert.equal(connections.size, 0);
      assert.deepEqual([...failures.keys()], ['a', 'b', 'c', 'd'], 'every node was tried (nothing listens there)');
      for (const failure of failures.values()) assert.doesNotMatch(failure.message, /ssh config/);
    });
    // an empty config tells no hosts apart: the one child is the one `ssh -G` that answers all four (ssh-config.ts
    // configIsUniform); a config that does is asked through one `sh` (test/unit/transport-ssh-config.test.ts)
    assert.deepEqual(spawns, ['ssh'], "four nodes' `ssh -G` asked by one child process");
  });

  describe('the built CLI (npm run build: one esbuild bundle in dist/, split at the commands)', {
    skip: existsSync('dist/cli.js') ? false : 'dist/ is not built (npm run build)',
  }, () => {
    const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/meshctl.js', ...args], { encoding: 'utf8' });

    it('runs: --help, a command with SSH code (ssh2 and its wasm and native crypto load), validate', () => {
      assert.match(cli('--help').stdout, /Usage: meshctl/);
      const verify = cli('verify', '--help');
      assert.equal(verify.status, 0, verify.stderr);
      assert.match(verify.stdout, /Usage: meshctl verify/);
      const validate = cli('validate', 'inventories/homelab.yaml');
      assert.equal(validate.status, 0, validate.stderr);
      assert.match(validate.stdout, /^valid: inventories\/homelab\.yaml/);
    });

    it("each module's import.meta.url is the one its own file had (paths to playbooks/, package.json, cli.js hold)", () => {
      const urls = readdirSync('dist')
        .filter((f) => f.endsWith('.js'))
        .flatMap((f) =>
          [...readFileSync(join('dist', f), 'utf8').matchAll(/new URL\("\.\/([^"]+)\.js", ?import\.meta\.url\)/g)].map((m) => m[1]!),
        );
      for (const module of ['version', 'engine/playbook', 'lab/lab']) assert.ok(urls.includes(module), `${module}: ${urls.join(' ')}`);
      for (const module of urls) assert.ok(existsSync(`src/${module}.ts`), `src/${module}.ts`);
      for (const f of readdirSync('dist').filter((f) => f.endsWith('.js'))) assert.ok(existsSync(`dist/${f}.map`), `${f} has a source map`);
    });

    it("bundles ssh2's client without its server, key generator or HTTP agents (issue 10: less to load before the first login)", () => {
      // meshctl's ES chunks (*.js) and the vendor bundles (vendor-*.cjs, run with a code cache: bin/code-cache.js)
      const sources = readdirSync('dist')
        .filter((f) => /\.c?js\.map$/.test(f))
        .flatMap((f) => (JSON.parse(readFileSync(join('dist', f), 'utf8')) as { sources: string[] }).sources);
      assert.ok(
        sources.some((s) => s.endsWith('node_modules/ssh2/lib/client.js')),
        'the client is bundled',
      );
      for (const part of ['server.js', 'keygen.js', 'http-agents.js', 'index.js'])
        assert.ok(!sources.some((s) => s.endsWith(`node_modules/ssh2/lib/${part}`)), `ssh2/lib/${part} is bundled`);
    });

    it("loads ssh2's client without running what meshctl never uses: bcrypt-pbkdf, the poly1305 WebAssembly (issue 10)", () => {
      // the chunk with the transport, found by its source map, imported alone; a preload counts WebAssembly compiles
      const chunk = readdirSync('dist')
        .filter((f) => f.endsWith('.js.map'))
        .find((f) =>
          (JSON.parse(readFileSync(join('dist', f), 'utf8')) as { sources: string[] }).sources.includes('../src/transport/ssh.ts'),
        );
      assert.ok(chunk, 'a chunk holds src/transport/ssh.ts');
      const dir = tempDir('meshctl-wasm-');
      const counter = join(dir, 'count.cjs');
      writeFileSync(
        counter,
        [
          'let n = 0;',
          'for (const name of ["compile", "instantiate"]) { const f = WebAssembly[name]; WebAssembly[name] = (...a) => (n++, f(...a)); }',
          'const M = WebAssembly.Module; WebAssembly.Module = function (...a) { n++; return new M(...a); };',
          'process.on("exit", () => process.stdout.write(`wasm ${n}\\n`));',
        ].join('\n'),
      );
      const url = new URL(`../../dist/${chunk.replace(/\.map$/, '')}`, import.meta.url).href;
      const run = spawnSync(
        process.execPath,
        [
          '--require',
          counter,
          '--input-type=module',
          '-e',
          `await import(${JSON.stringify(url)}); await new Promise((r) => setTimeout(r, 300));`,
        ],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(run.status, 0, run.stderr);
      // with ssh2's native binding (npm builds it) nothing needs the WebAssembly; without it, it is compiled as before
      const binding = existsSync('node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node');
      assert.match(run.stdout, binding ? /^wasm 0$/m : /^wasm [1-9]/m);
      // ssh2 is in its vendor bundle (vendor-ssh2.cjs, loaded with a code cache by bin/code-cache.js), found by its map
      const ssh2Bundle = readdirSync('dist')
        .filter((f) => /\.c?js\.map$/.test(f))
        .find((f) =>
          (JSON.parse(readFileSync(join('dist', f), 'utf8')) as { sources: string[] }).sources.some((s) =>
            s.endsWith('node_modules/ssh2/lib/protocol/keyParser.js'),
          ),
        );
      assert.ok(ssh2Bundle, "a bundle holds ssh2's keyParser");
      const text = readFileSync(join('dist', ssh2Bundle.replace(/\.map$/, '')), 'utf8');
      // bcrypt-pbkdf (and tweetnacl) is bundled, but its module body runs only when called (never, for meshctl)
      assert.equal(
        text.match(/require_bcrypt_pbkdf\(\)/g)?.length,
        1,
        'require_bcrypt_pbkdf() is called only inside the lazy bcrypt_pbkdf',
      );
      assert.match(text, /function bcrypt_pbkdf\(\.\.\.args\)\{return require_bcrypt_pbkdf\(\)\.pbkdf\(\.\.\.args\)\}/);
    });

    it('is minified in whitespace and syntax, with names kept (issue 10: less to read and compile before the first login)', () => {
      const chunks = readdirSync('dist').filter((f) => f.endsWith('.js'));
      const text = chunks.map((f) => readFileSync(join('dist', f), 'utf8')).join('\n');
      // indented lines are what an unminified bundle is made of (71,844 of them before; the ssh2 chunk: 769 KB before,
      // 473 KB after); the ~100 left are inside template literals (remote scripts), which keep their text
      const indented = text.split('\n').filter((line) => line.startsWith('  ')).length;
      assert.ok(indented < 1000, `${indented} indented lines in dist/*.js`);
      // names stay for readable stack traces: the transport's functions and class keep theirs
      assert.match(text, /\bSshConnection=class\b|\bclass SshConnection\b/);
      assert.match(text, /\bfunction planAuth\(/);
    });
  });
});
