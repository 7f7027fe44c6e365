/**
 * The one seam between meshctl's logic and a node. Everything that touches a node goes through `run`.
 * The ssh2 adapter (src/transport/ssh.ts) implements it; steps, facts and checks never see ssh2.
 */

export interface ExecResult {
  /**
   * exit status; 124 when meshctl's own per-command timeout fired, OUTPUT_CAP_EXIT (250) when the command printed
   * more than its output cap (see RunOptions; `outputCapped` says which stream), ENDED_EXIT (251) when the caller
   * ended it (RunOptions.onStdout), 255 when the channel broke
   */
  code: number;
  /** the command's stdout; when capped, only its first maxStdoutBytes bytes */
  stdout: string;
  /** the command's stderr; when capped, only its first maxStderrBytes bytes, then meshctl's one-line note */
  stderr: string;
  durationMs: number;
  /** set when a stream passed its cap: meshctl stopped reading, closed the channel and stopped the command */
  outputCapped?: 'stdout' | 'stderr';
}

/** ExecResult.code of a command stopped for printing more than its output cap (distinct from 124, timeout). */
export const OUTPUT_CAP_EXIT = 250;
/** ExecResult.code of a command its caller ended before it exited (the `end` of RunOptions.onStdout). */
export const ENDED_EXIT = 251;
/** Default cap on a command's stdout: 4 MiB. A facts probe prints kilobytes; a 66 MB wg0.conf must not be buffered. */
export const DEFAULT_MAX_STDOUT_BYTES = 4 * 1024 * 1024;
/** Default cap on a command's stderr: 1 MiB. */
export const DEFAULT_MAX_STDERR_BYTES = 1024 * 1024;

/**
 * There is deliberately no `stdin`: the channel's stdin carries the script itself (see wrapCommand in ssh.ts),
 * and the script's commands read /dev/null. Data a script needs goes into the script, e.g. as a quoted
 * here-document (base64 for binary data); the script has no size limit.
 */
export interface RunOptions {
  /** per-command deadline; default 60 s */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Output cap in bytes, per command: node output is held in memory, so a node must not be able to make meshctl
   * buffer without limit. Past the cap meshctl keeps the first bytes, stops reading, closes the channel, stops the
   * command's remote processes and resolves with code OUTPUT_CAP_EXIT, `outputCapped` set and a stderr note naming
   * the cap. Default DEFAULT_MAX_STDOUT_BYTES (4 MiB).
   */
  maxStdoutBytes?: number;
  /** the same for stderr; default DEFAULT_MAX_STDERR_BYTES (1 MiB) */
  maxStderrBytes?: number;
  /**
   * Called with each piece of stdout as it arrives (UTF-8; pieces split anywhere, also mid-line), for a command whose
   * output tells how far it got (the underlay probes' watchers); the result's stdout still holds all of it. `end()`
   * (the same function on every call; keep it to call later) stops waiting: meshctl sends TERM, closes the channel
   * and run() resolves at once with the output so far and code ENDED_EXIT (its exit status if that came first). sshd ignores signals for root logins, so
   * the remote command then ends at its next write to the closed stdout (SIGPIPE), or on its own, or at the remote
   * `timeout`: meant for commands that write often or end soon; one that must stop now takes `signal` instead.
   */
  onStdout?: (chunk: string, end: () => void) => void;
  /**
   * With onStdout: the result's `stdout` is left empty and the transport keeps none of it, for a caller that reads
   * the output as it arrives (../facts/sections.ts SectionStream) and needs no whole copy (issue 10: verify's first
   * script and ping round print ~0.4 and ~0.3 MB a node at 1,000 nodes, and every node's was held whole until its
   * end: its pieces, their concatenation and its string). The output caps still count every byte. A transport may
   * keep it anyway (the fakes do): a caller then reads the part of `stdout` that onStdout did not give
   * (SectionStream.endWith).
   */
  discardStdout?: boolean;
  /**
   * Issue 10: the command is started at once (its channel, the login shell and the guard) but its script is sent
   * only when this resolves: `true` sends it, `false` sends none (the remote shell reads an empty script and ends,
   * having run nothing; run() then resolves with that exit, code 0 and no output). For a command that must wait for
   * another node's answer (the run lock's FirstLockGate) without paying its start-up after that answer. Must not
   * reject. Transports that start nothing ahead may wait for it and then run as usual.
   */
  sendWhen?: Promise<boolean>;
}

export interface ConnectionStats {
  /** remote commands run (round trips) on this connection */
  commands: number;
  /** total wall time spent waiting for remote commands */
  remoteMs: number;
  connectMs: number;
  /**
   * SSH session channels opened on this connection (commands, the root probe and abort stop scripts): what
   * OpenSSH's MaxSessions counts. Optional so that fakes need not keep it.
   */
  channels?: number;
  /** the most channels that were open at the same time on this connection (kept under MaxSessions 10) */
  peakChannels?: number;
  /**
   * When this connection's set-up reached each stage, in ms since the process started (performance.now(), whose
   * origin is the process start): what start-up costs before the first byte reaches a node. Optional so that fakes
   * need not keep it. A connection through ProxyJump counts from its own hop (the last one).
   */
  timeline?: ConnectTimeline;
  /**
   * --control-persist: true when the control master lent a connection it already held (no login this run; the
   * timeline's tcpMs to readyMs are when the master's answer came), false when it opened one for this run; absent
   * without a master
   */
  reused?: boolean;
}

