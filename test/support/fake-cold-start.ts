/**
 * The cold-start probe's watch and counters as a fake node answers them (test/unit/cold-start-*.test.ts): the watch
 * waits for its target with as many looks, as far apart, as the script says (src/checks/cold-start.ts watchCommand),
 * so a fake's watch lasts what a node's would.
 */
import { spawnSync } from 'node:child_process';
import type { UdpCounters } from '../../src/checks/cold-start.js';

/**
 * The watch of `script`, if it has one, run against `sum` (the node's InDatagrams + NoPorts): its section's body.
 * `sleep(ms)` is its pause between two looks: real time unless a test runs the watch on a clock of its own.
 */
export async function fakeWatch(
  script: string,
  sum: () => number,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
): Promise<string | undefined> {
  const target = /"\$mc_udp" -lt (\d+) /.exec(script)?.[1];
  if (target === undefined) return undefined;
  const [, polls, interval] = /\$mc_i -lt (\d+) \]; do sleep ([\d.]+)/.exec(script)!;
  let looks = 0;
  while (sum() < Number(target) && looks < Number(polls)) {
    await sleep(Number(interval) * 1000);
    looks++;
  }
  return `looks=${looks} sum=${sum()}`;
}

/** The `udp` section as /proc/net/snmp's Udp lines print the counters. */
export const udpSection = (c: UdpCounters) =>
  `@@meshctl begin udp\nUdp: InDatagrams NoPorts InErrors\nUdp: ${c.inDatagrams} ${c.noPorts} 0\n@@meshctl end udp rc=0`;

/** Why a test that needs its own network namespace (unshare --net) is skipped here; undefined when it can run. */
export const netnsSkip: string | undefined =
  process.getuid?.() !== 0
    ? 'needs root (unshare --net)'
    : spawnSync('unshare', ['--net', 'true']).status !== 0
      ? 'unshare does not work here'
      : undefined;

/** Runs a script in sh in a fresh, empty network namespace (loopback up; its UDP counters start at 0; nothing leaves it). */
export const inEmptyNetns = (script: string) =>
  spawnSync('unshare', ['--net', 'sh', '-c', 'ip link set lo up && exec sh'], { input: script, encoding: 'utf8', timeout: 30_000 });
