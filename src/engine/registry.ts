/**
 * The steps and checks that playbooks name, with their contracts (what each needs and provides: ./types.ts).
 * Steps plan through pure planners (../steps/*) that return nothing when there is nothing to do; checks judge only
 * what the steps provided, so a gate's evidence is what actually happened on the node.
 */
import { pingMatrixRow, runPingMatrix } from './ping.js';
import { factsProbeScript, parseFactsProbe } from '../facts/node-facts.js';
import { judgeHandshakesRecent, judgeInterface, judgeOverlayRoutes, judgeRpFilter, judgeService, type Judgement } from '../checks/judge.js';
import { renderWgQuickConfig, classifyConfigChange } from '../render/wgquick.js';
import { renderRpFilterSysctl } from '../render/sysctl.js';
import { renderReloadDropIn } from '../render/systemd.js';
import { dialledNames, needsReresolve, renderReresolveFiles } from '../render/reresolve.js';
import { describeOverride, rpFilterOverrides } from '../facts/sysctl-order.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { planInstall, toolsAfterInstall } from '../steps/install.js';
import { planKeys, parseKeysOutput } from '../steps/keys.js';
import { planConfig, parseConfigOutput, sha256 } from '../steps/config.js';
import { planService, parseServiceOutput } from '../steps/service.js';
import { desiredNodeConfig } from '../topology/desired.js';
import { standInPublicKey } from './plan.js';
import type {
  CheckDefinition,
  CheckResult,
  MeshStep,
  MeshStepInput,
  MeshStepOutput,
  NodeStep,
  NodeValues,
  StepInput,
  ValueName,
} from './types.js';
import type { OperatorAddress } from '../facts/definitions.js';
import type { NodeFacts } from '../facts/node-facts.js';
import type { Inventory, Node } from '../inventory/types.js';
import { cidrContains, formatCidr, isIpv4, parseCidr } from '../net/ipv4.js';
import { judgeForeignWireGuard, type MeshFootprint } from '../topology/clashes.js';
import { changeWithoutRestart } from '../import/restart.js';
import { importHint, interfaceOwnership } from '../import/ownership.js';
import { judgeForward } from '../checks/forward-probe.js';
import { judgeNatMapping, natMappingOf, type NatDiscoveryReport } from '../checks/nat-discovery.js';
import { runUnderlayProbes, type UnderlayProbes } from '../checks/underlay-probe.js';
import {
  ADDRESS_MOVED,
  ADDRESS_MOVED_HEADING,
  ADDRESS_MOVED_NOTE,
  describeMovedAddresses,
  describeUnderlayChanges,
  reviewUnderlay,
  UNDERLAY_CHANGED,
  UNDERLAY_CHANGED_NOTE,
} from './underlay-change.js';
import {
  judgeMovedAddress,
  judgeRoamedNode,
  type MovedAddress,
  movedPublicAddresses,
  roamedWarnings,
  type SiteDiscovery,
  sightingsAtInventoryAddress,
} from '../topology/moved-address.js';

/**
 * The port-forward probe and NAT discovery cost a watch window of about 2 s (../checks/underlay-probe.ts), and
 * they are needed before configs are pushed to nodes that do not run the mesh yet (a first build, a node added or
 * brought back). When every node already runs its interface, the mesh's own handshakes are the evidence (verify
 * and debug judge them), so a converged `up` or `plan` does not pay for the probes; but only while the nodes dial
 * what the inventory designs: a forward, address or listen port the inventory changed has never been tried, and is
 * probed (finding 19: ./underlay-change.ts).
 */
const meshAlreadyUp = (nodes: readonly { values: { facts: NodeFacts } }[]): boolean =>
  nodes.length > 0 && nodes.every(({ values }) => values.facts.live !== undefined);
const PROBES_SKIPPED = 'not probed: every node already runs the mesh (its handshakes are the evidence; verify judges them)';

/** The verdict of a probe check whose probe did not run: a pass when the mesh's handshakes are the evidence, else a warning. */
const skippedProbe = (id: string, underlay: { skipped: string; warn?: boolean }): CheckResult =>
  underlay.warn ? warn(id, underlay.skipped) : pass(id, underlay.skipped);

/** A probe check's verdict with, when the probes ran on a running mesh, why they did as its first evidence line. */
const withWhy = (result: CheckResult, underlay: { why?: string; moved?: readonly MovedAddress[] }): CheckResult =>
  underlay.why === undefined
    ? result
    : {
        ...result,
        message: `${result.message}${underlay.moved ? ADDRESS_MOVED_NOTE : UNDERLAY_CHANGED_NOTE}`,
        evidence: [`${underlay.moved ? ADDRESS_MOVED : UNDERLAY_CHANGED}${underlay.why}`, ...(result.evidence ?? [])],
        underlayChanged: {
          why: underlay.why,
          message: result.message,
          ...(underlay.moved ? { heading: ADDRESS_MOVED_HEADING } : {}),
        },
      };

/** The moved-address sighting of `node`'s site, when the probes ran because of one (probeUnderlay). */
const movedSiteOf = (underlay: { moved?: readonly MovedAddress[] }, node: Node): MovedAddress | undefined =>
  underlay.moved?.find((m) => m.site === node.site);

/**
 * What the run's NAT discovery found for `node` and its site (../topology/moved-address.ts judgeRoamedNode, RV4
 * F2.1); undefined for a node not of a `nat` site dialled at its publicIp.
 */
