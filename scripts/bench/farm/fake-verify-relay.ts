/**
 * The converged fakes (./fake-verify-node.ts) served from a process of their own, for ./verify-cost.ts: meshctl's
 * process then holds only a relay per node (RelayNode, behind the Connection seam), which sends each script to the
 * fakes' process and hands the answer's pieces on as they come back over a pipe, so meshctl's CPU and memory are its
 * own process's (process.cpuUsage, resourceUsage().maxRSS), with nothing subtracted: the fakes' answer-making, their
 * garbage and the GC and compiler threads it keeps busy are the other process's. What the relay costs meshctl's
 * process (reading the pipe, cutting it into frames, decoding each piece to a string, one write per script) stays in:
 * an SSH channel's data events cost it too (ssh2 decrypts and decodes each packet, src/transport/ssh.ts).
 *
 * The fakes' process: `node --import tsx fake-verify-relay.ts --serve INVENTORY.yaml [--now SECONDS]` (RelayFarm.start
 * runs it), the inventory loaded as meshctl loads it (src/inventory/load.ts) from the file meshctl's process loaded,
 * one ConvergedFarm of it (`--now`: the nodes' clock fixed, for comparing answers across runs). Each answer is made
 * and handed on as in process (ConvergedNode.run with onStdout: the same pieces, of about PIECE characters, a turn of
 * the event loop between two), each piece one frame on the fakes' stdout; between two pieces a node also waits for
 * the pipe to drain when it is full (ConvergedFarm.turn), as a full SSH channel window makes a node wait, so neither
 * process holds more of an answer than the pipe's buffers.
 *
 * Frames, both ways: a header of 9 bytes (the payload's length in bytes, u32 big-endian; the run's id, u32; the
 * kind, u8) then the payload. To the fakes: RUN (payload: the node's index in the inventory, a newline, the script,
 * UTF-8), STATS (empty). From the fakes: READY (empty, once the farm is made), PIECE (one piece of a run's stdout,
 * UTF-8), DONE (the run's exit status, decimal), STATS (JSON: FakeStats).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { loadInventory } from '../../../src/inventory/load.js';
import type { Inventory } from '../../../src/inventory/types.js';
import type { Connection, ConnectionStats, ExecResult, RunOptions } from '../../../src/transport/types.js';
import { ConvergedFarm } from './fake-verify-node.js';

const RUN = 1;
const STATS = 2;
const READY = 3;
const PIECE_FRAME = 4;
const DONE = 5;
const HEADER = 9;

/** What the fakes' process reports of itself at the end (STATS). */
export interface FakeStats {
  /** the process's CPU since it was ready (its start-up left out), user + system, µs (process.cpuUsage) */
  cpuMicros: number;
  /** its peak RSS, KiB (process.resourceUsage().maxRSS) */
  maxRssKiB: number;
  /** the answers made, by script (ConvergedFarm.answered) */
  answered: ConvergedFarm['answered'];
  /** the scripts no rule knew (ConvergedFarm.unknown) */
  unknown: Record<string, number>;
}

/** One frame: the header and `payload` (a string, sent as UTF-8) in one Buffer. */
function frame(kind: number, id: number, payload = ''): Buffer {
  const bytes = Buffer.byteLength(payload);
  const out = Buffer.allocUnsafe(HEADER + bytes);
  out.writeUInt32BE(bytes, 0);
  out.writeUInt32BE(id, 4);
  out.writeUInt8(kind, 8);
  if (bytes) out.write(payload, HEADER, 'utf8');
  return out;
}

/**
 * Cuts a byte stream into frames: `push` each chunk as read (a chunk may end anywhere, in a header too);
 * `onFrame(kind, id, bytes, start, end)` gets each whole frame's payload as bytes[start, end) (valid during the call
 * only). Holds only an unfinished frame's bytes; a frame split across chunks is copied once, whole, the rest read in
 * place (~0.4 s of meshctl's ~18 s at 500 nodes went to the relay's own frames with two copies per split frame).
 */
export class FrameReader {
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(private readonly onFrame: (kind: number, id: number, bytes: Buffer, start: number, end: number) => void) {}

