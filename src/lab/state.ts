/** state.json: what `lab up` made, for down/status/exec. Written early and updated, so a half-built lab is known. */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { LabPlan, PlannedNode } from './plan.js';
import { labPaths } from './paths.js';

/** A planned node as it was made: the plan's fields plus what exists only once it runs. */
export interface NodeState extends PlannedNode {
  /** the lab's standard passwordless-sudo user (every node has it) */
  sudoUser: string;
  root: string;
  /** pid of systemd-nspawn and of the node's systemd (PID 1 inside) */
  nspawnPid?: number;
  leaderPid?: number;
  /** `ssh-keygen -l` lines of the node's host keys */
  hostKeyFingerprints?: string[];
}

export interface LabState {
  name: string;
  inventory: string;
  createdAt: string;
  phase: 'building' | 'ready';
  firewall: 'iptables' | 'nft';
  base: string;
  repo: string;
  plan: LabPlan;
  namespaces: string[];
  mounts: string[];
  nodes: NodeState[];
  identity: string;
  knownHosts: string;
  sshConfig: string;
}

export function readState(name: string): LabState | undefined {
  const path = labPaths(name).state;
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LabState;
  } catch {
    return undefined; // a torn write during a failed up: down sweeps by naming convention anyway
  }
}

export function writeState(state: LabState): void {
  const path = labPaths(state.name).state;
  writeFileSync(`${path}.tmp`, JSON.stringify(state, null, 2) + '\n');
  renameSync(`${path}.tmp`, path);
}
