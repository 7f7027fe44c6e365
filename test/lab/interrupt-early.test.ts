/**
 * Ctrl-C during an early phase of a cold `up` (a real SIGINT to the meshctl process in the lab's operator namespace),
 * as the operator sees it: exit 130 and meshctl's interrupted summary (`interrupted during "PHASE"`), no internal
 * error or stack trace, no remote process of the run left, no run lock left (the next `up` runs at once) and no
 * half-written file in /etc/wireguard. Three moments: while the first node's facts probe has not answered its run
 * lock yet (issue 10 folded the lock into that probe; runUp rejected there and meshctl printed only
 * "meshctl: interrupted"), during the facts phase after the lock, and during the config phase (the files written,
 * armed, reverted). The unit test of every phase boundary is test/unit/up-interrupted-early.test.ts.
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { meshctlInOperator } from '../../src/lab/index.js';
import { describeLab, labArgs } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
/** the first node by name: its run lock is taken first, in its facts probe, before any other node is sent anything */
const FIRST = [...NODES].sort()[0]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `meshctl up --yes` without a terminal and sends SIGINT once `when` resolves (given the output so far, polled
 * every 100 ms), or `delayMs` after the output first matches `when` when it is a RegExp. Resolves with the exit code
 * and everything it printed.
 */
function upInterrupted(
  lab: string,
  when: RegExp | ((output: () => string) => Promise<void>),
  delayMs = 0,
): Promise<{ code: number | null; output: string; sent: boolean }> {
  const { argv, env } = meshctlInOperator(lab, labArgs(lab, ['up', INVENTORY, '--yes', '--no-color']));
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let sent = false;
    let closed = false;
    const interrupt = () => {
      if (sent || closed) return;
      sent = true;
      setTimeout(() => child.kill('SIGINT'), delayMs);
    };
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (when instanceof RegExp && when.test(output)) interrupt();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    if (!(when instanceof RegExp)) void when(() => output).then(interrupt, interrupt);
    const guard = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.on('close', (code) => {
      closed = true;
      clearTimeout(guard);
      resolve({ code, output, sent });
    });
  });
}

describeLab(
  'Ctrl-C in an early phase of up',
  INVENTORY,
  (lab) => {
    /** Processes of a meshctl run on a node (the transport marks them with MESHCTL_RUN in their environment). */
    const runProcesses = (node: string) =>
      lab()
        .sh(node, 'grep -l \'MESHCTL_RUN=\' /proc/[0-9]*/environ 2>/dev/null | grep -v "/proc/$$/" || true')
        .then((out) => out.trim());
    /** What the run may leave: its lock, and temp files of an atomic write. */
    const leftovers = async (node: string) =>
      (
        await lab().sh(
          node,
          'ls -d /run/meshctl/lock /etc/wireguard/*meshctl-tmp* /etc/sysctl.d/*meshctl-tmp* /etc/systemd/system/wg-quick@wg0.service.d/*meshctl-tmp* 2>/dev/null || true',
        )
      ).trim();
    /** The run's user-visible end: exit 130 and the interrupted summary naming `phase`, no internal error. */
    const assertInterrupted = (run: { code: number | null; output: string; sent: boolean }, phase: string) => {
      assert.ok(run.sent, run.output);
      assert.equal(run.code, 130, run.output);
      assert.match(run.output, new RegExp(`interrupted during "${phase}"`), run.output);
      assert.doesNotMatch(run.output, /internal error|^\s+at /m, run.output);
      assert.doesNotMatch(run.output, /STOP at/, run.output);
    };

    /**
     * Holds `node`'s lock script where it starts: /run/meshctl removed, and a `mkdir` ahead of the real one on the
     * scripts' PATH (/usr/local/sbin) that, asked for /run/meshctl while /run/mc-hold is a FIFO, reads it, which blocks
     * until Ctrl-C stops the run's processes. (A FIFO at the lock path did this before; the lock script now refuses a
     * lock path that is not a regular file, Q10 F3.)
     */
    const holdLock = (node: string) =>
      lab().sh(
        node,
        [
          'rm -f /run/meshctl/lock; [ ! -d /run/meshctl ] || rmdir /run/meshctl',
          'mkfifo -m 600 /run/mc-hold',
          `printf '%s\\n' '#!/bin/sh' 'case "$*" in *run/meshctl*) [ -p /run/mc-hold ] && cat /run/mc-hold >/dev/null ;; esac' 'exec /bin/mkdir "$@"' > /usr/local/sbin/mkdir`,
          'chmod 755 /usr/local/sbin/mkdir',
        ].join(' && '),
      );
    const releaseLock = (node: string) => lab().sh(node, 'rm -f /usr/local/sbin/mkdir /run/mc-hold /run/meshctl/lock');

    it(`during facts, before ${FIRST}'s probe answered its run lock: the interrupted summary, nothing left on any node`, async () => {
      // the first node's lock script blocks before it answers (holdLock) until Ctrl-C, so the run waits there for as
      // long as the test wants
      await holdLock(FIRST);
      try {
        const run = await upInterrupted(lab().name, async () => {
          // the first node runs a command of the run (its facts probe: up's first command there), blocked on the FIFO
          for (let i = 0; i < 600 && (await runProcesses(FIRST)) === ''; i++) await sleep(100);
          await sleep(300);
        });
        assertInterrupted(run, 'Connect and gather facts');
        await sleep(1500);
        assert.equal(await runProcesses(FIRST), '', `${FIRST}: a process of the run is left`);
      } finally {
        await releaseLock(FIRST);
      }
      for (const node of NODES) assert.equal(await leftovers(node), '', node);
      // no other node was sent anything: none has a lock directory made by this run's lock script
      for (const node of NODES.filter((n) => n !== FIRST))
        assert.equal((await lab().sh(node, 'ls -d /run/meshctl 2>/dev/null || true')).trim(), '', node);
    });

    it('during facts, after the lock: the interrupted summary, every lock released', async () => {
      // wk-1's lock held (holdLock): its facts probe (its lock section first) blocks until Ctrl-C, so the phase is
      // still running when its title shows (the other nodes' locks are this run's: the first node's answered)
      await holdLock('wk-1');
      try {
        const run = await upInterrupted(lab().name, /Connect and gather facts/, 300);
        assertInterrupted(run, 'Connect and gather facts');
        await sleep(1500);
        assert.equal(await runProcesses('wk-1'), '', 'wk-1: a process of the run is left');
      } finally {
        await releaseLock('wk-1');
      }
      for (const node of NODES) assert.equal(await leftovers(node), '', node);
    });

    it('during config: the interrupted summary, the written files reverted, no temp file; the next up runs at once', async () => {
      const run = await upInterrupted(lab().name, /Push wg0\.conf/, 50);
      assertInterrupted(run, 'Push wg0\\.conf and rp_filter');
      await sleep(1500);
      for (const node of NODES) {
        assert.equal(await leftovers(node), '', node);
        assert.equal(await runProcesses(node), '', `${node}: a process of the run is left`);
      }
      // the config step arms a revert before it writes: what it wrote went back (a cold node had no wg0.conf)
      for (const node of NODES)
        assert.equal((await lab().sh(node, 'ls /etc/wireguard/wg0.conf 2>/dev/null || true')).trim(), '', `${node}:\n${run.output}`);
      const next = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(next.code, 0, next.stdout + next.stderr);
      assert.match(next.stdout, /mesh converged/);
      assert.doesNotMatch(next.stdout + next.stderr, /locked by another meshctl run|took over/);
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
