/**
 * --control-persist SECONDS: OpenSSH's ControlMaster + ControlPersist for meshctl (ssh_config(5): "ControlPersist ...
 * the master connection will remain open in the background ... until ... the specified time has elapsed with no
 * client connections"). Off unless asked for (a root login held open after the run is a standing door; OpenSSH's own
 * default is off too).
 *
 * - The master is meshctl itself, re-executed with the hidden subcommand `__control-master` (src/cli.ts), detached,
 *   stdio to /dev/null. It holds the nodes' ssh2 connections (made by connectDirect, so host keys are verified exactly
 *   as in a direct run, --accept-new and warnings reported to the run that caused them) and serves runs over a unix
 *   socket: one socket per (meshctl build, network namespace, user), in a directory private to the user.
 * - A run asks the master for each node's connection under a key (connectionKey: like OpenSSH's ControlPath %C, a
 *   hash of all that makes the connection what it is: resolved host, port, user, identities and agent, known_hosts
 *   files, ProxyJump chain, ssh settings, meshctl's build, the network namespace). The master lends a live one it holds
 *   (after checking that it still answers and that its host keys still match the run's known_hosts), or opens one.
 * - The run gets a Connection whose run/start/close go to the master (JSON lines, see Message). `close` lends the
 *   connection back; the master closes a connection `SECONDS` after the last run let it go, and exits when it holds
 *   none and no run is connected.
 * - Anything wrong with the master (refused directory, no answer, another build): one warning, then the run connects
 *   directly, as without the flag. A master that goes away mid-run fails that run's commands with TransportError
 *   'lost' (never a hang).
 * Private keys never cross the socket: the master reads the identity files itself (as the run would), by path.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readlinkSync, statSync, unlinkSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Node } from '../inventory/types.js';
import { VERSION } from '../version.js';
import { loadKnownHosts, verifyHostKey } from './known-hosts.js';
import type { ResolvedSshConfig } from './ssh-config.js';
import {
  connectDirect,
  connectionAlive,
  JumpHosts,
  knownHostsFiles,
  reportKnownHostsProblems,
  resolveNode,
  type ConnectOptions,
  type TransportWarning,
  type VerifiedHostKey,
} from './ssh.js';
import {
  commandTimeoutFromEnv,
  TransportError,
  type Connection,
  type ConnectionStats,
  type ExecResult,
  type RunOptions,
  type TransportFailure,
} from './types.js';

/** The hidden subcommand that runs the master (src/cli.ts). */
export const MASTER_COMMAND = '__control-master';

/** How long a run waits for a master it started to listen, ms. */
const MASTER_START_MS = 5_000;
/** How long a run waits for the master's hello, ms: a master that does not answer it is not used. */
const HELLO_MS = 5_000;
/** How long the master waits for a kept connection's server to answer before it drops it as dead, ms. */
const ALIVE_CHECK_MS = 3_000;
/** The longest JSON line either side accepts: a 4 MiB stdout, JSON-escaped, with room to spare. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

/** Environment variables that decide how a connection is made; the run sends these (and only these) to the master. */
export const CONNECT_ENV = [
  'HOME',
  'PATH',
  'USER',
  'LOGNAME',
  'SSH_AUTH_SOCK',
  'MESHCTL_IDENTITY',
  'MESHCTL_KNOWN_HOSTS',
  'MESHCTL_SSH_CONFIG',
  'MESHCTL_COMMAND_TIMEOUT',
] as const;

// ---------------------------------------------------------------------------------------------------------
// settings

/** This process's network namespace as the kernel names it (`net:[4026531840]`), or 'unknown' where /proc has none. */
export function networkNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/net');
  } catch {
    return 'unknown';
  }
}

/** The package root, from this module's place (src/transport/ under tsx, dist/transport/ in the bundle: see build.mjs). */
const packageRoot = () => fileURLToPath(new URL('../../', import.meta.url));
const fromSource = () => import.meta.url.endsWith('.ts');

/**
 * What tells this meshctl build apart from another of the same version: the compiled CLI's (or, under tsx, this
 * source file's) size and modification time. A master of another build is not used.
 */
export function buildStamp(): string {
  const file = fromSource() ? fileURLToPath(import.meta.url) : join(packageRoot(), 'dist', 'cli.js');
  try {
    const s = statSync(file);
    return `${VERSION}+${s.size}.${Math.round(s.mtimeMs)}`;
  } catch {
    return VERSION;
  }
}

/** Who the master is: meshctl's build, the network namespace and the user. A run uses only a master that says the same. */
export interface MasterIdentity {
  version: string;
  build: string;
  netns: string;
  uid: number;
}

export const ownIdentity = (): MasterIdentity => ({
  version: VERSION,
  build: buildStamp(),
  netns: networkNamespace(),
  uid: process.getuid?.() ?? -1,
});

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * The key a connection is kept under (OpenSSH's ControlPath %C is the model: a hash of local host, remote host, port,
 * user and jump chain; this one has more, as meshctl's connection depends on more): the master's identity (build,
 * network namespace, user), the node's inventory ssh entry, its resolved ssh settings (host, port, user, IdentityFile
 * lines, ProxyJump chain, known_hosts files, HostKeyAlias, keepalives), the known_hosts files actually read, the
 * environment that picks identities and files (CONNECT_ENV), the ssh config file, and the options that shape the
 * connection (channels per connection, keepalives). Not the root probe: a kept connection is probed before it is lent
 * to a run that wants one (ControlMaster.lend). 64 hex digits.
 */