  push(chunk: Buffer): void {
    let at = 0;
    if (this.heldBytes) {
      // complete the held frame from the chunk's head, copying only what it lacks (then read the chunk in place)
      const head = this.heldBytes >= HEADER ? this.held[0]! : Buffer.concat([...this.held, chunk.subarray(0, HEADER)]);
      if (head.length < HEADER) {
        this.hold(chunk);
        return;
      }
      const need = HEADER + head.readUInt32BE(0) - this.heldBytes;
      if (chunk.length < need) {
        this.hold(chunk);
        return;
      }
      const whole = Buffer.concat([...this.held, chunk.subarray(0, need)], this.heldBytes + need);
      this.held = [];
      this.heldBytes = 0;
      this.onFrame(whole.readUInt8(8), whole.readUInt32BE(4), whole, HEADER, whole.length);
      at = need;
    }
    while (chunk.length - at >= HEADER) {
      const end = at + HEADER + chunk.readUInt32BE(at);
      if (end > chunk.length) break;
      this.onFrame(chunk.readUInt8(at + 8), chunk.readUInt32BE(at + 4), chunk, at + HEADER, end);
      at = end;
    }
    // the rest, an unfinished frame: a view of the chunk (which it keeps until the frame is whole)
    if (at < chunk.length) this.hold(chunk.subarray(at));
  }

  private hold(bytes: Buffer): void {
    // the first held buffer starts a frame; with its header whole, it is the one read for the frame's length
    if (this.heldBytes && this.held[0]!.length < HEADER) {
      this.held = [Buffer.concat([...this.held, bytes])];
      this.heldBytes = this.held[0]!.length;
      return;
    }
    this.held.push(bytes);
    this.heldBytes += bytes.length;
  }
}

interface Pending {
  options: RunOptions;
  kept: string[] | undefined;
  resolve: (result: ExecResult) => void;
}

/**
 * meshctl's side: the fakes' process, and a relay Connection per node. `start` resolves once the fakes' process is
 * ready; `stop` asks it for its FakeStats and ends it. Throws (rejects) when the fakes' process fails.
 */
export class RelayFarm {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private statsWaiter: ((stats: FakeStats) => void) | undefined;
  /** called at each piece that arrives (the bench's memory trace samples then) */
  onAnswer: () => void = () => undefined;
  /** runs sent and answers ended, so far */
  readonly counts = { sent: 0, done: 0 };
  private failed: Error | undefined;

  private constructor(
    readonly inventory: Inventory,
    private readonly child: ChildProcess,
  ) {}

  /**
   * Starts the fakes' process for the inventory loaded from `inventoryPath` (the file `inventory` was loaded from),
   * `now`: their fixed clock (seconds), else the real one. Resolves when it is ready.
   */
  static async start(inventory: Inventory, inventoryPath: string, options: { now?: number } = {}): Promise<RelayFarm> {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', inventoryPath, ...(options.now !== undefined ? ['--now', String(options.now)] : [])],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const farm = new RelayFarm(inventory, child);
    const ready = new Promise<void>((resolve, reject) => {
      farm.readyWaiter = resolve;
      farm.failWaiter = reject;
    });
    const reader = new FrameReader((kind, id, bytes, start, end) => farm.frame(kind, id, bytes, start, end));
    (child.stdout as Readable).on('data', (chunk: Buffer) => reader.push(chunk));
    child.on('exit', (code, signal) => farm.fail(new Error(`the fakes' process ended (${code ?? signal})`)));
    child.on('error', (error) => farm.fail(error));
    await ready;
    return farm;
  }

  private readyWaiter: () => void = () => undefined;
  private failWaiter: (error: Error) => void = () => undefined;

  private fail(error: Error): void {
    if (this.failed) return;
    this.failed = error;
    this.failWaiter(error);
    for (const [, p] of this.pending) p.resolve({ code: 255, stdout: '', stderr: `${error.message}\n`, durationMs: 0 });
    this.pending.clear();
  }

  private frame(kind: number, id: number, bytes: Buffer, start: number, end: number): void {
    if (kind === PIECE_FRAME) {
      const p = this.pending.get(id);
      if (!p) return;
      const piece = bytes.toString('utf8', start, end);
      p.options.onStdout?.(piece, () => undefined);
      p.kept?.push(piece);
      this.onAnswer();
    } else if (kind === DONE) {
      const p = this.pending.get(id);
      if (!p) return;
      this.pending.delete(id);
      this.counts.done++;
      p.resolve({ code: Number(bytes.toString('utf8', start, end)), stdout: p.kept ? p.kept.join('') : '', stderr: '', durationMs: 0 });
    } else if (kind === STATS) this.statsWaiter?.(JSON.parse(bytes.toString('utf8', start, end)) as FakeStats);
    else if (kind === READY) this.readyWaiter();
  }

