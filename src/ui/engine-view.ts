/**
 * The terminal view of the engine: listr2 progress per step and node, the gate report, and the STOP/GO prompt.
 * A quiet variant (for --json) shows nothing and answers gates from --yes alone.
 */
import { Listr } from 'listr2';
import { Chalk, type ChalkInstance } from 'chalk';
import inquirer from 'inquirer';
import type { EngineView } from '../engine/runner.js';
import type { NodeState, PhaseReport } from '../engine/types.js';
import { ExitCode, MeshctlError } from '../errors.js';
import { renderGateReport } from './gate-report.js';

export interface ViewOptions {
  yes: boolean;
  interactive: boolean;
  json: boolean;
  color: boolean;
  /** where human output goes (stderr when stdout carries JSON) */
  out: NodeJS.WritableStream;
}

export function createEngineView(options: ViewOptions): EngineView & { chalk: ChalkInstance } {
  const chalk = new Chalk({ level: options.color ? 1 : 0 });
  return {
    chalk,
    async runOnNodes(title: string, nodes: NodeState[], task: (state: NodeState) => Promise<void>) {
      const list = new Listr(
        [
          {
            title,
            task: (_ctx, parent) =>
              parent.newListr(
                nodes.map((state) => ({
                  title: state.node.name,
                  task: async (_c, t) => {
                    const before = state.changes.length;
                    await task(state);
                    const changes = state.changes.slice(before);
                    t.title = `${state.node.name}: ${changes.length ? changes.join('; ') : 'nothing to do'}`;
                  },
                })),
                { concurrent: true, exitOnError: false },
              ),
          },
        ],
        {
          renderer: options.json ? 'silent' : 'default',
          fallbackRenderer: options.json ? 'silent' : 'simple',
          fallbackRendererCondition: !options.interactive,
          registerSignalListeners: false,
          collectErrors: false,
          exitOnError: false,
          rendererOptions: { collapseSubtasks: false },
          fallbackRendererOptions: { timestamp: false },
        } as never,
      );
      await list.run();
    },

    async gate(report: PhaseReport, isLast: boolean) {
      if (!options.json) options.out.write(`${renderGateReport(report, chalk)}\n`);
      if (report.verdict === 'STOP') return false;
      if (options.yes || isLast || report.verdict === 'PLANNED') return true;
      if (!options.interactive) throw new MeshctlError('a gate needs confirmation but there is no terminal: pass --yes', ExitCode.badInput);
      try {
        const { go } = await inquirer.prompt<{ go: boolean }>([
          { type: 'confirm', name: 'go', message: `GO: continue after "${report.title}"?`, default: true },
        ]);
        return go;
      } catch (error) {
        if ((error as Error).name === 'ExitPromptError') throw new MeshctlError('interrupted at the gate', ExitCode.interrupted);
        throw error;
      }
    },
  };
}
