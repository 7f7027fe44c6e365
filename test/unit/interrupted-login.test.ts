/**
 * Ctrl-C during the logins (src/transport/pool.ts connectAll) and during `--limit`'s reads of the outside nodes'
 * public keys (src/engine/limit.ts gatherOutsideKeys), in process, over scripted logins (a `connect` per node that
 * answers at once, fails, or never answers: an sshd stopped after it accepted, which sends no banner until the
 * connect timeout). Before, connectAll waited for a login that never answers for as long as it did not, began the
 * logins not yet begun after Ctrl-C and kept a connection made after it; the commands then ended with main's bare
 * `meshctl: interrupted` (the commands themselves, over a real sshd: ./interrupted-commands.test.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeAll, connectAll } from '../../src/transport/pool.js';
import { TransportError, type Connection } from '../../src/transport/types.js';
import type { Node } from '../../src/inventory/types.js';
import { loadInventory } from '../../src/inventory/load.js';
import { gatherOutsideKeys, limitInventory } from '../../src/engine/limit.js';
import { runUp, type Connector, type UpView } from '../../src/engine/up.js';
import { MeshctlError } from '../../src/errors.js';
import { InterruptedError, interruptedLogin, loginCutMessage, reportInterrupted } from '../../src/interrupted.js';
import { InterruptibleFarm } from '../support/interruptible-farm.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/homelab.yaml');
const ALL = inventory.nodes.map((n) => n.name); // ms-1, wk-1, wk-2, ctb-edge-1
const KEY = 'kZ1jqc6HzSIcsmWUlTUjYtU8jCHKZyAfcAcxi4nqYTU=';

const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
/** `promise`'s value, or 'still waiting' when it has not settled 3 s after the call (a loaded machine needs far less). */
async function within<T>(promise: Promise<T>): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 3000)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A connection that answers the public-key read with KEY and records its close. */
const keyConnection = (name: string, closed: string[]): Connection => {
  const c = new FakeConnection(name, [{ match: /public-key/, reply: { stdout: `${KEY}\n` } }]);
  const close = c.close.bind(c);
  c.close = async () => {
    closed.push(name);
    await close();
  };
  return c;
};

/**
 * Scripted logins for connectAll's `connect`: every node in `hang` never answers (not even to the signal: the
 * worst case), every other one answers at once with keyConnection. `begun` lists the logins begun, `closed` the
 * connections closed.
 */
function scriptedLogins(hang: readonly string[]) {
  const begun: string[] = [];
  const closed: string[] = [];
  const connect = async (node: Node): Promise<Connection> => {
    begun.push(node.name);
    if (hang.includes(node.name)) return new Promise<Connection>(() => undefined);
    return keyConnection(node.name, closed);
  };
  return { begun, closed, connect };
}

describe('connectAll after Ctrl-C', () => {
  it('stops waiting for a login that never answers: the others connected, the silent one "not logged in yet"', async () => {
    const logins = scriptedLogins(['wk-2']);
    const abort = new AbortController();
    const connecting = connectAll(inventory.nodes, { connect: logins.connect, signal: abort.signal });
    await ticks();
    assert.deepEqual(logins.begun, ALL, 'every login begun at once');
    abort.abort(new Error('interrupted'));
    const result = await within(connecting);
    assert.notEqual(result, 'still waiting', 'connectAll still waited for wk-2 after the interrupt');
    if (result === 'still waiting') return;
    assert.deepEqual([...result.connections.keys()], ['ms-1', 'wk-1', 'ctb-edge-1']);
    assert.deepEqual([...result.failures.keys()], ['wk-2']);
    assert.equal(result.failures.get('wk-2')!.message, loginCutMessage('wk-2'));
    assert.ok(result.failures.get('wk-2') instanceof TransportError);
    await closeAll(result.connections, result.jumpHosts);
    assert.deepEqual(logins.closed.sort(), ['ctb-edge-1', 'ms-1', 'wk-1']);
  });

  it('begins no login after it, and closes one that completes after it (with fewer connects at once than nodes)', async () => {
    const closed: string[] = [];
    const begun: string[] = [];
    let answer: () => void = () => undefined;
    const late = new Promise<void>((resolve) => (answer = resolve));
    const abort = new AbortController();
    const connecting = connectAll(inventory.nodes, {
      maxParallel: 1,
      signal: abort.signal,
      connect: async (node) => {
        begun.push(node.name);
        if (node.name === 'ms-1') await late; // its login answers only after the interrupt
        return keyConnection(node.name, closed);
      },
    });
    await ticks();
    abort.abort(new Error('interrupted'));
    const result = await within(connecting);
    assert.notEqual(result, 'still waiting');
    if (result === 'still waiting') return;
    assert.deepEqual(begun, ['ms-1'], 'no login begun after the interrupt');
    assert.deepEqual([...result.connections.keys()], []);
    assert.deepEqual(
      [...result.failures].map(([n, e]) => [n, e.message]),
      ALL.map((n) => [n, loginCutMessage(n)]),
    );
    answer();
    await ticks();
    assert.deepEqual(closed, ['ms-1'], "the late login's connection is closed, not left open");
  });

  it("keeps a node's own failure from before the interrupt; the transport's own interrupted rejection reads as not yet", async () => {
    const abort = new AbortController();
    const connecting = connectAll(inventory.nodes, {
      signal: abort.signal,
      connect: async (node) => {
        if (node.name === 'ctb-edge-1') throw new TransportError(node.name, 'ctb-edge-1 (root@198.51.100.25:22): connection refused');
        if (node.name === 'wk-2')
          // as src/transport/ssh.ts openClient does on abort
          return new Promise<Connection>((_resolve, reject) =>
            abort.signal.addEventListener('abort', () => reject(new TransportError('wk-2', 'wk-2 (root@192.168.15.4:22): interrupted')), {
              once: true,
            }),
          );
        return keyConnection(node.name, []);
      },
    });
    await ticks();
    abort.abort(new Error('interrupted'));
    const result = await connecting;
    const cut = interruptedLogin(ALL, result.failures, abort.signal);
    assert.ok(cut);
    assert.equal(
      cut.message,
      'interrupted while logging in: 2 of 4 nodes connected (ms-1, wk-1), wk-2 not yet, ctb-edge-1 failed (below); nothing was changed on any node',
    );
    assert.deepEqual(cut.details, ['ctb-edge-1 (root@198.51.100.25:22): connection refused']);
    assert.equal(cut.exitCode, 130);
  });
});

