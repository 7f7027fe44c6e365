/**
 * Cold fake nodes that a test interrupts at a chosen point of `up`: each node answers as
 * scripts/bench/farm/fake-node.ts FakeNode does (a bare Debian 12 node: facts with its run lock acquired, install,
 * a new key, the files written, wg-quick up, every ping answered), behind the Connection seam
 * (src/transport/types.ts) with the SSH transport's behaviour on Ctrl-C (src/transport/ssh.ts):
 * - a script whose RunOptions.signal is aborted before it is sent is refused (run() throws the signal's reason) and
 *   never reaches the node;
 * - a script under way when its signal aborts is stopped: run() rejects with the signal's reason at once (the engine
 *   gives the changing steps a signal of their own that aborts only after INTERRUPT_DRAIN_MS, so those are waited for);
 * - RunOptions.sendWhen: the script is sent only once that resolves true, else nothing runs on the node.
 * Every script that reaches a node is logged (`sent`) with its kind and whether the run's signal (`abort`) had
 * already aborted when it was sent; its answer comes when `hold` (the test's hook) lets it. A facts probe that carries
 * the run lock can stream its lock section first (`streamLock`), as the real probe does before the facts are read.
 */
import type { Connector } from '../../src/engine/up.js';
import type { Connection, ConnectionStats, ExecResult, RunOptions } from '../../src/transport/types.js';
import { FakeFarm, fakePublicKey } from '../../scripts/bench/farm/fake-node.js';
import { fakeConnector } from './fake-connector.js';

/** What a script does on a node, told from its text (in FakeNode's order: the facts probe may carry the lock). */
export type ScriptKind =
  | 'facts'
  | 'lock'
  | 'public-key'
  | 'install'
  | 'keys'
  | 'config'
  | 'enable'
  | 'ping'
  | 'revert'
  | 'disarm'
  | 'release'
  /** `true`: the ssh-still-reachable check's command over a new login */
  | 'fresh-login'
  | 'other';

/** The kind of `script` (see ScriptKind). */
export function scriptKind(script: string): ScriptKind {
  const has = (text: string) => script.includes(text);
  if (has('@@meshctl begin uid')) return 'facts';
  if (has('mc_ours=') && has('/run/meshctl/lock')) return 'release';
  if (has('take_lock')) return 'lock';
  if (has('public-key 2>/dev/null')) return 'public-key';
  if (has('apt-get install')) return 'install';
  if (has('wg genkey')) return 'keys';
  if (has('.conf.meshctl-tmp')) return 'config';
  if (has('systemctl enable --now')) return 'enable';
  if (has('@@meshctl begin ping:')) return 'ping';
  if (has('echo rollback=reverted')) return 'revert';
  if (has('echo rollback=disarmed')) return 'disarm';
  if (script === 'true') return 'fresh-login';
  return 'other';
}

/** One script that reached a node. */
export interface SentScript {
  node: string;
  kind: ScriptKind;
  /** the run's signal had aborted when the script was sent */
  afterAbort: boolean;
  /** carries the run lock (a facts probe with the lock's section, or the lock's own script) */
  locks: boolean;
  /** held: not answered yet; answered; stopped: its signal aborted while it ran (run() rejected) */
  outcome: 'held' | 'answered' | 'stopped';
}

export class InterruptibleFarm {
  /** the run's signal (UpOptions.signal): the test's Ctrl-C */
  readonly abort = new AbortController();
  /** every script that reached a node, in the order sent */
  readonly sent: SentScript[] = [];
  /** when a script's answer may come: resolves (or returns nothing: at once) */
  hold: (script: SentScript) => Promise<void> | void = () => undefined;
  /** the facts probe's lock section is written to onStdout before its answer is held (as a real probe streams it) */
  streamLock = false;
  private readonly farm = new FakeFarm();
  private readonly nodes = new Map<string, Connection>();

  /** The connection of `name` (one per node, as a run has). */
  node(name: string): Connection {
    let node = this.nodes.get(name);
    if (!node) {
      node = this.connection(name);
      this.nodes.set(name, node);
    }
    return node;
  }

  /** up's Connector (../support/fake-connector.ts): every node connects at once, a reconnect gets its connection again. */
  connector(): Connector {
    return fakeConnector((name) => this.node(name));
  }

  /** The scripts sent to `node` (every node when omitted) of these kinds. */
  scripts(filter: { node?: string; kinds?: ScriptKind[]; afterAbort?: boolean } = {}): SentScript[] {
    return this.sent.filter(
      (s) =>
        (filter.node === undefined || s.node === filter.node) &&
        (filter.kinds === undefined || filter.kinds.includes(s.kind)) &&
        (filter.afterAbort === undefined || s.afterAbort === filter.afterAbort),
    );
  }

  private connection(name: string): Connection {
    const inner = this.farm.node(name);
    const stats: ConnectionStats = { commands: 0, remoteMs: 0, connectMs: 0 };
    const run = async (script: string, options: RunOptions = {}): Promise<ExecResult> => {
      if (options.signal?.aborted) throw options.signal.reason;
      if (options.sendWhen && !(await options.sendWhen)) return { code: 0, stdout: '', stderr: '', durationMs: 0 };
      if (options.signal?.aborted) throw options.signal.reason;
      const kind = scriptKind(script);
      const entry: SentScript = {
        node: name,
        kind,
        afterAbort: this.abort.signal.aborted,
        locks: kind === 'lock' || (kind === 'facts' && script.includes('take_lock')),
        outcome: 'held',
      };
      this.sent.push(entry);
      stats.commands++;
      if (this.streamLock && kind === 'facts' && entry.locks)
        options.onStdout?.('@@meshctl begin lock\nacquired\n@@meshctl end lock rc=0\n', () => undefined);
      await this.until(entry, options.signal);
      if (kind === 'public-key') return done(`${fakePublicKey(name)}\n`);
      if (kind === 'revert') return done('rollback=reverted\n');
      const answer = await inner.run(script);
      return done(answer.stdout);
      function done(stdout: string): ExecResult {
        entry.outcome = 'answered';
        return { code: 0, stdout, stderr: '', durationMs: 0 };
      }
    };
    return { node: name, target: `root@${name}:22`, stats, run, close: async () => undefined };
  }

  /** Waits for the test's hold of `entry`; rejects with the reason when `signal` aborts first (the script is stopped). */
  private until(entry: SentScript, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const stop = () => {
        entry.outcome = 'stopped';
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', stop, { once: true });
      void Promise.resolve(this.hold(entry)).then(() => {
        signal?.removeEventListener('abort', stop);
        if (entry.outcome === 'held') resolve();
      });
    });
  }
}