export function connectionKey(
  identity: MasterIdentity,
  node: Pick<Node, 'ssh'>,
  settings: ResolvedSshConfig,
  options: Pick<ConnectOptions, 'maxChannels' | 'keepaliveIntervalMs' | 'keepaliveCountMax' | 'sshConfigFile'>,
  env: NodeJS.ProcessEnv,
): string {
  const home = env.HOME || homedir();
  return sha256(
    JSON.stringify({
      identity,
      ssh: node.ssh,
      settings,
      knownHosts: knownHostsFiles(settings, env, home).read,
      env: connectEnv(env),
      sshConfigFile: options.sshConfigFile ?? null,
      maxChannels: options.maxChannels ?? null,
      keepalive: [options.keepaliveIntervalMs ?? null, options.keepaliveCountMax ?? null],
    }),
  );
}

/** The CONNECT_ENV part of an environment (unset ones left out). */
export function connectEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of CONNECT_ENV) if (env[name] !== undefined) out[name] = env[name]!;
  return out;
}

/** Why the control directory or socket is refused (the run then connects directly, with this as its warning). */
export class ControlPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlPathError';
  }
}

/**
 * The directory the master's socket lives in: MESHCTL_CONTROL_DIR, else $XDG_RUNTIME_DIR/meshctl, else
 * ~/.cache/meshctl/cm.
 */
export function controlDir(env: NodeJS.ProcessEnv): string {
  if (env.MESHCTL_CONTROL_DIR) return env.MESHCTL_CONTROL_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'meshctl');
  return join(env.HOME || homedir(), '.cache', 'meshctl', 'cm');
}

/**
 * Makes `dir` (mode 0700) when missing, then checks it as OpenSSH checks a ControlPath's place: a real directory (not
 * a symlink), owned by this user, with no access for group or others. Throws ControlPathError otherwise (a directory
 * another user can write to would let them put a socket of theirs where meshctl looks for its master).
 */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ControlPathError(`cannot make ${dir}: ${(err as Error).message}`);
  }
  const s = lstatSync(dir);
  const uid = process.getuid?.();
  if (!s.isDirectory()) throw new ControlPathError(`${dir} is not a directory (a symlink or file is refused)`);
  if (uid !== undefined && s.uid !== uid) throw new ControlPathError(`${dir} is owned by uid ${s.uid}, not by this user (uid ${uid})`);
  if ((s.mode & 0o077) !== 0)
    throw new ControlPathError(`${dir} has mode ${(s.mode & 0o777).toString(8)}: group or others have access (it must be 700)`);
}

/** Checks an existing socket file: a socket, this user's, mode 0600 or stricter. Throws ControlPathError otherwise. */
export function checkSocketFile(path: string): void {
  const s = lstatSync(path);
  const uid = process.getuid?.();
  if (!s.isSocket()) throw new ControlPathError(`${path} is not a socket`);
  if (uid !== undefined && s.uid !== uid) throw new ControlPathError(`${path} is owned by uid ${s.uid}, not by this user (uid ${uid})`);
  if ((s.mode & 0o077) !== 0) throw new ControlPathError(`${path} has mode ${(s.mode & 0o777).toString(8)} (it must be 600)`);
}

/** The master's socket for this identity in `dir`: one master per build, network namespace and user. */
export const masterSocketPath = (dir: string, identity: MasterIdentity): string =>
  join(dir, `m-${sha256(JSON.stringify(identity)).slice(0, 20)}.sock`);

// ---------------------------------------------------------------------------------------------------------
// framing: one JSON object per line (JSON.stringify escapes every newline inside strings)

/** The names of the connection options the master applies (all but callbacks, signals and the early-connect maps). */
export const WIRE_OPTIONS = [
  'acceptNew',
  'connectTimeoutMs',
  'keepaliveIntervalMs',
  'keepaliveCountMax',
  'commandTimeoutMs',
  'maxChannels',
  'probe',
  'sshConfigFile',
] as const satisfies readonly (keyof ConnectOptions)[];

/** The connection options the master applies (WIRE_OPTIONS). */
export type WireConnectOptions = Pick<ConnectOptions, (typeof WIRE_OPTIONS)[number]>;

/** Every message either side sends. `id` ties answers to requests; `conn` is a lent connection's handle. */
export type Message =
  | ({ t: 'hello' } & MasterIdentity & { pid?: number })
  | {
      t: 'connect';
      id: number;
      key: string;
      node: Node;
      settings: ResolvedSshConfig;
      options: WireConnectOptions;
      env: Record<string, string>;
      /** ControlPersist of this run, seconds */
      persistS: number;
    }
  | { t: 'connected'; id: number; conn: number; target: string; reused: boolean; channels?: number; peakChannels?: number }
  | { t: 'event'; id: number; kind: 'host-key-recorded'; event: HostKeyRecorded }
  | { t: 'event'; id: number; kind: 'warning'; event: TransportWarning }
  | {
      t: 'run';
      id: number;
      conn: number;
      script: string;
      timeoutMs?: number;
      maxStdoutBytes?: number;
      maxStderrBytes?: number;
      /** the run has onStdout: send stdout pieces as they come */
      stream: boolean;
      /** RunOptions.discardStdout: the result comes without its stdout (the pieces were sent) */
      discard?: boolean;
      /** the run has sendWhen: wait for a 'send' message */
      sendWhen: boolean;
    }
  | { t: 'send'; id: number; send: boolean }
  | { t: 'end'; id: number }
  | { t: 'abort'; id: number }
  | { t: 'stdout'; id: number; chunk: string }
  | { t: 'result'; id: number; result: ExecResult; channels?: number; peakChannels?: number }
  | { t: 'start'; id: number; conn: number; script: string; timeoutMs?: number }
  | { t: 'started'; id: number }
  | { t: 'error'; id: number; error: { node: string; message: string; reason: TransportFailure }; aborted?: boolean }
  | { t: 'release'; conn: number };

