/**
 * Ctrl-C during a phase of `up` (a real SIGINT to the meshctl process in the lab's operator namespace): exit 130,
 * "interrupted" (not a STOP), and no remote process of that phase left on any node, root logins (ms-1, ctb-edge-1)
 * and sudo logins (wk-1, wk-2) alike.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { meshctlInOperator } from '../../src/lab/index.js';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];

/**
 * Runs `meshctl up ARGS` without a terminal and sends SIGINT `delayMs` after its output first shows `trigger`.
 * Resolves with the exit code and everything it printed.
 */
function upInterruptedAt(
  lab: string,
  args: string[],
  trigger: RegExp,
  delayMs: number,
): Promise<{ code: number | null; output: string; sent: boolean }> {
  const { argv, env } = meshctlInOperator(lab, ['up', INVENTORY, '--yes', '--no-color', ...args]);
  return new Promise((resolve) => {
    // `ip netns exec` execs meshctl in place: the child's pid is meshctl's own
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let sent = false;
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (!sent && trigger.test(output)) {
        sent = true;
        setTimeout(() => child.kill('SIGINT'), delayMs);
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

describeLab('Ctrl-C during up', INVENTORY, (lab) => {
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
});
