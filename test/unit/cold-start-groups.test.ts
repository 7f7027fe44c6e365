/**
 * verify's cold-start probe when receivers come up short: their senders are judged by what the UDP counters can
 * tell (other traffic only adds to them), and the ones still open are found in halves, every receiver at once,
 * instead of one sender at a time (2(N-1) round trips for a node dialled by everyone; the farm's verify never
 * finished at 100 nodes). Round trips are counted by the fake nodes themselves: a round trip is a wave of scripts
 * started while none was running (the probe starts each round's scripts together and waits for all of them).
 * The probe's clock here is the fake nodes' own (probeClock), so a round trip count does not depend on the machine's load.
 */
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import {
  COLD_START_BURST,
  judgeDirection,
  judgeWindow,
  runColdStartPlan,
  scriptBursts,
  type Direction,
  type UdpCounters,
} from '../../src/checks/cold-start.js';
import { fakeWatch, udpSection } from '../support/fake-cold-start.js';

/**
 * A full mesh of n nodes (every node dials every other), node i at 10.0.0.(i+1):51820, in slots as planColdStart
 * makes them (a receiver's k-th sender in slot k).
 */
function fullMesh(n: number): { slots: Direction[][] } {
  const name = (i: number) => `n${String(i).padStart(2, '0')}`;
  const slots: Direction[][] = [];
  for (let to = 0; to < n; to++) {
    let slot = 0;
    for (let from = 0; from < n; from++) {
      if (from === to) continue;
      slots[slot] ??= [];
      slots[slot]!.push({ from: name(from), to: name(to), endpoint: { host: `10.0.0.${to + 1}`, port: 51820 } });
      slot++;
    }
  }
  return { slots };
}

/** 1 s: long enough for a sender whose bursts were sent at once to be on time (COLD_START_IN_FLIGHT_MS, 0.5 s). */
const WATCH = { polls: 20, intervalSeconds: 0.05 };

/**
 * The probe's clock (performance.now(): when a sender's bursts were known sent, when a receiver's script began), ms:
 * it moves only when a fake watch sleeps, to that sleep's end; the sleep itself lets every other fake node run first
 * (one setImmediate). On the wall clock a loaded machine made an on-time sender late (its output read more than
 * 1 s - COLD_START_IN_FLIGHT_MS after the receiver's script began: the process was not scheduled), which costs the
 * probe one more round trip by design (the read again of runColdStartPlan): 16 round trips for one failing sender
 * among 31, over groupBound(31). Late senders are tested on purpose below (n03 waits for n00's watch to end).
 */
const probeClock = { ms: 0 };
const sleepOnProbeClock = async (ms: number) => {
  const wake = probeClock.ms + ms;
  await new Promise((resolve) => setImmediate(resolve));
  probeClock.ms = Math.max(probeClock.ms, wake);
};
beforeEach(() => {
  probeClock.ms = 0;
  mock.method(performance, 'now', () => probeClock.ms);
});
afterEach(() => mock.restoreAll());

/**
 * Fake nodes behind the probe's Runner: a burst section adds `arrive(direction)` datagrams (16 unless said) to its
 * receiver's InDatagrams at once and the node's output so far is handed to onStdout; a node that cannot send prints
 * bash's error instead of `sent=16`. The watch waits for its target, as many looks as far apart as its script says
 * on the probe's clock (probeClock); the `udp` section prints the counters as /proc/net/snmp does. `waves` counts the
 * round trips.
 */
