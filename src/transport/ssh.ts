/**
 * The ssh2 adapter behind the Connection interface.
 *
 * - Settings come from `ssh -G` (see ssh-config.ts for the precedence rules).
 * - The host key is checked against known_hosts inside ssh2's hostVerifier, i.e. during key exchange and BEFORE
 *   authentication: a node whose key is unknown, changed or revoked never sees a login attempt, let alone a
 *   command. Unknown keys are refused unless `acceptNew` (then recorded); changed and revoked keys always are.
 * - Authentication tries, in order: the inventory's identityFile, MESHCTL_IDENTITY, the ssh-agent
 *   (SSH_AUTH_SOCK), then the ssh config's IdentityFile lines and ~/.ssh/id_{ed25519,ecdsa,rsa}; missing files
 *   are skipped. Explicit keys go first so MaxAuthTries (6) is not spent on guesses. Encrypted key files are
 *   never decrypted (meshctl asks for no passphrase): load them into ssh-agent. IdentitiesOnly is not honoured.
 * - ProxyJump: each hop is an ssh2 Client whose forwardOut stream carries the next one. Hops are verified and
 *   authenticated like nodes. Within one JumpHosts cache (the pool makes one), nodes behind the same bastion
 *   share one connection to it (one login to the bastion, not one per node behind it).
 * - Commands: the remote login shell gets `[sudo -n] sh -c GUARD meshctl`, where GUARD execs `sh` under the remote
 *   `timeout` (when installed) so it dies even if the channel is gone, and the script itself goes to the
 *   channel's stdin, framed as one brace group reading /dev/null (no argument size limit; see wrapCommand).
 *   Locally a timer signals the session, closes the channel and returns code 124 at the deadline.
 *   sshd refuses "signal" requests for root logins (no privilege separation after a root login), so for root
 *   the remote `timeout` is what kills a timed-out command: up to 1 s after a sub-second deadline.
 * - Abort (RunOptions.signal): GUARD marks the run's processes with MESHCTL_RUN=TOKEN in their environment; on
 *   abort a stop script on a new channel TERMs them, KILLs them after ABORT_GRACE_MS, and only then does run()
 *   reject with the abort reason, so Ctrl-C leaves nothing running, root login or not.
 * - Output: at most RunOptions.maxStdoutBytes (4 MiB) and maxStderrBytes (1 MiB) are held per command; past a cap
 *   the command is stopped like an aborted one and its result has code OUTPUT_CAP_EXIT (see ./types.ts).
 * - At most `maxChannels` (8) commands run at once per connection, below OpenSSH's MaxSessions 10; others queue.
 * - Root: commands go through `sudo -n` when the node's become is 'sudo' OR the effective user (after the ssh
 *   config) is not root, since the Connection contract is "runs as root". Unless `probe: false`, connectNode runs
 *   `id -u` once and fails with reason 'sudo' when that is not 0 (e.g. "sudo: a password is required").
 * - The inventory's identityFile and MESHCTL_IDENTITY are offered to jump hosts too; other hop settings come
 *   from the ssh config of the hop's own name. A HostKeyAlias is looked up as written (no port), like OpenSSH.
 * - Messages name the node and user@host:port, are one line, and never contain key material.
 */
// ssh2's client and key parser by path, not its package entry, which also loads its server, key generator and HTTP
// agents (./ssh2-parts.d.ts; issue 10: less to load and compile before the first login)
import Client from 'ssh2/lib/client.js';
import keyParser from 'ssh2/lib/protocol/keyParser.js';
import type { AnyAuthMethod, AuthenticationType, ClientChannel, ConnectConfig, NextAuthHandler, ParsedKey } from 'ssh2';
import { constants as osConstants, homedir } from 'node:os';
import { createPrivateKey, randomBytes, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Node } from '../inventory/types.js';
import type { EarlySocket } from './early-socket.js';
import {
  appendKnownHost,
  formatKnownHostsProblem,
  knownHostName,
  knownKeyTypes,
  loadKnownHosts,
  verifyHostKey,
  type HostKeyVerdict,
  type KnownHostEntry,
  type KnownHostsProblem,
} from './known-hosts.js';
import {
  expandTilde,
  localUser,
  resolveNodeSshConfig,
  resolveSshConfig,
  SshConfigError,
  type JumpSpec,
  type ResolvedSshConfig,
} from './ssh-config.js';
import {
  shellQuote,
  TransportError,
  type Connection,
  type ConnectionStats,
  type ConnectTimeline,
  commandTimeoutFromEnv,
  DEFAULT_MAX_STDERR_BYTES,
  DEFAULT_MAX_STDOUT_BYTES,
  ENDED_EXIT,
  OUTPUT_CAP_EXIT,
  type ExecResult,
  type RunOptions,
  type TransportFailure,
} from './types.js';

type SshClient = InstanceType<typeof Client>;

export interface ConnectOptions {
  /** trust an unknown host key on first use and record it (--accept-new); changed keys are still refused */
  acceptNew?: boolean;
  /** default: ssh config ConnectTimeout, else 10 s; covers TCP, handshake and authentication of every hop */
  connectTimeoutMs?: number;
  /** default: ssh config ServerAliveInterval, else 5 s */
  keepaliveIntervalMs?: number;
  /** default: ssh config ServerAliveCountMax, else 3 */
  keepaliveCountMax?: number;
  /** per-command deadline when run() is given none; default MESHCTL_COMMAND_TIMEOUT (seconds), else 60 s */
  commandTimeoutMs?: number;
  /** concurrent channels per connection; default 8 (OpenSSH MaxSessions defaults to 10) */
  maxChannels?: number;
  /** run one `id -u` after login to prove root (or passwordless sudo) works; default true */
  probe?: boolean;
  /** ssh config file (MESHCTL_SSH_CONFIG wins) */
  sshConfigFile?: string;
  /**
   * Settings already being resolved, by node name: `resolveNodeSshConfig(node.ssh, options)` started earlier, e.g. while
   * this module (and ssh2) still loaded. A node without an entry is resolved when it connects.
   */
  presolved?: ReadonlyMap<string, Promise<ResolvedSshConfig>>;
  /**
   * TCP connections already begun, by node name (connect-options.ts opens them as soon as `ssh -G` answers, while
   * ssh2 still loads). Taken only by a node without ProxyJump whose settings name the same host and port, and only
   * while not failed; otherwise ssh2 connects by itself as usual.
   */
  earlySockets?: ReadonlyMap<string, Promise<EarlySocket | undefined>>;
  /** environment to read MESHCTL_*, SSH_AUTH_SOCK and HOME from; default process.env */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** share bastion connections between nodes (connectAll passes one) */
  jumpHosts?: JumpHosts;
  /** told when --accept-new recorded a key (the UI should say so) */
  onHostKeyRecorded?: (event: { node: string; host: string; port: number; keyType: string; fingerprint: string; file: string }) => void;
  /**
   * told about problems the user should fix but that do not stop the connection (the UI should show them as
   * warnings). Today: known_hosts lines that cannot be parsed (skipped, as OpenSSH does) and known_hosts files
   * that cannot be read: one event per file, once per run (per callback function: connectAll passes the same one
   * for every node), however many nodes and hops read the file.
   */
  onWarning?: (event: TransportWarning) => void;
  /**
   * OpenSSH's ControlPersist, in seconds (--control-persist, MESHCTL_CONTROL_PERSIST): when above 0, connectNode asks
   * a background master process (./control-master.ts) for the node's connection, which it keeps open for this long
   * after the last run let it go; 0 or unset connects directly (the default). Falls back to a direct connection,
   * with one warning, when the master cannot be reached or started.
   */
  controlPersistS?: number;
  /**
   * told of every host key that passed verification (a node's or a jump host's), with the known_hosts files it was
   * checked against: the control master checks a kept connection's keys again before it lends it to another run
   */
  onHostKeyVerified?: (event: VerifiedHostKey) => void;
}

/** A host key accepted during a key exchange: the key as sent (SSH wire format) and where it was looked up. */
export interface VerifiedHostKey {
  /** the name and port looked up in known_hosts (HostKeyAlias and port 22 when an alias is set, as OpenSSH does) */
  host: string;
  port: number;
  key: Buffer;
  /** the known_hosts files read for it */
  files: string[];
}

