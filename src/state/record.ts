/**
 * The local state (./state.ts) as the commands use it: the public keys it knows, and recording what a run learnt.
 * Recording never fails a run: an unwritable directory is a warning (the state is a cache).
 */
import type { Plan } from '../engine/plan.js';
import type { Inventory } from '../inventory/types.js';
import { shellQuote } from '../remote/shell.js';
import { departedNodes, readState, updateState, writeState, type DepartedNode, type LastApply, type MeshState } from './state.js';

/** The public keys the state of this inventory knows, by node name. */
export function statePublicKeys(inventory: Inventory): Map<string, string> {
  const state = readState(inventory.source, inventory.mesh.interface);
  return new Map(Object.entries(state.nodes).map(([name, n]) => [name, n.publicKey]));
}

/** What a changing run tells the state. */
export interface RunRecord {
  command: LastApply['command'];
  result: string;
  /** the nodes the run worked on */
  nodes: string[];
  limit?: string[];
  publicKeys: Record<string, string>;
  /** the run reached every node of the inventory and converged: nodes no longer in it are dropped from the state */
  complete: boolean;
  /** the run's plan; the state keeps only its record (recordedPlan) */
  plan?: Plan;
  /** nodes to drop from the state (`down --purge`: their keys are gone) */
  forget?: string[];
  /** the pairs relayed after a failed direct handshake, as the run left them (absent: unchanged) */
  fallbackRelays?: readonly string[];
}

/**
 * What the state keeps of a run's plan: per phase, node and action the step, the changes in words and as values
 * (files by sha256 before and after, a config diff by its line count), without the scripts and config diffs
 * themselves (not even their digest: hashing ~430 MB of scripts at 1,000 nodes costs a second nobody reads). Issue 10: those are N^2 text (every node's config lists every peer), 496 MB of state at 1,000 nodes;
 * nothing reads them back (the state's readers take the public keys and fallbackRelays only; lastApply is a record
 * for people), and `up --json` / `plan --json` still print the whole plan. Pure.
 */
export function recordedPlan(plan: Plan): unknown {
  return {
    ...plan,
    phases: plan.phases.map((phase) => ({
      ...phase,
      nodes: phase.nodes.map((node) => ({
        ...node,
        actions: node.actions.map(({ script: _script, changes, ...action }) => ({
          ...action,
          changes: changes.map((change) => {
            if (change.kind !== 'write-file' || !change.diff) return change;
            const { diff, ...rest } = change;
            return { ...rest, diffLines: diff.length };
          }),
        })),
      })),
    })),
  };
}

/**
 * Updates and writes the state of `inventory` after a run; returns the file written, or a warning when it could not
 * be written.
 */
export function recordRun(inventory: Inventory, record: RunRecord, now = new Date()): { path?: string; warning?: string } {
  try {
    const before: MeshState = readState(inventory.source, inventory.mesh.interface);
    const lastApply: LastApply = {
      at: now.toISOString(),
      command: record.command,
      result: record.result,
      nodes: record.nodes,
      ...(record.limit ? { limit: record.limit } : {}),
      ...(record.plan !== undefined ? { plan: recordedPlan(record.plan) } : {}),
    };
    const after = updateState(
      before,
      inventory,
      { publicKeys: new Map(Object.entries(record.publicKeys)) },
      {
        now,
        complete: record.complete,
        lastApply,
        ...(record.forget ? { forget: record.forget } : {}),
        ...(record.fallbackRelays ? { fallbackRelays: record.fallbackRelays } : {}),
      },
    );
    return { path: writeState(inventory.source, after) };
  } catch (error) {
    return { warning: `could not write the local state next to ${inventory.source}: ${(error as Error).message}` };
  }
}

/**
 * The inventory with the pairs its local state says were relayed after a failed direct handshake (relay: auto),
 * so that up, plan and verify plan them as the nodes run them. Pairs naming a node the inventory lacks are dropped.
 */
export function inventoryWithFallbacks(inventory: Inventory): Inventory {
  const names = new Set(inventory.nodes.map((n) => n.name));
  const pairs = (readState(inventory.source, inventory.mesh.interface).fallbackRelays ?? []).filter((p) =>
    p.split(' ').every((name) => names.has(name)),
  );
  return pairs.length ? { ...inventory, mesh: { ...inventory.mesh, fallbackRelays: pairs } } : inventory;
}

/**
 * What `plan` and `up` say of a node the local state knows and the inventory no longer names (Q3 finding 8): that
 * its peer is (or was) removed from the others, that its OWN interface is left up, and the command that takes it
 * down with the inventory the operator has now (`down` reaches it through the SSH target the state kept). `limit`:
 * the run's --limit (the peer goes from those nodes only). One line, no trailing newline.
 */
export function departedNote(gone: DepartedNode, inventory: Pick<Inventory, 'source' | 'mesh'>, limit?: readonly string[]): string {
  const down = `meshctl down ${shellQuote(inventory.source)} ${shellQuote(gone.name)}`;
  const iface = inventory.mesh.interface;
  const peer = `its peer (${gone.publicKey.slice(0, 10)}…)`;
  if (!gone.ssh)
    return `note: ${gone.name} is no longer in the inventory: ${peer} is removed from ${limit ? 'the nodes in --limit' : 'every node'}; its own ${iface} stays up, and this state does not know how to reach it: take it down with \`meshctl down OLD-INVENTORY ${shellQuote(gone.name)}\`, OLD-INVENTORY one that still names it`;
  if (gone.departed)
    return `note: ${gone.name} left the inventory (${peer} was removed from every node at ${gone.departed}) but its own ${iface} was not taken down: \`${down}\` does it (\`${down} --forget\` if the node is gone for good)`;
  return `note: ${gone.name} is no longer in the inventory: ${peer} is removed from ${limit ? 'the nodes in --limit' : 'every node'}; its own ${iface} stays up until \`${down}\` takes it down`;
}

/** departedNote for every node the state of `inventory` knows and the inventory does not name, by name. */
export function departedNotes(inventory: Inventory, limit?: readonly string[]): string[] {
  // a renamed node (the same machine as an inventory node) is no node to take down: no note sends `down` at it
  return departedNodes(readState(inventory.source, inventory.mesh.interface), inventory)
    .filter((gone) => gone.sameMachineAs === undefined)
    .map((gone) => departedNote(gone, inventory, limit));
}
