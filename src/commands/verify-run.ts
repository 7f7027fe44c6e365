/**
 * What `verify` needs once it is connected, as ONE module imported once (src/commands/verify.ts): fewer entry points
 * for the bundle's code splitting, so fewer files for node's module loader (see ./up-run.ts; issue 10: start-up).
 * Its `verifyConnected` is the command's whole path from the connections to the report, so the in-process bench
 * (scripts/bench/farm/verify-cost.ts) runs exactly what the command runs.
 */
import { setFlagsFromString } from 'node:v8';
import type { Inventory } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { collectVerify, knownPublicKeys } from '../checks/collect.js';
import { redactDeep } from '../remote/redact.js';
import { evaluateVerify, evaluateVerifyCompact, withStateKeys } from '../checks/verify.js';
import { desiredMesh } from '../topology/desired.js';
import { buildReport, type VerifyReport } from '../checks/report.js';
import { sudoOf } from '../engine/root-check.js';

export { collectVerify, knownPublicKeys } from '../checks/collect.js';
export { redactDeep } from '../remote/redact.js';
export { evaluateVerify, evaluateVerifyCompact } from '../checks/verify.js';
export { buildReport, renderReport } from '../checks/report.js';
export { sudoOf } from '../engine/root-check.js';

/**
 * V8's heap growth in verify's process, percent (V8's `--heap-growing-percent`, read at every full collection): the
 * old generation grows to 1.5 times what the last full collection left before the next one. V8's own factor let the
 * heap reach 2.2-3.9 times the live heap in bench:verify at 1,000 nodes (1.1-1.9 GB of heap for ~0.5 GB live: a
 * 1.5-2.1 GB peak RSS); with 50, 957 and 1,035 MiB, the CPU within the runs' spread (docs/farm.md, verify's F3
 * section). 30 did not lower the peak measurably and 20 lowered it by ~120 MiB for nearly twice the major collections
 * (one run each at 1,000 nodes: docs/farm.md, F4's section). Set for the whole process, which is verify's own.
 */
export const VERIFY_HEAP_GROWING_PERCENT = 50;

/** verify's stages after the logins, in order (VerifyConnectedOptions.onStage). */
export type VerifyStage = 'collect' | 'evaluate' | 'report';

export interface VerifyConnectedOptions {
  /** probe the path MTU of every pair (--no-mtu: false) */
  pathMtu: boolean;
  /** ping deadline per pair, s */
  deadlineSeconds: number;
  signal?: AbortSignal;
  /** a warning fails the run too */
  strict: boolean;
  /**
   * list every passing per-peer and per-pair check in `checks`, every cell of the matrix and every path (--all-checks,
   * --verbose) instead of counting them and listing only what does not pass
   */
  allChecks: boolean;
  /** when the command started (Date.now()) and how long the logins took, ms: the report's durationMs and timings */
  started: number;
  connectMs: number;
  /**
   * reads the public keys of the local state (`<inventory>.state.json`, statePublicKeys), by node; called only when
   * a node was not reached and its key is unknown: its peers are then judged with its key from there (finding 5);
   * none: as before (its key unknown)
   */
  stateKeys?: () => ReadonlyMap<string, string>;
  /** told as each stage begins (the in-process bench times them) */
  onStage?: (stage: VerifyStage) => void;
}

/**
 * verify on connected nodes: collects (../checks/collect.ts), judges (../checks/verify.ts; passing per-peer and
 * per-pair checks counted unless `allChecks`), redacts every key-shaped value but the mesh's public keys, and builds
 * the report. `undefined` when `signal` was aborted during the collection.
 */
export async function verifyConnected(
  inventory: Inventory,
  connections: Map<string, Connection>,
  failures: Map<string, Error>,
  options: VerifyConnectedOptions,
): Promise<{ report: VerifyReport; unreachable: number } | undefined> {
  setFlagsFromString(`--heap-growing-percent=${VERIFY_HEAP_GROWING_PERCENT}`);
  options.onStage?.('collect');
  const gathered = await collectVerify(inventory, connections, failures, {
    pathMtu: options.pathMtu,
    deadlineSeconds: options.deadlineSeconds,
    ...(options.signal ? { signal: options.signal } : {}),
    proveRoot: sudoOf(inventory, connections),
    // the judging reads a wg-quick file only when its sha256 is not the design's (../checks/verify.ts nodeChecks)
    lazyConfig: true,
    // the live peers and route lookups kept as numbers until the judging (../checks/live-peers.ts)
    compact: true,
    // the compact judging lists no passing cold-start direction: they are counted as the probe ends
    ...(options.allChecks ? {} : { countPasses: true }),
  });
  if (options.signal?.aborted) return undefined;
  options.onStage?.('evaluate');
  const collected = withStateKeys(gathered, options.stateKeys, desiredMesh);
  // node content in messages and evidence: every key-shaped value but the mesh's public keys is redacted (the keys
  // read first: the compact judging lets each node's checklist go once judged)
  const known = knownPublicKeys(collected);
  const verdicts = options.allChecks
    ? { checks: evaluateVerify(collected), passed: [] }
    : evaluateVerifyCompact(collected, { release: true });
  const checks = redactDeep(verdicts.checks, known);
  options.onStage?.('report');
  const report = buildReport(inventory, checks, collected.matrix, collected.unreachable, Date.now() - options.started, {
    strict: options.strict,
    passed: verdicts.passed,
    allChecks: options.allChecks,
    timings: { connectMs: options.connectMs, ...collected.timings },
    // a node that did not run as root counts as not connected (the probe's failure was), so has no channels
    channels: Object.fromEntries(
      [...connections]
        .filter(([name]) => !collected.rootFailed?.has(name))
        .map(([name, c]) => [name, c.stats.channels ?? c.stats.commands]),
    ),
  });
  return { report, unreachable: collected.unreachable.size };
}
