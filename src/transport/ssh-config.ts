/**
 * A node's effective SSH settings, resolved the way the OpenSSH client would.
 *
 * We ask the client itself (`ssh -G`), which handles Include, Host/Match blocks, patterns, `%` tokens and the
 * system-wide /etc/ssh/ssh_config; a parser of our own would get some of that wrong. Only one question is answered
 * here without it: whether the config can tell hosts apart at all (configIsUniform); when it cannot, one `ssh -G`
 * answers for every node (issue 10). Without an `ssh` binary
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
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { shellQuote } from '../remote/shell.js';
import { homedir, tmpdir, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';

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
    const made = join(dir, 'config');
    writeFileSync(made, text, { mode: 0o600 });
    wrapperConfigs.set(text, made);
    file = made;
    // the file, then its directory (nothing else is in it): not rmSync's recursive walk, which loads node's rimraf
    // module on the way out of every run (issue 10: 2-5 ms of CPU after the report, before the process can end)
    process.once('exit', () => {
      try {
        unlinkSync(made);
        rmdirSync(dir);
      } catch {
        // already gone, or not ours to remove any more: a temporary file, nothing depends on it
      }
    });
  }
  return file;
}

/** How resolveSshConfig and resolveSshConfigs ask: the config file, the environment, the deadline, the default user. */
export interface SshGOptions {
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  /** deadline of one `ssh -G`, ms; default 5000 */
  timeoutMs?: number;
  /** user when neither the target nor the config names one: root for nodes, the local user for jump hosts */
  defaultUser?: string;
}

/** One `ssh -G` question: its arguments, what its answer depends on (the memo key), and how to parse the answer. */
interface Question {
  target: SshTargetInput;
  args: string[];
  key: string;
  env: NodeJS.ProcessEnv;
  home: string;
  configFile?: string;
  timeoutMs: number;
  defaultUser?: string;
}

/** A question being asked: settles the memo's promise for its key. */
interface Asking extends Question {
  resolve(settings: ResolvedSshConfig): void;
  reject(error: unknown): void;
}

/** The question for a target, or the settings outright when there is no `ssh` to ask. Throws SshConfigError. */
function question(target: SshTargetInput, options: SshGOptions): Question | { settled: ResolvedSshConfig } {
  const env = options.env ?? process.env;
  if (target.host.startsWith('-') || /\s/.test(target.host)) {
    throw new SshConfigError(`invalid ssh host ${JSON.stringify(target.host)}`);
  }
  const configFile = env.MESHCTL_SSH_CONFIG || options.configFile;
  const home = env.HOME || homedir();
  if (sshMissing) return { settled: withOverrides(defaultSettings(target, home), target, options.defaultUser) };
  const args = sshGArgs(
    target,
    wrapperConfigFile(configFile ? expandTilde(configFile, home) : undefined, home, options.defaultUser ?? DEFAULT_USER),
  );
  const timeoutMs = options.timeoutMs ?? 5000;
  // One `ssh -G` per distinct question per process (issue 10): up logs in to every node again for its
  // ssh-still-reachable check, and each spawn forks this process (tens of ms on a loaded machine, ~30 s of the
  // control process's time at 100 nodes). The answer depends only on the arguments, the config files (read once
  // per run) and which ssh the PATH finds; a failure is not kept, so it is asked again.
  const key = JSON.stringify([args, home, configFile ?? '', env.PATH ?? '', timeoutMs]);
  return { target, args, key, env, home, configFile, timeoutMs, defaultUser: options.defaultUser };
}

/**
 * Resolves a target through `ssh -G` (config: MESHCTL_SSH_CONFIG, else options.configFile, else ~/.ssh/config
 * plus /etc/ssh/ssh_config, as ssh itself reads them). Throws SshConfigError when ssh rejects the config; falls
 * back to defaults when there is no ssh binary.
 */
