/**
 * The text of `meshctl plan`: per phase and node, what `up` would do, with the wg0.conf diff; phases and nodes with
 * nothing to do are left out. Like `terraform plan`, the last line says how much would change.
 * The diff's old side is the node's file, and summaries and warnings quote node output: all of it is shown through
 * safeText (control characters escaped), as the gate report (./gate-report.ts) shows the same plan in `up --dry-run`.
 */
import type { ChalkInstance } from 'chalk';
import type { Plan } from '../engine/plan.js';
import { countActions } from '../engine/plan.js';
import { safeText } from './safe-text.js';

/**
 * The plan as text. `apply` ends the last line: how to apply it (`meshctl down --dry-run` shows the others' part of a
 * down, which `meshctl up` with the same inventory would not do).
 */
export function renderPlan(plan: Plan, chalk: ChalkInstance, apply = 'run `meshctl up` to apply'): string {
  const lines: string[] = [];
  for (const phase of plan.phases) {
    const nodes = phase.nodes.filter((n) => n.actions.length > 0 || n.warnings.length > 0);
    if (nodes.length === 0) continue;
    lines.push(chalk.bold(`── ${safeText(phase.title)}`));
    const width = Math.max(...nodes.map((n) => safeText(n.node).length));
    for (const node of nodes) {
      const name = chalk.bold(safeText(node.node).padEnd(width));
      for (const action of node.actions) {
        lines.push(`  ${name}  ${safeText(action.summary)}`);
        for (const change of action.changes) {
          if (change.kind !== 'write-file' || !change.diff) continue;
          for (const raw of change.diff) {
            const line = safeText(raw);
            lines.push(`      ${line.startsWith('+') ? chalk.green(line) : line.startsWith('-') ? chalk.red(line) : chalk.dim(line)}`);
          }
        }
      }
      for (const warning of node.warnings) lines.push(`  ${name}  ${chalk.yellow(`warning: ${safeText(warning)}`)}`);
    }
  }
  const actions = countActions(plan);
  const touched = new Set(plan.phases.flatMap((p) => p.nodes.filter((n) => n.actions.length > 0).map((n) => n.node)));
  lines.push(
    actions === 0
      ? chalk.green.bold('nothing to change: the mesh is as the inventory says')
      : chalk.cyan.bold(
          `${actions} change${actions === 1 ? '' : 's'} planned on ${touched.size} node${touched.size === 1 ? '' : 's'}; ${apply}`,
        ),
  );
  return `${lines.join('\n')}\n`;
}
