/**
 * --control-persist (src/transport/control-master.ts): the socket framing, the key a connection is kept under, the
 * control directory's checks, and a run's proxy Connection against a master in this process holding scripted fake
 * connections (no node, no sshd: test/integration/control-persist.test.ts has those). No timings are asserted: a
 * test that waits for something polls for it.
 */
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';
import { controlPersistFromFlags } from '../../src/commands/connect-options.js';
import {
  checkSocketFile,
  ControlMaster,
  ControlPathError,
  connectionKey,
  connectThroughMaster,
  encode,
  ensurePrivateDir,
  LineReader,
  listenControl,
  masterSocketPath,
  type MasterIdentity,
  openControlClient,
  ownIdentity,
  perProcessWork,
  resetControlLinks,
  wireOptions,
} from '../../src/transport/control-master.js';
import type { ResolvedSshConfig } from '../../src/transport/ssh-config.js';
import type { ConnectOptions } from '../../src/transport/ssh.js';
import { ENDED_EXIT, TransportError, type Connection, type ExecResult, type RunOptions } from '../../src/transport/types.js';

const identity: MasterIdentity = { version: '1.0.0', build: '1.0.0+1.2', netns: 'net:[4026531840]', uid: 0 };
const settings: ResolvedSshConfig = {
  alias: '127.0.0.1',
  hostname: '127.0.0.1',
  port: 22,
  user: 'root',
  identityFiles: ['/root/.ssh/id_ed25519'],
  proxyJump: [],
  userKnownHostsFiles: ['/root/.ssh/known_hosts'],
  globalKnownHostsFiles: ['/etc/ssh/ssh_known_hosts'],
  hashKnownHosts: false,
  identitiesOnly: false,
  source: 'ssh -G',
};
const node = {
  name: 'n1',
  site: 's',
  address: '127.0.0.1',
  overlayIp: '10.99.0.1',
  listenPort: 51820,
  ssh: { host: '127.0.0.1', port: 22, user: 'root', become: 'none' },
} as Node;
const env = { HOME: '/root', PATH: '/usr/bin' };

describe('framing', () => {
  test('one message per line, whole across chunk boundaries (also inside a multi-byte character)', () => {
    const reader = new LineReader();
    const text = encode({ t: 'stdout', id: 7, chunk: 'ä line\nwith "quotes"\\ and a newline\n' }) + encode({ t: 'end', id: 8 });
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(Buffer.from('ä')) + 1; // in the middle of the two bytes of ä
    assert.deepEqual(reader.feed(bytes.subarray(0, cut)), []);
    const got = [...reader.feed(bytes.subarray(cut, cut + 5)), ...reader.feed(bytes.subarray(cut + 5))];
    assert.deepEqual(got, [
      { t: 'stdout', id: 7, chunk: 'ä line\nwith "quotes"\\ and a newline\n' },
      { t: 'end', id: 8 },
    ]);
  });

  test('a line past the cap, or one that is not a message, is an error (the peer is dropped)', () => {
    assert.throws(() => new LineReader(10).feed(Buffer.from('{"t":"end","id":1234567}')), /longer than 10 bytes/);
    assert.throws(() => new LineReader().feed(Buffer.from('[1,2]\n')), /not a message/);
    assert.throws(() => new LineReader().feed(Buffer.from('{"t":\n')));
  });
});

