// What `npm run build` runs in each vendor bundle before it writes the bundle's code cache (bin/code-cache.js make):
// V8 caches the functions compiled so far, and a function first compiled at run time is compiled on every run. For
// ssh2 that is its whole client path: a login over loopback, 127.0.0.1 only, to ssh2's own server from
// node_modules (not the bundle), with keys made for it in memory, then one command on a session channel, as meshctl's
// first command runs (issue 10: ssh2's first login compiled ~10-25 ms CPU of functions on every run).
// Nothing here reads a key of anyone's, and nothing leaves this machine.
'use strict';
const { Server, utils } = require('ssh2');

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

module.exports = { ssh2 };
