/**
 * `meshctl rotate-keys` (issue 9): a new key pair on a node, every peer updated, the old key gone, with a bounded
 * interruption. Per rotated node, in this order:
 * 1. every node prints its public keys; the rotated node also makes IFACE.key.new on the node (umask 077) and
 *    prints only its public half (../steps/keys.ts rotateReadScript): the private key never leaves the node;
 * 2. every peer gets its config rendered with the new public key (the file `up` would write) and is synced from
 *    it as `wg syncconf` would (../render/systemd.ts syncPeersCommand: only what differs is sent), keeping its key,
 *    its interface and its other peers' sessions. From here the pairs with the rotated node are
 *    down: the peers know only the new key, the node still runs the old one;
 * 3. the rotated node swaps: `wg set IFACE private-key IFACE.key.new`, rename over IFACE.key (the old key file is
 *    gone), IFACE.pub rewritten, one ping per peer to start the new handshakes at once.
 * The window between 2 and 3 is one round trip plus one handshake; it is measured (`windowMs`: from the first peer
 * update sent to the swap done). A peer that cannot be updated aborts the rotation before the swap: the peers
 * already updated get their old config back, IFACE.key.new is removed, and the node keeps its old key.
 * Nodes are rotated one after another; the ping matrix afterwards is the proof.
 */
import type { Inventory, Node } from '../inventory/types.js';
import { checkDeadlineMs, type Connection, type ExecResult } from '../transport/types.js';
import { desiredNodeConfig } from '../topology/desired.js';
import { renderWgQuickConfig } from '../render/wgquick.js';
import { syncPeersCommand } from '../render/systemd.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { atomicWriteScript } from '../steps/action.js';
import { discardNewKeyScript, parseRotateRead, rotateReadScript, swapKeyScript } from '../steps/keys.js';
import { redactSecrets } from '../remote/redact.js';

/** What happened to one rotated node. */
export interface RotationReport {
  node: string;
  ok: boolean;
  /** public keys, before and after (after = before when the rotation was given up) */
  oldPublicKey?: string;
  newPublicKey?: string;
  /** a IFACE.key.new left by an interrupted rotation was used */
  reusedPendingKey: boolean;
  /** peers whose config and live interface now carry the new key */
  peersUpdated: string[];
  /** ms from the first peer update sent to the key swapped on the node: the pairs with it were down meanwhile */
  windowMs?: number;
  error?: string;
}

export interface RotateContext {
  inventory: Inventory;
  connections: ReadonlyMap<string, Connection>;
  signal: AbortSignal;
}

const run = async (connection: Connection, script: string, signal: AbortSignal, what: string): Promise<ExecResult> => {
  const result = await connection.run(script, { timeoutMs: checkDeadlineMs(60_000), signal });
  if (result.code !== 0)
    throw new Error(
      `${what} failed (exit ${result.code}): ${redactSecrets((result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | '))}`,
    );
  return result;
};

/** The script that writes a peer's rendered config (keeping .bak) and syncs its live interface from it. */
function peerUpdateScript(inventory: Inventory, peer: string, keys: ReadonlyMap<string, string>): string {
  const iface = inventory.mesh.interface;
  const p = wireguardPaths(iface);
  const text = renderWgQuickConfig(desiredNodeConfig(inventory, peer, keys));
  return ['set -e', atomicWriteScript(p.config, text, { backup: true, label: 'config' }), syncPeersCommand(iface, p.privateKey)].join('\n');
}

/** Reads every node's public key (and makes the rotated node's new key): round trip 1, all nodes at once. */
async function readKeys(ctx: RotateContext, rotated: string) {
  const iface = ctx.inventory.mesh.interface;
  const entries = await Promise.all(
    ctx.inventory.nodes.map(async (node) => {
      const result = await run(
        ctx.connections.get(node.name)!,
        rotateReadScript(iface, { generate: node.name === rotated }),
        ctx.signal,
        `reading the keys of ${node.name}`,
      );
      return [node.name, parseRotateRead(result.stdout)] as const;
    }),
  );
  return new Map(entries);
}

/** Rotates one node's key (see the module doc); never throws for a node's failure, reports it. */
export async function rotateNode(ctx: RotateContext, node: Node): Promise<RotationReport> {
  const { inventory, connections, signal } = ctx;
  const iface = inventory.mesh.interface;
  const report: RotationReport = { node: node.name, ok: false, reusedPendingKey: false, peersUpdated: [] };
  let read: Awaited<ReturnType<typeof readKeys>>;
  try {
    read = await readKeys(ctx, node.name);
  } catch (error) {
    return { ...report, error: (error as Error).message };
  }
  const self = read.get(node.name)!;
  report.oldPublicKey = self.current;
  report.reusedPendingKey = self.reused;
  const oldKeys = new Map([...read].map(([name, r]) => [name, r.current]));
  const newKeys = new Map(oldKeys).set(node.name, self.next!);
  const peers = inventory.nodes.filter((n) => n.name !== node.name);
  const started = Date.now();
  const updates = await Promise.allSettled(
    peers.map((peer) => run(connections.get(peer.name)!, peerUpdateScript(inventory, peer.name, newKeys), signal, `updating ${peer.name}`)),
  );
  report.peersUpdated.push(...peers.filter((_, i) => updates[i]!.status === 'fulfilled').map((p) => p.name));
  const failed = updates.flatMap((u) => (u.status === 'rejected' ? [(u.reason as Error).message] : []));
  if (failed.length > 0) {
    // given up before the swap: the updated peers go back to the old key, the new key is thrown away
    await Promise.allSettled(
      report.peersUpdated.map((peer) =>
        run(connections.get(peer)!, peerUpdateScript(inventory, peer, oldKeys), signal, `restoring ${peer}`),
      ),
    );
    await connections
      .get(node.name)!
      .run(discardNewKeyScript(iface), { timeoutMs: checkDeadlineMs(15_000) })
      .catch(() => undefined);
    return { ...report, peersUpdated: [], newPublicKey: self.current, error: `not rotated: ${failed.join('; ')}` };
  }
  try {
    const swapped = await run(
      connections.get(node.name)!,
      swapKeyScript(
        iface,
        peers.map((p) => p.overlayIp),
      ),
      signal,
      `swapping the key on ${node.name}`,
    );
    report.windowMs = Date.now() - started;
    const live = parseRotateRead(`current=${self.next}\n${swapped.stdout}`).live;
    if (live !== self.next) return { ...report, error: `${node.name} runs with ${live ?? 'no key'} after the swap, not the new key` };
  } catch (error) {
    return { ...report, error: `${(error as Error).message}; the peers already expect the new key: run rotate-keys ${node.name} again` };
  }
  return { ...report, ok: true, newPublicKey: self.next! };
}

/** Every node's public key as its key file holds it now (one round trip per node, all at once). */
export async function currentPublicKeys(ctx: RotateContext): Promise<Map<string, string>> {
  const iface = ctx.inventory.mesh.interface;
  const entries = await Promise.all(
    ctx.inventory.nodes.map(async (node) => {
      const result = await run(
        ctx.connections.get(node.name)!,
        rotateReadScript(iface, { generate: false }),
        ctx.signal,
        `reading the key of ${node.name}`,
      );
      return [node.name, parseRotateRead(result.stdout).current] as const;
    }),
  );
  return new Map(entries);
}
