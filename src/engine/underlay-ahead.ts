/**
 * Issue 10: the baseline's underlay probes (../checks/underlay-probe.ts: the port-forward probe and NAT discovery),
 * started while the facts step still runs, so that the baseline phase only awaits a result that is mostly there.
 * In a cold 4-node `up` in the lab the baseline phase (the probes alone: ~250 ms) was a third of meshctl's time above
 * the floor.
 *
 * When they start: as soon as one node shows it has no mesh interface, once every node of the run has been sent
 * its facts probe. "No mesh interface" is read from the facts probe's output as it streams in (its `interfaces`
 * section, /sys/class/net, comes early: the lab showed it 150-200 ms before the facts phase ended, while starting at
 * the first whole facts output gained only ~50 ms, the outputs of all nodes arriving within ~40 ms of each other),
 * or else from a node's whole facts (`live` undefined: a transport that does not stream). Why then:
 * - the baseline step runs the probes exactly when some node does not run its interface (./registry.ts
 *   meshAlreadyUp; a node without the interface has no live interface: ../facts/node-facts.ts liveInterface), so
 *   from that moment they are needed unless the facts gate stops the run; a converged mesh never starts them (a
 *   second `up` sends no command more than before) and a cold one starts them at its first node's interface list;
 * - the local state could say "first build" before any facts, but it only guesses (a state lost, or kept on another
 *   machine, or a lab rebuilt under the same inventory), and a wrong guess would cost node work on a converged mesh;
 * - a node's first command carries its run lock and proves root (./lock.ts, ./root-check.ts): no probe command may
 *   come first on any node, so none starts before every node's facts probe was sent; the first node's lock is ours
 *   by then (its lock section comes before its interfaces, and the others' probes are sent only once it is ours).
 *   A later node whose lock another run holds may have watched for 0.15 s before its facts gate STOPs: read only.
 *
 * What stays as it was: the gates (the baseline step hands the same result to the same checks: ./registry.ts
 * underlayProbeStep), the commands each node runs (the same ones, earlier), --no-underlay-probes (up does not use
 * this module then), --limit (the probes run on the inventory and connections the baseline step gets; it probes
 * afresh when its nodes are not those the probes started on), and the channel cap: a node runs its facts probe
 * beside at most three probe commands (a watcher, a sender, a name lookup), under the transport's 8.
 *
 * Ending: a probe nobody will use is stopped (ProbeSession.stop: every watcher and sender ended as when the probe
 * completes, none started after; each remote command is gone within 0.15 s): by `end()`, which `up` calls once its
 * pass of the playbook is over whatever stopped it (the facts gate, a gate answered no, Ctrl-C), and by the baseline
 * step when it does not use it. `end()` waits for the probe to settle and never rejects.
 */
import { runUnderlayProbes } from '../checks/underlay-probe.js';
import { FACTS, readFact } from '../facts/definitions.js';
import { endMarker, splitSections } from '../facts/sections.js';
import type { Inventory } from '../inventory/types.js';
import { type Connection, type RunOptions, withRun } from '../transport/types.js';
import { stepNamed, underlayProbeStep, type UnderlayProbeRun } from './registry.js';
import type { Registry } from './runner.js';
import type { MeshStep, NodeStep, NodeValues } from './types.js';

/** The baseline's probes started during the facts step (see the module doc). */
export interface UnderlayAhead {
  /** the run's connections with each node's facts probe output watched: what the runner must run the steps on */
  readonly connections: ReadonlyMap<string, Connection>;
  /** `own` (the steps' registry) with gather-facts watched and probe-underlay using the probes started ahead */
  registry(own: Registry): Registry;
  /** whether the probes were started during the facts step */
  started(): boolean;
  /** Stops the probes started ahead if they still run, and resolves once they have settled; never rejects. */
  end(): Promise<void>;
}

type Probed = Awaited<ReturnType<UnderlayProbeRun>>;

/** The probes started ahead: on which inventory, how to stop them, and their outcome (never rejects). */
interface Ahead {
  inventory: Inventory;
  stop: AbortController;
  outcome: Promise<{ value: Probed } | { error: unknown }>;
  used: boolean;
}