type HostKeyRecorded = Parameters<NonNullable<ConnectOptions['onHostKeyRecorded']>>[0];

/** One message as a line. */
export const encode = (message: Message): string => `${JSON.stringify(message)}\n`;

/**
 * Splits a byte stream into messages (one JSON object per line). A line over MAX_LINE_BYTES, or one that is not a
 * JSON object with a string `t`, is an error: the caller drops the peer.
 */
export class LineReader {
  private pending: Buffer[] = [];
  private size = 0;
  constructor(private readonly maxLine = MAX_LINE_BYTES) {}

  /** The whole messages `chunk` completes, in order. Throws Error on a bad line. */
  feed(chunk: Buffer): Message[] {
    const out: Message[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.pending.push(chunk.subarray(start, nl));
      const line = Buffer.concat(this.pending).toString('utf8');
      this.pending = [];
      this.size = 0;
      start = nl + 1;
      if (line.length > 0) out.push(parseMessage(line));
    }
    if (start < chunk.length) {
      this.size += chunk.length - start;
      if (this.size > this.maxLine) throw new Error(`control socket: a line longer than ${this.maxLine} bytes`);
      this.pending.push(chunk.subarray(start));
    }
    return out;
  }
}

function parseMessage(line: string): Message {
  const value = JSON.parse(line) as unknown;
  if (!value || typeof value !== 'object' || typeof (value as { t?: unknown }).t !== 'string')
    throw new Error('control socket: a line that is not a message');
  return value as Message;
}

const wireError = (err: unknown, node: string): { node: string; message: string; reason: TransportFailure } =>
  err instanceof TransportError
    ? { node: err.node, message: err.message, reason: err.reason }
    : { node, message: `${node}: ${(err as Error)?.message ?? String(err)}`, reason: 'lost' };

// ---------------------------------------------------------------------------------------------------------
// the master

/** How the master opens a connection (connectDirect; tests pass a fake) and checks a kept one (connectionAlive). */
export interface MasterParts {
  connect: (node: Node, options: ConnectOptions) => Promise<Connection>;
  alive: (connection: Connection) => Promise<boolean>;
}

interface Kept {
  key: string;
  node: string;
  connection?: Connection;
  opening?: Promise<Connection>;
  /** runs holding it now */
  refs: number;
  idle?: NodeJS.Timeout;
  /** seconds it stays after the last run let it go: the latest run's ControlPersist */
  persistS: number;
  hostKeys: VerifiedHostKey[];
  /** root was proved on it (the connect's `id -u` probe, or the one lend ran) */
  probed: boolean;
}

/**
 * The master's state: kept connections by key, the runs connected to it. Runs in the master process (runMaster) and,
 * in tests, in the test process with fake connections.
 */
export class ControlMaster {
  private readonly kept = new Map<string, Kept>();
  private readonly clients = new Set<Socket>();
  private readonly jumpHosts = new Map<string, JumpHosts>();
  private exitTimer?: NodeJS.Timeout;
  /** opened: connections made; reused: connections lent again (for tests and the log) */
  readonly counts = { opened: 0, reused: 0, closed: 0 };

  constructor(
    private readonly identity: MasterIdentity,
    private readonly parts: MasterParts,
    /** called when the master holds no connection and no run is connected (runMaster exits) */
    private readonly onEmpty: () => void = () => undefined,
    /** seconds to wait with nothing at all before onEmpty (the first run's ControlPersist) */
    private readonly emptyAfterS = 0,
  ) {
    this.checkEmpty();
  }

  /** Connections held now, lent or idle. */
  get size(): number {
    return this.kept.size;
  }