function siteDiscoveryOf(nat: NatDiscoveryReport, inventory: Inventory, node: Node): SiteDiscovery | undefined {
  const site = inventory.sites.find((s) => s.name === node.site);
  if (site?.kind !== 'nat' || site.publicIp === undefined || site.publicHost !== undefined) return undefined;
  const found = natMappingOf(nat, node.name).publicIp;
  const atInventoryAddress = inventory.nodes
    .filter((n) => n.site === site.name && n.name !== node.name && natMappingOf(nat, n.name).publicIp === site.publicIp)
    .map((n) => n.name);
  return { node: node.name, site: site.name, inventoryIp: site.publicIp, ...(found ? { found } : {}), atInventoryAddress };
}

/** Whether the forward probe's datagrams to `node`'s forward reached no node at all (the forward may be fine). */
const forwardReachedNone = (report: UnderlayProbesRun['forward'], node: Node): boolean => {
  const token = report.forwards.find((f) => f.node === node.name)?.token;
  return token !== undefined && ![...report.seen.values()].some((list) => list.some((s) => s.token === token));
};
type UnderlayProbesRun = Exclude<UnderlayProbes, { skipped: string; warn?: boolean }>;

/**
 * How the probe-underlay step has the probes run on the nodes of the run (node name -> connection): runUnderlayProbes,
 * or (./underlay-ahead.ts) the result of the run it started during the facts step.
 */
export type UnderlayProbeRun = (
  inventory: Inventory,
  connections: ReadonlyMap<string, Connection>,
) => Promise<Exclude<UnderlayProbes, { skipped: string; warn?: boolean }>>;

/**
 * The probes' value for every node of the run: one shared result (from `probe`), or why they were skipped. A mesh
 * whose every node runs its interface is probed only when the inventory changes what it dials (`why` says what).
 */
async function probeUnderlay(input: MeshStepInput<'facts'>, probe: UnderlayProbeRun): Promise<MeshStepOutput<'underlay'>> {
  const running = meshAlreadyUp(input.nodes);
  // one parse of every node's file for both questions (./underlay-change.ts reviewUnderlay)
  const review = running ? reviewUnderlay(input.inventory, input.nodes) : { changes: [], views: [] };
  const changed = review.changes;
  // Q4 item 3: an unchanged inventory, but the live endpoints see a site elsewhere: the probes judge it. RV4 F2.1: not
  // a site also seen at the inventory's address (it has not moved): its nodes seen elsewhere roamed, a warning each
  const sighted = running && changed.length === 0 ? movedPublicAddresses(input.inventory, review.views) : [];
  // RV4 F2.4: nor a carrier-NAT site: nobody dials its address (no forward can reach it), and a carrier's pool may
  // give it another one at any time; the probes would cost every run and advise a fix that changes nothing
  const carrier = new Set(input.inventory.sites.flatMap((s) => (s.kind === 'nat' && s.carrier ? [s.name] : [])));
  const moved = sighted.filter((m) => sightingsAtInventoryAddress(m).length === 0 && !carrier.has(m.site));
  const roamed = roamedWarnings(sighted);
  const underlay: NodeValues['underlay'] =
    running && changed.length === 0 && moved.length === 0
      ? { skipped: PROBES_SKIPPED }
      : {
          ...(await probe(input.inventory, new Map(input.nodes.map((n) => [n.node.name, n.connection])))),
          ...(changed.length ? { why: describeUnderlayChanges(changed) } : {}),
          ...(moved.length ? { why: describeMovedAddresses(moved), moved } : {}),
        };
  const underlayOf = (node: string): NodeValues['underlay'] =>
    'skipped' in underlay && roamed.has(node) ? { skipped: `${underlay.skipped}; ${roamed.get(node)}`, warn: true } : underlay;
  return { values: new Map(input.nodes.map((n) => [n.node.name, { underlay: underlayOf(n.node.name) }])), errors: new Map() };
}

/** The baseline's probe-underlay step with its probes run by `probe` (the registry's own runs runUnderlayProbes). */
export const underlayProbeStep = (probe: UnderlayProbeRun): MeshStep =>
  meshStep({
    scope: 'mesh',
    effect: 'read',
    needs: ['facts'],
    provides: ['underlay'],
    run: (input) => probeUnderlay(input, probe),
  }) as unknown as MeshStep;
import { judgeNodeFirewall } from '../firewall/judge.js';
import { judgeWireGuardFiles } from '../checks/file-modes.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';

/** What the mesh puts on `node`, for judging the other WireGuard interfaces there (../topology/clashes.ts). */
const meshFootprint = (inventory: Inventory, node: Node): MeshFootprint => ({
  interface: inventory.mesh.interface,
  listenPort: node.listenPort,
  network: inventory.mesh.network,
  overlayIp: node.overlayIp,
  peerAllowedIps: inventory.nodes.filter((peer) => peer.name !== node.name).map((peer) => `${peer.overlayIp}/32`),
});

const pass = (id: string, message: string, evidence?: string[]): CheckResult => ({ id, status: 'pass', message, evidence });
const warn = (id: string, message: string, evidence?: string[]): CheckResult => ({ id, status: 'warn', message, evidence });
const fail = (id: string, message: string, evidence?: string[]): CheckResult => ({ id, status: 'fail', message, evidence });