export async function resolveSshConfig(target: SshTargetInput, options: SshGOptions = {}): Promise<ResolvedSshConfig> {
  const [answer] = resolveSshConfigs([target], options);
  return answer!;
}

/**
 * resolveSshConfig for many targets at once, one promise per target (same order; each rejects like
 * resolveSshConfig). The questions not answered or asked yet in this process are asked by ONE child process (a
 * shell running their `ssh -G`s, SSH_G_AT_ONCE at a time) instead of one spawn each: a spawn blocks this process
 * until the child has exec'd, 30-120 ms each on a loaded 2-core machine, and `up` asks for every node before its
 * first connection can start (issue 10). Each answer is taken as soon as its `ssh -G` ends.
 */
export function resolveSshConfigs(targets: readonly SshTargetInput[], options: SshGOptions = {}): Promise<ResolvedSshConfig>[] {
  const fresh: Asking[] = [];
  const answers = targets.map((target) => {
    let q: ReturnType<typeof question>;
    try {
      q = question(target, options);
    } catch (error) {
      return Promise.reject(error);
    }
    if ('settled' in q) return Promise.resolve(q.settled);
    // The memo holds the question while it is being asked, not only its answer: a second asker meanwhile (a node
    // whose settings equal another's, a jump host shared by several nodes) waits for the same answer.
    let answer = sshGAnswers.get(q.key);
    if (!answer) {
      let settle!: Pick<Asking, 'resolve' | 'reject'>;
      const asked = new Promise<ResolvedSshConfig>((resolve, reject) => (settle = { resolve, reject }));
      const key = q.key;
      sshGAnswers.set(key, asked);
      asked.catch(() => sshGAnswers.get(key) === asked && sshGAnswers.delete(key));
      fresh.push({ ...q, ...settle });
      answer = asked;
    }
    return answer.then((settings) => structuredClone(settings)); // callers may change theirs
  });
  if (fresh.length === 1) askAlone(fresh[0]!);
  else if (fresh.length > 1) askUniformOrTogether(fresh);
  return answers;
}

/** Keywords after which a config may treat hosts differently (besides `Host` with any pattern but `*`). */
const HOST_DEPENDENT = new Set(['match', 'hostname', 'canonicalizehostname', 'canonicaldomains', 'canonicalizepermittedcnames']);
/** OpenSSH's limit on nested Include (readconf.c READCONF_MAX_DEPTH). */
const INCLUDE_MAX_DEPTH = 16;

/**
 * Whether the ssh config `ssh -F file -G` reads (the file and every file it Includes) gives every target the same
 * settings apart from the four lines that name the target (`host`, `hostname`, `port`, `user`), so one `ssh -G`
 * answers for all (issue 10). True only when no line could tell hosts apart: no `Match`, no `Host` with any pattern
 * but `*`, no `HostName`, no hostname canonicalization, no `%` token anywhere, and every Include found (a glob only
 * in its last path component; a relative path under ~/.ssh, as ssh reads an Include of a `-F` file: ssh_config(5)).
 * Anything else, or a file that exists but cannot be read, is false: `ssh -G` is then asked per target, as before.
 */
export function configIsUniform(file: string, home: string, depth = 0): boolean {
  if (depth > INCLUDE_MAX_DEPTH) return false;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    // a missing file is read as empty by ssh (an Include that matches nothing); any other failure: ask ssh
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.includes('%')) return false;
    const m = /^([A-Za-z]+)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    if (!m) return false;
    const keyword = m[1]!.toLowerCase();
    const args = m[2]!.split(/\s+/).filter(Boolean);
    if (HOST_DEPENDENT.has(keyword)) return false;
    if (keyword === 'host' && !args.every((a) => a === '*' || a === '"*"')) return false;
    if (keyword === 'include' && !args.every((a) => includeIsUniform(a, home, depth))) return false;
  }
  return true;
}

