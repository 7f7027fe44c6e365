/**
 * A scripted fake of the Connection seam (src/transport/types.ts) for engine unit tests, as k0sctl's test runner
 * does: each script sent is matched against rules in order, the first match answers; a script that no rule matches
 * fails the test (an unexpected remote command is a bug). Every script is recorded.
 */
import { type Connection, type ConnectionStats, ENDED_EXIT, type ExecResult, type RunOptions } from '../../src/transport/types.js';

export interface FakeReply {
  code?: number;
  stdout?: string;
  stderr?: string;
}

/**
 * A running command's side of RunOptions.onStdout: `write` streams stdout to the caller while the reply is still
 * pending (it is also part of the result's stdout, before the reply's own); `ended` resolves when the caller ended the
 * command (then run() has resolved with ENDED_EXIT and the output written so far).
 */
export interface FakeIo {
  write(text: string): void;
  ended: Promise<void>;
}

export interface FakeRule {
  /** matches the script text */
  match: RegExp;
  reply: FakeReply | ((script: string, io: FakeIo) => FakeReply | Promise<FakeReply>);
}

export class FakeConnection implements Connection {
  readonly stats: ConnectionStats = { commands: 0, remoteMs: 0, connectMs: 0 };
  readonly scripts: string[] = [];
  readonly target: string;
  closed = false;

  constructor(
    readonly node: string,
    private readonly rules: FakeRule[],
  ) {
    this.target = `root@${node}:22`;
  }

  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    if (options.signal?.aborted) throw options.signal.reason;
    // RunOptions.sendWhen: the script reaches the node only once that says so; else nothing runs there
    if (options.sendWhen && !(await options.sendWhen)) return { code: 0, stdout: '', stderr: '', durationMs: 0 };
    if (options.signal?.aborted) throw options.signal.reason;
    this.scripts.push(script);
    this.stats.commands++;
    const rule = this.rules.find((r) => r.match.test(script));
    if (!rule) throw new Error(`fake ${this.node}: unexpected script:\n${script.slice(0, 400)}`);
    // as over ssh: what the command writes after it was ended is neither seen nor kept
    let written = '';
    let endedWith: string | undefined;
    let release: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => (release = resolve));
    const end = () => {
      endedWith ??= written;
      release();
    };
    const io: FakeIo = {
      write: (text) => {
        if (endedWith !== undefined) return;
        written += text;
        options.onStdout?.(text, end);
      },
      ended,
    };
    const reply = await Promise.race([
      Promise.resolve(typeof rule.reply === 'function' ? rule.reply(script, io) : rule.reply),
      ended.then(() => undefined),
    ]);
    if (options.signal?.aborted) throw options.signal.reason;
    if (!reply) return { code: ENDED_EXIT, stdout: endedWith ?? written, stderr: '', durationMs: 0 };
    return { code: reply.code ?? 0, stdout: written + (reply.stdout ?? ''), stderr: reply.stderr ?? '', durationMs: 0 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A reply that waits until `signal` aborts (a remote command that runs until Ctrl-C), then rejects with its reason. */
export const untilAborted =
  (signal: AbortSignal): FakeRule['reply'] =>
  () =>
    new Promise<FakeReply>((_resolve, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
