/**
 * verify's speed work (issue 10): the checklist runs inside the ping round's script, beside the pings (the cold-start
 * probe and the ping round wait only for the small pre script), the pre script's facts are not read twice, and the
 * path-MTU probe at the expected size runs beside the ping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  checklistScript,
  checklistSectionNames,
  parseChecklist,
  parseChecklistSections,
  pingProbe,
  splitSections,
} from '../../src/checks/probes.js';
import { collectVerify, parsePreFacts, preScript } from '../../src/checks/collect.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { FakeConnection } from '../support/fake-connection.js';
import { checklistStdout, dumpLines, healthyScenario, homelab, NOW, pingStdout } from '../fixtures/probes/homelab.js';

const fx = (name: string) => readFileSync(new URL(`../fixtures/probes/${name}`, import.meta.url), 'utf8');
const ctx = { interface: 'wg0', listenPort: 0 };

test('pre script: parsed from a real capture (clock, live key, peers, UDP counters)', () => {
  const pre = parsePreFacts(fx('pre-healthy.txt'), ctx);
  assert.equal(pre.now, 1796023885);
  assert.equal(pre.livePublicKey, 'sNLn5ruHpWShezNlC1z1R4MEKiTW+y5qWLKAdQBhIQ8=');
  assert.equal(pre.peers.length, 3);
  assert.equal(pre.peers[0]!.latestHandshake, 1796023867);
  assert.deepEqual(pre.udpCounters, { inDatagrams: 1358, noPorts: 6 });
  // an interface that is gone: no key, no peers (the dump printed wg's error)
  const gone = parsePreFacts(
    '@@meshctl begin pubkey\nUnable to access interface: No such device\n@@meshctl end pubkey rc=1\n@@meshctl begin dump\nUnable to access interface: No such device\n@@meshctl end dump rc=1\n',
    ctx,
  );
  assert.equal(gone.livePublicKey, undefined);
  assert.deepEqual(gone.peers, []);
});

test('checklist without the pre facts: not run twice, and read from both outputs as from one', () => {
  const params = { interface: 'wg0', listenPort: 51820, peerIps: ['172.27.15.11', '172.27.15.13', '172.27.15.31'] };
  const pre = ['now', 'pubkey', 'dump', 'udpsnmp'];
  const script = checklistScript({ ...params, without: pre });
  for (const name of pre) assert.ok(!script.includes(`begin ${name}'`), `${name} is left to the pre script`);
  assert.ok(script.includes("begin confmeta'") && script.includes("begin route:172.27.15.31'"));
  for (const name of pre) assert.ok(preScript(homelab().inventory).includes(`begin ${name}'`));

  // a real checklist capture cut in two the way verify runs it: its pre sections apart, the rest apart
  const full = fx('checklist-healthy.txt');
  const sections = [...splitSections(full).values()];
  const text = (keep: (name: string) => boolean) =>
    sections
      .filter((s) => keep(s.name))
      .map((s) => `@@meshctl begin ${s.name}\n${s.body}\n@@meshctl end ${s.name} rc=${s.rc}\n`)
      .join('');
  const preOut = `${text((n) => pre.includes(n))}@@meshctl begin pre-done\n\n@@meshctl end pre-done rc=0\n`;
  const rest = text((n) => !pre.includes(n));
  assert.deepEqual(parseChecklist(`${preOut}\n${rest}`, params), parseChecklist(full, params));
});

/** The checklist's part of a ping script's output: its sections without the pre script's, ending with checklist-done. */
function besideStdout(stdout: string): string {
  return [...splitSections(stdout).values()]
    .filter((s) => !['now', 'pubkey', 'port', 'dump', 'udpsnmp'].includes(s.name))
    .map(
      (s) =>
        `@@meshctl begin ${s.name === 'done' ? 'checklist-done' : s.name}\n${s.body}\n@@meshctl end ${s.name === 'done' ? 'checklist-done' : s.name} rc=${s.rc}\n`,
    )
    .join('');
}

/**
 * The healthy homelab on fake connections (`preFails`: the pre script of that node cannot run). Issue 10: the
 * checklist runs inside each node's ping script, beside the pings (the one stretch where the nodes mostly wait), so
 * a node gets three scripts one after the other (pre, cold-start, ping with the checklist), never two at once; a
 * node whose pre script failed gets its own checklist script after the round, as before.
 */
