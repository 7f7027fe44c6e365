/**
 * The values the engine passes around: the typed step contract, the changes a step plans, check results, the
 * events the view draws, and the phase reports. Per-host failures are values; only a gate stops a run.
 *
 * The step contract (how `up` is put together):
 * - every value a step hands to later steps is a named field of `NodeValues` (per node) and is provided by exactly
 *   one step; a step declares the names it `needs` and `provides`, and a check the names it `needs`;
 * - the playbook loader refuses a playbook whose steps or checks need a value that no earlier step provides
 *   (src/engine/playbook.ts), so the order is checked before anything runs, not found out on a node;
 * - at run time a step receives exactly the values it declared (`StepInput`), typed, never a shared mutable state.
 */
import type { Matrix, MatrixCell } from '../checks/ping-matrix.js';
import type { UnderlayProbes } from '../checks/underlay-probe.js';
import type { NodeFacts, PackageManager } from '../facts/node-facts.js';
import type { Inventory, Node } from '../inventory/types.js';
import type { ConfigChangeKind } from '../render/changes.js';
import type { DesiredNodeConfig } from '../topology/desired.js';
import type { Connection } from '../transport/types.js';
import type { LivePeer } from '../render/wgdump.js';
import type { RollbackOptions } from './revert.js';
import type { UnderlayChangedNote } from './underlay-change.js';
import type { MovedAddress } from '../topology/moved-address.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  id: string;
  status: CheckStatus;
  message: string;
  /** raw lines that back the verdict (command output, file names, rules) */
  evidence?: string[];
  /** a baseline probe check whose probes ran on a running mesh: why, as data (./underlay-change.ts) */
  underlayChanged?: UnderlayChangedNote;
}

/** The node's public key as the keys step left it. */
export interface PublicKeyValue {
  /** base64 public key; in a dry run a well-formed stand-in when the key does not exist yet (`known: false`) */
  key: string;
  /** this run generated the private key (or, in a dry run, would) */
  created: boolean;
  /** false in a dry run for a key that only exists once applied (Terraform's "known after apply") */
  known: boolean;
}

/** The config files after the config step: what was rendered, how it differs, what is on the node now. */
export interface ConfigValue {
  /** how the file on the node differed from the rendered one before this run ('none' when equal) */
  change: ConfigChangeKind;
  /** sha256 (hex) of the rendered wg-quick file */
  renderedSha256: string;
  /** sha256 (hex) of the file on the node after the step (from the node; predicted in a dry run) */
  nodeSha256?: string;
  /** the step wrote the wg-quick file (not only the sysctl file or the drop-in) */
  written: boolean;
}

export interface ServiceValue {
  /** `systemctl is-active` (or 'active'/'inactive' without systemd) */
  active: string;
  /** `systemctl is-enabled`, or 'no-systemd' */
  enabled: string;
  interfaceIndex?: number;
}

export interface TunnelValue {
  /** destinations routed via the interface, as `ip route show` prints them (host routes without /32) */
  routes: string[];
  /** the live peers after the pings (`wg show IFACE dump`): handshakes, endpoints, transfer */
  peers: LivePeer[];
  /** the node's clock when the peers were read, Unix seconds */
  now?: number;
  /** this node's row of the ping matrix: peer name -> cell */
  row: Record<string, MatrixCell>;
}

/**
 * Every value a step can provide to later steps and checks, per node. Adding a value: add it here, name it in the
 * `provides` of exactly one step and in the `needs` of its readers.
 */
export interface NodeValues {
  facts: NodeFacts;
  /** wg, wg-quick, wireguard-go after the install step */
  tools: NodeFacts['tools'];
  publicKey: PublicKeyValue;
  desired: DesiredNodeConfig;
  config: ConfigValue;
  /** rp_filter all/default as the kernel holds them after the config step */
  rpFilter: { all: number; default: number };
  service: ServiceValue;
  tunnel: TunnelValue;
  /** the baseline's port-forward probe and NAT discovery, one result shared by every node (../checks/underlay-probe.ts) */
  underlay: UnderlayProbes & {
    /** the probes ran although every node runs the mesh: what the inventory changes in its underlay (./underlay-change.ts) */
    why?: string;
    /** the probes ran because the live endpoints see these sites at another public address (./underlay-change.ts) */
    moved?: readonly MovedAddress[];
  };
}
export type ValueName = keyof NodeValues;

/**
 * A change a step makes (or would make) on a node, as data: the plan shows it, the report counts it, a test
 * compares it. Never a secret: a key appears only as its path, file contents only as sha256 and a diff of the
 * key-less wg-quick file.
 */
