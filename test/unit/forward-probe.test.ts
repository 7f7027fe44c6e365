/**
 * The port-forward probe (src/checks/forward-probe.ts): what it probes, its scripts, the watcher output (captured
 * in the four-sites lab: p-1 sent tokens abc0..abc2 to 203.0.113.10:41001-41003), and the verdicts: right node,
 * another node, another port, nowhere, nothing to send from, a node that could not take part.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadInventory } from '../../src/inventory/load.js';
import {
  forwardsComplete,
  forwardsOf,
  judgeForward,
  parseWatchOutput,
  PROBE_PREFIX,
  FAST_PROBE,
  ProbeSession,
  runForwardProbe,
  sendScript,
  senderOf,
  watchersOf,
  watchScript,
  type ForwardProbeReport,
} from '../../src/checks/forward-probe.js';
import { connectionsOf, landsRight, probeNetwork, underlayNetwork, type Landing } from '../support/fake-forward-probe.js';
import { runUnderlayProbes } from '../../src/checks/underlay-probe.js';
import type { Inventory, Node } from '../../src/inventory/types.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/four-sites.yaml');
const node = (name: string) => inventory.nodes.find((n) => n.name === name)!;
const captured = (name: string) => parseWatchOutput(readFileSync(`test/fixtures/forward-probe/watch-${name}.txt`, 'utf8'));

/** A finished probe over four-sites with nonce `abc`, where each of a-1..a-3 saw what `seen` says. */
const report = (
  seen: Record<string, ReturnType<typeof parseWatchOutput>>,
  extra: Partial<ForwardProbeReport> = {},
): ForwardProbeReport => ({
  sender: 'p-1',
  forwards: forwardsOf(inventory, 'abc'),
  seen: new Map(Object.entries(seen)),
  unavailable: new Map(),
  siteOf: new Map([
    ['a-1', 'a'],
    ['a-2', 'a'],
    ['a-3', 'a'],
  ]),
  ...extra,
});

describe('what the probe covers', () => {
  it('every forward of a nat site, watched by every node of that site, sent from a public node', () => {
    const forwards = forwardsOf(inventory, 'abc');
    assert.deepEqual(
      forwards.map((f) => `${f.token} ${f.publicIp}:${f.port} -> ${f.node} ${f.address}:${f.listenPort}`),
      [
        'abc0 203.0.113.10:41001 -> a-1 192.168.10.11:51820',
        'abc1 203.0.113.10:41002 -> a-2 192.168.10.12:51820',
        'abc2 203.0.113.10:41003 -> a-3 192.168.10.13:51830',
      ],
    );
    assert.deepEqual(
      watchersOf(inventory, forwards).map((n) => n.name),
      ['a-1', 'a-2', 'a-3'],
    );
    assert.equal(senderOf(inventory)?.name, 'p-1');
  });

  it('the scripts carry their arguments quoted, and fail clearly without perl', () => {
    const send = sendScript(forwardsOf(inventory, 'abc'));
    assert.ok(send.trimEnd().endsWith(`${PROBE_PREFIX} 0 abc0 203.0.113.10 41001 abc1 203.0.113.10 41002 abc2 203.0.113.10 41003`));
    assert.match(watchScript(), /command -v perl .*exit 3/);
    assert.match(watchScript(), / 2 meshctl-forward-probe\n$/);
  });
});

describe('parseWatchOutput (captured)', () => {
  it('reads who saw which token, from where, at which address and port', () => {
    assert.deepEqual(captured('a-3'), [
      { token: 'abc2', source: '198.51.100.11:50891', destination: '192.168.10.13', destinationPort: 51830 },
    ]);
    assert.deepEqual(parseWatchOutput('watching\n\ngarbage seen\nseen x 1.2.3.4 5.6.7.8:9\n'), []);
  });
});