/** A problem worth telling the user about that did not stop the connection. */
export interface TransportWarning {
  /** the node whose connection came upon it first */
  node: string;
  /** 'control-master': --control-persist could not use its master; the run connected directly (./control-master.ts) */
  kind: 'known-hosts' | 'control-master';
  file: string;
  /** one line, e.g. "/root/.ssh/known_hosts:3: key is not base64 (line ignored); ..." */
  message: string;
  problems: KnownHostsProblem[];
}

/** Files already warned about, per onWarning callback (i.e. per run). */
const warnedFiles = new WeakMap<object, Set<string>>();

/** Sends one warning per known_hosts file with problems, unless this callback was already told about that file. */
export function reportKnownHostsProblems(problems: KnownHostsProblem[], node: string, onWarning?: (event: TransportWarning) => void): void {
  if (!onWarning || problems.length === 0) return;
  let warned = warnedFiles.get(onWarning);
  if (!warned) {
    warned = new Set();
    warnedFiles.set(onWarning, warned);
  }
  const byFile = new Map<string, KnownHostsProblem[]>();
  for (const p of problems) byFile.set(p.file, [...(byFile.get(p.file) ?? []), p]);
  for (const [file, list] of byFile) {
    if (warned.has(file)) continue;
    warned.add(file);
    const message = list.map((p) => `${formatKnownHostsProblem(p)}${p.line !== undefined ? ' (line ignored)' : ''}`).join('; ');
    onWarning({ node, kind: 'known-hosts', file, message, problems: list });
  }
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 5_000;
export const DEFAULT_KEEPALIVE_COUNT_MAX = 3;
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_CHANNELS = 8;
/** grace the remote `timeout` gives a command after TERM before KILL */
const REMOTE_KILL_AFTER_S = 5;

// ---------------------------------------------------------------------------------------------------------
// command wrapping (pure)

/** What run() sends: a small fixed command line, and the script, framed, for the channel's stdin. */
export interface RemoteCommand {
  /** the command line for the remote login shell: `[sudo -n] sh -c GUARD meshctl`, a few hundred bytes whatever the script */
  command: string;
  /** the script framed by frameScript, written to the channel's stdin and then closed */
  input: string;
}

export interface WrapOptions {
  sudo: boolean;
  /** the remote `timeout` deadline; rounded up to whole seconds */
  timeoutMs?: number;
  /**
   * marks every process of this run: GUARD exports MESHCTL_RUN=TOKEN, so the processes that inherit it can be
   * found and killed from another channel on abort (stopScript). Lower-case hex, made by runToken().
   */
  token?: string;
  /**
   * the script goes in the command line itself (`sh -c SCRIPT`), not on stdin: for Connection.start, whose script
   * must be whole on the node once sshd has accepted the exec request. Only for small scripts (one argument is capped
   * at 131,072 bytes on Linux); `input` is then empty.
   */
  inline?: boolean;
}

const TOKEN = /^[0-9a-f]{8,64}$/;

/** A fresh run token (16 hex digits). */
export const runToken = (): string => randomBytes(8).toString('hex');

/**
 * Frames a script for a shell that reads its commands from stdin. The script becomes ONE brace group whose own
 * stdin is /dev/null: POSIX sh (XCU 2.9.4) must parse a compound command to its end before it runs any of it, so
 * no command inside can read (swallow) the rest of the script, a truncated transfer is a syntax error that runs
 * nothing (as a truncated `sh -c` argument would), and here-documents, `exit`, `set -e`, `&` and `wait` behave
 * exactly as in `sh -c SCRIPT` (a brace group is not a subshell). The newline before `}` ends a last line that is a
 * comment or lacks its newline. The commands get /dev/null as stdin, i.e. immediate end of file, as before.
 */
export function frameScript(script: string): string {
  return `{\n${script}\n} </dev/null\n`;
}

/**
 * The command line for the remote login shell and the input for its stdin. The script travels on stdin, never as
 * an argument: Linux caps one argument at 131,072 bytes (MAX_ARG_STRLEN), which verify's ping + MTU script reaches
 * at ~150 peers. GUARD execs `sh` (which reads the framed script from stdin) under the remote `timeout` when that
 * exists (GNU coreutils and busybox both have it), whole seconds, rounded up, so the script dies even if our
 * channel close never reaches it; without `timeout` only the local deadline and the channel signal apply.
 * `timeout` runs the command in its own process group and forwards TERM to all of it, with KILL 5 s later.
 * Throws on a malformed token (it is pasted into the guard).
 */
export function wrapCommand(script: string, options: WrapOptions): RemoteCommand {
  if (options.token !== undefined && !TOKEN.test(options.token)) throw new Error(`bad run token ${options.token}`);
  // sudo resets the environment: the login's SSH_CONNECTION (the operator's address as the node sees it: the facts'
  // `operator` section) comes through as an argument, so the script need not look for it in an ancestor's environ
  // (one `tr` per ancestor; issue 10)
  const sshConnection = options.sudo ? '[ -n "${1:-}" ] && SSH_CONNECTION=$1 && export SSH_CONNECTION; ' : '';
  const mark = `${sshConnection}${options.token ? `MESHCTL_RUN=${options.token}; export MESHCTL_RUN; ` : ''}`;
  // inline: the script as the inner shell's -c argument (its commands read /dev/null: sshd's pipe may be gone)
  const shell = options.inline ? `sh -c ${shellQuote(`${script}\n`)} meshctl </dev/null` : 'sh';
  // inline without a deadline: the guard's own shell runs the script, one brace group as frameScript makes it, with
  // no positional parameters (issue 10: one exec fewer on the node for the run lock's release)
  let guard = options.inline ? `${mark}set --; {\n${script}\n} </dev/null` : `${mark}exec ${shell}`;
  if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
    const seconds = Math.max(1, Math.ceil(options.timeoutMs / 1000));
    guard = `${mark}if command -v timeout >/dev/null 2>&1; then exec timeout -k ${REMOTE_KILL_AFTER_S} ${seconds} ${shell}; fi; exec ${shell}`;
  }
  return {
    command: `${options.sudo ? 'sudo -n ' : ''}sh -c ${shellQuote(guard)} meshctl${options.sudo ? ' "$SSH_CONNECTION"' : ''}`,
    input: options.inline ? '' : frameScript(script),
  };
}

/** What the stop script's deadline allows beyond ABORT_GRACE_MS, for opening its channel on a slow node. */
const STOP_CHANNEL_SLACK_MS = 30_000;

/** How long stopScript lets the processes of an aborted run handle TERM before it sends KILL. */
export const ABORT_GRACE_MS = 2_000;

/**
 * The script that stops aborted runs, run as root on a new channel (sshd refuses "signal" requests for root
 * logins, and a non-root login cannot signal what sudo started). It finds the processes by the MESHCTL_RUN
 * token in /proc/PID/environ (every process the run started inherits it, whatever its process group or
 * session), sends each TERM once (`timeout` forwards it to its whole process group), waits up to `graceMs`,
 * then KILLs what is left. It keeps looking for at least 0.3 s, so a run whose guard was still starting is
 * caught too. Exit 0 when nothing is left, 1 when something survived KILL.
 */
export function stopScript(tokens: string[], graceMs = ABORT_GRACE_MS): string {
  for (const t of tokens) if (!TOKEN.test(t)) throw new Error(`bad run token ${t}`);
  const ticks = Math.max(1, Math.ceil(graceMs / 100));
  return [
    'export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    `pat='^MESHCTL_RUN=(${tokens.join('|')})$'`,
    // GNU grep reads every environ in one process; elsewhere (busybox without -z) one tr + grep per process
    `if printf 'a\\0' | grep -qzx a 2>/dev/null; then`,
    `  pids() { grep -lzxE "$pat" /proc/[0-9]*/environ 2>/dev/null | sed 's,^/proc/,,; s,/environ$,,'; }`,
    'else',
    `  pids() { for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' <"$f" 2>/dev/null | grep -qxE "$pat" && { p=\${f#/proc/}; echo "\${p%/environ}"; }; done; }`,
    'fi',
    'nap() { sleep 0.1 2>/dev/null || sleep 1; }',
    "seen=' '; i=0",
    'while :; do',
    '  p=$(pids)',
    '  if [ -z "$p" ]; then [ $i -ge 3 ] && exit 0; else',
    `    if [ $i -lt ${ticks} ]; then`,
    '      for x in $p; do case "$seen" in *" $x "*) ;; *) kill -TERM "$x" 2>/dev/null; seen="$seen$x " ;; esac; done',
    '    else',
    '      kill -KILL $p 2>/dev/null',
    `      [ $i -ge ${ticks + 20} ] && exit 1`,
    '    fi',
    '  fi',
    '  i=$((i + 1)); nap',
    'done',
  ].join('\n');
}