/**
 * A judge's verdict (../checks/judge.ts, shared with verify) as this gate's check result. `failOnWarn`: a gate
 * that must not pass on a warning.
 */
const asCheck = (id: string, judged: Judgement, { failOnWarn = false } = {}): CheckResult => ({
  id,
  status: failOnWarn && judged.status === 'warn' ? 'fail' : judged.status,
  message: judged.message,
  ...(judged.evidence ? { evidence: judged.evidence } : {}),
});

/** Identity helpers that let TypeScript infer a definition's needs and provides. */
const nodeStep = <N extends ValueName, P extends ValueName>(step: NodeStep<N, P>) => step;
const meshStep = <N extends ValueName, P extends ValueName>(step: MeshStep<N, P>) => step;
const check = <N extends ValueName>(definition: CheckDefinition<N>) => definition;

/** The rendered config for a node from every public key known so far (nodes whose keys step failed are left out). */
function renderFor(input: StepInput<'facts' | 'publicKey'>) {
  const publicKeys = new Map([...input.mesh].map(([name, values]) => [name, values.publicKey.key]));
  const desired = desiredNodeConfig(input.inventory, input.node.name, publicKeys);
  return { desired, configText: renderWgQuickConfig(desired) };
}

/**
 * decideConfig's last answer per node's values object, with what it was computed from. The write-config step asks
 * in its plan and again in its outputs (same node, same values, same mesh): issue 10, each node's config (6,000
 * lines at 1,000 nodes) was rendered twice there and a third time to classify the change; now once per run of the
 * step. Any input that differs by identity (another pass with other relays, a later value) computes afresh.
 */
const decided = new WeakMap<
  object,
  {
    facts: NodeFacts;
    inventory: Inventory;
    mesh: StepInput<'facts' | 'publicKey'>['mesh'];
    rollback: StepInput<'facts'>['rollback'];
    node: string;
    value: ReturnType<typeof computeConfig>;
  }
>();

/** How many times a node's config was rendered and planned by the write-config step (test/unit/scale-cost-config.test.ts). */
export const configDecisions = { count: 0 };

function decideConfig(input: StepInput<'facts' | 'publicKey'>) {
  const last = decided.get(input.values);
  if (
    last &&
    last.facts === input.values.facts &&
    last.inventory === input.inventory &&
    last.mesh === input.mesh &&
    last.rollback === input.rollback &&
    last.node === input.node.name
  )
    return last.value;
  const value = computeConfig(input);
  decided.set(input.values, {
    facts: input.values.facts,
    inventory: input.inventory,
    mesh: input.mesh,
    rollback: input.rollback,
    node: input.node.name,
    value,
  });
  return value;
}

/** reportedPublicKeys' answer per mesh map (one map is shared by every node of a step: issue 10, no N^2 sets). */
const reportedPerMesh = new WeakMap<object, ReadonlySet<string>>();

/**
 * The public keys the run's nodes reported as the public half of a private key they hold (`wg pubkey < KEYFILE`:
 * keys.publicKey; `wg show IFACE public-key`: interfacePublicKey), never a key read from a file that claims to be
 * public: what a plan's diff may show in a `PublicKey =` line (finding 30, ../remote/redact.ts).
 */
function reportedPublicKeys(mesh: StepInput<'facts'>['mesh']): ReadonlySet<string> {
  const cached = reportedPerMesh.get(mesh);
  if (cached) return cached;
  const keys = new Set<string>();
  // a node outside --limit has only its public key in the map (./limit.ts), no facts
  for (const { facts } of mesh.values() as Iterable<{ facts?: NodeFacts }>) {
    if (facts?.keys.publicKey) keys.add(facts.keys.publicKey);
    if (facts?.interfacePublicKey) keys.add(facts.interfacePublicKey);
  }
  reportedPerMesh.set(mesh, keys);
  return keys;
}

function computeConfig(input: StepInput<'facts' | 'publicKey'>) {
  configDecisions.count++;
  const { facts } = input.values;
  const { mesh } = input.inventory;
  const rendered = renderFor(input);
  const configText = rendered.configText;
  // its peers are shared across the nodes' configs (src/topology/desired.ts sharedPeer, issue 10)
  const desired = rendered.desired;
  const plan = planConfig(facts, {
    iface: mesh.interface,
    configText,
    sysctlText: renderRpFilterSysctl(mesh.rpFilter),
    rpFilter: mesh.rpFilter,
    reloadDropInText: renderReloadDropIn(mesh.interface),
    ...(input.rollback ? { rollback: input.rollback } : {}),
    ...(needsReresolve(desired) ? { reresolve: { files: renderReresolveFiles(), names: dialledNames(desired) } } : {}),
    reportedPublicKeys: reportedPublicKeys(input.mesh),
  });
  // a PrivateKey line in the file is moved out by rewriting it, which changes [Interface]
  const found = !plan.writeConfig
    ? 'none'
    : facts.config.hasPrivateKeyLine
      ? 'interface'
      : classifyConfigChange(facts.config.text, desired, configText).kind;
  // ... unless the running interface already is the design with its key file's key (a taken-over file: no restart)
  const change = changeWithoutRestart(facts, desired, found);
  // the text itself is not kept: the plan's script carries it, and every node's is decided before any is written
  // (issue 10: all N configs held twice at once in the config phase); the outputs need only its sha256
  return { desired, renderedSha256: sha256(configText), plan, change } as const;
}