describe('judgeForward', () => {
  const all = { 'a-1': captured('a-1'), 'a-2': captured('a-2'), 'a-3': captured('a-3') };

  it('passes when each forward reaches its node at its listen port (external port != listen port)', () => {
    for (const name of ['a-1', 'a-2', 'a-3']) {
      const verdict = judgeForward(report(all), node(name));
      assert.equal(verdict.status, 'pass', verdict.message);
    }
    assert.equal(judgeForward(report(all), node('b-1')).message, 'no port-forward points at this node');
  });

  it('fails on a forward that lands on another node, naming it and the fix', () => {
    // a-1's token arrives at a-2 (the DNAT rule points at 192.168.10.12)
    const seen = {
      'a-1': [],
      'a-2': [...captured('a-2'), { ...captured('a-1')[0]!, destination: '192.168.10.12' }],
      'a-3': captured('a-3'),
    };
    const verdict = judgeForward(report(seen), node('a-1'));
    assert.equal(verdict.status, 'fail');
    assert.equal(
      verdict.message,
      "forward 203.0.113.10:41001 should reach a-1 (192.168.10.11:51820) but lands on a-2 (192.168.10.12:51820): fix the port-forward on site a's router: UDP 41001 -> 192.168.10.11:51820",
    );
    assert.deepEqual(verdict.evidence, [
      'probe: p-1 sent UDP to 203.0.113.10:41001; watched a-1, a-2, a-3',
      'a-2 saw it from 198.51.100.11:50891 at 192.168.10.12:51820',
    ]);
    assert.equal(judgeForward(report(seen), node('a-2')).status, 'pass');
  });

  it('fails on a forward that lands nowhere, and on one that reaches the node at another port', () => {
    const nowhere = judgeForward(report({ ...all, 'a-2': [] }), node('a-2'));
    assert.equal(nowhere.status, 'fail');
    assert.match(
      nowhere.message,
      /^forward 203\.0\.113\.10:41002 reaches no node of site a \(it should reach a-2 at 192\.168\.10\.12:51820\): fix .*UDP 41002 -> 192\.168\.10\.12:51820/,
    );
    const wrongPort = judgeForward(report({ ...all, 'a-3': [{ ...captured('a-3')[0]!, destinationPort: 51820 }] }), node('a-3'));
    assert.equal(wrongPort.status, 'fail');
    assert.match(wrongPort.message, /reaches a-3 on port 51820, not its listenPort 51830/);
  });

  it('warns (judges nothing) without a public node, or when a node of the site could not take part', () => {
    assert.equal(judgeForward(report(all, { sender: undefined }), node('a-1')).status, 'warn');
    const noPerl = judgeForward(report({ ...all, 'a-2': [] }, { unavailable: new Map([['a-2', 'no perl on this node']]) }), node('a-1'));
    assert.equal(noPerl.status, 'warn');
    assert.match(noPerl.message, /not probed: a-2: no perl on this node/);
  });
});

describe('runForwardProbe on scripted connections', () => {
  it('one command per node taking part, all at once, over the open connections (none closed)', async () => {
    const connections = await connectionsOf(inventory, probeNetwork(inventory));
    const result = await runForwardProbe(inventory, connections, { nonce: 'xyz' });
    const used = [...connections.values()].filter((c) => c.scripts.length > 0);
    assert.deepEqual(used.map((c) => c.node).sort(), ['a-1', 'a-2', 'a-3', 'p-1']);
    for (const connection of used) {
      assert.equal(connection.scripts.length, 1, connection.node);
      assert.ok(!connection.closed, connection.node);
    }
    for (const name of ['a-1', 'a-2', 'a-3']) assert.equal(judgeForward(result, node(name)).status, 'pass');
  });

  it('a node outside the run makes its site warn, not fail', async () => {
    const connections = await connectionsOf(inventory, probeNetwork(inventory));
    connections.delete('a-3');
    const result = await runForwardProbe(inventory, connections);
    assert.match(judgeForward(result, node('a-1')).message, /not probed: a-3: not connected in this run/);
  });

  it('probes nothing where no site has a forward', async () => {
    const plain: Inventory = { ...inventory, nodes: inventory.nodes.map(({ forwardedPort: _f, ...n }) => n) };
    const connections = await connectionsOf(plain, probeNetwork(plain));
    const result = await runForwardProbe(plain, connections);
    assert.deepEqual(result.forwards, []);
    assert.ok([...connections.values()].every((c) => c.scripts.length === 0));
  });
});

