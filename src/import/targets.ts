/**
 * The hosts `meshctl import` reads: from an inventory or a skeleton of one (only `nodes.NAME.ssh`, or `address`,
 * is read; `mesh.interface` too when present), and from `--host NAME=[USER@]HOST[:PORT]` flags. A non-root user in a
 * flag gets `become: sudo` (meshctl needs root). Pure, bounded: the file goes through the same size and alias limits
 * as an inventory, and is checked against the inventory's format with every field optional (targetsFromSkeleton).
 */
import { badInput } from '../errors.js';
import type { RawSsh } from '../inventory/semantic.js';
import { checkSpec, inventorySpec, type Spec } from '../inventory/spec.js';
import type { Become, SshTarget } from '../inventory/types.js';
import { formatProblem, sortProblems } from '../schema/problems.js';
import { keyPositionOf, nodeAt, parseTree, positionOf } from '../schema/yaml-tree.js';
import type { ImportTarget } from './infer.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

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

/**
 * What import reads of a hosts file: the inventory's own format (../inventory/spec.ts) with every field optional, so
 * a whole inventory and a skeleton of one (only `nodes.NAME.ssh`, or `address`) both pass, and anything else is named
 * as the loader names it: an unknown field (with a did-you-mean), a wrong type or value, at its file:line:col (Q6/Q7
 * finding 4: a misspelt `ssh.usr` was ignored and the import logged in as root).
 */
function optional(spec: Spec): Spec {
  const { required: _required, ...rest } = spec;
  switch (rest.type) {
    case 'object':
      return { ...rest, fields: Object.fromEntries(Object.entries(rest.fields).map(([key, field]) => [key, optional(field)])) };
    case 'record':
      return { ...rest, value: optional(rest.value) };
    case 'array':
      return { ...rest, items: optional(rest.items) };
    default:
      return rest;
  }
}
const SKELETON_SPEC = optional(inventorySpec);

/** The parts of a hosts file that import reads, as SKELETON_SPEC's check returns them (invalid values left out). */
interface RawSkeleton {
  mesh?: { interface?: string };
  defaults?: { ssh?: RawSsh };
  nodes?: Record<string, { address?: string; ssh?: RawSsh } | undefined>;
}

/**
 * The SSH target of one node of a hosts file: its `ssh` settings over `defaults.ssh` (as the inventory loader merges
 * them), the host defaulting to its `address`; undefined when it has neither.
 */
function targetOf(name: string, node: NonNullable<RawSkeleton['nodes']>[string], defaults: RawSsh): ImportTarget | undefined {
  const ssh: RawSsh = { ...defaults, ...node?.ssh };
  const host = ssh.host ?? node?.address;
  if (host === undefined) return undefined;
  const user = ssh.user ?? 'root';
  const target: SshTarget = { host, port: ssh.port ?? 22, user, become: (ssh.become ?? 'none') as Become };
  if (ssh.identityFile !== undefined && ssh.identityFile !== '') target.identityFile = ssh.identityFile;
  return { name, ssh: target };
}

/**
 * The hosts and interface named by an inventory or skeleton text (`file`: its path, for messages).
 * @throws MeshctlError (bad input, exit 2) naming every problem as `file:line:col: field.path: message` (the inventory
 *   loader's words, ../inventory/load.ts): YAML errors, aliases beyond the loader's bound, an unknown field, a wrong
 *   type or value, no `nodes:` map, a node without `ssh.host` or `address`. One problem is the message itself; more are
 *   its details.
 */
export function targetsFromSkeleton(text: string, file: string): { targets: ImportTarget[]; iface?: string } {
  const parsed = parseTree(text, {
    documentNoun: 'an inventory or a skeleton of one',
    keyNoun: (path) => (path.length === 1 && path[0] === 'nodes' ? 'node name' : 'key'),
  });
  const problems = [...parsed.problems];
  const targets: ImportTarget[] = [];
  let iface: string | undefined;
  if (!parsed.syntaxBroken) {
    const root = parsed.root;
    const nodes = nodeAt(root, ['nodes']);
    if (root?.kind !== 'map' || nodes?.kind !== 'map')
      problems.push({
        ...positionOf(root, ['nodes']),
        path: 'nodes',
        message: 'no nodes: map (nodes: { NAME: { ssh: { host, user, port } } }, or a whole inventory)',
      });
    else {
      const raw = (checkSpec(SKELETON_SPEC, root, [], problems) ?? {}) as RawSkeleton;
      iface = raw.mesh?.interface;
      for (const [name, node] of Object.entries(raw.nodes ?? {})) {
        const target = targetOf(name, node, raw.defaults?.ssh ?? {});
        if (target) targets.push(target);
        else
          problems.push({
            ...keyPositionOf(root, ['nodes', name]),
            path: `nodes.${name}`,
            message: 'no ssh.host and no address to reach it at',
          });
      }
    }
  }
  if (problems.length > 0) {
    const sorted = sortProblems(problems);
    const lines = sorted.map((p) => formatProblem(file, p));
    if (lines.length === 1) throw badInput(lines[0]!);
    throw badInput(`${file}: ${lines.length} problems in the hosts to import (an inventory, or a skeleton of one)`, lines);
  }
  return { targets, ...(iface !== undefined ? { iface } : {}) };
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
