/**
 * The underlay probes of the baseline (issue 11), run as one mesh step before anything is installed: the
 * port-forward probe (./forward-probe.ts) and NAT discovery (./nat-discovery.ts) at the same time, over the run's
 * own connections (no extra SSH login), each node running at most two short commands at once.
 *
 * Speed: the first try (FAST_PROBE) sends as soon as the watchers listen and ends once every datagram it expects
 * has arrived where it should (ProbeSession in ./forward-probe.ts): a few tenths of a second on a correct mesh, at
 * most its 2 s window otherwise. A probe that missed something (a forward seen by nobody, a NATed node that did not
 * reach every observer) is tried once more with THOROUGH_PROBE (6 s at most), so a node slow to start its watcher
 * is not mistaken for a broken forward; a correct mesh pays for the short try only.
 */
import type { Inventory } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { type ForwardProbeReport, forwardProbeMissed, runForwardProbe, THOROUGH_PROBE } from './forward-probe.js';
import { type NatDiscoveryReport, natDiscoveryMissed, runNatDiscovery } from './nat-discovery.js';

/** What the baseline's probes found, the same value for every node of the run; or why they were not run. */
export type UnderlayProbes =
  /** `warn`: the checks warn (skipped by the operator), else they pass (the mesh's own handshakes are the evidence) */
  { skipped: string; warn?: boolean } | { forward: ForwardProbeReport; nat: NatDiscoveryReport; tries: 1 | 2 };

/**
 * Runs both probes on `connections` (node name -> the run's open connection), and once more, slowly, the one that
 * missed something. Never throws for a node (see runForwardProbe, runNatDiscovery). `signal`: once it aborts, both
 * probes stop (ProbeSession.stop: nothing left running on any node), none is tried again, and the result is no
 * verdict (for a caller that no longer wants one: ../engine/underlay-ahead.ts).
 */
export async function runUnderlayProbes(
  inventory: Inventory,
  connections: ReadonlyMap<string, Connection>,
  { signal }: { signal?: AbortSignal } = {},
): Promise<Exclude<UnderlayProbes, { skipped: string; warn?: boolean }>> {
  const [forward, nat] = await Promise.all([
    runForwardProbe(inventory, connections, { signal }),
    runNatDiscovery(inventory, connections, { signal }),
  ]);
  const forwardAgain = forwardProbeMissed(forward);
  const natAgain = natDiscoveryMissed(nat);
  if ((!forwardAgain && !natAgain) || signal?.aborted) return { forward, nat, tries: 1 };
  const slow = { timing: THOROUGH_PROBE, signal };
  const [forward2, nat2] = await Promise.all([
    forwardAgain ? runForwardProbe(inventory, connections, slow) : forward,
    natAgain ? runNatDiscovery(inventory, connections, slow) : nat,
  ]);
  return { forward: forward2, nat: nat2, tries: 2 };
}
