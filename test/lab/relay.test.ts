/**
 * Relays (issue 11) in one lab of inventories/four-sites.yaml: b-1 and b-2 (NAT, no forward) cannot dial c-1
 * (carrier NAT) nor it them, and meshctl does not punch holes, so those two pairs go through the public nodes.
 * - `up --yes` brings every pair to a passing ping, direct where a direct path exists and relayed (b-1/c-1 via p-1,
 *   b-2/c-1 via p-2) where not; `verify --json` says which is which, with the relayed RTT and its two legs;
 * - a second `up` changes nothing (the relay's PostUp/PreDown lines render the same);
 * - the relay forwards only between peers of wg0: forwarding is on for wg0 alone (ip_forward untouched), and a packet
 *   b-1 sends through the mesh to an address behind p-1's underlay side (a route and AllowedIPs added on b-1 so it
 *   really reaches p-1) is dropped by the relay's rule, while a relayed wg-to-wg ping passes; with the rule flushed
 *   the same packet does leave p-1 (so the test can fail), and verify's `relay` check fails on p-1.
 * - relay: auto at the gate: a UDP drop between a-1 and p-2 (a direct pair) on site a's router makes `up` relay that pair and keep it
 *   relayed (a second up changes nothing); once the drop is gone the next `up` moves it back to direct.
 * (`relay: never` being refused before anything changes needs no lab: test/unit/relay-report.test.ts.)
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab, uniqueLabName } from './harness.js';

const INVENTORY = 'inventories/four-sites.yaml';
const NODES = ['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'c-1', 'p-1', 'p-2'];
const RELAYED = { 'b-1,c-1': 'p-1', 'b-2,c-1': 'p-2' } as Record<string, string>;
/** Held by the lab's internet namespace on every link (p-1's gateway): reachable from p-1 over eth0, not through the mesh. */
const BEHIND_P1 = '169.254.0.1';

interface UpJson {
  result: string;
  changes: number;
  matrix?: { cells: Record<string, Record<string, { ok: boolean }>> };
  fallbackRelays?: { pairs: string[]; relayedAtGate: string[]; backToDirect: string[] };
  firstPass?: { stoppedAt: string; changes: number };
  timings?: { fallbackProbeMs?: number };
  warnings?: string[];
  notes?: string[];
  plan?: { phases: { nodes: { actions: unknown[] }[] }[] };
}

interface VerifyJson {
  ok: boolean;
  checks: { node: string; peer?: string; id: string; status: string; message: string }[];
  matrix: { cells: Record<string, Record<string, { ok: boolean; rttMs?: number }>> };
  paths: { a: string; b: string; kind: string; via?: string; why: string; rttMs?: number; legsRttMs?: [number, number] }[];
}