const SUDO_PASSWORD = /sudo: (a password is required|a terminal is required|no tty present)/;
/** 4194304 -> "4 MiB", 1500 -> "1500 bytes": caps named in messages. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** True when stderr says sudo wanted a password (sudo -n refuses instead of prompting). */
export const sudoNeedsPassword = (stderr: string): boolean => SUDO_PASSWORD.test(stderr);

/** Exit status for a command killed by a signal, as a shell reports it (128 + number). */
export function signalExitCode(signal: string | undefined): number {
  if (!signal) return 255;
  const name = (signal.startsWith('SIG') ? signal : `SIG${signal}`) as keyof typeof osConstants.signals;
  const number = osConstants.signals[name];
  return typeof number === 'number' ? 128 + number : 255;
}

/**
 * ssh2 serverHostKey preference: algorithms for the key types known_hosts already has come first, in the default
 * order (ed25519 first), never in the file's order. This is OpenSSH's rule (sshconnect2.c order_hostkeyalgs walks its
 * default list and moves the known ones ahead): a host whose known_hosts lists its ECDSA key before its ED25519 key
 * is still asked for the ED25519 one, so a changed ED25519 key is refused as `ssh` refuses it, not passed over for an
 * unchanged ECDSA key.
 */
export function hostKeyAlgorithms(knownTypes: string[]): string[] {
  const all = [
    'ssh-ed25519',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'rsa-sha2-512',
    'rsa-sha2-256',
    'ssh-rsa',
  ];
  const forType = (t: string) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]);
  const known = new Set(knownTypes.flatMap(forType));
  const preferred = all.filter((a) => known.has(a));
  return [...new Set([...preferred, ...all])];
}

const hostKeyFileType = (t: string) => (t === 'ssh-ed25519' ? 'ed25519' : t.startsWith('ecdsa') ? 'ecdsa' : t === 'ssh-rsa' ? 'rsa' : t);

const describeKeyType = (t: string) => (t === 'ssh-ed25519' ? 'ED25519' : t.startsWith('ecdsa') ? 'ECDSA' : t === 'ssh-rsa' ? 'RSA' : t);

// ---------------------------------------------------------------------------------------------------------
// authentication

interface AuthCandidate {
  /** file path or "ssh-agent"; never key material */
  label: string;
  method: (username: string) => AnyAuthMethod;
}

interface AuthPlan {
  candidates: AuthCandidate[];
  /** key files skipped because they are encrypted */
  encrypted: string[];
  /** key files that exist but could not be read or parsed */
  unusable: string[];
  agent?: string;
}

/** What one identity file held when it was last read: the key ssh2 is handed, or why it cannot be used. */
/** A usable key file: its key as ssh2 parsed it (handed to ssh2 as is: it parses no key twice). */
type IdentityRead = { key: ParsedKey } | { encrypted: true } | { unusable: string };

/**
 * Identity files read so far in this process, by path, with the stat they were read under (inode, size, mtime,
 * ctime): each node's login needs the same files, and reading and parsing them once per node cost the later nodes'
 * set-up several ms each on the critical path to the first login (issue 10). A file that changed since is read again.
 * Holds only what ssh2 is handed for the login anyway (the key as ssh2 parsed it: ssh2 took the file's bytes and
 * parsed them again for each node's login); nothing is written anywhere.
 */
const identityReads = new Map<string, { stamp: string; read: IdentityRead }>();

const statStamp = (s: Stats) => `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;

/**
 * One identity file's content and whether ssh2 can use it, read once per process while the file is unchanged
 * (see identityReads). Throws the stat's error (ENOENT ...) for a file that cannot be read.
 */
/** Bytes an identity file may have: an OpenSSH RSA-16384 private key is ~12 KB, so 1 MiB is any key with room. */
const IDENTITY_MAX_BYTES = 1024 * 1024;

function readIdentity(file: string): IdentityRead {
  const st = statSync(file);
  // a device or FIFO named as the key (an inventory is input someone may hand you: Q10 F6): /dev/zero was read until
  // memory ran out, a FIFO blocked the process for good, deaf to Ctrl-C (a synchronous read)
  if (!st.isFile()) return { unusable: 'not a regular file' };
  if (st.size > IDENTITY_MAX_BYTES)
    return { unusable: `${st.size} bytes: larger than any private key file (${IDENTITY_MAX_BYTES} at most)` };
  const stamp = statStamp(st);
  const cached = identityReads.get(file);
  if (cached?.stamp === stamp) return cached.read;
  const data = readFileSync(file);
  const parsed = keyParser.parseKey(data);
  let read: IdentityRead;
  if (parsed instanceof Error) {
    read = /encrypted|passphrase/i.test(parsed.message) ? { encrypted: true } : { unusable: 'not a private key ssh2 can read' };
  } else {
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    read = key?.isPrivateKey() ? { key } : { unusable: 'not a private key' };
  }
  identityReads.set(file, { stamp, read });
  return read;
}

/**
 * Reads identity files (missing ones are skipped) and builds the ordered list of methods to try. Each file is read
 * and parsed once per process while it is unchanged (see identityReads), however many nodes log in with it.
 */
export function planAuth(node: Node, settings: ResolvedSshConfig, env: NodeJS.ProcessEnv, home: string): AuthPlan {
  const explicit = [node.ssh.identityFile, env.MESHCTL_IDENTITY].filter((f): f is string => !!f).map((f) => expandTilde(f, home));
  const implicit = [...settings.identityFiles, ...['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(home, '.ssh', f))];
  const plan: AuthPlan = { candidates: [], encrypted: [], unusable: [] };
  const seen = new Set<string>();
  const addFile = (file: string, mustExist: boolean) => {
    if (seen.has(file)) return;
    seen.add(file);
    let read: IdentityRead;
    try {
      read = readIdentity(file);
    } catch (err) {
      if (mustExist) plan.unusable.push(`${file} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      return;
    }
    if ('encrypted' in read) plan.encrypted.push(file);
    else if ('unusable' in read) {
      if (mustExist) plan.unusable.push(`${file} (${read.unusable})`);
    } else {
      const { key } = read;
      plan.candidates.push({ label: file, method: (username) => ({ type: 'publickey', username, key }) });
    }
  };
  for (const f of explicit) addFile(f, true);
  const agent = env.SSH_AUTH_SOCK;
  if (agent) {
    plan.agent = agent;
    plan.candidates.push({ label: 'ssh-agent', method: (username) => ({ type: 'agent', username, agent }) });
  }
  for (const f of implicit) addFile(f, false);
  return plan;
}

function authFailureMessage(plan: AuthPlan, tried: string[]): string {
  const parts: string[] = [];
  if (plan.candidates.length === 0) parts.push('no usable identity (no key file found and no ssh-agent)');
  else parts.push(`authentication failed (tried: ${tried.length ? tried.join(', ') : plan.candidates.map((c) => c.label).join(', ')})`);
  if (plan.encrypted.length) {
    parts.push(
      `encrypted key${plan.encrypted.length > 1 ? 's' : ''} skipped: ${plan.encrypted.join(', ')}; meshctl does not ask for passphrases: ` +
        (plan.agent ? 'add it to your ssh-agent with ssh-add' : 'start ssh-agent (SSH_AUTH_SOCK is unset) and ssh-add it'),
    );
  }
  if (plan.unusable.length) parts.push(`unusable: ${plan.unusable.join(', ')}`);
  return parts.join('; ');
}

// ---------------------------------------------------------------------------------------------------------
// known_hosts

interface HostKeyPolicy {
  readFiles: string[];
  /** where --accept-new records keys */
  writeFile: string;
  hash: boolean;
  acceptNew: boolean;
}

export function knownHostsFiles(settings: ResolvedSshConfig, env: NodeJS.ProcessEnv, home: string): { read: string[]; write: string } {
  const override = env.MESHCTL_KNOWN_HOSTS;
  if (override) {
    const files = override
      .split(':')
      .filter(Boolean)
      .map((f) => expandTilde(f, home));
    return { read: files, write: files[0] };
  }
  const userDefault = join(home, '.ssh', 'known_hosts');
  const user = settings.userKnownHostsFiles.filter((f) => f !== '/dev/null');
  const read = [...new Set([userDefault, ...user, ...settings.globalKnownHostsFiles])];
  return { read, write: user[0] ?? userDefault };
}