  /** Serves one run on `socket` until it closes; then everything it held is let go and its commands stopped. */
  serve(socket: Socket): void {
    this.clients.add(socket);
    this.checkEmpty();
    const reader = new LineReader();
    const handles = new Map<number, Kept>();
    let nextHandle = 1;
    const runs = new Map<number, { abort: AbortController; end?: () => void; send?: (v: boolean) => void }>();
    const send = (m: Message) => {
      if (!socket.destroyed) socket.write(encode(m));
    };
    // one callback per run, so that a known_hosts problem is reported once per run, as in a direct run
    // (reportKnownHostsProblems), to the connect request of the node that came upon it
    const connectIds = new Map<string, number>();
    const warn = (w: TransportWarning) => {
      const id = connectIds.get(w.node);
      if (id !== undefined) send({ t: 'event', id, kind: 'warning', event: w });
    };

    const release = (handle: number) => {
      const kept = handles.get(handle);
      if (!kept) return;
      handles.delete(handle);
      this.letGo(kept);
    };

    const onMessage = async (m: Message) => {
      switch (m.t) {
        case 'hello':
          send({ t: 'hello', ...this.identity, pid: process.pid });
          return;
        case 'connect': {
          connectIds.set(m.node.name, m.id);
          try {
            const { kept, reused } = await this.lend(m, {
              warn,
              onHostKeyRecorded: (event) => send({ t: 'event', id: m.id, kind: 'host-key-recorded', event }),
            });
            if (socket.destroyed) return this.letGo(kept);
            const conn = nextHandle++;
            handles.set(conn, kept);
            const stats = kept.connection!.stats;
            send({
              t: 'connected',
              id: m.id,
              conn,
              target: kept.connection!.target,
              reused,
              channels: stats.channels,
              peakChannels: stats.peakChannels,
            });
          } catch (err) {
            send({ t: 'error', id: m.id, error: wireError(err, m.node.name) });
          }
          return;
        }
        case 'run': {
          const kept = handles.get(m.conn);
          if (!kept?.connection) return send({ t: 'error', id: m.id, error: wireError(new Error('no such connection'), '?') });
          const connection = kept.connection;
          const abort = new AbortController();
          const entry: { abort: AbortController; end?: () => void; send?: (v: boolean) => void } = { abort };
          runs.set(m.id, entry);
          const sendWhen = m.sendWhen ? new Promise<boolean>((resolve) => (entry.send = resolve)) : undefined;
          const options: RunOptions = {
            signal: abort.signal,
            ...(m.timeoutMs !== undefined ? { timeoutMs: m.timeoutMs } : {}),
            ...(m.maxStdoutBytes !== undefined ? { maxStdoutBytes: m.maxStdoutBytes } : {}),
            ...(m.maxStderrBytes !== undefined ? { maxStderrBytes: m.maxStderrBytes } : {}),
            ...(m.stream
              ? {
                  onStdout: (chunk: string, end: () => void) => {
                    entry.end = end;
                    if (chunk) send({ t: 'stdout', id: m.id, chunk });
                  },
                  ...(m.discard ? { discardStdout: true } : {}),
                }
              : {}),
            ...(sendWhen ? { sendWhen } : {}),
          };
          try {
            const result = await connection.run(m.script, options);
            send({ t: 'result', id: m.id, result, channels: connection.stats.channels, peakChannels: connection.stats.peakChannels });
          } catch (err) {
            send({ t: 'error', id: m.id, error: wireError(err, connection.node), ...(abort.signal.aborted ? { aborted: true } : {}) });
          } finally {
            runs.delete(m.id);
          }
          return;
        }
        case 'send':
          runs.get(m.id)?.send?.(m.send);
          return;
        case 'end':
          runs.get(m.id)?.end?.();
          return;
        case 'abort':
          runs.get(m.id)?.send?.(false);
          runs.get(m.id)?.abort.abort(new Error('aborted by the run'));
          return;
        case 'start': {
          const connection = handles.get(m.conn)?.connection;
          try {
            if (!connection?.start) throw new TransportError(connection?.node ?? '?', 'this connection cannot start commands', 'closed');
            await connection.start(m.script, m.timeoutMs !== undefined ? { timeoutMs: m.timeoutMs } : {});
            send({ t: 'started', id: m.id });
          } catch (err) {
            send({ t: 'error', id: m.id, error: wireError(err, connection?.node ?? '?') });
          }
          return;
        }
        case 'release':
          release(m.conn);
          return;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      let messages: Message[];
      try {
        messages = reader.feed(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const m of messages) void onMessage(m);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.clients.delete(socket);
      // the run is gone (ended, killed): stop what it left running, let go of what it held
      for (const run of runs.values()) {
        run.send?.(false);
        run.abort.abort(new Error('the run went away'));
      }
      for (const handle of [...handles.keys()]) release(handle);
      this.checkEmpty();
    });
  }

  /** A connection for this request: a kept one that still works and whose host keys still match, else a new one. */
  private async lend(
    m: Extract<Message, { t: 'connect' }>,
    events: { warn: (w: TransportWarning) => void; onHostKeyRecorded: ConnectOptions['onHostKeyRecorded'] },
  ): Promise<{ kept: Kept; reused: boolean }> {
    const existing = this.kept.get(m.key);
    if (existing) {
      existing.refs++;
      clearTimeout(existing.idle);
      existing.persistS = m.persistS;
      try {
        if (existing.opening) await existing.opening;
        if (existing.connection && (await this.stillGood(existing, m, events.warn))) {
          this.counts.reused++;
          return { kept: existing, reused: true };
        }
      } catch {
        // the other run's open failed: open anew below
      }
      existing.refs--;
      this.drop(existing);
    }
    const kept: Kept = { key: m.key, node: m.node.name, refs: 1, persistS: m.persistS, hostKeys: [], probed: m.options.probe !== false };
    this.kept.set(m.key, kept);
    const env = { ...m.env } as NodeJS.ProcessEnv;
    const jumpKey = JSON.stringify([m.env, m.options.sshConfigFile ?? null]);
    const jumpHosts = this.jumpHosts.get(jumpKey) ?? new JumpHosts();
    this.jumpHosts.set(jumpKey, jumpHosts);
    kept.opening = this.parts.connect(m.node, {
      ...m.options,
      env,
      jumpHosts,
      presolved: new Map([[m.node.name, Promise.resolve(m.settings)]]),
      onWarning: events.warn,
      onHostKeyRecorded: events.onHostKeyRecorded,
      onHostKeyVerified: (k) => kept.hostKeys.push(k),
    });
    try {
      kept.connection = await kept.opening;
      this.counts.opened++;
      return { kept, reused: false };
    } catch (err) {
      if (this.kept.get(m.key) === kept) this.kept.delete(m.key);
      this.checkEmpty();
      throw err;
    } finally {
      kept.opening = undefined;
    }
  }

  /**
   * Whether a kept connection may be lent to this run: its server still answers (parts.alive), and every host key
   * it verified when it was made (the node's and each jump host's) is still a match in the same known_hosts files,
   * read again now, as a new connection would read them (a key removed with ssh-keygen -R, or marked @revoked, ends
   * the reuse; the new connection then refuses or asks as usual). known_hosts problems are reported as a direct run would.
   */
  private async stillGood(kept: Kept, m: Extract<Message, { t: 'connect' }>, warn: (w: TransportWarning) => void): Promise<boolean> {
    if (!(await this.parts.alive(kept.connection!))) return false;
    // a run that wants the root probe (connectNode's `id -u`) gets it on a kept connection that never had it; when it
    // fails, a new connection's own probe says why (sudo wants a password ...)
    if (m.options.probe !== false && !kept.probed) {
      const id = await kept.connection!.run('id -u', { timeoutMs: commandTimeoutFromEnv(m.env) ?? 15_000 }).catch(() => undefined);
      if (id?.stdout.trim() !== '0') return false;
      kept.probed = true;
    }
    for (const k of kept.hostKeys) {
      const known = await loadKnownHosts(k.files);
      reportKnownHostsProblems(known.problems, m.node.name, warn);
      if (verifyHostKey(known.entries, k.host, k.port, k.key).status !== 'match') return false;
    }
    return true;
  }

  /**
   * A run let go of `kept`: when no run holds it, it is closed after its ControlPersist (at once when it is no longer
   * the one kept under its key: it was found dead or stale while another run held it).
   */
  private letGo(kept: Kept): void {
    kept.refs = Math.max(0, kept.refs - 1);
    if (kept.refs > 0) return;
    if (this.kept.get(kept.key) !== kept) {
      this.closeKept(kept);
      return;
    }
    clearTimeout(kept.idle);
    kept.idle = setTimeout(() => this.drop(kept), kept.persistS * 1000);
  }

  /** Forgets a kept connection, and closes it unless a run still holds it (then letGo closes it). */
  private drop(kept: Kept): void {
    clearTimeout(kept.idle);
    if (this.kept.get(kept.key) === kept) this.kept.delete(kept.key);
    if (kept.refs === 0) this.closeKept(kept);
    this.checkEmpty();
  }

  private closeKept(kept: Kept): void {
    if (!kept.connection) return;
    this.counts.closed++;
    void kept.connection.close().catch(() => undefined);
    kept.connection = undefined;
  }

  private checkEmpty(): void {
    clearTimeout(this.exitTimer);
    if (this.kept.size > 0 || this.clients.size > 0) return;
    // a little grace when nothing was ever held (a run about to ask); none once connections have come and gone
    const after = this.counts.opened === 0 ? this.emptyAfterS * 1000 : 0;
    this.exitTimer = setTimeout(() => {
      if (this.kept.size === 0 && this.clients.size === 0) {
        for (const j of this.jumpHosts.values()) j.closeAll();
        this.onEmpty();
      }
    }, after);
  }

  /** Closes everything now (tests; the master on SIGTERM). */
  async shutdown(): Promise<void> {
    clearTimeout(this.exitTimer);
    for (const socket of this.clients) socket.destroy();
    const all = [...this.kept.values()];
    this.kept.clear();
    for (const k of all) clearTimeout(k.idle);
    await Promise.allSettled(all.map((k) => k.connection?.close()));
    for (const j of this.jumpHosts.values()) j.closeAll();
  }
}

/**
 * Listens on `path` (mode 0600, in a directory ensurePrivateDir accepted). A socket file left by a dead master is
 * replaced; when a live master already listens there, resolves undefined (this one is not needed).
 */
export async function listenControl(path: string, master: ControlMaster): Promise<Server | undefined> {
  ensurePrivateDir(dirname(path));
  const server = createServer((socket) => master.serve(socket));
  const listen = () =>
    new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      // the socket is made 0600 by bind(2) itself (umask), not a moment later by chmod
      const umask = process.umask(0o177);
      server.once('error', (err) => {
        process.umask(umask);
        resolve(err);
      });
      server.listen(path, () => {
        process.umask(umask);
        server.removeAllListeners('error');
        resolve(undefined);
      });
    });
  let err = await listen();
  if (err?.code === 'EADDRINUSE') {
    const live = await new Promise<boolean>((resolve) => {
      const probe = netConnect(path);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (live) return undefined;
    unlinkSync(path);
    err = await listen();
  }
  if (err) throw err;
  chmodSync(path, 0o600);
  return server;
}

/**
 * The master process (`meshctl __control-master --socket PATH --persist SECONDS`, started by a run, detached): serves
 * runs on PATH until it holds no connection and no run is connected (or SIGTERM), then removes its socket. Resolves
 * with the exit status then (src/cli.ts exits with it: 0, or 2 for bad arguments); rejects when it cannot listen.
 */
export async function runMaster(args: string[]): Promise<number> {
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i === -1 ? undefined : args[i + 1];
  };
  const path = value('--socket');
  const persist = Number(value('--persist') ?? '0');
  if (!path || !(persist >= 0)) {
    process.stderr.write(`usage: meshctl ${MASTER_COMMAND} --socket PATH --persist SECONDS\n`);
    return 2;
  }
  let finished: (code: number) => void = () => undefined;
  const exit = new Promise<number>((resolve) => (finished = resolve));
  let server: Server | undefined;
  const done = () => {
    server?.close();
    try {
      unlinkSync(path);
    } catch {
      // gone already
    }
    finished(0);
  };
  const master = new ControlMaster(
    ownIdentity(),
    { connect: connectDirect, alive: (c) => connectionAlive(c, ALIVE_CHECK_MS) },
    done,
    Math.max(persist, 5),
  );
  for (const sig of ['SIGINT', 'SIGHUP'] as const) process.on(sig, () => undefined);
  process.on('SIGTERM', () => void master.shutdown().then(done));
  server = await listenControl(path, master);
  // another master listens there already (two runs started one at once): this one is not needed
  if (!server) return 0;
  return exit;
}

