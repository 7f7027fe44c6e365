/**
 * Local state next to the inventory: `<inventory file>.state.json` (e.g. `homelab.yaml.state.json`).
 *
 * What it holds: per node the public key and the overlay address and listen port it was given, when meshctl last
 * saw it, and the last applied run (when, result, the nodes it worked on, the --limit, the plan value without its
 * scripts and diffs). What it never holds: a private key or any other secret (public keys are public by design; the
 * plan value is the redacted one the engine shows), so the file is safe to commit to git next to the inventory. It is a cache, never the truth:
 * every value in it can be read again from the nodes (`wg show IFACE public-key`, the inventory), and a missing or
 * unreadable file only means meshctl has to ask the nodes.
 *
 * Uses: `--limit` renders a limited node's config from the WHOLE inventory, so it needs the public keys of nodes
 * it does not work on (read from them when they answer, from here when they do not); a node dropped from the
 * inventory is still known here (its key), so the run can say whose peer it removes; and its SSH target (host, port,
 * user, become, the identity file's path: never a key), so that `meshctl down INVENTORY NODE` can still reach it and
 * take its own interface down once the inventory no longer names it (Q3 finding 8: the inventory that did was needed).
 *
 * Written atomically (temp file in the same directory, then rename(2)), mode 0644 like the inventory.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { MeshctlError } from '../errors.js';
import { writeFileAtomic } from '../local/files.js';
import type { SshTarget } from '../inventory/types.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';

/** The state file of an inventory: the inventory's own path plus `.state.json`. */
export const statePathFor = (inventoryPath: string): string => `${inventoryPath}.state.json`;

/** What the state knows of one node. */
export interface NodeState {
  /** base64 WireGuard public key (never the private one) */
  publicKey: string;
  /** the overlay address the node had in the inventory, without prefix */
  overlayIp: string;
  listenPort: number;
  /** ISO time meshctl last read the key from the node */
  seen: string;
  /** how meshctl logs in to the node, as the inventory said when the node was last in it (absent in older states) */
  ssh?: SshTarget;
  /**
   * ISO time a complete run removed the node's peer from every node of an inventory that no longer names it. Its
   * own interface is left as it was: the node stays here until `down` takes it down (or `down --forget`).
   */
  departed?: string;
}

/** The last run that applied changes. */
export interface LastApply {
  /** ISO time the run ended */
  at: string;
  command: 'up' | 'down';
  result: string;
  /** the nodes the run worked on (all inventory nodes, or the --limit / down's nodes) */
  nodes: string[];
  limit?: string[];
  /**
   * what src/state/record.ts recordedPlan keeps of the engine's plan value (src/engine/plan.ts): no scripts, no
   * config diffs (their line count instead); free of secrets; absent for `down`
   */
  plan?: unknown;
}

export interface MeshState {
  version: 1;
  /** the inventory's `mesh.interface`, so a state of another mesh is not mistaken for this one */
  interface: string;
  nodes: Record<string, NodeState>;
  lastApply?: LastApply;
  /** pairs relayed because their direct handshake failed at a gate (relay: auto), as pairKey strings */
  fallbackRelays?: string[];
}

export const emptyState = (iface: string): MeshState => ({ version: 1, interface: iface, nodes: {} });

/**
 * Parses a state file's text. Anything unusable (bad JSON, another version, another interface, a value that is not
 * a public key) is dropped rather than trusted: the state is a cache, and a wrong key would break a peer.
 */
export function parseState(text: string, iface: string): MeshState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return emptyState(iface);
  }
  const value = raw as Partial<MeshState> | null;
  if (value?.version !== 1 || value.interface !== iface || typeof value.nodes !== 'object' || value.nodes === null)
    return emptyState(iface);
  const nodes: Record<string, NodeState> = {};
  for (const [name, node] of Object.entries(value.nodes)) {
    const n = node as Partial<NodeState> | null;
    if (n && typeof n.publicKey === 'string' && looksLikeWireGuardKey(n.publicKey) && typeof n.overlayIp === 'string') {
      const ssh = parseSshTarget(n.ssh);
      nodes[name] = {
        publicKey: n.publicKey,
        overlayIp: n.overlayIp,
        listenPort: Number(n.listenPort) || 0,
        seen: String(n.seen ?? ''),
        ...(ssh ? { ssh } : {}),
        ...(typeof n.departed === 'string' ? { departed: n.departed } : {}),
      };
    }
  }
  const fallbackRelays = Array.isArray(value.fallbackRelays)
    ? value.fallbackRelays.filter((p): p is string => typeof p === 'string' && /^\S+ \S+$/.test(p))
    : [];
  return {
    version: 1,
    interface: iface,
    nodes,
    ...(value.lastApply ? { lastApply: value.lastApply } : {}),
    ...(fallbackRelays.length ? { fallbackRelays } : {}),
  };
}

