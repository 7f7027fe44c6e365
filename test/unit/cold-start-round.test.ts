/**
 * verify's cold-start probe in one round trip on a healthy mesh (issue 10): every node sends its bursts and then
 * watches its own UDP counters until the bursts addressed to it have arrived, instead of a send round followed by a
 * read round. A receiver left short (a drop, or a sender that started after the watch ran out) is read again and
 * measured slot by slot, so a late sender can never be called dropped.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { loadInventory } from '../../src/inventory/load.js';
import { splitSections } from '../../src/facts/sections.js';
import {
  COLD_START_BURST,
  COUNTERS_COMMAND,
  COUNTERS_READ,
  judgeDirection,
  parseUdpCounters,
  planColdStart,
  runColdStartPlan,
  scriptBursts,
  sendAndWatchScript,
  type UdpCounters,
} from '../../src/checks/cold-start.js';
import { fakeWatch, inEmptyNetns, netnsSkip, udpSection } from '../support/fake-cold-start.js';

const inventory = loadInventory('inventories/homelab.yaml');
const plan = planColdStart(inventory, new Set(inventory.nodes.map((n) => n.name)));
/** The watch of these tests: 40 looks 5 ms apart (the model's watch takes as long as the script says). */
const WATCH = { polls: 40, intervalSeconds: 0.005 };
const endpointOwner = new Map(plan.slots.flat().map((d) => [`${d.from}>${d.endpoint.host}:${d.endpoint.port}`, d.to]));

/**
 * A model of the four nodes: a burst section run on a sender adds 16 datagrams to its receiver's counters at once
 * (unless `dropped` holds the direction); a script's watch waits for its target, as many looks as far apart as the
 * script says (WATCH: 40 looks 5 ms apart, too short for any sender to count as on time, so a short receiver is
 * read again; test/unit/cold-start-groups.test.ts has senders on time), and its `udp` section prints the node's counters as /proc/net/snmp does. `late` holds a node's first
 * script back until another node's script ran (a sender whose channel opened late).
 */