export type Change =
  /** `repair`: packages dpkg left half done (an interrupted install): `dpkg --configure -a` first, then reinstalled */
  | { kind: 'install'; manager: PackageManager; packages: string[]; why: string[]; repair?: string[] }
  | { kind: 'generate-key'; path: string }
  | { kind: 'derive-public-key'; path: string }
  /** IFACE.pub did not hold the key file's public half (or was missing, or not mode 644): written from `wg pubkey` */
  | { kind: 'repair-public-key-file'; path: string }
  | {
      kind: 'write-file';
      path: string;
      /** reresolve: the timer that re-resolves peers dialled by DNS name (src/render/reresolve.ts) */
      role: 'config' | 'sysctl' | 'reload-drop-in' | 'reresolve';
      /** sha256 of the file on the node before (absent: no file) */
      beforeSha256?: string;
      afterSha256: string;
      /** unified-style line diff of the wg-quick file (../render/line-diff.ts); only for role 'config' */
      diff?: string[];
    }
  | { kind: 'apply-sysctl'; path: string; rpFilter: number }
  /** a file meshctl wrote that the design no longer needs */
  | { kind: 'remove-file'; path: string; why: string }
  | { kind: 'enable'; unit: string; now: boolean }
  | { kind: 'restart'; unit: string; why: string }
  | { kind: 'syncconf'; iface: string; why: string }
  /**
   * the MTU set on the running interface (`ip link set dev IFACE mtu N`), as wg-quick sets it when it brings the
   * interface up: an [Interface] change of the MTU alone needs no restart (../steps/service.ts)
   */
  | { kind: 'set-mtu'; iface: string; mtu: number; why: string }
  /**
   * the design's address added to the running interface and `removed` deleted (`ip -4 address add`/`del`), as
   * wg-quick adds it when it brings the interface up: an [Interface] change of the Address alone needs no restart
   */
  | { kind: 'set-address'; iface: string; address: string; removed: string[]; why: string }
  /**
   * the relay set up on the running interface, as its PostUp does when wg-quick brings it up (../render/relay.ts):
   * the node's relay role switched on in its file, or its live forwarding or rule gone (../steps/service.ts relayDrift)
   */
  | { kind: 'relay-on'; iface: string; why: string }
  /**
   * the relay torn down on the running interface (forwarding off, meshctl's rule removed: found, its lines as the
   * ruleset showed them), as its PreDown does: the node's relay role switched off in its file
   */
  | { kind: 'relay-off'; iface: string; found: string[]; why: string }
  | { kind: 'load-private-key'; iface: string; path: string; why: string }
  | { kind: 'restore-routes'; iface: string; routes: string[] }
  | { kind: 'remove-routes'; iface: string; routes: string[]; why: string }
  | { kind: 'wg-quick-up'; iface: string; restart: boolean; why: string }
  /** meshctl's relay rule on a node that relays nothing (../firewall/relay-residue.ts); found: the rule's lines */
  | { kind: 'remove-relay-rule'; iface: string; found: string[] }
  /** a revert armed on the node before its change (../engine/revert.ts): runs after deadlineS unless confirmed */
  | { kind: 'arm-rollback'; unit: string; deadlineS: number; systemd: boolean };

/** What a step's planner returns for one node: the changes and the one script that realises them. */
export interface NodeAction {
  changes: Change[];
  /** POSIX sh, run as root on the node (src/transport: on stdin, under a remote timeout) */
  script: string;
  /** per-action deadline in ms (default: the connection's, 60 s) */
  timeoutMs?: number;
}

/** A step's plan for one node: an action, or none (an explicit no-op), and warnings that change nothing. */
export interface StepPlan {
  action?: NodeAction;
  warnings?: string[];
}

/** What a step is given for one node: its node, the inventory, and exactly the values it declared. */
export interface StepInput<N extends ValueName> {
  node: Node;
  inventory: Inventory;
  values: Pick<NodeValues, N>;
  /** the same values of every node that has them (config rendering needs every peer's public key) */
  mesh: ReadonlyMap<string, Pick<NodeValues, N>>;
  /** something that takes effect (./plan.ts takesEffect) was changed (or, in a dry run, planned) earlier in this run */
  changedSoFar: boolean;
  /** when set, a changing step arms a revert on the node before it changes anything (./revert.ts) */
  rollback?: RollbackOptions;
}

/**
 * How a step's action came back: `stdout` when it ran on the node, `recorded` when a dry run only recorded it.
 * Undefined (no action) when the plan had nothing to do.
 */
export type ActionResult = { ran: true; stdout: string } | { ran: false; recorded: true };

