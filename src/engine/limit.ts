/**
 * `--limit NODE[,NODE...]` (Ansible's term): a run that works on some nodes of the inventory and leaves the others
 * exactly as they are. The classic failure of running a role on a subset is that the subset's configs are rendered
 * from the subset, so every node outside it vanishes from their peers. Here the run's node set and the mesh's design
 * are kept apart: the runner (./runner.ts) works on the limited inventory (only those nodes are contacted for
 * changes, locked, planned and judged), while every step, check and the ping matrix see the WHOLE inventory and
 * the public keys of the nodes outside the limit (read from them read-only, or from the local state:
 * ../state/state.ts). The registry given to the runner does that substitution (`membershipRegistry`); it also
 * records every public key the run learns, for the local state.
 */
import type { Inventory } from '../inventory/types.js';
import { MeshctlError } from '../errors.js';
import { sh } from '../remote/shell.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';
import type { Registry } from './runner.js';
import type { Connector } from './up.js';
import type { CheckDefinition, MeshStep, NodeStep, NodeValues, PublicKeyValue, StepInput } from './types.js';
import { checkDeadlineMs } from '../transport/types.js';
import { InterruptedError, isLoginCut } from '../interrupted.js';

/** commander's collector for a repeatable option (`--limit a --limit b,c`). */
export const collectValues = (value: string, previous: string[] = []): string[] => [...previous, value];

/**
 * The node names of `--limit` values: each value a comma-separated list (the flag may be repeated), blanks ignored,
 * duplicates dropped, inventory order kept. Throws MeshctlError (bad input, exit 2) naming every unknown name, or
 * when nothing is left.
 */
export function resolveLimit(inventory: Pick<Inventory, 'nodes' | 'source'>, values: readonly string[]): string[] {
  const asked = values
    .flatMap((v) => v.split(','))
    .map((n) => n.trim())
    .filter((n) => n.length > 0);
  const known = new Set(inventory.nodes.map((n) => n.name));
  const unknown = [...new Set(asked.filter((n) => !known.has(n)))];
  if (unknown.length)
    throw new MeshctlError(
      `--limit names ${unknown.length === 1 ? 'a node' : 'nodes'} not in ${inventory.source}: ${unknown.join(', ')}`,
      'badInput',
      [`nodes in the inventory: ${[...known].join(', ')}`],
    );
  if (asked.length === 0) throw new MeshctlError('--limit names no node', 'badInput');
  const wanted = new Set(asked);
  return inventory.nodes.filter((n) => wanted.has(n.name)).map((n) => n.name);
}

/** The inventory with only `names` in it: the nodes a limited run works on (same mesh, sites and source). */
export function limitInventory(inventory: Inventory, names: readonly string[]): Inventory {
  const keep = new Set(names);
  return { ...inventory, nodes: inventory.nodes.filter((n) => keep.has(n.name)) };
}

/**
 * Read-only: prints the node's WireGuard public key, from the running interface, else from IFACE.pub. Never reads
 * the private key.
 */
export const publicKeyProbeScript = (iface: string): string =>
  sh`wg show ${iface} public-key 2>/dev/null || cat ${wireguardPaths(iface).publicKey} 2>/dev/null || true`.text;

/** The key from publicKeyProbeScript's output, or undefined when the node has none (not set up yet). */
export function parsePublicKeyProbe(stdout: string): string | undefined {
  const first = stdout.trim().split('\n')[0]?.trim() ?? '';
  return looksLikeWireGuardKey(first) ? first : undefined;
}

export interface MembershipOptions {
  /** the whole inventory: what configs are rendered from and checks judge against */
  whole: Inventory;
  /** public keys of the nodes outside the run (by name) */
  outsideKeys: ReadonlyMap<string, string>;
  /** told every public key a step provides that is known (not a dry run's stand-in) */
  onPublicKey?: (node: string, key: string) => void;
}

type AnyInput = StepInput<never> & { mesh: ReadonlyMap<string, Partial<NodeValues>> };

/**
 * A registry whose steps and checks see the whole inventory and, in their `mesh`, the outside nodes' public keys.
 * With no node outside the run it changes nothing but the recording of public keys.
 */
