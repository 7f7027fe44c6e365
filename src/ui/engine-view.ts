/**
 * The terminal view of the engine: it draws the engine's events with listr2 (a task per node and phase, its title
 * the node's changes), prints the gate report and asks the STOP/GO question. It never schedules work: the engine
 * runs the hosts (../engine/scheduler.ts) and a listr2 task here only waits for that node's phase to end.
 * A quiet variant (for --json) draws nothing and answers gates from --yes alone.
 */
import { Chalk, type ChalkInstance } from 'chalk';
import { figures, Listr, ListrDefaultRendererLogLevels, ListrErrorTypes } from 'listr2';
import type { UpView } from '../engine/up.js';
import type { EngineEvent, PhaseReport } from '../engine/types.js';
import { MeshctlError } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import { renderGateReport, renderRollbackChecks } from './gate-report.js';
import { redactSecrets } from '../remote/redact.js';
import { safeText } from './safe-text.js';

export interface ViewOptions {
  yes: boolean;
  interactive: boolean;
  json: boolean;
  color: boolean;
  /** where human output goes (stderr when stdout carries JSON) */
  out: NodeJS.WritableStream;
  /** the run's stop request (default ../interrupt.ts interruptSignal): a phase that ends after it is drawn interrupted */
  signal?: AbortSignal;
}

/** One phase on screen: a listr2 list whose node tasks end when the engine says the phase is done. */
class PhaseDrawing {
  /** node -> what its steps changed so far (filled from events, read when the node's task ends) */
  private readonly changes = new Map<string, string[]>();
  /** node -> its steps' failures, redacted: the node's task fails with them (✖, not ✔ beside a FAILED) */
  private readonly failures = new Map<string, string[]>();
  private readonly ends = new Map<string, () => void>();
  private readonly finished: Promise<unknown>;
  /** why the phase did not pass (its line gets ✖ and this, not ✔); set by end() */
  private failure: string | undefined;

  constructor(title: string, nodes: string[], options: ViewOptions) {
    const ready = new Map(nodes.map((node) => [node, new Promise<void>((resolve) => this.ends.set(node, resolve))]));
    for (const node of nodes) {
      this.changes.set(node, []);
      this.failures.set(node, []);
    }
    const list = new Listr(
      [
        {
          title: safeText(title),
          task: (_ctx, parent) => {
            const subtasks = parent.newListr(
              nodes.map((node) => ({
                title: safeText(node),
                task: async (_c, t) => {
                  await ready.get(node);
                  const changes = this.changes.get(node)!;
                  // change descriptions and step errors quote node output: escaped (./safe-text.ts)
                  const failed = this.failures.get(node)!;
                  // "nothing to do" beside a FAILED contradicted itself (a new user's finding 4: a step stopped by Ctrl-C)
                  t.title = safeText(`${node}: ${changes.length ? changes.join('; ') : failed.length ? 'not done' : 'nothing to do'}`);
                  // listr2 draws a task that throws as ✖ TITLE [FAILED: message]
                  if (failed.length) throw new Error(safeText(failed.join('; ')));
                },
              })),
              // drawing only: every node task waits on the engine, so all are shown at once
              { concurrent: true, exitOnError: false },
            );
            // an interrupted (or stopped) phase must not look passed (a new user's finding: ✔ beside a phase cut by
            // Ctrl-C): once its node tasks ended, the phase's own task fails, and listr2 draws ✖ TITLE [FAILED: why].
            // listr2 runs the returned list itself (as the phase's subtasks); its run is wrapped to fail afterwards.
            const run = subtasks.run.bind(subtasks);
            subtasks.run = async (context) => {
              const done = await run(context);
              if (!this.failure) return done;
              const failure = new Error(this.failure);
              // reported first: listr2 reports no failure of a task with subtasks by itself (its line would be missing)
              parent.report(failure, ListrErrorTypes.HAS_FAILED_WITHOUT_ERROR);
              // the terminal's renderer shows no message beside a task with subtasks: the word goes in the title
              // (after the report: the line-by-line renderer printed it with the title as it was)
              parent.title = safeText(`${title} [${this.failure}]`);
              throw failure;
            };
            return subtasks;
          },
        },
      ],
      {
        renderer: options.json ? 'silent' : 'default',
        fallbackRenderer: options.json ? 'silent' : 'simple',
        fallbackRendererCondition: !options.interactive,
        registerSignalListeners: false,
        collectErrors: false,
        exitOnError: false,
        // a phase that failed (interrupted, stopped: end()) is drawn with a cross, as a failed node is; listr2's own
        // mark for a failed task with subtasks is the running task's pointer (❯, told apart by colour alone)
        rendererOptions: { collapseSubtasks: false, icon: { [ListrDefaultRendererLogLevels.FAILED_WITH_FAILED_SUBTASKS]: figures.cross } },
        fallbackRendererOptions: { timestamp: false },
      } as never,
    );
    this.finished = list.run().catch(() => undefined);
  }

