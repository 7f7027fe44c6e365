/**
 * The bench runs meshctl with --control-persist (as Ansible's runs have ControlPersist): the runs start a background
 * master (src/transport/control-master.ts) that outlives them. This finds the masters of one control directory (by
 * their command line: `__control-master --socket DIR/...`), reads the CPU they used (it is not in the runs' CPU:
 * /usr/bin/time counts only the processes it waited for) and ends them, before a lab goes down. The lab test of
 * --control-persist (test/lab/control-persist.test.ts) finds and ends its masters with the same functions.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** The socket directory the bench's meshctl runs use (MESHCTL_CONTROL_DIR): one per bench process. */
export const benchControlDir = (tmp: string): string => join(tmp, `meshctl-bench-cm-${process.pid}`);

const ticksPerSecond = (() => {
  const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim();
  return Number(out) > 0 ? Number(out) : 100;
})();

/** Process ids of the control masters serving sockets in `dir`. */
export function controlMasters(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const socket = args[args.indexOf('--socket') + 1];
    if (args.includes('__control-master') && socket?.startsWith(`${dir}/`)) pids.push(Number(entry));
  }
  return pids;
}

/** CPU time (user + system, ms) a process has used so far, from /proc/PID/stat; 0 when it is gone. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields after the command name: state is [0], utime [11], stime [12] (proc(5) fields 14 and 15)
    return Math.round(((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond);
  } catch {
    return 0;
  }
}

/**
 * Ends the masters of `dir` (SIGTERM, the default: they close their connections and exit; SIGKILL when nothing of
 * them may be left, whatever state they are in) and says how much CPU they had used.
 */
export function endControlMasters(dir: string, signal: NodeJS.Signals = 'SIGTERM'): number {
  let total = 0;
  for (const pid of controlMasters(dir)) {
    total += cpuMs(pid);
    try {
      process.kill(pid, signal);
    } catch {
      // gone already
    }
  }
  return total;
}