export function membershipRegistry(base: Registry, options: MembershipOptions): Registry {
  const outside: [string, Partial<NodeValues>][] = [...options.outsideKeys].map(([name, key]) => [
    name,
    { publicKey: { key, created: false, known: true } satisfies PublicKeyValue },
  ]);
  const widen = <I extends { inventory: Inventory }>(input: I): I => ({ ...input, inventory: options.whole });
  const widenStep = (input: AnyInput): AnyInput => {
    if (outside.length === 0) return widen(input);
    const mesh = new Map(input.mesh);
    // a node outside the run provides only its public key: enough for rendering, which reads nothing else of peers
    for (const [name, values] of outside) if (!mesh.has(name)) mesh.set(name, values);
    return { ...widen(input), mesh };
  };
  return {
    step(name) {
      const step = base.step(name);
      if (!step) return step;
      if (step.scope === 'mesh') return wrapMeshStep(step, options.whole);
      const wrapped: NodeStep = {
        ...step,
        plan: (input) => step.plan(widenStep(input as AnyInput) as never),
        outputs(input, action, result) {
          const out = step.outputs(widenStep(input as AnyInput) as never, action, result);
          const key = (out as Partial<NodeValues>).publicKey;
          if (key?.known) options.onPublicKey?.(input.node.name, key.key);
          return out;
        },
      };
      return wrapped;
    },
    check(name) {
      const check = base.check(name);
      if (!check) return check;
      const wrapped: CheckDefinition = { ...check, evaluate: (input) => check.evaluate(widen(input)) };
      return wrapped;
    },
  };
}

/** The ping matrix over the whole inventory from the nodes of the run; the rows of nodes outside it are left out. */
function wrapMeshStep(step: MeshStep, whole: Inventory): MeshStep {
  return {
    ...step,
    async run(input) {
      const output = await step.run({ ...input, inventory: whole });
      if (!output.matrix) return output;
      const inRun = new Set(input.nodes.map((n) => n.node.name));
      const cells = Object.fromEntries(Object.entries(output.matrix.cells).filter(([from]) => inRun.has(from)));
      return { ...output, matrix: { ...output.matrix, cells } };
    },
  };
}

/** The least time an outside node whose key the state holds is waited for after the run's nodes are connected, ms. */
export const OUTSIDE_GRACE_MIN_MS = 1000;

/**
 * When a limited run stops waiting for the outside nodes whose key the local state holds (gatherOutsideKeys'
 * `giveUp`, finding 8): once its own nodes are connected (`connected` settles), as long again as that took, and at
 * least OUTSIDE_GRACE_MIN_MS: an outside node as quick to answer as the run's own nodes is read, one that is not
 * (down, its SSH port dropped) costs the run that much instead of the whole connect timeout. `startedMs` is
 * performance.now() when the run's connections began.
 */
export function outsideGiveUp(connected: Promise<unknown>, startedMs: number): Promise<void> {
  const settled = connected.then(
    () => undefined,
    () => undefined,
  );
  return settled.then(
    () =>
      new Promise<void>((resolve) => {
        const tookMs = performance.now() - startedMs;
        setTimeout(resolve, Math.max(OUTSIDE_GRACE_MIN_MS, tookMs));
      }),
  );
}

/** Where the outside nodes' public keys came from, and whose could not be had. */
export interface OutsideKeys {
  keys: Map<string, string>;
  /** nodes whose key was taken from the local state (they did not answer, or not before `giveUp`) */
  fromState: string[];
  /** of `fromState`, the nodes not waited for: their answer had not come when `giveUp` resolved (finding 8) */
  notWaited: string[];
  /** nodes with no key at all: why (not reachable and not in the state, or no key on the node) */
  missing: { node: string; why: string }[];
}

/** What gatherOutsideKeys learnt from one node: its key, or why there is none. */
interface KeyRead {
  key?: string;
  error?: string;
  /** the error is the interrupt's: its login or its read was cut short by Ctrl-C */
  cut?: boolean;
}

/** Connects to `nodes` (one connectAll) and reads each one's public key; the connections are closed before it returns. */
async function readKeys(connector: Pick<Connector, 'connectAll'>, nodes: Inventory, signal: AbortSignal): Promise<Map<string, KeyRead>> {
  const read = new Map<string, KeyRead>();
  if (nodes.nodes.length === 0) return read;
  const { connections, failures, close } = await connector.connectAll(nodes);
  try {
    const script = publicKeyProbeScript(nodes.mesh.interface);
    await Promise.all(
      [...connections].map(async ([name, connection]) => {
        const run = await connection.run(script, { timeoutMs: checkDeadlineMs(15_000), signal }).catch((e: Error) => e);
        const key = run instanceof Error ? undefined : parsePublicKeyProbe(run.stdout);
        read.set(
          name,
          run instanceof Error ? { error: run.message, ...(signal.aborted ? { cut: true } : {}) } : key !== undefined ? { key } : {},
        );
      }),
    );
    for (const [name, error] of failures)
      if (!read.has(name)) read.set(name, { error: error.message, ...(isLoginCut(name, error) ? { cut: true } : {}) });
    return read;
  } finally {
    await close();
  }
}