/** One Include argument's files, each uniform (see configIsUniform); a glob only in the last path component. */
function includeIsUniform(arg: string, home: string, depth: number): boolean {
  const unquoted = arg.replace(/^"(.*)"$/, '$1');
  const path = isAbsolute(unquoted) ? unquoted : unquoted.startsWith('~') ? expandTilde(unquoted, home) : join(home, '.ssh', unquoted);
  if (path.startsWith('~') || /[*?[]/.test(dirname(path))) return false;
  const name = basename(path);
  if (!/[*?[]/.test(name)) return configIsUniform(path, home, depth + 1);
  if (name.includes('[')) return false;
  let entries: string[];
  try {
    entries = readdirSync(dirname(path));
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
  // `*` and `?` as glob(3) reads them; it skips dot files unless the pattern starts with a dot
  const glob = new RegExp(
    `^${name
      .replace(/[.+^${}()|\\\]]/g, '\\$&')
      .replaceAll('*', '.*')
      .replaceAll('?', '.')}$`,
  );
  return entries
    .filter((e) => glob.test(e) && (name.startsWith('.') || !e.startsWith('.')))
    .every((e) => configIsUniform(join(dirname(path), e), home, depth + 1));
}

/**
 * Questions asked together. Issue 10: when the config cannot tell them apart (configIsUniform), ONE `ssh -G` (for the
 * first host, without the inventory's port and user) answers every one of them: each answer is that one's settings
 * with the question's host as its hostname (ssh lower-cases it) and the inventory's explicit port and user on top, as
 * `ssh -G -p PORT -l USER HOST` prints them. An `ssh -G` per node cost ~7 ms of CPU each (16-node lab, perf), a
 * child of the control process. Otherwise, or when that one answer is not plainly good, askTogether as before.
 */
function askUniformOrTogether(questions: Asking[]): void {
  const [q0] = questions as [Asking, ...Asking[]];
  const wrapper = q0.args[q0.args.indexOf('-F') + 1];
  const same = (q: Asking) =>
    q.env === q0.env &&
    q.home === q0.home &&
    q.configFile === q0.configFile &&
    q.timeoutMs === q0.timeoutMs &&
    q.defaultUser === q0.defaultUser;
  if (!q0.args.includes('-F') || !wrapper || !questions.every(same) || !configIsUniform(wrapper, q0.home)) {
    askTogether(questions);
    return;
  }
  const representative: SshTargetInput = { host: q0.target.host, explicit: { port: false, user: false } };
  askSshG(representative, sshGArgs(representative, wrapper), q0.env, q0.home, q0.configFile, q0.timeoutMs, q0.defaultUser).then(
    (settings) => {
      if (settings.source !== 'ssh -G' || settings.hostname !== q0.target.host.toLowerCase()) {
        askTogether(questions);
        return;
      }
      for (const q of questions) {
        const o = explicitOverrides(q.target);
        q.resolve({
          ...settings,
          alias: q.target.host,
          hostname: q.target.host.toLowerCase(),
          port: o.port ?? settings.port,
          user: o.user ?? settings.user,
        });
      }
    },
    () => askTogether(questions),
  );
}

/** `ssh -G` answers by question, for this process, asked or being asked (see resolveSshConfigs). */
const sshGAnswers = new Map<string, Promise<ResolvedSshConfig>>();

/** `ssh -G`s one batch runs at once (a hundred at once once made some print nothing; see askSshG). */
const SSH_G_AT_ONCE = 16;

/** The error for an `ssh -G` that failed: its last line on stderr, else what went wrong. */
const sshGError = (q: Question, stderr: string, fallback: string) =>
  new SshConfigError(
    `ssh config for ${q.target.host}${q.configFile ? ` (${q.configFile})` : ''}: ${stderr.trim().split('\n').filter(Boolean).pop() ?? fallback}`,
  );

function askAlone(q: Asking): void {
  askSshG(q.target, q.args, q.env, q.home, q.configFile, q.timeoutMs, q.defaultUser).then(q.resolve, q.reject);
}

/**
 * Asks several questions through one `sh`: each `ssh -G` writes into files of a private temporary directory and the
 * shell prints `INDEX EXIT` when it ends. An answer that is not plainly good (no `port` line, ssh not found) is
 * asked again alone, through askSshG's retries and fallbacks; a config error is that question's error.
 */
function askTogether(questions: Asking[]): void {
  const { env, home, timeoutMs } = questions[0]!;
  const pending = new Map(questions.map((q, i) => [String(i), q]));
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), 'meshctl-ssh-g-'));
  } catch {
    for (const q of questions) askAlone(q);
    return;
  }
  const lines = questions.map(
    (q, i) =>
      `(ssh ${q.args.map(shellQuote).join(' ')} >${i}.out 2>${i}.err; echo "${i} $?") &${i % SSH_G_AT_ONCE === SSH_G_AT_ONCE - 1 ? '\nwait' : ''}`,
  );
  const script = `cd ${shellQuote(dir)} || exit 1\n${lines.join('\n')}\nwait\n`;
  const read = (file: string) => {
    try {
      return readFileSync(join(dir, file), 'utf8');
    } catch {
      return '';
    }
  };
  const answer = (line: string) => {
    const m = /^(\d+) (\d+)$/.exec(line);
    const q = m ? pending.get(m[1]!) : undefined;
    if (!m || !q) return;
    pending.delete(m[1]!);
    const stdout = read(`${m[1]}.out`);
    if (m[2] === '0' && hasPortLine(stdout)) q.resolve(settingsFromSshG(q.target.host, stdout, q.home));
    else if (m[2] === '0' || m[2] === '127')
      askAlone(q); // printed nothing, or no ssh: askSshG retries or falls back
    else q.reject(sshGError(q, read(`${m[1]}.err`), `ssh -G exited ${m[2]}`));
  };
  const child = spawn('sh', ['-c', script], { env: { ...env, HOME: home }, stdio: ['ignore', 'pipe', 'ignore'], detached: true });
  const waves = Math.ceil(questions.length / SSH_G_AT_ONCE);
  let timedOut = false;
  // every `ssh -G` gets its deadline; a hung one (a `Match exec` command) ends the whole group
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
  }, timeoutMs * waves);
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
      answer(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  const done = () => {
    clearTimeout(timer);
    for (const q of pending.values()) {
      if (timedOut) q.reject(sshGError(q, '', `\`ssh -G\` did not answer within ${(timeoutMs / 1000).toFixed(0)} s`));
      else askAlone(q);
    }
    pending.clear();
    rmSync(dir, { recursive: true, force: true });
  };
  child.once('error', () => undefined); // no `sh`: 'close' follows, and every question is asked alone
  child.once('close', done);
}

/** One `ssh -G` by its own spawn (execFile), asked again when it prints nothing (see SSH_G_TRIES). */
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
  // The deadline is our own timer, not execFile's `timeout` option: with that option node v20.20.2 returned empty
  // stdout and no error for 0-76 of 100 concurrent children on the loaded farm (0 of 100 without it; docs/farm.md).
  const runSshG = () =>
    new Promise<{ stdout: string; stderr: string; error?: { code?: unknown; message: string } }>((resolve) => {
      const child = execFile('ssh', args, { env: { ...env, HOME: home }, maxBuffer: 4 << 20 }, (error, stdout, stderr) => {
        clearTimeout(timer);
        resolve({ stdout, stderr, error: error ?? undefined });
      });
      const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs ?? 5000);
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

/** resolveNodeSshConfig for several nodes, their questions asked together (see resolveSshConfigs); same order. */
export function resolveNodeSshConfigs(
  sshBlocks: readonly { host: string; port?: number; user?: string }[],
  options: { sshConfigFile?: string; env?: NodeJS.ProcessEnv },
): Promise<ResolvedSshConfig>[] {
  return resolveSshConfigs(sshBlocks.map(nodeSshTarget), { configFile: options.sshConfigFile, env: options.env ?? process.env });
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
