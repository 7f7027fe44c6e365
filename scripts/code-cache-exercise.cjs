// What `npm run build` runs in each vendor bundle before it writes the bundle's code cache (bin/code-cache.js make):
// V8 caches the functions compiled so far, and a function first compiled at run time is compiled on every run. For
// ssh2 that is its whole client path: a login over loopback, 127.0.0.1 only, to ssh2's own server from
// node_modules (not the bundle), with keys made for it in memory, then one command on a session channel, as meshctl's
// first command runs (issue 10: ssh2's first login compiled ~10-25 ms CPU of functions on every run). For yaml, the
// shipped inventories and playbooks parsed as src/schema/yaml-tree.ts parses a file; for commander, a command line
// parsed as src/main.ts does. Nothing here reads a key of anyone's, and nothing leaves this machine.
'use strict';
const { readdirSync, readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Server, utils } = require('ssh2');

const ROOT = join(__dirname, '..');

/** The shipped YAML files (inventories/, playbooks/) parsed with src/schema/yaml-tree.ts's options, and walked. */
function yaml(exports) {
  const { LineCounter, parseDocument, visit, isMap, isSeq, isScalar, isAlias } = exports.yaml;
  for (const dir of ['inventories', 'playbooks']) {
    for (const file of readdirSync(join(ROOT, dir)).filter((f) => f.endsWith('.yaml'))) {
      const lineCounter = new LineCounter();
      const doc = parseDocument(readFileSync(join(ROOT, dir, file), 'utf8'), { lineCounter, uniqueKeys: false, prettyErrors: false, keepSourceTokens: false });
      visit(doc, (_key, node) => {
        if (isMap(node) || isSeq(node) || isScalar(node) || isAlias(node)) lineCounter.linePos(node.range?.[0] ?? 0);
      });
      doc.toJS();
    }
  }
}

/** A program with a command and options like meshctl's, parsed as src/main.ts parses argv, its help rendered. */
function commander(exports) {
  const { Command } = exports.commander;
  const program = new Command('meshctl').exitOverride().configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  program.option('--no-color', 'plain output').version('0.0.0');
  let ran = false;
  program
    .command('up')
    .description('build the mesh')
    .argument('[inventory]', 'inventory file')
    .option('-y, --yes', 'answer GO')
    .option('--json', 'JSON report')
    .option('-l, --limit <nodes>', 'these nodes', (value, previous) => [...(previous ?? []), value])
    .option('--connect-timeout <seconds>', 'SSH connect timeout')
    .action(() => {
      ran = true;
    });
  program.parse(['node', 'meshctl', 'up', '--yes', '--json', '-l', 'a', 'inventory.yaml']);
  program.helpInformation();
  if (!ran) throw new Error('commander: the command did not run');
}

/** One login and one command with the bundle's client (`exports.client`), the way src/transport/ssh.ts logs in. */
function ssh2(exports) {
  const Client = exports.client;
  const hostKey = utils.generateKeyPairSync('ed25519');
  const userKey = utils.generateKeyPairSync('ed25519');
  exports.keyParser.parseKey(userKey.private);
  return new Promise((resolve, reject) => {
    const server = new Server({ hostKeys: [hostKey.private] }, (peer) => {
      peer.on('error', () => undefined);
      peer.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
      peer.on('ready', () =>
        peer.on('session', (accept) =>
          accept().once('exec', (acceptExec) => {
            const channel = acceptExec();
            channel.write('0\n');
            channel.exit(0);
            channel.end();
          }),
        ),
      );
    });
    const done = (error) => {
      server.close();
      error ? reject(error) : resolve();
    };
    server.listen(0, '127.0.0.1', () => {
      const client = new Client();
      client.on('error', done);
      client.on('ready', () =>
        client.exec('id -u', (error, stream) => {
          if (error) return done(error);
          stream.resume();
          stream.on('close', () => {
            client.end();
            done();
          });
        }),
      );
      client.connect({
        host: '127.0.0.1',
        port: server.address().port,
        username: 'build',
        privateKey: userKey.private,
        hostVerifier: () => true,
        readyTimeout: 20_000,
      });
    });
  });
}

module.exports = { ssh2, yaml, commander };
