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
import { FakeConnection, type FakeIo, type FakeReply } from '../support/fake-connection.js';
import { TransportError } from '../../src/transport/types.js';
import { checklistStdout, dumpLines, healthyScenario, homelab, NOW, pingStdout } from '../fixtures/probes/homelab.js';
import { scriptBursts } from '../../src/checks/cold-start.js';

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
  assert.ok(script.includes("begin confmeta'") && script.includes("mc_ips='172.27.15.11 172.27.15.13 172.27.15.31'"));
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

/** What happened on the fake nodes, in order: `NODE first-end` (the first script ended), `NODE ping` (sent). */
type Log = string[];

/**
 * The healthy homelab on fake connections. Issue 10: verify's first script is the pre script and the checklist in
 * one (one channel): its pre part is streamed first, and the cold-start probe and the ping round start while the
 * checklist still runs; a node gets three scripts (first, cold-start, ping). The checklist part of a node's first
 * script comes back only once that node's ping script was sent (or after 2 s): a collection that waited for whole
 * first scripts before its probes ends its first scripts before any ping (the order the test looks at).
 * `preFails`: that node's first script cannot run the first time (its channel refused), so it is run once more after
 * the round. `notRoot`: that node's first script ends at once as a sudo that refused would (exit 1, `stderr`), or,
 * with `uid`, runs as that uid.
 */