/**
 * Issue 8, kind 10: a sysctl file sorted after ours that sets rp_filter to another value undoes it at every boot;
 * up still applies our values now, and names the file (one warning per override, ./sysctl-order.ts).
 */
function rpFilterOverrideWarnings(input: StepInput<'facts'>): string[] {
  const { mesh } = input.inventory;
  const ours = wireguardPaths(mesh.interface).sysctl;
  const files = input.values.facts.sysctl.rpFilterFiles ?? [];
  return rpFilterOverrides(files, { ours, iface: mesh.interface, mode: mesh.rpFilter }).map((o) => describeOverride(o, ours));
}

/** Per inventory value (issue 10): the nodes by overlay IP, and every node's stand-in key. */
const perInventory = new WeakMap<Inventory, { nodes: Inventory['nodes']; owners: Map<string, string[]>; keys?: Map<string, string> }>();
function inventoryIndex(inventory: Inventory) {
  let entry = perInventory.get(inventory);
  if (!entry || entry.nodes !== inventory.nodes) {
    const owners = new Map<string, string[]>();
    for (const n of inventory.nodes) owners.set(n.overlayIp, [...(owners.get(n.overlayIp) ?? []), n.name]);
    entry = { nodes: inventory.nodes, owners };
    perInventory.set(inventory, entry);
  }
  return entry;
}
/** overlay IP -> the nodes that hold it, built once per inventory. */
const overlayOwners = (inventory: Inventory) => inventoryIndex(inventory).owners;
/** Every node's stand-in public key (./plan.ts), hashed once per inventory. */
function standInKeys(inventory: Inventory): Map<string, string> {
  const entry = inventoryIndex(inventory);
  entry.keys ??= new Map(inventory.nodes.map((n) => [n.name, standInPublicKey(n.name)]));
  return entry.keys;
}

/** How many times judgeOperatorAddress rendered a node's config (test/unit/scale-cost-memory.test.ts). */
export const operatorRenders = { count: 0 };

/**
 * Issue 8, kind 5: the mesh must not capture the operator's own address. wg-quick routes every peer's AllowedIPs
 * into the interface; if the operator's address (as the node sees it, $SSH_CONNECTION) is in one of them, or in the
 * overlay network, the node's SSH replies go into the tunnel once the interface is up, and neither meshctl nor ssh
 * reaches the node again. Refused here, at the facts gate, before anything is installed. An address the node did
 * not report is a warning (nothing to judge); an IPv6 one cannot be captured by the IPv4 overlay.
 */
export function judgeOperatorAddress(inventory: Inventory, node: Node, seen: OperatorAddress | undefined): CheckResult {
  const id = 'operator-not-captured';
  if (!seen)
    return warn(id, "the node did not report the operator's address ($SSH_CONNECTION): cannot tell whether the mesh would capture it");
  const evidence = [`operator address as ${node.name} sees it: ${seen.address}${seen.nodeAddress ? ` (to ${seen.nodeAddress})` : ''}`];
  if (!isIpv4(seen.address)) return pass(id, `operator at ${seen.address}: outside the IPv4 overlay`, evidence);
  // every AllowedIPs entry the design renders is another node's overlay /32 (../topology/desired.ts desiredPeer;
  // test/unit/scale-cost-memory.test.ts holds it to that): an address that is no other node's overlay IP is in
  // none of them, and the node's whole config is rendered only when it is (issue 10: this check rendered every
  // node's config with stand-in keys in the facts phase, ~4 s of CPU at 1,000 nodes)
  const another = overlayOwners(inventory)
    .get(seen.address)
    ?.some((owner) => owner !== node.name);
  if (another) operatorRenders.count++;
  const peers = another ? desiredNodeConfig(inventory, node.name, standInKeys(inventory)).peers : [];
  for (const peer of peers) {
    const cidr = peer.allowedIps.map((text) => parseCidr(text, { strict: false })).find((c) => c && cidrContains(c, seen.address));
    if (cidr)
      return fail(
        id,
        `the operator's address ${seen.address} is in the AllowedIPs ${formatCidr(cidr)} of peer ${peer.name}: once ${inventory.mesh.interface} is up, ${node.name} would send its SSH replies into the tunnel and lock meshctl out`,
        [...evidence, `peer ${peer.name} AllowedIPs = ${peer.allowedIps.join(', ')}`],
      );
  }
  const overlay = parseCidr(inventory.mesh.network);
  const reached = judgeSshTarget(inventory, node, seen, overlay, evidence);
  if (reached) return reached;
  if (overlay && cidrContains(overlay, seen.address))
    return fail(
      id,
      `the operator's address ${seen.address} is inside the overlay network ${inventory.mesh.network}: once ${inventory.mesh.interface} is up, ${node.name} would route its SSH replies into the mesh and lock meshctl out; pick an overlay network that does not hold it`,
      [...evidence, `mesh.network = ${inventory.mesh.network}`],
    );
  return pass(id, `operator at ${seen.address} stays outside the mesh (${inventory.mesh.network} and every peer's AllowedIPs)`, evidence);
}