// ---------------------------------------------------------------------------------------------------------
// the run's side

/** How a run starts a master: the command line (node and its arguments) that runs `meshctl __control-master`. */
export function masterCommand(socketPath: string, persistS: number): { command: string; args: string[]; cwd: string } {
  const root = packageRoot();
  const entry = fromSource() ? ['--import', 'tsx', join(root, 'src', 'cli.ts')] : [join(root, 'bin', 'meshctl.js')];
  return { command: process.execPath, args: [...entry, MASTER_COMMAND, '--socket', socketPath, '--persist', String(persistS)], cwd: root };
}

interface Pending {
  resolve: (m: Message) => void;
  reject: (err: Error) => void;
  onMessage?: (m: Message) => void;
}

/**
 * A run's link to the master: one unix socket carrying every node's requests. When the socket closes, every request
 * in flight fails with TransportError 'lost' and every connection lent through it is lost.
 */
export class ControlClient {
  private readonly reader = new LineReader();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** set once the socket closed */
  gone = false;
  /** the master's process id, as its hello said */
  masterPid?: number;
  private readonly goneListeners = new Set<() => void>();

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      let messages: Message[];
      try {
        messages = this.reader.feed(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const m of messages) this.dispatch(m);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.gone = true;
      const left = [...this.pending.values()];
      this.pending.clear();
      for (const p of left) p.reject(new Error('the control master went away'));
      for (const f of this.goneListeners) f();
      this.goneListeners.clear();
    });
    socket.unref();
  }

  /** Connects to the master at `path` and checks that it is one for `identity`; rejects otherwise (and closes). */
  static async open(path: string, identity: MasterIdentity): Promise<ControlClient> {
    checkSocketFile(path);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect(path);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    const client = new ControlClient(socket);
    const hello = await client.request({ t: 'hello', ...identity }, 0, undefined, HELLO_MS).catch((err: Error) => {
      client.close();
      throw err;
    });
    const theirs = hello as Extract<Message, { t: 'hello' }>;
    client.masterPid = theirs.pid;
    if (
      theirs.version !== identity.version ||
      theirs.build !== identity.build ||
      theirs.netns !== identity.netns ||
      theirs.uid !== identity.uid
    ) {
      client.close();
      throw new ControlPathError(
        `the master at ${path} is another meshctl (${theirs.build}, ${theirs.netns}) than this one (${identity.build}, ${identity.netns})`,
      );
    }
    return client;
  }

  /**
   * Sends `message` (whose id is `id`; 0 for hello) and resolves with the answer that ends it; rejects when the master
   * goes away, or when `guardMs` passes without that answer.
   */
  request(message: Message, id: number, onMessage?: (m: Message) => void, guardMs?: number): Promise<Message> {
    if (this.gone) return Promise.reject(new Error('the control master went away'));
    return new Promise<Message>((resolve, reject) => {
      const guard =
        guardMs === undefined
          ? undefined
          : setTimeout(() => {
              this.pending.delete(id);
              this.settled();
              reject(new Error(`the control master did not answer within ${Math.round(guardMs / 1000)} s`));
            }, guardMs);
      this.pending.set(id, {
        resolve: (m) => {
          clearTimeout(guard);
          this.settled();
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(guard);
          this.settled();
          reject(e);
        },
        onMessage,
      });
      // a request in flight keeps the process alive; none, and the socket does not (see settled)
      this.socket.ref();
      this.send(message);
    });
  }

  /** A fresh request id (for messages the caller wants to follow up, e.g. abort). */
  id(): number {
    return this.nextId++;
  }

  /** Sends a message with no answer expected (send, end, abort, release). */
  send(message: Message): void {
    if (!this.gone) this.socket.write(encode(message));
  }

  /** Calls `f` once when the master goes away. */
  onGone(f: () => void): void {
    if (this.gone) f();
    else this.goneListeners.add(f);
  }

  close(): void {
    this.socket.destroy();
  }

  private settled(): void {
    if (this.pending.size === 0) this.socket.unref();
  }

  private dispatch(m: Message): void {
    const id = m.t === 'hello' ? 0 : 'id' in m ? m.id : undefined;
    if (id === undefined) return;
    const p = this.pending.get(id);
    if (!p) return;
    if (m.t === 'event' || m.t === 'stdout') {
      p.onMessage?.(m);
      return;
    }
    this.pending.delete(id);
    p.resolve(m);
  }
}

