/**
 * OpenSSH known_hosts: parse, match a host key, record a new one.
 *
 * Format (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"), one entry a line:
 *   [@revoked|@cert-authority] hostpatterns keytype base64-key [comment]
 * hostpatterns is either a comma-separated pattern list (`*`, `?`, `!negation`, `[host]:port`) or one hashed
 * name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`. The name looked up is `host` for port 22 and
 * `[host]:port` otherwise, lower-cased, exactly as OpenSSH writes it.
 *
 * Decisions (meshctl is stricter and simpler than OpenSSH where that is safe):
 * - `@revoked` entries whose patterns match the host and whose key equals the offered key: 'revoked' (refused).
 *   Use the pattern `*` to revoke a key for every host.
 * - `@cert-authority` entries are ignored: meshctl (ssh2) does not verify host certificates, so a host known
 *   only through a CA is 'unknown'.
 * - 'changed' when the host is known (plain entries, any key type) and none of its keys matches the offered one.
 *   A host known only under ANOTHER key type (e.g. ED25519 known, RSA offered) is 'changed' too, never 'unknown':
 *   OpenSSH refuses it the same way ("host key for ... has changed" / "known with a different key type"), and
 *   trusting it on first use would let a man in the middle who offers only another type through --accept-new.
 *   The transport asks ssh2 to prefer the known types first, so an honest node that has several keys matches.
 *   `knownTypes` lists the types the host is known with, for the message.
 * - Lines that cannot be parsed are skipped and reported in `problems` (OpenSSH skips them silently); the
 *   transport shows them as warnings (ConnectOptions.onWarning), once per file per run.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';

export type HostKeyStatus = 'match' | 'unknown' | 'changed' | 'revoked';

export type HostField = { kind: 'hashed'; salt: Buffer; hash: Buffer } | { kind: 'patterns'; patterns: string[] };

export interface KnownHostEntry {
  marker?: 'revoked' | 'cert-authority';
  hosts: HostField;
  /** the key type written on the line (e.g. ssh-ed25519) */
  keyType: string;
  /** the raw public key blob (base64-decoded key field) */
  key: Buffer;
  /** where it came from, for messages */
  file: string;
  line: number;
}

/** A known_hosts line that could not be parsed (skipped), or a file that could not be read (line undefined). */
export interface KnownHostsProblem {
  file: string;
  line?: number;
  reason: string;
}

export interface ParsedKnownHosts {
  entries: KnownHostEntry[];
  /** unparseable lines and unreadable files */
  problems: KnownHostsProblem[];
}

/** `file:line: reason`, as compilers write it. */
export const formatKnownHostsProblem = (p: KnownHostsProblem): string =>
  `${p.file}${p.line !== undefined ? `:${p.line}` : ''}: ${p.reason}`;

export interface HostKeyVerdict {
  status: HostKeyStatus;
  /** the offered key's type, read from the key blob (e.g. ssh-ed25519) */
  keyType: string;
  /** `SHA256:<base64 without padding>`, as `ssh-keygen -lf` prints it */
  fingerprint: string;
  /** for 'match', 'changed' and 'revoked': the entry that decided it (for 'changed': one of the host's keys, of the offered type when there is one) */
  entry?: KnownHostEntry;
  /** for 'changed': the key types the host is known with (e.g. ['ssh-ed25519']) */
  knownTypes?: string[];
}

const MARKERS = new Set(['@revoked', '@cert-authority']);