describe('both probes together (src/checks/underlay-probe.ts)', () => {
  it('one short try when nothing is missed: the 2 s window, both probes at once', async () => {
    const connections = await connectionsOf(inventory, underlayNetwork(inventory));
    const result = await runUnderlayProbes(inventory, connections);
    assert.equal(result.tries, 1);
    assert.match(connections.get('a-1')!.scripts.join('\n'), / 2 meshctl-forward-probe\n/);
    for (const name of ['a-1', 'a-2', 'a-3']) assert.equal(judgeForward(result.forward, node(name)).status, 'pass');
    // a-1 watched for the forward probe and sent for NAT discovery: two commands on one connection
    assert.equal(connections.get('a-1')!.scripts.length, 2);
  });

  it('a forward seen by nobody is probed again with the long window before it is judged', async () => {
    const nowhere: Landing = (f) => (f.node === 'a-2' ? undefined : landsRight(f));
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, nowhere));
    const result = await runUnderlayProbes(inventory, connections);
    assert.equal(result.tries, 2);
    assert.match(connections.get('a-1')!.scripts.at(-1)!, / 6 meshctl-forward-probe\n/);
    assert.equal(judgeForward(result.forward, node('a-2')).status, 'fail');
  });

  it('a forward that lands on the wrong node is a verdict at once: no second try', async () => {
    const wrong: Landing = (f) => ({ node: f.node === 'a-2' ? 'a-1' : f.node, port: f.listenPort });
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, wrong));
    const result = await runUnderlayProbes(inventory, connections);
    assert.equal(result.tries, 1);
    assert.match(judgeForward(result.forward, node('a-2')).message, /lands on a-1/);
  });
});

