/**
 * Runs a playbook: phase by phase, each step on every node in parallel (a barrier after each step), then the
 * phase's checks, then the gate. Per-node failures are recorded on the node and fail its checks; only a gate
 * stops the run, so every node's evidence is shown, not just the first failure.
 * A dry run runs the read-only phases (facts, baseline) as usual and plans the others (see planPhase).
 */
import { CHECKS, STEPS } from './registry.js';
import type { CheckResult, EngineContext, NodeState, PhaseReport, PhaseSpec, Playbook } from './types.js';

export interface EngineView {
  /** runs `task` for every node concurrently and shows progress; resolves when all settled */
  runOnNodes(title: string, nodes: NodeState[], task: (state: NodeState) => Promise<void>): Promise<void>;
  /** shows the gate's evidence; resolves true to go on */
  gate(report: PhaseReport, isLast: boolean): Promise<boolean>;
}

export interface PlaybookResult {
  phases: PhaseReport[];
  /** id of the phase whose gate said STOP, if any */
  stoppedAt?: string;
}

const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** A dry run's phase that would change nodes: each step records what it would do; no command, no check. */
function planPhase(ctx: EngineContext, phase: PhaseSpec): PhaseReport {
  const started = Date.now();
  const changesBefore = new Map(ctx.nodes.map((s) => [s, s.changes.length]));
  for (const stepName of phase.steps) {
    const step = STEPS[stepName]!;
    const live = ctx.nodes.filter((s) => !s.error);
    if (step.scope === 'mesh') {
      try {
        step.plan?.(ctx);
      } catch (error) {
        for (const state of live) state.error ??= `${stepName}: ${errorMessage(error)}`;
      }
      continue;
    }
    for (const state of live) {
      try {
        step.plan?.(ctx, state);
      } catch (error) {
        state.error = `${stepName}: ${errorMessage(error)}`;
      }
    }
  }
  const nodes = ctx.nodes.map((state) => {
    const diff = state.configDiff;
    delete state.configDiff;
    return {
      node: state.node.name,
      changes: state.changes.slice(changesBefore.get(state)),
      checks: state.error ? [{ id: 'step', status: 'fail', message: state.error } satisfies CheckResult] : [],
      ...(diff?.length ? { diff } : {}),
      error: state.error,
    };
  });
  const verdict = nodes.some((n) => n.error) ? 'STOP' : 'PLANNED';
  return { id: phase.id, title: phase.title, go: phase.go, verdict, durationMs: Date.now() - started, nodes };
}

/** A phase changes nodes when one of its steps has a dry-run plan (read-only steps have none). */
const changesNodes = (phase: PhaseSpec) => phase.steps.some((name) => STEPS[name]!.plan !== undefined);

async function runPhase(ctx: EngineContext, phase: PhaseSpec, view: EngineView): Promise<PhaseReport> {
  if (ctx.options.dryRun && changesNodes(phase)) return planPhase(ctx, phase);
  const started = Date.now();
  const changesBefore = new Map(ctx.nodes.map((s) => [s, s.changes.length]));
  for (const stepName of phase.steps) {
    const step = STEPS[stepName]!;
    const live = ctx.nodes.filter((s) => !s.error);
    if (step.scope === 'node') {
      await view.runOnNodes(`${phase.title}: ${stepName}`, live, async (state) => {
        try {
          await step.run(ctx, state);
        } catch (error) {
          state.error = `${stepName}: ${errorMessage(error)}`;
          throw error;
        }
      });
    } else {
      try {
        await step.run(ctx);
      } catch (error) {
        for (const state of live) state.error ??= `${stepName}: ${errorMessage(error)}`;
      }
    }
  }
  const nodes = await Promise.all(
    ctx.nodes.map(async (state) => {
      const checks: CheckResult[] = state.error
        ? [{ id: 'step', status: 'fail', message: state.error }]
        : await Promise.all(
            phase.checks.map(async (id) => {
              try {
                return await CHECKS[id]!.evaluate(ctx, state);
              } catch (error) {
                return { id, status: 'fail', message: errorMessage(error) } satisfies CheckResult;
              }
            }),
          );
      return { node: state.node.name, changes: state.changes.slice(changesBefore.get(state)), checks, error: state.error };
    }),
  );
  const verdict = nodes.some((n) => n.error || n.checks.some((c) => c.status === 'fail')) ? 'STOP' : 'GO';
  return { id: phase.id, title: phase.title, go: phase.go, verdict, durationMs: Date.now() - started, nodes };
}

export async function runPlaybook(ctx: EngineContext, playbook: Playbook, view: EngineView): Promise<PlaybookResult> {
  const phases: PhaseReport[] = [];
  for (const [index, phase] of playbook.phases.entries()) {
    if (ctx.options.signal.aborted) throw ctx.options.signal.reason;
    const report = await runPhase(ctx, phase, view);
    phases.push(report);
    const goOn = await view.gate(report, index === playbook.phases.length - 1);
    if (!goOn || report.verdict === 'STOP') return { phases, stoppedAt: phase.id };
  }
  return { phases };
}
