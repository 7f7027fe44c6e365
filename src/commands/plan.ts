/**
 * `meshctl plan [INVENTORY]`: what `up` would do, and nothing else. Connects, gathers facts, runs the baseline
 * checks, then plans every later phase with the recorder backend (src/engine/backend.ts); changes nothing, asks
 * nothing. Exit 0 when nothing would change, 4 (drift) when something would, 1 when a node is not fit for the mesh
 * (the baseline stops), so that a cron job or CI can alert on drift. `--json` prints the plan value (planValue).
 * A roamed node's warning (a baseline check `up` shows in its gate) is printed above the plan (planText).
 */
import { forwardClashWarnings } from '../topology/forward-clash.js';
import type { Command } from 'commander';
import { Chalk, type ChalkInstance } from 'chalk';
import { countActions, type Plan } from '../engine/plan.js';
import { runUp, type UpReport } from '../engine/up.js';
import { withFallbackRelays } from '../engine/fallback.js';
import { MeshctlError, type CommandResult } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import { throwIfLoginCut } from '../interrupted.js';
import { loadInventory, resolveInventoryPath } from '../inventory/load.js';
import { renderGateReport } from '../ui/gate-report.js';
import { renderPlan, renderRoamedNote, renderUnderlayNote, roamedNodeWarnings } from '../ui/plan-view.js';
import { connectorFor, parseForks, sshOptionsFromFlags, CONTROL_PERSIST_HELP } from './connect-options.js';
import { collectValues, resolveLimit } from '../engine/limit.js';
import { departedNotes, inventoryWithFallbacks, statePublicKeys } from '../state/record.js';
import { pathReports, renderPaths } from '../checks/report.js';
import { notDirectPairs, planPaths } from '../topology/paths.js';
import type { Inventory } from '../inventory/types.js';

/**
 * The text below the plan: the pairs whose path is not direct (relayed via R, or none) with their `why`, and how many
 * pairs of each kind ('' when every pair is direct). Only those pairs' paths are made (../topology/paths.ts
 * notDirectPairs): building every pair's report (with its `why`) to show a few was O(pairs) sentences.
 */
export function plannedPathsText(inventory: Inventory): string {
  const { pairs, counts } = notDirectPairs(planPaths(inventory));
  const reports = pairs.map(({ a, b, path }) => ({
    a,
    b,
    kind: path.kind,
    why: path.why,
    ...(path.kind === 'relayed' ? { via: path.via } : {}),
  }));
  return renderPaths(reports, { measured: false, counts });
}

/** What planText and planValue read of the run's report (../engine/up.ts UpReport). */
type PlannedReport = Pick<UpReport, 'phases'> & { plan: Plan };

/**
 * `plan`'s text on stdout: the roamed nodes' warnings (Q6/Q7: a baseline warning that `up` shows in its gate and
 * `plan`, which prints no gate that goes on, said nothing of), the underlay note, the plan, and the pairs of `planned`
 * (the inventory as the plan leaves it) whose path is not direct.
 */
export function planText(report: PlannedReport, planned: Inventory, chalk: ChalkInstance): string {
  const pathsText = plannedPathsText(planned);
  return `${renderRoamedNote(roamedNodeWarnings(report.phases), chalk)}${renderUnderlayNote(report.phases, chalk)}${renderPlan(report.plan, chalk)}${pathsText ? `\n${pathsText}` : ''}`;
}

/**
 * `plan --json`'s value: the plan (../engine/plan.ts Plan), `paths` (every pair's path as planned: direct, relayed via
 * R, none) and `roamed` (the roamed nodes' warnings, ../ui/plan-view.ts RoamedNodeWarning; [] when none).
 */
export const planValue = (report: PlannedReport, planned: Inventory) => ({
  ...report.plan,
  paths: pathReports(planned, undefined),
  roamed: roamedNodeWarnings(report.phases),
});

interface PlanFlags {
  json?: boolean;
  acceptNew?: boolean;
  color?: boolean;
  playbook?: string;
  connectTimeout?: string;
  controlPersist?: string;
  forks?: string;
  limit?: string[];
  underlayProbes?: boolean;
}

