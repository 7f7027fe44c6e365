/**
 * `meshctl up [INVENTORY]`: thin: flags -> engine -> view -> exit code.
 * Start-up: the connections to the nodes are started as soon as the inventory is read, and the engine, the view and
 * the matrix code are imported while they are under way (issue 10: the first SSH connection within 300 ms).
 */
import type { Command } from 'commander';
import { MeshctlError, type CommandResult, type Outcome } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import { interruptedLogin, type InterruptedError } from '../interrupted.js';
import { loadInventory, resolveInventoryPath } from '../inventory/load.js';
import type { KeptAtForcedExit, UpReport, UpView } from '../engine/up.js';
import type { PhaseReport } from '../engine/types.js';
import { connectorFor, parseForks, sshOptionsFromFlags, type EarlyConnector, CONTROL_PERSIST_HELP } from './connect-options.js';
import type { Inventory } from '../inventory/types.js';
import { collectValues, resolveLimit } from '../engine/limit.js';
import { departedNotes, inventoryWithFallbacks, recordRun, statePublicKeys } from '../state/record.js';
import { writeJson } from '../ui/json-text.js';
import { DEFAULT_ROLLBACK_DEADLINE_S, parseRollbackDeadline } from '../engine/revert.js';

interface UpFlags {
  yes?: boolean;
  dryRun?: boolean;
  acceptNew?: boolean;
  json?: boolean;
  color?: boolean;
  playbook?: string;
  connectTimeout?: string;
  controlPersist?: string;
  forks?: string;
  breakLock?: boolean;
  limit?: string[];
  rollbackDeadline?: string;
  rollback?: boolean;
  underlayProbes?: boolean;
}

/**
 * The line under the matrix when pairs failed the ping phase's first round and were pinged again
 * (../checks/ping-matrix.ts RECHECK): which answered then, and which did not. Shape of `recheck`: Matrix['recheck'].
 */
export function recheckLine(recheck: { pairs: string[]; answered: string[]; ms: number }): string {
  const late = recheck.answered.length;
  const still = recheck.pairs.filter((p) => !recheck.answered.includes(p));
  const list = (pairs: string[]) => pairs.map((p) => p.replace(' ', '<->')).join(', ');
  return [
    `second round: ${recheck.pairs.length} pair${recheck.pairs.length === 1 ? '' : 's'} failed the first round and ${recheck.pairs.length === 1 ? 'was' : 'were'} pinged again (${(recheck.ms / 1000).toFixed(1)} s; new handshakes can carry one direction only until WireGuard's next one, 15 s later)`,
    late ? `; answered then: ${list(recheck.answered)}` : '',
    still.length ? `; still no answer: ${list(still)}` : '',
  ].join('');
}

/**
 * The run's summary for a terminal. `relayed` (pair key `a\u0000b` -> relay, the paths the run left in place,
 * relay: auto's fallbacks included) marks relayed cells of the ping matrix, as verify's matrix does. A --limit run's
 * matrix shows the rows of its nodes only (the others did not ping).
 */