describeLab(
  'relays: pairs with no direct path go through a public node, which forwards wg-to-wg only',
  INVENTORY,
  (lab) => {
    const sh = (target: string, script: string) => lab().sh(target, script);
    let ipForwardBefore = '';

    it('up --yes: every pair pings, relayed where no direct path exists; verify --json says which is which', async () => {
      ipForwardBefore = (await sh('p-1', 'sysctl -n net.ipv4.ip_forward')).trim();
      const started = Date.now();
      const up = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
      const upSeconds = (Date.now() - started) / 1000;
      const upReport = JSON.parse(up.stdout) as { result: string; matrix?: VerifyJson['matrix'] };
      assert.equal(up.code, 0, up.stderr);
      assert.equal(upReport.result, 'converged');
      for (const from of NODES)
        for (const to of NODES) if (from !== to) assert.ok(upReport.matrix!.cells[from]![to]!.ok, `${from} -> ${to}`);

      const verify = await lab().meshctl(['verify', INVENTORY, '--json', '--all-checks']);
      const report = JSON.parse(verify.stdout) as VerifyJson;
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal(report.ok, true);
      const notDirect = report.paths.filter((p) => p.kind !== 'direct');
      assert.deepEqual(
        notDirect.map((p) => `${p.a},${p.b} ${p.kind} ${p.via}`),
        Object.entries(RELAYED).map(([pair, via]) => `${pair} relayed ${via}`),
      );
      assert.equal(report.paths.length, 28);
      for (const p of notDirect) {
        assert.match(p.why, /is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-\d$/);
        assert.ok(p.rttMs !== undefined && p.legsRttMs !== undefined, JSON.stringify(p));
      }
      const ping = report.checks.find((c) => c.id === 'ping' && c.node === 'b-1' && c.peer === 'c-1')!;
      assert.equal(ping.status, 'pass');
      assert.match(ping.message, /\(relayed via p-1\)$/);
      const relayCheck = (node: string) => report.checks.find((c) => c.id === 'relay' && c.node === node);
      assert.equal(relayCheck('p-1')?.status, 'pass', relayCheck('p-1')?.message);
      assert.equal(relayCheck('p-1')?.message, 'relays b-1<->c-1: forwarding on wg0 only, wg0 -> other interfaces dropped');
      assert.equal(relayCheck('p-2')?.status, 'pass');
      assert.equal(relayCheck('a-1'), undefined);
      // b-1 has no peer for c-1: c-1's /32 rides on p-1's; p-1 forwards on wg0 only
      assert.doesNotMatch(await sh('b-1', 'wg show wg0 allowed-ips'), /\t172\.27\.40\.31\/32$/m);
      assert.match(await sh('b-1', 'wg show wg0 allowed-ips'), /\t172\.27\.40\.41\/32 172\.27\.40\.31\/32$/m);
      assert.equal((await sh('p-1', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), '1');
      assert.equal((await sh('p-1', 'sysctl -n net.ipv4.conf.eth0.forwarding')).trim(), ipForwardBefore);
      assert.equal((await sh('p-1', 'sysctl -n net.ipv4.ip_forward')).trim(), ipForwardBefore);
      assert.equal((await sh('a-1', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), ipForwardBefore, 'a non-relay forwards nothing new');
      // numbers for the record: a relayed pair against one direct hop
      const direct = report.paths.find((p) => p.a === 'b-1' && p.b === 'p-1')!;
      const relayed = notDirect[0]!;
      process.stderr.write(
        `relay lab: up ${upSeconds.toFixed(1)} s; b-1<->c-1 relayed via p-1 ${relayed.rttMs} ms (legs ${relayed.legsRttMs!.join(' + ')} ms); b-1<->p-1 direct ${direct.rttMs} ms\n`,
      );
    });

    it('a second up changes nothing: the relay lines render the same, no restart', async () => {
      const again = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
      assert.equal(again.code, 0, again.stderr);
      const report = JSON.parse(again.stdout) as { result: string; changes: number };
      assert.equal(report.result, 'converged');
      assert.equal(report.changes, 0);
      assert.equal((await sh('p-1', 'sysctl -n net.ipv4.conf.wg0.forwarding')).trim(), '1');
    });

    it('the relay drops what a relayed node sends beyond wg0 (while wg-to-wg passes); without the rule it would leave', async () => {
      const p1Key = (await sh('p-1', 'wg show wg0 public-key')).trim();
      const allowed = (await sh('b-1', `wg show wg0 allowed-ips | awk -v k=${p1Key} '$1 == k { $1 = ""; print }'`)).trim().split(/\s+/);
      // b-1 sends to an address behind p-1's underlay through the mesh: it really reaches p-1 over wg0
      await sh(
        'b-1',
        `wg set wg0 peer ${p1Key} allowed-ips ${[...allowed, `${BEHIND_P1}/32`].join(',')} && ip route replace ${BEHIND_P1}/32 dev wg0`,
      );
      const dropCount = async () => {
        const rules = await sh('p-1', 'iptables -w -L meshctl-fwd-wg0 -v -n -x');
        const drop = rules.split('\n').find((l) => /\bDROP\b/.test(l));
        return drop ? Number(drop.trim().split(/\s+/)[0]) : Number.NaN;
      };
      // what leaves p-1 by its underlay interface from b-1's overlay address: a counting rule in mangle POSTROUTING
      const counting = '-s 172.27.40.21 -d 169.254.0.1 -o eth0 -p icmp -j ACCEPT';
      const leftP1 = async () =>
        Number((await sh('p-1', "iptables -w -t mangle -L POSTROUTING -v -n -x | grep 172.27.40.21 | awk '{ print $1 }'")).trim());
      await sh('p-1', `iptables -w -t mangle -I POSTROUTING ${counting}`);
      try {
        const before = await dropCount();
        const blocked = await lab().exec('b-1', ['ping', '-c', '3', '-i', '0.2', '-W', '1', BEHIND_P1]);
        assert.notEqual(blocked.code, 0, 'no reply through the relay');
        assert.ok((await dropCount()) - before >= 3, "p-1's relay rule dropped the three echo requests");
        assert.equal(await leftP1(), 0, 'nothing left p-1 towards its underlay');
        // meanwhile a relayed wg-to-wg ping passes
        assert.match(await sh('b-1', 'ping -c 3 -i 0.2 -W 2 172.27.40.31'), /3 received/);
        // control: with the chain flushed the kernel does forward wg0 -> eth0, so the rule is what stops it
        await sh('p-1', 'iptables -w -F meshctl-fwd-wg0');
        await lab().exec('b-1', ['ping', '-c', '2', '-i', '0.2', '-W', '1', BEHIND_P1]);
        assert.equal(await leftP1(), 2, 'without the rule the packets leave p-1');
        // and verify says so
        const verify = JSON.parse((await lab().meshctl(['verify', INVENTORY, '--json', '--no-mtu'])).stdout) as VerifyJson;
        const check = verify.checks.find((c) => c.id === 'relay' && c.node === 'p-1')!;
        assert.equal(check.status, 'fail');
        assert.match(
          check.message,
          /rule for wg0 \(accept wg0 -> wg0, drop wg0 -> other interfaces\) is not whole: under an ACCEPT FORWARD policy/,
        );
      } finally {
        await sh(
          'p-1',
          'iptables -w -F meshctl-fwd-wg0 && iptables -w -A meshctl-fwd-wg0 -i wg0 -o wg0 -j ACCEPT && iptables -w -A meshctl-fwd-wg0 -i wg0 -j DROP',
        );
        await lab().exec('p-1', ['sh', '-c', `iptables -w -t mangle -D POSTROUTING ${counting}`]);
        await lab().exec('b-1', [
          'sh',
          '-c',
          `ip route del ${BEHIND_P1}/32 dev wg0; wg set wg0 peer ${p1Key} allowed-ips ${allowed.join(',')}`,
        ]);
      }
    });

    it('relay: auto at the gate: a direct pair whose path breaks is relayed, kept so, and moved back once it works', async () => {
      // a copy of the inventory: its local state (the fallback pair) must not reach other tests of four-sites.yaml
      const dir = mkdtempSync(join(tmpdir(), 'meshctl-fallback-'));
      const inventory = join(dir, 'four-sites.yaml');
      copyFileSync(INVENTORY, inventory);
      const up = async () => {
        const run = await lab().meshctl(['up', inventory, '--yes', '--json']);
        const report = JSON.parse(run.stdout) as UpJson & {
          stoppedAt?: string;
          phases?: { nodes: { node: string; checks: { id: string; status: string; message: string }[] }[] }[];
          warnings?: string[];
        };
        const failing = (report.phases ?? []).flatMap((p) =>
          p.nodes.flatMap((n) => n.checks.filter((c) => c.status === 'fail').map((c) => `${n.node} ${c.id}: ${c.message}`)),
        );
        assert.equal(
          run.code,
          0,
          `${report.result} at ${report.stoppedAt}: ${failing.join('; ').slice(0, 1500)} ${run.stderr.slice(-500)}`,
        );
        return report;
      };
      const everyPairPings = (report: UpJson) => {
        for (const from of NODES)
          for (const to of NODES) if (from !== to) assert.ok(report.matrix!.cells[from]![to]!.ok, `${from} -> ${to}`);
      };
      // the UDP drop, on site a's side of the underlay (its router): a-1 and p-2 (198.51.100.12) no longer reach each
      // other. A drop in a-1's own firewall would not do: the baseline's firewall check stops the run on it, rightly.
      const drop = (op: '-I' | '-D') =>
        sh(
          'router:a',
          `iptables -w ${op} FORWARD -s 192.168.10.11 -d 198.51.100.12 -p udp -j DROP && iptables -w ${op} FORWARD -s 198.51.100.12 -d 192.168.10.11 -p udp -j DROP`,
        );
      await drop('-I');
      try {
        const fell = await up();
        assert.equal(fell.result, 'converged');
        assert.deepEqual(fell.fallbackRelays, { pairs: ['a-1 p-2'], relayedAtGate: ['a-1 p-2'], backToDirect: [] });
        // the first pass, stopped at the ping gate, stays in the report beside the second's phases
        const first = fell.firstPass!;
        assert.equal(first?.stoppedAt, 'verify', 'the first pass stopped at the ping gate');
        const secondPass = fell.plan!.phases.reduce((n, p) => n + p.nodes.reduce((m, x) => m + x.actions.length, 0), 0);
        assert.ok(secondPass > 0, 'the second pass relayed the pair');
        assert.equal(fell.changes, first.changes + secondPass, 'changes: both passes');
        everyPairPings(fell);
        assert.match(await sh('a-1', 'wg show wg0 allowed-ips'), /172\.27\.40\.42\/32/, 'p-2 routed through a peer');
        assert.deepEqual(JSON.parse(readFileSync(`${inventory}.state.json`, 'utf8')).fallbackRelays, ['a-1 p-2']);
        const verify = JSON.parse((await lab().meshctl(['verify', inventory, '--json', '--no-mtu'])).stdout) as VerifyJson;
        const path = verify.paths.find((p) => p.a === 'a-1' && p.b === 'p-2')!;
        assert.equal(path.kind, 'relayed', path.why);
        assert.match(path.why, /direct handshake failed at the gate/);
        // still broken: the next run probes the direct path, finds it broken and changes nothing
        const again = await up();
        assert.equal(again.changes, 0);
        assert.deepEqual(again.fallbackRelays?.backToDirect, []);
        // and says so, with the probe's time (outside every phase)
        assert.ok((again.timings?.fallbackProbeMs ?? -1) >= 0, 'timings.fallbackProbeMs');
        assert.ok(
          again.warnings?.some((w) =>
            /^a-1 and p-2: the direct path still does not work \(the probe of the fallback pairs took \d+\.\d s\), stays relayed/.test(w),
          ),
          JSON.stringify(again.warnings),
        );
      } finally {
        await drop('-D');
      }
      // plan before it: the pair goes back to direct, and its Paths list no longer calls it relayed (Q4-7)
      const plan = await lab().meshctl(['plan', inventory, '--no-color']);
      assert.equal(plan.code, 4, plan.stderr);
      assert.match(plan.stderr, /^note: a-1 and p-2: the direct path works again, back to direct$/m, plan.stderr);
      assert.doesNotMatch(plan.stdout, /a-1 <-> p-2 {2}relayed via/, plan.stdout);
      const back = await up();
      assert.equal(back.result, 'converged');
      assert.deepEqual(back.fallbackRelays, { pairs: [], relayedAtGate: [], backToDirect: ['a-1 p-2'] });
      // good news is a note, not a warning (Q4-7)
      assert.deepEqual(back.notes, ['a-1 and p-2: the direct path works again, back to direct']);
      assert.ok(!back.warnings?.some((w) => /back to direct/.test(w)), JSON.stringify(back.warnings));
      everyPairPings(back);
      assert.equal(JSON.parse(readFileSync(`${inventory}.state.json`, 'utf8')).fallbackRelays, undefined);
      const endpoints = await sh('a-1', 'wg show wg0 endpoints');
      // p-2 is a peer of a-1 again (a relayed pair has no peer entry there: its /32 rides on p-1's), at the port its
      // config says. It was seen at :10925, :39105 and :39600 while the first-contact round lasted 3 s: a-1's handshake
      // initiation, sent when its sync set PersistentKeepalive, reached p-2 before p-2 had the peer; WireGuard retries
      // only after REKEY_TIMEOUT (5 s), so p-2 dialled a-1's forward first in the matrix round. Site a's router still
      // tracked a-1's own flow 192.168.10.11:51820 <-> 198.51.100.12:51820 (MASQUERADE), so the forwarded flow's reply
      // tuple was taken and nf_nat gave p-2's packets a new source port (conntrack: `src=198.51.100.12
      // dst=203.0.113.10 sport=51820 dport=41001 src=192.168.10.11 dst=198.51.100.12 sport=51820 dport=39600`);
      // a-1 roamed to it. That endpoint dies with the router's entry (after a conntrack flush a-1 lost 40 of 40 pings
      // to p-2 while a-2, at :51820, lost none). Now first contact waits out the retry (src/checks/ping-matrix.ts),
      // and a roam that happens anyway (a restart of p-2) is set back by the re-resolve timer once its handshake is
      // stale (src/render/reresolve.ts; the router case end to end: test/lab/dyndns.test.ts).
      assert.match(endpoints, /\t198\.51\.100\.12:51820$/m, 'a-1 has p-2 as a direct peer again, at its own port');
      // and a-1 reaches p-2 by itself after site a's router forgot every flow (as after its reboot): p-2, a public
      // node, keeps no keepalive, so nothing of p-2's comes first to show a-1 the way
      await sh('router:a', 'conntrack -F');
      assert.match(
        await sh('a-1', 'ping -c 3 -i 0.2 -w 10 172.27.40.42'),
        / 3 received/,
        "a-1 reaches p-2 after the router's conntrack flush",
      );
    });
  },
  { name: uniqueLabName('rly') },
);
