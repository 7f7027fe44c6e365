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
import { isRoamedWarning } from '../topology/moved-address.js';
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

/** One roamed node's warning as `plan` shows it (text and the `roamed` of --json). */
export interface RoamedNodeWarning {
  node: string;
  /** the baseline checks that say it, e.g. ['forward-reaches-node', 'nat-mapping'] */
  checks: string[];
  /** the check's message, as `up`'s baseline gate prints it */
  message: string;
}

/**
 * The baseline's warnings that name a roamed node (../topology/moved-address.ts isRoamedWarning: one node of a NAT
 * site seen elsewhere while its site is seen at the inventory's address), one per node and message, the checks that
 * say the same merged, in the order the phases judged them; [] when none. `up` shows them in its baseline gate;
 * `plan` prints no gate that goes on, so without this it said nothing of them (Q6/Q7).
 */
export function roamedNodeWarnings(phases: readonly PhaseReport[]): RoamedNodeWarning[] {
  const out: RoamedNodeWarning[] = [];
  for (const phase of phases)
    for (const n of phase.nodes)
      for (const check of n.checks) {
        if (!isRoamedWarning(check)) continue;
        const same = out.find((w) => w.node === n.node && w.message === check.message);
        if (same) same.checks.push(check.id);
        else out.push({ node: n.node, checks: [check.id], message: check.message });
      }
  return out;
}

/** The roamed nodes' warnings (roamedNodeWarnings) as lines above the plan; '' when there are none. */
export function renderRoamedNote(warnings: readonly RoamedNodeWarning[], chalk: ChalkInstance): string {
  if (warnings.length === 0) return '';
  const width = Math.max(...warnings.map((w) => safeText(w.node).length));
  const lines = [chalk.bold("── Roamed nodes: seen away from their site (up's baseline gate warns the same)")];
  for (const w of warnings)
    lines.push(
      `  ${chalk.bold(safeText(w.node).padEnd(width))}  ${chalk.yellow('warn')} ${w.checks.map(safeText).join(', ')}: ${safeText(w.message)}`,
    );
  return `${lines.join('\n')}\n`;
}
