/**
 * The hosts `meshctl import` reads: from an inventory or a skeleton of one (only `nodes.NAME.ssh`, or `address`,
 * is read; `mesh.interface` too when present), and from `--host NAME=[USER@]HOST[:PORT]` flags. A non-root user in a
 * flag gets `become: sudo` (meshctl needs root). Pure, bounded: the file goes through the same size and alias limits
 * as an inventory.
 */
import { parseDocument } from 'yaml';
import { badInput } from '../errors.js';
import type { Become, SshTarget } from '../inventory/types.js';
import type { ImportTarget } from './infer.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const own = (o: Record<string, unknown>, key: string): unknown => (Object.hasOwn(o, key) ? o[key] : undefined);

/**
 * One `--host` flag: NAME=[USER@]HOST[:PORT].
 * @throws MeshctlError (bad input) for anything else
 */
export function parseHostFlag(text: string): ImportTarget {
  const m = /^([^=]+)=(?:([^@\s]+)@)?([^:@\s]+)(?::(\d{1,5}))?$/.exec(text.trim());
  if (!m || !NAME.test(m[1]!)) throw badInput(`--host ${text}: expected NAME=[USER@]HOST[:PORT], e.g. ms-1=root@192.168.15.2`);
  const port = m[4] === undefined ? 22 : Number(m[4]);
  if (!(port >= 1 && port <= 65535)) throw badInput(`--host ${text}: port ${m[4]} is not a port`);
  const user = m[2] ?? 'root';
  return { name: m[1]!, ssh: { host: m[3]!, port, user, become: user === 'root' ? 'none' : 'sudo' } };
}

/** The SSH target of one skeleton node: its `ssh` settings, the host defaulting to its `address`. */
function targetOf(name: string, value: unknown, file: string): ImportTarget {
  const node = isObject(value) ? value : {};
  const ssh = isObject(own(node, 'ssh')) ? (own(node, 'ssh') as Record<string, unknown>) : {};
  const host = own(ssh, 'host') ?? own(node, 'address');
  if (typeof host !== 'string' || host === '') throw badInput(`${file}: nodes.${name}: no ssh.host and no address to reach it at`);
  const port = own(ssh, 'port') ?? 22;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw badInput(`${file}: nodes.${name}.ssh.port is not a port`);
  const user = own(ssh, 'user') ?? 'root';
  if (typeof user !== 'string' || user === '') throw badInput(`${file}: nodes.${name}.ssh.user is not a user name`);
  const become = own(ssh, 'become') ?? 'none';
  if (become !== 'none' && become !== 'sudo') throw badInput(`${file}: nodes.${name}.ssh.become must be none or sudo`);
  const identityFile = own(ssh, 'identityFile');
  const target: SshTarget = { host, port, user, become: become as Become };
  if (typeof identityFile === 'string' && identityFile !== '') target.identityFile = identityFile;
  return { name, ssh: target };
}

/**
 * The hosts and interface named by an inventory or skeleton text.
 * @throws MeshctlError (bad input) on YAML errors, aliases beyond a small limit, or nodes without a way to reach them
 */
export function targetsFromSkeleton(text: string, file: string): { targets: ImportTarget[]; iface?: string } {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) throw badInput(`${file}: ${doc.errors[0]!.message.split('\n')[0]}`);
  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: 16 });
  } catch (error) {
    throw badInput(`${file}: ${(error as Error).message}`);
  }
  if (!isObject(root) || !isObject(own(root, 'nodes')))
    throw badInput(`${file}: no nodes: map (nodes: { NAME: { ssh: { host, user, port } } })`);
  const nodes = own(root, 'nodes') as Record<string, unknown>;
  const targets = Object.keys(nodes).map((name) => {
    if (!NAME.test(name)) throw badInput(`${file}: nodes.${JSON.stringify(name)}: not a node name`);
    return targetOf(name, nodes[name], file);
  });
  const mesh = own(root, 'mesh');
  const iface = isObject(mesh) ? own(mesh, 'interface') : undefined;
  return { targets, ...(typeof iface === 'string' ? { iface } : {}) };
}

/**
 * Skeleton targets and flag targets together; a flag replaces a skeleton node of the same name.
 * @throws MeshctlError (bad input) when no host is given, or two names share one SSH target
 */
export function mergeTargets(fromFile: ImportTarget[], fromFlags: ImportTarget[]): ImportTarget[] {
  const byName = new Map(fromFile.map((t) => [t.name, t]));
  for (const t of fromFlags) byName.set(t.name, t);
  const targets = [...byName.values()];
  if (targets.length === 0) throw badInput('import: no hosts: give an inventory or skeleton file, or --host NAME=[USER@]HOST[:PORT]');
  const seen = new Map<string, string>();
  for (const t of targets) {
    const key = `${t.ssh.user}@${t.ssh.host}:${t.ssh.port}`;
    if (seen.has(key)) throw badInput(`import: ${seen.get(key)} and ${t.name} are one SSH target (${key})`);
    seen.set(key, t.name);
  }
  return targets;
}