function hostKeyMessage(
  verdict: HostKeyVerdict,
  host: string,
  port: number,
  policy: HostKeyPolicy,
): { message: string; reason: TransportFailure } {
  const shown = `${describeKeyType(verdict.keyType)} key ${verdict.fingerprint}`;
  const name = knownHostName(host, port);
  const where = verdict.entry ? `${verdict.entry.file}:${verdict.entry.line}` : policy.writeFile;
  switch (verdict.status) {
    case 'changed': {
      const known = verdict.knownTypes ?? [verdict.keyType];
      const otherType = !known.includes(verdict.keyType);
      const knownText = otherType
        ? `${where} knows ${name} only by its ${known.map(describeKeyType).join(', ')} key${known.length > 1 ? 's' : ''}, and the host no longer offers ${known.length > 1 ? 'any of them' : 'it'}`
        : `${where} has a different ${describeKeyType(verdict.keyType)} key for ${name}`;
      return {
        reason: 'host-key-changed',
        message:
          `HOST KEY CHANGED: the host offers ${shown}, but ${knownText}; ` +
          `this could be a man-in-the-middle attack, so meshctl refuses (--accept-new never accepts a changed key). If the node was reinstalled, check the new key out of band, ` +
          `remove the old one with: ssh-keygen -R ${shellQuote(name)} -f ${shellQuote(verdict.entry?.file ?? policy.writeFile)}`,
      };
    }
    case 'revoked':
      return { reason: 'host-key-revoked', message: `host key ${verdict.fingerprint} is marked @revoked in ${where}; refusing to connect` };
    default:
      return {
        reason: 'host-key-unknown',
        message:
          `host key not known: ${shown} is not in ${policy.readFiles.join(' or ')}; refusing to connect. ` +
          `Compare it with the node's own (on the node: ssh-keygen -lf /etc/ssh/ssh_host_${hostKeyFileType(verdict.keyType)}_key.pub; ` +
          `from here: ssh-keyscan -p ${port} ${host} | ssh-keygen -lf -), then add it to known_hosts or rerun with --accept-new to trust and record it`,
      };
  }
}

// ---------------------------------------------------------------------------------------------------------
// one SSH hop

interface HopTarget {
  settings: ResolvedSshConfig;
  /** user@host:port */
  label: string;
}

interface OpenContext {
  node: string;
  /** prefix for messages about a jump host */
  role: string;
  env: NodeJS.ProcessEnv;
  home: string;
  options: ConnectOptions;
  startedAt: number;
  deadline: number;
  /** the node's own client (not a jump host's) notes when it reached each stage here */
  marks?: Partial<ConnectTimeline>;
}

/**
 * Turns on TCP_NODELAY for a client's socket (ssh2 leaves Nagle's algorithm on); before it connects is fine, node
 * applies it once connected. The set-up writes small packets back to back without waiting for an answer in between
 * (NEWKEYS then SERVICE_REQUEST; a session's CHANNEL_OPEN, its requests and the script), and with Nagle on the second
 * waits for the peer's ACK of the first, which a peer with nothing to say yet delays (measured on loopback: 39 ms
 * from SERVICE_REQUEST to its answer, 1 ms with TCP_NODELAY). ssh2 writes whole SSH packets, so this sends no more
 * segments than packets. A no-op over a jump host's channel (its own TCP socket has it). Issue 10: start to login.
 */
const noDelay = (client: SshClient) => client.setNoDelay(true);

/** What signedAtOnce needs of ssh2's protocol object (internal: `Client._protocol`) and of its parsed keys. */
type SignCallback = (data: Buffer, done: (signature: Buffer) => void) => void;
interface AuthProtocol {
  authPK(username: string, key: unknown, keyAlgo: string | undefined, sign?: SignCallback): void;
}
interface SigningKey {
  isPrivateKey(): boolean;
  sign(data: Buffer, hashAlgo?: string): Buffer | Error;
  /** ssh2's parsed keys: the key type (`ssh-ed25519` ...) and the private key as PEM text */
  type?: string;
  getPrivatePEM?(): string;
}

/** The hash ssh2 signs with when the algorithm names none (its keyParser: RSA and DSA SHA-1, ECDSA by curve, Ed25519 none). */
function defaultHash(type: string | undefined): string | null | undefined {
  if (type === 'ssh-ed25519') return null;
  if (type === 'ssh-rsa' || type === 'ssh-dss') return 'sha1';
  if (type === 'ecdsa-sha2-nistp256') return 'sha256';
  if (type === 'ecdsa-sha2-nistp384') return 'sha384';
  if (type === 'ecdsa-sha2-nistp521') return 'sha512';
  return undefined;
}

/** Each parsed key's private key as OpenSSL holds it, made once (null: ssh2 signs it itself). */
const keyObjects = new WeakMap<object, KeyObject | null>();

/**
 * `key.sign(data, hashAlgo)` as ssh2 does it, with the private key decoded once per key, not once per login (issue
 * 10): ssh2 signs with the key's PEM text, which OpenSSL 3 decodes again each time (0.87 ms a signature against 0.07
 * ms with a KeyObject, on this machine). The same signature (Ed25519 and RSA are deterministic; ECDSA in the same DER
 * form ssh2's own gives). A key of a type not listed in defaultHash, or one OpenSSL cannot load, is signed by ssh2.
 */
export function signWithKey(key: SigningKey, data: Buffer, hashAlgo?: string): Buffer | Error {
  let keyObject = keyObjects.get(key);
  if (keyObject === undefined) {
    try {
      keyObject =
        typeof key.getPrivatePEM === 'function' && defaultHash(key.type) !== undefined ? createPrivateKey(key.getPrivatePEM()) : null;
    } catch {
      keyObject = null;
    }
    keyObjects.set(key, keyObject);
  }
  const algo = hashAlgo ?? defaultHash(key.type);
  if (!keyObject || algo === undefined) return key.sign(data, hashAlgo);
  try {
    return cryptoSign(algo, data, keyObject);
  } catch {
    return key.sign(data, hashAlgo);
  }
}

/**
 * A key file's login in one round trip, not two (issue 10: start to the first login). For a key ssh2 holds itself
 * (not the agent's), ssh2 first asks whether the server would take the key (a publickey request without signature;
 * OpenSSH reads authorized_keys and answers PK_OK) and only then sends the signed request, which sshd checks against
 * authorized_keys again. RFC 4252 7 lets the client send the signed request at once, as this does: sshd answers it
 * with success, or with failure (then ssh2 goes on to the next key exactly as after a refused question). The hash for
 * RSA's signature is the one its algorithm names (rsa-sha2-256/512), as ssh2 picks it on PK_OK.
 * ssh2 has no option for it: its protocol object (`_protocol`, made by connect()) is wrapped; when ssh2 has none
 * there (another version), nothing changes. A key that cannot sign leaves the request as it was.
 */
function signedAtOnce(client: SshClient): void {
  const proto = (client as unknown as { _protocol?: Partial<AuthProtocol> })._protocol;
  if (typeof proto?.authPK !== 'function') return;
  const authPK = proto.authPK.bind(proto);
  proto.authPK = (username, key, keyAlgo, sign) => {
    const k = key as Partial<SigningKey> | undefined;
    if (sign || typeof k?.sign !== 'function' || typeof k.isPrivateKey !== 'function' || !k.isPrivateKey())
      return authPK(username, key, keyAlgo, sign);
    const hashAlgo = keyAlgo === 'rsa-sha2-256' ? 'sha256' : keyAlgo === 'rsa-sha2-512' ? 'sha512' : undefined;
    const signing = k as SigningKey;
    return authPK(username, key, keyAlgo, (data, done) => {
      const signature = signWithKey(signing, data, hashAlgo);
      // a key that cannot sign: the signature-less question ssh2 would have asked (its PK_OK then signs as before)
      if (signature instanceof Error) authPK(username, key, keyAlgo);
      else done(signature);
    });
  };
}

/** The global-request handler ssh2's client gives its protocol object (internal: `Client._protocol._handlers`). */
type GlobalRequestHandler = (packet: unknown, name: string, wantReply: boolean, data: unknown) => void;
interface GlobalRequestProtocol {
  _handlers?: { GLOBAL_REQUEST?: GlobalRequestHandler };
  requestSuccess(): void;
}