async function fakeVerify(preFails?: string) {
  const scenario = healthyScenario();
  const { inventory } = homelab();
  const open = new Map<string, number>();
  const peak = new Map<string, number>();
  const counters = new Map<string, number>();
  const connections = new Map(
    inventory.nodes.map((node) => {
      const n = scenario.nodes[node.name]!;
      const peerIps = inventory.nodes.filter((p) => p.name !== node.name).map((p) => p.overlayIp);
      const track =
        (reply: (script: string) => string | Promise<string>) =>
        async (script: string): Promise<{ stdout: string }> => {
          open.set(node.name, (open.get(node.name) ?? 0) + 1);
          peak.set(node.name, Math.max(peak.get(node.name) ?? 0, open.get(node.name)!));
          try {
            await new Promise((r) => setTimeout(r, 5));
            return { stdout: await reply(script) };
          } finally {
            open.set(node.name, open.get(node.name)! - 1);
          }
        };
      // every read of the UDP counters shows 1000 more datagrams: every cold-start direction arrives
      const udp = () => {
        counters.set(node.name, (counters.get(node.name) ?? 0) + 1000);
        return `@@meshctl begin udp\nUdp: InDatagrams NoPorts\nUdp: ${counters.get(node.name)} 0\n@@meshctl end udp rc=0\n`;
      };
      const after = n.peers.map((p) => ({ ...p, latestHandshake: NOW + 5 }));
      return [
        node.name,
        new FakeConnection(node.name, [
          {
            match: /ping -n -q/,
            reply: track((script) => {
              const pings = pingStdout(
                Object.fromEntries(
                  Object.entries(scenario.pings[node.name]!).map(([to, r]) => [inventory.nodes.find((x) => x.name === to)!.overlayIp, r]),
                ),
                after,
              );
              // the checklist's sections come back in the ping script's output when it rode there
              return /begin checklist-done'/.test(script) ? besideStdout(checklistStdout(n, peerIps)) + pings : pings;
            }),
          },
          {
            match: /begin pre-done'/,
            reply: track(() => {
              if (node.name === preFails) throw new Error('channel refused');
              return (
                `@@meshctl begin now\n${NOW}\n@@meshctl end now rc=0\n@@meshctl begin pubkey\n${n.livePublicKey}\n@@meshctl end pubkey rc=0\n` +
                `@@meshctl begin port\n${n.listenPort}\n@@meshctl end port rc=0\n` +
                `@@meshctl begin dump\n${dumpLines(n.peers)}\n@@meshctl end dump rc=0\n${udp().replaceAll(' udp', ' udpsnmp')}@@meshctl begin pre-done\n\n@@meshctl end pre-done rc=0\n`
              );
            }),
          },
          {
            match: /begin (udp|burst0)'/,
            reply: track((script) => {
              const bursts = [...script.matchAll(/begin (burst\d+)'/g)].map(
                (m) => `@@meshctl begin ${m[1]}\nsent=16\n@@meshctl end ${m[1]} rc=0\n`,
              );
              return `${/begin udp'/.test(script) ? udp() : ''}${bursts.join('')}@@meshctl begin done\n\n@@meshctl end done rc=0\n`;
            }),
          },
          { match: /begin confmeta'/, reply: track(() => checklistStdout(n, peerIps)) },
        ]),
      ];
    }),
  );
  const collected = await collectVerify(inventory, connections, new Map());
  return { collected, connections, peak, inventory };
}

test('collectVerify: the checklist rides in the ping script (3 scripts per node, one at a time), same verdicts', async () => {
  const { collected, connections, peak } = await fakeVerify();
  const failing = evaluateVerify(collected).filter((c) => c.status !== 'pass');
  assert.deepEqual(
    failing.map((c) => `${c.node} ${c.id} ${c.peer ?? ''}: ${c.message}`),
    [],
  );
  assert.equal(
    collected.coldStart?.directions.every((d) => !d.error),
    true,
  );
  for (const [name, c] of connections) {
    // pre, bursts and watch (one script: ./cold-start-round.test.ts), ping with the checklist beside it
    assert.equal(c.scripts.length, 3, `${name}: ${c.scripts.length} scripts`);
    assert.match(c.scripts[2]!, /ping -n -q[\s\S]*begin confmeta'[\s\S]*begin checklist-done'/, 'the checklist is in the ping script');
    assert.equal(peak.get(name), 1, `${name}: ${peak.get(name)} channels at once`);
    // the checklist leaves the pre script's facts to it (one wg read per node for key, port and peers)
    assert.doesNotMatch(c.scripts[2]!, /begin (pubkey|port|udpsnmp)'/);
    assert.equal(c.scripts[2]!.match(/begin dump'/g)?.length, 1, 'the one peer dump is the one after the pings');
  }
  assert.equal(collected.checklists.size, 4);
  assert.ok(typeof collected.timings.collectMs === 'number');
});

test('collectVerify: a node whose pre script failed gets its own checklist after the round, read as before', async () => {
  const { collected, connections } = await fakeVerify('wk-1');
  const wk1 = connections.get('wk-1')!;
  assert.doesNotMatch(wk1.scripts.find((s) => /ping -n -q/.test(s)) ?? '', /begin confmeta'/);
  assert.match(wk1.scripts.at(-1)!, /begin confmeta'[\s\S]*begin now'|begin now'[\s\S]*begin confmeta'/);
  const healthy = await fakeVerify();
  const verdicts = (c: typeof collected) =>
    evaluateVerify(c)
      .filter((x) => x.node === 'wk-1' && !['cold-start', 'ping', 'path-mtu'].includes(x.id))
      .map((x) => `${x.id} ${x.peer ?? ''} ${x.status}: ${x.message}`);
  assert.deepEqual(verdicts(collected), verdicts(healthy.collected));
});

// ---------------------------------------------------------------------------------------------------------------
// Ping and path MTU in one go: the expected payload's DF probe runs beside the ping (both branches of the script)

const netnsSkip =
  process.getuid?.() !== 0
    ? 'needs root (unshare --net --mount)'
    : spawnSync('unshare', ['--net', '--mount', 'true']).status !== 0
      ? 'unshare does not work here'
      : undefined;

/**
 * Runs a ping script in a fresh, empty network namespace (loopback up with MTU `mtu`, nothing leaves it); with
 * `hideFping`, in a mount namespace where fping is not executable, so the per-peer ping branch runs.
 */
function pingInEmptyNetns(script: string, mtu: number, hideFping: boolean) {
  const hide = hideFping ? 'f=$(command -v fping) && mount --bind /dev/null "$f"; ' : '';
  return spawnSync('unshare', ['--net', '--mount', 'sh', '-c', `${hide}ip link set lo up mtu ${mtu} && exec sh`], {
    input: script,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

const pingParams = {
  targets: [
    { node: 'a', ip: '127.0.0.1' },
    { node: 'gone', ip: '192.0.2.9' }, // no route in the empty namespace
  ],
  count: 3,
  intervalSeconds: 0.2,
  deadlineSeconds: 2,
  mtu: 1420,
};

for (const branch of ['per-peer ping', 'fping'] as const) {
  const hideFping = branch === 'per-peer ping';
  const skip = netnsSkip ?? (!hideFping && spawnSync('sh', ['-c', 'command -v fping']).status !== 0 ? 'fping not installed' : undefined);
  test(`${branch} branch: the DF probe beside the ping; a black hole still found by the search`, { skip: skip ?? false }, () => {
    const probe = pingProbe(pingParams);
    // the DF probe starts before the ping's result is known
    if (hideFping) assert.match(probe.script, /dfok 1392 & df=\$!\nr=\$\(ping /);
    else assert.match(probe.script, /both=\$\( \{ fping -q -c 3 .*& fping -q -M -b 1392 /);
    const healthy = pingInEmptyNetns(probe.script, 65536, hideFping);
    assert.equal(healthy.status, 0, healthy.stderr);
    const h = probe.parse(healthy.stdout);
    assert.ok(h.complete);
    assert.equal(h.ping.get('127.0.0.1')!.received, 3);
    assert.deepEqual(h.mtu.get('127.0.0.1'), { expected: 1392, largest: 1392, ok: true, tries: [{ size: 1392, ok: true }] });
    // (the per-peer branch skips only a peer whose ping got no reply at all, not one with no route: as before)
    if (!hideFping) assert.equal(h.mtu.get('192.0.2.9')!.skipped, true);
    assert.equal(h.ping.get('192.0.2.9')!.received, 0);
    // loopback MTU 1300: 1392 does not pass (beside the ping, nor once more), the search finds 1272 (1300 - 28)
    const holed = pingInEmptyNetns(probe.script, 1300, hideFping);
    const m = probe.parse(holed.stdout).mtu.get('127.0.0.1')!;
    assert.equal(m.largest, 1272);
    assert.equal(m.ok, false);
    assert.deepEqual(m.tries[0], { size: 1392, ok: false });
  });
}

for (const branch of ['per-peer ping', 'fping'] as const) {
  const hideFping = branch === 'per-peer ping';
  const skip = netnsSkip ?? (!hideFping && spawnSync('sh', ['-c', 'command -v fping']).status !== 0 ? 'fping not installed' : undefined);
  test(`${branch} branch: the checklist beside the pings comes back whole, apart from the probes' lines`, { skip: skip ?? false }, () => {
    const params = { interface: 'wg0', listenPort: 51820, peerIps: ['127.0.0.1', '192.0.2.9'], endSection: 'checklist-done' };
    const beside = { script: checklistScript(params), sections: checklistSectionNames(params) };
    const { mtu: _mtu, ...noMtu } = pingParams;
    const probe = pingProbe({ ...noMtu, beside, after: [{ name: 'later', command: 'echo after' }] });
    const run = pingInEmptyNetns(probe.script, 65536, hideFping);
    assert.equal(run.status, 0, run.stderr);
    const parsed = probe.parse(run.stdout);
    assert.ok(parsed.complete);
    assert.equal(parsed.ping.get('127.0.0.1')!.received, 3);
    assert.equal(parsed.after.get('later')?.body, 'after');
    const besideSections = parsed.beside ?? new Map();
    assert.ok(besideSections.has('checklist-done') && besideSections.has('confmeta') && besideSections.has('route:127.0.0.1'));
    const cl = parseChecklistSections(besideSections, params);
    assert.deepEqual(cl.problems, []);
    assert.equal(cl.routes[0]!.dev, 'lo');
    assert.equal(cl.routes[1]!.error !== undefined, true, 'no route to 192.0.2.9 in the empty namespace');
  });
}
