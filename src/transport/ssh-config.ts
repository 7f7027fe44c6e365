/**
 * A node's effective SSH settings, resolved the way the OpenSSH client would.
 *
 * We ask the client itself (`ssh -G`), which handles Include, Host/Match blocks, patterns, `%` tokens and the
 * system-wide /etc/ssh/ssh_config; a parser of our own would get some of that wrong. Without an `ssh` binary
 * meshctl falls back to its defaults (no ~/.ssh/config support) and says so in `source`.
 *
 * Precedence (documented in the README):
 *   inventory ssh.user / ssh.port, when given explicitly  >  ~/.ssh/config (or MESHCTL_SSH_CONFIG)  >  defaults.
 * The inventory loader fills in root / 22 when the inventory is silent. Unless the loader marks which values
 * were explicit (`ssh.explicit`, optional), a value equal to the default (user root, port 22) counts as not
 * given, so that an alias's `User`/`Port` in ~/.ssh/config apply. Writing `port: 22` in the inventory
 * therefore does not override a config `Port` line unless the loader passes `explicit`.
 * ssh.host may be an alias: its HostName is what we connect to and look up in known_hosts (or HostKeyAlias).
 * StrictHostKeyChecking in the ssh config is ignored: meshctl's own policy applies (refuse unknown keys unless
 * --accept-new; always refuse changed ones).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface SshTargetInput {
  host: string;
  port?: number;
  user?: string;
  /** which of port/user the inventory set explicitly; when absent, values equal to the defaults count as unset */
  explicit?: { port?: boolean; user?: boolean };
}

export interface JumpSpec {
  user?: string;
  host: string;
  port?: number;
}

export interface ResolvedSshConfig {
  /** the name as written in the inventory (maybe an alias) */
  alias: string;
  /** what we connect to */
  hostname: string;
  port: number;
  user: string;
  /** IdentityFile lines in order, `~` expanded (OpenSSH's defaults when the config names none) */
  identityFiles: string[];
  /** ProxyJump hops, outermost first; empty when none */
  proxyJump: JumpSpec[];
  /** ProxyCommand, if set: meshctl does not support it and refuses rather than bypass it */
  proxyCommand?: string;
  userKnownHostsFiles: string[];
  globalKnownHostsFiles: string[];
  /** name under which the host key is looked up (HostKeyAlias or hostname) */
  hostKeyAlias?: string;
  hashKnownHosts: boolean;
  identitiesOnly: boolean;
  connectTimeoutMs?: number;
  serverAliveIntervalMs?: number;
  serverAliveCountMax?: number;
  source: 'ssh -G' | 'defaults';
}

export const DEFAULT_USER = 'root';
export const DEFAULT_PORT = 22;

/** `ssh -G` prints `key value...` lines, keys lower-case; repeated keys (identityfile, sendenv) accumulate. */
export function parseSshG(output: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const raw of output.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const space = line.search(/\s/);
    const key = (space === -1 ? line : line.slice(0, space)).toLowerCase();
    const value = space === -1 ? '' : line.slice(space + 1).trim();
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  }
  return map;
}

