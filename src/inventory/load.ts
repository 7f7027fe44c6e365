/**
 * Loads an inventory file into the normalised Inventory, validating it completely first.
 *
 * Contract: loadInventory(path) returns an Inventory or throws MeshctlError (exit 2) whose details are
 * `file:line:col: field.path: message` lines, every problem at once, sorted by position. Reading the file is
 * its only I/O: it never touches the network.
 *
 * Stages: YAML syntax (./yamlTree.ts; when broken, nothing else is checked), structure against the format spec
 * (./spec.ts), cross-field rules (./semantic.ts), then normalisation (defaults applied).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { badInput } from '../errors.js';
import { formatProblem, sortProblems, type PathPart, type Problem } from '../schema/problems.js';
import { address6Of, checkSemantics, endpointOf, relaySettingOf, siteKindOf, type RawInventory, type RawSsh } from './semantic.js';
import { checkSpec, inventorySpec } from './spec.js';
import type { Become, Inventory, MeshSettings, Node, RpFilterMode, Site } from './types.js';
import { readInputFile } from '../schema/input.js';
import { parseTree } from '../schema/yaml-tree.js';
import { withoutTurbofan } from '../schema/interpreted.js';

export interface LoadInventoryOptions {
  /** validate this text instead of reading `path` (`path` is then only used in messages) */
  text?: string;
}

export type InventoryCheck = { ok: true; inventory: Inventory; problems: [] } | { ok: false; problems: Problem[] };

/** Names the file given by the user, or the default one: the argument, then $MESHCTL_INVENTORY, then ./meshctl.yaml. */
export function resolveInventoryPath(arg?: string, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): string {
  if (arg !== undefined && arg !== '') return arg;
  const fromEnv = env.MESHCTL_INVENTORY;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (existsSync(join(cwd, 'meshctl.yaml'))) return 'meshctl.yaml';
  throw badInput('no inventory given: pass its path, set MESHCTL_INVENTORY, or put a meshctl.yaml in the current directory');
}

const KEY_NOUNS: Record<string, string> = { nodes: 'node name', sites: 'site name' };

/** The one problem of an inventory file with no content (empty, blank, comments only, or a null document). */
export const EMPTY_INVENTORY: Problem = {
  line: 1,
  col: 1,
  path: '(root)',
  message: "the file is empty: an inventory needs mesh, sites and nodes (meshctl's inventories/homelab.yaml is a complete one)",
};

/**
 * Pure: checks inventory text. `file` is only used as the Inventory's source. The parse, the checks and the
 * normalisation run with V8's optimising compiler off (../schema/interpreted.ts: run once per process, they are
 * over before TurboFan's background compiles of them would pay back; issue 10).
 */
export function checkInventoryText(text: string, file: string): InventoryCheck {
  return withoutTurbofan(() => checkInventoryTextNow(text, file));
}

function checkInventoryTextNow(text: string, file: string): InventoryCheck {
  const parsed = parseTree(text, {
    documentNoun: 'an inventory',
    keyNoun: (path) => (path.length === 1 ? (KEY_NOUNS[String(path[0])] ?? 'key') : 'key'),
  });
  if (parsed.syntaxBroken) return { ok: false, problems: sortProblems(parsed.problems) };
  // finding 32: an empty file (or comments only) is one problem, not each required field missing at 1:1
  const empty = parsed.root === undefined || (parsed.root.kind === 'scalar' && parsed.root.value === null);
  if (empty && parsed.problems.length === 0) return { ok: false, problems: [EMPTY_INVENTORY] };
  const problems = [...parsed.problems];
  const root = parsed.root ?? { kind: 'map' as const, entries: new Map(), pos: { line: 1, col: 1 } };
  const raw = (checkSpec(inventorySpec, root, [], problems) ?? {}) as RawInventory;
  problems.push(...checkSemantics(raw, root));
  if (problems.length > 0) return { ok: false, problems: sortProblems(problems) };
  return { ok: true, inventory: normalise(raw, file), problems: [] };
}