/** The notice OpenSSH's sshd sends after every login, listing its host keys (OpenSSH PROTOCOL, section 2.5). */
export const HOSTKEYS_NOTICE = 'hostkeys-00@openssh.com';

/**
 * Leaves OpenSSH's host-key notice unanswered (issue 10: meshctl's CPU and the node's per login). After every login
 * sshd sends `hostkeys-00@openssh.com` with all its host keys (OpenSSH PROTOCOL 2.5, for UpdateHostKeys), and ssh2
 * answers it, always, with a `hostkeys-prove-00@openssh.com` request for every one of them: sshd signs the session
 * with each host key (RSA, ECDSA and Ed25519 on a stock Debian node: an RSA signature is the costly part) and ssh2
 * verifies each signature, for a `hostkeys` event meshctl never reads. OpenSSH's own client asks for a proof only
 * when UpdateHostKeys is on and a key is new; the notice needs no answer (sent without want-reply; one with it gets
 * the success ssh2 would have sent). The host key that counts was verified during key exchange (hostVerifier),
 * before authentication, and that is unchanged. Every other global request goes to ssh2 as before; when ssh2 has
 * no such handler (another version), nothing changes.
 */
export function skipHostKeysProof(client: SshClient): void {
  const proto = (client as unknown as { _protocol?: Partial<GlobalRequestProtocol> })._protocol;
  const handlers = proto?._handlers;
  const original = handlers?.GLOBAL_REQUEST;
  if (!proto || !handlers || typeof original !== 'function' || typeof proto.requestSuccess !== 'function') return;
  handlers.GLOBAL_REQUEST = (packet, name, wantReply, data) => {
    if (name !== HOSTKEYS_NOTICE) return original(packet, name, wantReply, data);
    if (wantReply) proto.requestSuccess!();
  };
}

const targetLabel = (s: { user: string; hostname: string; port: number }) =>
  `${s.user}@${s.hostname.includes(':') ? `[${s.hostname}]` : s.hostname}:${s.port}`;

/** One SSH client to a hop: over `sock` (a jump host's forwarded stream, or a TCP connection begun early), else its own TCP. */
async function openClient(hop: HopTarget, ctx: OpenContext, node: Node, sock?: Readable | EarlySocket): Promise<SshClient> {
  const { settings } = hop;
  const fail = (message: string, reason: TransportFailure) =>
    new TransportError(ctx.node, `${ctx.node} (${ctx.role}${hop.label}): ${message}`, reason);

  if (settings.proxyCommand) {
    throw fail(`ProxyCommand is not supported (found "${settings.proxyCommand}"); use ProxyJump`, 'config');
  }
  const files = knownHostsFiles(settings, ctx.env, ctx.home);
  const policy: HostKeyPolicy = {
    readFiles: files.read,
    writeFile: files.write,
    hash: settings.hashKnownHosts,
    acceptNew: !!ctx.options.acceptNew,
  };
  const known = await loadKnownHosts(policy.readFiles);
  reportKnownHostsProblems(known.problems, ctx.node, ctx.options.onWarning);
  // OpenSSH looks a HostKeyAlias up as written, without the port
  const keyHost = settings.hostKeyAlias ?? settings.hostname;
  const keyPort = settings.hostKeyAlias ? 22 : settings.port;
  const entries: KnownHostEntry[] = known.entries;
  const plan = planAuth(node, settings, ctx.env, ctx.home);
  if (plan.candidates.length === 0) throw fail(authFailureMessage(plan, []), 'auth');

  const remaining = ctx.deadline - Date.now();
  if (remaining <= 0) throw fail('connect timed out', 'timeout');

  return new Promise<SshClient>((resolve, reject) => {
    const client = new Client();
    let settled = false;
    let hostFailure: TransportError | undefined;
    let authStarted = false;
    const tried: string[] = [];
    let next = 0;

    const finish = (err?: TransportError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ctx.options.signal?.removeEventListener('abort', onAbort);
      if (err) {
        client.removeAllListeners('ready');
        client.on('error', () => undefined);
        // destroy first: ssh2's Client.destroy skips a socket end() already made unwritable, and an ended socket
        // then waited for a stopped sshd's FIN until the connect timeout, keeping `down`, `rotate-keys` and `debug`
        // alive ~10 s after a Ctrl-C during the logins (X12)
        client.destroy();
        client.end();
        reject(err);
      } else {
        resolve(client);
      }
    };
    const timer = setTimeout(
      () =>
        finish(
          fail(
            `connect timed out after ${((ctx.deadline - ctx.startedAt) / 1000).toFixed(1)} s${authStarted ? ' (during authentication)' : ''}`,
            'timeout',
          ),
        ),
      remaining,
    );
    const onAbort = () => finish(fail('interrupted', 'connect'));
    ctx.options.signal?.addEventListener('abort', onAbort, { once: true });

    const authHandler = (methodsLeft: AuthenticationType[] | null, _partial: boolean | null, nextAuth: NextAuthHandler) => {
      authStarted = true;
      if (methodsLeft && !methodsLeft.includes('publickey')) return nextAuth(false as unknown as AuthenticationType);
      const candidate = plan.candidates[next++];
      if (!candidate) return nextAuth(false as unknown as AuthenticationType);
      tried.push(candidate.label);
      nextAuth(candidate.method(settings.user));
    };

    const marks = ctx.marks;
    if (marks) {
      client.once('connect', () => (marks.tcpMs ??= performance.now()));
      client.once('handshake', () => (marks.handshakeMs = performance.now()));
    }
    client.on('ready', () => {
      if (marks) {
        marks.loginMs = performance.now();
        const cpu = process.cpuUsage();
        marks.loginCpuMs = (cpu.user + cpu.system) / 1000;
      }
      finish();
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (hostFailure) return finish(hostFailure);
      finish(classify(err));
    });
    client.on('close', () => finish(hostFailure ?? fail('connection closed during setup', 'connect')));

    const classify = (err: Error & { level?: string; code?: string }): TransportError => {
      if (err.level === 'client-authentication') return fail(authFailureMessage(plan, tried), 'auth');
      if (err.level === 'client-timeout') return fail('timed out waiting for the SSH handshake', 'timeout');
      switch (err.code) {
        case 'ECONNREFUSED':
          return fail('connection refused (is sshd running on that port?)', 'connect');
        case 'ENOTFOUND':
        case 'EAI_AGAIN':
          return fail(`cannot resolve host ${settings.hostname}`, 'connect');
        case 'EHOSTUNREACH':
        case 'ENETUNREACH':
          return fail('host unreachable', 'connect');
        case 'ETIMEDOUT':
          return fail('connect timed out', 'timeout');
        case 'ECONNRESET':
          return fail('connection reset by peer', 'connect');
      }
      if (err.level === 'agent') return fail(`ssh-agent error: ${err.message}`, 'auth');
      return fail(`ssh: ${err.message}`, 'connect');
    };

    const config: ConnectConfig = {
      host: settings.hostname,
      port: settings.port,
      username: settings.user,
      readyTimeout: remaining,
      keepaliveInterval: ctx.options.keepaliveIntervalMs ?? settings.serverAliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: ctx.options.keepaliveCountMax ?? settings.serverAliveCountMax ?? DEFAULT_KEEPALIVE_COUNT_MAX,
      algorithms: { serverHostKey: hostKeyAlgorithms(knownKeyTypes(entries, keyHost, keyPort)) as never },
      authHandler: authHandler as never,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        const verdict = verifyHostKey(entries, keyHost, keyPort, key);
        const verified = () => ctx.options.onHostKeyVerified?.({ host: keyHost, port: keyPort, key, files: policy.readFiles });
        if (verdict.status === 'match') {
          verified();
          return verify(true);
        }
        if (verdict.status === 'unknown' && policy.acceptNew) {
          appendKnownHost(policy.writeFile, keyHost, keyPort, verdict.keyType, key, { hash: policy.hash }).then(
            () => {
              ctx.options.onHostKeyRecorded?.({
                node: ctx.node,
                host: keyHost,
                port: keyPort,
                keyType: verdict.keyType,
                fingerprint: verdict.fingerprint,
                file: policy.writeFile,
              });
              verified();
              verify(true);
            },
            (err: Error) => {
              hostFailure = fail(`could not record the host key in ${policy.writeFile}: ${err.message}`, 'host-key-unknown');
              verify(false);
            },
          );
          return;
        }
        const { message, reason } = hostKeyMessage(verdict, keyHost, keyPort, policy);
        hostFailure = fail(message, reason);
        verify(false);
      },
    };
    const stream = sock && 'socket' in sock ? takeEarly(sock, marks) : sock;
    if (stream) config.sock = stream;
    if (marks) marks.connectCallMs = performance.now();
    try {
      client.connect(config);
      noDelay(client);
      signedAtOnce(client);
      skipHostKeysProof(client);
    } catch (err) {
      finish(fail(`ssh: ${(err as Error).message}`, 'connect'));
    }
  });
}