async function fakeVerify(
  options: { preFails?: string; notRoot?: { node: string; stderr?: string; uid?: number; throws?: string }; proveRoot?: boolean } = {},
) {
  const scenario = healthyScenario();
  const { inventory } = homelab();
  const open = new Map<string, number>();
  const peak = new Map<string, number>();
  const counters = new Map<string, number>();
  const log: Log = [];
  const pinged = new Map<string, () => void>();
  const pingSent = new Map(inventory.nodes.map((n) => [n.name, new Promise<void>((r) => pinged.set(n.name, r))]));
  const refused = new Set<string>();
  const connections = new Map(
    inventory.nodes.map((node) => {
      const n = scenario.nodes[node.name]!;
      const peerIps = inventory.nodes.filter((p) => p.name !== node.name).map((p) => p.overlayIp);
      const track =
        (reply: (script: string, io: FakeIo) => string | FakeReply | Promise<string | FakeReply>) =>
        async (script: string, io: FakeIo): Promise<FakeReply> => {
          open.set(node.name, (open.get(node.name) ?? 0) + 1);
          peak.set(node.name, Math.max(peak.get(node.name) ?? 0, open.get(node.name)!));
          try {
            await new Promise((r) => setTimeout(r, 5));
            const r = await reply(script, io);
            return typeof r === 'string' ? { stdout: r } : r;
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
      const uid = options.notRoot?.node === node.name ? options.notRoot.uid : 0;
      const preOut = () =>
        `${/begin uid'/.test(lastFirst.get(node.name) ?? '') ? `@@meshctl begin uid\n${uid}\n@@meshctl end uid rc=0\n` : ''}` +
        `@@meshctl begin now\n${NOW}\n@@meshctl end now rc=0\n@@meshctl begin pubkey\n${n.livePublicKey}\n@@meshctl end pubkey rc=0\n` +
        `@@meshctl begin port\n${n.listenPort}\n@@meshctl end port rc=0\n` +
        `@@meshctl begin dump\n${dumpLines(n.peers)}\n@@meshctl end dump rc=0\n${udp().replaceAll(' udp', ' udpsnmp')}@@meshctl begin pre-done\n\n@@meshctl end pre-done rc=0\n`;
      return [
        node.name,
        new FakeConnection(node.name, [
          {
            match: /ping -n -q/,
            reply: track((script) => {
              log.push(`${node.name} ping`);
              pinged.get(node.name)!();
              const pings = pingStdout(
                Object.fromEntries(
                  Object.entries(scenario.pings[node.name]!).map(([to, r]) => [inventory.nodes.find((x) => x.name === to)!.overlayIp, r]),
                ),
                after,
              );
              return /begin confmeta'/.test(script) ? besideStdout(checklistStdout(n, peerIps)) + pings : pings;
            }),
          },
          {
            match: /begin pre-done'/,
            reply: track(async (script, io) => {
              lastFirst.set(node.name, script);
              if (node.name === options.preFails && !refused.has(node.name)) {
                refused.add(node.name);
                throw new Error('channel refused');
              }
              // the transport throws for a sudo that asks for a password (../transport/ssh.ts)
              if (options.notRoot?.node === node.name && options.notRoot.throws)
                throw new TransportError(node.name, options.notRoot.throws, 'sudo');
              if (options.notRoot?.node === node.name && options.notRoot.uid === undefined)
                return { code: 1, stderr: `${options.notRoot.stderr}\n` };
              io.write(preOut());
              // the checklist part: once this node's ping script was sent (or after 2 s)
              if (/begin confmeta'/.test(script)) {
                await Promise.race([pingSent.get(node.name), new Promise((r) => setTimeout(r, 2000))]);
                log.push(`${node.name} first-end`);
                return besideStdout(checklistStdout(n, peerIps));
              }
              log.push(`${node.name} first-end`);
              return '';
            }),
          },
          {
            match: /begin udp'|^mc_dl='/m,
            reply: track((script) => {
              const bursts = scriptBursts(script).map((b) => `@@meshctl begin ${b.section}\nsent=16\n@@meshctl end ${b.section} rc=0\n`);
              return `${/begin udp'/.test(script) ? udp() : ''}${bursts.join('')}@@meshctl begin done\n\n@@meshctl end done rc=0\n`;
            }),
          },
          { match: /begin confmeta'/, reply: track(() => checklistStdout(n, peerIps)) },
        ]),
      ];
    }),
  );
  const lastFirst = new Map<string, string>();
  const collected = await collectVerify(inventory, connections, new Map(), {
    ...(options.proveRoot || options.notRoot ? { proveRoot: () => true } : {}),
  });
  return { collected, connections, peak, inventory, log };
}

test('collectVerify: the checklist rides in the pre script and runs on beside the probes (3 scripts per node), same verdicts', async () => {
  const { collected, connections, peak, log } = await fakeVerify();
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
    // first (pre part, then the checklist), bursts and watch (one script: ./cold-start-round.test.ts), ping
    assert.equal(c.scripts.length, 3, `${name}: ${c.scripts.length} scripts`);
    assert.match(c.scripts[0]!, /begin pre-done'[\s\S]*begin confmeta'[\s\S]*begin checklist-done'/, 'the checklist follows the pre part');
    assert.doesNotMatch(c.scripts[2]!, /begin confmeta'/, 'the ping script carries no checklist');
    // the first script's channel stays open while the probes run on another: two at once, never more
    assert.equal(peak.get(name), 2, `${name}: ${peak.get(name)} channels at once`);
    // the checklist leaves the pre script's facts to it (one wg read per node for key, port and peers)
    const checklistPart = c.scripts[0]!.slice(c.scripts[0]!.indexOf("begin pre-done'"));
    assert.doesNotMatch(checklistPart, /begin (now|pubkey|port|dump|udpsnmp)'/);
    assert.equal(c.scripts[2]!.match(/begin dump'/g)?.length, 1, 'the one peer dump is the one after the pings');
    // the probes did not wait for the checklist: this node's ping script went out before its first script ended
    assert.ok(log.indexOf(`${name} ping`) < log.indexOf(`${name} first-end`), `${name}: ${log.join(', ')}`);
  }
  assert.equal(collected.checklists.size, 4);
  assert.ok(typeof collected.timings.collectMs === 'number');
});

test('collectVerify: a node whose first script failed runs it once more after the round, read as before', async () => {
  const { collected, connections } = await fakeVerify({ preFails: 'wk-1' });
  const wk1 = connections.get('wk-1')!;
  // (its counters read alone and a first-contact round too: it has no pre part, as before)
  assert.equal(wk1.scripts.filter((s) => /begin pre-done'/.test(s)).length, 2);
  assert.doesNotMatch(wk1.scripts.find((s) => /ping -n -q/.test(s)) ?? '', /begin confmeta'/);
  assert.match(wk1.scripts.at(-1)!, /begin now'[\s\S]*begin confmeta'/);
  const healthy = await fakeVerify();
  const verdicts = (c: typeof collected) =>
    evaluateVerify(c)
      .filter((x) => x.node === 'wk-1' && !['cold-start', 'ping', 'path-mtu'].includes(x.id))
      .map((x) => `${x.id} ${x.peer ?? ''} ${x.status}: ${x.message}`);
  assert.deepEqual(verdicts(collected), verdicts(healthy.collected));
});

test('collectVerify with proveRoot: the first script proves root (no separate probe); verdicts as with the probe', async () => {
  const healthy = await fakeVerify({ proveRoot: true });
  for (const [, c] of healthy.connections) {
    assert.match(c.scripts[0]!, /^export LC_ALL=C[^\n]*\necho '@@meshctl begin uid'/, 'uid is the first section');
    assert.equal(c.scripts.length, 3);
  }
  assert.equal(healthy.collected.unreachable.size, 0);
  assert.equal(healthy.collected.checklists.size, 4);
  // the transport's probe (../transport/ssh.ts probeRoot) words, for each way sudo can refuse
  const cases = [
    {
      stderr: 'sudo: a password is required',
      why: 'wk-1 (root@wk-1:22): cannot run commands as root (exit 1: sudo: a password is required)',
    },
    {
      stderr: 'admin is not in the sudoers file.  This incident will be reported.',
      why: 'wk-1 (root@wk-1:22): root may not use sudo (admin is not in the sudoers file.  This incident will be reported.)',
    },
    {
      stderr: 'sh: 1: sudo: not found',
      why: 'wk-1 (root@wk-1:22): logged in as root, but sudo is not installed; use user root or install sudo',
    },
    { uid: 1000, why: 'wk-1 (root@wk-1:22): cannot run commands as root (exit 0)' },
    {
      throws: 'wk-1 (root@wk-1:22): sudo asks for a password; meshctl needs passwordless sudo (NOPASSWD) or user root',
      why: 'wk-1 (root@wk-1:22): sudo asks for a password; meshctl needs passwordless sudo (NOPASSWD) or user root',
    },
  ];
  for (const c of cases) {
    const { collected, connections } = await fakeVerify({ notRoot: { node: 'wk-1', ...c } });
    assert.equal(collected.unreachable.get('wk-1'), c.why);
    assert.deepEqual([...(collected.rootFailed ?? [])], ['wk-1']);
    assert.equal(collected.checklists.has('wk-1'), false);
    // as a node the probe failed: no cold-start or ping script, its row not connected, the other nodes' checks run
    assert.equal(connections.get('wk-1')!.scripts.length, 1);
    assert.equal(collected.matrix?.cells['wk-1']?.['ms-1']?.error, 'wk-1 is not connected');
    assert.equal(
      collected.coldStart?.directions.some((d) => d.from === 'wk-1' || d.to === 'wk-1'),
      false,
    );
    assert.equal(collected.checklists.size, 3);
    const checks = evaluateVerify(collected).filter((x) => x.node === 'wk-1' && x.id === 'connect');
    assert.deepEqual(
      checks.map((x) => `${x.status}: ${x.message}`),
      [`fail: cannot connect: ${c.why}`],
    );
  }
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
    if (hideFping) assert.match(probe.script, /ping -n -q -M do -s 1392 [^\n]*"\$ip" >\/dev\/null 2>&1 & df=\$!\nr=\$\(ping /);
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

test('collectVerify: the ping channels open while the cold-start probe runs, their scripts sent once it has ended (issue 10)', async () => {
  const events: Array<{ node: string; what: 'ping called' | 'ping called ahead' | 'ping sent' | 'cold ended' }> = [];
  const run = FakeConnection.prototype.run;
  FakeConnection.prototype.run = function (this: FakeConnection, script, options = {}) {
    const result = run.call(this, script, options);
    if (/ping -n -q -c 3 /.test(script)) {
      events.push({ node: this.node, what: options.sendWhen ? 'ping called ahead' : 'ping called' });
      void (options.sendWhen ?? Promise.resolve(true)).then(() => events.push({ node: this.node, what: 'ping sent' }));
    }
    if (/^mc_dl='/m.test(script)) void result.then(() => events.push({ node: this.node, what: 'cold ended' }));
    return result;
  };
  try {
    await fakeVerify();
  } finally {
    FakeConnection.prototype.run = run;
  }
  const at = (what: string) => events.flatMap((e, i) => (e.what === what ? [i] : []));
  assert.equal(at('cold ended').length, 4);
  assert.equal(at('ping called ahead').length, 4, events.map((e) => `${e.node} ${e.what}`).join(', '));
  // every ping channel was asked for before the probe ended, and no ping script left before every probe script ended
  assert.ok(Math.max(...at('ping called ahead')) < Math.max(...at('cold ended')));
  assert.ok(Math.min(...at('ping sent')) > Math.max(...at('cold ended')));
});