/**
 * The file's text, or a one-line MeshctlError (exit 2) saying why it cannot be read: missing, not a regular file
 * (/dev/zero, a FIFO), or over MAX_INPUT_BYTES (1 MiB), all checked before reading.
 */
export const readInventoryFile = (path: string): string => readInputFile(path, 'inventory');

export function loadInventory(path: string, options: LoadInventoryOptions = {}): Inventory {
  const result = checkInventoryText(options.text ?? readInventoryFile(path), path);
  if (!result.ok) throw inventoryError(path, result.problems);
  return result.inventory;
}

export function inventoryError(path: string, problems: readonly Problem[]) {
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return badInput(
    `inventory ${path} has ${count}`,
    problems.map((problem) => formatProblem(path, problem)),
  );
}

const RP_FILTER: Record<string, RpFilterMode> = { off: 0, strict: 1, loose: 2 };

/** Only called on a file that passed every check, so every required field is there and valid. */
function normalise(raw: RawInventory, source: string): Inventory {
  const rawMesh = raw.mesh!;
  const rp = rawMesh.rpFilter ?? 'loose';
  const mesh: MeshSettings = {
    interface: rawMesh.interface ?? 'wg0',
    network: rawMesh.network!,
    listenPort: rawMesh.listenPort ?? 51820,
    mtu: rawMesh.mtu ?? 1420,
    persistentKeepalive: rawMesh.persistentKeepalive ?? 25,
    rpFilter: typeof rp === 'number' ? (rp as RpFilterMode) : RP_FILTER[rp]!,
    reservedCidrs: (rawMesh.reservedCidrs ?? []).map((cidr) => cidr!),
    ...relaySettingOf(rawMesh.relay),
  };
  const sites: Site[] = Object.entries(raw.sites!).map(([name, site]): Site => {
    const s = site!;
    switch (siteKindOf(s)) {
      case 'public':
        return { name, kind: 'public' };
      case 'nat':
        return {
          name,
          kind: 'nat',
          lan: s.lan!,
          router: s.router!,
          ...(s.nat!.publicIp !== undefined ? { publicIp: s.nat!.publicIp } : {}),
          ...(s.nat!.publicHost !== undefined ? { publicHost: s.nat!.publicHost.replace(/\.$/, '') } : {}),
          ...(s.nat!.carrier === true ? { carrier: true } : {}),
          ...(s.lab ? { lab: { ...s.lab } } : {}),
        };
      default:
        return {
          name,
          kind: 'lan',
          lan: s.lan!,
          ...(s.router !== undefined ? { router: s.router } : {}),
          ...(s.lab ? { lab: { ...s.lab } } : {}),
        };
    }
  });
  const defaults: RawSsh = raw.defaults?.ssh ?? {};
  const nodes: Node[] = Object.entries(raw.nodes!).map(([name, node]): Node => {
    const n = node!;
    const ssh: RawSsh = { ...defaults, ...n.ssh };
    const user = ssh.user ?? 'root';
    const become: Become = ssh.become ?? (user === 'root' ? 'none' : 'sudo');
    return {
      name,
      site: n.site!,
      address: n.address!,
      ...address6Of(n.address6),
      overlayIp: n.overlayIp!,
      listenPort: n.listenPort ?? mesh.listenPort,
      ...(n.forwardedPort !== undefined ? { forwardedPort: n.forwardedPort } : {}),
      ...endpointOf(n.endpoint),
      ...relaySettingOf(n.relay),
      ssh: {
        host: ssh.host ?? n.address!,
        port: ssh.port ?? 22,
        user,
        ...(ssh.identityFile !== undefined ? { identityFile: ssh.identityFile } : {}),
        become,
      },
    };
  });
  return { source, mesh, sites, nodes };
}

export type { PathPart, Problem };