/** The run's handle on a connection the master lends: every call goes to the master. */
class ProxyConnection implements Connection {
  readonly stats: ConnectionStats;
  private lost?: TransportError;
  private released = false;
  private readonly baseChannels: number;

  constructor(
    private readonly client: ControlClient,
    readonly node: string,
    readonly target: string,
    private readonly conn: number,
    private readonly defaultTimeoutMs: number,
    connected: Extract<Message, { t: 'connected' }>,
    stats: ConnectionStats,
  ) {
    this.stats = stats;
    this.baseChannels = connected.channels ?? 0;
    if (connected.channels !== undefined) {
      this.stats.channels = 0;
      this.stats.peakChannels = connected.peakChannels ?? 0;
    }
    client.onGone(() => {
      this.lost ??= new TransportError(node, `${node} (${target}): the control master went away`, 'lost');
    });
  }

  private failure(error: Error): TransportError {
    return this.lost ?? new TransportError(this.node, `${this.node} (${this.target}): ${error.message}`, 'lost');
  }

  private countChannels(m: { channels?: number; peakChannels?: number }): void {
    if (m.channels !== undefined && this.stats.channels !== undefined) this.stats.channels = m.channels - this.baseChannels;
    if (m.peakChannels !== undefined) this.stats.peakChannels = m.peakChannels;
  }

  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    const { signal, onStdout, sendWhen } = options;
    if (signal?.aborted) throw signal.reason;
    if (this.lost) throw this.lost;
    const id = this.client.id();
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.client.send({ t: 'end', id });
    };
    const onAbort = () => this.client.send({ t: 'abort', id });
    signal?.addEventListener('abort', onAbort, { once: true });
    if (sendWhen) void sendWhen.then((send) => this.client.send({ t: 'send', id, send }));
    let answer: Message;
    try {
      answer = await this.client.request(
        {
          t: 'run',
          id,
          conn: this.conn,
          script,
          timeoutMs: options.timeoutMs ?? this.defaultTimeoutMs,
          ...(options.maxStdoutBytes !== undefined ? { maxStdoutBytes: options.maxStdoutBytes } : {}),
          ...(options.maxStderrBytes !== undefined ? { maxStderrBytes: options.maxStderrBytes } : {}),
          stream: !!onStdout,
          ...(onStdout && options.discardStdout ? { discard: true } : {}),
          sendWhen: !!sendWhen,
        },
        id,
        (m) => {
          if (m.t === 'stdout' && onStdout && !ended) onStdout(m.chunk, end);
        },
      );
    } catch (err) {
      throw this.failure(err as Error);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    if (answer.t === 'error') {
      if (answer.aborted && signal?.aborted) throw signal.reason;
      const error = new TransportError(answer.error.node, answer.error.message, answer.error.reason);
      if (answer.error.reason === 'lost' || answer.error.reason === 'timeout' || answer.error.reason === 'closed') this.lost ??= error;
      throw error;
    }
    if (answer.t !== 'result') throw this.failure(new Error(`unexpected answer ${answer.t}`));
    this.stats.commands++;
    this.stats.remoteMs += answer.result.durationMs;
    this.countChannels(answer);
    return answer.result;
  }

  async start(script: string, options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.lost) throw this.lost;
    let answer: Message;
    try {
      const id = this.client.id();
      answer = await this.client.request({ t: 'start', id, conn: this.conn, script, ...options }, id);
    } catch (err) {
      throw this.failure(err as Error);
    }
    if (answer.t === 'error') throw new TransportError(answer.error.node, answer.error.message, answer.error.reason);
    this.stats.commands++;
  }

  async close(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.lost ??= new TransportError(this.node, `${this.node} (${this.target}): connection already closed`, 'closed');
    this.client.send({ t: 'release', conn: this.conn });
  }
}

