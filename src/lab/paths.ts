/** Where the lab keeps things on the host. Overridable through the environment for unusual hosts. */
import { join } from 'node:path';

/** Per-lab directories (keys, known_hosts, state, per-node overlay dirs): removed by `lab down`. */
export const labsRoot = () => process.env.MESHCTL_LAB_ROOT ?? '/var/lib/meshctl/labs';
/** The warm cache shared by every lab (base root filesystem, local apt repository): kept by `lab down`. */
export const cacheRoot = () => process.env.MESHCTL_LAB_CACHE ?? '/var/cache/meshctl';

/** Bump when the base's content changes, so an old cache is never reused. */
export const BASE_VERSION = 'base-bookworm-v1';
export const REPO_VERSION = 'apt-repo-v1';

export interface LabPaths {
  dir: string;
  state: string;
  /** operator private key (ed25519); `.pub` beside it */
  identity: string;
  identityPub: string;
  knownHosts: string;
  sshConfig: string;
  nodesDir: string;
  node(name: string): NodePaths;
}

export interface NodePaths {
  dir: string;
  upper: string;
  work: string;
  /** the overlay mount point: the node's root filesystem */
  root: string;
  log: string;
}

export function labPaths(name: string): LabPaths {
  const dir = join(labsRoot(), name);
  const nodesDir = join(dir, 'nodes');
  return {
    dir,
    state: join(dir, 'state.json'),
    identity: join(dir, 'id_ed25519'),
    identityPub: join(dir, 'id_ed25519.pub'),
    knownHosts: join(dir, 'known_hosts'),
    sshConfig: join(dir, 'ssh_config'),
    nodesDir,
    node: (node: string) => {
      const nodeDir = join(nodesDir, node);
      return {
        dir: nodeDir,
        upper: join(nodeDir, 'upper'),
        work: join(nodeDir, 'work'),
        root: join(nodeDir, 'root'),
        log: join(nodeDir, 'console.log'),
      };
    },
  };
}

export const cachePaths = () => ({
  root: cacheRoot(),
  base: join(cacheRoot(), BASE_VERSION),
  repo: join(cacheRoot(), REPO_VERSION),
  lock: join(cacheRoot(), '.build.lock'),
  stamp: '.meshctl-stamp',
});