/** "; this looks like a hand-built mesh: run `meshctl import ...`" when the mesh's interface is someone else's, else "". */
function handBuiltHint(facts: NodeFacts, inventory: Inventory): string {
  if (!interfaceOwnership(facts, inventory.mesh.interface).handBuilt) return '';
  return `; this looks like a hand-built mesh: run \`${importHint(inventory.source)}\` to take it over with its keys`;
}

/**
 * The facts gate's port check. A port held by the mesh's own interface passes: meshctl's own (recognised by its
 * header, or by its drop-in and key file when wg-quick's SaveConfig rewrote the file: then a warning says so and
 * that up rewrites it), else the interface of a hand-built mesh, which fails naming `meshctl import`.
 */
export function judgeListenPort(f: NodeFacts, node: Node, inventory: Inventory): CheckResult {
  const id = 'listen-port-free';
  const iface = inventory.mesh.interface;
  const port = node.listenPort;
  if (f.listenPortUsers.length === 0) return pass(id, `UDP ${port} is free`);
  const owner = interfaceOwnership(f, iface);
  // the mesh's interface holds the port when it listens there (older facts without the live port: when it exists)
  const heldByMesh = f.wireguardInterfaces.includes(iface) && (f.live?.listenPort === undefined || f.live.listenPort === port);
  if (heldByMesh && owner.own && owner.rewritten)
    return warn(
      id,
      `UDP ${port} is held by this mesh's ${iface} (recognised by ${owner.by.join(' and ')}); ${owner.rewritten}: up rewrites it from the inventory, keeping ${wireguardPaths(iface).config}.bak`,
      f.listenPortUsers,
    );
  if (heldByMesh && owner.own) return pass(id, `UDP ${port} is held by this mesh's ${iface}`);
  if (heldByMesh && owner.handBuilt)
    return fail(
      id,
      `UDP ${port} is held by ${iface}, which meshctl did not make: this looks like a hand-built mesh: run \`${importHint(inventory.source)}\` to take it over with its keys`,
      f.listenPortUsers,
    );
  const other = f.wireguardDetails?.find((d) => d.name !== iface && d.listenPort === port);
  if (other)
    return fail(
      id,
      `UDP ${port} is already in use by the WireGuard interface ${other.name} (not this mesh's ${iface}): pick another listenPort`,
      f.listenPortUsers,
    );
  return fail(id, `UDP ${port} is already in use`, f.listenPortUsers);
}

/**
 * Issue 9, lock-out guard: the address meshctl reached the node at ($SSH_CONNECTION's server address) must not be
 * one the mesh routes. `validate` refuses an ssh.host literal inside the overlay; this catches what only the
 * connection knows: a host name, or an ssh_config `HostName`, that resolves into the overlay network (a login
 * through the mesh, dropped by the first restart of the interface it rides on).
 */
function judgeSshTarget(
  inventory: Inventory,
  node: Node,
  seen: OperatorAddress,
  overlay: ReturnType<typeof parseCidr>,
  evidence: string[],
): CheckResult | undefined {
  const target = seen.nodeAddress;
  if (!target || !isIpv4(target) || !overlay || !cidrContains(overlay, target)) return undefined;
  const owner = inventory.nodes.find((n) => n.overlayIp === target);
  return fail(
    'operator-not-captured',
    `meshctl reached ${node.name} at ${target}, inside the overlay network ${inventory.mesh.network}${owner ? ` (the overlay address of ${owner.name === node.name ? 'this node' : owner.name})` : ''}: that login rides on the mesh it is changing and drops with the interface; set ssh.host (or the ssh_config HostName) to an address outside the mesh`,
    [...evidence, `mesh.network = ${inventory.mesh.network}`],
  );
}

