/**
 * meshctl's own CPU per SSH login, with the transport loaded and warm (issue 10: "~9 ms of its own CPU per node up to
 * the first login"): NODES real OpenSSH sshd on 127.0.0.1 (test/integration/sshd-harness.ts, `ForceCommand true`),
 * and this process logs in to all of them at once through the pool (connectAll, as a run does, `probe: false` as `up`
 * connects), ROUNDS times after one round not counted. CPU = this process's user + system time (process.cpuUsage:
 * every thread of it, V8's compiler threads too) over the round, divided by NODES; the sshds' CPU is not in it.
 *   node --import tsx scripts/bench/login-cpu.ts [NODES=16] [ROUNDS=5]      (needs root for sshd)
 * BENCH_HASHED=1 writes the known_hosts lines hashed (`|1|salt|hash`, HashKnownHosts yes, Debian's ssh_config).
 * Prints one line per round and the median, with the load average (the machine is shared: compare A and B at the
 * same load, e.g. alternately, from two trees).
 */
import { startLoopbackSshds } from './loopback-sshds.js';
import { loadavg } from 'node:os';
import type { Node } from '../../src/inventory/types.js';
import { closeAll, connectAll } from '../../src/transport/pool.js';

const count = Number(process.argv[2] ?? 16);
const rounds = Number(process.argv[3] ?? 5);
const hashed = !!process.env.BENCH_HASHED;
const farm = await startLoopbackSshds(count, 'meshctl-login-cpu-', hashed);
try {
  const { sshds, client, env } = farm;
  const nodes = sshds.map(
    (s, i) =>
      ({
        name: `n${i + 1}`,
        site: 'edge',
        address: `198.51.100.${i + 1}`,
        overlayIp: `172.27.30.${i + 1}`,
        listenPort: 51820,
        ssh: { host: '127.0.0.1', port: s.port, user: 'root', become: 'none', identityFile: client.privateFile },
      }) as unknown as Node,
  );
  const perLogin: number[] = [];
  const load0 = loadavg();
  for (let round = 0; round <= rounds; round++) {
    const cpu0 = process.cpuUsage();
    const wall0 = performance.now();
    const result = await connectAll(nodes, { env, probe: false });
    const cpu = process.cpuUsage(cpu0);
    const wall = performance.now() - wall0;
    if (result.failures.size > 0) throw new Error([...result.failures.values()][0]!.message);
    await closeAll(result.connections, result.jumpHosts);
    if (round === 0) continue; // the warm-up: loading and compiling the transport
    const ms = (cpu.user + cpu.system) / 1000;
    perLogin.push(ms / count);
    console.log(`round ${round}: ${count} logins, CPU ${ms.toFixed(1)} ms (${(ms / count).toFixed(2)} ms a login), wall ${wall.toFixed(0)} ms`);
  }
  const sorted = [...perLogin].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  console.log(
    `median of ${rounds}, ${count} nodes${hashed ? ', hashed known_hosts' : ''}: ${median.toFixed(2)} ms of CPU a login; ` +
      `load average ${load0.map((l) => l.toFixed(2)).join(' ')} -> ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );
} finally {
  await farm.stop();
}
