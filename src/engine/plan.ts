/**
 * The plan value: per phase and node, the ordered changes and the scripts that realise them. Pure and
 * serialisable (`up --dry-run --json` prints it as `plan`); it never holds a secret: keys appear as paths, public
 * keys not generated yet as `<new key of NODE>` (Terraform's "known after apply").
 *
 * How a plan is made when later phases depend on earlier results: the run loop (./runner.ts) plans one phase at a
 * time, from the facts and the values earlier phases provided. Applying, those values come from the nodes (the keys
 * step returns the real public key, and the config phase is planned with it); in a dry run the recorder backend
 * records each action instead and the step predicts its values (a stand-in key for a key that does not exist yet),
 * so every later phase is planned as it would be. Planning again after an apply gives an empty plan.
 */
import { createHash } from 'node:crypto';
import type { Change, NodeAction } from './types.js';

export interface PlannedAction {
  step: string;
  changes: Change[];
  /** the change list in words, as the gate report shows it */
  summary: string;
  script: string;
  timeoutMs?: number;
}

/**
 * The change kinds that take no effect on the node's network by themselves: a file written whose content only a
 * later step applies (wg-quick's file: the enable step's sync or restart; the drop-in and the re-resolve timer: their
 * `enable`), a public key file repaired, a revert armed. A run whose changes are all of these (a comment-only rewrite
 * of wg0.conf: RV4 F3.2) keeps its sessions and logins as they were.
 */
const WITHOUT_EFFECT: ReadonlySet<Change['kind']> = new Set(['write-file', 'derive-public-key', 'repair-public-key-file', 'arm-rollback']);

/**
 * Whether a change can affect the node's tunnels or logins: every kind but WITHOUT_EFFECT's (an unknown or new kind
 * counts, the safe side). The run's `changedSoFar` (./types.ts) is set by such a change only, so that after a
 * comment-only rewrite the ping round is the converged one (one reply per pair, no first contact, no recheck, no
 * session reset: ./ping.ts) and the fresh-login check rests on the run's own login.
 */
export function takesEffect(change: Change): boolean {
  return !WITHOUT_EFFECT.has(change.kind);
}

export interface PlannedNode {
  node: string;
  actions: PlannedAction[];
  warnings: string[];
}

export interface PlannedPhase {
  id: string;
  title: string;
  /** only nodes with an action or a warning */
  nodes: PlannedNode[];
}

export interface Plan {
  version: 1;
  inventory: string;
  playbook: string;
  /** true when the plan was recorded by a dry run (nothing applied) */
  dryRun: boolean;
  phases: PlannedPhase[];
}

/** An empty plan changes nothing: no phase has an action on any node. */
export const planIsEmpty = (plan: Plan): boolean => plan.phases.every((p) => p.nodes.every((n) => n.actions.length === 0));

/** Number of actions in the plan (what `up` reports as "N changes"). */
export const countActions = (plan: Plan): number =>
  plan.phases.reduce((sum, p) => sum + p.nodes.reduce((s, n) => s + n.actions.length, 0), 0);

/**
 * An install that repairs dpkg first, in words (RV-12): `dpkg --configure -a` configures EVERY package dpkg left
 * unpacked or half-configured on the node, not only meshctl's (apt refuses to run before that; the facts read the
 * state of meshctl's packages only, so the others cannot be named); the half-done packages are reinstalled, the
 * merely missing ones installed.
 */
function describeRepair(change: Extract<Change, { kind: 'install' }>): string {
  const repair = change.repair ?? [];
  const missing = change.packages.filter((p) => !repair.includes(p));
  return `repair dpkg's half-done ${repair.join(' ')}: dpkg --configure -a (it configures every package dpkg left pending on the node, not only these), then reinstall ${repair.join(' ')}${missing.length ? ` and install ${missing.join(' ')}` : ''} (${change.manager})`;
}

