/**
 * A new user's finding Q3-6: changing `mtu` in the inventory made `up` restart wg-quick@wg0 on every node at once
 * ("[Interface] changed"), each ping loop losing 0.2-0.4 s. wg-quick sets the MTU only when it brings the interface
 * up (`ip link set mtu N up dev wg0`, wg-quick(8)), so `up` now sets an MTU-only [Interface] change on the running
 * interface (`ip link set dev wg0 mtu N up`), the file written as before, and a revert sets it back the same way. On
 * the 4-node homelab lab: systemd gives each start of a unit a new InvocationID, so the same id after a run is no
 * restart. The Address of a hand-built mesh (/24, Q6-9) is set live the same way. MESHCTL_LAB names the lab (a
 * helper's own lab name), else a unique one.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const dir = mkdtempSync(join(tmpdir(), 'meshctl-mtu-lab-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** the homelab with MTU 1380 instead of 1420 (its own file: its local state is its own) */
const MTU_1380 = join(dir, 'mtu-1380.yaml');
writeFileSync(MTU_1380, readFileSync(INVENTORY, 'utf8').replace('mtu: 1420', 'mtu: 1380'));
/** the homelab as it is (MTU 1420), beside MTU_1380 */
const MTU_1420 = join(dir, 'mtu-1420.yaml');
writeFileSync(MTU_1420, readFileSync(INVENTORY, 'utf8'));

interface UpJson {
  result: string;
  phases: { id: string; nodes: { node: string; changes: string[] }[] }[];
}