export async function printSummary(
  report: UpReport,
  color: boolean,
  out: NodeJS.WritableStream,
  relayed: ReadonlyMap<string, string>,
): Promise<void> {
  // chalk and the matrix's text only for a terminal's summary: --json never loads them (issue 10: nothing before the
  // first login it needs not, and chalk was ~8 ms of CPU between the first login and the first phase)
  const [{ Chalk }, { renderMatrix, unmeasuredCells }] = await Promise.all([import('chalk'), import('../checks/matrix-render.js')]);
  const chalk = new Chalk({ level: color ? 1 : 0 });
  const interrupted = report.result === 'interrupted';
  let cutShort: string | undefined;
  if (report.matrix) {
    // finding 29: a --limit run pings from its own nodes only: their rows, not rows of '?' for the others
    const rows = report.limit?.filter((n) => report.matrix!.nodes.includes(n));
    out.write(
      `\n${chalk.bold('Ping matrix')} (overlay, from row to column)\n${renderMatrix(report.matrix, { color, relayed, interrupted, ...(rows ? { rows } : {}) })}`,
    );
    // Q8 F-intr-matrix: a Ctrl-C during the pings left cells unmeasured, which read FAIL for a healthy mesh
    const unmeasured = interrupted ? unmeasuredCells(report.matrix, rows).length : 0;
    if (unmeasured > 0) {
      const all = (rows ?? report.matrix.nodes).length * (report.matrix.nodes.length - 1);
      cutShort = `the ping matrix was cut short by the interrupt: ${unmeasured} of ${all} directions not measured (n/m), which says nothing about them; meshctl verify pings every pair`;
    }
    if (rows)
      out.write(
        `rows: the --limit node${rows.length === 1 ? '' : 's'} only (${rows.join(', ')}); the other nodes were not pinged from in this run (meshctl verify pings every pair)\n`,
      );
    const recheck = report.matrix.recheck;
    if (recheck) out.write(`${recheckLine(recheck)}\n`);
  }
  const seconds = (report.timings.totalMs / 1000).toFixed(1);
  const changes = `${report.changes} change${report.changes === 1 ? '' : 's'}`;
  if (report.result === 'converged') out.write(chalk.green.bold(`\nmesh converged: ${changes} in ${seconds} s\n`));
  if (report.result === 'planned') {
    const nodes = new Set(report.phases.flatMap((p) => p.nodes.filter((n) => n.changes.length > 0).map((n) => n.node)));
    out.write(
      report.changes === 0
        ? chalk.green.bold(`\ndry run: nothing to change, the mesh is as the inventory says (${seconds} s)\n`)
        : chalk.cyan.bold(
            `\ndry run: ${changes} planned on ${nodes.size} node${nodes.size === 1 ? '' : 's'}; nothing was changed (${seconds} s). Run without --dry-run to apply.\n`,
          ),
    );
  }
  if (report.result === 'interrupted') {
    out.write(chalk.red.bold(`\ninterrupted during "${report.phases.at(-1)?.title ?? 'connect'}" (${seconds} s)\n`));
    // Q6/Q7: a Ctrl-C after the change was confirmed said only "interrupted": what was confirmed stays
    if (cutShort) out.write(`${cutShort}\n`);
    const kept = confirmedKept(report.phases);
    if (kept) out.write(`${chalk.green(kept)}\n`);
  }
  if (report.result === 'stopped') {
    const last = report.phases.at(-1);
    // a gate the operator answered "no" has no FAIL line to point at (a new user's finding, stop 25)
    // (a gate confirms its phase's change only after a yes: after a no the run's unconfirmed changes went back)
    const why = last?.verdict === 'STOP' ? 'fix what the FAIL lines above name, then run up again' : 'you answered no';
    out.write(chalk.red.bold(`\nSTOP at "${last?.title}": nothing after it was run (${seconds} s); ${why}\n`));
  }
}

/**
 * For a run that ended interrupted: the nodes whose change this run confirmed before the interrupt, and that it
 * stays, e.g. `the change was confirmed on 4 nodes (ms-1, wk-1, wk-2, ctb-edge-1) at "Enable wg-quick" before the
 * interrupt and stays: their rollback was disarmed, nothing of it goes back`; undefined when none was. A node counts
 * when a phase whose gate said GO holds its passed `rollback` check (../engine/revert.ts: the disarm after a fresh
 * login; a revert's check is in a phase that STOPs, and a confirm that finds a node gone back turns its phase to STOP).
 * What the run changed after that confirmation and did not confirm is reverted, and said so in the warnings.
 */