function fakeNodes(directions: Direction[], options: { arrive?: (d: Direction) => number; cannotSend?: boolean } = {}) {
  const owner = new Map(directions.map((d) => [`${d.from}>${d.endpoint.host}:${d.endpoint.port}`, d]));
  const nodes = [...new Set(directions.map((d) => d.to))];
  const counters = new Map(nodes.map((n) => [n, { inDatagrams: 1000, noPorts: 3 } as UdpCounters]));
  const initial = new Map([...counters].map(([k, v]) => [k, { ...v }]));
  let running = 0;
  let waves = 0;
  const scripts = new Map<string, number>();
  const run = async (node: string, script: string, onStdout?: (chunk: string) => void): Promise<string> => {
    if (running === 0) waves++;
    running++;
    scripts.set(node, (scripts.get(node) ?? 0) + 1);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      const out: string[] = [];
      for (const b of scriptBursts(script)) {
        const d = owner.get(`${node}>${b.host}:${b.port}`)!;
        if (options.cannotSend) {
          out.push(`@@meshctl begin ${b.section}\nbash: connect: Network is unreachable\n@@meshctl end ${b.section} rc=3`);
          continue;
        }
        counters.get(d.to)!.inDatagrams += options.arrive?.(d) ?? COLD_START_BURST;
        out.push(`@@meshctl begin ${b.section}\nsent=${COLD_START_BURST}\n@@meshctl end ${b.section} rc=0`);
      }
      if (/"\$mc_udp" -lt /.test(script)) {
        // the output so far reaches meshctl while the watch runs (the whole stdout is still the script's answer)
        out.push('@@meshctl begin watch');
        onStdout?.(`${out.join('\n')}\n`);
        const watched = await fakeWatch(script, () => counters.get(node)!.inDatagrams + counters.get(node)!.noPorts, sleepOnProbeClock);
        out.push(`${watched}\n@@meshctl end watch rc=0`);
      }
      if (/begin udp'/.test(script)) out.push(udpSection(counters.get(node)!));
      out.push('@@meshctl begin done\n\n@@meshctl end done rc=0');
      return `${out.join('\n')}\n`;
    } finally {
      running--;
    }
  };
  return { run, initial, waves: () => waves, scripts };
}