/** A stored SSH target when it has the shape the inventory gives one (host, port, user, become), else undefined. */
function parseSshTarget(value: unknown): SshTarget | undefined {
  const t = value as Partial<SshTarget> | null | undefined;
  if (!t || typeof t.host !== 'string' || !t.host || typeof t.user !== 'string' || !t.user) return undefined;
  if (!Number.isInteger(t.port) || (t.become !== 'none' && t.become !== 'sudo')) return undefined;
  return {
    host: t.host,
    port: t.port as number,
    user: t.user,
    become: t.become,
    ...(typeof t.identityFile === 'string' ? { identityFile: t.identityFile } : {}),
  };
}

/** Bytes a state file may have: ~200 bytes a node, so 64 MiB is far past MAX_MESH_NODES. */
const STATE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Reads the state of an inventory; an absent or unusable file is an empty state. Throws MeshctlError('badInput')
 * naming the path when it is not a regular file or is larger than STATE_MAX_BYTES (Q10 F9: a FIFO there blocked
 * `plan` for good, deaf to SIGTERM: a synchronous read).
 */
export function readState(inventoryPath: string, iface: string): MeshState {
  const path = statePathFor(inventoryPath);
  if (!existsSync(path)) return emptyState(iface);
  const st = statSync(path);
  if (!st.isFile() || st.size > STATE_MAX_BYTES)
    throw new MeshctlError(
      `${path} (the inventory's local state) is ${st.isFile() ? `${st.size} bytes, more than a state file can be` : 'not a regular file'}: move it away (meshctl writes a new one)`,
      'badInput',
    );
  try {
    return parseState(readFileSync(path, 'utf8'), iface);
  } catch {
    return emptyState(iface);
  }
}

/** The state as text: stable (nodes sorted by name), one value per line, a final newline (git-friendly diffs). */
export function formatState(state: MeshState): string {
  const nodes = Object.fromEntries(
    Object.keys(state.nodes)
      .sort()
      .map((name) => [name, state.nodes[name]!]),
  );
  return `${JSON.stringify({ ...state, nodes }, null, 2)}\n`;
}

/** Writes the state atomically (temp file + rename in the same directory). Throws on an unwritable directory. */
export function writeState(inventoryPath: string, state: MeshState): string {
  const path = statePathFor(inventoryPath);
  // a random temp name, created exclusively: a symlink planted beside the inventory is never written through
  writeFileAtomic(path, formatState(state), 0o644);
  return path;
}

/** What a run learnt about nodes: public keys read from them (or generated by it), by node name. */
export interface Observed {
  publicKeys: ReadonlyMap<string, string>;
}

/**
 * The state after a run: keys seen are recorded with the node's inventory address and SSH target; a node the
 * inventory names has its SSH target refreshed and is no longer departed. A node the inventory no longer has is
 * marked departed once the run reached every node of the inventory (`complete`: its peers are gone everywhere) and
 * kept with its SSH target, so that `down` can still take its own interface down; one with no SSH target (a state
 * written before they were kept) is dropped as before, since nothing could reach it. A --limit run (not complete)
 * leaves such nodes as they were (it has not removed them from the nodes it left alone). `forget` drops nodes
 * (`down`: their interface is down, or their keys purged). Pure.
 */
