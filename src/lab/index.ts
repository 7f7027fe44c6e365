/**
 * The lab's programmatic API, for meshctl's CLI and for other tests:
 *   const state = await labUp('inventories/homelab.yaml', { name: 't1' });
 *   await labExec('t1', 'ms-1', ['hostname']);            // inside a node; also 'router:home', 'internet', 'operator'
 *   await labRunMeshctl('t1', ['up', 'inventories/homelab.yaml', '--yes']); // meshctl in the operator namespace
 *   await labDown('t1');
 */
export {
  labUp,
  labDown,
  labExec,
  labRunMeshctl,
  meshctlInOperator,
  labStatus,
  DEFAULT_LAB,
  type ExecResult,
  type DownReport,
  type LabStatus,
  type UpOptions,
} from './lab.js';
export { labPaths, cachePaths, type LabPaths } from './paths.js';
export { readState as labState, type LabState, type NodeState } from './state.js';
export { planLab, LAB_SUDO_USER, INTERNET_GATEWAY, type LabPlan } from './plan.js';
export { labMoveSite, labDnsRecords, type MoveReport } from './dns.js';