  /** One relay connection per node of the inventory, all "connected". */
  connections(): Map<string, Connection> {
    return new Map(this.inventory.nodes.map((n, i) => [n.name, new RelayNode(n.name, i, this)]));
  }

  /** Sends node `index` the script; resolves with its answer (the pieces joined, unless discarded). */
  send(index: number, script: string, options: RunOptions): Promise<ExecResult> {
    if (this.failed) return Promise.resolve({ code: 255, stdout: '', stderr: `${this.failed.message}\n`, durationMs: 0 });
    const id = this.nextId++;
    this.counts.sent++;
    const kept = options.discardStdout && options.onStdout ? undefined : [];
    const done = new Promise<ExecResult>((resolve) => this.pending.set(id, { options, kept, resolve }));
    (this.child.stdin as Writable).write(frame(RUN, id, `${index}\n${script}`));
    return done;
  }

  /** The fakes' FakeStats, then their process ended. */
  async stop(): Promise<FakeStats> {
    const stats = new Promise<FakeStats>((resolve) => (this.statsWaiter = resolve));
    (this.child.stdin as Writable).write(frame(STATS, 0));
    const got = await stats;
    const exited = once(this.child, 'exit');
    this.failed ??= new Error('stopped');
    (this.child.stdin as Writable).end();
    await exited;
    return got;
  }
}

/** A node's relay: its scripts go to the fakes' process, its answers come back in pieces (RunOptions.onStdout). */
export class RelayNode implements Connection {
  readonly stats: ConnectionStats = { commands: 0, remoteMs: 0, connectMs: 0 };
  readonly target: string;

  constructor(
    readonly node: string,
    private readonly index: number,
    private readonly farm: RelayFarm,
  ) {
    this.target = `root@${node}:22`;
  }

  /** As ./fake-node.ts arrives: thrown when aborted, nothing sent when RunOptions.sendWhen says no. */
  async run(script: string, options: RunOptions = {}): Promise<ExecResult> {
    if (options.signal?.aborted) throw options.signal.reason;
    if (options.sendWhen && !(await options.sendWhen)) return { code: 0, stdout: '', stderr: '', durationMs: 0 };
    this.stats.commands++;
    return this.farm.send(this.index, script, options);
  }

  async close(): Promise<void> {}
}

/** The fakes' process: reads RUN and STATS frames on stdin, answers on stdout. */
async function serve(inventoryPath: string, now: number | undefined): Promise<void> {
  const farm = new ConvergedFarm(loadInventory(inventoryPath), now !== undefined ? { now: () => now } : {});
  const nodes = [...farm.connections().values()];
  const out = process.stdout;
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  // between two pieces: a turn, and the pipe drained when full (what is written waits in this process, not meshctl's)
  // (one wait for every node: a listener each would be ~1,000 at once)
  let drained: Promise<unknown> | undefined;
  const drain = () => {
    drained ??= once(out, 'drain').finally(() => {
      drained = undefined;
    });
    return drained;
  };
  farm.turn = async () => {
    await tick();
    while (out.writableNeedDrain) await drain();
  };
  const reader = new FrameReader((kind, id, bytes, start, end) => {
    if (kind === RUN) {
      const text = bytes.toString('utf8', start, end);
      const nl = text.indexOf('\n');
      const node = nodes[Number(text.slice(0, nl))]!;
      const script = text.slice(nl + 1);
      void (async () => {
        // as in process (./fake-node.ts arrives): the answer a turn after the script came
        const result = await node.run(script, { onStdout: (piece) => out.write(frame(PIECE_FRAME, id, piece)), discardStdout: true });
        out.write(frame(DONE, id, String(result.code)));
      })();
    } else if (kind === STATS) {
      const cpu = process.cpuUsage(ready);
      const stats: FakeStats = {
        cpuMicros: cpu.user + cpu.system,
        maxRssKiB: process.resourceUsage().maxRSS,
        answered: farm.answered,
        unknown: Object.fromEntries(farm.unknown),
      };
      out.write(frame(STATS, 0, JSON.stringify(stats)));
    }
  });
  process.stdin.on('data', (chunk: Buffer) => reader.push(chunk));
  process.stdin.on('end', () => process.exit(0));
  const ready = process.cpuUsage();
  out.write(frame(READY, 0));
}

if (process.argv[2] === '--serve') {
  const at = process.argv.indexOf('--now');
  serve(process.argv[3]!, at > 0 ? Number(process.argv[at + 1]) : undefined).catch((error) => {
    process.stderr.write(`${(error as Error).stack ?? error}\n`);
    process.exit(1);
  });
}
