/**
 * Start to the first SSH connection (issue 10): what `up` must not do before its first TCP connect, and the socket
 * option that keeps the login from stalling. Counts and flags only, no clock: these hold on a loaded machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { publicIpv6Problem } from '../../src/net/ipv6.js';
import { beginTcp } from '../../src/transport/early-socket.js';
import { writeRefusingInventory } from '../support/refusing-inventory.js';
import { tempDir } from '../support/temp-dir.js';

test('global unicast is 2000::/3 exactly (the prefix written as its value, not parsed at load)', () => {
  for (const ok of ['2000::', '2001:db8::11', '3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'])
    assert.equal(publicIpv6Problem(ok), undefined, ok);
  for (const not of ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '4000::', 'fe80::1', '::1'])
    assert.match(publicIpv6Problem(not) ?? '', /is (a|an|not a) /, not);
});

test("`up` on an IPv4 inventory never calls node:net's isIPv6 before it connects (its first call compiles a regex of 20-30 ms)", () => {
  // a preload counts the calls; `up` without --yes and without a terminal stops (exit 2) after loading its modules
  // and the inventory, right where it would start connecting
  const dir = tempDir('meshctl-isipv6-');
  const counter = join(dir, 'count.cjs');
  const out = join(dir, 'calls');
  writeFileSync(
    counter,
    [
      "const net = require('node:net'); const fs = require('node:fs'); let calls = 0; const isIPv6 = net.isIPv6;",
      'net.isIPv6 = (...a) => { calls++; return isIPv6(...a); };',
      `process.on('exit', () => fs.writeFileSync(${JSON.stringify(out)}, String(calls)));`,
    ].join('\n'),
  );
  const run = spawnSync(process.execPath, ['--require', counter, '--import', 'tsx', 'src/cli.ts', 'up', 'inventories/homelab.yaml'], {
    encoding: 'utf8',
    input: '',
  });
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /no terminal to confirm the gates/);
  assert.equal(readFileSync(out, 'utf8'), '0');
});

test('an early TCP connection has TCP_NODELAY (Nagle held the login ~40 ms behind a delayed ACK)', async () => {
  // ssh2's own sockets get it through Client.setNoDelay (noDelay in src/transport/ssh.ts); node keeps the wish until
  // the socket connects, under the symbol kSetNoDelay
  const server = createServer((s) => s.destroy());
  const port = await new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
  const early = beginTcp('127.0.0.1', port);
  try {
    const symbol = Object.getOwnPropertySymbols(early.socket).find((s) => s.description === 'kSetNoDelay');
    assert.ok(symbol, 'node keeps the TCP_NODELAY wish on the socket');
    assert.equal((early.socket as unknown as Record<symbol, unknown>)[symbol], true);
  } finally {
    early.socket.destroy();
    server.close();
  }
});

/**
 * Runs `meshctl ARGS` from the sources with a preload that notes, in order, each TCP connect begun and each look at
 * the inventory's local state file (<inventory>.state.json); the node's sshd port is closed, so the run ends at
 * once. The events, in the order they happened.
 */
async function connectAndStateOrder(command: string): Promise<string[]> {
  const dir = tempDir('meshctl-state-order-');
  const inventory = await writeRefusingInventory(dir);
  writeFileSync(`${inventory}.state.json`, '{}\n'); // a state to read (an unknown shape reads as empty)
  writeFileSync(join(dir, 'ssh_config'), '');
  writeFileSync(join(dir, 'known_hosts'), '');
  const events = join(dir, 'events');
  const preload = join(dir, 'order.cjs');
  writeFileSync(
    preload,
    [
      "const net = require('node:net'); const fs = require('node:fs'); const seen = [];",
      'const connect = net.Socket.prototype.connect;',
      // only TCP connects to a port (tsx's own IPC connects to a path)
      "net.Socket.prototype.connect = function (...a) { const o = Array.isArray(a[0]) ? a[0][0] : a[0]; if (o && (o.port || typeof o === 'number')) seen.push('connect'); return connect.apply(this, a); };",
      "const note = (name) => { const f = fs[name]; fs[name] = (p, ...a) => { if (String(p).endsWith('.state.json')) seen.push('state'); return f(p, ...a); }; };",
      "note('existsSync'); note('readFileSync'); require('node:module').syncBuiltinESMExports();",
      `process.on('exit', () => fs.writeFileSync(${JSON.stringify(events)}, seen.join(' ')));`,
    ].join('\n'),
  );
  const run = spawnSync(
    process.execPath,
    ['--require', preload, '--import', 'tsx', 'src/cli.ts', command, '--json', ...(command === 'up' ? ['--yes'] : []), inventory],
    {
      encoding: 'utf8',
      input: '',
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        MESHCTL_SSH_CONFIG: join(dir, 'ssh_config'),
        MESHCTL_KNOWN_HOSTS: join(dir, 'known_hosts'),
      },
    },
  );
  try {
    assert.equal(run.status, 3, run.stderr); // could not connect
    return readFileSync(events, 'utf8').split(' ');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('`up` begins its TCP connections before it reads the local state (the state is read while they connect)', async () => {
  const events = await connectAndStateOrder('up');
  assert.ok(events.includes('state'), `the state was read: ${events.join(' ')}`);
  assert.equal(events[0], 'connect', `first the connections, then the state: ${events.join(' ')}`);
});

test('`verify` begins its TCP connections before it reads the local state', async () => {
  const events = await connectAndStateOrder('verify');
  assert.ok(events.includes('state'), `the state was read: ${events.join(' ')}`);
  assert.equal(events[0], 'connect', `first the connections, then the state: ${events.join(' ')}`);
});