export function confirmedKept(phases: readonly PhaseReport[]): string | undefined {
  const nodes: string[] = [];
  const at: string[] = [];
  for (const phase of phases) {
    if (phase.verdict !== 'GO') continue;
    const here = phase.nodes.filter((n) => n.checks.some((c) => c.id === 'rollback' && c.status === 'pass')).map((n) => n.node);
    if (here.length === 0) continue;
    at.push(`"${phase.title}"`);
    for (const node of here) if (!nodes.includes(node)) nodes.push(node);
  }
  if (nodes.length === 0) return undefined;
  const many = nodes.length !== 1;
  return `the change was confirmed on ${nodes.length} node${many ? 's' : ''} (${nodes.join(', ')}) at ${at.join(' and ')} before the interrupt and stays: ${many ? 'their' : 'its'} rollback was disarmed, nothing of it goes back`;
}

/**
 * The warnings an `up` run prints before its summary (and keeps in its --json report): the run's own, then the
 * inventory's forward clashes (../topology/forward-clash.ts: a node that loses its public peers for minutes after a
 * router reboot), which validate and plan print too (Q8 F-warn: up, the command the quick start runs, never said
 * them). Each once per run, whatever the phases did. Pure.
 */
export function upWarnings(report: Pick<UpReport, 'warnings'>, clashes: readonly string[]): string[] {
  const own = report.warnings ?? [];
  return [...own, ...clashes.filter((w) => !own.includes(w))];
}

/**
 * The view of a --json run: it draws nothing (stdout carries the report) and asks nothing; a gate goes on unless its
 * checks said STOP, as the terminal's view does with --yes or --dry-run, one of which --json needs (checked before
 * anything connects). Issue 10: the terminal's view loads listr2 (60 KB) and ran a silent list per phase for --json.
 */
export const JSON_VIEW: UpView = { onEvent: () => undefined, gate: async (report) => report.verdict !== 'STOP' };

/** The outcome of an `up` run (main maps it to the exit code); 'unreachable' is raised as an error before this. */
export function upOutcome(result: UpReport['result']): Outcome {
  if (result === 'interrupted') return 'interrupted';
  if (result === 'unreachable') return 'connect';
  if (result === 'locked') return 'stop';
  return result === 'stopped' ? 'stop' : 'ok';
}

/**
 * What `up` does at a second Ctrl-C (../engine/up.ts UpOptions.onForcedExit): records in the local state of
 * `inventory` what the nodes keep (the keys learnt, the fallback pairs of the newest kept pass), as `deliver` does at
 * the end of a run, since meshctl then exits at once (RV3 F7). `limit`: the run's --limit. Returns the warning line
 * when the state could not be written, else undefined; never throws (recordRun turns its errors into the warning).
 */
export function recordAtForcedExit(inventory: Inventory, limit: string[] | undefined): (kept: KeptAtForcedExit) => string | undefined {
  return (kept) => {
    const recorded = recordRun(inventory, {
      command: 'up',
      result: 'interrupted',
      nodes: limit ?? inventory.nodes.map((n) => n.name),
      ...(limit ? { limit } : {}),
      publicKeys: kept.publicKeys,
      complete: false,
      fallbackRelays: kept.fallbackRelays,
    });
    return recorded.warning ? `warning: ${recorded.warning}` : undefined;
  };
}