/** The end line of the facts probe's `interfaces` section, whole (its rc and newline arrived). */
const INTERFACES_END = new RegExp(`${endMarker(FACTS.interfaces.name)} rc=\\d+\\n`);

/**
 * The baseline's probes, to be started ahead over `connections` (the run's, by node name: the ones the runner would
 * hand its steps). Use its `connections` and `registry` for the run, and call `end()` when the run is over.
 */
export function underlayAhead(connections: ReadonlyMap<string, Connection>): UnderlayAhead {
  let ahead: Ahead | undefined;
  /** the inventory the steps get (--limit's whole one), known from the first facts plan */
  let inventory: Inventory | undefined;
  /** nodes whose facts probe was planned: it is their next command */
  const sent = new Set<string>();
  const facing = new Map<string, { interface: string; listenPort: number }>();

  const start = () => {
    if (ahead || !inventory || ![...connections.keys()].every((node) => sent.has(node))) return;
    const stop = new AbortController();
    const outcome = runUnderlayProbes(inventory, watched, { signal: stop.signal }).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    ahead = { inventory, stop, outcome, used: false };
  };
  const end = async () => {
    if (!ahead) return;
    ahead.stop.abort();
    await ahead.outcome;
  };

  /** `node`'s facts probe, its output read as it arrives until its interface list is whole. */
  const watchFacts = (node: string, connection: Connection, script: string, options?: RunOptions) => {
    const target = facing.get(node)!;
    let seen: string | undefined = '';
    const onStdout: RunOptions['onStdout'] = (chunk, endIt) => {
      options?.onStdout?.(chunk, endIt);
      if (seen === undefined) return;
      seen += chunk;
      if (!INTERFACES_END.test(seen)) return;
      const interfaces = readFact(FACTS.interfaces, splitSections(seen), target);
      seen = undefined;
      if (!interfaces.includes(target.interface)) start();
    };
    return connection.run(script, { ...options, onStdout });
  };
  /** nodes whose facts probe ran (the watch is for that command only) */
  const ranFacts = new Set<string>();
  const watched: Map<string, Connection> = new Map(
    [...connections].map(([node, connection]) => [
      node,
      withRun(connection, (script, options) => {
        if (!sent.has(node) || ranFacts.has(node)) return connection.run(script, options);
        ranFacts.add(node);
        return watchFacts(node, connection, script, options);
      }),
    ]),
  );

  /** the probe-underlay step's probes: those started ahead when they ran on these very nodes, else afresh */
  const probe: UnderlayProbeRun = async (stepInventory, stepConnections) => {
    const early = ahead;
    const same =
      early !== undefined &&
      early.inventory === stepInventory &&
      stepConnections.size === watched.size &&
      [...stepConnections].every(([node, connection]) => watched.get(node) === connection);
    if (!same) {
      await end();
      return runUnderlayProbes(stepInventory, stepConnections);
    }
    early.used = true;
    const outcome = await early.outcome;
    if ('error' in outcome) throw outcome.error;
    return outcome.value;
  };

  return {
    connections: watched,
    started: () => ahead !== undefined,
    end,
    registry: (own) => ({
      check: (name) => own.check(name),
      step(name) {
        const step = own.step(name);
        if (name === 'probe-underlay' && step !== undefined && step === stepNamed(name)) {
          const probing = underlayProbeStep(probe);
          const baseline: MeshStep = {
            ...probing,
            async run(input) {
              try {
                return await probing.run(input);
              } finally {
                // not used (every node ran the mesh after all): nothing may keep running
                if (ahead && !ahead.used) await end();
              }
            },
          };
          return baseline;
        }
        if (name !== 'gather-facts' || step?.scope !== 'node') return step;
        const facts: NodeStep = {
          ...step,
          plan(input) {
            inventory = input.inventory;
            facing.set(input.node.name, { interface: input.inventory.mesh.interface, listenPort: input.node.listenPort });
            sent.add(input.node.name);
            return step.plan(input);
          },
          outputs(input, action, result) {
            const provided = step.outputs(input, action, result);
            // a transport that does not stream: the whole facts say it
            const facts = (provided as Partial<NodeValues>).facts;
            if (facts && facts.live === undefined) start();
            return provided;
          },
        };
        return facts;
      },
    }),
  };
}
