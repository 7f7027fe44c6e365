/**
 * Who may read or change meshctl's files on a node: /etc/wireguard, IFACE.key, IFACE.pub and IFACE.conf, and the
 * other files meshctl installs that root runs or reads (the sysctl file, the wg-quick@IFACE drop-in, the re-resolve
 * script and units, and their directories: ../remote/wireguard.ts fileModePaths; Q10 F1) (their owner and mode:
 * FACTS.wireguardFiles, ../facts/definitions.ts). Judged by up's baseline check
 * `wireguard-file-modes` (../engine/registry.ts; `plan` stops there too) and verify's `file-modes` (./verify.ts).
 *
 * A path is wrong when it is not root's, or when group or others may write it (the key: read it either). Such a node
 * is a STOP, not a silent chmod: another user could already have read the key, or changed the file's content (a
 * `PostUp` root runs when wg-quick starts, another public key handed to the peers); only an operator who looked at the
 * content can say whether the node is still to be trusted. So nothing is changed on it and the message gives the
 * commands that fix the modes once the content has been checked.
 */
import { reresolvePaths, wireguardPaths } from '../remote/wireguard.js';
import type { WireGuardFileMode } from '../facts/definitions.js';
import type { Judgement } from './judge.js';

/**
 * Which of meshctl's paths a stat line is about: the WireGuard directory, key, .pub and wg-quick file; a program root
 * runs (`exec`: the re-resolve script), a unit or setting root applies (`unit`: the re-resolve units, the drop-in,
 * the sysctl file), a directory holding those (`libdir`).
 */
type Role = 'dir' | 'key' | 'pub' | 'conf' | 'exec' | 'unit' | 'libdir';

/** What another user could do with each path, said in the STOP message. */
const WHY: Record<Role, { write: string; read?: string }> = {
  dir: { write: 'another user can replace or add files in it (the key, a wg-quick file root starts)' },
  key: { write: 'another user can replace the private key', read: 'another user can read the private key' },
  pub: { write: 'another user can change the public key meshctl reads and gives the peers' },
  conf: { write: 'another user can change it, e.g. add a PostUp command that root runs when wg-quick starts' },
  exec: { write: 'another user can change a program root runs (the re-resolve timer runs it every 30 s)' },
  unit: { write: "another user can change what root runs or applies (a unit's Exec lines, a kernel setting)" },
  libdir: { write: 'another user can replace or add files in it (a program or unit root runs)' },
};

/** The mode meshctl gives each path (what the fix sets). */
const WANTED_MODE: Record<Role, string> = { dir: '700', key: '600', pub: '644', conf: '600', exec: '755', unit: '644', libdir: '755' };

/** One wrong path: its stat line in words and what it allows. */
export interface FileModeProblem {
  path: string;
  role: Role;
  /** e.g. "owned by nobody (uid 65534), writable by others (mode 0666)" */
  what: string;
  /** e.g. "another user can read the private key" */
  why: string;
}

const octal = (mode: string) => `0${mode.padStart(3, '0')}`;

/**
 * The paths of `files` (FACTS.wireguardFiles for interface `iface`) that are not root's, are writable by group or
 * others, or (the key) readable by them; a symbolic link in place of one of them too (its target is not judged:
 * meshctl's own files are regular files). Paths stat did not list (absent) are not judged. `confHoldsKey`: whether the
 * wg-quick file holds a PrivateKey or PresharedKey line (asked only when group or others may read it): such a file
 * readable by them is wrong as the key file is (RV6 F3: the quick-start layout, a PrivateKey in a 0644 wg0.conf,
 * passed, and `up` then kept that key).
 */
export function fileModeProblems(
  iface: string,
  files: readonly WireGuardFileMode[],
  confHoldsKey: () => boolean = () => false,
): FileModeProblem[] {
  const p = wireguardPaths(iface);
  const r = reresolvePaths(iface);
  const dirOf = (path: string) => path.slice(0, path.lastIndexOf('/'));
  const roles = new Map<string, Role>([
    [p.dir, 'dir'],
    [p.privateKey, 'key'],
    [p.publicKey, 'pub'],
    [p.config, 'conf'],
    [p.sysctl, 'unit'],
    [dirOf(p.reloadDropIn), 'libdir'],
    [p.reloadDropIn, 'unit'],
    [dirOf(r.script), 'libdir'],
    [r.script, 'exec'],
    [r.service, 'unit'],
    [r.timer, 'unit'],
  ]);
  const out: FileModeProblem[] = [];
  for (const f of files) {
    const role = roles.get(f.path);
    if (!role) continue;
    const why = WHY[role];
    if (f.type === 'symbolic link') {
      out.push({
        path: f.path,
        role,
        what: `a symbolic link (owned by ${f.owner}, uid ${f.uid}): its target is not judged`,
        why: why.write,
      });
      continue;
    }
    const bits = parseInt(f.mode, 8);
    const parts: string[] = [];
    const whys: string[] = [];
    if (f.uid !== 0) {
      parts.push(`owned by ${f.owner} (uid ${f.uid}), not root`);
      whys.push(role === 'key' ? 'another user can read or replace the private key' : why.write);
    }
    const writers = [(bits & 0o020) !== 0 ? 'group' : '', (bits & 0o002) !== 0 ? 'others' : ''].filter(Boolean);
    if (writers.length > 0) {
      parts.push(`writable by ${writers.join(' and ')} (mode ${octal(f.mode)})`);
      if (!whys.includes(why.write) && f.uid === 0) whys.push(why.write);
    }
    if ((role === 'key' || role === 'conf') && (bits & 0o044) !== 0 && (role === 'key' || confHoldsKey())) {
      const readers = [(bits & 0o040) !== 0 ? 'group' : '', (bits & 0o004) !== 0 ? 'others' : ''].filter(Boolean);
      parts.push(`readable by ${readers.join(' and ')}${role === 'conf' ? ' while it holds a key line' : ''} (mode ${octal(f.mode)})`);
      if (f.uid === 0) whys.push(WHY.key.read!);
    }
    if (parts.length === 0) continue;
    // one mode said once: "writable by others (mode 0666), readable by others (mode 0666)" -> the mode at the end
    const what = parts.map((t, i) => (i < parts.length - 1 ? t.replace(/ \(mode \d+\)$/, '') : t)).join(', ');
    out.push({ path: f.path, role, what, why: [...new Set(whys)].join('; ') });
  }
  return out;
}