export function registerUp(program: Command, finish: (result: CommandResult) => void): void {
  program
    .command('up')
    .description(
      'build the mesh: facts -> baseline -> install -> keys -> config -> enable -> ping matrix, with a STOP/GO gate after each phase',
    )
    .argument('[inventory]', 'inventory file (default: $MESHCTL_INVENTORY, then ./meshctl.yaml)')
    .option('-y, --yes', 'go on at every gate whose checks pass (never when a check fails); needed without a terminal')
    .option(
      '--dry-run',
      'change nothing: gather facts, run the baseline checks, and show what every later phase would do (config diffs included); no prompts',
    )
    .option('--accept-new', 'trust unknown SSH host keys on first use and record them (changed keys are always refused)')
    .option('--json', 'print a JSON report on stdout instead of progress; it asks nothing, so it needs --yes (or --dry-run)')
    .option('--no-color', 'plain output')
    .option('--playbook <file>', 'run another playbook than playbooks/up.yaml')
    .option('-f, --forks <n>', 'nodes worked on at once (default 64)')
    .option(
      '-l, --limit <nodes>',
      'work on these nodes only (comma-separated, repeatable); configs are still rendered from the whole inventory and no other node is changed',
      collectValues,
    )
    .option('--break-lock', 'take over the run lock of another meshctl run (only when that run died: check first)')
    .option(
      '--rollback-deadline <seconds>',
      `a node's change reverts by itself unless confirmed (fresh SSH login + checks) within this many seconds (default ${DEFAULT_ROLLBACK_DEADLINE_S})`,
    )
    .option('--no-rollback', 'arm no rollback on the nodes (a lost connection mid-change then leaves the change in place)')
    .option('--connect-timeout <seconds>', 'SSH connect timeout (default: ssh config ConnectTimeout or 10)')
    .option('--control-persist <seconds>', CONTROL_PERSIST_HELP)
    .option(
      '--no-underlay-probes',
      "skip the baseline's port-forward probe and NAT discovery (their checks warn): for an underlay checked otherwise, or a simulated one",
    )
    .addHelpText(
      'after',
      '\nExit codes: 0 converged (or, with --dry-run, planned), 1 a check failed, a gate said STOP or another meshctl run holds a node, 2 bad input, 3 a node could not be connected, 130 interrupted.',
    )
    .action(async (inventoryArg: string | undefined, flags: UpFlags) => {
      const loaded = loadInventory(resolveInventoryPath(inventoryArg));
      const limit = flags.limit ? resolveLimit(loaded, flags.limit) : undefined;
      let rollbackDeadlineS: number;
      try {
        rollbackDeadlineS = flags.rollback === false ? 0 : parseRollbackDeadline(flags.rollbackDeadline);
      } catch (error) {
        throw new MeshctlError((error as Error).message, 'badInput');
      }
      const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY) && !flags.json;
      if (!interactive && !flags.yes && !flags.dryRun) {
        // finding 25: --json on a terminal was told there was no terminal
        throw new MeshctlError(
          flags.json
            ? '--json asks nothing at the gates: add --yes (gates still stop the run when a check fails) or --dry-run'
            : 'no terminal to confirm the gates: run with --yes (gates still stop the run when a check fails)',
          'badInput',
        );
      }
      const color = flags.color !== false && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
      const out = flags.json ? process.stderr : process.stdout;
      // a playbook of the user's is checked before any node is contacted (the connector below opens TCP connections
      // at once); the built-in one is meshctl's own and checked by its tests, so the usual run loads nothing for it
      if (flags.playbook) {
        const [{ loadPlaybook }, { registryContract }] = await Promise.all([
          import('../engine/playbook.js'),
          import('../engine/registry.js'),
        ]);
        loadPlaybook(flags.playbook, registryContract);
      }
      // no separate `id -u` after each login: up's first command on a node proves root (../engine/root-check.ts; issue 10)
      const connector = connectorFor({ ...sshOptionsFromFlags(flags, (line) => out.write(`${line}\n`)), probe: false });
      const forks = parseForks(flags.forks);
      connector.start(limit ? loaded.nodes.filter((n) => limit.includes(n.name)) : loaded.nodes);
      try {
        // the local state is read once the connections are under way (issue 10: it was on the way to the first one);
        // it changes no node's SSH target. Pairs relay: auto moved to a relay after a failed handshake are planned
        // as the nodes run them
        const inventory = inventoryWithFallbacks(loaded);
        // the state remembers nodes dropped from the inventory: say that their peers go (the run removes them), that
        // their own interface stays up, and the down command that takes it down (Q3 finding 8)
        for (const note of departedNotes(inventory, limit)) out.write(`${note}\n`);
        await upWith(inventory, limit, connector, { flags, forks, rollbackDeadlineS, interactive, color, out }, finish);
      } finally {
        await connector.release();
      }
    });
}