export function parseKnownHosts(text: string, file = 'known_hosts'): ParsedKnownHosts {
  const entries: KnownHostEntry[] = [];
  const problems: KnownHostsProblem[] = [];
  const problem = (line: number, reason: string) => problems.push({ file, line, reason });
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/[ \t]+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0].startsWith('@')) {
      if (!MARKERS.has(fields[0])) {
        problem(lineNo, `unknown marker ${fields[0]}`);
        return;
      }
      marker = fields[0] === '@revoked' ? 'revoked' : 'cert-authority';
      fields.shift();
    }
    if (fields.length < 3) {
      problem(lineNo, `expected host patterns, key type and key`);
      return;
    }
    const [hostText, keyType, keyText] = fields;
    const hosts = parseHostField(hostText);
    if (!hosts) {
      problem(lineNo, `malformed hashed host name`);
      return;
    }
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyText)) {
      problem(lineNo, `key is not base64`);
      return;
    }
    const key = Buffer.from(keyText, 'base64');
    if (keyBlobType(key) === undefined) {
      problem(lineNo, `key blob is malformed`);
      return;
    }
    entries.push({ marker, hosts, keyType, key, file, line: lineNo });
  });
  return { entries, problems };
}

function parseHostField(text: string): HostField | undefined {
  if (text.startsWith('|')) {
    const parts = text.split('|'); // ['', '1', salt, hash]
    if (parts.length !== 4 || parts[1] !== '1') return undefined;
    const salt = Buffer.from(parts[2], 'base64');
    const hash = Buffer.from(parts[3], 'base64');
    if (salt.length === 0 || hash.length !== 20) return undefined;
    return { kind: 'hashed', salt, hash };
  }
  return { kind: 'patterns', patterns: text.split(',').filter((p) => p !== '') };
}

/** The name OpenSSH looks up and writes: `host` for port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

/** OpenSSH wildcard matching: `*` any run of characters, `?` exactly one. */
export function wildcardMatch(text: string, pattern: string): boolean {
  // iterative glob with backtracking on the last '*'
  let t = 0;
  let p = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === text[t])) {
      t++;
      p++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = t;
    } else if (star !== -1) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/** OpenSSH match_hostname: a positive pattern must match and no negated one may. */
export function matchPatternList(name: string, patterns: string[]): boolean {
  const lower = name.toLowerCase();
  let matched = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).toLowerCase();
    if (wildcardMatch(lower, pattern)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** HMAC-SHA1 of the name with the entry's salt, as `ssh-keygen -H` writes it. */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}

export function entryMatchesHost(entry: KnownHostEntry, host: string, port: number): boolean {
  hostNameTests.count++;
  const name = knownHostName(host, port);
  if (entry.hosts.kind === 'hashed') {
    const digest = createHmac('sha1', entry.hosts.salt).update(name).digest();
    return timingSafeEqual(digest, entry.hosts.hash);
  }
  return matchPatternList(name, entry.hosts.patterns);
}

/** The type string at the start of an SSH public key blob (uint32 length + ASCII), or undefined. */
export function keyBlobType(key: Buffer): string | undefined {
  if (key.length < 4) return undefined;
  const len = key.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > key.length) return undefined;
  const type = key.subarray(4, 4 + len).toString('latin1');
  return /^[\x21-\x7e]+$/.test(type) ? type : undefined;
}