describe('pacing: a correct mesh pays only for what it needs (ProbeSession)', () => {
  const elapsed = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
    const started = performance.now();
    const value = await work();
    return [value, performance.now() - started];
  };

  /** How each script stopped (`node role how`), sorted; with `scale`, the scripted windows last `scale` x their seconds. */
  const stopsAt = (scale: number) => {
    const stops: string[] = [];
    const pace = { scale, onStop: (n: Node, role: string, how: string) => stops.push(`${n.name} ${role} ${how}`) };
    return { pace, stops: () => stops.sort() };
  };

  it('ends every watcher and the sender once each forward was seen on its node, not after the window', async () => {
    // scale 30: the scripted watchers would listen a minute unless ended. No clock: how each stopped is asserted,
    // which holds however loaded the machine is (a probe that waited for the window fails, after that minute)
    const { pace, stops } = stopsAt(30);
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, landsRight, undefined, pace));
    const result = await runForwardProbe(inventory, connections);
    assert.deepEqual(stops(), ['a-1 watcher ended', 'a-2 watcher ended', 'a-3 watcher ended', 'p-1 sender ended']);
    assert.deepEqual([...result.unavailable], []);
    for (const name of ['a-1', 'a-2', 'a-3']) assert.equal(judgeForward(result, node(name)).status, 'pass');
  });

  it('both probes together: one short try, every script ended before its window', async () => {
    const { pace, stops } = stopsAt(30);
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, landsRight, undefined, pace));
    const result = await runUnderlayProbes(inventory, connections);
    assert.deepEqual(
      stops().filter((s) => !s.endsWith(' ended')),
      [],
    );
    assert.ok(stops().length > 0);
    assert.equal(result.tries, 1);
    assert.equal(result.nat.seen.get('p-1')?.length, 6);
  });

  /**
   * The session's fallback (`delayS` after it began: the sender starts then, whatever its watchers said), seen from
   * the test: a timer of the same delay set right before runForwardProbe, so it is due no later than the fallback's
   * and fires before it. A process's timers fire in the order they are due, however late a loaded machine fires them,
   * and the sender starts from its watchers' output with no timer of its own: so these tests assert an order of
   * events, not a wall time (an upper bound on one failed on a loaded CI host). `events` gets 'fallback due'.
   */
  const fallbackAt = (delayS: number, events: string[]) => {
    let timer: NodeJS.Timeout | undefined;
    const due = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        events.push('fallback due');
        resolve();
      }, delayS * 1000);
    });
    return { due, cancel: () => clearTimeout(timer) };
  };
  /**
   * FAST_PROBE with its fallback 5 s after the start: a sender held back until the fallback starts long after the
   * tests' 0 ms marker (markerAfter), so they fail then, 5 s in, and a correct probe does not wait for it.
   */
  const LATE_FALLBACK = { ...FAST_PROBE, delayS: 5 };

  /**
   * RV2 S2-1: a marker timer of 0 ms, set once `count` watchers are done (said `watching`, or failed): the chain
   * from there to the sender's start is microtasks only (onStdout or the watcher's end -> listening() -> release()
   * -> sendWhen -> the fake's reply), so a sender that starts after the marker waited on a timer of meshctl's, of
   * any length, 1 ms or 1 s: the test fails then, however loaded the machine (no time bound).
   */
  const markerAfter = (count: number, events: string[]) => {
    let done = 0;
    let fired: () => void = () => undefined;
    const firedP = new Promise<void>((resolve) => (fired = resolve));
    const watcherDone = () => {
      if (++done !== count) return;
      setTimeout(() => {
        events.push('a timer after the last watcher');
        fired();
      }, 0);
    };
    return { watcherDone, fired: firedP };
  };

  it('starts the sender when every watcher says it listens, with no fixed pause of its own', async () => {
    // the watchers say they listen 150 ms in: the sender starts after that (a lower bound), and before a 0 ms timer
    // set the moment the last of them said it (an order: no timer of meshctl's on the way)
    const events: string[] = [];
    const sent: number[] = [];
    const marker = markerAfter(3, events);
    const pace = {
      scale: 0.25,
      listenMs: () => 150,
      onListening: marker.watcherDone,
      onSend: (_n: unknown, at: number) => {
        sent.push(at);
        events.push('sender starts');
      },
    };
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, landsRight, undefined, pace));
    const result = await runForwardProbe(inventory, connections, { timing: LATE_FALLBACK });
    await marker.fired;
    assert.deepEqual(events, ['sender starts', 'a timer after the last watcher']);
    assert.ok(sent[0]! >= 145, `the sender started ${Math.round(sent[0]!)} ms after the watchers, before they listened`);
    for (const name of ['a-1', 'a-2', 'a-3']) assert.equal(judgeForward(result, node(name)).status, 'pass');
    // and the script itself sends at once: its rounds and interval, no pause before the first round
    assert.match(sendScript(forwardsOf(inventory, 'abc')), /' 6 0\.15 meshctl-forward-probe 0 abc0 /);
  });

  it('a watcher that never says it listens: the sender starts at the latest after FAST_PROBE.delayS', async () => {
    const events: string[] = [];
    const sent: number[] = [];
    const pace = {
      scale: 0.5,
      listenMs: (n: { name: string }) => (n.name === 'a-2' ? undefined : 0),
      onSend: (_n: unknown, at: number) => {
        sent.push(at);
        events.push('sender starts');
      },
      onStop: (n: Node, role: string, how: string) => {
        if (n.name === 'a-2') events.push(`${n.name} ${role} ${how}`);
      },
    };
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, landsRight, undefined, pace));
    const fallback = fallbackAt(FAST_PROBE.delayS, events);
    const [result, ms] = await elapsed(() => runForwardProbe(inventory, connections));
    await fallback.due;
    // at the fallback, not before it, and before a-2's window (1 s at this pace: a timer set later, due later) ran out
    assert.deepEqual(events, ['fallback due', 'sender starts', 'a-2 watcher ran out']);
    assert.ok(sent[0]! >= 390, `the sender started ${Math.round(sent[0]!)} ms after the watchers`);
    // a-2 saw nothing: a miss, so the probe listened its whole window (1 s at this pace) and judges as before
    assert.ok(ms >= 950, `the probe took ${Math.round(ms)} ms`);
    assert.equal(judgeForward(result, node('a-2')).status, 'fail');
  });

  it('a watcher that fails at once (no perl) does not hold the sender back', async () => {
    // a-1 and a-2 listen at once, a-3 fails: the sender starts before a 0 ms timer set when the last of the three
    // was done (a-3's command ended, a-1 and a-2 said `watching`); one that waited for a-3 to say it listens starts
    // only at the fallback, and one with a pause of its own after the timer
    const events: string[] = [];
    const marker = markerAfter(3, events);
    const network = underlayNetwork(inventory, landsRight, undefined, {
      scale: 0.5,
      onListening: marker.watcherDone,
      onSend: () => events.push('sender starts'),
    });
    const connections = await connectionsOf(inventory, async (n) => {
      const connection = await network(n);
      if (n.name !== 'a-3') return connection;
      const noPerl = new FakeConnection(n.name, [
        {
          match: /print "watching/,
          reply: () => {
            marker.watcherDone();
            return { code: 3, stderr: 'no perl on this node\n' };
          },
        },
      ]);
      return noPerl;
    });
    const result = await runForwardProbe(inventory, connections, { timing: LATE_FALLBACK });
    await marker.fired;
    assert.deepEqual(events, ['sender starts', 'a timer after the last watcher']);
    assert.match(result.unavailable.get('a-3') ?? '', /no perl/);
  });

  it('a forward on the wrong node: every watcher listens its whole window, and the verdict is the same STOP', async () => {
    const wrong: Landing = (f) => ({ node: f.node === 'a-2' ? 'a-1' : f.node, port: f.listenPort });
    const connections = await connectionsOf(inventory, underlayNetwork(inventory, wrong, undefined, { scale: 0.25 }));
    const [result, ms] = await elapsed(() => runForwardProbe(inventory, connections));
    assert.ok(ms >= 480, `the probe took ${Math.round(ms)} ms, not its 500 ms window`);
    assert.match(judgeForward(result, node('a-2')).message, /lands on a-1/);
  });

  it('forwardsComplete: each token on its own node at its listen port, none elsewhere (other tokens ignored)', () => {
    const forwards = forwardsOf(inventory, 'abc');
    const complete = forwardsComplete(forwards);
    const at = (token: string, port = 51820) => ({ token, source: '198.51.100.11:1', destination: '192.168.10.1', destinationPort: port });
    const right = new Map([
      ['a-1', [at('abc0')]],
      ['a-2', [at('abc1')]],
      ['a-3', [at('abc2', 51830), at('zzn4')]],
    ]);
    assert.equal(complete(right), true);
    assert.equal(complete(new Map([...right, ['a-2', []]])), false, 'a forward not seen yet');
    assert.equal(complete(new Map([...right, ['a-3', [at('abc2', 51820)]]])), false, 'seen at another port');
    assert.equal(complete(new Map([...right, ['a-1', [at('abc0'), at('abc1')]]])), false, 'also seen on another node');
  });
});

