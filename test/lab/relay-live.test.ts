/**
 * A relay's role and state applied on the running interface (a new user's findings Q8, four-sites):
 * - F-relay-restart: removing b-2 from the inventory leaves p-2 relaying no pair; only its wg0.conf's relay PostUp and
 *   PreDown lines (and its peers) change, and `up` restarted wg-quick@wg0 on p-2, cutting every pair of p-2 for ~8 s
 *   (a-1 -> p-2 lost 42 pings in a row). Now the plan says the relay is stopped live, p-2's unit keeps its
 *   InvocationID (systemd gives every start a new one), and 0.2 s pings a-1 -> p-2 through the run lose nothing; b-2
 *   put back: the relay set up live, the same;
 * - F-relay: forwarding switched off on the relay p-1 (`sysctl -w net.ipv4.ip_forward=1; ... =0` sets
 *   conf.wg0.forwarding to 0) left b-1 <-> c-1 down while `plan` said nothing to change; now the plan names it, `up`
 *   sets it back live and b-1 <-> c-1 pings; the same for the relay's rule deleted under a DROP FORWARD policy.
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/four-sites.yaml';
const dir = mkdtempSync(join(tmpdir(), 'meshctl-relay-live-lab-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** four-sites as it is, beside NO_B2 (their local state is this suite's) */
const ALL = join(dir, 'four-sites.yaml');
writeFileSync(ALL, readFileSync(INVENTORY, 'utf8'));
/** four-sites without b-2: p-2 relays no pair */
const NO_B2 = join(dir, 'no-b2.yaml');
const withoutB2 = readFileSync(INVENTORY, 'utf8').replace(/^ {2}b-2:\n(?: {4}.*\n)+/m, '');
writeFileSync(NO_B2, withoutB2);

const P2 = '172.27.40.42';
const C1 = '172.27.40.31';

interface UpJson {
  result: string;
  phases: { id: string; nodes: { node: string; changes: string[] }[] }[];
}