/** The rest of `up`, once the connections are under way: loads the engine and the view, runs, reports. */
async function upWith(
  inventory: Inventory,
  limit: string[] | undefined,
  connector: EarlyConnector,
  run: { flags: UpFlags; forks?: number; rollbackDeadlineS: number; interactive: boolean; color: boolean; out: NodeJS.WriteStream },
  finish: (result: CommandResult) => void,
): Promise<void> {
  const { flags, forks, rollbackDeadlineS, interactive, color, out } = run;
  await connector.underWay();
  // one module, one import: fewer files for node's module loader (./up-run.ts); the terminal's view (listr2) only
  // when it draws
  const [{ runUp, relayedPairs, withFallbackRelays }, { createEngineView }] = await Promise.all([
    import('./up-run.js'),
    flags.json ? { createEngineView: undefined } : import('../ui/engine-view.js'),
  ]);
  // a dry run changes nothing, so it asks nothing: read-only gates go on when their checks pass
  const view = createEngineView
    ? createEngineView({ yes: (flags.yes ?? false) || (flags.dryRun ?? false), interactive, json: false, color, out })
    : JSON_VIEW;
  /** Ctrl-C during the logins: said by main from this error (../interrupted.ts) instead of the report */
  let loginCut: InterruptedError | undefined;
  // the local state and the report are written while the run's locks are released and its connections closed
  // (runUp's withReport; issue 10: those were waited for first)
  const deliver = async (report: UpReport) => {
    loginCut =
      report.result === 'unreachable' ? interruptedLogin(limit ?? inventory.nodes.map((n) => n.name), report.connectFailures) : undefined;
    if (loginCut) return;
    if (!report.dryRun && report.phases.length > 0) {
      const recorded = recordRun(inventory, {
        command: 'up',
        result: report.result,
        nodes: limit ?? inventory.nodes.map((n) => n.name),
        ...(limit ? { limit } : {}),
        publicKeys: report.publicKeys ?? {},
        complete: !report.limit && report.result === 'converged',
        ...(report.plan ? { plan: report.plan } : {}),
        ...(report.fallbackRelays ? { fallbackRelays: report.fallbackRelays.pairs } : {}),
      });
      if (recorded.warning) report.warnings = [...(report.warnings ?? []), recorded.warning];
    }
    const { forwardClashWarnings } = await import('../topology/forward-clash.js');
    const warnings = upWarnings(report, forwardClashWarnings(inventory));
    if (warnings.length) report.warnings = warnings;
    for (const warning of warnings) out.write(`warning: ${warning}\n`);
    for (const note of report.notes ?? []) out.write(`note: ${note}\n`);
    // in pieces: at 1,000 nodes the report is longer than V8's longest string (src/ui/json-text.ts)
    if (flags.json) await writeJson(process.stdout, report, 2);
    else await printSummary(report, color, out, relayedPairs(withFallbackRelays(inventory, report.fallbackRelays?.pairs ?? [])));
  };
  const report = await runUp(inventory, connector, view, {
    ...(forks ? { forks } : {}),
    signal: interruptSignal,
    playbookPath: flags.playbook,
    dryRun: flags.dryRun ?? false,
    breakLock: flags.breakLock ?? false,
    ...(limit ? { limit, knownPublicKeys: statePublicKeys(inventory) } : {}),
    rollbackDeadlineS,
    ...(flags.underlayProbes === false ? { underlayProbes: false } : {}),
    withReport: deliver,
    onForcedExit: recordAtForcedExit(inventory, limit),
  });
  if (report.result === 'locked') throw new MeshctlError(`not started: ${report.locked}`, 'stop');
  if (report.result === 'unreachable') {
    // nothing ran on any node; the connections made are closed (runUp waited for that)
    if (loginCut) throw loginCut;
    throw new MeshctlError(
      `could not connect to ${report.connectFailures.length} of ${inventory.nodes.length} nodes; nothing was changed`,
      'connect',
      report.connectFailures.map((f) => `${f.node}: ${f.error}`),
    );
  }
  finish(upOutcome(report.result));
}