function model(options: { dropped?: Set<string>; late?: { node: string; after: string } } = {}) {
  const counters = new Map(inventory.nodes.map((n) => [n.name, { inDatagrams: 1000, noPorts: 3 } as UdpCounters]));
  const scripts = new Map<string, string[]>();
  const ran = new Map<string, () => void>();
  const done = new Map(inventory.nodes.map((n) => [n.name, new Promise<void>((resolve) => ran.set(n.name, resolve))]));
  const initial = new Map([...counters].map(([k, v]) => [k, { ...v }]));
  const run = async (node: string, script: string): Promise<string> => {
    scripts.set(node, [...(scripts.get(node) ?? []), script]);
    if (options.late?.node === node && scripts.get(node)!.length === 1) await done.get(options.late.after);
    const out: string[] = [];
    for (const b of scriptBursts(script)) {
      const to = endpointOwner.get(`${node}>${b.host}:${b.port}`)!;
      if (!options.dropped?.has(`${node}->${to}`)) counters.get(to)!.inDatagrams += COLD_START_BURST;
      out.push(`@@meshctl begin ${b.section}\nsent=${COLD_START_BURST}\n@@meshctl end ${b.section} rc=0`);
    }
    // the watch: until the node's counters reach the target, or its looks (as many, as far apart as the script's)
    const watched = await fakeWatch(script, () => counters.get(node)!.inDatagrams + counters.get(node)!.noPorts);
    if (watched !== undefined) out.push(`@@meshctl begin watch\n${watched}\n@@meshctl end watch rc=0`);
    if (/begin udp'/.test(script)) out.push(udpSection(counters.get(node)!));
    out.push('@@meshctl begin done\n\n@@meshctl end done rc=0');
    ran.get(node)!();
    return `${out.join('\n')}\n`;
  };
  return { run, scripts, initial };
}

const verdicts = (r: Awaited<ReturnType<typeof runColdStartPlan>>) =>
  r.directions.map((d) => `${d.from}->${d.to} ${judgeDirection(d).status}`).sort();

describe('cold start: one round trip on a healthy mesh', () => {
  it('every node runs ONE script (its bursts, then its watch); all 12 directions pass', async () => {
    const m = model();
    const result = await runColdStartPlan(plan, m.run, m.initial, WATCH);
    assert.equal(result.roundTrips, 1);
    for (const node of inventory.nodes) assert.equal(m.scripts.get(node.name)?.length, 1, `${node.name}: one script`);
    assert.deepEqual(
      verdicts(result).filter((v) => !v.endsWith(' pass')),
      [],
    );
    assert.equal(result.directions.length, 12);
    // the watch waits for what was before plus every burst addressed to the node (3 senders each here)
    const ms1 = m.scripts.get('ms-1')![0]!;
    assert.match(ms1, new RegExp(`"\\$mc_udp" -lt ${1000 + 3 + 3 * COLD_START_BURST} `));
    assert.ok(ms1.indexOf("mc_dl='") < ms1.indexOf("begin watch'"), 'bursts before the watch');
  });

  it("a dropped direction still fails, named alone (read again, then in halves of the short receiver's senders)", async () => {
    const m = model({ dropped: new Set(['ms-1->ctb-edge-1']) });
    const result = await runColdStartPlan(plan, m.run, m.initial, WATCH);
    assert.deepEqual(
      verdicts(result).filter((v) => !v.endsWith(' pass')),
      ['ms-1->ctb-edge-1 fail'],
    );
    // 1 round, 1 read of the short receiver, then 2 per group round: ms-1 alone (fails), wk-1 and wk-2 together
    // (pass); one sender at a time took 3 slots of 2
    assert.equal(result.roundTrips, 1 + 1 + 2 * 2);
  });

  it('a receiver that heard none of its senders fails them all after one read, with no slot rounds', async () => {
    // the edge blocks every direction into it: 3 senders, 3 slots of 2 round trips each on the old code
    const m = model({ dropped: new Set(['ms-1->ctb-edge-1', 'wk-1->ctb-edge-1', 'wk-2->ctb-edge-1']) });
    const result = await runColdStartPlan(plan, m.run, m.initial, WATCH);
    assert.deepEqual(
      verdicts(result).filter((v) => !v.endsWith(' pass')),
      ['ms-1->ctb-edge-1 fail', 'wk-1->ctb-edge-1 fail', 'wk-2->ctb-edge-1 fail'],
    );
    assert.equal(result.roundTrips, 1 + 1);
    // the same words as a direction found dropped in a slot
    const slotted = await runColdStartPlan(plan, model({ dropped: new Set(['ms-1->ctb-edge-1']) }).run, model().initial, WATCH);
    const one = (r: typeof result) => judgeDirection(r.directions.find((d) => d.from === 'ms-1' && d.to === 'ctb-edge-1')!).message;
    assert.equal(one(result), one(slotted));
  });

  it('a sender whose script ran after the receiver had looked is measured again, never called dropped', async () => {
    // wk-2's first script runs only after the edge's: the edge's watch saw wk-2's burst missing
    const m = model({ late: { node: 'wk-2', after: 'ctb-edge-1' } });
    const result = await runColdStartPlan(plan, m.run, m.initial, WATCH);
    assert.deepEqual(
      verdicts(result).filter((v) => !v.endsWith(' pass')),
      [],
    );
    assert.ok(result.roundTrips > 1);
  });
});

describe('cold start: the watch on a real kernel', { skip: netnsSkip ?? false }, () => {
  const toSelf = { from: 'a', to: 'a', endpoint: { host: '127.0.0.1', port: 9 } };

  it('ends as soon as the datagrams have arrived, its sum read as parseUdpCounters reads the counters', () => {
    // nothing listens on port 9: the datagrams count as NoPorts (and loopback's port-unreachable answers make the
    // connected socket refuse some sends, so the target is the first one)
    const r = inEmptyNetns(sendAndWatchScript([toSelf], 1, { polls: 40, intervalSeconds: 0.05 }));
    assert.equal(r.status, 0, r.stderr);
    const s = splitSections(r.stdout);
    assert.match(s.get('burst0')?.body ?? '', /sent=16/);
    const watch = /looks=(\d+) sum=(\d+)/.exec(s.get('watch')?.body ?? '');
    assert.ok(watch && Number(watch[1]) < 40, `the watch ended early: ${s.get('watch')?.body}`);
    const after = parseUdpCounters(s.get('udp')?.body ?? '')!;
    assert.ok(after.noPorts >= 1, JSON.stringify(after));
    assert.equal(Number(watch[2]), after.inDatagrams + after.noPorts);
  });

  it('sends every direction of a node from ONE bash, each from a socket of its own (issue 10: was a bash each)', () => {
    const sends = [7001, 7002, 7003].map((port) => ({ from: 'a', to: 'a', endpoint: { host: '127.0.0.1', port } }));
    const script = sendAndWatchScript(sends, undefined);
    // the first bash holds the loop over the three directions, handed their list (without bash, netcat's branch
    // after `else` runs the same loop)
    const firstBash = script.slice(script.indexOf('bash -c'), script.indexOf('\nelse\n'));
    assert.match(firstBash, /for mc_e in \$1; do echo "@@meshctl begin burst\$mc_i"; \{ mc_b /);
    assert.match(firstBash, / bash "\$mc_dl"$/);
    assert.deepEqual(
      scriptBursts(script).map((b) => b.port),
      [7001, 7002, 7003],
    );
    const r = inEmptyNetns(script);
    assert.equal(r.status, 0, r.stderr);
    const s = splitSections(r.stdout);
    for (const i of [0, 1, 2]) assert.match(s.get(`burst${i}`)?.body ?? '', /^sent=16$/, `burst${i}`);
    // a direction that cannot send says why in its own section, the others still send
    const broken = [{ from: 'a', to: 'a', endpoint: { host: '192.0.2.9', port: 9 } }, ...sends.slice(0, 1)];
    const b = splitSections(inEmptyNetns(sendAndWatchScript(broken, undefined)).stdout);
    assert.doesNotMatch(b.get('burst0')?.body ?? '', /sent=/);
    assert.equal(b.get('burst0')?.rc, 3);
    assert.match(b.get('burst1')?.body ?? '', /^sent=16$/);
  });

  it('costs no process per direction: every burst is sent by the one bash itself (issue 10: a subshell each)', () => {
    // in a fresh PID namespace PIDs are handed out one by one from 1: the PID of a process started after the bursts
    // counts the processes the script made before it
    const processes = (directions: number) => {
      const sends = Array.from({ length: directions }, (_, i) => ({ from: 'a', to: 'a', endpoint: { host: '127.0.0.1', port: 7001 + i } }));
      const r = spawnSync('unshare', ['--net', '--pid', '--fork', 'sh', '-c', 'ip link set lo up && exec sh'], {
        input: `${sendAndWatchScript(sends, undefined)}\nsh -c 'echo "pid=$$"'\n`,
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(r.status, 0, r.stderr);
      const s = splitSections(r.stdout);
      for (let i = 0; i < directions; i++) assert.match(s.get(`burst${i}`)?.body ?? '', /^sent=16$/, `burst${i}`);
      return Number(/pid=(\d+)/.exec(r.stdout)?.[1]);
    };
    assert.equal(processes(9), processes(1), 'eight more directions, no more processes');
  });

  it("reads the counters with the shell's own read: the very lines of COUNTERS_COMMAND's greps (issue 10)", () => {
    // an empty namespace's counters stay 0 between the two reads, so the texts must be equal byte for byte
    const r = inEmptyNetns(`${COUNTERS_COMMAND}\necho @@\n${COUNTERS_READ}\n`);
    assert.equal(r.status, 0, r.stderr);
    const [grepped, read] = r.stdout.split('@@\n');
    assert.equal(read, grepped);
    assert.match(read!, /^Udp: InDatagrams NoPorts/);
    assert.ok(parseUdpCounters(read!));
    // the watch rounds print them so: no grep in the script
    assert.doesNotMatch(sendAndWatchScript([], 5), /grep/);
  });

  it('runs out when they do not arrive, and says so', () => {
    const r = inEmptyNetns(sendAndWatchScript([], 1_000_000, { polls: 3, intervalSeconds: 0.05 }));
    assert.equal(r.status, 0, r.stderr);
    assert.match(splitSections(r.stdout).get('watch')?.body ?? '', /^looks=3 sum=0$/);
    assert.deepEqual(parseUdpCounters(splitSections(r.stdout).get('udp')?.body ?? ''), { inDatagrams: 0, noPorts: 0 });
  });
});