/** Stages of one connection's set-up, each in ms since process start (performance.now()). */
export interface ConnectTimeline {
  /** connectNode was called */
  startMs: number;
  /** the ssh config was resolved (`ssh -G`, ssh-config.ts) */
  configMs: number;
  /** ssh2 was asked to connect (its TCP connect to the node, or to the jump host's forwarded stream, begins) */
  connectCallMs: number;
  /** TCP connected (for a jump, the forwarded stream was ready); before connectCallMs when begun early (ConnectOptions.earlySockets) */
  tcpMs: number;
  /** key exchange done: the host key was verified and the session keys agreed */
  handshakeMs: number;
  /** authenticated (ssh2 'ready') */
  loginMs: number;
  /**
   * CPU time (user + system, ms, process.cpuUsage) this process had used when it was authenticated: start-up's cost
   * on a loaded machine, where loginMs also counts the other processes' turns (issue 10)
   */
  loginCpuMs?: number;
  /** the root probe came back (equals loginMs when the probe is off): when connectNode returns */
  readyMs: number;
}

export interface Connection {
  /** inventory node name */
  readonly node: string;
  /** user@host:port, for messages */
  readonly target: string;
  readonly stats: ConnectionStats;
  /**
   * Runs a POSIX sh script as root: as `sh` when logged in as root, through `sudo -n sh` otherwise; the script is
   * read from stdin, its commands get /dev/null as stdin. When `signal` aborts, the run's remote processes are
   * stopped (TERM, KILL after a grace) before the promise rejects with the signal's reason.
   * Output is capped per command (RunOptions.maxStdoutBytes, maxStderrBytes: 4 MiB and 1 MiB by default): a
   * command that prints more is stopped and resolves with code OUTPUT_CAP_EXIT.
   * Never throws for a non-zero exit: the caller decides what a failure means. Throws only when the
   * connection itself is unusable (TransportError).
   */
  run(script: string, options?: RunOptions): Promise<ExecResult>;
  /**
   * Optional (fakes need not have it): starts a short POSIX sh script as root, as `run` does, and resolves once the
   * node has started it, without waiting for it to end or reading what it says; rejects when it could not be started
   * (then it did not run). The script must read no input and write nothing (its output goes nowhere), and keeps
   * running when the connection closes right after: for cleanup the operator need not wait for (the run lock's
   * release, ../engine/lock.ts). Issue 10. `timeoutMs`: the remote deadline (default: the connection's command
   * deadline); 0 for none, for a script that cannot hang: no `timeout` process, and the login's own shell runs it.
   */
  start?(script: string, options?: { timeoutMs?: number }): Promise<void>;
  close(): Promise<void>;
}

/**
 * `connection` with its `run` replaced by `run` (which may call the original); node, target, stats and close are the
 * connection's own. The one way the engine wraps a connection (the run lock, the root check, the ping read ahead).
 */
export function withRun(connection: Connection, run: Connection['run']): Connection {
  return {
    node: connection.node,
    target: connection.target,
    get stats() {
      return connection.stats;
    },
    close: () => connection.close(),
    run,
    // start goes to the connection itself, past the wrapped run (only the run lock's release uses it)
    ...(connection.start ? { start: connection.start.bind(connection) } : {}),
  };
}

/** Why a connection could not be made or broke; lets the UI group failures without parsing messages. */
export type TransportFailure =
  | 'config' // ssh config could not be resolved, or asks for something meshctl does not support
  | 'connect' // TCP / SSH protocol failure (refused, unreachable, reset, ...)
  | 'timeout' // connect timeout or keepalive timeout
  | 'host-key-unknown'
  | 'host-key-changed'
  | 'host-key-revoked'
  | 'auth' // no identity accepted, or none usable
  | 'sudo' // logged in, but cannot become root without a password
  | 'lost' // the connection broke after it was made
  | 'closed'; // used after close()

/** The connection to a node broke or could not be made (maps to exit code 3). */
export class TransportError extends Error {
  constructor(
    readonly node: string,
    message: string,
    readonly reason: TransportFailure = 'connect',
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** Quotes a string for a POSIX shell (kept here for the transport; the one definition is ../remote/shell.ts). */
export { shellQuote } from '../remote/shell.js';

/**
 * The per-command deadline from MESHCTL_COMMAND_TIMEOUT (seconds), for slow nodes or farms; undefined when unset or
 * not a positive number. Here, not in ssh.ts, so that checks can honour it without loading ssh2.
 */
export function commandTimeoutFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const seconds = Number(env.MESHCTL_COMMAND_TIMEOUT);
  return env.MESHCTL_COMMAND_TIMEOUT && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
}

/**
 * A fixed deadline of a check or probe command (ms), raised to MESHCTL_COMMAND_TIMEOUT when that is longer: on a
 * loaded farm of 100 sandboxes a fixed 10 s called 92 of 100 nodes unreachable (issue 10). Never shortened by it.
 */
export function checkDeadlineMs(defaultMs: number, env: NodeJS.ProcessEnv = process.env): number {
  return Math.max(defaultMs, commandTimeoutFromEnv(env) ?? 0);
}
