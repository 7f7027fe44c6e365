/**
 * Lab tests' scaffolding for node:test files.
 *
 *   import { describeLab } from './harness.js';
 *   describeLab('up on homelab', 'inventories/homelab.yaml', (lab) => {
 *     it('...', async () => { const r = await lab().exec('ms-1', ['hostname']); ... });
 *   });
 *
 * The suite is skipped (with the reason) when not root or when systemd-nspawn/debootstrap are missing.
 * Each suite gets a lab with a unique name, made in `before` and always removed in `after` (also when a test or
 * `up` itself failed, and on SIGINT/SIGTERM).
 *
 * Each suite also gets its own copy of its inventory (LabHandle.inventory, in a temporary directory): meshctl keeps
 * its local state beside the inventory (`<inventory>.state.json`, src/state/state.ts), and lab files on the same
 * inventory run at once (scripts/test.sh, two at a time), so with the shared file one read the keys another's run
 * wrote. `lab().meshctl` passes the copy wherever the suite names its inventory; a file that starts meshctl itself
 * maps its arguments with labArgs.
 */
import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { labDown, labExec, labPaths, labRunMeshctl, labUp, type ExecResult, type LabState } from '../../src/lab/index.js';
import { cmdline, listPids, mountsBelow } from '../../src/lab/procs.js';
import { netnsList, which } from '../../src/lab/sys.js';
import { tempDir } from '../support/temp-dir.js';

/** Why lab tests cannot run here, or undefined when they can. */
export function labSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'lab tests need root';
  for (const tool of ['systemd-nspawn', 'debootstrap', 'ip', 'nsenter'])
    if (!which(tool)) return `lab tests need ${tool} (run scripts/setup.sh)`;
  return undefined;
}

/** A lab name nobody else uses: t<pid><random>, within the 16-character limit. */
export const uniqueLabName = (prefix = 't') => `${prefix}${process.pid.toString(36)}${randomBytes(2).toString('hex')}`.slice(0, 16);

export interface LabHandle {
  name: string;
  /** the suite's own copy of its inventory (its local state beside it is the suite's alone) */
  inventory: string;
  state: LabState;
  /** seconds `lab up` took */
  upSeconds: number;
  /** a command inside a node, or in `router:SITE`, `internet`, `operator` */
  exec(target: string, argv: string[], options?: { stdin?: string; timeoutMs?: number }): Promise<ExecResult>;
  /** OpenSSH from the operator namespace, host key checked strictly against the lab's known_hosts */
  ssh(node: string, user: string, command: string): Promise<ExecResult>;
  /** meshctl itself, in the operator namespace; the suite's inventory path in `args` is its copy's (labArgs) */
  meshctl(args: string[]): Promise<ExecResult>;
  /**
   * `sh -c SCRIPT` inside `target` (as exec), asserting exit status 0 with the script, stdout and stderr in the
   * failure message; resolves to stdout as printed (untrimmed).
   */
  sh(target: string, script: string, options?: { stdin?: string; timeoutMs?: number }): Promise<string>;
}

/** The argv of a strict OpenSSH login from the operator namespace (exactly what a person would type). */
export function sshArgv(state: LabState, node: string, user: string, command: string): string[] {
  const target = state.nodes.find((n) => n.name === node);
  if (!target) throw new Error(`no node ${node} in lab ${state.name}`);
  return [
    'ssh',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${state.knownHosts}`,
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'ConnectTimeout=10',
    '-F',
    'none',
    '-i',
    state.identity,
    '-p',
    String(target.sshPort),
    `${user}@${target.sshHost}`,
    command,
  ];
}

/** Per lab name: the inventory its suite was given and the suite's own copy of it. */
const inventories = new Map<string, { shared: string; copy: string }>();

/**
 * `args` for meshctl in lab `name`: every argument naming the suite's inventory (as given to describeLab, relative or
 * not) replaced by the suite's own copy of it, so no two lab files share the local state beside an inventory. Other
 * arguments (an inventory the test wrote itself) are left as they are.
 */
export function labArgs(name: string, args: string[]): string[] {
  const own = inventories.get(name);
  if (!own) return args;
  return args.map((arg) => (resolve(arg) === resolve(own.shared) ? own.copy : arg));
}

export function describeLab(title: string, inventory: string, body: (lab: () => LabHandle) => void, options: { name?: string } = {}): void {
  const skip = labSkipReason();
  describe(title, { skip }, () => {
    const name = options.name ?? uniqueLabName();
    let handle: LabHandle | undefined;
    const cleanup = () =>
      labDown(name).then(
        () => undefined,
        (error: Error) => process.stderr.write(`harness: lab down ${name}: ${error.message}\n`),
      );
    const onSignal = (signal: NodeJS.Signals) => {
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };

    before(async () => {
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const copy = join(tempDir(`meshctl-lab-${name}-`), basename(inventory));
      copyFileSync(inventory, copy);
      inventories.set(name, { shared: inventory, copy });
      const started = Date.now();
      const state = await labUp(inventory, { name });
      handle = {
        name,
        inventory: copy,
        state,
        upSeconds: (Date.now() - started) / 1000,
        exec: (target, argv, opts) => labExec(name, target, argv, opts),
        ssh: (node, user, command) => labExec(name, 'operator', sshArgv(state, node, user, command), { timeoutMs: 30_000 }),
        meshctl: (args) => labRunMeshctl(name, labArgs(name, args), { timeoutMs: 300_000 }),
        sh: async (target, script, opts) => {
          const result = await labExec(name, target, ['sh', '-c', script], opts);
          assert.equal(result.code, 0, `${target}: ${script}: ${result.stdout}\n${result.stderr}`);
          return result.stdout;
        },
      };
    });

    after(async () => {
      await cleanup();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });

    body(() => {
      if (!handle) throw new Error(`lab ${name} is not up (lab up failed in before())`);
      return handle;
    });
  });
}

/** Everything of a lab that could be left behind: namespaces, processes, mounts, its directory. */
export async function leftovers(name: string): Promise<string[]> {
  const dir = labPaths(name).dir;
  const found: string[] = [];
  for (const ns of await netnsList()) if (ns.startsWith(`ml-${name}.`)) found.push(`namespace ${ns}`);
  for (const pid of listPids()) {
    const args = cmdline(pid);
    if (args.some((a) => a.includes(`${dir}/`) || a.includes(`/run/netns/ml-${name}.`))) found.push(`process ${pid} ${args.join(' ')}`);
  }
  for (const point of mountsBelow(dir)) found.push(`mount ${point}`);
  if (existsSync(dir)) found.push(`directory ${dir}`);
  return found;
}

/** Runs the meshctl CLI (src/cli.ts through tsx) as a separate process, for exit-code and message tests. */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {},
): { code: number; stdout: string; stderr: string } {
  const argv = [...(options.prefix ?? []), process.execPath, '--import', 'tsx', 'src/cli.ts', ...args];
  const result = spawnSync(argv[0]!, argv.slice(1), { env: options.env ?? process.env, encoding: 'utf8', timeout: 600_000 });
  return { code: result.status ?? 128, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}
