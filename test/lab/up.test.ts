/**
 * `meshctl up` end to end on a fresh lab of the reference design (issue 3): baseline STOP on a dirty node with
 * nothing installed, a full run to a passing 4 x 4 matrix, the rendered configs, an idempotent second run that
 * keeps interfaces and handshakes, no private key anywhere on the operator side, and host-key refusal.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { planIsEmpty, type Plan } from '../../src/engine/plan.js';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describeLab } from './harness.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredMesh } from '../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { reloadDropInPath, renderReloadDropIn } from '../../src/render/systemd.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];

interface UpJson {
  result: string;
  stoppedAt?: string;
  changes: number;
  phases: {
    id: string;
    verdict: string;
    nodes: { node: string; changes: string[]; checks: { id: string; status: string; message: string }[] }[];
  }[];
  matrix?: { nodes: string[]; cells: Record<string, Record<string, { ok: boolean }>> };
  timings: { totalMs: number };
}

describeLab('meshctl up on the homelab lab', INVENTORY, (lab) => {
  /** every byte meshctl printed in this suite, searched for private keys at the end */
  const outputs: string[] = [];
  /** `up INVENTORY --yes ...`; a first argument ending in .yaml replaces the inventory */
  const up = async (...extra: string[]) => {
    const inventory = extra[0]?.endsWith('.yaml') ? extra.shift()! : INVENTORY;
    const result = await lab().meshctl(['up', inventory, '--yes', ...extra]);
    outputs.push(result.stdout, result.stderr);
    return result;
  };
  const sh = (node: string, script: string) => lab().sh(node, script);

  it('stops at the baseline gate on a dirty node, before anything is installed anywhere', async () => {
    await sh('wk-1', 'mkdir -p /etc/cni/net.d');
    await sh('ms-1', 'ip rule add from 10.99.0.0/16 lookup 100 priority 1000');
    try {
      const result = await up('--json');
      assert.equal(result.code, 1, result.stderr);
      const report = JSON.parse(result.stdout) as UpJson;
      assert.equal(report.result, 'stopped');
      assert.equal(report.stoppedAt, 'baseline');
      const baseline = report.phases.find((p) => p.id === 'baseline')!;
      assert.equal(baseline.verdict, 'STOP');
      const failing = baseline.nodes.flatMap((n) => n.checks.filter((c) => c.status === 'fail').map((c) => `${n.node}:${c.id}`)).sort();
      assert.deepEqual(failing, ['ms-1:default-ip-rules', 'wk-1:no-kubernetes-leftovers']);
      const cni = baseline.nodes.find((n) => n.node === 'wk-1')!.checks.find((c) => c.id === 'no-kubernetes-leftovers')!;
      assert.match(cni.message, /\/etc\/cni/);
      for (const node of NODES) {
        const wg = await lab().exec(node, ['sh', '-c', 'command -v wg || dpkg -l wireguard-tools 2>/dev/null | grep -c ^ii']);
        assert.notEqual(wg.code, 0, `${node} must have nothing installed, got: ${wg.stdout}`);
      }
    } finally {
      await sh('wk-1', 'rm -rf /etc/cni');
      await sh('ms-1', 'ip rule del priority 1000');
    }
  });

  it('--dry-run on bare nodes plans every phase and changes nothing (two read-only round trips per node, and the probes)', async () => {
    const result = await lab().meshctl(['up', INVENTORY, '--dry-run', '--json']);
    outputs.push(result.stdout, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as UpJson & {
      dryRun: boolean;
      roundTrips: Record<string, number>;
      channels?: Record<string, Record<string, number>>;
    };
    assert.equal(report.result, 'planned');
    assert.equal(report.dryRun, true);
    const planned = (phase: string, node: string) =>
      report.phases
        .find((p) => p.id === phase)!
        .nodes.find((n) => n.node === node)!
        .changes.join('; ');
    for (const node of NODES) {
      assert.match(planned('install', node), /install wireguard-tools wireguard-go \(apt\)/);
      assert.match(planned('keys', node), /generate \/etc\/wireguard\/wg0\.key/);
      assert.match(planned('config', node), /write \/etc\/wireguard\/wg0\.conf/);
      assert.match(planned('enable', node), /enable --now wg-quick@wg0/);
      // the baseline's underlay probes are read-only too and run in a dry run: on a first build each node takes part
      // in both (a forward watcher or sender, a NAT discovery sender or observer), once more after a miss
      // (they may start during the facts step, src/engine/underlay-ahead.ts: their channels count in the phase they
      // opened in, beside the facts probe's one)
      const probes = report.channels!.facts![node]! - 1 + report.channels!.baseline![node]!;
      assert.ok(probes >= 2 && probes <= 4, `${node}: ${probes} probe commands`);
      // issue 10: no separate root probe after the login; the facts probe proves root (src/engine/root-check.ts)
      assert.equal(report.roundTrips[node]! - probes, 1, `${node}: the facts probe, besides the probes`);
      const touched = await lab().exec(node, [
        'sh',
        '-c',
        'command -v wg; ls /etc/wireguard /etc/systemd/system/wg-quick@wg0.service.d 2>/dev/null; cat /proc/sys/net/ipv4/conf/all/rp_filter',
      ]);
      assert.equal(touched.stdout.trim(), '0', `${node} was changed by a dry run: ${touched.stdout}`);
    }
    const edgeConfig = report.phases.find((p) => p.id === 'config')!.nodes.find((n) => n.node === 'ctb-edge-1') as { diff?: string[] };
    assert.ok(edgeConfig.diff?.includes('+Endpoint = 203.0.113.10:51821'), JSON.stringify(edgeConfig.diff));
    assert.ok(edgeConfig.diff?.includes('+PublicKey = <new key of ms-1>'), 'keys not generated yet are shown as such');
  });

  it('builds the mesh from bare nodes: exit 0 and a 4 x 4 ping matrix all passing', async () => {
    const result = await up();
    assert.equal(result.code, 0, `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
    assert.match(result.stdout, /Ping matrix/);
    assert.match(result.stdout, /mesh converged/);
    const matrixLines = result.stdout.split('\n').filter((l) => NODES.some((n) => l.startsWith(n)) && /\bok\b|FAIL/.test(l));
    assert.equal(matrixLines.length, 4, result.stdout);
    for (const line of matrixLines) {
      assert.doesNotMatch(line, /FAIL/);
      assert.equal(line.match(/\bok\b/g)?.length, 3, line);
    }
  });

  it('wrote exactly the rendered reference configs (edge: 3 forwarded endpoints; home: keepalive only to the edge)', async () => {
    const inventory = loadInventory(INVENTORY);
    const keys = new Map<string, string>();
    for (const node of NODES) keys.set(node, (await sh(node, 'cat /etc/wireguard/wg0.pub')).trim());
    for (const desired of desiredMesh(inventory, keys)) {
      const onNode = await sh(desired.node, 'cat /etc/wireguard/wg0.conf');
      assert.equal(onNode, renderWgQuickConfig(desired), `${desired.node}'s wg0.conf`);
      assert.doesNotMatch(onNode, /^\s*PrivateKey\s*=/im);
      assert.equal((await sh(desired.node, 'stat -c %a /etc/wireguard/wg0.conf /etc/wireguard/wg0.key')).trim(), '600\n600');
    }
    const edge = await sh('ctb-edge-1', 'cat /etc/wireguard/wg0.conf');
    for (const port of [51820, 51821, 51822]) assert.match(edge, new RegExp(`Endpoint = 203\\.0\\.113\\.10:${port}`));
    assert.doesNotMatch(edge, /PersistentKeepalive/);
    const ms1 = await sh('ms-1', 'wg show wg0 persistent-keepalive');
    const edgeKey = keys.get('ctb-edge-1')!;
    for (const line of ms1.trim().split('\n')) {
      const [key, keepalive] = line.split('\t');
      assert.equal(keepalive, key === edgeKey ? '25' : 'off', line);
    }
    assert.equal((await sh('ms-1', 'cat /proc/sys/net/ipv4/conf/all/rp_filter')).trim(), '2');
    assert.match(await sh('ms-1', 'ip link show wg0'), /mtu 1420/);
  });

  it('left wg-quick@wg0 and the re-resolve timer enabled for the next boot (enabled with --no-reload: the boot reads the links)', async () => {
    for (const node of NODES) {
      assert.equal(await sh(node, 'systemctl is-enabled wg-quick@wg0 meshctl-reresolve@wg0.timer'), 'enabled\nenabled\n', node);
      // what the next boot sees: the manager's view after it reads the unit links again (as a daemon-reload does)
      const wants = await sh(
        node,
        'systemctl daemon-reload && systemctl list-dependencies --plain --no-pager multi-user.target timers.target',
      );
      assert.match(wants, /wg-quick@wg0\.service/, node);
      assert.match(wants, /meshctl-reresolve@wg0\.timer/, node);
    }
  });

  it('a second run changes nothing: zero changes, same ifindex, handshakes kept', async () => {
    const before = new Map<string, { ifindex: string; handshakes: string }>();
    for (const node of NODES) {
      before.set(node, {
        ifindex: await sh(node, 'cat /sys/class/net/wg0/ifindex'),
        handshakes: await sh(node, 'wg show wg0 latest-handshakes'),
      });
    }
    const dry = await lab().meshctl(['up', INVENTORY, '--dry-run', '--no-color']);
    outputs.push(dry.stdout, dry.stderr);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /dry run: nothing to change, the mesh is as the inventory says/);
    const result = await up('--json');
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as UpJson;
    assert.equal(report.result, 'converged');
    assert.equal(report.changes, 0, JSON.stringify(report.phases.map((p) => p.nodes.map((n) => n.changes))));
    for (const node of NODES) {
      assert.equal(await sh(node, 'cat /sys/class/net/wg0/ifindex'), before.get(node)!.ifindex, `${node} wg0 was recreated`);
      const then = new Map(
        before
          .get(node)!
          .handshakes.trim()
          .split('\n')
          .map((l) => l.split('\t') as [string, string]),
      );
      for (const line of (await sh(node, 'wg show wg0 latest-handshakes')).trim().split('\n')) {
        const [key, at] = line.split('\t') as [string, string];
        assert.ok(Number(then.get(key)) > 0 && Number(at) >= Number(then.get(key)), `${node}: handshake with ${key} was lost`);
      }
      assert.equal(
        (
          await sh(
            node,
            'systemctl show -p NRestarts --value wg-quick@wg0; systemctl show -p ActiveEnterTimestampMonotonic --value wg-quick@wg0',
          )
        )
          .trim()
          .split('\n')[0],
        '0',
      );
    }
  });

  it('plans again after applying: `up --dry-run --json` prints an empty plan value on the converged mesh', async () => {
    const dry = await lab().meshctl(['up', INVENTORY, '--dry-run', '--json']);
    outputs.push(dry.stdout, dry.stderr);
    assert.equal(dry.code, 0, dry.stderr);
    const report = JSON.parse(dry.stdout) as { plan: Plan };
    assert.equal(report.plan.version, 1);
    assert.deepEqual(
      report.plan.phases.map((p) => p.id),
      ['facts', 'baseline', 'install', 'keys', 'config', 'enable', 'verify'],
    );
    assert.ok(planIsEmpty(report.plan), JSON.stringify(report.plan.phases.map((p) => p.nodes)));
  });

  it('`meshctl plan`: exit 0 and nothing on the converged mesh; after a keepalive edit exactly that change on the home nodes, exit 4', async () => {
    const same = await lab().meshctl(['plan', INVENTORY, '--no-color']);
    outputs.push(same.stdout, same.stderr);
    assert.equal(same.code, 0, same.stdout + same.stderr);
    assert.match(same.stdout, /nothing to change: the mesh is as the inventory says/);
    const changed = join(mkdtempSync(join(tmpdir(), 'meshctl-plan-')), 'homelab-keepalive-20.yaml');
    writeFileSync(changed, readFileSync(INVENTORY, 'utf8').replace('persistentKeepalive: 25', 'persistentKeepalive: 20'));
    const drift = await lab().meshctl(['plan', changed, '--json']);
    outputs.push(drift.stdout, drift.stderr);
    assert.equal(drift.code, 4, drift.stderr);
    const plan = JSON.parse(drift.stdout) as Plan;
    const touched = plan.phases.flatMap((p) =>
      p.nodes
        .filter((n) => n.actions.length > 0)
        .map((n) => `${p.id}:${n.node}:${n.actions.map((a) => a.changes.map((c) => c.kind).join('+')).join()}`),
    );
    assert.deepEqual(touched.sort(), [
      'config:ms-1:write-file',
      'config:wk-1:write-file',
      'config:wk-2:write-file',
      'enable:ms-1:syncconf',
      'enable:wk-1:syncconf',
      'enable:wk-2:syncconf',
    ]);
    const diff = plan.phases.find((p) => p.id === 'config')!.nodes[0]!.actions[0]!.changes[0]!;
    assert.ok(
      diff.kind === 'write-file' && diff.diff?.includes('-PersistentKeepalive = 25') && diff.diff.includes('+PersistentKeepalive = 20'),
      JSON.stringify(diff),
    );
    assert.match(await sh('wk-1', 'wg show wg0 persistent-keepalive'), /\t25$/m, 'plan changed nothing');
  });

  it('finding 19: a forward moved in the inventory of a converged mesh is probed: the router still has the old one, so up STOPs at the baseline and changes nothing', async (t) => {
    const scratch = mkdtempSync(join(tmpdir(), 'meshctl-forward-'));
    t.after(() => rmSync(scratch, { recursive: true, force: true }));
    const moved = join(scratch, 'homelab-forward-51823.yaml');
    writeFileSync(moved, readFileSync(INVENTORY, 'utf8').replace('forwardedPort: 51821 ', 'forwardedPort: 51823 '));
    const result = await up(moved, '--json');
    assert.equal(result.code, 1, result.stderr);
    const report = JSON.parse(result.stdout) as UpJson;
    assert.equal(report.stoppedAt, 'baseline');
    const baseline = report.phases.find((p) => p.id === 'baseline')!;
    const forward = baseline.nodes.find((n) => n.node === 'ms-1')!.checks.find((c) => c.id === 'forward-reaches-node') as
      | { status: string; evidence?: string[] }
      | undefined;
    assert.equal(forward?.status, 'fail', JSON.stringify(forward));
    assert.match(forward?.evidence?.[0] ?? '', /ctb-edge-1 dials ms-1 at 203\.0\.113\.10:51821, the inventory says 203\.0\.113\.10:51823/);
    assert.match(await sh('ctb-edge-1', 'cat /etc/wireguard/wg0.conf'), /Endpoint = 203\.0\.113\.10:51821/, 'nothing was pushed');
    // plan says the same (a STOP: exit 1, the gate on stderr)
    const plan = await lab().meshctl(['plan', moved, '--no-color']);
    outputs.push(plan.stdout, plan.stderr);
    assert.equal(plan.code, 1, plan.stdout + plan.stderr);
    assert.match(plan.stderr, /FAIL forward-reaches-node: forward 203\.0\.113\.10:51823 reaches no node/);
    // finding 20: pushed anyway (probes skipped by flag), the pair works (ms-1 dials out) but is one-way: verify fails
    // its cold start, and debug --pair names it instead of calling it healthy
    try {
      const pushed = await up(moved, '--no-underlay-probes');
      assert.equal(pushed.code, 0, pushed.stdout + pushed.stderr);
      const debug = await lab().meshctl(['debug', '--pair', 'ms-1,ctb-edge-1', moved, '--no-color']);
      outputs.push(debug.stdout, debug.stderr);
      // every assertion prints debug's whole output: a HEALTHY (seen once in CI) shows its cold-start evidence per
      // direction (bursts sent, the receiver's InDatagrams/NoPorts growth, the probe's round trips), so a repeat says why
      const said = `debug --pair ms-1,ctb-edge-1 (exit ${debug.code}):\n${debug.stdout}\n${debug.stderr}`;
      assert.equal(debug.code, 1, said);
      assert.doesNotMatch(debug.stdout, /HEALTHY/, said);
      assert.match(debug.stdout, /COLD-START-BLOCKED \(at router:home\)/, said);
      assert.match(debug.stdout, /ctb-edge-1 cannot start a session with ms-1: a new flow to 203\.0\.113\.10:51823 does not arrive/, said);
    } finally {
      const back = await up();
      assert.equal(back.code, 0, back.stdout + back.stderr);
    }
  });

  it('one changing run at a time: two `up` at once, one proceeds and the other is refused naming the holder; a left lock is named, broken on request', async () => {
    // The lock goes to one run. The other is refused naming the holder, or, when the first run (converged: one
    // round trip) released its lock within the RELEASE_WAIT_S a run waits for a lock to go (the release is started,
    // not waited for: src/engine/lock.ts), it takes the lock after it: both then exit 0, one after the other. Which
    // of the two happens is timing; that they never both hold it is the atomic create (set -C) the unit tests prove.
    const [a, b] = await Promise.all([up(), up()]);
    const both = `${a.stdout}${a.stderr}\n----\n${b.stdout}${b.stderr}`;
    assert.ok(a.code === 0 || b.code === 0, both);
    for (const r of [a, b].filter((x) => x.code !== 0)) {
      assert.equal(r.code, 1, both);
      assert.match(r.stderr, /not started: \S+ is locked by another meshctl run: \S+@\S+ \(pid \d+\) since \d{4}-\d\d-\d\d/);
    }
    // the release is started, not waited for (src/engine/lock.ts release: a run right after waits RELEASE_WAIT_S for
    // it): on a loaded node the rm may run a moment after meshctl exited, so the lock must be gone within seconds, not
    // at once; a release that never runs (killed with the connection, say) leaves it for good and still fails here
    for (const node of NODES) {
      let gone = false;
      for (let tries = 0; tries < 20 && !gone; tries++) {
        gone = (await sh(node, 'ls /run/meshctl 2>/dev/null | wc -l')).trim() === '0';
        if (!gone) await new Promise((resolve) => setTimeout(resolve, 500));
      }
      if (!gone)
        assert.fail(`${node}: the lock was not released: ${await sh(node, 'ls -la /run/meshctl; cat /run/meshctl/* 2>&1')}\n${both}`);
    }
    // a lock left by a run that died on another machine
    await sh('ms-1', `mkdir -p /run/meshctl && echo "holder=ops@laptop pid=4242 started=$(date +%s) run=deadbeef" > /run/meshctl/lock`);
    try {
      const blocked = await up();
      assert.equal(blocked.code, 1, blocked.stdout + blocked.stderr);
      assert.match(blocked.stderr, /ms-1 is locked by another meshctl run: ops@laptop \(pid 4242\)/);
      const broken = await up('--break-lock');
      assert.equal(broken.code, 0, broken.stdout + broken.stderr);
      assert.match(broken.stdout, /warning: ms-1: took over the run lock of ops@laptop \(pid 4242\)/);
    } finally {
      await sh('ms-1', 'rm -f /run/meshctl/lock');
    }
  });

  it('applies a peers-only change with wg syncconf: interface, ifindex, private key and the other sessions stay', async () => {
    // keepalive is a [Peer] setting: changing it must not restart anything (and must not clear the key, which
    // the stock `systemctl reload` would do with a config that carries no PrivateKey)
    const changed = join(mkdtempSync(join(tmpdir(), 'meshctl-up-')), 'homelab-keepalive-20.yaml');
    writeFileSync(changed, readFileSync(INVENTORY, 'utf8').replace('persistentKeepalive: 25', 'persistentKeepalive: 20'));
    const before = new Map<string, string>();
    for (const node of NODES) before.set(node, await sh(node, 'cat /sys/class/net/wg0/ifindex; wg show wg0 public-key'));
    // first the dry run: the diff and the syncconf it would do, and nothing done
    const dry = await lab().meshctl(['up', changed, '--dry-run', '--no-color']);
    outputs.push(dry.stdout, dry.stderr);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /-PersistentKeepalive = 25\n\s*\+PersistentKeepalive = 20/);
    assert.match(dry.stdout, /wk-1\s+wg syncconf wg0/);
    assert.match(dry.stdout, /dry run: 6 changes planned on 3 nodes; nothing was changed/);
    assert.match(await sh('wk-1', 'wg show wg0 persistent-keepalive'), /\t25$/m);
    try {
      const result = await up(changed, '--json');
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout) as UpJson;
      const enable = report.phases.find((p) => p.id === 'enable')!;
      for (const node of ['ms-1', 'wk-1', 'wk-2']) {
        assert.match(enable.nodes.find((n) => n.node === node)!.changes.join(';'), /wg syncconf wg0/, node);
        assert.match(await sh(node, 'wg show wg0 persistent-keepalive'), /\t20$/m, node);
      }
      // the edge sends no keepalives, so its file and interface did not change at all
      assert.deepEqual(enable.nodes.find((n) => n.node === 'ctb-edge-1')!.changes, []);
      for (const node of NODES)
        assert.equal(
          await sh(node, 'cat /sys/class/net/wg0/ifindex; wg show wg0 public-key'),
          before.get(node),
          `${node} lost its interface or key`,
        );
      assert.equal(report.result, 'converged');
    } finally {
      const restored = await up('--json');
      assert.equal(restored.code, 0, restored.stderr);
    }
  });

  it("keeps the key through a manual `systemctl reload wg-quick@wg0` (meshctl's drop-in replaces the stock reload)", async () => {
    for (const node of NODES) {
      assert.equal(await sh(node, `cat ${reloadDropInPath('wg0')}`), renderReloadDropIn('wg0'), node);
    }
    const before = await sh('wk-1', 'cat /sys/class/net/wg0/ifindex; wg show wg0 public-key');
    assert.doesNotMatch(before, /\(none\)/);
    // the stock ExecReload (`wg syncconf wg0 <(wg-quick strip wg0)`) would leave `wg show wg0 public-key` at (none)
    await sh('wk-1', 'systemctl reload wg-quick@wg0');
    assert.equal(
      await sh('wk-1', 'cat /sys/class/net/wg0/ifindex; wg show wg0 public-key'),
      before,
      'the reload lost the key or the interface',
    );
    // and the edge still reaches it through the tunnel (a node without its key answers nothing)
    await sh('ctb-edge-1', 'ping -c 2 -W 2 172.27.15.11 >/dev/null');
    assert.equal((await sh('wk-1', 'systemctl is-active wg-quick@wg0')).trim(), 'active');
  });

  it('finds an interface that lost its key to a hand-made `wg syncconf` (verify fails, debug names it) and up loads it again', async () => {
    const before = await sh('wk-2', 'cat /sys/class/net/wg0/ifindex; wg show wg0 public-key');
    await sh('wk-2', 'bash -c "wg syncconf wg0 <(wg-quick strip wg0)"');
    assert.equal((await sh('wk-2', 'wg show wg0 public-key')).trim(), '(none)');
    const verify = await lab().meshctl(['verify', INVENTORY, '--json']);
    outputs.push(verify.stdout, verify.stderr);
    assert.equal(verify.code, 1, verify.stderr);
    const failed = (JSON.parse(verify.stdout) as { checks: { id: string; node: string; status: string; message: string }[] }).checks.filter(
      (c) => c.status === 'fail',
    );
    assert.ok(
      failed.some((c) => c.id === 'public-key' && c.node === 'wk-2' && /without a private key/.test(c.message)),
      JSON.stringify(failed),
    );
    const debug = await lab().meshctl(['debug', INVENTORY, '--pair', 'wk-1,wk-2']);
    outputs.push(debug.stdout, debug.stderr);
    assert.match(debug.stdout, /wk-2's wg0 runs without a private key/);
    const result = await up('--json');
    assert.equal(result.code, 0, result.stderr);
    const enable = (JSON.parse(result.stdout) as UpJson).phases.find((p) => p.id === 'enable')!;
    // one action: the rollback armed on the node (issue 9), then the key loaded again
    const [action, ...others] = enable.nodes.find((n) => n.node === 'wk-2')!.changes;
    assert.deepEqual(others, []);
    assert.match(
      action ?? '',
      /^arm a rollback on the node \(meshctl-revert-[0-9a-f]+-enable, in \d+ s unless confirmed\), load \/etc\/wireguard\/wg0\.key into wg0 again \(it ran with no key\)$/,
    );
    assert.equal(await sh('wk-2', 'cat /sys/class/net/wg0/ifindex; wg show wg0 public-key'), before, 'same interface, same key');
  });

  it('never lets a private key reach the operator: not printed, logged, in JSON, or in files meshctl wrote', async () => {
    const privateKeys = [];
    for (const node of NODES) privateKeys.push((await sh(node, 'cat /etc/wireguard/wg0.key')).trim());
    assert.ok(privateKeys.every((k) => k.length === 44));
    const operatorFiles = [lab().state.knownHosts, ...listFiles(process.env.HOME ?? '/root', /^\.(ssh|meshctl)$/)];
    const haystack = [...outputs, ...operatorFiles.map((f) => safeRead(f))].join('\n');
    for (const key of privateKeys) assert.equal(haystack.includes(key), false, 'a private key leaked to the operator side');
  });

  it('on a terminal, asks GO at each gate with the evidence: yes goes on, no stops (exit 1), Ctrl-C exits 130', async () => {
    const declined = await upInTerminal(lab().name, ['y\r', 'n\r']);
    assert.equal(declined.code, 1, declined.screen);
    assert.match(declined.screen, /GO: continue after "Connect and gather facts"/);
    assert.match(declined.screen, /GO: continue after "Baseline checks \(clean nodes, underlay reachable\)"/);
    assert.match(declined.screen, /running-as-root/);
    assert.doesNotMatch(declined.screen, /Install WireGuard/);
    const interrupted = await upInTerminal(lab().name, ['\x03']);
    assert.equal(interrupted.code, 130, interrupted.screen);
  });

  it('on a terminal, "no" at the enable gate of an MTU change reverts it: the change is confirmed only after a yes', async () => {
    // a new user's finding (stop 25): the enable phase disarmed the rollback before its question, so "n" kept the change
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-up-gate-'));
    try {
      const mtu = join(dir, 'mtu.yaml');
      writeFileSync(mtu, readFileSync(INVENTORY, 'utf8').replace('mtu: 1420', 'mtu: 1400'));
      // "no" at the config gate: the files go back and the interface, which never saw the change, is not restarted
      // (a new user's finding, 2026-12-02: the revert restarted wg-quick on every node, a mesh-wide cut)
      const invocation = (node: string) => sh(node, 'systemctl show -p InvocationID --value wg-quick@wg0');
      const before = await Promise.all(NODES.map(invocation));
      const atConfig = await upInTerminal(lab().name, (title) => (title === 'Push wg0.conf and rp_filter' ? 'n\r' : 'y\r'), mtu);
      assert.equal(atConfig.code, 1, atConfig.screen);
      assert.match(atConfig.screen, /you answered no/);
      assert.deepEqual(await Promise.all(NODES.map(invocation)), before, `wg-quick was restarted:\n${atConfig.screen}`);
      for (const node of NODES) assert.match(await sh(node, 'cat /etc/wireguard/wg0.conf'), /MTU = 1420/, `${node}: wg0.conf went back`);
      const declined = await upInTerminal(lab().name, (title) => (title === 'Enable wg-quick' ? 'n\r' : 'y\r'), mtu);
      assert.equal(declined.code, 1, declined.screen);
      assert.match(declined.screen, /GO: continue after "Enable wg-quick"/);
      assert.match(declined.screen, /you answered no/);
      assert.doesNotMatch(declined.screen, /rollback disarmed/);
      for (const node of NODES) {
        assert.match(await sh(node, 'ip link show wg0'), /mtu 1420/, `${node}: the live interface went back`);
        assert.match(await sh(node, 'cat /etc/wireguard/wg0.conf'), /MTU = 1420/, `${node}: wg0.conf went back`);
        assert.equal(await sh(node, 'ls /run/meshctl | grep revert || true'), '', `${node}: nothing left armed`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a node whose host key changed, before sending it any command', async () => {
    const accepted = async () =>
      Number((await sh('wk-2', 'journalctl -u ssh --no-pager -q | grep -c "Accepted publickey" || true')).trim());
    await sh('wk-2', 'mkdir -p /root/hostkeys && cp -p /etc/ssh/ssh_host_* /root/hostkeys/');
    try {
      await sh('wk-2', 'rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh');
      const loginsBefore = await accepted();
      const result = await up();
      assert.equal(result.code, 3, result.stdout + result.stderr);
      assert.match(result.stderr, /wk-2/);
      assert.match(result.stderr, /HOST KEY CHANGED|changed/i);
      assert.match(result.stderr, /SHA256:/);
      assert.equal(await accepted(), loginsBefore, 'meshctl logged in to a node with a changed host key');
    } finally {
      await sh('wk-2', 'cp -p /root/hostkeys/* /etc/ssh/ && rm -rf /root/hostkeys && systemctl restart ssh');
    }
    const again = await up('--json');
    assert.equal(again.code, 0, again.stderr);
  });
});

/** Runs `meshctl lab run -- up` in a pseudo-terminal and answers its gate prompts one by one. */
async function upInTerminal(
  labName: string,
  answers: string[] | ((title: string) => string),
  inventory = INVENTORY,
): Promise<{ code: number; screen: string }> {
  const command = `${process.execPath} --import tsx src/cli.ts lab run --name ${labName} -- up ${inventory}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, TERM: 'xterm' },
  });
  let screen = '';
  let prompts = 0;
  const titles = new Set<string>();
  child.stdout.on('data', (chunk: Buffer) => {
    screen += chunk.toString();
    const seen = screen.split('GO: continue after').length - 1;
    // answer each new prompt once it is on the screen
    if (typeof answers === 'function') {
      // once per gate: a prompt is drawn again as it is answered (its title then shows up more than once)
      const title = [...screen.matchAll(/GO: continue after "([^"]*)"/g)].at(-1)?.[1];
      if (title !== undefined && !titles.has(title)) {
        titles.add(title);
        child.stdin.write(answers(title));
      }
    } else if (seen > prompts && prompts < answers.length) child.stdin.write(answers[prompts++]!);
  });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 128)));
  return { code, screen };
}

function listFiles(dir: string, keep: RegExp): string[] {
  let entries: string[] = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries
    .filter((e) => keep.test(e))
    .flatMap((e) => {
      const path = join(dir, e);
      return statSync(path).isDirectory()
        ? readdirSync(path)
            .map((f) => join(path, f))
            .filter((f) => statSync(f).isFile())
        : [path];
    });
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