export function registerPlan(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('plan')
    .description('show what `up` would change on each node (peers, files with their diff, services and why); changes nothing')
    .argument('[inventory]', 'inventory file (default: $MESHCTL_INVENTORY, then ./meshctl.yaml)')
    .option('--json', 'print the plan value on stdout')
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them (changed keys are always refused)')
    .option('--no-color', 'plain output')
    .option('--playbook <file>', 'plan another playbook than playbooks/up.yaml')
    .option('-f, --forks <n>', 'nodes worked on at once (default 64)')
    .option('-l, --limit <nodes>', 'plan these nodes only (comma-separated, repeatable), rendered from the whole inventory', collectValues)
    .option('--connect-timeout <seconds>', 'SSH connect timeout (default: ssh config ConnectTimeout or 10)')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .option('--no-underlay-probes', "skip the baseline's port-forward probe and NAT discovery (their checks warn)")
    .addHelpText(
      'after',
      "\nExit codes: 0 nothing would change, 4 something would (drift, or an earlier run's unconfirmed change is pending and goes back by itself), 1 a node failed its facts or baseline checks, 2 bad input, 3 a node could not be connected, 130 interrupted.",
    )
    .action(async (inventoryArg: string | undefined, flags: PlanFlags) => {
      // pairs relay: auto moved to a relay after a failed handshake are planned as the nodes run them
      const inventory = inventoryWithFallbacks(loadInventory(resolveInventoryPath(inventoryArg)));
      const limit = flags.limit ? resolveLimit(inventory, flags.limit) : undefined;
      const forks = parseForks(flags.forks);
      const color = flags.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
      const chalk = new Chalk({ level: color ? 1 : 0 });
      const log = (line: string) => process.stderr.write(`${line}\n`);
      // a plan asks nothing and draws no progress: it only prints the gate of a phase that stops
      const view = {
        onEvent: () => undefined,
        gate: async (report: Parameters<typeof renderGateReport>[0]) => {
          if (report.verdict === 'STOP' && !flags.json) process.stderr.write(`${renderGateReport(report, chalk)}\n`);
          return report.verdict !== 'STOP';
        },
      };
      // Q3 finding 8: a node dropped from the inventory keeps its own interface up; say so, and what takes it down (on
      // stdout with the plan's text; --json keeps stdout for the plan value)
      for (const note of departedNotes(inventory, limit)) (flags.json ? process.stderr : process.stdout).write(`${note}\n`);
      // Q4 item 4: forwards that clash in the router's conntrack with the node's own flows (src/topology/forward-clash.ts)
      for (const warning of forwardClashWarnings(inventory)) log(`warning: ${warning}`);
      const report = await runUp(inventory, connectorFor(sshOptionsFromFlags(flags, log)), view, {
        signal: interruptSignal,
        dryRun: true,
        ...(flags.playbook ? { playbookPath: flags.playbook } : {}),
        ...(forks ? { forks } : {}),
        ...(limit ? { limit, knownPublicKeys: statePublicKeys(inventory) } : {}),
        ...(flags.underlayProbes === false ? { underlayProbes: false } : {}),
      });
      if (report.result === 'unreachable') {
        // Ctrl-C during the logins: how far they got (../interrupted.ts), not the nodes the interrupt cut short
        throwIfLoginCut(limit ?? inventory.nodes.map((n) => n.name), report.connectFailures);
        throw new MeshctlError(
          `could not connect to ${report.connectFailures.length} of ${inventory.nodes.length} nodes`,
          'connect',
          report.connectFailures.map((f) => `${f.node}: ${f.error}`),
        );
      }
      if (report.result === 'interrupted') return finish('interrupted');
      // what the run had to assume (a peer outside --limit that did not answer: its key from the local state) is part of
      // the plan's meaning: on stderr, as up says it (stdout stays the plan, or its JSON)
      for (const warning of report.warnings ?? []) log(`warning: ${warning}`);
      for (const note of report.notes ?? []) log(`note: ${note}`);
      if (report.result === 'stopped') {
        if (flags.json) await (await import('../ui/json-text.js')).writeJson(process.stdout, report.plan, 2);
        else process.stderr.write(chalk.red.bold(`cannot plan past "${report.stoppedAt}": fix the node first\n`));
        return finish('stop');
      }
      // the paths as the plan leaves them: relay: auto's pairs after this plan (a pair whose direct path works again is
      // back to direct; a new user saw "relayed" listed under the plan's own "back to direct" lines, Q4-7)
      const planned = report.fallbackRelays ? withFallbackRelays(inventory, report.fallbackRelays.pairs) : inventory;
      // JSON in pieces: the plan holds every node's scripts, N^2 text at farm scale (src/ui/json-text.ts)
      const done = { phases: report.phases, plan: report.plan! };
      if (flags.json) await (await import('../ui/json-text.js')).writeJson(process.stdout, planValue(done, planned), 2);
      else process.stdout.write(planText(done, planned, chalk));
      // an earlier run's unconfirmed change still pending goes back by itself: the mesh is not as it will be, so a
      // scheduled plan must not say all is well (Q5 finding 2); the notes above say when, and that an up confirms it
      const pendingReverts = report.pendingReverts ?? [];
      if (pendingReverts.length && !flags.json)
        process.stdout.write(
          `${chalk.yellow(`an earlier run's unconfirmed change is pending on ${pendingReverts.join(', ')}: it goes back by itself unless an up confirms it (exit 4)`)}\n`,
        );
      finish(countActions(report.plan!) === 0 && pendingReverts.length === 0 ? 'ok' : 'drift');
    });
}
