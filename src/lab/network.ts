/** Applies a LabPlan's networks: namespaces, veths made between lab namespaces, bridges, addresses, routes, NAT. */
import type { LabPlan } from './plan.js';
import * as sys from './sys.js';

export async function applyNetwork(plan: LabPlan, firewall: 'iptables' | 'nft', created: (ns: string) => void): Promise<void> {
  for (const ns of plan.namespaces) {
    await sys.netnsAdd(ns.name);
    created(ns.name);
  }
  await settleAll(
    plan.namespaces.map(async (ns) => {
      await sys.sysctlIn(ns.name, sys.nsSysctls(ns));
      await sys.ipBatch(ns.name, sys.ipBatchFor(ns, 'create'));
    }),
  );
  // Each veth is created inside one lab namespace with its peer moved straight into another: never in the host's.
  for (const link of plan.links) await sys.vethAdd(link.a.ns, link.a.ifname, link.b.ns, link.b.ifname);
  await settleAll(plan.namespaces.map((ns) => sys.ipBatch(ns.name, sys.ipBatchFor(ns, 'configure'))));
  await settleAll(plan.namespaces.filter((ns) => ns.nat).map((ns) => sys.applyNat(ns.name, ns.nat!, firewall)));
}

/** Waits for every promise; throws one error naming every failure (not only the first). */
export async function settleAll<T>(work: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(work);
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length > 0) {
    const messages = failures.map((f) => (f.reason instanceof Error ? f.reason.message : String(f.reason)));
    const error = new Error(failures.length === 1 ? messages[0] : `${failures.length} failures: ${messages.join('; ')}`);
    throw error;
  }
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