/** A stream to host:port through an established client (ProxyJump). */
function forward(client: SshClient, host: string, port: number): Promise<Readable> {
  return new Promise((resolve, reject) => {
    client.forwardOut('127.0.0.1', 0, host, port, (err, stream) => (err ? reject(err) : resolve(stream)));
  });
}

// ---------------------------------------------------------------------------------------------------------
// shared jump hosts

/** Reference-counted bastion connections, keyed by the chain of hops that reaches them. */
export class JumpHosts {
  private readonly entries = new Map<string, { client: Promise<SshClient>; refs: number }>();

  acquire(key: string, open: () => Promise<SshClient>): Promise<SshClient> {
    let entry = this.entries.get(key);
    if (!entry) {
      const client = open();
      entry = { client, refs: 0 };
      this.entries.set(key, entry);
      const current = entry;
      client.then(
        (c) => c.once('close', () => this.entries.get(key) === current && this.entries.delete(key)),
        () => this.entries.get(key) === current && this.entries.delete(key),
      );
    }
    entry.refs++;
    return entry.client;
  }

  release(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    if (--entry.refs <= 0) {
      this.entries.delete(key);
      entry.client.then(
        (c) => c.end(),
        () => undefined,
      );
    }
  }

  /** ends every bastion connection still open */
  closeAll(): void {
    for (const [key, entry] of this.entries) {
      this.entries.delete(key);
      entry.client.then(
        (c) => c.end(),
        () => undefined,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// the Connection

class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const nextWaiter = this.waiting.shift();
    if (nextWaiter) nextWaiter();
    else this.active--;
  }
}

/**
 * Sends a "signal" channel request. sshd (OpenSSH >= 7.9) delivers it to the session's process group.
 * ssh2's Channel.signal() silently does nothing once stdin is closed (it checks `writable`), and we always
 * close stdin, so this goes to the protocol layer directly when the channel is still open.
 */
function sendSignal(channel: ClientChannel, name: string): void {
  const ch = channel as unknown as {
    outgoing?: { id: number; state: string };
    _client?: { _protocol?: { signal(id: number, name: string): void } };
  };
  try {
    if ((ch.outgoing?.state === 'open' || ch.outgoing?.state === 'eof') && ch._client?._protocol)
      ch._client._protocol.signal(ch.outgoing.id, name);
    else channel.signal(name);
  } catch {
    // best effort: the remote `timeout` is the backstop
  }
}

class SshConnection implements Connection {
  readonly stats: ConnectionStats = { commands: 0, remoteMs: 0, connectMs: 0, channels: 0, peakChannels: 0 };
  /** channel requests open or pending right now (from the request to the channel's close) */
  private openChannels = 0;
  private lost?: TransportError;
  private closing?: Promise<void>;
  /** the ssh2 client has closed (nothing left to wait for in close()) */
  private closed = false;
  private readonly channels: Semaphore;
  /** aborted runs waiting for the next stop script */
  private stopBatch?: { tokens: string[]; done: Promise<void> };

  constructor(
    readonly node: string,
    readonly target: string,
    private readonly client: SshClient,
    private readonly sudo: boolean,
    private readonly defaults: { timeoutMs: number; maxChannels: number },
    private readonly releaseJumps: () => void,
  ) {
    this.channels = new Semaphore(defaults.maxChannels);
    client.on('error', (err: Error) => {
      this.lost ??= new TransportError(
        node,
        `${node} (${target}): connection lost: ${err.message}`,
        /keepalive/i.test(err.message) ? 'timeout' : 'lost',
      );
    });
    client.on('close', () => {
      this.closed = true;
      this.lost ??= new TransportError(node, `${node} (${target}): connection closed by the remote side`, 'lost');
      this.releaseJumps();
    });
  }

  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs;
    const { signal } = options;
    if (signal?.aborted) throw signal.reason;
    if (this.lost) throw this.lost;
    await this.channels.acquire();
    try {
      if (signal?.aborted) throw signal.reason;
      if (this.lost) throw this.lost;
      const token = runToken();
      const caps = {
        stdout: options.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES,
        stderr: options.maxStderrBytes ?? DEFAULT_MAX_STDERR_BYTES,
      };
      const remote = wrapCommand(script, { sudo: this.sudo, timeoutMs, token });
      const result = await this.exec(remote, timeoutMs, signal, token, caps, options.onStdout, options.sendWhen, !!options.discardStdout);
      this.stats.commands++;
      this.stats.remoteMs += result.durationMs;
      if (this.sudo && result.code === 1 && sudoNeedsPassword(result.stderr)) {
        throw new TransportError(
          this.node,
          `${this.node} (${this.target}): sudo asks for a password; meshctl needs passwordless sudo (NOPASSWD) or user root`,
          'sudo',
        );
      }
      return result;
    } finally {
      this.channels.release();
    }
  }

  /**
   * Starts `script` and resolves once sshd has accepted the exec request (it has forked the command then: OpenSSH
   * answers an exec request after do_exec), without waiting for the script to end (Connection.start). The script is
   * in the command line (wrapCommand inline), so nothing of it is left in transit when the connection closes right
   * after; stdin gets its end at once. sshd runs a command without a tty in a session of its own (setsid) and signals
   * it nothing when the connection ends, and the script writes nothing (a closed pipe cannot stop it). The channel
   * holds one of the connection's slots until the node closes it. Rejects (TransportError) when the channel or the
   * exec request is refused or the connection is gone; then nothing was started.
   */
  async start(script: string, options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.lost) throw this.lost;
    await this.channels.acquire();
    let slotHeld = true;
    const freeSlot = () => {
      if (slotHeld) this.channels.release();
      slotHeld = false;
    };
    try {
      if (this.lost) throw this.lost;
      const remote = wrapCommand(script, {
        sudo: this.sudo,
        timeoutMs: options.timeoutMs ?? this.defaults.timeoutMs,
        token: runToken(),
        inline: true,
      });
      await new Promise<void>((resolve, reject) => {
        this.channelRequested();
        this.client.exec(remote.command, (err, channel) => {
          if (err || !channel) {
            this.channelRefused();
            return reject(
              this.lost ?? new TransportError(this.node, `${this.node} (${this.target}): cannot start a command: ${err?.message}`, 'lost'),
            );
          }
          this.countChannel(channel);
          this.stats.commands++;
          channel.once('close', freeSlot);
          channel.on('error', () => undefined);
          channel.resume();
          channel.stderr.resume();
          channel.end();
          resolve();
        });
      });
    } catch (error) {
      freeSlot();
      throw error;
    }
  }