describeLab(
  'an MTU change is set on the running interface, and reverted so',
  INVENTORY,
  (lab) => {
    const sh = (node: string, script: string) => lab().sh(node, script);
    /** each node's wg-quick@wg0 InvocationID: a new one for every start of the unit */
    const invocations = async () =>
      Object.fromEntries(
        await Promise.all(NODES.map(async (n) => [n, (await sh(n, 'systemctl show -p InvocationID --value wg-quick@wg0')).trim()])),
      );
    /** the MTU in wg0.conf and on the live interface, e.g. "1380 1380" */
    const mtus = async (node: string) =>
      (await sh(node, "sed -n 's/^MTU = //p' /etc/wireguard/wg0.conf; cat /sys/class/net/wg0/mtu")).trim().replace('\n', ' ');

    it('up converges the lab at MTU 1420 (the premise)', async () => {
      const built = await lab().meshctl(['up', MTU_1420, '--yes', '--no-color']);
      assert.equal(built.code, 0, built.stdout + built.stderr);
      for (const node of NODES) assert.equal(await mtus(node), '1420 1420', node);
    });

    it('MTU 1420 -> 1380: the plan says it is set live; up sets it on every node, no restart, the mesh still pings', async () => {
      const plan = await lab().meshctl(['plan', MTU_1380, '--no-color']);
      assert.equal(plan.code, 4, plan.stdout + plan.stderr);
      assert.equal(plan.stdout.match(/set wg0 MTU 1380 live \(MTU 1420 -> 1380 in wg0\.conf/g)?.length, NODES.length, plan.stdout);
      assert.doesNotMatch(plan.stdout, /restart wg-quick@wg0/);
      const before = await invocations();
      const run = await lab().meshctl(['up', MTU_1380, '--yes', '--no-color', '--json']);
      assert.equal(run.code, 0, run.stderr);
      const report = JSON.parse(run.stdout) as UpJson;
      assert.equal(report.result, 'converged');
      for (const node of NODES) {
        const changes = report.phases.find((p) => p.id === 'enable')!.nodes.find((n) => n.node === node)?.changes ?? [];
        assert.match(changes.join('; '), /set wg0 MTU 1380 live/, node);
        assert.doesNotMatch(changes.join('; '), /restart wg-quick/, node);
        assert.equal(await mtus(node), '1380 1380', node);
      }
      assert.deepEqual(await invocations(), before, 'wg-quick@wg0 was restarted on a node');
    });

    it('"no" at the enable gate of MTU 1380 -> 1420: the revert sets 1380 back live, no restart either way', async () => {
      const before = await invocations();
      const declined = await upInTerminal(lab().name, MTU_1420, (title) => (title === 'Enable wg-quick' ? 'n\r' : 'y\r'));
      assert.equal(declined.code, 1, declined.screen);
      assert.match(declined.screen, /set wg0 MTU 1420 live/);
      assert.match(declined.screen, /you answered no/);
      for (const node of NODES) {
        assert.equal(await mtus(node), '1380 1380', `${node} not reverted:\n${declined.screen}`);
        assert.equal(await sh(node, 'ls /run/meshctl | grep revert || true'), '', `${node}: nothing left armed`);
      }
      assert.deepEqual(await invocations(), before, `wg-quick@wg0 was restarted on a node:\n${declined.screen}`);
    });

    it('an MTU set by hand (ms-1 at 1400, its file 1380): "no" at the enable gate sets 1400 back, the MTU this run set live is undone (RV4 F3.1)', async () => {
      await sh('ms-1', 'ip link set dev wg0 mtu 1400');
      const before = await invocations();
      const declined = await upInTerminal(lab().name, MTU_1380, (title) => (title === 'Enable wg-quick' ? 'n\r' : 'y\r'));
      assert.equal(declined.code, 1, declined.screen);
      assert.match(declined.screen, /set wg0 MTU 1380 live/);
      assert.match(declined.screen, /you answered no/);
      assert.equal(await mtus('ms-1'), '1380 1400', `ms-1's MTU set by hand not put back:\n${declined.screen}`);
      for (const node of NODES.filter((n) => n !== 'ms-1')) assert.equal(await mtus(node), '1380 1380', node);
      assert.equal(await sh('ms-1', 'ls /run/meshctl | grep revert || true'), '', 'nothing left armed');
      assert.deepEqual(await invocations(), before, `wg-quick@wg0 was restarted on a node:\n${declined.screen}`);
      await sh('ms-1', 'ip link set dev wg0 mtu 1380');
    });

    it('a hand-built /24 Address on ms-1 and wk-1 (file and live, no peer routes): up sets the /32 live, no restart, a ping between them loses nothing (Q6-9)', async () => {
      const HAND = ['ms-1', 'wk-1'];
      const overlay = async (node: string) => (await sh(node, "sed -n 's/^Address = //p' /etc/wireguard/wg0.conf")).trim();
      const addresses: Record<string, string> = {};
      for (const node of HAND) {
        const address = await overlay(node);
        addresses[node] = address;
        const wide = address.replace(/\/32$/, '/24');
        // as wg-quick leaves a /24 Address: the address, its prefix route, and no /32 route of a peer it covers
        await sh(
          node,
          `sed -i 's|^Address = ${address}$|Address = ${wide}|' /etc/wireguard/wg0.conf && ip -4 address add ${wide} dev wg0 && ip -4 address del ${address} dev wg0 && for r in $(ip -4 route show dev wg0 proto boot | cut -d' ' -f1); do ip -4 route del $r dev wg0; done`,
        );
        assert.match(await sh(node, 'ip -4 -o address show dev wg0'), new RegExp(wide.replace(/[./]/g, '\\$&')), node);
      }
      const before = await invocations();
      const target = addresses['wk-1']!.replace(/\/32$/, '');
      // 25 s of echo requests every 0.2 s from ms-1 to wk-1 across the whole run
      const pinging = sh('ms-1', `ping -n -q -i 0.2 -c 125 ${target} || true`);
      await new Promise((r) => setTimeout(r, 1000));
      const run = await lab().meshctl(['up', MTU_1380, '--yes', '--no-color', '--json']);
      const ping = await pinging;
      assert.equal(run.code, 0, run.stderr);
      const report = JSON.parse(run.stdout) as UpJson;
      for (const node of HAND) {
        const changes = (report.phases.find((p) => p.id === 'enable')!.nodes.find((n) => n.node === node)?.changes ?? []).join('; ');
        assert.match(changes, new RegExp(`set wg0 Address ${addresses[node]!.replace(/[./]/g, '\\$&')} live`), node);
        assert.doesNotMatch(changes, /restart wg-quick/, node);
        assert.equal((await sh(node, "ip -4 -o address show dev wg0 | awk '{ print $4 }'")).trim(), addresses[node], node);
        assert.equal((await sh(node, 'ip -4 route show dev wg0 | wc -l')).trim(), String(NODES.length - 1), `${node}: one route per peer`);
      }
      assert.deepEqual(await invocations(), before, 'wg-quick@wg0 was restarted on a node');
      assert.match(ping, /125 packets transmitted, 125 received/, `ms-1 -> wk-1 lost echo replies:\n${ping}`);
      const again = await lab().meshctl(['up', MTU_1380, '--yes', '--no-color']);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /mesh converged: 0 changes/);
    });

    it('a stray address added by hand to ms-1 (its file the design\'s): up deletes it live, "no" at the enable gate puts it back live, no restart (RV5 F3)', async () => {
      const address = (await sh('ms-1', "sed -n 's/^Address = //p' /etc/wireguard/wg0.conf")).trim();
      const STRAY = '172.27.15.99/32';
      const live = async () => (await sh('ms-1', "ip -4 -o address show dev wg0 | awk '{ print $4 }' | sort")).trim().split('\n');
      await sh('ms-1', `ip -4 address add ${STRAY} dev wg0`);
      try {
        assert.deepEqual(await live(), [address, STRAY].sort());
        const before = await invocations();
        const declined = await upInTerminal(lab().name, MTU_1380, (title) => (title === 'Enable wg-quick' ? 'n\r' : 'y\r'));
        assert.equal(declined.code, 1, declined.screen);
        assert.match(declined.screen, /172\.27\.15\.99\/32 removed/);
        assert.match(declined.screen, /you answered no/);
        assert.deepEqual(await live(), [address, STRAY].sort(), `ms-1's stray address not put back:\n${declined.screen}`);
        assert.match(declined.screen, /put\s+back\s+live/, 'the rollback says what it put back');
        // the live peers and key were the file's before the run: nothing is said to be left as the run set it
        assert.doesNotMatch(declined.screen, /not\s+put\s+back/, declined.screen);
        assert.equal(await sh('ms-1', 'ls /run/meshctl | grep revert || true'), '', 'nothing left armed');
        assert.deepEqual(await invocations(), before, `wg-quick@wg0 was restarted on a node:\n${declined.screen}`);
      } finally {
        await sh('ms-1', `ip -4 address del ${STRAY} dev wg0 2>/dev/null || true`);
      }
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);

/** Runs `meshctl lab run -- up INVENTORY` in a pseudo-terminal (script(1)) and answers each gate's prompt once. */
async function upInTerminal(
  labName: string,
  inventory: string,
  answer: (title: string) => string,
): Promise<{ code: number; screen: string }> {
  const command = `${process.execPath} --import tsx src/cli.ts lab run --name ${labName} -- up ${inventory}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, TERM: 'xterm' },
  });
  let screen = '';
  const answered = new Set<string>();
  child.stdout.on('data', (chunk: Buffer) => {
    screen += chunk.toString();
    // a prompt is drawn again as it is answered: each title once
    const title = [...screen.matchAll(/GO: continue after "([^"]*)"/g)].at(-1)?.[1];
    if (title !== undefined && !answered.has(title)) {
      answered.add(title);
      child.stdin.write(answer(title));
    }
  });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 128)));
  return { code, screen };
}