export function updateState(
  state: MeshState,
  inventory: { nodes: readonly { name: string; overlayIp: string; listenPort: number; ssh?: SshTarget }[] },
  observed: Observed,
  options: { now: Date; complete: boolean; lastApply?: LastApply; forget?: readonly string[]; fallbackRelays?: readonly string[] },
): MeshState {
  const nodes: Record<string, NodeState> = {};
  const inInventory = new Map(inventory.nodes.map((n) => [n.name, n]));
  const now = options.now.toISOString();
  // the keys as this run saw them, for telling a renamed node (same key under a new name) from a departed one
  const seen: MeshState = { ...state, nodes: { ...state.nodes } };
  for (const [n, publicKey] of observed.publicKeys) {
    const known = seen.nodes[n];
    if (known) seen.nodes[n] = { ...known, publicKey };
    else if (inInventory.has(n)) seen.nodes[n] = { publicKey, overlayIp: '', listenPort: 0, seen: now };
  }
  const renamed = (name: string) => sameMachineAs(seen, inventory, name) !== undefined;
  for (const [name, node] of Object.entries(state.nodes)) {
    const current = inInventory.get(name);
    if (current) {
      const { departed: _departed, ...kept } = node;
      nodes[name] = current.ssh ? { ...kept, ssh: current.ssh } : kept;
    } else if (!options.complete) nodes[name] = node;
    // a renamed node (the same key, or the same SSH host and port, under a name the inventory has): not departed
    else if (node.ssh && !renamed(name)) nodes[name] = { ...node, departed: node.departed ?? now };
  }
  for (const [name, publicKey] of observed.publicKeys) {
    const node = inInventory.get(name);
    if (!node || !looksLikeWireGuardKey(publicKey)) continue;
    nodes[name] = {
      publicKey,
      overlayIp: node.overlayIp,
      listenPort: node.listenPort,
      seen: now,
      ...(node.ssh ? { ssh: node.ssh } : {}),
    };
  }
  for (const name of options.forget ?? []) delete nodes[name];
  const { fallbackRelays: _old, ...rest } = state;
  const fallbackRelays = options.fallbackRelays ?? state.fallbackRelays ?? [];
  return {
    ...rest,
    nodes,
    ...(options.lastApply ? { lastApply: options.lastApply } : {}),
    ...(fallbackRelays.length ? { fallbackRelays: [...fallbackRelays] } : {}),
  };
}

/** A node the state knows that the inventory does not have any more (dropped from it). */
export interface DepartedNode {
  name: string;
  publicKey: string;
  /** how to reach it (absent in a state written before SSH targets were kept) */
  ssh?: SshTarget;
  overlayIp: string;
  listenPort: number;
  /** ISO time its peer was removed from every node (absent: a run has yet to remove it, or only a --limit run ran) */
  departed?: string;
  /**
   * The inventory node that is this same machine (RV2 finding 1: a node renamed in the inventory): it has the same
   * public key in the state, or the same SSH host and port. Such an entry is not a node to take down: `down` of it
   * would reach, stop and delete the live interface of the renamed node.
   */
  sameMachineAs?: string;
}

/** Inventory nodes as the state's membership functions read them: a name and, where known, the SSH target. */
type InventoryNodes = { nodes: readonly { name: string; ssh?: Pick<SshTarget, 'host' | 'port'> }[] };

/**
 * The inventory node that is the same machine as the state's entry `name` (not in the inventory): one whose key in
 * the state is the entry's key (a rename keeps the node's key on the node), or whose SSH host and port are the
 * entry's (the same sshd). Undefined when none is. Pure.
 */
export function sameMachineAs(state: MeshState, inventory: InventoryNodes, name: string): string | undefined {
  const entry = state.nodes[name];
  if (!entry) return undefined;
  for (const node of inventory.nodes) {
    if (node.name === name) continue;
    if (state.nodes[node.name]?.publicKey === entry.publicKey) return node.name;
    if (entry.ssh && node.ssh && node.ssh.host === entry.ssh.host && node.ssh.port === entry.ssh.port) return node.name;
  }
  return undefined;
}

/** Nodes the state knows that the inventory does not have any more (dropped from it), by name. */
export function departedNodes(state: MeshState, inventory: InventoryNodes): DepartedNode[] {
  const names = new Set(inventory.nodes.map((n) => n.name));
  return Object.entries(state.nodes)
    .filter(([name]) => !names.has(name))
    .map(([name, n]) => {
      const same = sameMachineAs(state, inventory, name);
      return {
        name,
        publicKey: n.publicKey,
        overlayIp: n.overlayIp,
        listenPort: n.listenPort,
        ...(n.ssh ? { ssh: n.ssh } : {}),
        ...(n.departed ? { departed: n.departed } : {}),
        ...(same ? { sameMachineAs: same } : {}),
      };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