  /**
   * Stops the remote processes of an aborted run (stopScript on a new channel, outside the channel semaphore:
   * the aborted runs still hold their slots). Runs aborted together (Ctrl-C aborts them all) share one channel,
   * so 8 aborted runs need 9 sessions, within OpenSSH's MaxSessions 10. Never rejects; resolves when the
   * processes are gone, the stop script gave up, or the connection is lost.
   */
  private stopRemote(token: string): Promise<void> {
    if (this.lost) return Promise.resolve();
    let batch = this.stopBatch;
    if (!batch) {
      const tokens: string[] = [];
      const done = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
        this.stopBatch = undefined;
        if (this.lost) return;
        // the channel may take seconds to open on a loaded or cold machine: giving up early leaves the run behind
        const timeoutMs = ABORT_GRACE_MS + STOP_CHANNEL_SLACK_MS;
        await this.exec(wrapCommand(stopScript(tokens), { sudo: this.sudo, timeoutMs }), timeoutMs).catch(() => undefined);
      });
      batch = { tokens, done };
      this.stopBatch = batch;
    }
    batch.tokens.push(token);
    return batch.done;
  }

  /**
   * One command on a new channel. Output is kept up to `caps` bytes per stream (the stop script, run without
   * caps, prints nothing): past a cap, the channel is closed, the run's remote processes are stopped as on abort,
   * and the result is OUTPUT_CAP_EXIT with the first bytes of the output. `onStdout`, `discardStdout` (none of stdout
   * kept: it goes to onStdout alone): see RunOptions.
   */
  private exec(
    remote: RemoteCommand,
    timeoutMs: number,
    signal?: AbortSignal,
    token?: string,
    caps = { stdout: DEFAULT_MAX_STDOUT_BYTES, stderr: DEFAULT_MAX_STDERR_BYTES },
    onStdout?: RunOptions['onStdout'],
    sendWhen?: Promise<boolean>,
    discardStdout = false,
  ): Promise<ExecResult> {
    const started = performance.now();
    return new Promise<ExecResult>((resolve, reject) => {
      let stream: ClientChannel | undefined;
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      const held = { stdout: 0, stderr: 0 };
      let code: number | undefined;
      let done = false;
      let timer: NodeJS.Timeout | undefined;

      const result = (exitCode: number, note?: string, capped?: 'stdout' | 'stderr'): ExecResult => ({
        code: exitCode,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8') + (note ? `${note}\n` : ''),
        durationMs: Math.round(performance.now() - started),
        ...(capped ? { outputCapped: capped } : {}),
      });
      // past a cap: keep the first bytes, stop reading, stop the command (as on abort: signals do nothing for root)
      const onOutput = (which: 'stdout' | 'stderr', chunk: Buffer) => {
        if (done) return;
        const room = caps[which] - held[which];
        const kept = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(0, room));
        // discardStdout: counted for the cap, handed to onStdout, not kept
        if (which === 'stderr') stderr.push(kept);
        else if (!(discardStdout && onStdout)) stdout.push(kept);
        held[which] += kept.length;
        if (which === 'stdout' && onStdout) onStdout(decoder.write(kept), end);
        if (chunk.length <= room) return;
        settle(() => {
          if (stream) sendSignal(stream, 'TERM');
          stream?.close();
          const stopped = token ? this.stopRemote(token) : Promise.resolve();
          const note = `meshctl: stopped the command: its ${which} passed the cap of ${formatBytes(caps[which])} per command (node output is not buffered without limit)`;
          void stopped.then(() => resolve(result(OUTPUT_CAP_EXIT, note, which)));
        });
      };
      const settle = (fn: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const kill = () => {
        if (!stream) return;
        sendSignal(stream, 'TERM');
        stream.close();
      };
      // the caller has what it needs (RunOptions.onStdout): stop waiting, keep the output
      const decoder = new StringDecoder('utf8');
      const end = () =>
        settle(() => {
          kill();
          resolve(result(code ?? ENDED_EXIT));
        });
      // the "signal" request alone does nothing for root logins: stopRemote kills the run's processes, then we settle
      const onAbort = () =>
        settle(() => {
          if (stream) sendSignal(stream, 'TERM');
          const stopped = token ? this.stopRemote(token) : Promise.resolve();
          void stopped.then(() => {
            stream?.close();
            reject(signal!.reason);
          });
        });
      signal?.addEventListener('abort', onAbort, { once: true });
      timer = setTimeout(() => {
        kill();
        settle(() => resolve(result(124, `meshctl: command timed out after ${(timeoutMs / 1000).toFixed(1)} s`)));
      }, timeoutMs);

      const open = (attempt: number) => {
        this.channelRequested();
        this.client.exec(remote.command, (err, channel) => {
          if (err || !channel) this.channelRefused();
          else this.countChannel(channel);
          if (done) {
            channel?.close();
            return;
          }
          if (err) {
            if (this.lost) return settle(() => reject(this.lost));
            // the server allows fewer sessions than we thought (MaxSessions below our limit): wait and retry
            if (/open failed|administratively prohibited/i.test(err.message) && attempt < 20) {
              setTimeout(() => open(attempt + 1), 50 * (attempt + 1));
              return;
            }
            return settle(() =>
              reject(new TransportError(this.node, `${this.node} (${this.target}): cannot open a channel: ${err.message}`, 'lost')),
            );
          }
          stream = channel;
          channel.on('data', (d: Buffer) => onOutput('stdout', d));
          channel.stderr.on('data', (d: Buffer) => onOutput('stderr', d));
          channel.on('exit', (exitCode: number | null, signalName?: string) => {
            code = exitCode ?? signalExitCode(signalName);
          });
          channel.on('close', () => {
            if (code === undefined && this.lost) return settle(() => reject(this.lost));
            settle(() => resolve(result(code ?? 255, code === undefined ? 'meshctl: channel closed without an exit status' : undefined)));
          });
          channel.on('error', () => undefined);
          // the framed script; the remote shell runs it once it has read the whole brace group (RunOptions.sendWhen:
          // once that says so; else an empty script, which runs nothing)
          if (sendWhen) void sendWhen.then((send) => done || channel.end(send ? remote.input : ''));
          else channel.end(remote.input);
        });
      };
      open(0);
    });
  }

  /**
   * A channel request goes out: it holds one of the server's MaxSessions from now until the channel closes (or the
   * request fails), so the peak counts requests, not only confirmed channels.
   */
  private channelRequested(): void {
    this.openChannels++;
    this.stats.peakChannels = Math.max(this.stats.peakChannels ?? 0, this.openChannels);
  }

  /** The request failed: its session slot is free again. */
  private channelRefused(): void {
    this.openChannels--;
  }

  /** The server opened the channel: one more in stats.channels; its slot is freed when it closes. */
  private countChannel(channel: ClientChannel): void {
    this.stats.channels = (this.stats.channels ?? 0) + 1;
    channel.once('close', () => this.openChannels--);
  }

  /** See connectionAlive. */
  alive(timeoutMs: number): Promise<boolean> {
    if (this.lost || this.closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const answered = () => {
        clearTimeout(timer);
        resolve(!this.lost);
      };
      try {
        // any answer, success or failure, proves the server is there; ssh2 calls back with an error on failure
        this.client.unforwardIn('127.0.0.1', 1, answered);
      } catch {
        clearTimeout(timer);
        resolve(false);
      }
    });
  }

  /** Channel requests open or pending right now (for tests of the cap: never above maxChannels + 1). */
  get channelsInFlight(): number {
    return this.openChannels;
  }

  /**
   * Ends the connection: SSH_MSG_DISCONNECT, then our side of TCP. Resolves once both are with the kernel (the TCP
   * socket finished writing), not when the node has closed its side: sshd ends the login's session (PAM, logind)
   * before it closes, and waiting for that put a round trip and the node's teardown at the end of every run (issue
   * 10). The socket closes by itself when the node's FIN arrives; a process that exits first loses nothing (the
   * kernel still delivers what was written). A connection through a jump host resolves when it is closed, as before.
   */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.lost ??= new TransportError(this.node, `${this.node} (${this.target}): connection already closed`, 'closed');
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 2000);
      this.client.once('close', done);
      const sock = socketOf(this.client);
      if (sock && !sock.destroyed) sock.once('finish', done);
      this.client.end();
      // ssh2 ends only a socket it can still write to: one already ended or broken settles here or by 'close'
      if (this.closed || sock?.writableFinished) done();
    });
    return this.closing;
  }
}

/**
 * Whether `connection` (one connectDirect made) still works: not lost or closed, and its server answers a global
 * request within `timeoutMs` (a `cancel-tcpip-forward` for a forwarding that does not exist: sshd answers it with
 * REQUEST_FAILURE, starting no process and opening no session; RFC 4254 7.1). For the control master, before it lends
 * a kept connection to another run: a node that rebooted, or a lab torn down, leaves a connection that only
 * keepalives would find dead. False for any other Connection.
 */
export function connectionAlive(connection: Connection, timeoutMs: number): Promise<boolean> {
  if (!(connection instanceof SshConnection)) return Promise.resolve(false);
  return connection.alive(timeoutMs);
}

