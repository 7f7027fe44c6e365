/**
 * Issue 10: the baseline's underlay probes (../checks/underlay-probe.ts: the port-forward probe and NAT discovery),
 * started while the facts step still runs, so that the baseline phase only awaits a result that is mostly there.
 * In a cold 4-node `up` in the lab the baseline phase (the probes alone: ~250 ms) was a third of meshctl's time above
 * the floor.
 *
 * When they start: as soon as one node's facts show no live mesh interface, once every node of the run has been
 * sent its facts probe. Why then:
 * - the baseline step runs the probes exactly when some node does not run its interface yet (./registry.ts
 *   meshAlreadyUp), so from that moment they are needed unless the facts gate stops the run; a converged mesh never
 *   starts them (a second `up` sends no command more than before) and a cold one starts them at its first facts;
 * - the local state could say "first build" before any facts, but it only guesses (a state lost, or kept on another
 *   machine), and a wrong guess would cost node work on a converged mesh;
 * - a node's first command carries its run lock and proves root (./lock.ts, ./root-check.ts): a probe command must
 *   never come first, and a node whose lock is not this run's never gets its facts (./up.ts lockingFacts throws
 *   before them), so it never starts the probes.
 *
 * What stays as it was: the gates (the baseline step hands the same result to the same checks: ./registry.ts
 * underlayProbeStep), the commands each node runs (the same ones, earlier), --no-underlay-probes (nothing is
 * started: up does not use this module then), --limit (the same inventory and connections the baseline step would
 * use; the step probes afresh when its nodes are not those the probes started on), and the channel cap: a node runs
 * its facts probe beside at most three probe commands (a watcher, a sender, a name lookup), under the transport's 8.
 *
 * Ending: `end()` stops a probe still running (ProbeSession.stop: every watcher and sender ended as when the probe
 * completes, no sender started after; each remote command is gone within 0.15 s) and waits for it; `up` calls it once
 * its pass of the playbook is over, whatever stopped it (the facts gate, a gate answered no, Ctrl-C). It never rejects.
 */
import type { Inventory } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { runUnderlayProbes } from '../checks/underlay-probe.js';
import { stepNamed, underlayProbeStep, type UnderlayProbeRun } from './registry.js';
import type { Registry } from './runner.js';
import type { NodeStep, NodeValues } from './types.js';

/** A registry whose probe-underlay step uses the probes started during the facts step (see the module doc). */
export interface UnderlayAhead extends Registry {
  /** whether the probes were started during the facts step */
  started(): boolean;
  /** Stops the probes started ahead if they still run, and resolves once they have settled; never rejects. */
  end(): Promise<void>;
}

type Probed = Awaited<ReturnType<UnderlayProbeRun>>;

/** The probes started ahead: on which inventory and connections, how to stop them, and their outcome (never rejects). */
interface Ahead {
  inventory: Inventory;
  connections: ReadonlyMap<string, Connection>;
  stop: AbortController;
  outcome: Promise<{ value: Probed } | { error: unknown }>;
}

/** Whether the step's connections are the very ones the probes started on (same nodes, same connections). */
const sameRun = (a: ReadonlyMap<string, Connection>, b: ReadonlyMap<string, Connection>): boolean =>
  a.size === b.size && [...a].every(([node, connection]) => b.get(node) === connection);

/**
 * `registry` with the baseline's probes started ahead over `connections` (the run's, by node name: the ones the
 * runner hands its steps). Only the registry's own probe-underlay step is replaced (a test's stand-in is left
 * alone), and gather-facts only watched: its plan and outputs are the registry's.
 */
export function withUnderlayAhead(registry: Registry, connections: ReadonlyMap<string, Connection>): UnderlayAhead {
  let ahead: Ahead | undefined;
  const sent = new Set<string>();
  const start = (inventory: Inventory) => {
    const stop = new AbortController();
    const outcome = runUnderlayProbes(inventory, connections, { signal: stop.signal }).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    ahead = { inventory, connections, stop, outcome };
  };
  const end = async () => {
    if (!ahead) return;
    ahead.stop.abort();
    await ahead.outcome;
  };
  const probe: UnderlayProbeRun = async (inventory, stepConnections) => {
    const early = ahead;
    if (early && early.inventory === inventory && sameRun(stepConnections, early.connections)) {
      const outcome = await early.outcome;
      if ('error' in outcome) throw outcome.error;
      return outcome.value;
    }
    await end();
    return runUnderlayProbes(inventory, stepConnections);
  };
  return {
    started: () => ahead !== undefined,
    end,
    check: (name) => registry.check(name),
    step(name) {
      const step = registry.step(name);
      if (name === 'probe-underlay' && step !== undefined && step === stepNamed(name)) return underlayProbeStep(probe);
      if (name !== 'gather-facts' || step?.scope !== 'node') return step;
      const watched: NodeStep = {
        ...step,
        plan(input) {
          sent.add(input.node.name);
          return step.plan(input);
        },
        outputs(input, action, result) {
          const provided = step.outputs(input, action, result);
          const facts = (provided as Partial<NodeValues>).facts;
          if (!ahead && facts && facts.live === undefined && [...connections.keys()].every((node) => sent.has(node)))
            start(input.inventory);
          return provided;
        },
      };
      return watched;
    },
  };
}
