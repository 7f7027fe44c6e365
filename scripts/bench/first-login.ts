/**
 * Start to the first SSH login (issue 10: "the time from start to the first SSH connection under 300 ms"), measured
 * on loopback without a lab: NODES real OpenSSH sshd on 127.0.0.1 (test/integration/sshd-harness.ts), each with
 * `ForceCommand true`, so the run logs in (the key exchange, the host key check and the login are real) but no
 * command of meshctl's runs on this machine: `up --dry-run` then stops at its first command (root is not proved),
 * and its `--json` report still carries the connect timings (timings.firstLoginMs: ms from the process's start,
 * performance.timeOrigin, to the first node's login done; firstTcpConnectMs likewise).
 *   node --import tsx scripts/bench/first-login.ts [RUNS=10] [NODES=4]      (needs root, `npm run build` first)
 * Prints one line per run and the medians of firstLoginMs, firstTcpConnectMs, firstLoginCpuMs (meshctl's CPU time when
 * the first login was done) and the whole run's CPU time (user+sys, /usr/bin/time), with the load average before and
 * after. MESHCTL=/other/bin/meshctl.js measures another build (one that reports no firstLoginCpuMs shows NaN);
 * BENCH_NODE_ARGS="--flag ..." gives node options; BENCH_TRACE=1 prints each run's stderr. BENCH_HASHED=1 writes the
 * known_hosts lines hashed (`|1|salt|hash`, as OpenSSH writes them with HashKnownHosts yes, Debian's default).
 * The whole run's wall time (GNU time's %e: start, every login, the first command refused, the exit) is printed too.
 * A/B: with MESHCTL_B (another build) and/or BENCH_NODE_ARGS_B, the runs alternate A, B, A, B ... (RUNS each) against
 * the same sshds, and the medians are printed per side: the load on a shared machine moves between runs, and
 * alternating spreads it over both sides alike.
 */
import { startLoopbackSshds } from './loopback-sshds.js';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** the CLI measured: this tree's, or another build's (MESHCTL=/path/to/bin/meshctl.js, e.g. an older commit's) */
const MESHCTL = process.env.MESHCTL ?? join(ROOT, 'bin', 'meshctl.js');

/** One side of the comparison: a build and node's options for it. */
interface Side {
  name: string;
  meshctl: string;
  nodeArgs: string[];
}

const words = (text: string | undefined) => (text ?? '').split(' ').filter(Boolean);

/** A alone, or A and B when MESHCTL_B or BENCH_NODE_ARGS_B is set. */
function sides(): Side[] {
  const a: Side = { name: 'A', meshctl: MESHCTL, nodeArgs: words(process.env.BENCH_NODE_ARGS) };
  if (process.env.MESHCTL_B === undefined && process.env.BENCH_NODE_ARGS_B === undefined) return [a];
  return [a, { name: 'B', meshctl: process.env.MESHCTL_B ?? MESHCTL, nodeArgs: words(process.env.BENCH_NODE_ARGS_B ?? process.env.BENCH_NODE_ARGS) }];
}

/** The median of a non-empty list. */
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** An inventory of one public site whose nodes' sshd are the given loopback ports. */
function inventoryText(ports: number[], identityFile: string): string {
  const nodes = ports.flatMap((port, i) => [
    `  n${i + 1}:`,
    '    site: edge',
    `    address: 198.51.100.${i + 1}`,
    `    overlayIp: 172.27.30.${i + 1}`,
    `    ssh: { host: 127.0.0.1, port: ${port}, user: root, identityFile: ${identityFile} }`,
  ]);
  return ['mesh:', '  interface: wg0', '  network: 172.27.30.0/24', '  listenPort: 51820', 'sites:', '  edge:', '    public: true', 'nodes:', ...nodes, ''].join(
    '\n',
  );
}

async function main() {
  const runs = Number(process.argv[2] ?? 10);
  const count = Number(process.argv[3] ?? 4);
  const farm = await startLoopbackSshds(count, 'meshctl-first-login-', !!process.env.BENCH_HASHED);
  try {
    const { root, sshds, client } = farm;
    const inventory = join(root, 'mesh.yaml');
    writeFileSync(inventory, inventoryText(sshds.map((s) => s.port), client.privateFile));
    const { env } = farm;
    const load0 = loadavg();
    const compared = sides();
    const rows = new Map<Side, { loginMs: number; tcpMs: number; loginCpuMs: number; cpuMs: number; wallMs: number }[]>(compared.map((side) => [side, []]));
    for (let run = 0; run < runs * compared.length; run++) {
      const side = compared[run % compared.length]!;
      const i = Math.floor(run / compared.length);
      const timeFile = join(root, 'time');
      const r = spawnSync(
        '/usr/bin/time',
        ['-f', '%U %S %e', '-o', timeFile, process.execPath, ...side.nodeArgs, side.meshctl, 'up', '--dry-run', '--yes', '--json', '--no-underlay-probes', inventory],
        { env, encoding: 'utf8', cwd: root },
      );
      let report: { timings?: { firstLoginMs?: number; firstTcpConnectMs?: number; firstLoginCpuMs?: number } };
      try {
        report = JSON.parse(r.stdout);
      } catch {
        throw new Error(`run ${i + 1}: no JSON report (exit ${r.status}): ${r.stderr.slice(-2000)}`);
      }
      const [user, sys, wall] = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
      const row = { loginMs: report.timings?.firstLoginMs ?? Number.NaN, tcpMs: report.timings?.firstTcpConnectMs ?? Number.NaN,
        loginCpuMs: report.timings?.firstLoginCpuMs ?? Number.NaN, cpuMs: Math.round((user! + sys!) * 1000), wallMs: Math.round(wall! * 1000) };
      rows.get(side)!.push(row);
      if (process.env.BENCH_TRACE) process.stdout.write(r.stderr);
      console.log(`${compared.length > 1 ? `${side.name} ` : ''}run ${i + 1}: first TCP ${row.tcpMs} ms, first login ${row.loginMs} ms (CPU ${row.loginCpuMs} ms), CPU in all ${row.cpuMs} ms, wall in all ${row.wallMs} ms (exit ${r.status})`);
    }
    const load1 = loadavg();
    for (const [side, list] of rows)
      console.log(
        `${compared.length > 1 ? `${side.name} (${[...side.nodeArgs, side.meshctl].join(' ')}): ` : ''}` +
          `median of ${runs}, ${count} nodes: first login ${median(list.map((r) => r.loginMs))} ms, first TCP ${median(list.map((r) => r.tcpMs))} ms, ` +
          `CPU at the first login ${median(list.map((r) => r.loginCpuMs))} ms, ` +
          `CPU (whole run) ${median(list.map((r) => r.cpuMs))} ms, wall (whole run) ${median(list.map((r) => r.wallMs))} ms; load average ${load0.map((l) => l.toFixed(2)).join(' ')} -> ${load1.map((l) => l.toFixed(2)).join(' ')}`,
      );
  } finally {
    await farm.stop();
  }
}

await main();
