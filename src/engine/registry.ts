/**
 * The steps and checks that playbooks name. Steps change nodes (through planners that return nothing when there
 * is nothing to do); checks only judge what the steps recorded, so a gate's evidence is what actually happened.
 * A step that changes nodes also has a `plan` for dry runs, made of the same decisions (decideConfig, ...).
 */
import { createHash } from 'node:crypto';
import { factsProbeScript, parseFactsProbe } from '../facts/node-facts.js';
import { applyAction, type RemoteAction } from '../steps/action.js';
import { planInstall } from '../steps/install.js';
import { planKeys, parseKeysOutput } from '../steps/keys.js';
import { planConfig, parseConfigOutput, sha256 } from '../steps/config.js';
import { planService, parseServiceOutput } from '../steps/service.js';
import { desiredNodeConfig } from '../topology/desired.js';
import { renderWgQuickConfig, classifyConfigChange } from '../render/wgquick.js';
import { renderRpFilterSysctl } from '../render/sysctl.js';
import { renderReloadDropIn } from '../render/systemd.js';
import { lineDiff } from '../render/line-diff.js';
import { runPingMatrix, pingMatrixRow } from './ping.js';
import type { CheckDefinition, CheckResult, EngineContext, NodeState, StepDefinition } from './types.js';

const requireFacts = (state: NodeState) => {
  if (!state.facts) throw new Error('facts were not gathered for this node');
  return state.facts;
};

const pass = (id: string, message: string, evidence?: string[]): CheckResult => ({ id, status: 'pass', message, evidence });
const warn = (id: string, message: string, evidence?: string[]): CheckResult => ({ id, status: 'warn', message, evidence });
const fail = (id: string, message: string, evidence?: string[]): CheckResult => ({ id, status: 'fail', message, evidence });

/** What an install leaves: the action itself failed unless wg and wg-quick exist afterwards. */
function installed(state: NodeState, action: RemoteAction): void {
  const facts = requireFacts(state);
  state.changes.push(action.description);
  facts.tools.wg = facts.tools.wgQuick = true;
  if (action.description.includes('wireguard-go')) facts.tools.wireguardGo = true;
}

/** The node's rendered config, how it differs from the one on disk, and what the config phase must write. */
function decideConfig(ctx: EngineContext, state: NodeState) {
  const facts = requireFacts(state);
  const publicKeys = new Map(ctx.nodes.filter((n) => n.publicKey).map((n) => [n.node.name, n.publicKey!]));
  const desired = desiredNodeConfig(ctx.inventory, state.node.name, publicKeys);
  const configText = renderWgQuickConfig(desired);
  state.desired = desired;
  state.configChange = facts.config.hasPrivateKeyLine ? 'interface' : classifyConfigChange(facts.config.text, desired).kind;
  const plan = planConfig(facts, {
    iface: ctx.inventory.mesh.interface,
    configText,
    sysctlText: renderRpFilterSysctl(ctx.inventory.mesh.rpFilter),
    rpFilter: ctx.inventory.mesh.rpFilter,
    reloadDropInText: renderReloadDropIn(ctx.inventory.mesh.interface),
  });
  if (!plan.writeConfig) state.configChange = 'none';
  state.configSha256 = sha256(configText);
  state.rpFilterApplied = { all: facts.sysctl.rpFilterAll ?? -1, default: facts.sysctl.rpFilterDefault ?? -1 };
  return { configText, plan };
}

function decideService(ctx: EngineContext, state: NodeState) {
  const peerRoutes = (state.desired?.peers ?? []).flatMap((peer) => peer.allowedIps);
  return planService(requireFacts(state), ctx.inventory.mesh.interface, state.configChange ?? 'none', peerRoutes, state.publicKey);
}

/**
 * A dry run cannot know the key a node will generate: it renders with a stand-in (well-formed, so the renderer takes
 * it) and shows it as `<new key of NODE>`.
 */
const dryRunPublicKey = (node: string) => createHash('sha256').update(`meshctl dry run: ${node}`).digest('base64');

