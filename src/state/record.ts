/**
 * The local state (./state.ts) as the commands use it: the public keys it knows, and recording what a run learnt.
 * Recording never fails a run: an unwritable directory is a warning (the state is a cache).
 */
import type { Inventory } from '../inventory/types.js';
import { readState, updateState, writeState, type LastApply, type MeshState } from './state.js';

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
  plan?: unknown;
  /** nodes to drop from the state (`down --purge`: their keys are gone) */
  forget?: string[];
  /** the pairs relayed after a failed direct handshake, as the run left them (absent: unchanged) */
  fallbackRelays?: readonly string[];
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
      ...(record.plan !== undefined ? { plan: record.plan } : {}),
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