/** ProxyJump value: `none` or comma-separated `[user@]host[:port]` / `ssh://[user@]host[:port]`. */
export function parseProxyJump(value: string | undefined): JumpSpec[] {
  if (!value || value.toLowerCase() === 'none') return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((hop) => {
      let rest = hop.replace(/^ssh:\/\//, '');
      let user: string | undefined;
      const at = rest.lastIndexOf('@');
      if (at !== -1) {
        user = rest.slice(0, at);
        rest = rest.slice(at + 1);
      }
      let host = rest;
      let port: number | undefined;
      const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
      if (bracket) {
        host = bracket[1];
        port = bracket[2] ? Number(bracket[2]) : undefined;
      } else {
        const m = /^([^:]+):(\d+)$/.exec(rest);
        if (m) {
          host = m[1];
          port = Number(m[2]);
        }
      }
      return { user, host, port };
    });
}

export function expandTilde(path: string, home = homedir()): string {
  if (path === '~') return home;
  if (path.startsWith('~/')) return join(home, path.slice(2));
  return path;
}

const secondsToMs = (value: string | undefined): number | undefined => {
  if (!value || value === 'none') return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n * 1000 : undefined;
};

const first = (map: Map<string, string[]>, key: string): string | undefined => map.get(key)?.[0];

/** Turns `ssh -G` output into settings (pure). */
export function settingsFromSshG(alias: string, output: string, home = homedir()): ResolvedSshConfig {
  const g = parseSshG(output);
  const files = (key: string) =>
    (g.get(key) ?? [])
      .flatMap((v) => v.split(/\s+/)) // ssh -G prints paths unquoted: a path with spaces cannot be told apart
      .filter((v) => v && v !== 'none')
      .map((v) => expandTilde(v, home));
  const port = Number(first(g, 'port') ?? DEFAULT_PORT);
  const proxyCommand = first(g, 'proxycommand');
  return {
    alias,
    hostname: first(g, 'hostname') ?? alias,
    port: Number.isInteger(port) && port > 0 ? port : DEFAULT_PORT,
    user: first(g, 'user') ?? DEFAULT_USER,
    identityFiles: (g.get('identityfile') ?? []).map((v) => expandTilde(v, home)),
    proxyJump: parseProxyJump(first(g, 'proxyjump')),
    proxyCommand: proxyCommand && proxyCommand !== 'none' ? proxyCommand : undefined,
    userKnownHostsFiles: files('userknownhostsfile'),
    globalKnownHostsFiles: files('globalknownhostsfile'),
    hostKeyAlias: first(g, 'hostkeyalias'),
    hashKnownHosts: first(g, 'hashknownhosts') === 'yes',
    identitiesOnly: first(g, 'identitiesonly') === 'yes',
    connectTimeoutMs: secondsToMs(first(g, 'connecttimeout')),
    serverAliveIntervalMs: secondsToMs(first(g, 'serveraliveinterval')),
    serverAliveCountMax: first(g, 'serveralivecountmax') ? Number(first(g, 'serveralivecountmax')) : undefined,
    source: 'ssh -G',
  };
}

/** Which of the inventory's port/user go on the `ssh -G` command line (where they beat the config). */
export function explicitOverrides(target: SshTargetInput): { port?: number; user?: string } {
  const out: { port?: number; user?: string } = {};
  const portGiven = target.explicit ? target.explicit.port : target.port !== undefined && target.port !== DEFAULT_PORT;
  const userGiven = target.explicit ? target.explicit.user : target.user !== undefined && target.user !== DEFAULT_USER;
  if (portGiven && target.port !== undefined) out.port = target.port;
  if (userGiven && target.user !== undefined) out.user = target.user;
  return out;
}

/** The arguments of `ssh -G` for a target (pure). */
export function sshGArgs(target: SshTargetInput, configFile?: string): string[] {
  const args = ['-G'];
  if (configFile) args.push('-F', configFile);
  const o = explicitOverrides(target);
  if (o.port !== undefined) args.push('-p', String(o.port));
  if (o.user !== undefined) args.push('-l', o.user);
  // `--` is not accepted before the destination by every ssh; refuse option-looking hosts instead
  args.push(target.host);
  return args;
}

/** Settings meshctl uses when there is no OpenSSH client to ask. */
export function defaultSettings(target: SshTargetInput, home = homedir()): ResolvedSshConfig {
  return {
    alias: target.host,
    hostname: target.host,
    port: target.port ?? DEFAULT_PORT,
    user: target.user ?? DEFAULT_USER,
    identityFiles: ['id_rsa', 'id_ecdsa', 'id_ed25519'].map((f) => join(home, '.ssh', f)),
    proxyJump: [],
    userKnownHostsFiles: [join(home, '.ssh', 'known_hosts')],
    globalKnownHostsFiles: ['/etc/ssh/ssh_known_hosts'],
    hashKnownHosts: false,
    identitiesOnly: false,
    source: 'defaults',
  };
}

export class SshConfigError extends Error {
  override name = 'SshConfigError';
}

let sshMissing = false;
/** How often an `ssh -G` that printed nothing is asked again (see resolveSshConfig). */
const SSH_G_TRIES = 3;
const hasPortLine = (output: string) => /^port \d+$/m.test(output);
const wrapperConfigs = new Map<string, string>();

/**
 * `ssh -G` fills in the LOCAL user name when nothing sets User, while meshctl's default is root. To tell the
 * two apart, ssh reads a small generated config: it Includes the user's config (and the system-wide one, which
 * `-F` would otherwise skip) and ends with `Host *` + `User root`. OpenSSH keeps the first value it obtains for
 * each option, so anything the user's config sets wins and our default only fills the gap.
 */
export function wrapperConfigText(userConfig: string | undefined, home: string, defaultUser = DEFAULT_USER): string {
  const quote = (p: string) => `"${p.replaceAll('"', '')}"`;
  const lines = ['# generated by meshctl for `ssh -G`: your config first (first value wins), then meshctl defaults'];
  if (userConfig) lines.push(`Include ${quote(userConfig)}`);
  else lines.push(`Include ${quote(join(home, '.ssh', 'config'))}`, 'Include "/etc/ssh/ssh_config"');
  lines.push('Host *', `  User ${defaultUser}`, '');
  return lines.join('\n');
}

function wrapperConfigFile(userConfig: string | undefined, home: string, defaultUser: string): string {
  const text = wrapperConfigText(userConfig, home, defaultUser);
  let file = wrapperConfigs.get(text);
  if (!file) {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-ssh-'));
    file = join(dir, 'config');
    writeFileSync(file, text, { mode: 0o600 });
    wrapperConfigs.set(text, file);
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return file;
}

/**
 * Resolves a target through `ssh -G` (config: MESHCTL_SSH_CONFIG, else options.configFile, else ~/.ssh/config
 * plus /etc/ssh/ssh_config, as ssh itself reads them). Throws SshConfigError when ssh rejects the config; falls
 * back to defaults when there is no ssh binary.
 */
export async function resolveSshConfig(
  target: SshTargetInput,
  options: {
    configFile?: string;
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    /** user when neither the target nor the config names one: root for nodes, the local user for jump hosts */
    defaultUser?: string;
  } = {},
): Promise<ResolvedSshConfig> {
  const env = options.env ?? process.env;
  if (target.host.startsWith('-') || /\s/.test(target.host)) {
    throw new SshConfigError(`invalid ssh host ${JSON.stringify(target.host)}`);
  }
  const configFile = env.MESHCTL_SSH_CONFIG || options.configFile;
  const home = env.HOME || homedir();
  if (sshMissing) return withOverrides(defaultSettings(target, home), target, options.defaultUser);
  const args = sshGArgs(
    target,
    wrapperConfigFile(configFile ? expandTilde(configFile, home) : undefined, home, options.defaultUser ?? DEFAULT_USER),
  );
  // One `ssh -G` per distinct question per process (issue 10): up logs in to every node again for its
  // ssh-still-reachable check, and each spawn forks this process (tens of ms on a loaded machine, ~30 s of the
  // control process's time at 100 nodes). The answer depends only on the arguments, the config files (read once
  // per run) and which ssh the PATH finds; a failure is not kept, so it is asked again.
  // The memo holds the question while it is being asked, not only its answer: up starts every node's `ssh -G` at
  // once (connect-options.ts), and a second asker meanwhile (a node whose settings equal another's, jump hosts
  // shared by several nodes) waits for the same answer instead of spawning again.
  const memoKey = JSON.stringify([args, home, configFile ?? '', env.PATH ?? '', options.timeoutMs ?? 5000]);
  let answer = sshGAnswers.get(memoKey);
  if (!answer) {
    answer = askSshG(target, args, env, home, configFile, options.timeoutMs, options.defaultUser);
    sshGAnswers.set(memoKey, answer);
    answer.catch(() => sshGAnswers.get(memoKey) === answer && sshGAnswers.delete(memoKey));
  }
  return structuredClone(await answer); // callers may change theirs
}

/** `ssh -G` answers by question, for this process, asked or being asked (see resolveSshConfig). */
const sshGAnswers = new Map<string, Promise<ResolvedSshConfig>>();

async function askSshG(
  target: SshTargetInput,
  args: string[],
  env: NodeJS.ProcessEnv,
  home: string,
  configFile: string | undefined,
  timeoutMs: number | undefined,
  defaultUser: string | undefined,
): Promise<ResolvedSshConfig> {
  const options = { timeoutMs, defaultUser };
  const runSshG = () =>
    new Promise<{ stdout: string; stderr: string; error?: { code?: unknown; message: string } }>((resolve) => {
      execFile(
        'ssh',
        args,
        { timeout: options.timeoutMs ?? 5000, env: { ...env, HOME: home }, maxBuffer: 4 << 20 },
        (error, stdout, stderr) => resolve({ stdout, stderr, error: error ?? undefined }),
      );
    });
  // With ~100 `ssh -G` at once (a mesh of 100 nodes connecting), about a third exited 0 with no output at all, and
  // the node's settings fell back to defaults: port 22 instead of the inventory's. Real output always has a
  // `port` line; an answer without one is asked again, and after SSH_G_TRIES it is an error, never a guess.
  let result = await runSshG();
  for (let tries = 1; !result.error && !hasPortLine(result.stdout) && tries < SSH_G_TRIES; tries++) result = await runSshG();
  if (!result.error && !hasPortLine(result.stdout))
    throw new SshConfigError(`ssh config for ${target.host}: \`ssh -G\` printed no settings ${SSH_G_TRIES} times (exit 0, empty output)`);
  if (result.error) {
    if (result.error.code === 'ENOENT') {
      sshMissing = true;
      return withOverrides(defaultSettings(target, home), target, options.defaultUser);
    }
    const why = result.stderr.trim().split('\n').filter(Boolean).pop() ?? result.error.message;
    throw new SshConfigError(`ssh config for ${target.host}${configFile ? ` (${configFile})` : ''}: ${why}`);
  }
  return settingsFromSshG(target.host, result.stdout, home);
}

/** An inventory node's `ssh` block as `ssh -G` takes it (host, port, user; which of them the loader marked explicit). */
export function nodeSshTarget(ssh: { host: string; port?: number; user?: string }): SshTargetInput {
  const explicit = (ssh as { explicit?: { port?: boolean; user?: boolean } }).explicit;
  return { host: ssh.host, port: ssh.port, user: ssh.user, explicit };
}

/**
 * A node's settings exactly as connectNode resolves them (its `ssh` block; ConnectOptions' sshConfigFile and env,
 * default process.env). Starting it before connecting lets `ssh -G` run while the transport still loads
 * (ConnectOptions.presolved). Rejects with SshConfigError like resolveSshConfig.
 */
export function resolveNodeSshConfig(
  ssh: { host: string; port?: number; user?: string },
  options: { sshConfigFile?: string; env?: NodeJS.ProcessEnv },
): Promise<ResolvedSshConfig> {
  return resolveSshConfig(nodeSshTarget(ssh), { configFile: options.sshConfigFile, env: options.env ?? process.env });
}

function withOverrides(settings: ResolvedSshConfig, target: SshTargetInput, defaultUser?: string): ResolvedSshConfig {
  return { ...settings, port: target.port ?? settings.port, user: target.user ?? defaultUser ?? settings.user };
}

/** The local user name, OpenSSH's default for hops whose user nothing names. */
export const localUser = (): string => {
  try {
    return userInfo().username;
  } catch {
    return DEFAULT_USER;
  }
};
