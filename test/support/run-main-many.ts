/**
 * Runs meshctl's main() in this process once per argv read from stdin (JSON: string[][]) and prints
 * [{code, stderr, stdout, ms, cpuMs, maxRssBytes}] as JSON (ms: wall time of that call; cpuMs: the CPU time (user +
 * system) this process spent during it, which a loaded machine does not stretch as it does wall time; maxRssBytes: the process's peak
 * resident set so far, so a call's own peak is at most that). Lets a test push dozens of inputs through the real CLI in one process
 * (under the network guard) instead of paying a process start for each.
 */
import { main } from '../../src/main.js';

const argvs = JSON.parse(
  await new Promise<string>((resolve) => {
    let text = '';
    process.stdin.on('data', (chunk) => (text += chunk)).on('end', () => resolve(text));
  }),
) as string[][];

const results: { code: number; stdout: string; stderr: string; ms: number; cpuMs: number; maxRssBytes: number }[] = [];
const realStdout = process.stdout.write.bind(process.stdout);
const realStderr = process.stderr.write.bind(process.stderr);
for (const argv of argvs) {
  let stdout = '';
  let stderr = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  process.exitCode = undefined;
  const started = performance.now();
  const cpu = process.cpuUsage();
  const code = await main(['node', 'meshctl', ...argv]);
  const ms = performance.now() - started;
  const { user, system } = process.cpuUsage(cpu);
  process.stdout.write = realStdout;
  process.stderr.write = realStderr;
  results.push({ code, stdout, stderr, ms, cpuMs: (user + system) / 1000, maxRssBytes: process.resourceUsage().maxRSS * 1024 });
}
realStdout(JSON.stringify(results));
