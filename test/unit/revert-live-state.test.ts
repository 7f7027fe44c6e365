/**
 * A reviewer's finding RV5 F3: a stray 172.27.15.99/32 added by hand to ms-1's wg0 (its file already the design's),
 * `up` planned `set wg0 Address 172.27.15.12/32 live, 172.27.15.99/32 removed`, was stopped before the change was
 * confirmed, and said "reverted: ... back on its previous config and interface state", yet .99 was gone: the arm's
 * snapshot kept the live MTU alone, and a revert with the file's [Interface] unchanged did nothing to the interface.
 * The same held for a relay's forwarding and rule set up again live. Now the snapshot's `state` keeps the live
 * addresses (`addrs=`), the interface's forwarding (`fwd=`) and whether meshctl's relay rule is there
 * (`relay_rule=`), and the revert puts them back (../../src/engine/revert.ts liveStateRestore).
 * Run for real: the enable step's own script (planService, armed as `up` arms it) and the revert, in a network
 * namespace on a tun device standing in for wireguard-go's (as address-live.test.ts does), without systemd (no unit,
 * no timer unit: the arm's fallback sleep, killed by the revert). The node's paths (/etc/wireguard, /run/meshctl) are
 * moved into a temporary directory; /sys/class/net and /proc/sys/net are the namespace's own.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import type { NodePhaseReport } from '../../src/engine/types.js';
import { capturedFacts, capturedKeys } from '../support/converged-facts.js';
import { planService } from '../../src/steps/service.js';
import { describeAction } from '../../src/engine/plan.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { armScript, revertNowScript, settleLeftovers, settleRollbacks } from '../../src/engine/revert.js';
import { relayHooks } from '../../src/render/relay.js';

const RUN = { runId: 'fe0123456789abcd', deadlineS: 120 };
const converged: NodeFacts = capturedFacts();
const desired = desiredNodeConfig(loadInventory('inventories/homelab.yaml'), 'ms-1', capturedKeys(converged));
const routes = desired.peers.flatMap((p) => p.allowedIps);
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const root = mkdtempSync(join(tmpdir(), 'meshctl-revert-live-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A namespace with wg0 (a tun device) up at `addresses`, its file the design's; `body` runs in it; always removed. */
function onNode(
  name: string,
  addresses: string[],
  body: (node: { run: (script: string) => string; at: (s: string) => string; dir: string }) => void,
) {
  const ns = `mc-rvl-${process.pid}-${name}`.slice(0, 30);
  const dir = join(root, name);
  const at = (script: string) =>
    script
      .replaceAll('/run/meshctl/', `${dir}/run/meshctl/`)
      .replaceAll('/etc/', `${dir}/etc/`)
      .replaceAll('/usr/local/lib/meshctl/', `${dir}/usr/local/lib/meshctl/`);
  mkdirSync(join(dir, 'etc/wireguard'), { recursive: true });
  mkdirSync(join(dir, 'run/meshctl'), { recursive: true });
  writeFileSync(join(dir, 'etc/wireguard/wg0.conf'), converged.config.text!);
  // a `wg` stand-in first on PATH (a tun is no WireGuard device): `wg show wg0 allowed-ips|persistent-keepalive|public-key`
  // answered from files under the node's directory (aips, ka), as wg(8) prints them
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, 'wg'),
    `#!/bin/sh\ncase "$3" in allowed-ips) cat ${dir}/aips ;; persistent-keepalive) cat ${dir}/ka ;; public-key) echo PUBLIC= ;; esac\n`,
    { mode: 0o755 },
  );
  writeFileSync(join(dir, 'aips'), 'KEY1=\t172.27.15.11/32\nKEY2=\t172.27.15.13/32\n');
  writeFileSync(join(dir, 'ka'), 'KEY1=\toff\nKEY2=\t25\n');
  const run = (script: string) =>
    execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', at(script)], { encoding: 'utf8', env: { PATH: `${bin}:${PATH}` } });
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    run(
      `ip tuntap add dev wg0 mode tun && ip link set wg0 mtu 1420 up${addresses.map((a) => ` && ip -4 address add ${a} dev wg0`).join('')}`,
    );
    body({ run, at, dir });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

const addressesOf = (run: (s: string) => string) =>
  run("ip -4 -o address show dev wg0 | awk '{ print $4 }'").trim().split('\n').filter(Boolean).sort();