describeLab(
  "a relay's role switched and its forwarding or rule mended on the running interface (Q8)",
  INVENTORY,
  (lab) => {
    const sh = (node: string, script: string) => lab().sh(node, script);
    const invocation = async (node: string) => (await sh(node, 'systemctl show -p InvocationID --value wg-quick@wg0')).trim();
    const enableChanges = (report: UpJson, node: string) =>
      (report.phases.find((p) => p.id === 'enable')?.nodes.find((n) => n.node === node)?.changes ?? []).join('; ');
    /** `up --json` of `inventory` while a-1 and c-1 ping p-2 every 0.2 s (25 s): the report and both pings' summaries */
    const upWhilePinging = async (inventory: string) => {
      const pings = ['a-1', 'c-1'].map((n) => sh(n, `ping -n -q -i 0.2 -c 125 -W 1 ${P2} || true`));
      await new Promise((r) => setTimeout(r, 1000));
      const run = await lab().meshctl(['up', inventory, '--yes', '--no-color', '--json']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      return { report: JSON.parse(run.stdout) as UpJson, pings: await Promise.all(pings) };
    };

    it('up converges four-sites (the premise): p-2 relays b-2 <-> c-1', async () => {
      const built = await lab().meshctl(['up', ALL, '--yes', '--no-color']);
      assert.equal(built.code, 0, built.stdout + built.stderr);
      assert.equal((await sh('p-2', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), '1');
    });

    it("b-2 removed: the plan stops p-2's relay live; up restarts nothing on p-2 and a-1/c-1 -> p-2 lose no ping", async () => {
      const plan = await lab().meshctl(['plan', NO_B2, '--no-color']);
      assert.equal(plan.code, 4, plan.stdout + plan.stderr);
      assert.match(
        plan.stdout,
        /p-2 {2}stop wg0's relay live: forwarding off, meshctl's rule removed .*relay PostUp\/PreDown lines gone from wg0\.conf/,
      );
      assert.doesNotMatch(plan.stdout, /restart wg-quick@wg0/);
      const before = await invocation('p-2');
      const { report, pings } = await upWhilePinging(NO_B2);
      assert.equal(report.result, 'converged');
      assert.match(enableChanges(report, 'p-2'), /stop wg0's relay live/);
      assert.equal(await invocation('p-2'), before, 'wg-quick@wg0 was restarted on p-2');
      for (const ping of pings) assert.match(ping, /125 packets transmitted, 125 received/, ping);
      assert.equal((await sh('p-2', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), '0');
      assert.equal(await sh('p-2', 'iptables -S | grep -c meshctl || true'), '0\n', 'the relay rule is gone');
    });

    it('b-2 back: the relay set up live on p-2, no restart, no ping lost; b-2 <-> c-1 pings through it', async () => {
      const before = await invocation('p-2');
      const { report, pings } = await upWhilePinging(ALL);
      assert.equal(report.result, 'converged');
      assert.match(
        enableChanges(report, 'p-2'),
        /set up wg0's relay live: .*relay PostUp\/PreDown lines added to wg0\.conf \(relays b-2<->c-1\)/,
      );
      assert.equal(await invocation('p-2'), before, 'wg-quick@wg0 was restarted on p-2');
      for (const ping of pings) assert.match(ping, /125 packets transmitted, 125 received/, ping);
      assert.match(await sh('b-2', `ping -n -q -c 3 -W 1 ${C1} || true`), /3 received/);
    });

    it('forwarding switched off on p-1: the plan names it, up sets it back live and b-1 <-> c-1 pings again', async () => {
      await sh('p-1', 'sysctl -q -w net.ipv4.ip_forward=1; sysctl -q -w net.ipv4.ip_forward=0');
      assert.equal((await sh('p-1', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), '0');
      assert.match(await sh('b-1', `ping -n -q -c 2 -W 1 ${C1} || true`), / 0 received/, 'the premise: the relayed pair is down');
      const plan = await lab().meshctl(['plan', ALL, '--no-color']);
      assert.equal(plan.code, 4, plan.stdout + plan.stderr);
      assert.match(plan.stdout, /p-1 {2}set up wg0's relay live: .*live net\.ipv4\.conf\.wg0\.forwarding = 0/);
      const before = await invocation('p-1');
      const run = await lab().meshctl(['up', ALL, '--yes', '--no-color']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(await invocation('p-1'), before, 'wg-quick@wg0 was restarted on p-1');
      assert.equal((await sh('p-1', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), '1');
      assert.match(await sh('b-1', `ping -n -q -c 3 -W 1 ${C1} || true`), /3 received/);
    });

    it("the relay's rule deleted on p-1 under a DROP FORWARD policy: the plan names it, up puts it back", async () => {
      try {
        await sh('p-1', 'iptables -P FORWARD DROP; iptables -D FORWARD -i wg0 -j meshctl-fwd-wg0');
        assert.match(await sh('b-1', `ping -n -q -c 2 -W 1 ${C1} || true`), / 0 received/, 'the premise: the relayed pair is down');
        const plan = await lab().meshctl(['plan', ALL, '--no-color']);
        assert.equal(plan.code, 4, plan.stdout + plan.stderr);
        assert.match(plan.stdout, /p-1 {2}set up wg0's relay live: .*meshctl's relay rule for wg0 .* is not in place/);
        const run = await lab().meshctl(['up', ALL, '--yes', '--no-color']);
        assert.equal(run.code, 0, run.stdout + run.stderr);
        assert.match(await sh('p-1', 'iptables -S FORWARD'), /-A FORWARD -i wg0 -j meshctl-fwd-wg0/);
        assert.match(await sh('b-1', `ping -n -q -c 3 -W 1 ${C1} || true`), /3 received/);
        const again = await lab().meshctl(['plan', ALL, '--no-color']);
        assert.match(again.stdout, /nothing to change/);
      } finally {
        await sh('p-1', 'iptables -P FORWARD ACCEPT');
      }
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
