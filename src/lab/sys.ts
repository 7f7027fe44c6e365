/**
 * Every external command the lab runs lives here (ip, iptables/nft, sysctl, mount, debootstrap, chroot,
 * ssh-keygen, systemd-nspawn, nsenter, ...). Other lab modules call these functions and never spawn anything.
 * Commands get argv arrays (no shell) except where a script runs inside a chroot on purpose.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { accessSync, constants, openSync, closeSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { PlannedForward, PlannedNamespace, PlannedRoute } from './plan.js';
import { holdForcedExit } from '../interrupt.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  stdin?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  cwd?: string;
}

/** Runs argv, captures output; never throws for a non-zero exit. */
export function run(argv: string[], options: CommandOptions = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env: options.env ?? process.env, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined;
    child.on('error', (error) => {
      if (timer) clearTimeout(timer);
      resolve({ code: 127, stdout: '', stderr: `${argv[0]}: ${error.message}` });
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code: code ?? (signal === 'SIGKILL' && options.timeoutMs ? 124 : 128),
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
    child.stdin.on('error', () => undefined); // the command may exit without reading its input
    child.stdin.end(options.stdin ?? '');
  });
}

/**
 * Runs argv with inherited stdio (for `lab exec` / `lab run` from the CLI); resolves to the exit code.
 *
 * Each stop signal reaches the child once, and this process lives until the child ends and exits with its code (a
 * meshctl inside releases its run locks and exits 130; dying at once returned 143 while the meshctl inside was still
 * cleaning up: a new user's finding). Once matters: a second stop signal makes meshctl exit at once
 * (src/interrupt.ts), so one that reaches the child directly is not passed on again; this process's own second-signal
 * exit is held back while the child runs (holdForcedExit), so the prompt never comes back before the child ended.
 * - stdin a terminal: the child stays in our process group, where the terminal's Ctrl-C and hang-up reach it
 *   directly (it must, to read the terminal: a background group cannot); SIGTERM and SIGHUP only keep us alive.
 * - otherwise (scripts, CI, timeout(1)): the child gets a process group of its own, so a signal to ours, or to our
 *   pid alone (`kill`, a supervisor), reaches it only through us: every SIGINT, SIGTERM and SIGHUP is passed on.
 */
export function runInherit(argv: string[], env?: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const detached = !process.stdin.isTTY;
    const signals: NodeJS.Signals[] = detached ? ['SIGINT', 'SIGTERM', 'SIGHUP'] : ['SIGTERM', 'SIGHUP'];
    // the handlers go in BEFORE the child exists: a signal that came between the fork and them would find node's
    // default (die) in place; node runs a handler on its event loop, after this function, when `child` is set
    let child: ReturnType<typeof spawn> | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (detached && child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    for (const signal of signals) process.on(signal, onSignal);
    // a second signal ends the child (passed on, or from the terminal), not this process before it (../interrupt.ts)
    const release = holdForcedExit();
    const done = (code: number) => {
      for (const signal of signals) process.off(signal, onSignal);
      release();
      resolve(code);
    };
    try {
      child = spawn(argv[0]!, argv.slice(1), { env: env ?? process.env, stdio: 'inherit', detached });
    } catch (error) {
      process.stderr.write(`meshctl: ${argv[0]}: ${(error as Error).message}\n`);
      done(127);
      return;
    }
    child.on('error', (error) => {
      process.stderr.write(`meshctl: ${argv[0]}: ${error.message}\n`);
      done(127);
    });
    child.on('close', (code, signal) => done(code ?? 128 + (signal ? (SIGNALS[signal] ?? 0) : 0)));
  });
}
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly result: CommandResult,
  ) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-3).join(' | ');
    super(`\`${argv.join(' ')}\` failed (exit ${result.code})${detail ? `: ${detail}` : ''}`);
    this.name = 'CommandError';
  }
}

/** Runs argv and throws CommandError on a non-zero exit. */
export async function must(argv: string[], options: CommandOptions = {}): Promise<string> {
  const result = await run(argv, options);
  if (result.code !== 0) throw new CommandError(argv, result);
  return result.stdout;
}