/** Per process: the link to the master for each socket path (undefined: the master could not be used). */
const links = new Map<string, Promise<ControlClient | undefined>>();
/**
 * Per process: each control directory's check (ensurePrivateDir) and the master's socket path in it, or why it was
 * refused. A run asks for it once per node (issue 10: connectThroughMaster made the directory and checked it, and
 * hashed the identity into the path, for every node); the link the path leads to is kept in `links` anyway.
 */
const controlPaths = new Map<string, { path: string } | { refused: string }>();
/** This process's MasterIdentity (see processIdentity). */
let identityOfProcess: MasterIdentity | undefined;

/** Work connectThroughMaster does once per process, counted for tests (never timed). */
export const perProcessWork = { identities: 0, directoryChecks: 0 };

/**
 * ownIdentity, worked out once per process: its parts (meshctl's version and build, the network namespace, the user)
 * do not change while it runs, and each costs a system call or two (readlink, stat).
 */
export function processIdentity(): MasterIdentity {
  if (!identityOfProcess) {
    perProcessWork.identities++;
    identityOfProcess = ownIdentity();
  }
  return identityOfProcess;
}

/** The master's socket path under `env`'s control directory, the directory checked once per process (controlPaths). */
function controlPath(env: NodeJS.ProcessEnv, identity: MasterIdentity): { path: string } | { refused: string } {
  const dir = controlDir(env);
  let known = controlPaths.get(dir);
  if (!known) {
    perProcessWork.directoryChecks++;
    try {
      ensurePrivateDir(dir);
      known = { path: masterSocketPath(dir, identity) };
    } catch (err) {
      known = { refused: (err as Error).message };
    }
    controlPaths.set(dir, known);
  }
  return known;
}
/** Warned already (one warning per run about the master). */
let warned = false;

/** The process ids of the masters this process is linked to (tests: to end them whatever happens). */
export async function linkedMasterPids(): Promise<number[]> {
  const clients = await Promise.all(links.values());
  return clients.flatMap((c) => (c?.masterPid ? [c.masterPid] : []));
}

/** Forgets the links (tests). */
export function resetControlLinks(): void {
  for (const l of links.values()) void l.then((c) => c?.close());
  links.clear();
  controlPaths.clear();
  warned = false;
}

