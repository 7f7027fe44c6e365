/** `up`'s terminal summary (src/commands/up.ts printSummary) of a report, as text, for the tests of what it says. */
import { PassThrough } from 'node:stream';
import { printSummary } from '../../src/commands/up.js';
import type { UpReport } from '../../src/engine/up.js';

/** The summary of a run of homelab.yaml with `fields` (no colour, no relayed pairs). */
export async function summaryOf(fields: Partial<UpReport>): Promise<string> {
  const report: UpReport = {
    inventory: 'inventories/homelab.yaml',
    playbook: 'playbooks/up.yaml',
    result: 'converged',
    dryRun: false,
    changes: 0,
    phases: [],
    connectFailures: [],
    timings: { totalMs: 1000, connectMs: 100 },
    roundTrips: {},
    ...fields,
  };
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk: Buffer) => (text += chunk.toString()));
  await printSummary(report, false, out, new Map());
  return text;
}