describe('a revert puts back the interface state the run set live with the file unchanged (RV5 F3)', () => {
  it('a stray address the enable step deleted live: the snapshot names it, the revert adds it back and says so', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
    onNode('stray', ['172.27.15.12/32', '172.27.15.99/32'], ({ run, at }) => {
      const facts: NodeFacts = {
        ...converged,
        systemd: false,
        live: { ...converged.live!, addresses: ['172.27.15.12/32', '172.27.15.99/32'] },
      };
      const { action } = planService(facts, 'wg0', 'none', routes, desired.publicKey, desired, RUN);
      assert.match(describeAction(action!), /set wg0 Address 172\.27\.15\.12\/32 live, 172\.27\.15\.99\/32 removed/);
      run(action!.script);
      assert.deepEqual(addressesOf(run), ['172.27.15.12/32'], 'the enable step deleted the stray address');
      const state = readFileSync(at(`/run/meshctl/revert-${RUN.runId}/state`), 'utf8');
      const out = run(revertNowScript(RUN.runId));
      assert.match(out, /^rollback=reverted$/m);
      assert.deepEqual(addressesOf(run), ['172.27.15.12/32', '172.27.15.99/32'], 'the stray address is back');
      assert.match(out, /^rollback-live=wg0 addresses 172\.27\.15\.12\/32 172\.27\.15\.99\/32 \(added 172\.27\.15\.99\/32\)$/m);
      // the arm's state line: the addresses as they were before the change
      assert.match(state, /^addrs=172\.27\.15\.12\/32 172\.27\.15\.99\/32$/m);
      assert.match(state, /^fwd=[01]$/m);
      assert.ok(!existsSync(at(`/run/meshctl/revert-${RUN.runId}`)), 'nothing left armed');
      // the peer routes the enable step made stay (wg-quick makes them for a /32 Address)
      assert.equal(run('ip -4 route show dev wg0 proto boot | wc -l').trim(), String(routes.length));
    });
  });

  it('a /24 set by hand beside the /32 and an address set with a peer: both back, the /32 the run added deleted', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
    onNode('wide', ['172.27.15.12/24'], ({ run }) => {
      run('ip -4 address add 172.27.15.98 peer 172.27.15.97/32 dev wg0');
      run(armScript('wg0', RUN, false, 'enable'));
      // what the enable step did live: the design's /32 added, the others deleted
      run(
        'ip -4 address add 172.27.15.12/32 dev wg0 && ip -4 address del 172.27.15.12/24 dev wg0 && ip -4 address del 172.27.15.98 peer 172.27.15.97/32 dev wg0',
      );
      const out = run(revertNowScript(RUN.runId));
      assert.match(
        out,
        /^rollback-live=wg0 addresses 172\.27\.15\.12\/24 172\.27\.15\.98\+172\.27\.15\.97\/32 \(added .*, deleted 172\.27\.15\.12\/32\)$/m,
      );
      assert.equal(
        run('ip -4 -o address show dev wg0')
          .replace(/\s+/g, ' ')
          .match(/inet \S+( peer \S+)?/g)!
          .sort()
          .join(', '),
        'inet 172.27.15.12/24, inet 172.27.15.98 peer 172.27.15.97/32',
      );
      assert.match(run('ip -4 route show dev wg0'), /^172\.27\.15\.0\/24 proto kernel/m, "the /24's prefix route came back with it");
    });
  });

  it('a relay set up again live (forwarding off, no rule before): the revert sets forwarding and the rule back as they were', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
    onNode('relay', ['172.27.15.12/32'], ({ run, at }) => {
      run('sysctl -q -w net.ipv4.conf.wg0.forwarding=0');
      run(armScript('wg0', RUN, false, 'enable'));
      const state = readFileSync(at(`/run/meshctl/revert-${RUN.runId}/state`), 'utf8');
      assert.match(state, /^fwd=0$/m);
      assert.match(state, /^relay_rule=no$/m);
      // the enable step's relay-on: the relay's PostUp lines on the running interface
      run(relayHooks('wg0').postUp.join('\n'));
      assert.equal(run('cat /proc/sys/net/ipv4/conf/wg0/forwarding').trim(), '1');
      assert.match(run('iptables-save -t filter'), /-A FORWARD -i wg0 -j meshctl-fwd-wg0/);
      const out = run(revertNowScript(RUN.runId));
      assert.match(out, /^rollback-live=net\.ipv4\.conf\.wg0\.forwarding 0; meshctl's relay rule for wg0 removed$/m);
      assert.equal(run('cat /proc/sys/net/ipv4/conf/wg0/forwarding').trim(), '0');
      assert.doesNotMatch(run('iptables-save -t filter'), /meshctl-fwd-wg0/);
    });
  });

  it('a relay whose rule was there and was torn down: the revert sets the rule up again before forwarding goes back on', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
    onNode('relay-off', ['172.27.15.12/32'], ({ run }) => {
      run(relayHooks('wg0').postUp.join('\n'));
      run(armScript('wg0', RUN, false, 'enable'));
      run(relayHooks('wg0').preDown.join('\n'));
      const out = run(revertNowScript(RUN.runId));
      assert.match(out, /^rollback-live=meshctl's relay rule for wg0 set up again; net\.ipv4\.conf\.wg0\.forwarding 1$/m);
      assert.equal(run('cat /proc/sys/net/ipv4/conf/wg0/forwarding').trim(), '1');
      assert.match(run('iptables-save -t filter'), /-A FORWARD -i wg0 -j meshctl-fwd-wg0/);
    });
  });

  it('live peers that differed from the file before the run (a peer removed by hand, re-added by the run): the words say they are not put back', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
    onNode('peers', ['172.27.15.12/32'], ({ run, dir }) => {
      writeFileSync(join(dir, 'aips'), 'KEY1=\t172.27.15.11/32\n');
      run(armScript('wg0', RUN, false, 'enable'));
      // the run's sync: the peer back, and listed first (wg lists peers in the order they were added)
      writeFileSync(join(dir, 'aips'), 'KEY2=\t172.27.15.13/32\nKEY1=\t172.27.15.11/32\n');
      const out = run(revertNowScript(RUN.runId));
      assert.match(out, /^rollback=reverted$/m);
      assert.match(
        out,
        /^rollback-kept=wg0's live peers or key as they were before the run \(they differed from wg0\.conf, set by hand or by an earlier run\): they are as this run set them from wg0\.conf$/m,
      );
    });
    onNode('peers-order', ['172.27.15.12/32'], ({ run, dir }) => {
      run(armScript('wg0', RUN, false, 'enable'));
      // the same peers and keepalives listed in another order: no difference
      writeFileSync(join(dir, 'ka'), 'KEY2=\t25\nKEY1=\toff\n');
      writeFileSync(join(dir, 'aips'), 'KEY2=\t172.27.15.13/32\nKEY1=\t172.27.15.11/32\n');
      assert.doesNotMatch(run(revertNowScript(RUN.runId)), /rollback-kept/);
    });
  });

  it('nothing the run set live: the revert puts nothing back and says nothing more', (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root for a network namespace');
    onNode('same', ['172.27.15.12/32'], ({ run }) => {
      run(armScript('wg0', RUN, false, 'enable'));
      const out = run(revertNowScript(RUN.runId));
      assert.match(out, /^rollback=reverted$/m);
      assert.doesNotMatch(out, /rollback-live|rollback-kept/);
      assert.deepEqual(addressesOf(run), ['172.27.15.12/32']);
    });
  });

  it("the run's words name what the revert put back live, after a STOP and after Ctrl-C", async () => {
    const run = async () => ({
      code: 0,
      stdout:
        "put back live: wg0 addresses 172.27.15.12/32 172.27.15.99/32 (added 172.27.15.99/32)\nrollback-live=wg0 addresses 172.27.15.12/32 172.27.15.99/32 (added 172.27.15.99/32)\nrollback-kept=wg0's live peers or key as they were before the run (...)\nrollback=reverted\n",
      stderr: '',
    });
    const reports: NodePhaseReport[] = [
      { node: 'ms-1', changes: [], checks: [] },
      { node: 'wk-1', changes: [], checks: [], error: 'enable: exit 1' },
    ];
    await settleRollbacks({ runId: RUN.runId, armed: new Set(['ms-1']), reports, confirms: true, deadlineS: 120, run });
    assert.equal(
      reports[0]!.checks[0]!.message,
      "the run stops before this change was confirmed: ms-1 was ROLLED BACK to its previous config and interface state (put back live: wg0 addresses 172.27.15.12/32 172.27.15.99/32 (added 172.27.15.99/32)); not put back: wg0's live peers or key as they were before the run (...)",
    );
    const notes = await settleLeftovers({
      runId: RUN.runId,
      armed: new Set(['ms-1']),
      deadlineS: 120,
      run,
      interrupted: true,
      completed: false,
    });
    assert.deepEqual(notes, [
      "ms-1: reverted: interrupted before this change was confirmed; ms-1 is back on its previous config and interface state (put back live: wg0 addresses 172.27.15.12/32 172.27.15.99/32 (added 172.27.15.99/32)); not put back: wg0's live peers or key as they were before the run (...)",
    ]);
  });
});