/** One change in words (the gate report and the listr2 view show these). */
export function describeChange(change: Change): string {
  switch (change.kind) {
    case 'install':
      return change.repair?.length ? describeRepair(change) : `install ${change.packages.join(' ')} (${change.manager})`;
    case 'generate-key':
      return `generate ${change.path} on the node`;
    case 'derive-public-key':
      return `derive the public key of the existing ${change.path}`;
    case 'repair-public-key-file':
      return `rewrite ${change.path} from the key file (it was missing, not the key's public half, or not mode 644)`;
    case 'write-file':
      return change.role === 'reload-drop-in' ? `write ${change.path} (a reload keeps the key)` : `write ${change.path}`;
    case 'remove-file':
      return `remove ${change.path} (${change.why})`;
    case 'apply-sysctl':
      return `apply rp_filter=${change.rpFilter} from ${change.path}`;
    case 'enable':
      return `enable ${change.now ? '--now ' : ''}${change.unit}`;
    case 'restart':
      return `restart ${change.unit} (${change.why})`;
    case 'syncconf':
      // what `wg syncconf` means; the command sends only what differs (../render/systemd.ts syncPeersCommand)
      return `wg syncconf ${change.iface} (${change.why})`;
    case 'set-mtu':
      return `set ${change.iface} MTU ${change.mtu} live (${change.why}; no restart, interface and sessions kept)`;
    case 'set-address':
      return `set ${change.iface} Address ${change.address} live${change.removed.length ? `, ${change.removed.join(', ')} removed` : ''} (${change.why}; no restart, the interface and WireGuard's sessions kept)`;
    case 'relay-on':
      return `set up ${change.iface}'s relay live: meshctl's rule, then forwarding on ${change.iface} (${change.why}; no restart, the interface and WireGuard's sessions kept)`;
    case 'relay-off':
      return `stop ${change.iface}'s relay live: forwarding off, meshctl's rule removed${change.found.length ? ` (${change.found.join('; ')})` : ''} (${change.why}; no restart, the interface and WireGuard's sessions kept)`;
    case 'load-private-key':
      return `load ${change.path} into ${change.iface} again (${change.why})`;
    case 'restore-routes':
      return `restore route${change.routes.length > 1 ? 's' : ''} ${change.routes.join(', ')} via ${change.iface}`;
    case 'remove-routes':
      return `remove route${change.routes.length > 1 ? 's' : ''} ${change.routes.join(', ')} via ${change.iface} (${change.why})`;
    case 'wg-quick-up':
      return `${change.restart ? 'wg-quick down/up' : 'wg-quick up'} ${change.iface} (${change.why})`;
    case 'remove-relay-rule':
      return `remove meshctl's relay rule for ${change.iface} (the node relays no pair; left from when it did: ${change.found.join('; ')})`;
    case 'arm-rollback':
      return `arm a rollback on the node (${change.systemd ? change.unit : 'background sleep, no systemd'}, in ${change.deadlineS} s unless confirmed)`;
  }
}

export const describeAction = (action: NodeAction): string => action.changes.map(describeChange).join(', ');

/**
 * A dry run cannot know the key a node will generate: it plans with a stand-in (well-formed, so the renderer takes
 * it) that `showStandIns` turns into `<new key of NODE>` wherever the plan shows text.
 */
export const standInPublicKey = (node: string): string => createHash('sha256').update(`meshctl dry run: ${node}`).digest('base64');

/**
 * stand-in key -> node, per list of nodes. The run's list only grows (a node is pushed as its key phase plans a
 * stand-in, and each of its actions is shown right after): the nodes added since the last call are added to the
 * map, so a growing list costs one hash per node, not N^2/2 (issue 10); a list that shrank is mapped again.
 */
const standInMaps = new WeakMap<readonly string[], { length: number; byKey: Map<string, string> }>();
function standInsByKey(nodes: readonly string[]): Map<string, string> {
  let cached = standInMaps.get(nodes);
  if (!cached || cached.length > nodes.length) {
    cached = { length: 0, byKey: new Map() };
    standInMaps.set(nodes, cached);
  }
  for (let i = cached.length; i < nodes.length; i++) {
    const node = nodes[i]!;
    const key = standInPublicKey(node);
    if (!cached.byKey.has(key)) cached.byKey.set(key, node); // the first wins, as before
  }
  cached.length = nodes.length;
  return cached.byKey;
}

/**
 * Replaces every stand-in key of `nodes` in `text` by `<new key of NODE>`. One pass over the text (issue 10): a
 * replaceAll per node made a plan of N configs of N-1 peers O(N^3). A key is 43 base64 characters and '=', and
 * '=' is not in its body, so the 44 characters up to each '=' are the only places a key can be.
 */
export function showStandIns(text: string, nodes: readonly string[]): string {
  if (nodes.length === 0) return text;
  const byKey = standInsByKey(nodes);
  let out = '';
  let from = 0;
  for (let at = text.indexOf('=', 43); at >= 0; at = text.indexOf('=', at + 1)) {
    const node = at - 43 >= from ? byKey.get(text.slice(at - 43, at + 1)) : undefined;
    if (node === undefined) continue;
    out += `${text.slice(from, at - 43)}<new key of ${node}>`;
    from = at + 1;
  }
  return out + text.slice(from);
}