export function fingerprintSha256(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/**
 * How many times an entry's host field was tested against a host name (entryMatchesHost: one HMAC-SHA1 for a hashed
 * line), for tests: hostEntries answers the rest.
 */
export const hostNameTests = { count: 0 };

/** An entries list's lookup index: see hostEntries. */
interface HostIndex {
  /** positions of the lines whose patterns are all plain names (no `*`, `?` or `!`), by each name in lower case */
  byName: Map<string, number[]>;
  /** positions of every other line (hashed, wildcards, negations): tested one by one */
  rest: number[];
  /** answers so far, by knownHostName */
  found: Map<string, KnownHostEntry[]>;
}

const hostIndexes = new WeakMap<readonly KnownHostEntry[], HostIndex>();

const plainName = (pattern: string) => !/[*?!]/.test(pattern);

/**
 * The lines of `entries` whose host field matches host:port (entryMatchesHost), in file order, markers included.
 * Issue 10: each login looked its host up twice (the key types to offer, then the key offered), testing every line
 * each time: N logins x N lines x 2, an HMAC-SHA1 each on a hashed file (HashKnownHosts yes, Debian's ssh_config).
 * Now a line of plain names is found by name (a Map), a hashed or wildcard line is tested once per host, and the
 * answer is kept with the list (loadKnownHosts hands every login the same list while the files are unchanged).
 * The same answer as testing every line: a plain name matches exactly its own lower-case text (matchPatternList).
 * The array is the one kept for later lookups of the same name: callers must not change it.
 */
export function hostEntries(entries: readonly KnownHostEntry[], host: string, port: number): KnownHostEntry[] {
  let index = hostIndexes.get(entries);
  if (!index) {
    index = { byName: new Map(), rest: [], found: new Map() };
    for (const [i, e] of entries.entries()) {
      if (e.hosts.kind === 'patterns' && e.hosts.patterns.every(plainName)) {
        for (const name of new Set(e.hosts.patterns.map((p) => p.toLowerCase())))
          index.byName.set(name, [...(index.byName.get(name) ?? []), i]);
      } else index.rest.push(i);
    }
    hostIndexes.set(entries, index);
  }
  const name = knownHostName(host, port);
  let found = index.found.get(name);
  if (!found) {
    const at = [...(index.byName.get(name) ?? []), ...index.rest.filter((i) => entryMatchesHost(entries[i]!, host, port))];
    found = at.sort((a, b) => a - b).map((i) => entries[i]!);
    index.found.set(name, found);
  }
  return found;
}

/** Key types this host is known with (plain entries only), so the client can prefer them. */
export function knownKeyTypes(entries: readonly KnownHostEntry[], host: string, port: number): string[] {
  const types: string[] = [];
  for (const e of hostEntries(entries, host, port)) {
    if (e.marker) continue;
    const type = keyBlobType(e.key) ?? e.keyType;
    if (!types.includes(type)) types.push(type);
  }
  return types;
}

export function verifyHostKey(entries: readonly KnownHostEntry[], host: string, port: number, rawKey: Buffer): HostKeyVerdict {
  const keyType = keyBlobType(rawKey) ?? 'unknown';
  const fingerprint = fingerprintSha256(rawKey);
  const relevant = hostEntries(entries, host, port).filter((e) => e.marker !== 'cert-authority');
  const revoked = relevant.find((e) => e.marker === 'revoked' && e.key.equals(rawKey));
  if (revoked) return { status: 'revoked', keyType, fingerprint, entry: revoked };
  const plain = relevant.filter((e) => !e.marker);
  const same = plain.find((e) => e.key.equals(rawKey));
  if (same) return { status: 'match', keyType, fingerprint, entry: same };
  if (plain.length === 0) return { status: 'unknown', keyType, fingerprint };
  const typeOf = (e: KnownHostEntry) => keyBlobType(e.key) ?? e.keyType;
  const knownTypes = [...new Set(plain.map(typeOf))];
  const entry = plain.find((e) => typeOf(e) === keyType) ?? plain[0];
  return { status: 'changed', keyType, fingerprint, entry, knownTypes };
}

/** How many times a known_hosts file was parsed (for tests: the cache below answers the rest). */
export const knownHostsParses = { count: 0 };

/** Parsed files by path, with the stat they were read under (see loadKnownHosts). */
const parsedFiles = new Map<string, { stamp: string; parsed: Promise<ParsedKnownHosts> }>();

/**
 * Reads and parses several known_hosts files; missing files are skipped. Issue 10: each file is parsed once per
 * process while it is unchanged (same inode, size, mtime and ctime), not once per node: every node's login read and
 * parsed the whole file (one line per node and key type), N times N lines for a mesh of N. A file that changed
 * since (--accept-new appended a key) is read again; nodes connecting at the same moment share one read.
 * While every file is as before, the answer is the same object as before (its entries keep hostEntries' index and
 * answers): callers must not change it.
 */
export async function loadKnownHosts(files: string[]): Promise<ParsedKnownHosts> {
  const parts: (ParsedKnownHosts | undefined)[] = [];
  let unreadable = false;
  for (const file of files) {
    let parsed: ParsedKnownHosts;
    try {
      const s = await fsp.stat(file);
      const stamp = `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      let cached = parsedFiles.get(file);
      if (cached?.stamp !== stamp) {
        const parse = (text: string) => {
          knownHostsParses.count++;
          return parseKnownHosts(text, file);
        };
        cached = { stamp, parsed: fsp.readFile(file, 'utf8').then(parse) };
        parsedFiles.set(file, cached);
        // a read that failed is not kept: the next login reads again
        const failed = cached;
        cached.parsed.catch(() => parsedFiles.get(file) === failed && parsedFiles.delete(file));
      }
      parsed = await cached.parsed;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        parts.push(undefined);
        continue;
      }
      unreadable = true;
      parts.push({ entries: [], problems: [{ file, reason: `cannot read it: ${(err as Error).message}` }] });
      continue;
    }
    parts.push(parsed);
  }
  const key = files.join('\0');
  const last = combined.get(key);
  if (last && !unreadable && last.parts.length === parts.length && last.parts.every((p, i) => p === parts[i])) return last.answer;
  const answer = { entries: parts.flatMap((p) => p?.entries ?? []), problems: parts.flatMap((p) => p?.problems ?? []) };
  if (!unreadable) combined.set(key, { parts, answer });
  return answer;
}

/** loadKnownHosts' last answer for each list of files, with the parsed files (or none, missing) it was made of. */
const combined = new Map<string, { parts: (ParsedKnownHosts | undefined)[]; answer: ParsedKnownHosts }>();

export interface AppendOptions {
  /** write the host name hashed (`|1|salt|hash`), as OpenSSH does with HashKnownHosts yes */
  hash?: boolean;
}

/** The known_hosts line meshctl writes for a host (without the trailing newline). */
export function knownHostLine(host: string, port: number, keyType: string, rawKey: Buffer, options: AppendOptions = {}): string {
  const name = knownHostName(host, port);
  return `${options.hash ? hashHostName(name) : name} ${keyType} ${rawKey.toString('base64')}`;
}

const appendQueues = new Map<string, Promise<unknown>>();

/**
 * Appends one entry (for --accept-new). The line goes out in a single O_APPEND write, so concurrent writers
 * (other meshctl runs, ssh) cannot interleave inside it; writes from this process are also serialised per file.
 * Creates the directory (0700) and the file (0600) when missing, and adds a newline first when the file does
 * not end with one. Not a temp-file-and-rename: that would lose entries appended concurrently by someone else.
 */
export function appendKnownHost(
  file: string,
  host: string,
  port: number,
  keyType: string,
  rawKey: Buffer,
  options: AppendOptions = {},
): Promise<void> {
  const previous = appendQueues.get(file) ?? Promise.resolve();
  const next = previous
    .catch(() => undefined)
    .then(async () => {
      await fsp.mkdir(dirname(file), { recursive: true, mode: 0o700 });
      const handle = await fsp.open(file, 'a+', 0o600);
      try {
        const { size } = await handle.stat();
        let prefix = '';
        if (size > 0) {
          const last = Buffer.alloc(1);
          await handle.read(last, 0, 1, size - 1);
          if (last[0] !== 0x0a) prefix = '\n';
        }
        await handle.write(`${prefix}${knownHostLine(host, port, keyType, rawKey, options)}\n`);
      } finally {
        await handle.close();
      }
    });
  appendQueues.set(file, next);
  void next
    .finally(() => {
      if (appendQueues.get(file) === next) appendQueues.delete(file);
    })
    .catch(() => undefined);
  return next;
}
