/**
 * Issue 10: the ping round of a run that changes nothing, ahead, in the facts probe's round trip. A second `up` on a
 * converged mesh sent each node a probe (facts), then a ping round (the last phase), one SSH channel and round trip
 * each. Here every node's facts probe also pings its peers once its facts are read (the same script the ping phase
 * sends, ping -w PING_AHEAD_DEADLINE_S), on a node whose live interface already routes to every peer (lean.ts
 * wgAllowsEvery; else it pings nothing ahead). The ping phase then uses that round instead of a new one only when:
 * nothing changed in this run (no phase had an action), every node's round ahead is complete, every pair answered,
 * and the phase's other checks (routes on the interface, recent handshakes) pass on it; in any other case the ping
 * phase pings as before, and its gate judges only that new round. So a gate never passes on what a new round would
 * not have shown a moment later, and a run that changes something pings after its changes as before.
 *
 * The round ahead is handed to the ping phase's own step (./ping.ts, unchanged) through a connection that answers its
 * ping script with the output read ahead (`replayed`): one parser, one set of checks, the same report.
 * Cost when the mesh is not converged: nothing on a node whose interface lacks a peer (no exec: the guard reads the
 * probe's own `wg show all dump`); up to PING_AHEAD_DEADLINE_S more in the facts phase where a configured peer does
 * not answer.
 */
import { matrixPasses, pingParamsFor, type PingTarget } from '../checks/ping-matrix.js';
import { pingProbe } from '../checks/probes.js';
import { judgeHandshakesRecent, judgeOverlayRoutes } from '../checks/judge.js';
import { FACTS } from '../facts/definitions.js';
import { LEAN_FACTS, peersWithClock, sharedReads, wgAllowsEvery } from '../facts/lean.js';
import { endMarker, PATH_PRELUDE } from '../facts/sections.js';
import type { Inventory } from '../inventory/types.js';
import { withRun, type Connection, type ExecResult } from '../transport/types.js';
import type { Registry } from './runner.js';
import type { MeshStep, MeshStepInput, MeshStepOutput, NodeStep } from './types.js';

/** The line between the facts probe's output and the round ahead's. */
export const PING_AHEAD_MARK = '@@meshctl ping-ahead';
/**
 * ping -w of the round ahead, seconds: a converged mesh answers in milliseconds (its sessions exist, or one handshake
 * makes one); a pair that does not answer by then is pinged again by the ping phase with its full deadline.
 */
export const PING_AHEAD_DEADLINE_S = 2;

/** The sections the ping phase reads after its pings (./ping.ts runPingMatrix): the same definitions, same order. */
const afterSections = (iface: string) =>
  [FACTS.interfaceRoutes, FACTS.peers, FACTS.now].map((def) => ({
    name: def.name,
    command: def.command({ interface: iface, listenPort: 0 }),
  }));

const targetsOf = (inventory: Inventory): PingTarget[] => inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));

/** The script the ping phase sends `node` in a run that changed nothing (./ping.ts: one reply per pair). */
export function phasePingScript(inventory: Inventory, node: string): string {
  const after = afterSections(inventory.mesh.interface);
  return pingProbe(pingParamsFor(node, targetsOf(inventory), { count: 1, after })).script;
}

/**
 * The round ahead's after-sections: the ping phase's own three (afterSections), with two processes fewer on the node
 * (issue 10):
 * - `routes` is what the facts probe's one `ip -batch` read a moment before the pings in this same script (the lean
 *   definition prints it from the shell: ../facts/lean.ts), not a second `ip`: nothing in between changes routes, and
 *   the round ahead counts only in a run that changed nothing;
 * - `peers` and `now` from one dump whose awk prints the clock (../facts/lean.ts peersWithClock), no `date`.
 */
export function aheadAfterSections(iface: string): Array<{ name: string; command: string }> {
  const ctx = { interface: iface, listenPort: 0 };
  return [{ name: FACTS.interfaceRoutes.name, command: LEAN_FACTS.interfaceRoutes.command(ctx) }, ...peersWithClock(iface)];
}

/** What the facts probe of `node` runs after its facts: the mark, then the round ahead where the interface routes to every peer. */
export function pingAheadScript(inventory: Inventory, node: string): string {
  const targets = targetsOf(inventory);
  const params = pingParamsFor(node, targets, {
    count: 1,
    deadlineSeconds: PING_AHEAD_DEADLINE_S,
    after: aheadAfterSections(inventory.mesh.interface),
  });
  const guard = wgAllowsEvery(
    inventory.mesh.interface,
    params.targets.map((t) => t.ip),
  );
  return [`echo '${PING_AHEAD_MARK}'`, `if {\n${guard}\n}; then`, pingProbe(params).script, 'fi'].join('\n');
}

