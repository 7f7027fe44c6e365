/**
 * Text for a STOP/GO gate: one block per node with its changes and checks, failures with their evidence; in a dry
 * run, what each node would get (with the config file's diff).
 */
import type { ChalkInstance } from 'chalk';
import type { PhaseReport, CheckStatus } from '../engine/types.js';
import { safeText } from './safe-text.js';

const MARKS: Record<CheckStatus, string> = { pass: 'ok  ', warn: 'warn', fail: 'FAIL' };

/**
 * The gate's text. Everything in it that came from a node or an input file (node names, change descriptions, diff
 * lines, check messages and evidence, the phase title) is shown through safeText: control characters escaped.
 */
export function renderGateReport(report: PhaseReport, chalk: ChalkInstance): string {
  const colour = { pass: chalk.green, warn: chalk.yellow, fail: chalk.red } as const;
  const width = Math.max(...report.nodes.map((n) => safeText(n.node).length));
  const lines: string[] = [];
  lines.push(chalk.bold(`── ${safeText(report.title)} (${(report.durationMs / 1000).toFixed(1)} s)`));
  for (const node of report.nodes) {
    const changes = node.changes.length ? node.changes.map(safeText).join('; ') : 'no changes';
    lines.push(`  ${chalk.bold(safeText(node.node).padEnd(width))}  ${chalk.dim(changes)}`);
    for (const line of node.diff ?? []) lines.push(`      ${diffColour(line, chalk)(safeText(line))}`);
    for (const check of node.checks) {
      lines.push(`    ${colour[check.status](MARKS[check.status])} ${safeText(check.id)}: ${safeText(check.message)}`);
      if (check.status !== 'pass') for (const line of check.evidence ?? []) lines.push(chalk.dim(`           ${safeText(line)}`));
    }
  }
  if (report.verdict === 'PLANNED') lines.push(`  ${chalk.cyan.bold('PLANNED')}  dry run: nothing was changed, nothing checked`);
  else if (report.verdict === 'GO') lines.push(`  ${chalk.green.bold('GO')}  ${report.go}`);
  else lines.push(`  ${chalk.red.bold('STOP')}  NO-GO: ${failedSummary(report)}`);
  return lines.join('\n');
}

/**
 * The lines a gate adds once its question was answered yes and the change then confirmed (RunContext.gate's
 * `confirm`): each node's `rollback` check, and STOP when one failed (its window passed while the question waited).
 */
export function renderRollbackChecks(report: PhaseReport, chalk: ChalkInstance): string {
  const colour = { pass: chalk.green, warn: chalk.yellow, fail: chalk.red } as const;
  const lines = report.nodes.flatMap((node) =>
    node.checks
      .filter((c) => c.id === 'rollback')
      .map((c) => `  ${chalk.bold(safeText(node.node))}  ${colour[c.status](MARKS[c.status])} ${safeText(c.id)}: ${safeText(c.message)}`),
  );
  if (report.verdict === 'STOP') lines.push(`  ${chalk.red.bold('STOP')}  NO-GO: ${failedSummary(report)}`);
  return lines.join('\n');
}

const diffColour = (line: string, chalk: ChalkInstance) =>
  line.startsWith('+') ? chalk.green : line.startsWith('-') ? chalk.red : chalk.dim;

export function failedSummary(report: PhaseReport): string {
  const failed = report.nodes.flatMap((n) =>
    n.checks.filter((c) => c.status === 'fail').map((c) => `${safeText(n.node)} ${safeText(c.id)}`),
  );
  return failed.length ? failed.join(', ') : 'stopped';
}