/**
 * Ctrl-C while the outside nodes' keys were read (`signal` aborted, and some node's key not read yet: its login or
 * its read cut short, or not waited for): the InterruptedError (stage outside-keys, ../interrupted.ts) that says which
 * keys were read and which not yet; nothing was changed (the keys are read before the run's lock and phases). Undefined
 * when there was no interrupt, or every outside node had answered before it (the run then goes on to report it).
 */
function interruptedReads(outside: Inventory, answered: ReadonlyMap<string, KeyRead>, signal: AbortSignal): InterruptedError | undefined {
  if (!signal.aborted) return undefined;
  const nodes = outside.nodes.map((n) => n.name);
  const notYet = nodes.filter((n) => !answered.has(n) || answered.get(n)!.cut);
  if (notYet.length === 0) return undefined;
  return new InterruptedError({
    result: 'interrupted',
    stage: 'outside-keys',
    nodes,
    reached: nodes.filter((n) => answered.has(n) && answered.get(n)!.error === undefined),
    notYet,
    failed: nodes.flatMap((node) => {
      const read = answered.get(node);
      return read?.error !== undefined && !read.cut ? [{ node, error: read.error }] : [];
    }),
    changed: false,
  });
}

/**
 * The public keys of the nodes outside a limited run: read-only from each node (the live key is the truth), from
 * `fallback` (the local state) for a node that cannot be reached. Connections are closed before it returns, except
 * those not waited for (below), which close themselves when their answer comes.
 *
 * `giveUp` (finding 8: `up --limit a-1` waited the whole 10 s connect timeout for an outside node whose key the
 * state held, its phases 0.8 s): the outside nodes whose key the state holds are read each on its own, and once
 * `giveUp` resolves (or rejects) no longer waited for: a node whose answer has not come by then is planned with its
 * key from the state (`fromState` and `notWaited`), and its late answer is not used; one that answered in time is
 * planned with its live key. The nodes the state
 * has no key for are always waited for (without a key the configs cannot be rendered). Without `giveUp`, every node
 * is waited for, as before.
 *
 * Ctrl-C (`signal` aborted) before every outside node answered: rejects with an InterruptedError (../interrupted.ts,
 * stage outside-keys) naming the keys read and those not yet, once the connections it opened are closed. Other
 * failures are the nodes' own: no rejection for them.
 */
export async function gatherOutsideKeys(
  connector: Pick<Connector, 'connectAll'>,
  outside: Inventory,
  fallback: ReadonlyMap<string, string>,
  signal: AbortSignal,
  giveUp?: Promise<unknown>,
): Promise<OutsideKeys> {
  const result: OutsideKeys = { keys: new Map(), fromState: [], notWaited: [], missing: [] };
  if (outside.nodes.length === 0) return result;
  const spare = giveUp ? outside.nodes.filter((n) => fallback.has(n.name)) : [];
  const spared = new Set(spare.map((n) => n.name));
  const waited = readKeys(connector, { ...outside, nodes: outside.nodes.filter((n) => !spared.has(n.name)) }, signal);
  // each spared node read on its own: a live key that came in time is used even when another node is late (a
  // review's finding: read as one group, one node down made every outside key come from the state, which may be older
  // than a key rotated from another machine)
  const late = Symbol('late');
  const gaveUp = giveUp?.then(
    () => late,
    () => late,
  );
  const spareReads = spare.map((node) => {
    const read = readKeys(connector, { ...outside, nodes: [node] }, signal);
    // a failure to connect at all is the node's failure, as connectAll reports it
    read.catch(() => undefined);
    return gaveUp ? Promise.race([read, gaveUp]) : read;
  });
  const [first, ...seconds] = await Promise.all([waited, ...spareReads]);
  const answered = new Map<string, KeyRead>(first);
  const lateNodes = new Set<string>();
  seconds.forEach((second, i) => {
    if (typeof second === 'symbol') lateNodes.add(spare[i]!.name);
    else for (const [name, read] of second) answered.set(name, read);
  });
  const cut = interruptedReads(outside, answered, signal);
  if (cut) throw cut;
  for (const node of outside.nodes) {
    const got = answered.get(node.name);
    if (got?.key) result.keys.set(node.name, got.key);
    else if ((!got || got.error) && fallback.has(node.name)) {
      result.keys.set(node.name, fallback.get(node.name)!);
      result.fromState.push(node.name);
      if (lateNodes.has(node.name)) result.notWaited.push(node.name);
    } else if (got && !got.error)
      result.missing.push({ node: node.name, why: `${node.name} has no WireGuard key yet (not set up): include it in --limit` });
    else {
      const why = got?.error ?? 'not reached';
      result.missing.push({ node: node.name, why: `${node.name}: ${why}, and the local state has no key for it` });
    }
  }
  return result;
}