describe('connection key', () => {
  const key = (
    over: {
      id?: Partial<MasterIdentity>;
      s?: Partial<ResolvedSshConfig>;
      o?: Partial<ConnectOptions>;
      e?: NodeJS.ProcessEnv;
      n?: Partial<Node['ssh']>;
    } = {},
  ) =>
    connectionKey(
      { ...identity, ...over.id },
      { ssh: { ...node.ssh, ...over.n } },
      { ...settings, ...over.s },
      { probe: false, ...over.o },
      { ...env, ...over.e },
    );

  test('the same inputs give the same key (the root probe is not part of it: lend probes a kept connection)', () => {
    assert.equal(key(), key());
    assert.equal(key({ o: { probe: true } }), key({ o: { probe: false } }));
    assert.match(key(), /^[0-9a-f]{64}$/);
  });

  test('everything that makes the connection what it is changes the key', () => {
    const base = key();
    const variants: Record<string, string> = {
      'network namespace': key({ id: { netns: 'net:[4026532001]' } }),
      'meshctl version': key({ id: { version: '1.0.1' } }),
      'meshctl build': key({ id: { build: '1.0.0+1.3' } }),
      user: key({ s: { user: 'admin' } }),
      host: key({ s: { hostname: '127.0.0.2' } }),
      port: key({ s: { port: 2222 } }),
      'ProxyJump chain': key({ s: { proxyJump: [{ host: 'bastion', user: 'j', port: 22 }] } }),
      'IdentityFile lines': key({ s: { identityFiles: ['/root/.ssh/other'] } }),
      'inventory identityFile': key({ n: { identityFile: '/keys/mesh' } }),
      MESHCTL_IDENTITY: key({ e: { MESHCTL_IDENTITY: '/keys/x' } }),
      'ssh-agent': key({ e: { SSH_AUTH_SOCK: '/tmp/agent.1' } }),
      'known_hosts files': key({ e: { MESHCTL_KNOWN_HOSTS: '/tmp/kh' } }),
      UserKnownHostsFile: key({ s: { userKnownHostsFiles: ['/tmp/kh2'] } }),
      HostKeyAlias: key({ s: { hostKeyAlias: 'n1' } }),
      'channels per connection': key({ o: { maxChannels: 2 } }),
      keepalive: key({ o: { keepaliveIntervalMs: 1000 } }),
      'ssh config file': key({ o: { sshConfigFile: '/tmp/cfg' } }),
    };
    for (const [what, k] of Object.entries(variants)) assert.notEqual(k, base, what);
    assert.equal(new Set(Object.values(variants)).size, Object.keys(variants).length, 'each variant has its own key');
  });

  test("the master's socket differs by build, network namespace and user", () => {
    const dir = '/run/user/0/meshctl';
    const path = masterSocketPath(dir, identity);
    assert.notEqual(masterSocketPath(dir, { ...identity, netns: 'net:[1]' }), path);
    assert.notEqual(masterSocketPath(dir, { ...identity, build: 'x' }), path);
    assert.notEqual(masterSocketPath(dir, { ...identity, uid: 1000 }), path);
    assert.ok(path.length < 100, 'fits sun_path (108 bytes)');
  });
});

describe('control directory and socket', () => {
  let root: string;
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'meshctl-cm-dir-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('made 0700 when missing; refused when group or others have access, when a symlink, when not a directory', () => {
    const dir = join(root, 'cm');
    ensurePrivateDir(dir);
    ensurePrivateDir(dir); // again: fine
    chmodSync(dir, 0o755);
    assert.throws(
      () => ensurePrivateDir(dir),
      (e: Error) => e instanceof ControlPathError && /mode 755.*must be 700/.test(e.message),
    );
    chmodSync(dir, 0o700);
    const link = join(root, 'link');
    symlinkSync(dir, link);
    assert.throws(() => ensurePrivateDir(link), /not a directory \(a symlink/);
    const file = join(root, 'file');
    writeFileSync(file, '');
    assert.throws(() => ensurePrivateDir(file), /not a directory/);
  });

  test('a socket file is refused unless it is a socket of this user with mode 0600', async () => {
    const dir = join(root, 'cm');
    const path = join(dir, 'm.sock');
    const master = new ControlMaster(identity, { connect: async () => assert.fail(), alive: async () => true });
    const server = await listenControl(path, master);
    try {
      checkSocketFile(path); // 0600 as bound
      chmodSync(path, 0o666);
      assert.throws(() => checkSocketFile(path), /mode 666 \(it must be 600\)/);
      const file = join(dir, 'plain');
      writeFileSync(file, '');
      assert.throws(() => checkSocketFile(file), /not a socket/);
    } finally {
      server?.close();
      await master.shutdown();
    }
  });

  test('a master of another meshctl build or network namespace is not used', async () => {
    const dir = join(root, 'cm');
    const path = join(dir, 'm.sock');
    const master = new ControlMaster({ ...identity, build: '0.9.0+1.1' }, { connect: async () => assert.fail(), alive: async () => true });
    const server = await listenControl(path, master);
    try {
      await assert.rejects(
        openControlClient(path, identity),
        (e: Error) => e instanceof ControlPathError && /is another meshctl/.test(e.message),
      );
      await assert.rejects(openControlClient(path, { ...identity, build: '0.9.0+1.1', netns: 'net:[1]' }), /is another meshctl/);
      (await openControlClient(path, { ...identity, build: '0.9.0+1.1' })).close();
    } finally {
      server?.close();
      await master.shutdown();
    }
  });

  test('a socket that never answers the hello is not used (no hang)', { timeout: 60_000 }, async () => {
    const dir = join(root, 'cm');
    ensurePrivateDir(dir);
    const path = join(dir, 'mute.sock');
    const held: Socket[] = [];
    const mute = createServer((socket) => held.push(socket));
    const umask = process.umask(0o177);
    await new Promise<void>((resolve) => mute.listen(path, resolve));
    process.umask(umask);
    try {
      await assert.rejects(openControlClient(path, identity), /did not answer within 5 s/);
    } finally {
      for (const socket of held) socket.destroy();
      mute.close();
    }
  });

  test('--control-persist takes whole seconds, MESHCTL_CONTROL_PERSIST is its default, the flag wins', () => {
    assert.equal(controlPersistFromFlags(undefined, {}), undefined);
    assert.equal(controlPersistFromFlags('60', {}), 60);
    assert.equal(controlPersistFromFlags('0', { MESHCTL_CONTROL_PERSIST: '60' }), 0);
    assert.equal(controlPersistFromFlags(undefined, { MESHCTL_CONTROL_PERSIST: '30' }), 30);
    for (const bad of ['-1', '1.5', 'yes', '1e3', '9999999999'])
      assert.throws(() => controlPersistFromFlags(bad, {}), /--control-persist must be a whole number of seconds/, bad);
    assert.throws(() => controlPersistFromFlags(undefined, { MESHCTL_CONTROL_PERSIST: 'x' }), /MESHCTL_CONTROL_PERSIST must be/);
  });
});

