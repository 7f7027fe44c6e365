/** The benchmark's inventory generator (scripts/bench/inventory.ts) and its Ansible inventory (ansible-inventory.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { checkInventoryText } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { planLab } from '../../src/lab/plan.js';
import { ansibleInventory } from '../../scripts/bench/ansible-inventory.js';
import { benchInventory, siteMix } from '../../scripts/bench/inventory.js';
import { toolEnv } from '../../scripts/bench/tool-env.js';
import {
  type BenchResults,
  NOTES_MARK,
  aboveFloor,
  firstStages,
  median,
  pageWithNotes,
  renderMarkdown,
} from '../../scripts/bench/table.js';

const load = (n: number): Inventory => {
  const result = checkInventoryText(benchInventory(n), `bench-${n}.yaml`);
  assert.ok(result.ok, `bench inventory of ${n} nodes: ${JSON.stringify(result.problems)}`);
  return result.inventory;
};

describe('bench inventories', () => {
  for (const n of [3, 4, 8, 16, 32, 200]) {
    it(`${n} nodes: validate accepts it, with two NAT sites (every node forwarded) and a quarter public`, () => {
      const inventory = load(n);
      assert.equal(inventory.nodes.length, n);
      const kinds = Object.fromEntries(inventory.sites.map((s) => [s.name, s.kind]));
      assert.deepEqual(kinds, { home: 'nat', office: 'nat', edge: 'public' });
      const count = (site: string) => inventory.nodes.filter((node) => node.site === site).length;
      const mix = siteMix(n);
      assert.deepEqual({ public: count('edge'), home: count('home'), office: count('office') }, mix);
      assert.equal(mix.public, Math.max(1, Math.floor(n / 4)));
      assert.ok(mix.home >= 1 && mix.office >= 1 && Math.abs(mix.home - mix.office) <= 1);
      for (const node of inventory.nodes.filter((x) => x.site !== 'edge')) assert.ok(node.forwardedPort, `${node.name} has a forward`);
      // both login paths: root, and a user with sudo
      assert.ok(inventory.nodes.some((x) => x.ssh.become === 'sudo') && inventory.nodes.some((x) => x.ssh.user === 'root'));
    });
  }

  it('the lab can replicate the largest size the benchmark runs (32)', () => {
    const plan = planLab(load(32), 'bn32');
    assert.equal(plan.nodes.length, 32);
  });

  it('refuses sizes outside 3..200', () => {
    for (const n of [2, 201, 4.5]) assert.throws(() => benchInventory(n), RangeError);
  });
});

describe('bench Ansible inventory', () => {
  it('has every node with its login, and peers with the endpoints and keepalives meshctl renders', () => {
    const inventory = load(4);
    const text = ansibleInventory(inventory, { identityFile: '/lab/id_ed25519', knownHosts: '/lab/known_hosts' });
    const all = parse(text).all;
    assert.match(all.vars.ansible_ssh_common_args, /UserKnownHostsFile=\/lab\/known_hosts -o StrictHostKeyChecking=yes/);
    assert.deepEqual(Object.keys(all.hosts), ['home-1', 'home-2', 'office-1', 'edge-1']);
    const home2 = all.hosts['home-2'];
    assert.equal(home2.ansible_user, 'admin');
    assert.equal(home2.ansible_become, true);
    assert.equal(all.hosts['home-1'].ansible_become, false);
    // home-2 (NAT) -> home-1 on the LAN, no keepalive; -> office-1 through its forward, with keepalive; -> edge-1 public
    assert.deepEqual(home2.wg_peers, [
      { name: 'home-1', allowed_ips: '172.27.20.10/32', endpoint: '192.168.20.10:51820' },
      { name: 'office-1', allowed_ips: '172.27.20.12/32', endpoint: '203.0.113.21:51820', keepalive: 25 },
      { name: 'edge-1', allowed_ips: '172.27.20.13/32', endpoint: '198.51.100.10:51820', keepalive: 25 },
    ]);
    // the public node dials NAT nodes at their forwards and keeps no keepalive
    assert.deepEqual(all.hosts['edge-1'].wg_peers[1], { name: 'home-2', allowed_ips: '172.27.20.11/32', endpoint: '203.0.113.20:51821' });
  });
});

describe('bench results', () => {
  it('median: field by field, over runs of one shape', () => {
    const runs = [
      { a: 3, b: { c: 10 } },
      { a: 1, b: { c: 30 } },
      { a: 2, b: { c: 20 } },
    ];
    assert.deepEqual(median(runs), { a: 2, b: { c: 20 } });
    assert.deepEqual(median([{ a: 1 }, { a: 4 }]), { a: 2.5 });
  });

  it('a failed verify and unanswered floor pairs keep their times and are named under the table', () => {
    const run = (verifyMs: number) => ({ wallMs: verifyMs, cpuMs: 1, rssKiB: 1 });
    const floor = { facts: 1, install: 1, keys: 1, config: 1, enable: 1, ping: 1, pingWarm: 1, pingMtu: 1, total: 6 };
    const one = {
      labUpMs: 1,
      load: { start: 1, end: 1, otherContainers: 0 },
      floor: { ...floor, failed: ['ping: a -> b 0/3'] },
      meshctl: { cold: run(9000), second: run(2000), verify: { ...run(3000), failed: '3 of 9248 checks failed: ping a -> b' } },
    };
    assert.deepEqual(median([one.floor, one.floor]).failed, ['ping: a -> b 0/3'], 'a list stays a list');
    const results: BenchResults = {
      command: 'npm run bench',
      date: '2026-11-30T01:00:00Z',
      machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' },
      sizes: [{ nodes: 32, mix: { public: 1, home: 1, office: 0 }, runs: [one], median: median([one]) }],
    };
    const page = renderMarkdown(results);
    assert.match(page, /\| 3\.0 s \(failed\) \|/);
    assert.match(page, /32 nodes, run 1: `verify` exited 1, 3 of 9248 checks failed: ping a -> b/);
    assert.match(page, /32 nodes, run 1: the floor's ping rounds had 1 pairs unanswered \(their time kept\): ping: a -> b 0\/3/);
  });

  it('"above floor" is the median of each run\'s own difference, not the difference of the column medians', () => {
    const floorOf = (total: number) => ({ facts: 1, install: 1, keys: 1, config: 1, enable: 1, ping: 1, pingWarm: 1, pingMtu: 1, total });
    const tool = (wallMs: number) => ({ wallMs, cpuMs: 1, rssKiB: 1 });
    // floors 3.0 / 2.0 / 4.0 s; meshctl +0.5 / +0.6 / +0.7 s above each; Ansible +9 / +10 / +11 s. The column medians
    // (3.0 s floor, 3.5 s meshctl) would give +0.5 s; the runs' own differences give +0.6 s and 10 / 0.6 = 16.7x.
    const run = (floor: number, mesh: number, ans: number) => ({
      labUpMs: 1,
      load: { start: 1, end: 1, otherContainers: 0 },
      floor: floorOf(floor),
      meshctl: { cold: tool(floor + mesh), second: tool(1), verify: tool(1) },
      ansible: { cold: tool(floor + ans), second: tool(1) },
    });
    const runs = [run(3000, 500, 9000), run(2000, 600, 10_000), run(4000, 700, 11_000)];
    const size = { nodes: 4, mix: { public: 1, home: 2, office: 1 }, runs, median: median(runs) };
    assert.deepEqual(aboveFloor(size), { meshAbove: 600, ansAbove: 10_000 });
    // a run whose floor failed has no difference: the median of the others (here 0.5 and 0.7 s), not NaN sorted in
    const { floor: _lost, ...noFloor } = run(2000, 600, 10_000);
    assert.deepEqual(aboveFloor({ runs: [runs[0]!, noFloor, runs[2]!] }), { meshAbove: 600, ansAbove: 10_000 });
    assert.deepEqual(aboveFloor({ runs: [noFloor, runs[2]!] }), { meshAbove: 700, ansAbove: 11_000 });
    const page = renderMarkdown({
      command: 'npm run bench',
      date: '2026-12-01T14:00:00Z',
      machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' },
      sizes: [size],
    });
    // the tool columns stay medians per column (3.5 s, 12.0 s); only the differences are per run
    assert.match(page, /^\| 4 \| 3\.0 s \| 3\.5 s \| \+0\.6 s \| 12\.0 s \| \+10\.0 s \| 16\.7x \|/m);
    assert.match(
      page,
      /^\| \*\*total\*\* \(above floor: the runs' own differences, as in the summary\) \| 3\.0 s \| 3\.5 s \| \+0\.6 s \|/m,
    );
    assert.match(
      page,
      /^- 4 nodes, above the floor per run \(meshctl \/ Ansible \(ratio\)\): \+0\.5 s \/ \+9\.0 s \(18\.0x\); \+0\.6 s \/ \+10\.0 s \(16\.7x\); \+0\.7 s \/ \+11\.0 s \(15\.7x\)$/m,
    );
  });

  it("a cold up that relay: auto took through a second pass is named in its run's line", () => {
    const floor = { facts: 1, install: 1, keys: 1, config: 1, enable: 1, ping: 1, pingWarm: 1, pingMtu: 1, total: 3000 };
    const tool = (wallMs: number) => ({ wallMs, cpuMs: 1, rssKiB: 1 });
    const run = (relayedAtGate?: string[]) => ({
      labUpMs: 1,
      load: { start: 1, end: 1, otherContainers: 0 },
      floor,
      meshctl: { cold: { ...tool(3500), ...(relayedAtGate ? { relayedAtGate } : {}) }, second: tool(1), verify: tool(1) },
    });
    const runs = [run(), run(['edge-1 home-2'])];
    const page = renderMarkdown({
      command: 'npm run bench',
      date: '2026-12-01T14:00:00Z',
      machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' },
      sizes: [{ nodes: 4, mix: { public: 1, home: 2, office: 1 }, runs, median: median(runs) }],
    });
    const line = page.split('\n').find((l) => l.startsWith('- 4 nodes, above the floor per run'));
    assert.equal(
      line,
      "- 4 nodes, above the floor per run (meshctl / Ansible (ratio)): +0.5 s / - (no Ansible numbers); +0.5 s / - (no Ansible numbers) (meshctl's cold up relayed edge-1 home-2 at the ping gate: a second pass)",
    );
  });

  it("a cold up whose ping phase reset sessions or pinged pairs again says so in its run's line, even as the size's only run", () => {
    const floor = { facts: 1, install: 1, keys: 1, config: 1, enable: 1, ping: 1, pingWarm: 1, pingMtu: 1, total: 3000 };
    const tool = (wallMs: number) => ({ wallMs, cpuMs: 1, rssKiB: 1 });
    const pingRounds = { reset: ['home-2 office-5'], recheck: ['home-12 office-7'], recheckReset: ['home-12 office-7'], recheckMs: 440 };
    const runs = [
      {
        labUpMs: 1,
        load: { start: 1, end: 1, otherContainers: 0 },
        floor,
        meshctl: { cold: { ...tool(3500), pingRounds }, second: tool(1), verify: tool(1) },
      },
    ];
    const page = renderMarkdown({
      command: 'npm run bench',
      date: '2026-12-02T08:00:00Z',
      machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' },
      sizes: [{ nodes: 32, mix: { public: 8, home: 12, office: 12 }, runs, median: median(runs) }],
    });
    const line = page.split('\n').find((l) => l.startsWith('- 32 nodes, above the floor per run'));
    assert.equal(
      line,
      '- 32 nodes, above the floor per run (meshctl / Ansible (ratio)): +0.5 s / - (no Ansible numbers) (cold ping phase: 1 pair(s) reset before the round (home-2 office-5), 1 pinged again in 0.4 s (home-12 office-7; 1 of them reset first))',
    );
  });

  it('sizes merged from separate runs say how many runs each median has', () => {
    const floor = { facts: 1, install: 1, keys: 1, config: 1, enable: 1, ping: 1, pingWarm: 1, pingMtu: 1, total: 6 };
    const run = { wallMs: 1, cpuMs: 1, rssKiB: 1 };
    const one = { labUpMs: 1, load: { start: 1, end: 1, otherContainers: 0 }, floor, meshctl: { cold: run, second: run, verify: run } };
    const size = (nodes: number, runs: number) => ({
      nodes,
      mix: { public: 1, home: 1, office: 1 },
      runs: Array.from({ length: runs }, () => one),
      median: median(Array.from({ length: runs }, () => one)),
    });
    const base = { command: 'npm run bench', date: '2026-12-01T03:00:00Z', machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' } };
    assert.match(renderMarkdown({ ...base, sizes: [size(4, 3), size(16, 3)] }), /^Median of 3 runs per size; /m);
    assert.match(
      renderMarkdown({ ...base, sizes: [size(4, 3), size(16, 1), size(32, 1)] }),
      /^Median of the runs of each size \(4 nodes: 3 runs, 16 nodes: 1 run, 32 nodes: 1 run\); /m,
    );
  });

  it('a regenerated page keeps the notes written under the mark', () => {
    const results: BenchResults = {
      command: 'npm run bench',
      date: '2026-11-30T01:00:00Z',
      machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' },
      sizes: [],
    };
    const notes = `${NOTES_MARK}\n## Notes\nby hand\n`;
    const page = pageWithNotes(results, `# old table\n${notes}`);
    assert.ok(page.startsWith(renderMarkdown(results)));
    assert.ok(page.endsWith(notes));
    assert.ok(!page.includes('old table'));
    assert.equal(pageWithNotes(results, undefined), renderMarkdown(results));
  });
});

describe('bench results: start to the first connection (issue 10: the 300 ms goal)', () => {
  const floor = { facts: 1, install: 1, keys: 1, config: 1, enable: 1, ping: 1, pingWarm: 1, pingMtu: 1, total: 6 };
  const base = { command: 'npm run bench', date: '2026-12-01T06:00:00Z', machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' } };
  const result = (cold: object, second: object): BenchResults => {
    const run = { wallMs: 1000, cpuMs: 500, rssKiB: 1024 };
    const one = {
      labUpMs: 1,
      load: { start: 1, end: 1, otherContainers: 0 },
      floor,
      meshctl: { cold: { ...run, ...cold }, second: { ...run, ...second }, verify: run },
    };
    return { ...base, sizes: [{ nodes: 4, mix: { public: 1, home: 2, office: 1 }, runs: [one], median: median([one]) }] };
  };

  it('the table carries start to first TCP connect, to first login and to the ready connection, and the CPU then', () => {
    const page = renderMarkdown(
      result(
        { firstTcpConnectMs: 151, firstLoginMs: 268, firstConnectionMs: 290, firstLoginCpuMs: 213 },
        { firstTcpConnectMs: 140, firstLoginMs: 250, firstConnectionMs: 280, firstLoginCpuMs: 205 },
      ),
    );
    const header = page.split('\n').find((line) => line.includes('start to first TCP connect'));
    assert.ok(header, 'a column for the first TCP connect');
    const columns = header.split('|').map((c) => c.trim());
    const row = page
      .split('\n')
      .find((line) => line.startsWith('| 4 |') && line.includes('151 ms'))
      ?.split('|')
      .map((c) => c.trim());
    assert.ok(row, `a row with the numbers: ${page}`);
    const cell = (title: string) => row[columns.findIndex((c) => c.includes(title))];
    assert.equal(cell('first TCP connect'), '151 ms / 140 ms');
    assert.equal(cell('first SSH login'), '268 ms / 250 ms');
    assert.equal(cell('first connection ready'), '290 ms / 280 ms');
    assert.equal(cell('CPU at first login'), '213 ms / 205 ms');
    assert.match(page, /is meshctl's part\s+alone/);
  });

  it("an older run without the stages shows '-' for them", () => {
    const page = renderMarkdown(result({ firstConnectionMs: 369 }, {}));
    assert.match(page, /\| - \/ - \| - \/ - \| 369 ms \/ - \| - \/ - \|/);
  });

  it('firstStages takes from up --json timings the stages it reports, and nothing else', () => {
    assert.deepEqual(firstStages({ firstConnectionMs: 290, firstTcpConnectMs: 151, firstLoginMs: 268, firstLoginCpuMs: 213.4 }), {
      firstConnectionMs: 290,
      firstTcpConnectMs: 151,
      firstLoginMs: 268,
      firstLoginCpuMs: 213.4,
    });
    const timings = { totalMs: 9, connectMs: 3, firstConnectionMs: 369 };
    assert.deepEqual(firstStages(timings), { firstConnectionMs: 369 });
  });
});

describe('bench: the environment of the timed processes', () => {
  it('drops NODE_EXTRA_CA_CERTS (node parses the bundle at start) and keeps the rest', () => {
    assert.deepEqual(toolEnv({ PATH: '/bin', NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca.crt', HOME: '/root' }), {
      PATH: '/bin',
      HOME: '/root',
    });
  });

  it('the page says what was dropped and what a bare node costs with it', () => {
    const results: BenchResults = {
      command: 'npm run bench',
      date: '2026-12-01T10:00:00Z',
      machine: { cpu: 'x', cores: 2, kernel: 'k', node: 'v20' },
      start: { versionMs: 41, nodeMs: 39.5, dropped: ['NODE_EXTRA_CA_CERTS'], nodeWithDroppedMs: 125 },
      sizes: [],
    };
    const page = renderMarkdown(results);
    assert.match(page, /`meshctl --version` 41 ms, a bare `node -e 0` 39\.5 ms\./);
    assert.match(page, /sets `NODE_EXTRA_CA_CERTS`, with which node parses a CA bundle at start \(a bare `node -e 0` 125 ms\)/);
    assert.doesNotMatch(renderMarkdown({ ...results, start: { versionMs: 41, nodeMs: 39.5 } }), /NODE_EXTRA_CA_CERTS/);
  });
});
