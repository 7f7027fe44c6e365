/**
 * The one seam between meshctl's logic and a node. Everything that touches a node goes through `run`.
 * The ssh2 adapter (src/transport/ssh.ts) implements it; steps, facts and checks never see ssh2.
 */

export interface ExecResult {
  /**
   * exit status; 124 when meshctl's own per-command timeout fired, OUTPUT_CAP_EXIT (250) when the command printed
   * more than its output cap (see RunOptions; `outputCapped` says which stream), 255 when the channel broke
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
}

/** Stages of one connection's set-up, each in ms since process start (performance.now()). */
export interface ConnectTimeline {
  /** connectNode was called */
  startMs: number;
  /** the ssh config was resolved (`ssh -G`, ssh-config.ts) */
  configMs: number;
  /** ssh2 was asked to connect (its TCP connect to the node, or to the jump host's forwarded stream, begins) */
  connectCallMs: number;
  /** TCP connected (for a jump, the forwarded stream was ready) */
  tcpMs: number;
  /** key exchange done: the host key was verified and the session keys agreed */
  handshakeMs: number;
  /** authenticated (ssh2 'ready') */
  loginMs: number;
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
  close(): Promise<void>;
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
