/**
 * The text of `meshctl plan`: per phase and node, what `up` would do, with the wg0.conf diff; phases and nodes with
 * nothing to do are left out. Like `terraform plan`, the last line says how much would change.
 * The diff's old side is the node's file, and summaries and warnings quote node output: all of it is shown through
 * safeText (control characters escaped), as the gate report (./gate-report.ts) shows the same plan in `up --dry-run`.
 */
import type { ChalkInstance } from 'chalk';
import type { Plan } from '../engine/plan.js';
import type { CheckResult, PhaseReport } from '../engine/types.js';
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

/**
 * Finding 19: when the baseline's underlay probes ran on a mesh whose nodes all run it (the inventory changes a
 * forward, an address or a listen port they dial: ../engine/underlay-change.ts), why, and each node's probe verdicts;
 * '' when they did not run for that reason. `phases`: the run's phase reports (a plan's baseline gate was judged).
 */
export function renderUnderlayNote(phases: readonly PhaseReport[], chalk: ChalkInstance): string {
  const checks = phases.flatMap((phase) =>
    phase.nodes.flatMap((n) =>
      n.checks.flatMap((check: CheckResult) => (check.underlayChanged ? [{ node: n.node, check, ...check.underlayChanged }] : [])),
    ),
  );
  if (checks.length === 0) return '';
  const width = Math.max(...checks.map((c) => safeText(c.node).length));
  const heading = checks[0]!.heading ?? 'the inventory changes what the running mesh dials';
  const lines = [chalk.bold(`── Underlay probed: ${heading} (${safeText(checks[0]!.why)})`)];
  for (const { node, check, message } of checks) {
    const mark = check.status === 'pass' ? chalk.green('ok  ') : check.status === 'warn' ? chalk.yellow('warn') : chalk.red('FAIL');
    lines.push(`  ${chalk.bold(safeText(node).padEnd(width))}  ${mark} ${safeText(check.id)}: ${safeText(message)}`);
  }
  return `${lines.join('\n')}\n`;
}