/**
 * The commands that give the wrong paths meshctl's owner and modes (root:root for those another user owns; the
 * directory 700, the key and the wg-quick file 600, the .pub 644), and `dir` (the directory's stat line) 700 when
 * group or others may enter it. A symbolic link is to be replaced by a regular file: no command is guessed for it.
 */
export function fileModeFix(problems: readonly FileModeProblem[], dir?: WireGuardFileMode): string[] {
  const paths = problems;
  const regular: Array<{ path: string; role: Role }> = paths.filter((x) => !x.what.startsWith('a symbolic link'));
  // a directory others may list is no STOP by itself, but the fix gives it wg-quick's 0700 too
  if (dir && dir.type === 'directory' && (parseInt(dir.mode, 8) & 0o077) !== 0 && !regular.some((x) => x.role === 'dir'))
    regular.unshift({ path: dir.path, role: 'dir' });
  const cmds: string[] = [];
  const owned = paths.filter((x) => !x.what.startsWith('a symbolic link') && x.what.includes('owned by'));
  if (owned.length > 0) cmds.push(`chown root:root ${owned.map((x) => x.path).join(' ')}`);
  for (const mode of ['700', '755', '600', '644']) {
    const these = regular.filter((x) => WANTED_MODE[x.role] === mode);
    if (these.length > 0) cmds.push(`chmod ${mode} ${these.map((x) => x.path).join(' ')}`);
  }
  // each by what it stands for (RV6 F4: the directory's link was to become "a regular file", which breaks wg-quick)
  for (const link of paths.filter((x) => x.what.startsWith('a symbolic link')))
    cmds.push(
      `replace the symbolic link ${link.path} by ${link.role === 'dir' ? "a directory of root's (mode 0700)" : link.role === 'libdir' ? "a directory of root's (mode 0755)" : "a regular file of root's"}`,
    );
  return cmds;
}

/** A stat line in words, for the evidence: "/etc/wireguard/wg0.conf: regular file, mode 0666, owner nobody (uid 65534)". */
export const describeFileMode = (f: WireGuardFileMode): string =>
  `${f.path}: ${f.type}, mode ${octal(f.mode)}, owner ${f.owner} (uid ${f.uid})`;

/**
 * The verdict on a node's WireGuard files (FACTS.wireguardFiles of interface `iface`): pass when every path that
 * exists is root's and only root may write it (and read the key, or the wg-quick file when `confHoldsKey()` says it
 * holds a PrivateKey or PresharedKey line); fail naming each wrong path, what another user can
 * do with it, and the commands that fix it, to be run after checking the content; warn when the facts did not read
 * them (`files` undefined: an older probe).
 */
export function judgeWireGuardFiles(
  iface: string,
  files: readonly WireGuardFileMode[] | undefined,
  confHoldsKey: () => boolean = () => false,
): Judgement {
  if (files === undefined) return { status: 'warn', message: `the owner and mode of /etc/wireguard's files were not read`, evidence: [] };
  const evidence = files.map(describeFileMode);
  const problems = fileModeProblems(iface, files, confHoldsKey);
  if (problems.length === 0) {
    return {
      status: 'pass',
      message:
        files.length === 0
          ? `no ${wireguardPaths(iface).dir} yet`
          : `${files.map((f) => `${f.path} ${octal(f.mode)}`).join(', ')}: root's; only root can change them (and read the key)`,
      evidence,
    };
  }
  const wrong = problems.map((x) => `${x.path} is ${x.what}: ${x.why}`).join('; ');
  const dir = files.find((f) => f.path === wireguardPaths(iface).dir);
  // the key may be known whenever another user could read it or make root copy it (a PostUp in a wg-quick file they
  // could write: RV6 F3; a program or unit root runs: Q10 F1): every wrong path but the .pub
  const keyRead = problems.some((x) => x.role !== 'pub');
  // a key another user could have planted as rotate-keys' pending key goes too (X13: rotate-keys reuses only its own)
  const key = wireguardPaths(iface).privateKey;
  const fix = [...fileModeFix(problems, dir), ...(keyRead ? [`rm -f ${key}.new ${key}.new.meshctl-tmp`] : [])].join('; ');
  return {
    status: 'fail',
    message: `${wrong}. meshctl changes nothing on this node: check the content first (a PreUp, PostUp, PreDown or PostDown line in ${wireguardPaths(iface).config} you did not write${problems.some((x) => x.role === 'exec' || x.role === 'unit' || x.role === 'libdir') ? '; the program, units and settings named above as meshctl installed them: `meshctl up` rewrites them once their modes are fixed' : ''}), then fix the modes as root: ${fix}${keyRead ? '; the key may be known to another user: give the node a new one afterwards (`meshctl rotate-keys INVENTORY NODE --yes`)' : ''}`,
    evidence: [...evidence, ...problems.map((x) => `wrong: ${x.path}: ${x.what}`), `fix (after checking the content): ${fix}`],
  };
}
