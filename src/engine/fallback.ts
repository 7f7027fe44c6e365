/**
 * relay: auto at the gate (issue 11). The paths planned from the inventory (../topology/paths.ts) say which pairs
 * can connect directly; the underlay may still disagree (a firewall added on one side, a router that changed). So:
 * - when an `up` stops at the ping matrix's gate and some pairs planned direct did not answer, `up` runs once more
 *   with those pairs relayed (`failedDirectPairs`), if both ends are in auto mode and a public node can relay them;
 * - the local state keeps those pairs (`fallbackRelays`), so later runs plan them relayed (a second run changes
 *   nothing);
 * - every later `up` first probes their direct path without touching the tunnels (`pairsBackToDirect`: the
 *   cold-start probe of ../checks/cold-start.ts, a burst of UDP datagrams from a fresh port to the peer's
 *   endpoint while its kernel's UDP counters are read); a pair whose every designed direction arrives is planned
 *   direct again.
 * Pure planning here; the probe's remote work goes through the run's connections.
 */
import type { Inventory } from '../inventory/types.js';
import { pairKey } from '../inventory/types.js';
import type { Matrix } from '../checks/ping-matrix.js';
import { type Direction, judgeDirection, runColdStartPlan } from '../checks/cold-start.js';
import { endpointFor } from '../topology/endpoints.js';
import { pathKind, planPaths, relayCandidates, relayModeOf } from '../topology/paths.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';

/** The inventory with exactly these pairs relayed after a failed handshake (pairKey strings). */
export const withFallbackRelays = (inventory: Inventory, pairs: readonly string[]): Inventory => {
  const { fallbackRelays: _old, ...mesh } = inventory.mesh;
  return { ...inventory, mesh: pairs.length ? { ...mesh, fallbackRelays: [...pairs] } : mesh };
};

/**
 * The pairs planned direct whose ping failed in either direction, that relay: auto may move to a relay (both ends
 * auto, some public node can relay them), as pairKey strings in inventory order. They are judged together, not one
 * by one (RV3 F8): a relay whose leg falls back is no relay (../topology/paths.ts legUsable), so pairs that fail at
 * once can take each other's relays away (a node that lost UDP to both public nodes: each leg relayable alone, none
 * with the other). Only pairs that the plan of all of them together (with the inventory's own fallbacks) relays are
 * kept, the others dropped until that holds; a dropped pair stays direct (and failing: no relay can reach it).
 */
export function failedDirectPairs(inventory: Inventory, matrix: Matrix): string[] {
  let chosen = failedRelayable(inventory, matrix);
  for (;;) {
    if (chosen.length === 0) return chosen;
    const together = planPaths(withFallbackRelays(inventory, [...(inventory.mesh.fallbackRelays ?? []), ...chosen]));
    const relayed = chosen.filter((pair) => {
      const [a, b] = pair.split(' ');
      return pathKind(together, a!, b!) === 'relayed';
    });
    if (relayed.length === chosen.length) return chosen;
    chosen = relayed;
  }
}

/** failedDirectPairs' candidates, each judged alone: planned direct, a ping failed, both ends auto, a relay exists. */
function failedRelayable(inventory: Inventory, matrix: Matrix): string[] {
  const byName = new Map(inventory.nodes.map((n) => [n.name, n]));
  return planPaths(inventory)
    .pairs.filter(({ a, b, path }) => {
      if (path.kind !== 'direct') return false;
      const ab = matrix.cells[a]?.[b];
      const ba = matrix.cells[b]?.[a];
      if (!ab || !ba || (ab.ok && ba.ok)) return false;
      const [x, y] = [byName.get(a)!, byName.get(b)!];
      const auto = relayModeOf(inventory, x) === 'auto' && relayModeOf(inventory, y) === 'auto';
      return auto && relayCandidates(inventory, x, y).length > 0;
    })
    .map(({ a, b }) => pairKey(a, b));
}

/** Every direction in which one node of a fallback pair dials the other (endpointFor), each in its own slot. */
export function fallbackDirections(inventory: Inventory, pairs: readonly string[]): Direction[] {
  const byName = new Map(inventory.nodes.map((n) => [n.name, n]));
  return pairs.flatMap((pair) => {
    const [x, y] = pair.split(' ').map((name) => byName.get(name));
    if (!x || !y) return [];
    return [
      [x, y],
      [y, x],
    ].flatMap(([from, to]) => {
      const endpoint = endpointFor(inventory, from!, to!);
      return endpoint ? [{ from: from!.name, to: to!.name, endpoint }] : [];
    });
  });
}

/**
 * Probes the direct path of every fallback pair (the cold-start probe over the run's connections; tunnels are not
 * touched) and says which pairs may go back to direct: every designed direction of the pair arrived. A pair with a
 * node not connected in this run stays relayed. Round trips: 3 on the nodes of those pairs (counters, bursts,
 * counters), more only when a receiver hears several senders and comes up short.
 */