/**
 * Up's facts probe `facts` with the round ahead of `node` running beside it, not after it: the reads both need (the
 * WireGuard dump and the routes: ../facts/lean.ts sharedReads) once, first, in the script's shell; then the facts in
 * a background job that writes its sections as it goes (the lock and interface sections stream as before), and the
 * round ahead (pingAheadScript, the same script) in the foreground with its output held in a variable, printed once
 * the facts have ended: the output is the facts' and then the mark and the round's, as when the round followed
 * them. Issue 10: at 32 lab nodes the facts phase of a second `up` took about the facts probe plus a ping round, one
 * after the other on every node (docs/transport-cost.md); now a node pings while it reads its facts. The pings
 * change nothing the facts read but handshakes and transfer counters, and the dump the facts parse is read before
 * any ping (sharedReads). Two forks more on the node (the job and the command substitution), no exec more.
 */
export function factsBesidePingAhead(facts: string, inventory: Inventory, node: string): string {
  return [
    PATH_PRELUDE,
    sharedReads({ interface: inventory.mesh.interface, listenPort: 0 }),
    `{\n${facts}\n} & mc_facts=$!`,
    `mc_ahead=$(\n${pingAheadScript(inventory, node)}\n)`,
    'wait $mc_facts',
    `printf '%s\\n' "$mc_ahead"`,
  ].join('\n');
}

/** Cuts a facts probe's stdout at the mark: the facts' part, and the round ahead's (undefined when there is none). */
export function splitAhead(stdout: string): { facts: string; ahead?: string } {
  const at = stdout.indexOf(`\n${PING_AHEAD_MARK}\n`);
  return at < 0 ? { facts: stdout } : { facts: stdout.slice(0, at + 1), ahead: stdout.slice(at + PING_AHEAD_MARK.length + 2) };
}

/** `connection`, with its first command answered by `stdout` when that command is exactly `script` (read ahead). */
export function replayed(connection: Connection, script: string, stdout: string): Connection {
  let used = false;
  return withRun(connection, async (sent, options): Promise<ExecResult> => {
    if (used || sent !== script) return connection.run(sent, options);
    used = true;
    return { code: 0, stdout, stderr: '', durationMs: 0 };
  });
}

/** Whether the ping phase's output passes every check of the phase with no warning (see the module doc). */
function passesWholly(input: MeshStepInput<'desired'>, output: MeshStepOutput<'tunnel'>): boolean {
  if (output.errors.size > 0 || !output.matrix || !matrixPasses(output.matrix)) return false;
  const iface = input.inventory.mesh.interface;
  return input.nodes.every(({ node, values: { desired } }) => {
    const tunnel = output.values.get(node.name)?.tunnel;
    if (!tunnel || tunnel.now === undefined) return false;
    const routes = judgeOverlayRoutes({ iface, peers: desired.peers }, { interfaceRoutes: tunnel.routes });
    const handshakes = judgeHandshakesRecent(desired.peers, { peers: tunnel.peers, now: tunnel.now, afterPing: true });
    return routes.status === 'pass' && handshakes.status === 'pass';
  });
}

/**
 * The registry with the ping round ahead: `gather-facts` runs it after the facts (and hands the facts' part alone to
 * the facts parser); `ping-matrix` uses it when it counts (see the module doc), else pings as before.
 * `used()`: whether the ping phase used the round ahead (for tests and the report).
 */
export function withPingAhead(registry: Registry): Registry & { used(): boolean } {
  const ahead = new Map<string, string>();
  let used = false;
  return {
    used: () => used,
    check: (name) => registry.check(name),
    step(name) {
      const step = registry.step(name);
      if (name === 'gather-facts' && step?.scope === 'node') return factsWithAhead(step, ahead);
      if (name === 'ping-matrix' && step?.scope === 'mesh')
        return {
          ...step,
          async run(input) {
            const phaseInput = input as MeshStepInput<'desired'>;
            const ready =
              !input.changedSoFar && input.nodes.every(({ node }) => ahead.get(node.name)?.includes(`${endMarker('done')} rc=`));
            if (ready) {
              const nodes = input.nodes.map((n) => ({
                ...n,
                connection: replayed(n.connection, phasePingScript(input.inventory, n.node.name), ahead.get(n.node.name)!),
              }));
              const output = await step.run({ ...input, nodes });
              if (passesWholly(phaseInput, output as MeshStepOutput<'tunnel'>)) {
                used = true;
                return output;
              }
            }
            return step.run(input);
          },
        } satisfies MeshStep;
      return step;
    },
  };
}

function factsWithAhead(step: NodeStep, ahead: Map<string, string>): NodeStep {
  return {
    ...step,
    plan(input) {
      const planned = step.plan(input);
      ahead.delete(input.node.name);
      if (!planned.action) return planned;
      return {
        ...planned,
        action: { ...planned.action, script: factsBesidePingAhead(planned.action.script, input.inventory, input.node.name) },
      };
    },
    outputs(input, action, result) {
      if (!result?.ran) return step.outputs(input, action, result);
      const { facts, ahead: round } = splitAhead(result.stdout);
      if (round !== undefined) ahead.set(input.node.name, round);
      return step.outputs(input, action, { ...result, stdout: facts });
    },
  };
}