export const STEPS = {
  'gather-facts': nodeStep({
    scope: 'node',
    effect: 'read',
    needs: [],
    provides: ['facts'],
    plan: ({ node, inventory }) => ({
      action: { changes: [], script: factsProbeScript({ interface: inventory.mesh.interface, listenPort: node.listenPort }) },
    }),
    outputs({ node, inventory }, _action, result) {
      if (!result?.ran) throw new Error('the facts probe did not run');
      return { facts: parseFactsProbe(result.stdout, { interface: inventory.mesh.interface, listenPort: node.listenPort }) };
    },
  }),

  'install-wireguard': nodeStep({
    scope: 'node',
    effect: 'change',
    needs: ['facts'],
    provides: ['tools'],
    plan: ({ values }) => ({ action: planInstall(values.facts) }),
    // the script fails unless wg and wg-quick exist afterwards, so a finished action means they are there
    outputs: ({ values }, action) => ({ tools: toolsAfterInstall(values.facts, action) }),
  }),

  'generate-keys': nodeStep({
    scope: 'node',
    effect: 'change',
    needs: ['facts'],
    provides: ['publicKey'],
    plan: ({ values, inventory }) => ({ action: planKeys(values.facts, inventory.mesh.interface) }),
    outputs({ values, node }, action, result) {
      if (!action) return { publicKey: { key: values.facts.keys.publicKey!, created: false, known: true } };
      // only the .pub is rewritten: the key, and so its public half, stays what the facts derived
      if (!result?.ran && action.changes.every((c) => c.kind === 'repair-public-key-file'))
        return { publicKey: { key: values.facts.keys.publicKey!, created: false, known: true } };
      if (!result?.ran) {
        // known after apply: a stand-in for a new key; an existing key's public half is only derived on the node
        const created = action.changes.some((c) => c.kind === 'generate-key');
        return { publicKey: { key: standInPublicKey(node.name), created, known: false } };
      }
      const output = parseKeysOutput(result.stdout);
      return { publicKey: { key: output.publicKey, created: output.created, known: true } };
    },
  }),

  'write-config': nodeStep({
    scope: 'node',
    effect: 'change',
    needs: ['facts', 'publicKey'],
    provides: ['desired', 'config', 'rpFilter'],
    plan: (input) => {
      const { action, warnings: timerWarnings = [] } = decideConfig(input).plan;
      const warnings = [...rpFilterOverrideWarnings(input), ...timerWarnings];
      return warnings.length ? { action, warnings } : { action };
    },
    outputs(input, action, result) {
      const { facts } = input.values;
      const { desired, renderedSha256, change } = decideConfig(input);
      // the step's last question about this node: the rendered text is not kept for the rest of the run (issue 10:
      // one config of N-1 peers per node, held beside the plan's script that carries the same text)
      decided.delete(input.values);
      const written = action?.changes.some((c) => c.kind === 'write-file' && c.role === 'config') ?? false;
      const before = { all: facts.sysctl.rpFilterAll ?? -1, default: facts.sysctl.rpFilterDefault ?? -1 };
      if (!action) return { desired, config: { change, renderedSha256, nodeSha256: facts.config.sha256, written }, rpFilter: before };
      if (!result?.ran) {
        // predicted: what the action promises (the gate of a dry run judges nothing)
        const rp = input.inventory.mesh.rpFilter;
        return { desired, config: { change, renderedSha256, nodeSha256: renderedSha256, written }, rpFilter: { all: rp, default: rp } };
      }
      const output = parseConfigOutput(result.stdout);
      return { desired, config: { change, renderedSha256, nodeSha256: output.configSha256, written }, rpFilter: output.rpFilter ?? before };
    },
  }),

  'enable-service': nodeStep({
    scope: 'node',
    effect: 'change',
    needs: ['facts', 'desired', 'config', 'publicKey'],
    provides: ['service'],
    plan(input) {
      const { values, inventory } = input;
      const peerRoutes = values.desired.peers.flatMap((peer) => peer.allowedIps);
      const { action, warning } = planService(
        values.facts,
        inventory.mesh.interface,
        values.config.change,
        peerRoutes,
        values.publicKey.key,
        values.desired,
        input.rollback,
      );
      return { action, warnings: warning ? [warning] : [] };
    },
    outputs({ values }, action, result) {
      const { facts } = values;
      if (!action)
        return { service: { active: facts.service.active, enabled: facts.service.enabled, interfaceIndex: facts.interfaceIndex } };
      if (!result?.ran) return { service: { active: 'active', enabled: facts.systemd ? 'enabled' : 'no-systemd' } };
      return { service: parseServiceOutput(result.stdout) };
    },
  }),

  // issue 11: the port-forward probe and NAT discovery, together, over the run's connections (../checks/underlay-probe.ts)
  'probe-underlay': meshStep({
    scope: 'mesh',
    effect: 'read',
    needs: ['facts'],
    provides: ['underlay'],
    run: (input) => probeUnderlay(input, (inventory, connections) => runUnderlayProbes(inventory, connections)),
  }),

  'ping-matrix': meshStep({
    scope: 'mesh',
    effect: 'probe',
    needs: ['desired'],
    provides: ['tunnel'],
    run: (input) => runPingMatrix(input),
  }),
};

