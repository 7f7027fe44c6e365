/** Text for a STOP/GO gate: one block per node with its changes and checks, failures with their evidence. */
import type { ChalkInstance } from 'chalk';
import type { PhaseReport, CheckStatus } from '../engine/types.js';

const MARKS: Record<CheckStatus, string> = { pass: 'ok  ', warn: 'warn', fail: 'FAIL' };

export function renderGateReport(report: PhaseReport, chalk: ChalkInstance): string {
  const colour = { pass: chalk.green, warn: chalk.yellow, fail: chalk.red } as const;
  const width = Math.max(...report.nodes.map((n) => n.node.length));
  const lines: string[] = [];
  lines.push(chalk.bold(`── ${report.title} (${(report.durationMs / 1000).toFixed(1)} s)`));
  for (const node of report.nodes) {
    const changes = node.changes.length ? node.changes.join('; ') : 'no changes';
    lines.push(`  ${chalk.bold(node.node.padEnd(width))}  ${chalk.dim(changes)}`);
    for (const check of node.checks) {
      lines.push(`    ${colour[check.status](MARKS[check.status])} ${check.id}: ${check.message}`);
      if (check.status !== 'pass') for (const line of check.evidence ?? []) lines.push(chalk.dim(`           ${line}`));
    }
  }
  const verdict = report.verdict === 'GO' ? chalk.green.bold('GO') : chalk.red.bold('STOP');
  lines.push(`  ${verdict}  ${report.verdict === 'GO' ? report.go : `NO-GO: ${failedSummary(report)}`}`);
  return lines.join('\n');
}

export function failedSummary(report: PhaseReport): string {
  const failed = report.nodes.flatMap((n) => n.checks.filter((c) => c.status === 'fail').map((c) => `${n.node} ${c.id}`));
  return failed.length ? failed.join(', ') : 'stopped';
}