/**
 * A node step: a pure planner (facts and earlier values in, the action out) and a pure reader of its outputs.
 * - effect 'read': its action only reads (facts); it runs in a dry run too.
 * - effect 'change': its action changes the node; a dry run records it instead, and `outputs` predicts.
 */
export interface NodeStep<N extends ValueName = ValueName, P extends ValueName = ValueName> {
  scope: 'node';
  effect: 'read' | 'change';
  needs: readonly N[];
  provides: readonly P[];
  plan(input: StepInput<N>): StepPlan;
  /**
   * The values this step provides: from the action's output when it ran, predicted when it was recorded, or from
   * the input alone when there was nothing to do. Throws when the output is not what the action promises.
   */
  outputs(input: StepInput<N>, action: NodeAction | undefined, result: ActionResult | undefined): Pick<NodeValues, P>;
}

/**
 * A mesh step: one operation over all nodes at once. `probe` needs a live mesh (the ping matrix), so a dry run
 * skips it (its checks are not judged either); `read` only reads the nodes as they are (the baseline's underlay
 * probes), so a dry run runs it like any read.
 */
export interface MeshStep<N extends ValueName = ValueName, P extends ValueName = ValueName> {
  scope: 'mesh';
  effect: 'probe' | 'read';
  needs: readonly N[];
  provides: readonly P[];
  run(input: MeshStepInput<N>): Promise<MeshStepOutput<P>>;
}

export interface MeshStepInput<N extends ValueName> {
  inventory: Inventory;
  /** the nodes still in the run, with their connection and declared values */
  nodes: { node: Node; connection: Connection; values: Pick<NodeValues, N> }[];
  /** something that takes effect (./plan.ts takesEffect) was changed in this run: the ping round's first contact, recheck and session reset (./ping.ts) */
  changedSoFar: boolean;
  signal: AbortSignal;
}

export interface MeshStepOutput<P extends ValueName> {
  values: Map<string, Pick<NodeValues, P>>;
  /** per-node failures (that node's checks fail) */
  errors: Map<string, string>;
  matrix?: Matrix;
}

export type StepDefinition = NodeStep | MeshStep;

/** A check: judges one node from the values it declared; may do read-only I/O (a fresh SSH login). */
export interface CheckDefinition<N extends ValueName = ValueName> {
  needs: readonly N[];
  evaluate(input: CheckInput<N>): Promise<CheckResult> | CheckResult;
}

export interface CheckInput<N extends ValueName> {
  node: Node;
  inventory: Inventory;
  values: Pick<NodeValues, N>;
  /** opens a new, separate SSH connection to the node (the "can still log in" check) */
  reconnect: (node: Node) => Promise<Connection>;
  /**
   * The same values of every node still in the run, by node name (this one included): for the few checks whose
   * judgement spans the mesh, such as whether the port-forward probe is needed at all.
   */
  mesh: ReadonlyMap<string, Pick<NodeValues, N>>;
  /**
   * Something that takes effect (./plan.ts takesEffect) was changed (or, in a dry run, planned) on any node in this
   * run, this phase included: a check whose
   * evidence is only needed after a change (the fresh login) can rest on the run's own session when nothing was.
   */
  changedSoFar: boolean;
}

export interface PhaseSpec {
  id: string;
  title: string;
  steps: string[];
  checks: string[];
  /** the runbook's GO criterion, shown at the gate */
  go: string;
}

export interface Playbook {
  name: string;
  description: string;
  phases: PhaseSpec[];
  source: string;
}

export interface NodePhaseReport {
  node: string;
  /** what the phase changed on the node (dry run: would change), one line per action, in words */
  changes: string[];
  /** notes that change nothing (e.g. "no systemd: ...") */
  warnings?: string[];
  /** dry run: the config file's would-be diff */
  diff?: string[];
  checks: CheckResult[];
  error?: string;
}

export interface PhaseReport {
  id: string;
  title: string;
  go: string;
  /** PLANNED: a dry run recorded what the phase would change, and neither ran nor checked anything */
  verdict: 'GO' | 'STOP' | 'PLANNED';
  durationMs: number;
  nodes: NodePhaseReport[];
}

/** What the engine tells the view while it runs; the view draws, it never schedules. */
export type EngineEvent =
  | { type: 'phase-start'; phase: PhaseSpec; nodes: string[] }
  | { type: 'step-start'; phase: string; step: string; node: string }
  | { type: 'step-done'; phase: string; step: string; node: string; changes: string[]; warnings: string[]; error?: string }
  | { type: 'phase-done'; report: PhaseReport };