const statuses = (r: Awaited<ReturnType<typeof runColdStartPlan>>) => {
  const counts: Record<string, number> = {};
  for (const d of r.directions) {
    const s = judgeDirection(d).status;
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
};
const notPassing = (r: Awaited<ReturnType<typeof runColdStartPlan>>) =>
  r.directions.filter((d) => judgeDirection(d).status !== 'pass').map((d) => `${d.from}->${d.to} ${judgeDirection(d).message}`);

const plan32 = fullMesh(32);
const mesh32 = plan32.slots.flat();
/** one sender failing among k, found in halves: about log2(k) + 2 group rounds at worst, 2 round trips each */
const groupBound = (k: number) => 1 + 2 * (Math.ceil(Math.log2(k)) + 2);

describe('cold start: short receivers judged by their counters and searched in halves', () => {
  it('a mesh with no failure: one round trip, one script per node, every direction passes', async () => {
    const f = fakeNodes(mesh32);
    const result = await runColdStartPlan(plan32, f.run, f.initial, WATCH);
    assert.equal(f.waves(), 1);
    assert.equal(result.roundTrips, 1);
    assert.deepEqual(statuses(result), { pass: 32 * 31 });
    assert.ok([...f.scripts.values()].every((n) => n === 1));
  });

  it('one failing sender among 31 into one receiver: found in O(log N) round trips (64 one sender at a time)', async () => {
    const f = fakeNodes(mesh32, { arrive: (d) => (d.from === 'n05' && d.to === 'n00' ? 0 : COLD_START_BURST) });
    const result = await runColdStartPlan(plan32, f.run, f.initial, WATCH);
    assert.deepEqual(notPassing(result), [
      "n05->n00 n05 cannot start a session with n00 from cold: a new flow to 10.0.0.1:51820 does not arrive (a one-way pair: a session that n00 opened works only while conntrack remembers it); see n00's firewall check",
    ]);
    // measured alone in the end: its evidence is its own growth, no note of other senders
    const failed = result.directions.find((d) => d.from === 'n05' && d.to === 'n00')!;
    assert.deepEqual(judgeDirection(failed).evidence, [
      'n05 sent 16 datagrams from a fresh source port to 10.0.0.1:51820',
      'n00 /proc/net/snmp Udp: InDatagrams +0, NoPorts +0',
    ]);
    assert.equal(result.roundTrips, f.waves());
    assert.ok(f.waves() <= groupBound(31), `${f.waves()} round trips`);
  });

  it('a lossy pair (14 of 16 arrive) among 31: warned, found in O(log N) round trips', async () => {
    const f = fakeNodes(mesh32, { arrive: (d) => (d.from === 'n17' && d.to === 'n03' ? 14 : COLD_START_BURST) });
    const result = await runColdStartPlan(plan32, f.run, f.initial, WATCH);
    assert.deepEqual(notPassing(result), [
      "n17->n03 only some of n17's datagrams to 10.0.0.4:51820 reached n03 (14 of 16): a lossy path or a rate limit",
    ]);
    assert.deepEqual(statuses(result), { pass: 32 * 31 - 1, warn: 1 });
    assert.equal(result.roundTrips, f.waves());
    assert.ok(f.waves() <= groupBound(31), `${f.waves()} round trips`);
  });

  it('every direction dropped into every receiver: all fail in the first round trip', async () => {
    const f = fakeNodes(mesh32, { arrive: () => 0 });
    const result = await runColdStartPlan(plan32, f.run, f.initial, WATCH);
    assert.deepEqual(statuses(result), { fail: 32 * 31 });
    assert.equal(f.waves(), 1);
    assert.equal(result.roundTrips, 1);
    const one = judgeDirection(result.directions[0]!);
    assert.match(one.message, /cannot start a session with n00 from cold: a new flow to 10\.0\.0\.1:51820 does not arrive/);
    assert.ok(one.evidence.includes("n00's counters counted the bursts of 31 senders at once: n01's arrivals are at most that growth"));
  });

  it('no sender can send at all (the farm: no underlay): every direction not measured, in one round trip', async () => {
    const f = fakeNodes(mesh32, { cannotSend: true });
    const result = await runColdStartPlan(plan32, f.run, f.initial, WATCH);
    assert.deepEqual(statuses(result), { warn: 32 * 31 });
    assert.match(
      judgeDirection(result.directions[0]!).message,
      /^could not test whether n01 can start a session with n00: n01 could not send: bash: connect: Network is unreachable$/,
    );
    assert.equal(f.waves(), 1);
    assert.equal(result.roundTrips, 1);
  });

  it('a late sender is never judged on the first window: read again, then judged on the whole window', async () => {
    // four nodes; n03's bursts (all dropped into n00) leave only after n00's watch ended: the on-time senders fail at
    // once, n03 only after the read that follows every first-round script
    const plan = fullMesh(4);
    const f = fakeNodes(plan.slots.flat(), { arrive: (d) => (d.to === 'n00' ? 0 : COLD_START_BURST) });
    let n00Done: () => void = () => undefined;
    const n00Watched = new Promise<void>((resolve) => (n00Done = resolve));
    const run = async (node: string, script: string, onStdout?: (chunk: string) => void) => {
      if (node === 'n03' && scriptBursts(script).some((b) => b.host === '10.0.0.1')) await n00Watched;
      const out = await f.run(node, script, node === 'n03' ? undefined : onStdout);
      if (node === 'n00' && /begin watch'/.test(script)) n00Done();
      return out;
    };
    const result = await runColdStartPlan(plan, run, f.initial, WATCH);
    assert.deepEqual(statuses(result), { pass: 9, fail: 3 });
    assert.equal(result.roundTrips, 2);
  });
});

describe('judgeWindow: what one window of the counters says', () => {
  const b = COLD_START_BURST;
  it('the sum arrived: pass; one burst alone: its own; little growth: fail; else undecided', () => {
    assert.equal(judgeWindow([b, b, b], { inDatagrams: 3 * b, noPorts: 0 }, 0), 'pass');
    assert.equal(judgeWindow([b], { inDatagrams: 3, noPorts: 0 }, 0), 'alone');
    assert.equal(judgeWindow([b, b, b], { inDatagrams: b / 2, noPorts: 0 }, 0), 'fail');
    assert.equal(judgeWindow([b, b, b], { inDatagrams: b / 2 + 1, noPorts: 0 }, 0), 'undecided');
    assert.equal(judgeWindow([b, b, b], { inDatagrams: 2 * b, noPorts: 0 }, 0), 'undecided');
    // every burst at a closed port: fail (nothing listens); some of them: which ones is open
    assert.equal(judgeWindow([b, b], { inDatagrams: 0, noPorts: 2 * b }, 0), 'fail');
    assert.equal(judgeWindow([b, b], { inDatagrams: 0, noPorts: b }, 0), 'undecided');
  });

  it('bursts of ours outside the judged ones (late senders) may fill the sum: never a pass, never alone', () => {
    assert.equal(judgeWindow([b, b], { inDatagrams: 3 * b, noPorts: 0 }, 1), 'undecided');
    assert.equal(judgeWindow([b], { inDatagrams: b, noPorts: 0 }, 1), 'undecided');
    assert.equal(judgeWindow([b], { inDatagrams: 0, noPorts: 0 }, 1), 'fail');
    assert.equal(judgeWindow([b], { inDatagrams: 0, noPorts: 3 * b }, 1), 'undecided');
  });
});