describe('interruptedLogin', () => {
  const aborted = () => {
    const abort = new AbortController();
    abort.abort(new Error('interrupted'));
    return abort.signal;
  };

  it("says where it was, as the brief's example", () => {
    const cut = interruptedLogin(ALL, [{ node: 'wk-2', error: loginCutMessage('wk-2') }], aborted());
    assert.ok(cut instanceof InterruptedError);
    assert.equal(
      cut.message,
      'interrupted while logging in: 3 of 4 nodes connected (ms-1, wk-1, ctb-edge-1), wk-2 not yet; nothing was changed on any node',
    );
    assert.deepEqual(cut.report, {
      result: 'interrupted',
      stage: 'login',
      nodes: ALL,
      reached: ['ms-1', 'wk-1', 'ctb-edge-1'],
      notYet: ['wk-2'],
      failed: [],
      changed: false,
    });
  });

  it('is nothing without an interrupt, or when no login was cut short by it (the command reports its failures as before)', () => {
    const failures = [{ node: 'wk-2', error: loginCutMessage('wk-2') }];
    assert.equal(interruptedLogin(ALL, failures, new AbortController().signal), undefined);
    assert.equal(interruptedLogin(ALL, [{ node: 'wk-2', error: 'wk-2 (root@x:22): connection refused' }], aborted()), undefined);
  });
});

describe("main's report of an interrupted run (reportInterrupted)", () => {
  const run = (error: unknown, json: boolean) => {
    const lines: string[] = [];
    let stdout = '';
    const code = reportInterrupted(error, {
      command: 'verify',
      json,
      print: (line) => lines.push(line),
      stdout: {
        write: (text: string) => {
          stdout += text;
          return true;
        },
      } as unknown as NodeJS.WritableStream,
    });
    return { code, lines, stdout };
  };
  const cut = () => interruptedLogin(ALL, [{ node: 'wk-2', error: loginCutMessage('wk-2') }], AbortSignal.abort())!;

  it('an interrupted login: its message, and with --json its report on stdout', () => {
    const text = run(cut(), false);
    assert.equal(text.code, 130);
    assert.deepEqual(text.lines, [`meshctl: ${cut().message}`]);
    assert.equal(text.stdout, '');
    const json = run(cut(), true);
    assert.deepEqual(json.lines, text.lines);
    const report = JSON.parse(json.stdout);
    assert.equal(report.command, 'verify');
    assert.equal(report.result, 'interrupted');
    assert.equal(report.stage, 'login');
    assert.deepEqual(report.reached, ['ms-1', 'wk-1', 'ctb-edge-1']);
    assert.deepEqual(report.notYet, ['wk-2']);
    assert.equal(report.changed, false);
  });

  it("a command's own interrupted message is printed (it was swallowed by `meshctl: interrupted`); anything else as before", () => {
    const own = run(new MeshctlError('interrupted before any key was rotated; nothing was changed', 'interrupted'), true);
    assert.deepEqual(own.lines, ['meshctl: interrupted before any key was rotated; nothing was changed']);
    assert.equal(own.stdout, '');
    const other = run(new Error('interrupted'), true);
    assert.deepEqual(other.lines, ['meshctl: interrupted']);
    assert.equal(other.code, 130);
  });
});