export const CHECKS = {
  'running-as-root': check({
    needs: ['facts'],
    evaluate: ({ values: { facts }, node }) =>
      facts.uid === 0
        ? pass('running-as-root', node.ssh.become === 'sudo' ? `root through sudo as ${node.ssh.user}` : 'logged in as root')
        : fail('running-as-root', `commands run as uid ${facts.uid}, not root`),
  }),
  'package-manager-known': check({
    needs: ['facts'],
    evaluate: ({ values: { facts: f } }) =>
      f.packageManager
        ? pass('package-manager-known', `${f.os.prettyName || f.os.id} with ${f.packageManager}; WireGuard module ${f.kernelModule}`)
        : fail('package-manager-known', `no supported package manager on ${f.os.prettyName || 'this OS'}`),
  }),
  'init-system': check({
    needs: ['facts'],
    evaluate: ({ values: { facts } }) =>
      facts.systemd
        ? pass('init-system', 'systemd')
        : warn('init-system', 'no systemd: wg-quick will be started by hand and will not survive a reboot'),
  }),
  'listen-port-free': check({
    needs: ['facts'],
    evaluate: ({ values: { facts: f }, node, inventory }) => judgeListenPort(f, node, inventory),
  }),
  'operator-not-captured': check({
    needs: ['facts'],
    evaluate: ({ values: { facts }, node, inventory }) => judgeOperatorAddress(inventory, node, facts.operatorAddress),
  }),
  'default-ip-rules': check({
    needs: ['facts'],
    evaluate: ({ values: { facts } }) => {
      const extra = facts.baseline.extraIpRules;
      return extra.length === 0
        ? pass('default-ip-rules', 'only the default ip rules')
        : fail('default-ip-rules', `${extra.length} extra ip rule(s)`, extra);
    },
  }),
  'no-kubernetes-leftovers': check({
    needs: ['facts'],
    evaluate: ({ values: { facts } }) => {
      const b = facts.baseline;
      const found = [...b.leftoverPaths, ...b.leftoverUnits.map((u) => `unit ${u}`), ...b.leftoverInterfaces.map((i) => `interface ${i}`)];
      return found.length === 0
        ? pass('no-kubernetes-leftovers', 'no k3s/rke2/CNI leftovers')
        : fail('no-kubernetes-leftovers', `leftovers: ${found.join(', ')}`, found);
    },
  }),
  'no-foreign-wireguard': check({
    needs: ['facts'],
    evaluate: ({ values: { facts: f }, node, inventory }) => {
      const id = 'no-foreign-wireguard';
      const { clashes, harmless } = judgeForeignWireGuard(meshFootprint(inventory, node), {
        wireguardInterfaces: f.wireguardInterfaces,
        ...(f.wireguardDetails ? { details: f.wireguardDetails } : {}),
        configs: f.wireguardConfigs,
        interfaces: f.interfaces,
        // meshctl's own interface is recognised by more than the header comment (../import/ownership.ts)
        ownConfig: { exists: f.config.exists, managedByMeshctl: interfaceOwnership(f, inventory.mesh.interface).own },
      });
      const texts = clashes.map((c) => c.text);
      const handBuilt = clashes.some((c) => c.kind === 'name') ? handBuiltHint(f, inventory) : '';
      if (texts.length > 0) return fail(id, `in the way: ${texts.join('; ')}${handBuilt}`, texts);
      return harmless.length === 0
        ? pass(id, 'no other WireGuard interface or config')
        : pass(id, `also here: ${harmless.join(', ')}: no clash`, harmless);
    },
  }),
  // Q9 F-perm-rollback: the key, .pub, wg-quick file and /etc/wireguard root's and written by root alone (a STOP, never
  // a silent chmod: the content may have been changed; ../checks/file-modes.ts)
  'wireguard-file-modes': check({
    needs: ['facts'],
    evaluate: ({ values: { facts }, inventory }) =>
      asCheck(
        'wireguard-file-modes',
        judgeWireGuardFiles(
          inventory.mesh.interface,
          facts.wireguardFiles,
          () => facts.config.hasPrivateKeyLine || facts.config.hasPresharedKeyLine === true,
        ),
      ),
  }),
  'no-firewall-drop': check({
    needs: ['facts'],
    // the whole ruleset's effect on a new datagram to the listen port (issue 8, kind 4): ../firewall/judge.ts
    evaluate: ({ values: { facts }, node, inventory }) =>
      asCheck('no-firewall-drop', judgeNodeFirewall(inventory, node, facts.baseline.firewallRuleset)),
  }),
  // issue 11: one probe for the whole mesh (../checks/forward-probe.ts), judged per node whose forward it is
  'forward-reaches-node': check({
    needs: ['underlay'],
    evaluate: ({ node, inventory, values: { underlay } }) =>
      'skipped' in underlay
        ? skippedProbe('forward-reaches-node', underlay)
        : withWhy(
            // a roamed node's forward reaches no node while it is away (RV4 F2.1): said, not a STOP
            forwardReachedNone(underlay.forward, node)
              ? judgeRoamedNode(
                  judgeForward(underlay.forward, node, 'forward-reaches-node', movedSiteOf(underlay, node)),
                  siteDiscoveryOf(underlay.nat, inventory, node),
                )
              : judgeForward(underlay.forward, node, 'forward-reaches-node', movedSiteOf(underlay, node)),
            underlay,
          ),
  }),
  // issue 11: NAT discovery through two public nodes of the mesh (../checks/nat-discovery.ts), said per site
  'nat-mapping': check({
    needs: ['underlay'],
    evaluate: ({ node, inventory, values: { underlay } }) =>
      'skipped' in underlay
        ? skippedProbe('nat-mapping', underlay)
        : withWhy(
            judgeRoamedNode(
              judgeMovedAddress(judgeNatMapping(underlay.nat, inventory, node, 'nat-mapping'), movedSiteOf(underlay, node)),
              siteDiscoveryOf(underlay.nat, inventory, node),
            ),
            underlay,
          ),
  }),
  'wireguard-tools-present': check({
    needs: ['facts', 'tools'],
    evaluate: ({ values: { facts, tools: t } }) => {
      const userspace = facts.kernelModule === 'missing' ? ` (userspace: wireguard-go ${t.wireguardGo ? 'present' : 'MISSING'})` : '';
      const ok = t.wg && t.wgQuick && (facts.kernelModule !== 'missing' || t.wireguardGo);
      return ok
        ? pass('wireguard-tools-present', `wg, wg-quick present${userspace}`)
        : fail('wireguard-tools-present', `missing tools${userspace}`);
    },
  }),
  'public-key-collected': check({
    needs: ['publicKey'],
    evaluate: ({ values: { publicKey } }) =>
      publicKey.key
        ? pass('public-key-collected', `${publicKey.created ? 'new key' : 'existing key kept'}; public ${publicKey.key}`)
        : fail('public-key-collected', 'no public key'),
  }),
  'config-in-place': check({
    needs: ['config', 'desired'],
    evaluate: ({ values: { config, desired } }) => {
      const state = `${config.written ? 'written' : 'unchanged'}: ${desired.peers.length} peers`;
      if (!config.nodeSha256) return fail('config-in-place', 'the node did not report the sha256 of its config');
      // the file on the node must be the one rendered: a write that did not land, or a file changed under us, fails
      return config.nodeSha256 === config.renderedSha256
        ? pass('config-in-place', `${state}, sha256 ${config.nodeSha256.slice(0, 12)}`)
        : fail(
            'config-in-place',
            `${state}, but the node holds sha256 ${config.nodeSha256.slice(0, 12)}, not the rendered ${config.renderedSha256.slice(0, 12)}`,
          );
    },
  }),
  'rp-filter-loose': check({
    needs: ['rpFilter'],
    evaluate: ({ values: { rpFilter }, inventory }) =>
      asCheck(
        'rp-filter-loose',
        judgeRpFilter({ iface: inventory.mesh.interface, mode: inventory.mesh.rpFilter, requireAllAndDefault: true }, rpFilter),
      ),
  }),
  'service-active': check({
    needs: ['service'],
    evaluate: ({ values: { service }, inventory }) => {
      const systemd = service.enabled !== 'no-systemd';
      const observed = {
        service: systemd ? { systemd: true as const, active: service.active, enabled: service.enabled } : { systemd: false as const },
        interfacePresent: service.interfaceIndex !== undefined || service.active === 'active',
      };
      // with systemd the gate wants the unit enabled too (up enables it): active but not enabled fails here
      return asCheck('service-active', judgeService({ iface: inventory.mesh.interface }, observed), { failOnWarn: systemd });
    },
  }),
  'interface-present': check({
    needs: ['service'],
    evaluate: ({ values: { service }, inventory }) =>
      asCheck(
        'interface-present',
        judgeInterface(
          { iface: inventory.mesh.interface },
          {
            present: service.interfaceIndex !== undefined,
            ...(service.interfaceIndex !== undefined ? { ifindex: service.interfaceIndex } : {}),
          },
        ),
      ),
  }),
  'ssh-still-reachable': check({
    needs: [],
    async evaluate({ node, reconnect, changedSoFar }) {
      // nothing changed on any node: the run's own login (made at its start) is the proof, and a new one would
      // cost a full SSH handshake per node on every converged run (issue 10: 0.7 s of a 5 s second up)
      if (!changedSoFar) return pass('ssh-still-reachable', 'nothing changed in this run: the login it started with still works');
      // a fresh login, not the session we already hold: the proof that nothing locked us out
      try {
        const connection = await reconnect(node);
        try {
          const result = await connection.run('true', { timeoutMs: checkDeadlineMs(10_000) });
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
  }),
  'ping-matrix': check({
    needs: ['tunnel'],
    evaluate: ({ values: { tunnel }, node }) => pingMatrixRow(node.name, tunnel.row),
  }),
  'overlay-routes': check({
    needs: ['desired', 'tunnel'],
    evaluate: ({ values: { desired, tunnel }, inventory }) =>
      asCheck(
        'overlay-routes',
        judgeOverlayRoutes({ iface: inventory.mesh.interface, peers: desired.peers }, { interfaceRoutes: tunnel.routes }),
      ),
  }),
  'handshakes-recent': check({
    needs: ['desired', 'tunnel'],
    evaluate: ({ values: { desired, tunnel } }) =>
      asCheck(
        'handshakes-recent',
        judgeHandshakesRecent(desired.peers, { peers: tunnel.peers, now: tunnel.now ?? Math.floor(Date.now() / 1000), afterPing: true }),
      ),
  }),
};

export type StepName = keyof typeof STEPS;
export type CheckName = keyof typeof CHECKS;

/** Why the probes' checks warn when `up --no-underlay-probes` skipped them. */
export const PROBES_SKIPPED_BY_FLAG =
  'not probed: --no-underlay-probes (the port-forwards and NAT are not checked before configs are pushed)';

/** stepNamed, with the baseline's underlay probes replaced by a step that only says they were skipped (by flag). */
export const withoutUnderlayProbes = (name: string): NodeStep | MeshStep | undefined =>
  name === 'probe-underlay'
    ? (meshStep({
        scope: 'mesh',
        effect: 'read',
        needs: [],
        provides: ['underlay'],
        run: async ({ nodes }) => ({
          values: new Map(nodes.map((n) => [n.node.name, { underlay: { skipped: PROBES_SKIPPED_BY_FLAG, warn: true } }])),
          errors: new Map(),
        }),
      }) as unknown as MeshStep)
    : stepNamed(name);

/** Looks up a step by a playbook's name (own properties only). */
export const stepNamed = (name: string): NodeStep | MeshStep | undefined =>
  Object.hasOwn(STEPS, name) ? (STEPS[name as StepName] as unknown as NodeStep | MeshStep) : undefined;
/** Looks up a check by a playbook's name (own properties only). */
export const checkNamed = (name: string): CheckDefinition | undefined =>
  Object.hasOwn(CHECKS, name) ? (CHECKS[name as CheckName] as unknown as CheckDefinition) : undefined;

/** The contract the playbook loader checks a playbook against: every step's and check's needs and provides. */
export const registryContract = {
  steps: new Map(
    Object.entries(STEPS).map(([name, s]) => [name, { needs: s.needs as readonly string[], provides: s.provides as readonly string[] }]),
  ),
  checks: new Map(Object.entries(CHECKS).map(([name, c]) => [name, { needs: c.needs as readonly string[] }])),
};