/** The TCP socket under an ssh2 client (ssh2 keeps it as `_sock`), or undefined when it runs over a jump host's channel. */
function socketOf(client: SshClient): Socket | undefined {
  const sock = (client as unknown as { _sock?: unknown })._sock;
  return sock instanceof Socket ? sock : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// connectNode

const inventoryLabel = (node: Node) => `${node.ssh.user}@${node.ssh.host}:${node.ssh.port}`;

/** A node's ssh settings (ConnectOptions.presolved, else `ssh -G`); TransportError 'config' when they cannot be resolved. */
export async function resolveNode(node: Node, options: ConnectOptions, env: NodeJS.ProcessEnv): Promise<ResolvedSshConfig> {
  try {
    return await (options.presolved?.get(node.name) ?? resolveNodeSshConfig(node.ssh, { sshConfigFile: options.sshConfigFile, env }));
  } catch (err) {
    if (err instanceof SshConfigError)
      throw new TransportError(node.name, `${node.name} (${inventoryLabel(node)}): ${err.message}`, 'config');
    throw err;
  }
}

async function resolveHop(node: Node, hop: JumpSpec, options: ConnectOptions, env: NodeJS.ProcessEnv): Promise<ResolvedSshConfig> {
  try {
    return await resolveSshConfig(
      { host: hop.host, port: hop.port, user: hop.user, explicit: { port: hop.port !== undefined, user: hop.user !== undefined } },
      { configFile: options.sshConfigFile, env, defaultUser: localUser() },
    );
  } catch (err) {
    if (err instanceof SshConfigError)
      throw new TransportError(node.name, `${node.name} (jump host ${hop.host}): ${err.message}`, 'config');
    throw err;
  }
}

/**
 * Connects to one node: resolves its ssh settings, verifies the host key (and every jump host's) before
 * authenticating, logs in, and (unless `probe: false`) proves it can run commands as root.
 * Throws TransportError with a one-line message naming the node and user@host:port.
 */
export async function connectNode(node: Node, options: ConnectOptions = {}): Promise<Connection> {
  if ((options.controlPersistS ?? 0) > 0) {
    const { connectThroughMaster } = await import('./control-master.js');
    return connectThroughMaster(node, options);
  }
  return connectDirect(node, options);
}

/** connectNode without a control master: this process connects and logs in itself (ConnectOptions.controlPersistS ignored). */
export async function connectDirect(node: Node, options: ConnectOptions = {}): Promise<Connection> {
  const env = options.env ?? process.env;
  const home = env.HOME || homedir();
  if (options.signal?.aborted) throw options.signal.reason;
  const started = performance.now();
  const marks: Partial<ConnectTimeline> = { startMs: started };
  const settings = await resolveNode(node, options, env);
  marks.configMs = performance.now();
  const target = targetLabel(settings);
  const timeoutMs = options.connectTimeoutMs ?? settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const startedAt = Date.now();
  const ctxBase = { node: node.name, env, home, options, startedAt, deadline: startedAt + timeoutMs };

  // jump hosts, outermost first; nodes behind the same chain share it when options.jumpHosts is given
  const jumps = options.jumpHosts ?? new JumpHosts();
  const acquired: string[] = [];
  const releaseJumps = () => {
    for (const key of acquired.splice(0)) jumps.release(key);
    if (!options.jumpHosts) jumps.closeAll();
  };
  let via: SshClient | undefined;
  let chainKey = '';
  try {
    for (const spec of settings.proxyJump) {
      const hopSettings = await resolveHop(node, spec, options, env);
      const hop = { settings: hopSettings, label: targetLabel(hopSettings) };
      const previous = via;
      chainKey += `${chainKey ? ' -> ' : ''}${hop.label}`;
      const key = chainKey;
      acquired.push(key);
      try {
        via = await jumps.acquire(key, async () => {
          const sock = previous ? await forwardOrFail(node, previous, hopSettings, hop.label) : undefined;
          return openClient(hop, { ...ctxBase, role: 'jump host ' }, node, sock);
        });
      } catch (err) {
        // a bastion shared with other nodes failed while another node opened it: say it with this node's name
        if (err instanceof TransportError && err.node !== node.name) {
          throw new TransportError(node.name, `${node.name} ${err.message.slice(err.node.length + 1)}`, err.reason);
        }
        throw err;
      }
    }
    const sock = via ? await forwardOrFail(node, via, settings, target) : await earlySocket(node, settings, options);
    const client = await openClient({ settings, label: target }, { ...ctxBase, role: '', marks }, node, sock).catch((err) => {
      (sock && 'socket' in sock ? sock.socket : sock)?.destroy(); // openClient may fail before ssh2 owns it
      throw err;
    });
    const sudo = node.ssh.become === 'sudo' || settings.user !== 'root';
    const connection = new SshConnection(
      node.name,
      target,
      client,
      sudo,
      {
        timeoutMs: options.commandTimeoutMs ?? commandTimeoutFromEnv(env) ?? DEFAULT_COMMAND_TIMEOUT_MS,
        maxChannels: options.maxChannels ?? DEFAULT_MAX_CHANNELS,
      },
      releaseJumps,
    );
    if (options.probe !== false) await probeRoot(connection, node.name, target, settings.user, sudo, options.signal);
    marks.readyMs = performance.now();
    connection.stats.connectMs = Math.round(marks.readyMs - started);
    connection.stats.timeline = roundTimeline(marks);
    return connection;
  } catch (err) {
    releaseJumps();
    throw err;
  }
}

/** The TCP connection begun early for this node, when it goes where its settings say (see ConnectOptions.earlySockets). */
async function earlySocket(node: Node, settings: ResolvedSshConfig, options: ConnectOptions): Promise<EarlySocket | undefined> {
  const early = await options.earlySockets?.get(node.name);
  if (!early || (early.host === settings.hostname && early.port === settings.port)) return early;
  early.socket.destroy();
  return undefined;
}

/**
 * The socket ssh2 is to use for an early connection, decided right before ssh2 attaches its listeners: one that
 * failed meanwhile (its error went to our listener, not ssh2's) is dropped and ssh2 connects by itself.
 */
function takeEarly(early: EarlySocket, marks: Partial<ConnectTimeline> | undefined): Socket | undefined {
  if (early.failed || early.socket.destroyed) {
    early.socket.destroy();
    return undefined;
  }
  if (marks) {
    if (early.connectedMs !== undefined) marks.tcpMs = early.connectedMs;
    else early.socket.once('connect', () => (marks.tcpMs = early.connectedMs));
  }
  return early.socket.ref();
}

/** The marks of a finished set-up, rounded to 0.1 ms (a stage ssh2 did not report takes the next one's time). */
function roundTimeline(marks: Partial<ConnectTimeline>): ConnectTimeline {
  const r = (ms: number | undefined) => Math.round((ms ?? marks.loginMs ?? 0) * 10) / 10;
  return {
    startMs: r(marks.startMs),
    configMs: r(marks.configMs),
    connectCallMs: r(marks.connectCallMs),
    tcpMs: r(marks.tcpMs ?? marks.handshakeMs),
    handshakeMs: r(marks.handshakeMs),
    loginMs: r(marks.loginMs),
    readyMs: r(marks.readyMs),
    ...(marks.loginCpuMs !== undefined ? { loginCpuMs: Math.round(marks.loginCpuMs * 10) / 10 } : {}),
  };
}

async function forwardOrFail(node: Node, via: SshClient, settings: ResolvedSshConfig, label: string): Promise<Readable> {
  try {
    return await forward(via, settings.hostname, settings.port);
  } catch (err) {
    throw new TransportError(
      node.name,
      `${node.name} (${label}): the jump host could not open a connection to it: ${(err as Error).message}`,
      'connect',
    );
  }
}

/** One round trip that proves commands run as root, so a sudo that wants a password fails here, clearly. */
async function probeRoot(connection: SshConnection, node: string, target: string, user: string, sudo: boolean, signal?: AbortSignal) {
  let result: ExecResult;
  try {
    // 15 s, or MESHCTL_COMMAND_TIMEOUT when set: on the farm of 100 loaded sandboxes the first command of a fresh
    // login took longer, and a fixed 15 s called three quarters of the nodes unreachable (issue 10)
    result = await connection.run('id -u', { timeoutMs: commandTimeoutFromEnv(process.env) ?? 15_000, signal });
  } catch (err) {
    await connection.close();
    throw err;
  }
  if (result.stdout.trim() === '0') return;
  await connection.close();
  const why = result.stderr.trim().split('\n')[0] ?? '';
  if (sudo && /sudo: (not found|command not found)|sudo: .*not found/.test(result.stderr)) {
    throw new TransportError(
      node,
      `${node} (${target}): logged in as ${user}, but sudo is not installed; use user root or install sudo`,
      'sudo',
    );
  }
  if (sudo && /not in the sudoers|not allowed to (run|execute)/.test(result.stderr)) {
    throw new TransportError(node, `${node} (${target}): ${user} may not use sudo (${why})`, 'sudo');
  }
  throw new TransportError(node, `${node} (${target}): cannot run commands as root (exit ${result.code}${why ? `: ${why}` : ''})`, 'sudo');
}