function showDryRunKeys(lines: string[], ctx: EngineContext): string[] {
  const standIns = ctx.nodes.filter((n) => n.keyCreated).map((n) => [dryRunPublicKey(n.node.name), `<new key of ${n.node.name}>`] as const);
  return lines.map((line) => standIns.reduce((text, [key, label]) => text.replaceAll(key, label), line));
}

export const STEPS: Record<string, StepDefinition> = {
  'gather-facts': {
    scope: 'node',
    async run(ctx, state) {
      const { interface: iface } = ctx.inventory.mesh;
      const target = { interface: iface, listenPort: state!.node.listenPort };
      const result = await state!.connection.run(factsProbeScript(target), { signal: ctx.options.signal });
      if (result.code !== 0) throw new Error(`facts probe failed (exit ${result.code}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
      state!.facts = parseFactsProbe(result.stdout, target);
    },
  },

  'install-wireguard': {
    scope: 'node',
    async run(ctx, state) {
      const action = planInstall(requireFacts(state!));
      if (!action) return;
      await applyAction(state!.connection, action, ctx.options.signal);
      installed(state!, action);
    },
    plan(_ctx, state) {
      const action = planInstall(requireFacts(state!));
      if (action) installed(state!, action);
    },
  },

  'generate-keys': {
    scope: 'node',
    async run(ctx, state) {
      const facts = requireFacts(state!);
      const action = planKeys(facts, ctx.inventory.mesh.interface);
      if (!action) {
        state!.publicKey = facts.keys.publicKey;
        return;
      }
      const output = parseKeysOutput(await applyAction(state!.connection, action, ctx.options.signal));
      state!.publicKey = output.publicKey;
      state!.keyCreated = output.created;
      if (output.created) state!.changes.push(action.description);
    },
    plan(ctx, state) {
      const facts = requireFacts(state!);
      const action = planKeys(facts, ctx.inventory.mesh.interface);
      state!.publicKey = action ? dryRunPublicKey(state!.node.name) : facts.keys.publicKey;
      if (action) {
        state!.keyCreated = true;
        state!.changes.push(action.description);
      }
    },
  },

  'write-config': {
    scope: 'node',
    async run(ctx, state) {
      const { plan } = decideConfig(ctx, state!);
      if (!plan.action) return;
      const output = parseConfigOutput(await applyAction(state!.connection, plan.action, ctx.options.signal));
      if (output.configSha256) state!.configSha256 = output.configSha256;
      if (output.rpFilter) state!.rpFilterApplied = output.rpFilter;
      state!.changes.push(plan.action.description);
    },
    plan(ctx, state) {
      const { configText, plan } = decideConfig(ctx, state!);
      if (!plan.action) return;
      state!.changes.push(plan.action.description);
      if (plan.writeConfig) state!.configDiff = showDryRunKeys(lineDiff(requireFacts(state!).config.text, configText), ctx);
    },
  },

  'enable-service': {
    scope: 'node',
    async run(ctx, state) {
      const facts = requireFacts(state!);
      const { action, warning } = decideService(ctx, state!);
      if (warning) state!.changes.push(`warning: ${warning}`);
      if (!action) {
        state!.service = { active: facts.service.active, enabled: facts.service.enabled, interfaceIndex: facts.interfaceIndex };
        return;
      }
      state!.service = parseServiceOutput(await applyAction(state!.connection, action, ctx.options.signal));
      state!.changes.push(action.description);
    },
    plan(ctx, state) {
      const { action, warning } = decideService(ctx, state!);
      if (warning) state!.changes.push(`warning: ${warning}`);
      if (action) state!.changes.push(action.description);
    },
  },

  'ping-matrix': {
    scope: 'mesh',
    run: (ctx) => runPingMatrix(ctx),
    // a dry run has no mesh to ping: nothing to record
    plan: () => undefined,
  },
};

export const CHECKS: Record<string, CheckDefinition> = {
  'running-as-root': {
    evaluate: (_ctx, s) => {
      const f = requireFacts(s);
      return f.uid === 0
        ? pass('running-as-root', s.node.ssh.become === 'sudo' ? `root through sudo as ${s.node.ssh.user}` : 'logged in as root')
        : fail('running-as-root', `commands run as uid ${f.uid}, not root`);
    },
  },
  'package-manager-known': {
    evaluate: (_ctx, s) => {
      const f = requireFacts(s);
      return f.packageManager
        ? pass('package-manager-known', `${f.os.prettyName || f.os.id} with ${f.packageManager}; WireGuard module ${f.kernelModule}`)
        : fail('package-manager-known', `no supported package manager on ${f.os.prettyName || 'this OS'}`);
    },
  },
  'init-system': {
    evaluate: (_ctx, s) =>
      requireFacts(s).systemd
        ? pass('init-system', 'systemd')
        : warn('init-system', 'no systemd: wg-quick will be started by hand and will not survive a reboot'),
  },
  'listen-port-free': {
    evaluate: (ctx, s) => {
      const f = requireFacts(s);
      const iface = ctx.inventory.mesh.interface;
      if (f.listenPortUsers.length === 0) return pass('listen-port-free', `UDP ${s.node.listenPort} is free`);
      if (f.wireguardInterfaces.includes(iface) && f.config.managedByMeshctl)
        return pass('listen-port-free', `UDP ${s.node.listenPort} is held by this mesh's ${iface}`);
      return fail('listen-port-free', `UDP ${s.node.listenPort} is already in use`, f.listenPortUsers);
    },
  },
  'default-ip-rules': {
    evaluate: (_ctx, s) => {
      const extra = requireFacts(s).baseline.extraIpRules;
      return extra.length === 0
        ? pass('default-ip-rules', 'only the default ip rules')
        : fail('default-ip-rules', `${extra.length} extra ip rule(s)`, extra);
    },
  },
  'no-kubernetes-leftovers': {
    evaluate: (_ctx, s) => {
      const b = requireFacts(s).baseline;
      const found = [...b.leftoverPaths, ...b.leftoverUnits.map((u) => `unit ${u}`), ...b.leftoverInterfaces.map((i) => `interface ${i}`)];
      return found.length === 0
        ? pass('no-kubernetes-leftovers', 'no k3s/rke2/CNI leftovers')
        : fail('no-kubernetes-leftovers', `leftovers: ${found.join(', ')}`, found);
    },
  },
  'no-foreign-wireguard': {
    evaluate: (ctx, s) => {
      const f = requireFacts(s);
      const iface = ctx.inventory.mesh.interface;
      const foreign = [
        ...f.wireguardInterfaces.filter((i) => i !== iface).map((i) => `interface ${i}`),
        ...f.wireguardConfigs.filter((c) => c !== `${iface}.conf`).map((c) => `/etc/wireguard/${c}`),
      ];
      if (f.config.exists && !f.config.managedByMeshctl) foreign.push(`/etc/wireguard/${iface}.conf (not written by meshctl)`);
      else if (!f.config.exists && f.interfaces.includes(iface)) foreign.push(`interface ${iface} (no config file)`);
      return foreign.length === 0
        ? pass('no-foreign-wireguard', 'no other WireGuard interface or config')
        : fail('no-foreign-wireguard', `in the way: ${foreign.join(', ')}`, foreign);
    },
  },
  'no-firewall-drop': {
    evaluate: (_ctx, s) => {
      const drops = requireFacts(s).baseline.firewallDrops;
      return drops.length === 0
        ? pass('no-firewall-drop', `no rule drops UDP ${s.node.listenPort}`)
        : fail('no-firewall-drop', `firewall drops UDP ${s.node.listenPort}`, drops);
    },
  },
  'wireguard-tools-present': {
    evaluate: (_ctx, s) => {
      const t = requireFacts(s).tools;
      const userspace =
        requireFacts(s).kernelModule === 'missing' ? ` (userspace: wireguard-go ${t.wireguardGo ? 'present' : 'MISSING'})` : '';
      const ok = t.wg && t.wgQuick && (requireFacts(s).kernelModule !== 'missing' || t.wireguardGo);
      return ok
        ? pass('wireguard-tools-present', `wg, wg-quick present${userspace}`)
        : fail('wireguard-tools-present', `missing tools${userspace}`);
    },
  },
  'public-key-collected': {
    evaluate: (_ctx, s) =>
      s.publicKey
        ? pass('public-key-collected', `${s.keyCreated ? 'new key' : 'existing key kept'}; public ${s.publicKey}`)
        : fail('public-key-collected', 'no public key'),
  },
  'config-in-place': {
    evaluate: (_ctx, s) => {
      const written = s.changes.some((c) => c.includes('.conf'));
      return s.configSha256 && s.desired
        ? pass(
            'config-in-place',
            `${written ? 'written' : 'unchanged'}: ${s.desired.peers.length} peers, sha256 ${s.configSha256.slice(0, 12)}`,
          )
        : fail('config-in-place', 'config not written');
    },
  },
  'rp-filter-loose': {
    evaluate: (ctx, s) => {
      const want = ctx.inventory.mesh.rpFilter;
      const got = s.rpFilterApplied;
      return got && got.all === want && got.default === want
        ? pass('rp-filter-loose', `rp_filter all=${got.all} default=${got.default}`)
        : fail('rp-filter-loose', `rp_filter is all=${got?.all} default=${got?.default}, want ${want}`);
    },
  },
  'service-active': {
    evaluate: (ctx, s) => {
      const service = s.service;
      const name = `wg-quick@${ctx.inventory.mesh.interface}`;
      if (!service) return fail('service-active', `${name} state unknown`);
      if (service.enabled === 'no-systemd')
        return service.active === 'active'
          ? warn('service-active', 'up by wg-quick (no systemd, not persistent)')
          : fail('service-active', 'interface is down');
      return service.active === 'active' && service.enabled === 'enabled'
        ? pass('service-active', `${name} enabled and active`)
        : fail('service-active', `${name} is ${service.active}, ${service.enabled}`);
    },
  },
  'interface-present': {
    evaluate: (ctx, s) =>
      s.service?.interfaceIndex !== undefined
        ? pass('interface-present', `${ctx.inventory.mesh.interface} ifindex ${s.service.interfaceIndex}`)
        : fail('interface-present', `${ctx.inventory.mesh.interface} does not exist`),
  },
  'ssh-still-reachable': {
    async evaluate(ctx, s) {
      // a fresh login, not the session we already hold: the proof that nothing locked us out
      try {
        const connection = await ctx.reconnect(s.node);
        try {
          const result = await connection.run('true', { timeoutMs: 10_000 });
          return result.code === 0
            ? pass('ssh-still-reachable', `new SSH login to ${connection.target} works`)
            : fail('ssh-still-reachable', `new login could not run a command (exit ${result.code})`);
        } finally {
          await connection.close();
        }
      } catch (error) {
        return fail('ssh-still-reachable', `a new SSH login fails: ${(error as Error).message}`);
      }
    },
  },
  'ping-matrix': {
    evaluate: (ctx, s) => pingMatrixRow(ctx, s.node.name),
  },
  'overlay-routes': {
    evaluate: (ctx, s) => {
      const peers = s.desired?.peers ?? [];
      const routes = new Set(s.tunnel?.routes ?? []);
      const missing = peers.flatMap((p) => p.allowedIps).filter((cidr) => !routes.has(cidr) && !routes.has(cidr.replace(/\/32$/, '')));
      return missing.length === 0
        ? pass('overlay-routes', `${peers.length} /32 routes via ${ctx.inventory.mesh.interface}`)
        : fail('overlay-routes', `missing routes via ${ctx.inventory.mesh.interface}: ${missing.join(', ')}`, s.tunnel?.routes);
    },
  },
  'handshakes-recent': {
    evaluate: (_ctx, s) => {
      const now = Math.floor(Date.now() / 1000);
      const stale = (s.desired?.peers ?? []).filter((p) => {
        const at = s.tunnel?.handshakes.get(p.publicKey) ?? 0;
        return at === 0 || now - at > 180;
      });
      return stale.length === 0
        ? pass('handshakes-recent', `handshakes with all ${(s.desired?.peers ?? []).length} peers`)
        : fail('handshakes-recent', `no recent handshake with ${stale.map((p) => p.name).join(', ')}`);
    },
  },
};

export const registryNames = { steps: new Set(Object.keys(STEPS)), checks: new Set(Object.keys(CHECKS)) };