/** Starts a master for `path` (detached, stdio to /dev/null) and waits until it listens. */
async function startMaster(path: string, persistS: number, identity: MasterIdentity): Promise<ControlClient> {
  const { command, args, cwd } = masterCommand(path, persistS);
  const child = spawn(command, args, { cwd, detached: true, stdio: 'ignore', env: process.env });
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));
  child.once('error', () => (exited = true));
  const deadline = Date.now() + MASTER_START_MS;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await ControlClient.open(path, identity);
    } catch (err) {
      last = err;
      // a socket or master that is not ours is final; no socket yet (lstat's ENOENT) is waited out
      if (err instanceof ControlPathError) throw err;
    }
    // another run's master may have won the race to listen: this one exits, and that one answers. A child exits only
    // then, or when it could not start: one more try is the last, not a wait until the deadline
    if (exited) return await ControlClient.open(path, identity);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the control master did not start within ${MASTER_START_MS / 1000} s${last ? ` (${(last as Error).message})` : ''}`);
}

/** This run's link to its master, started when none listens; undefined (after one warning) when it cannot be had. */
function link(
  env: NodeJS.ProcessEnv,
  persistS: number,
  identity: MasterIdentity,
  warn: (message: string) => void,
): Promise<ControlClient | undefined> {
  const place = controlPath(env, identity);
  if ('refused' in place) {
    warn(`--control-persist: ${place.refused}; connecting directly`);
    return Promise.resolve(undefined);
  }
  const { path } = place;
  let got = links.get(path);
  if (!got) {
    got = (async () => {
      try {
        return await ControlClient.open(path, identity);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (!(code === 'ENOENT' || code === 'ECONNREFUSED')) throw err;
      }
      return startMaster(path, persistS, identity);
    })().catch((err: Error) => {
      warn(`--control-persist: cannot use the control master (${err.message}); connecting directly`);
      return undefined;
    });
    links.set(path, got);
  }
  return got.then((c) => {
    if (c?.gone) warn('--control-persist: the control master went away; connecting directly');
    return c?.gone ? undefined : c;
  });
}

/** The options the master needs to connect a node as this run would: WIRE_OPTIONS that are set (JSON has no undefined). */
export function wireOptions(options: ConnectOptions): WireConnectOptions {
  const wire: Record<string, unknown> = {};
  for (const name of WIRE_OPTIONS) if (options[name] !== undefined) wire[name] = options[name];
  return wire as WireConnectOptions;
}

/**
 * connectNode with ConnectOptions.controlPersistS above 0: the node's connection from the master (reused or opened
 * there), else, when the master cannot be used, a direct connection (with one warning per run). Errors of the node
 * itself (host key, auth, unreachable) are the node's, as in a direct run: TransportError.
 */
export async function connectThroughMaster(node: Node, options: ConnectOptions): Promise<Connection> {
  const env = options.env ?? process.env;
  if (options.signal?.aborted) throw options.signal.reason;
  const startMs = performance.now();
  // a TCP connection begun early for a direct login is not needed when the master has one
  const early = options.earlySockets?.get(node.name);
  const settings = await resolveNode(node, options, env);
  const configMs = performance.now();
  const identity = processIdentity();
  const persistS = options.controlPersistS ?? 0;
  const warn = (message: string) => {
    if (warned) return;
    warned = true;
    options.onWarning?.({ node: node.name, kind: 'control-master', file: '', message, problems: [] });
  };
  const direct = () => connectDirect(node, { ...options, controlPersistS: 0 });
  const client = await link(env, persistS, identity, warn);
  if (!client) return direct();
  void early?.then((e) => e?.socket.destroy());
  const connectCallMs = performance.now();
  const key = connectionKey(identity, node, settings, options, env);
  const id = client.id();
  // Ctrl-C while the master connects: this node's connect ends now (the master still finishes it, and lets it go when
  // this run's link closes); the link itself stays, so the other nodes' commands are stopped as on any abort
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(options.signal!.reason);
  });
  aborted.catch(() => undefined);
  let answer: Message;
  try {
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) onAbort(); // aborted while the settings were resolved
    const asked = client.request(
      { t: 'connect', id, key, node, settings, options: wireOptions(options), env: connectEnv(env), persistS },
      id,
      (m) => {
        if (m.t !== 'event') return;
        if (m.kind === 'host-key-recorded') options.onHostKeyRecorded?.(m.event);
        else options.onWarning?.(m.event);
      },
    );
    answer = await Promise.race([asked, aborted]);
  } catch (err) {
    if (options.signal?.aborted) throw options.signal.reason;
    warn(`--control-persist: the control master went away (${(err as Error).message}); connecting directly`);
    return direct();
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (answer.t === 'error') throw new TransportError(node.name, answer.error.message, answer.error.reason);
  if (answer.t !== 'connected') return direct();
  const readyMs = performance.now();
  const cpu = process.cpuUsage();
  const round = (ms: number) => Math.round(ms * 10) / 10;
  const stats: ConnectionStats = {
    commands: 0,
    remoteMs: 0,
    connectMs: Math.round(readyMs - startMs),
    timeline: {
      startMs: round(startMs),
      configMs: round(configMs),
      connectCallMs: round(connectCallMs),
      tcpMs: round(readyMs),
      handshakeMs: round(readyMs),
      loginMs: round(readyMs),
      loginCpuMs: round((cpu.user + cpu.system) / 1000),
      readyMs: round(readyMs),
    },
    reused: answer.reused,
  };
  const timeoutMs = options.commandTimeoutMs ?? commandTimeoutFromEnv(env) ?? 60_000;
  return new ProxyConnection(client, node.name, answer.target, answer.conn, timeoutMs, answer, stats);
}

/** For tests: a ControlClient on an already connected socket (an in-process master), checked like open(). */
export const openControlClient = ControlClient.open.bind(ControlClient);