describe('ProbeSession on hand-scripted watchers', () => {
  const timing = { watchS: 0.4, delayS: 0.4, rounds: 1, intervalS: 0.1, graceS: 0.15 };
  /**
   * The watchers' window for a test whose session must end them first: far longer than the grace, so that a loaded
   * CI host that runs the test process late (the sighting read, and the grace timer set, hundreds of ms after it was
   * written) cannot let the window win (seen at load 30-40: ['window', 'window'] with a 0.4 s window).
   */
  const LONG_WINDOW = { ...timing, watchS: 5 };
  let current = timing;
  const at = (token: string, node: string) => `seen ${token} 198.51.100.25:40000 ${node}:51820\n`;
  /** how each watcher's listening ended: `ended` by the session, or its own `window` run out */
  const endedBy = new Map<string, 'ended' | 'window'>();
  /** A watcher that says `watching`, then writes `lines` at their ms, then listens until its window ends or it is ended. */
  const watcher = (name: string, lines: [number, string][]) =>
    new FakeConnection(name, [
      {
        match: /print "watching/,
        reply: async (_script, io) => {
          const started = performance.now();
          io.write('watching\n');
          for (const [ms, line] of lines) {
            await new Promise((r) => setTimeout(r, ms - (performance.now() - started)));
            io.write(line);
          }
          endedBy.set(
            name,
            await Promise.race([
              new Promise<'window'>((r) => setTimeout(() => r('window'), current.watchS * 1000 - (performance.now() - started))),
              io.ended.then(() => 'ended' as const),
            ]),
          );
          return {};
        },
      },
    ]);
  const forwards = [
    { site: 'a', node: 'a-1', publicIp: '203.0.113.10', port: 1, address: '192.168.10.11', listenPort: 51820, token: 't0' },
  ];

  const run = async (a1: [number, string][], a2: [number, string][], window = timing) => {
    current = window;
    const session = new ProbeSession(window, 2, forwardsComplete(forwards));
    const started = performance.now();
    const results = await Promise.all([session.watch('a-1', watcher('a-1', a1)), session.watch('a-2', watcher('a-2', a2))]);
    session.close();
    return { ms: performance.now() - started, results, session };
  };

  it('complete: ends both watchers graceS after the last sighting, keeping what they printed', async () => {
    const { ms, results, session } = await run([[20, at('t0', '192.168.10.11')]], [], LONG_WINDOW);
    // ended by the session after the grace, not by the watchers' own windows (no upper time bound: a loaded CI host)
    assert.ok(ms >= 160, `took ${Math.round(ms)} ms`);
    assert.deepEqual([endedBy.get('a-1'), endedBy.get('a-2')], ['ended', 'ended']);
    assert.deepEqual(
      results.map((r) => parseWatchOutput(r.stdout).length),
      [1, 0],
    );
    assert.ok(results.every((r) => !session.failed(r)));
  });

  it('a datagram on the wrong node within the grace cancels the early end: the whole window, as before', async () => {
    const { ms, results } = await run([[20, at('t0', '192.168.10.11')]], [[80, at('t0', '192.168.10.12')]]);
    assert.ok(ms >= 390, `took ${Math.round(ms)} ms, not the 400 ms window`);
    assert.equal(parseWatchOutput(results[1]!.stdout).length, 1);
  });
});