  stepDone(node: string, changes: string[], error?: string): void {
    this.changes.get(node)?.push(...changes);
    // an error carries a remote command's stderr: never show a key-shaped token of it
    if (error) this.failures.get(node)?.push(redactSecrets(error));
  }

  /**
   * Ends every node's task; resolves when the list is drawn for the last time. `failure` (e.g. "interrupted"): the
   * phase did not pass, and its line says so (✖ TITLE [FAILED: failure]) instead of ✔.
   */
  end(failure?: string): Promise<unknown> {
    this.failure = failure;
    for (const end of this.ends.values()) end();
    return this.finished;
  }
}

/**
 * Finding 31: inquirer's own theme (@inquirer/core) colours the prompt whenever the terminal can, whatever `--no-color`
 * says; without colour the gate's question gets a theme whose styles add nothing (the same text, no escapes).
 */
const PLAIN_THEME = {
  prefix: { idle: '?', done: '✔' },
  style: {
    answer: (text: string) => text,
    message: (text: string) => text,
    error: (text: string) => `> ${text}`,
    defaultAnswer: (text: string) => `(${text})`,
    help: (text: string) => text,
    highlight: (text: string) => text,
    key: (text: string) => `<${text}>`,
  },
};

/** What an inquirer question adds for `color`: nothing, or the plain theme (--no-color, NO_COLOR, no terminal). */
export const promptTheme = (color: boolean) => (color ? {} : { theme: PLAIN_THEME });

/** The GO question asked at a gate (inquirer's confirm), plain when `color` is false. */
export function gateQuestion(title: string, color: boolean) {
  return {
    type: 'confirm' as const,
    name: 'go' as const,
    message: `GO: continue after "${safeText(title)}"?`,
    default: true,
    ...promptTheme(color),
  };
}

export function createEngineView(options: ViewOptions): UpView & { chalk: ChalkInstance } {
  const chalk = new Chalk({ level: options.color ? 1 : 0 });
  let drawing: PhaseDrawing | undefined;
  let drawn: Promise<unknown> = Promise.resolve();
  return {
    chalk,
    onEvent(event: EngineEvent) {
      if (event.type === 'phase-start') {
        drawing =
          event.phase.steps.length > 0 && event.nodes.length > 0 ? new PhaseDrawing(event.phase.title, event.nodes, options) : undefined;
      } else if (event.type === 'step-done') {
        drawing?.stepDone(event.node, event.changes, event.error);
      } else if (event.type === 'phase-done') {
        const failure = (options.signal ?? interruptSignal).aborted
          ? 'interrupted'
          : event.report.verdict === 'STOP'
            ? 'stopped'
            : undefined;
        drawn = drawing?.end(failure) ?? Promise.resolve();
        drawing = undefined;
      }
    },

    async gate(report: PhaseReport, isLast: boolean, confirm?: () => Promise<void>) {
      await drawn;
      const asks = !(report.verdict === 'STOP' || options.yes || isLast || report.verdict === 'PLANNED');
      // nothing to ask: the change is confirmed first, so the report shown has each node's confirmation
      if (!asks && confirm) await confirm();
      if (!options.json) options.out.write(`${renderGateReport(report, chalk)}\n`);
      if (report.verdict === 'STOP') return false;
      if (!asks) return true;
      if (!options.interactive) throw new MeshctlError('a gate needs confirmation but there is no terminal: pass --yes', 'badInput');
      try {
        // loaded only when a question is asked: inquirer costs 0.3-0.5 s of start-up, and --yes/--json never ask
        const { default: inquirer } = await import('inquirer');
        // a stop request (SIGINT from outside the prompt, SIGTERM, SIGHUP: ../interrupt.ts) ends the question too; the
        // run then releases its locks as after any Ctrl-C (it waited at the prompt, holding them, for ever)
        const prompt = inquirer.createPromptModule({ signal: interruptSignal });
        const { go } = await prompt<{ go: boolean }>([gateQuestion(report.title, options.color)]);
        if (!go || !confirm) return go;
        // asked before its change was confirmed (a "no" reverts it): confirmed now, and said; a node that went back
        // by itself while the question waited turns the verdict to STOP
        await confirm();
        if (!options.json) options.out.write(`${renderRollbackChecks(report, chalk)}\n`);
        return (report.verdict as PhaseReport['verdict']) !== 'STOP';
      } catch (error) {
        if (['ExitPromptError', 'AbortPromptError'].includes((error as Error).name))
          throw new MeshctlError('interrupted at the gate', 'interrupted');
        throw error;
      }
    },
  };
}