describe('--limit: Ctrl-C while the outside nodes public keys are read', () => {
  /** A Connector over connectAll with scripted logins (see scriptedLogins), closing what it connected. */
  const connectorOver = (logins: ReturnType<typeof scriptedLogins>, signal: AbortSignal): Pick<Connector, 'connectAll'> => ({
    async connectAll(nodes) {
      const result = await connectAll(nodes.nodes, { connect: logins.connect, signal });
      return { connections: result.connections, failures: result.failures, close: () => closeAll(result.connections) };
    },
  });

  // without a state key, wk-1 and wk-2 are read as one group: wk-1's read waits for wk-2's login (not yet either);
  // with wk-2's key in the state, wk-2 is read on its own and wk-1's key comes at once
  const cases = [
    { state: new Map<string, string>(), said: '0 of 2 read, wk-1, wk-2 not yet', closed: ['wk-1'] },
    { state: new Map([['wk-2', KEY]]), said: '1 of 2 read (wk-1), wk-2 not yet', closed: ['wk-1'] },
  ];
  for (const { state, said, closed } of cases)
    it(`rejects with where it was, wk-2's login not answered: ${said} (${state.size ? "wk-2's key in the local state" : 'no state'})`, async () => {
      const outside = limitInventory(inventory, ['wk-1', 'wk-2']);
      const logins = scriptedLogins(['wk-2']);
      const abort = new AbortController();
      // a giveUp that never comes: the interrupt alone ends the wait
      const gathering = gatherOutsideKeys(connectorOver(logins, abort.signal), outside, state, abort.signal, new Promise(() => undefined));
      gathering.catch(() => undefined);
      await ticks();
      abort.abort(new Error('interrupted'));
      const outcome = await within(
        gathering.then(
          () => 'resolved',
          (e: unknown) => e,
        ),
      );
      assert.ok(outcome instanceof InterruptedError, `rejected with an InterruptedError, not: ${String(outcome)}`);
      assert.equal(
        outcome.message,
        `interrupted while reading the public keys of the nodes outside --limit: ${said}; nothing was changed on any node`,
      );
      assert.equal(outcome.report.stage, 'outside-keys');
      assert.deepEqual(logins.closed, closed, "wk-1's connection closed");
    });

  it('runUp --limit ms-1 rejects with it: nothing but the key read was sent, every connection made is closed', async () => {
    const farm = new InterruptibleFarm();
    const closed: string[] = [];
    const begun: string[] = [];
    const connector: Connector = {
      async connectAll(nodes) {
        const result = await connectAll(nodes.nodes, {
          signal: farm.abort.signal,
          connect: async (node) => {
            begun.push(node.name);
            if (node.name === 'wk-2') return new Promise<Connection>(() => undefined);
            const c = farm.node(node.name);
            return { ...c, run: c.run.bind(c), close: async () => void closed.push(node.name) };
          },
        });
        return { connections: result.connections, failures: result.failures, close: () => closeAll(result.connections) };
      },
      connectOne: async (n) => farm.node(n.name),
    };
    const view: UpView = { onEvent: () => undefined, gate: async () => true };
    const running = runUp(inventory, connector, view, {
      signal: farm.abort.signal,
      underlayProbes: false,
      rollbackDeadlineS: 120,
      limit: ['ms-1'],
      // wk-2's key in the local state: it is read on its own (wk-1's and ctb-edge-1's reads do not wait for it), and
      // given up for the state's key only 1 s after ms-1 connected (src/engine/limit.ts outsideGiveUp): the interrupt
      // comes long before
      knownPublicKeys: new Map([['wk-2', KEY]]),
    });
    running.catch(() => undefined);
    // the outside nodes' reads and ms-1's login under way; wk-1 and ctb-edge-1 answered their key read
    const answered = () => farm.sent.filter((s) => s.kind === 'public-key' && s.outcome === 'answered').length;
    for (let i = 0; i < 10_000 && answered() < 2; i++) await ticks(1);
    farm.abort.abort(new Error('interrupted'));
    const outcome = await within(
      running.then(
        () => 'resolved',
        (e: unknown) => e,
      ),
    );
    assert.ok(outcome instanceof InterruptedError, `rejected with an InterruptedError, not: ${String(outcome)}`);
    assert.equal(
      outcome.message,
      'interrupted while reading the public keys of the nodes outside --limit: 2 of 3 read (wk-1, ctb-edge-1), wk-2 not yet; nothing was changed on any node',
    );
    assert.deepEqual(farm.sent.map((s) => `${s.node} ${s.kind}`).sort(), ['ctb-edge-1 public-key', 'wk-1 public-key']);
    assert.deepEqual(begun.sort(), [...ALL].sort());
    assert.deepEqual(closed.sort(), ['ctb-edge-1', 'ms-1', 'wk-1']);
  });
});