export async function pairsBackToDirect(
  inventory: Inventory,
  connections: ReadonlyMap<string, Connection>,
  signal?: AbortSignal,
): Promise<string[]> {
  const pairs = (inventory.mesh.fallbackRelays ?? []).filter((p) => p.split(' ').every((name) => connections.has(name)));
  const directions = fallbackDirections(inventory, pairs);
  if (directions.length === 0) return [];
  const result = await runColdStartPlan({ slots: directions.map((d) => [d]) }, async (node, script) => {
    const run = await connections.get(node)!.run(script, { timeoutMs: checkDeadlineMs(30_000), ...(signal ? { signal } : {}) });
    return run.stdout;
  });
  const passed = new Set(result.directions.filter((d) => judgeDirection(d).status === 'pass').map((d) => `${d.from}>${d.to}`));
  return pairs.filter((pair) => {
    const mine = directions.filter((d) => pairKey(d.from, d.to) === pair);
    return mine.length > 0 && mine.every((d) => passed.has(`${d.from}>${d.to}`));
  });
}

/**
 * Whether the nodes kept what one pass of `up` applied: its phase with `enable-service` (`enablePhase`, the one whose
 * gate confirms each node's change, ./revert.ts) ran and went on. With a rollback armed (`rollback`: the default, not
 * `--no-rollback`), a pass interrupted or stopped at or before that gate was reverted (every changed node back on the
 * config it had before the pass), and one that stopped later (the ping gate) kept its configs. Without a rollback
 * nothing is reverted: a pass whose enable phase ran (on any node, even cut short) is kept, since its nodes may run
 * its configs and no revert took them back (RV3 F1: such a pass was recorded as reverted). A dry run applies nothing
 * and is taken as kept (its plan is what it shows).
 * Not known here: an interrupt that lands between that gate's confirm and the next phase (its nodes were confirmed:
 * they keep the change, but the pass reads as reverted).
 */
export function passKept(
  run: { phases: ReadonlyArray<{ id: string; verdict: string }>; stoppedAt?: string },
  enablePhase: string | undefined,
  dryRun: boolean,
  rollback: boolean,
): boolean {
  if (dryRun) return true;
  if (enablePhase === undefined) return false;
  const enable = run.phases.find((p) => p.id === enablePhase);
  if (!rollback) return enable !== undefined;
  return enable !== undefined && enable.verdict === 'GO' && run.stoppedAt !== enablePhase;
}

/**
 * Whether a pass without a rollback may have left its nodes mixed: it ran its enable phase but did not go past its
 * gate (interrupted, or a node failed there), so some nodes may run the pass's configs and others not, and no revert
 * made them agree (`up` again converges them). False with a rollback (./revert.ts took the nodes back) and in a dry run.
 */
export function passMayBeMixed(
  run: { phases: ReadonlyArray<{ id: string; verdict: string }>; stoppedAt?: string },
  enablePhase: string | undefined,
  dryRun: boolean,
  rollback: boolean,
): boolean {
  if (dryRun || rollback || enablePhase === undefined) return false;
  const enable = run.phases.find((p) => p.id === enablePhase);
  return enable !== undefined && (enable.verdict !== 'GO' || run.stoppedAt === enablePhase);
}

/**
 * The fallback pairs the nodes run after an `up` of one or two passes (what the local state may record: Q4 saw an
 * interrupted second pass, reverted on every node, recorded as relayed, and verify then failed 8 checks on the
 * disagreement). `earlier`: the state's pairs before the run; `first`/`second`: each pass's pairs (second undefined
 * when no second pass ran) and whether its nodes kept it (passKept). The newest kept pass wins; none kept: earlier.
 */
export function keptFallbacks(
  earlier: readonly string[],
  first: { pairs: readonly string[]; kept: boolean },
  second?: { pairs: readonly string[]; kept: boolean },
): string[] {
  if (second?.kept) return [...second.pairs];
  if (first.kept) return [...first.pairs];
  return [...earlier];
}

/**
 * Q4 item 6: a relay that died. With `--limit`, the nodes outside the limit are only read for their public key, and
 * one that does not answer (at all, or before the limited nodes were ready: ./limit.ts) has its key taken from the
 * local state; nothing else stopped the run. But the design may
 * relay a pair of the run's nodes through that node (the automatic pick spreads pairs by count, so pinning one pair to
 * the live relay can move another onto the dead one), and `up` would then apply it and STOP at the ping gate with the
 * pair broken (Q4: b-2 <-> c-1 moved from the working p-2 onto the dead p-1). So such a design is refused before
 * anything changes: one line per pair that has an end among `inRun` and is relayed (as `inventory` plans it, fallback
 * relays included) through a node of `unreached`, naming the fix; [] when none. Pure.
 */
export function pairsViaUnreached(inventory: Inventory, unreached: readonly string[], inRun: ReadonlySet<string>): string[] {
  if (unreached.length === 0) return [];
  const dead = new Set(unreached);
  return planPaths(inventory).pairs.flatMap(({ a, b, path }) =>
    path.kind === 'relayed' && dead.has(path.via) && (inRun.has(a) || inRun.has(b))
      ? [
          `${a} <-> ${b} would be relayed via ${path.via}, which did not answer (its key came from the local state): pin the pair to a relay that answers (relay: NODE on ${a} or ${b}, the same on every pair that goes through ${path.via}) or take ${path.via} out of the inventory (README: when a relay dies)`,
        ]
      : [],
  );
}