/** A scripted connection: what each script does is in `behave`; every run's options are kept. */
class FakeConnection implements Connection {
  readonly target = 'root@127.0.0.1:22';
  readonly stats = { commands: 0, remoteMs: 0, connectMs: 1, channels: 0, peakChannels: 0 };
  readonly seen: { script: string; options: RunOptions }[] = [];
  closed = false;
  abortedRuns = 0;
  constructor(readonly node: string) {}

  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    this.seen.push({ script, options });
    this.stats.commands++;
    this.stats.channels++;
    const ok = (stdout: string, code = 0): ExecResult => ({ code, stdout, stderr: '', durationMs: 3 });
    switch (script) {
      case 'hang':
        return new Promise((_, reject) => {
          options.signal?.addEventListener('abort', () => {
            this.abortedRuns++; // the remote processes are stopped here, before the rejection
            reject(options.signal!.reason);
          });
        });
      case 'stream':
        return new Promise((resolve) => {
          let out = '';
          const end = () => resolve(ok(out, ENDED_EXIT));
          for (const piece of ['one ', 'two ', 'three']) {
            out += piece;
            options.onStdout?.(piece, end);
          }
        });
      case 'gated': {
        const send = await options.sendWhen;
        return ok(send ? 'sent' : '');
      }
      case 'id -u':
        return ok('0\n');
      case 'lost':
        throw new TransportError(this.node, `${this.node} (${this.target}): connection lost: reset`, 'lost');
      default:
        return ok(`ran ${script}`);
    }
  }

  async start(): Promise<void> {
    this.stats.commands++;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

describe('a run through an in-process master', () => {
  let root: string;
  let server: Server | undefined;
  let master: ControlMaster;
  let made: FakeConnection[];
  let alive: boolean;
  let emptied: number;
  let connectEnv: NodeJS.ProcessEnv;
  let knownHosts: string;
  /** when set, the master's connect waits for it */
  let connectGate: Promise<void> | undefined;
  const hostKey = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAIGx8cb0G3ZYUv2Gx5w3x3y1y0v0Z9f6lVhV+0E2mQqQe', 'base64');

  const options = (over: Partial<ConnectOptions> = {}): ConnectOptions => ({
    env: connectEnv,
    controlPersistS: 60,
    probe: false,
    presolved: new Map([['n1', Promise.resolve(settings)]]),
    ...over,
  });

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'meshctl-cm-run-'));
    knownHosts = join(root, 'known_hosts');
    writeFileSync(knownHosts, `127.0.0.1 ssh-ed25519 ${hostKey.toString('base64')}\n`);
    connectEnv = { HOME: root, PATH: process.env.PATH, MESHCTL_CONTROL_DIR: join(root, 'cm'), MESHCTL_KNOWN_HOSTS: knownHosts };
    made = [];
    alive = true;
    connectGate = undefined;
    emptied = 0;
    resetControlLinks();
    master = new ControlMaster(
      ownIdentity(),
      {
        connect: async (n, o) => {
          await connectGate;
          const c = new FakeConnection(n.name);
          made.push(c);
          o.onHostKeyVerified?.({ host: '127.0.0.1', port: 22, key: hostKey, files: [knownHosts] });
          return c;
        },
        alive: async () => alive,
      },
      () => emptied++,
    );
    mkdirSync(join(root, 'cm'), { mode: 0o700 });
    server = await listenControl(masterSocketPath(join(root, 'cm'), ownIdentity()), master);
  });

  afterEach(async () => {
    resetControlLinks();
    server?.close();
    await master.shutdown();
    rmSync(root, { recursive: true, force: true });
  });

  after(() => resetControlLinks());

  test('8 nodes: the identity and the control directory are worked out once per process, not once per node', async () => {
    const before = { ...perProcessWork };
    const nodes = Array.from({ length: 8 }, (_, i) => ({ ...node, name: `n${i + 1}`, ssh: { ...node.ssh, port: 2200 + i } }) as Node);
    const presolved = new Map(nodes.map((n) => [n.name, Promise.resolve({ ...settings, port: n.ssh.port })]));
    const connections = await Promise.all(nodes.map((n) => connectThroughMaster(n, options({ presolved }))));
    assert.equal(made.length, 8, 'one connection per node, made by the master');
    assert.deepEqual(
      (await Promise.all(connections.map((c) => c.run('hostname')))).map((r) => r.stdout),
      nodes.map(() => 'ran hostname'),
    );
    assert.equal(perProcessWork.directoryChecks - before.directoryChecks, 1, 'the control directory checked once');
    assert.ok(perProcessWork.identities - before.identities <= 1, 'the identity worked out at most once (once per process)');
    await Promise.all(connections.map((c) => c.close()));
  });

  test('the options sent to the master: the ones it applies that are set, nothing else (no callbacks, no signal)', () => {
    const signal = new AbortController().signal;
    assert.deepEqual(
      wireOptions({
        acceptNew: true,
        connectTimeoutMs: 5000,
        probe: undefined,
        signal,
        onWarning: () => undefined,
        env: {},
        controlPersistS: 60,
      }),
      { acceptNew: true, connectTimeoutMs: 5000 },
    );
  });

  test('runs go through; the next run gets the same connection back (reused), without a new connect', async () => {
    const first = await connectThroughMaster(node, options());
    assert.equal(first.stats.reused, false);
    const result = await first.run('hostname', { timeoutMs: 1234, maxStdoutBytes: 100, maxStderrBytes: 50 });
    assert.deepEqual(result, { code: 0, stdout: 'ran hostname', stderr: '', durationMs: 3 });
    assert.equal(first.stats.commands, 1);
    assert.equal(first.stats.channels, 1);
    const seen = made[0]!.seen[0]!.options;
    assert.equal(seen.timeoutMs, 1234);
    assert.equal(seen.maxStdoutBytes, 100, 'the output caps reach the real connection');
    assert.equal(seen.maxStderrBytes, 50);
    await first.close();
    await assert.rejects(first.run('x'), (e: Error) => e instanceof TransportError && e.reason === 'closed');
    resetControlLinks(); // the next run: a new process, a new link
    const second = await connectThroughMaster(node, options());
    assert.equal(second.stats.reused, true);
    assert.equal((await second.run('uptime')).stdout, 'ran uptime');
    assert.equal(made.length, 1, 'one connection made for both runs');
    assert.equal(made[0]!.closed, false, 'kept open between the runs');
    assert.equal(second.stats.channels, 1, "channels counted per run, not the master's total");
  });

  test('abort: the master stops the command, then run() rejects with the run own reason', async () => {
    const c = await connectThroughMaster(node, options());
    const abort = new AbortController();
    const running = c.run('hang', { signal: abort.signal });
    await waitFor(() => made[0]!.seen.length === 1);
    const reason = new Error('Ctrl-C');
    abort.abort(reason);
    await assert.rejects(running, (e) => e === reason);
    assert.equal(made[0]!.abortedRuns, 1, 'the command was stopped in the master before run() rejected');
  });

  test('onStdout gets the pieces as they come; its end() ends the run with the output so far', async () => {
    const c = await connectThroughMaster(node, options());
    const pieces: string[] = [];
    const result = await c.run('stream', {
      onStdout: (chunk, end) => {
        pieces.push(chunk);
        if (chunk === 'two ') end();
      },
    });
    assert.equal(result.code, ENDED_EXIT);
    assert.ok(pieces.includes('one ') && pieces.includes('two '));
    assert.ok(result.stdout.startsWith('one two '));
  });

  test('sendWhen: the script is sent when it resolves true, none when false', async () => {
    const c = await connectThroughMaster(node, options());
    let go: (v: boolean) => void = () => undefined;
    const gated = c.run('gated', { sendWhen: new Promise<boolean>((r) => (go = r)) });
    await waitFor(() => made[0]!.seen.length === 1);
    go(true);
    assert.equal((await gated).stdout, 'sent');
    assert.equal((await c.run('gated', { sendWhen: Promise.resolve(false) })).stdout, '');
    assert.equal(
      made[0]!.seen.every((s) => s.options.sendWhen instanceof Promise),
      true,
    );
  });

  test("a node's transport error comes through as that TransportError", async () => {
    const c = await connectThroughMaster(node, options());
    await assert.rejects(
      c.run('lost'),
      (e: Error) => e instanceof TransportError && e.reason === 'lost' && /connection lost: reset/.test(e.message),
    );
  });

  test('the master going away mid-run fails the run with TransportError, it does not hang', { timeout: 30_000 }, async () => {
    const c = await connectThroughMaster(node, options());
    const running = c.run('hang');
    await waitFor(() => made[0]!.seen.length === 1);
    server?.close();
    await master.shutdown(); // drops every run's socket, as a killed master does
    await assert.rejects(
      running,
      (e: Error) => e instanceof TransportError && e.reason === 'lost' && /control master went away/.test(e.message),
    );
    await assert.rejects(c.run('again'), (e: Error) => e instanceof TransportError && e.reason === 'lost');
  });

  test("Ctrl-C while the master connects: that connect rejects with the abort's reason; the run's link stays", {
    timeout: 30_000,
  }, async () => {
    const first = await connectThroughMaster(node, options());
    let open: () => void = () => undefined;
    connectGate = new Promise<void>((resolve) => (open = resolve));
    const abort = new AbortController();
    const other = { ...node, name: 'n2', ssh: { ...node.ssh, host: '127.0.0.2' } };
    const connecting = connectThroughMaster(
      other,
      options({ signal: abort.signal, presolved: new Map([['n2', Promise.resolve({ ...settings, hostname: '127.0.0.2' })]]) }),
    );
    const reason = new Error('Ctrl-C');
    abort.abort(reason);
    await assert.rejects(connecting, (e) => e === reason);
    open();
    assert.equal((await first.run('still')).stdout, 'ran still', 'the other connection still works');
  });

  test('a kept connection that no longer answers is dropped and a new one is made', async () => {
    const first = await connectThroughMaster(node, options());
    await first.close();
    resetControlLinks();
    alive = false;
    const second = await connectThroughMaster(node, options());
    assert.equal(second.stats.reused, false);
    assert.equal(made.length, 2);
    await waitFor(() => made[0]!.closed);
  });

  test('a kept connection whose host key is no longer in known_hosts is not lent (it is checked again)', async () => {
    const first = await connectThroughMaster(node, options());
    await first.close();
    resetControlLinks();
    writeFileSync(knownHosts, ''); // ssh-keygen -R
    const second = await connectThroughMaster(node, options());
    assert.equal(second.stats.reused, false, 'a new connection (whose key exchange then verifies as usual)');
    assert.equal(made.length, 2);
  });

  test('a run that wants the root probe gets it once on a kept connection made without it', async () => {
    (await connectThroughMaster(node, options({ probe: false }))).close();
    resetControlLinks();
    const probed = await connectThroughMaster(node, options({ probe: true }));
    assert.equal(probed.stats.reused, true);
    assert.deepEqual(
      made[0]!.seen.map((s) => s.script),
      ['id -u'],
      'probed in the master before it was lent',
    );
    await probed.close();
    resetControlLinks();
    await connectThroughMaster(node, options({ probe: true }));
    assert.equal(made[0]!.seen.length, 1, 'once');
  });

  test('another key (another user) gets a connection of its own', async () => {
    await connectThroughMaster(node, options());
    const other = await connectThroughMaster(
      node,
      options({ presolved: new Map([['n1', Promise.resolve({ ...settings, user: 'admin' })]]) }),
    );
    assert.equal(other.stats.reused, false);
    assert.equal(made.length, 2);
  });

  test('ControlPersist: closed when the time passes with no run holding it, then the master is empty', async () => {
    const c = await connectThroughMaster(node, options({ controlPersistS: 0 }));
    assert.equal(made[0]!.closed, false, 'open while the run holds it');
    await c.close();
    resetControlLinks();
    await waitFor(() => made[0]!.closed);
    await waitFor(() => emptied > 0);
    assert.equal(master.size, 0);
  });
});

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'condition not reached');
}