/** Finds an executable on PATH (the way the shell would), or undefined. */
export function which(tool: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- network namespaces (never the host's)

export const netnsList = async (): Promise<string[]> =>
  (await run(['ip', 'netns', 'list'])).stdout
    .split('\n')
    .map((line) => line.split(' ')[0]!)
    .filter(Boolean);

export const netnsAdd = (name: string) => must(['ip', 'netns', 'add', name]);
export const netnsDelete = (name: string) => run(['ip', 'netns', 'delete', name]);

/** argv that runs a command inside a lab network namespace. */
export const inNetns = (ns: string, argv: string[]) => ['ip', 'netns', 'exec', ns, ...argv];

/** Configures one namespace's own interfaces, addresses and routes through `ip -n NS -batch`, in one process. */
export function ipBatchFor(ns: PlannedNamespace, phase: 'create' | 'configure'): string[] {
  const lines: string[] = [];
  if (phase === 'create') {
    lines.push('link set lo up');
    for (const itf of ns.interfaces) if (itf.bridge) lines.push(`link add ${itf.name} type bridge`);
    return lines;
  }
  for (const itf of ns.interfaces) {
    if (itf.master) lines.push(`link set ${itf.name} master ${itf.master}`);
    // IPv6: nodad, so an address is usable at once (duplicate address detection would hold it tentative for ~1 s;
    // the plan gives every address once per link)
    for (const address of itf.addresses) lines.push(`address add ${address} dev ${itf.name}${address.includes(':') ? ' nodad' : ''}`);
  }
  for (const itf of ns.interfaces) lines.push(`link set ${itf.name} up`);
  for (const route of ns.routes) lines.push(routeLine(route));
  return lines;
}

const routeLine = (route: PlannedRoute) =>
  `route add ${route.to}${route.via ? ` via ${route.via}` : ''} dev ${route.dev}${route.onlink ? ' onlink' : ''}`;

export const ipBatch = (ns: string, lines: string[]) =>
  lines.length ? must(['ip', '-n', ns, '-batch', '-'], { stdin: lines.join('\n') + '\n' }) : Promise.resolve('');

/** A veth pair made directly between two lab namespaces: no end ever exists in the host namespace. */
export const vethAdd = (nsA: string, ifA: string, nsB: string, ifB: string) =>
  must(['ip', '-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);

/** Per-namespace sysctls: forwarding as planned; rp_filter off in routers/internet (routing there is symmetric by design). */
export function nsSysctls(ns: PlannedNamespace): string[] {
  const values = [`net.ipv4.ip_forward=${ns.forwarding ? 1 : 0}`];
  if (ns.role !== 'node') values.push('net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0');
  // only in a lab with IPv6: a host booted with ipv6.disable=1 has no net.ipv6 keys, and other labs must still build
  if (ns.forwardsIpv6) values.push('net.ipv6.conf.all.forwarding=1');
  return values;
}
export const sysctlIn = (ns: string, values: string[]) => must(inNetns(ns, ['sysctl', '-q', '-w', ...values]));

/** NAT for a router namespace, with iptables (nft backend) when present, else nft. */
export async function applyNat(ns: string, nat: NonNullable<PlannedNamespace['nat']>, firewall: 'iptables' | 'nft'): Promise<void> {
  if (firewall === 'iptables') {
    for (const argv of iptablesNat(nat)) await must(inNetns(ns, argv));
    return;
  }
  await must(inNetns(ns, ['nft', '-f', '-']), { stdin: nftNat(nat) });
}

/**
 * The router masquerades with fully random source ports (unless the site asks for a port-preserving router). Plain MASQUERADE keeps a node's source port when it is
 * free, so the first home node to dial out would take public port 51820, the port forwarded to another node: the
 * edge's packets to that forward then follow the conntrack mapping to the wrong node for as long as keepalives
 * refresh it. Real routers differ here; meshctl verify reports such a collision when it sees one.
 */
export function iptablesNat(nat: NonNullable<PlannedNamespace['nat']>): string[][] {
  const rules = nat.forwards.map((f: PlannedForward) => [
    'iptables',
    '-w',
    '-t',
    'nat',
    '-A',
    'PREROUTING',
    '-i',
    nat.inInterface,
    '-d',
    f.publicIp,
    '-p',
    'udp',
    '--dport',
    String(f.port),
    '-j',
    'DNAT',
    '--to-destination',
    `${f.toAddress}:${f.toPort}`,
  ]);
  rules.push([
    'iptables',
    '-w',
    '-t',
    'nat',
    '-A',
    'POSTROUTING',
    '-s',
    nat.masquerade.source,
    '-o',
    nat.masquerade.outInterface,
    '-j',
    'MASQUERADE',
    ...(nat.mapping === 'port-preserving' ? [] : ['--random-fully']),
  ]);
  return rules;
}

export function nftNat(nat: NonNullable<PlannedNamespace['nat']>): string {
  const forwards = nat.forwards.map(
    (f) => `    iifname "${nat.inInterface}" ip daddr ${f.publicIp} udp dport ${f.port} dnat to ${f.toAddress}:${f.toPort}`,
  );
  return [
    'table ip nat {',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat;',
    ...forwards,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat;',
    `    ip saddr ${nat.masquerade.source} oifname "${nat.masquerade.outInterface}" masquerade${nat.mapping === 'port-preserving' ? '' : ' fully-random'}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- host-wide limits (not network)

/** Each node's systemd takes inotify instances from the host's per-user limit (lab.md): raise it if low. */
export const readSysctlFile = (path: string) => run(['cat', path]);
export const writeSysctlFile = (path: string, value: string) => must(['sh', '-c', 'echo "$1" > "$2"', 'sh', value, path]);

// ---------------------------------------------------------------- base image

export const debootstrap = (dir: string, mirror: string, include: string[], logFile: string) =>
  mustLogged(['debootstrap', '--variant=minbase', `--include=${include.join(',')}`, 'bookworm', dir, mirror], logFile);

/** Runs a POSIX sh script inside a chroot (used only while building the base, where the target is ours). */
const chrootScript = (dir: string, script: string, logFile: string) => mustLogged(['chroot', dir, 'sh', '-ec', script], logFile, chrootEnv);
const chrootEnv = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' };

/**
 * Inside the fresh base (its own apt sources still in place), downloads `packages` plus exactly the dependencies
 * the base lacks. Returns the folder (relative to the base) holding the .debs.
 */
export async function downloadDebsInChroot(base: string, packages: string[], logFile: string): Promise<string> {
  const dir = 'var/cache/meshctl-debs';
  await chrootScript(
    base,
    `apt-get update -qq
     mkdir -p /${dir}/partial
     apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives=/${dir} ${packages.join(' ')}`,
    logFile,
  );
  return dir;
}

/** What every node shares, made once in the base. Per-node things (host keys, hostname, keys) come later. */
export function finalizeBaseInChroot(
  base: string,
  o: { aptDir: string; sudoUser: string; maskedUnits: string[] },
  logFile: string,
): Promise<void> {
  return chrootScript(
    base,
    `
    # nodes have no route out: their only apt source is the lab's repository
    apt-get clean
    rm -rf /var/cache/meshctl-debs /var/lib/apt/lists/*
    mkdir -p /var/lib/apt/lists/partial ${o.aptDir}
    rm -f /etc/apt/sources.list.d/*
    echo 'deb [trusted=yes] file:${o.aptDir} ./' > /etc/apt/sources.list
    # host keys are made per node before its first boot (never shared)
    rm -f /etc/ssh/ssh_host_*
    printf '%s\\n' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' 'UseDNS no' > /etc/ssh/sshd_config.d/10-meshctl-lab.conf
    # per-node identity
    : > /etc/machine-id
    rm -f /var/lib/dbus/machine-id /etc/hostname
    printf '# no DNS inside the lab\\n' > /etc/resolv.conf
    printf '127.0.0.1\\tlocalhost\\n::1\\t\\tlocalhost ip6-localhost ip6-loopback\\n' > /etc/hosts
    for unit in ${o.maskedUnits.join(' ')}; do ln -sf /dev/null /etc/systemd/system/$unit; done
    rm -f /etc/systemd/system/getty.target.wants/getty@tty1.service
    # the standard sudo user every node has
    useradd --create-home --shell /bin/bash --password '*' ${o.sudoUser}
    `,
    logFile,
  );
}

export const dpkgScanPackages = (repoDir: string) => must(['dpkg-scanpackages', '--multiversion', '.', '/dev/null'], { cwd: repoDir });

/** Runs argv with stdout/stderr appended to a log file; on failure the error carries the log's tail. */
async function mustLogged(argv: string[], logFile: string, env?: NodeJS.ProcessEnv): Promise<void> {
  const fd = openSync(logFile, 'a');
  const code = await new Promise<number>((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', fd, fd], env: env ?? process.env });
    child.on('error', () => resolve(127));
    child.on('close', (c) => resolve(c ?? 128));
  });
  closeSync(fd);
  if (code !== 0) {
    const tail = (await run(['tail', '-n', '5', logFile])).stdout.trim().split('\n').join(' | ');
    throw new CommandError(argv, { code, stdout: '', stderr: `${tail} (full log: ${logFile})` });
  }
}

// ---------------------------------------------------------------- mounts

export const mountOverlay = (lower: string, upper: string, work: string, target: string) =>
  must(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, target]);
export const umount = (target: string) => run(['umount', target]);
export const umountLazy = (target: string) => run(['umount', '-l', target]);

// ---------------------------------------------------------------- keys

export const sshKeygenUser = (file: string, comment: string) =>
  must(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
/** Host keys of every default type, generated into ROOT/etc/ssh (fresh per node, never shared). */
export const sshKeygenHostKeys = (root: string) => must(['ssh-keygen', '-A', '-f', root]);
export const sshKeygenFingerprint = (pubFile: string) => must(['ssh-keygen', '-l', '-f', pubFile]);
/** Reads the host key a node's sshd serves, from inside a lab namespace (proves sshd answers). */
export const sshKeyscan = (ns: string, host: string, port: number) =>
  run(inNetns(ns, ['ssh-keyscan', '-T', '2', '-t', 'ed25519', '-p', String(port), host]), { timeoutMs: 8000 });

/**
 * A booting node's state: `running`/`degraded` once systemd finished, plus `nologin` while /run/nologin
 * (pam_nologin) still refuses non-root logins.
 */
export async function nodeBootState(leaderPid: number): Promise<string> {
  const probe = 'systemctl is-system-running; if [ -e /run/nologin ]; then echo nologin; fi';
  return (await run(inContainer(leaderPid, ['sh', '-c', probe]), { timeoutMs: 10_000 })).stdout.trim().split('\n').join(' ');
}

/** Why a node did not come up: its failed units, then the warnings of this boot's journal. */
export async function nodeBootProblems(leaderPid: number): Promise<{ failedUnits: string[]; journal: string }> {
  const probe = 'systemctl --failed --no-legend --plain | cut -d" " -f1; echo @@journal; journalctl -b --no-pager -q -p warning -n 40';
  const out = (await run(inContainer(leaderPid, ['sh', '-c', probe]), { timeoutMs: 10_000 })).stdout;
  const [failed = '', journal = ''] = out.split('@@journal\n');
  return { failedUnits: failed.split('\n').filter(Boolean), journal: journal.trim() };
}

// ---------------------------------------------------------------- users inside a node's root (chroot, before boot)

export const addUser = (root: string, user: string) =>
  must(['chroot', root, 'useradd', '--create-home', '--shell', '/bin/bash', '--password', '*', user], { env: chrootEnv });

// ---------------------------------------------------------------- containers

export interface NspawnSpec {
  root: string;
  machine: string;
  hostname: string;
  netnsPath: string;
  binds: string[];
  bindsReadOnly: string[];
}

/** The argv of one node: systemd as PID 1, its own netns, CAP_NET_ADMIN and /dev/net/tun for wireguard-go. */
export function nspawnArgv(spec: NspawnSpec): string[] {
  return [
    'systemd-nspawn',
    '--quiet',
    '-D',
    spec.root,
    '-b',
    // the host has no systemd and no D-Bus: no machine registration, no scope unit (lab.md)
    '--register=no',
    '--keep-unit',
    `--machine=${spec.machine}`,
    `--hostname=${spec.hostname}`,
    `--network-namespace-path=${spec.netnsPath}`,
    '--capability=CAP_NET_ADMIN',
    '--console=passive',
    '--link-journal=no',
    '--resolv-conf=off',
    '--timezone=off',
    ...spec.binds.map((b) => `--bind=${b}`),
    ...spec.bindsReadOnly.map((b) => `--bind-ro=${b}`),
  ];
}

/** Starts a node detached from meshctl (its own session), logging to a file; returns the nspawn pid. */
export function spawnDetached(argv: string[], logFile: string, env: NodeJS.ProcessEnv): number {
  const fd = openSync(logFile, 'a');
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  child.unref();
  if (!child.pid) throw new Error(`could not start ${argv[0]}`);
  return child.pid;
}

/** argv that runs a command inside a running node, entering every namespace of its PID 1. */
export const inContainer = (leaderPid: number, argv: string[]) => [
  'nsenter',
  '-a',
  '-t',
  String(leaderPid),
  '--',
  'env',
  '-i',
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'HOME=/root',
  'LANG=C.UTF-8',
  `TERM=${process.env.TERM ?? 'dumb'}`,
  ...argv,
];

export type StdioMode = StdioOptions;
