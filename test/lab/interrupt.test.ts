/**
 * Ctrl-C during a phase of `up` (a real SIGINT to the meshctl process in the lab's operator namespace): exit 130,
 * "interrupted" (not a STOP), and no remote process of that phase left on any node, root logins (ms-1, ctb-edge-1)
 * and sudo logins (wk-1, wk-2) alike. Ctrl-C during a change (a new user's findings 4 and 7): the run reverts what it
 * changed at once, and the next `up` runs at once; a second Ctrl-C leaves the nodes to their timers, and the next
 * `up` says that they rolled themselves back and removes what those reverts left in /run/meshctl.
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { meshctlInOperator } from '../../src/lab/index.js';
import { describeLab, labArgs } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
/** the homelab with MTU 1400 instead of 1420: a change of every node's wg0.conf that restarts every interface */
const dir = mkdtempSync(join(tmpdir(), 'meshctl-int-lab-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MTU_CHANGE = join(dir, 'mtu.yaml');
writeFileSync(MTU_CHANGE, readFileSync(INVENTORY, 'utf8').replace('mtu: 1420', 'mtu: 1400'));
/** MTU_CHANGE with keepalive 20 from the home nodes to the edge: a peers-only change of ms-1, wk-1 and wk-2 */
const KEEPALIVE_CHANGE = join(dir, 'keepalive.yaml');
writeFileSync(KEEPALIVE_CHANGE, readFileSync(MTU_CHANGE, 'utf8').replace('persistentKeepalive: 25', 'persistentKeepalive: 20'));
const HOME = ['ms-1', 'wk-1', 'wk-2'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `meshctl up ARGS` without a terminal and sends SIGINT `delayMs` after its output first shows `trigger`.
 * Resolves with the exit code and everything it printed.
 */
function upInterruptedAt(
  lab: string,
  args: string[],
  trigger: RegExp,
  delayMs: number,
  options: { inventory?: string; again?: number; onceShown?: { trigger: RegExp; run: () => unknown } } = {},
): Promise<{ code: number | null; output: string; sent: boolean }> {
  const { argv, env } = meshctlInOperator(lab, labArgs(lab, ['up', options.inventory ?? INVENTORY, '--yes', '--no-color', ...args]));
  return new Promise((resolve) => {
    // `ip netns exec` execs meshctl in place: the child's pid is meshctl's own
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let sent = false;
    let shown = false;
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (!shown && options.onceShown?.trigger.test(output)) {
        shown = true;
        options.onceShown.run();
      }
      if (!sent && trigger.test(output)) {
        sent = true;
        setTimeout(() => {
          child.kill('SIGINT');
          // a second Ctrl-C `again` ms after the first
          if (options.again !== undefined) setTimeout(() => child.kill('SIGINT'), options.again);
        }, delayMs);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(guard);
      resolve({ code, output, sent });
    });
  });
}

describeLab(
  'Ctrl-C during up',
  INVENTORY,
  (lab) => {
    /** Processes on a node whose command line matches `pattern` (none of ours may be left). */
    async function leftovers(node: string, pattern: string): Promise<string> {
      // let a TERM'd process finish dying before looking
      await new Promise((r) => setTimeout(r, 1500));
      const result = await lab().exec(node, ['sh', '-c', `pgrep -a -f '${pattern}' | grep -v pgrep || true`]);
      return result.stdout.trim();
    }

    it('during the install phase: exit 130, interrupted, and no apt or dpkg left running on any node', async () => {
      // apt-get update + install runs a second or two on every node: interrupt it in the middle
      const run = await upInterruptedAt(lab().name, [], /Install WireGuard/, 300);
      assert.ok(run.sent, run.output);
      assert.equal(run.code, 130, run.output);
      assert.match(run.output, /interrupted/);
      assert.doesNotMatch(run.output, /STOP at/);
      for (const node of NODES)
        assert.equal(await leftovers(node, 'apt-get|dpkg|/usr/lib/apt/methods'), '', `${node} still runs the install`);
    });

    it('during the ping matrix: exit 130 and no ping left on any node', async () => {
      // first a converged mesh (the interrupted install may have left dpkg half done: finish it as a person would)
      for (const node of NODES) await lab().exec(node, ['sh', '-c', 'dpkg --configure -a >/dev/null 2>&1; true']);
      const built = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(built.code, 0, built.stdout + built.stderr);
      // a stalled pair makes the matrix wait for its ping deadline: the lab's internet drops the edge's WireGuard traffic
      // (not the edge itself, whose firewall the baseline would rightly refuse)
      const drop = (op: string) =>
        lab().exec('internet', [
          'sh',
          '-c',
          `iptables ${op} FORWARD -p udp -d 198.51.100.25 -j DROP; iptables ${op} FORWARD -p udp -s 198.51.100.25 -j DROP`,
        ]);
      await drop('-I');
      try {
        const run = await upInterruptedAt(lab().name, [], /Ping matrix/, 800);
        assert.ok(run.sent, run.output);
        assert.equal(run.code, 130, run.output);
        for (const node of NODES) assert.equal(await leftovers(node, 'ping -n'), '', `${node} still pings`);
      } finally {
        await drop('-D');
      }
    });

    /** What a revert must bring back on a node: the MTU in wg0.conf and on the live interface. */
    const mtus = (node: string) =>
      lab()
        .sh(node, "sed -n 's/^MTU = //p' /etc/wireguard/wg0.conf; cat /sys/class/net/wg0/mtu")
        .then((out) => out.trim().replace('\n', ' '));
    /** the last 5 minutes of wg-quick@wg0's and the reverts' journal on a node: the evidence a failed revert leaves */
    const unitJournal = (node: string) =>
      lab()
        .sh(node, "journalctl --no-pager -o short-precise --since -5min -u wg-quick@wg0 -u 'meshctl-revert-*' | tail -n 60")
        .catch((error: Error) => `journal of ${node}: ${error.message}`);
    /** the snapshot directories of runs left in /run/meshctl on a node */
    const revertDirs = (node: string) =>
      lab()
        .sh(node, 'ls /run/meshctl 2>/dev/null | grep revert || true')
        .then((out) => out.trim());

    it('findings 4: Ctrl-C during the enable phase reverts every changed node at once, and the next up runs at once', async () => {
      const converged = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(converged.code, 0, converged.stdout + converged.stderr);
      for (const node of NODES) assert.equal(await mtus(node), '1420 1420', node);
      // the config phase wrote MTU = 1400 on every node (armed); the enable step restarts each interface on it
      const run = await upInterruptedAt(lab().name, [], /Enable wg-quick/, 100, { inventory: MTU_CHANGE });
      assert.ok(run.sent, run.output);
      assert.equal(run.code, 130, run.output);
      assert.match(run.output, /interrupted during/);
      for (const node of NODES)
        if (!new RegExp(`warning: ${node}: reverted: interrupted before this change was confirmed`).test(run.output))
          assert.fail(`${node} not reported reverted:\n${run.output}\n${await unitJournal(node)}`);
      assert.doesNotMatch(run.output, /nothing to do \[FAILED/);
      assert.doesNotMatch(run.output, /rolling back by itself/);
      for (const node of NODES) {
        // back on the old config, file and live interface alike, at exit: not 120 s later
        assert.equal(await mtus(node), '1420 1420', `${node} not reverted:\n${run.output}`);
        assert.equal(await revertDirs(node), '', `${node}: a pending revert is left`);
      }
      // nothing pending: the next up changes the nodes at once
      const next = await lab().meshctl(['up', MTU_CHANGE, '--yes', '--no-color']);
      assert.equal(next.code, 0, next.stdout + next.stderr);
      assert.doesNotMatch(next.stdout + next.stderr, /pending/);
      assert.match(next.stdout, /mesh converged/);
      for (const node of NODES) assert.equal(await mtus(node), '1400 1400', node);
    });

    it('findings 4, 7: a second Ctrl-C leaves the timers; the next up says the nodes rolled themselves back and clears /run/meshctl', async () => {
      // from MTU 1400 (the test above) back to 1420, with a 5 s window; the second Ctrl-C comes 50 ms after the first,
      // mostly while the run waits for the enable scripts, before any revert of the run. Where the first Ctrl-C came
      // after the scripts had answered, the immediate revert may already be on its way to some nodes (CI, stop 28):
      // those are named as underway, their timer as the fallback, and either brings them back. A try that left no
      // node to its timer proves nothing of finding 7 (RV5 F2): tried again, up to 3 times, and at least one must be
      let fired: string[] = [];
      for (let attempt = 1; attempt <= 3 && fired.length === 0; attempt++) {
        const run = await upInterruptedAt(lab().name, ['--rollback-deadline', '5', '--break-lock'], /Enable wg-quick/, 100, { again: 50 });
        assert.ok(run.sent, run.output);
        assert.equal(run.code, 130, run.output);
        const note = /^second interrupt: (.*)$/m.exec(run.output)?.[1] ?? assert.fail(`no second-interrupt note:\n${run.output}`);
        const skipped = /the immediate rollback is skipped; ([^;]*)/.exec(note)?.[1] ?? '';
        const underway = /the rollback started for ([^;]*?) goes on without meshctl[^;]*;[^(]*\(([^)]*)\)/.exec(note);
        const back = /([^;]*) (?:is|are) back on the previous config/.exec(note)?.[1] ?? '';
        for (const node of NODES) {
          const left = new RegExp(`(^|, )${node} starts rolling back by itself by \\d\\d:\\d\\d:\\d\\d UTC`).test(skipped);
          const started =
            !!underway &&
            new RegExp(`(^|, )${node}(,|$)`).test(underway[1]!) &&
            new RegExp(`(^|, )${node} by \\d\\d:\\d\\d:\\d\\d UTC`).test(underway[2]!);
          const settled = new RegExp(`(^| |, )${node}(,| |$)`).test(back);
          assert.equal([left, started, settled].filter(Boolean).length, 1, `${node} named once, with its timer:\n${note}`);
        }
        assert.doesNotMatch(run.output, /reverted: interrupted/);
        // the timers fire (5 s) and each node goes back to MTU 1400 by itself (or by the revert already underway)
        const leftToTimer = NODES.filter((node) => skipped.includes(`${node} starts`));
        let done: string[] = [];
        for (let i = 0; i < 60 && done.length < NODES.length; i++) {
          await sleep(1000);
          fired = [];
          done = [];
          for (const node of NODES) {
            const marker = (await lab().sh(node, 'ls /run/meshctl/revert-*/reverted 2>/dev/null || true')).trim();
            if (marker) fired.push(node);
            if (marker || (!leftToTimer.includes(node) && (await revertDirs(node)) === '' && (await mtus(node)) === '1400 1400'))
              done.push(node);
          }
        }
        assert.deepEqual(done, NODES, 'every node rolled back');
        for (const node of leftToTimer) assert.ok(fired.includes(node), `${node} rolled back by its own timer`);
      }
      assert.ok(fired.length > 0, 'in 3 tries the second Ctrl-C never came before the immediate revert: no node was left to its timer');
      for (const node of NODES) assert.equal(await mtus(node), '1400 1400', node);
      // the killed run's lock is left (a second Ctrl-C ends meshctl at once): taken over
      const next = await lab().meshctl(['up', MTU_CHANGE, '--yes', '--no-color', '--break-lock']);
      assert.equal(next.code, 0, next.stdout + next.stderr);
      assert.match(next.stdout, /mesh converged: 0 changes/);
      for (const node of NODES) {
        const said = new RegExp(`warning: ${node} rolled itself back at \\d\\d:\\d\\d:\\d\\d UTC \\(run [0-9a-f]+: not confirmed\\)`);
        if (fired.includes(node)) assert.match(next.stdout, said);
        else assert.doesNotMatch(next.stdout, said);
        assert.equal(await revertDirs(node), '', `${node}: the fired revert's directory is left`);
      }
      // said once: the run after that has nothing to say
      const again = await lab().meshctl(['up', MTU_CHANGE, '--yes', '--no-color']);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.doesNotMatch(again.stdout, /rolled itself back/);
    });

    it('a peers-only change reverted by Ctrl-C goes back without a restart: no probe lost on a pair it did not touch', async () => {
      const start = await lab().meshctl(['up', MTU_CHANGE, '--yes', '--no-color', '--break-lock']);
      assert.equal(start.code, 0, start.stdout + start.stderr);
      // systemd gives each start of a unit a new invocation id: the same id after the run is no restart (the lab's
      // wg0 came back with the same ifindex after a restart, so that is no proof)
      const invocations = () =>
        Promise.all(
          NODES.map((n) =>
            lab()
              .sh(n, 'systemctl show -p InvocationID --value wg-quick@wg0')
              .then((o) => o.trim()),
          ),
        );
      const before = await invocations();
      assert.ok(
        before.every((id) => /^[0-9a-f]{32}$/.test(id)),
        before.join(' '),
      );
      // ms-1 -> wk-1, a home-home pair the change does not touch, 5 probes a second; -O says each unanswered one
      await lab().sh(
        'ms-1',
        'setsid sh -c "ping -n -O -i 0.2 172.27.15.11 > /tmp/wtf-ping.log 2>&1 & echo \\$! > /tmp/wtf-ping.pid" </dev/null >/dev/null 2>&1',
      );
      // new SSH logins to ms-1 are held once the run is connected: the enable gate's fresh login cannot confirm the
      // change before the Ctrl-C
      const holdLogins = (op: string) => lab().sh('ms-1', `iptables ${op} INPUT -p tcp --dport 22 --syn -j DROP`);
      let held: Promise<unknown> | undefined;
      let run: Awaited<ReturnType<typeof upInterruptedAt>>;
      try {
        run = await upInterruptedAt(lab().name, ['--connect-timeout', '60'], /Enable wg-quick/, 1500, {
          inventory: KEEPALIVE_CHANGE,
          onceShown: { trigger: /Install WireGuard/, run: () => (held = holdLogins('-I')) },
        });
      } finally {
        await held;
        await holdLogins('-D');
      }
      await sleep(1000);
      const ping = await lab().sh('ms-1', 'kill -INT "$(cat /tmp/wtf-ping.pid)"; sleep 0.5; cat /tmp/wtf-ping.log; rm -f /tmp/wtf-ping.*');
      assert.ok(run.sent, run.output);
      assert.equal(run.code, 130, run.output);
      assert.match(run.output, /syncconf|sessions kept/, 'the forward change was the gentle one');
      for (const node of HOME)
        assert.match(run.output, new RegExp(`warning: ${node}: reverted: interrupted before this change was confirmed`), run.output);
      // no restart anywhere, neither by the change nor by its revert
      assert.deepEqual(await invocations(), before, 'wg-quick@wg0 was restarted on a node');
      // the keepalive is back, in the file and live
      for (const node of HOME)
        assert.match(
          await lab().sh(node, 'grep -c "PersistentKeepalive = 25" /etc/wireguard/wg0.conf; wg show wg0 persistent-keepalive'),
          /^1\n(.*\n)*\S+\t25\b/,
          node,
        );
      for (const node of HOME) assert.doesNotMatch(await lab().sh(node, 'wg show wg0 persistent-keepalive'), /\t20\b/, node);
      const sent = Number(/(\d+) packets transmitted/.exec(ping)?.[1] ?? 0);
      assert.ok(sent >= 10, `the ping loop ran too short:\n${ping}`);
      // a probe unanswered when the next one goes out is reported (-O); the last one may be in flight at the SIGINT
      assert.doesNotMatch(ping, /no answer yet/, ping);
      const received = Number(/(\d+) received/.exec(ping)?.[1] ?? 0);
      assert.ok(received >= sent - 1, ping);
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
