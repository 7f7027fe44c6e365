/**
 * `plan`'s underlay note (src/ui/plan-view.ts renderUnderlayNote) for one node's checks in a baseline phase that
 * STOPped, without colour: what the underlay tests read, written once.
 */
import { Chalk } from 'chalk';
import type { CheckResult } from '../../src/engine/types.js';
import { renderUnderlayNote } from '../../src/ui/plan-view.js';

export function baselineUnderlayNote(node: string, checks: CheckResult[]): string {
  return renderUnderlayNote(
    [{ id: 'baseline', title: 'Baseline', go: '', verdict: 'STOP', durationMs: 0, nodes: [{ node, changes: [], checks }] }],
    new Chalk({ level: 0 }),
  );
}
