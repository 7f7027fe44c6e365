/**
 * What every command that connects to nodes takes from its flags: SSH settings, the connector, --forks.
 * The transport (ssh2 and meshctl's SSH code) is imported when the connector first connects, not with this module:
 * `up` reads its inventory and starts `ssh -G` for every node while ssh2 is still loading (issue 10).
 */
import type { Connector } from '../engine/up.js';
import { MeshctlError } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import type { Node } from '../inventory/types.js';
import { isIP } from 'node:net';
import { beginTcp, type EarlySocket } from '../transport/early-socket.js';
import type { ConnectAllResult } from '../transport/pool.js';
import type { ConnectOptions } from '../transport/ssh.js';
import { resolveNodeSshConfigs, type ResolvedSshConfig } from '../transport/ssh-config.js';

/** The transport, loaded on first use (ssh2 costs more to load than anything else start-up needs). */
const transport = async () => {
  // one import (the pool re-exports connectNode): fewer files for node's module loader (./up-run.ts)
  const pool = await import('../transport/pool.js');
  return { connectAll: pool.connectAll, closeAll: pool.closeAll, connectNode: pool.connectNode };
};

/**
 * The longest --connect-timeout, in seconds: node's timers hold at most 2^31 - 1 ms (about 24.8 days); a longer
 * delay is set to 1 ms (node's setTimeout docs), so a "wait very long" timeout made every connection time out at once.
 */
export const MAX_CONNECT_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

/**
 * The help of --control-persist (every command that connects has it). Off by default, as OpenSSH's ControlMaster:
 * a root login left open after the run is a door anyone with the user's rights on this machine can walk through.
 */
export const CONTROL_PERSIST_HELP =
  "keep each node's SSH connection open in a background master for SECONDS after the run, for the next run to reuse (OpenSSH's ControlPersist; default $MESHCTL_CONTROL_PERSIST, else 0: off, as a root login held open is a standing door)";

/**
 * --control-persist SECONDS, else MESHCTL_CONTROL_PERSIST: whole seconds, 0 (off) or more; undefined when neither is
 * set. Throws MeshctlError (bad input) for anything else.
 */
export function controlPersistFromFlags(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): number | undefined {
  const [value, source] = flag !== undefined ? [flag, '--control-persist'] : [env.MESHCTL_CONTROL_PERSIST, 'MESHCTL_CONTROL_PERSIST'];
  if (value === undefined || value === '') return undefined;
  const seconds = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || seconds > MAX_CONNECT_TIMEOUT_S)
    throw new MeshctlError(`${source} must be a whole number of seconds up to ${MAX_CONNECT_TIMEOUT_S} (0 for off), not "${value}"`);
  return seconds;
}

/**
 * SSH settings from the flags every connecting command shares; `log` shows trust decisions and warnings.
 * Throws MeshctlError (bad input) for a --connect-timeout that is not a number of seconds in (0, MAX_CONNECT_TIMEOUT_S],
 * and for a --control-persist (or MESHCTL_CONTROL_PERSIST) that is not whole seconds (controlPersistFromFlags).
 */
export function sshOptionsFromFlags(
  flags: { acceptNew?: boolean; connectTimeout?: string; controlPersist?: string },
  log: (line: string) => void,
): ConnectOptions {
  const persist = controlPersistFromFlags(flags.controlPersist);
  const seconds = flags.connectTimeout === undefined ? undefined : Number(flags.connectTimeout);
  if (seconds !== undefined && !(seconds > 0))
    throw new MeshctlError(`--connect-timeout must be a positive number of seconds, not "${flags.connectTimeout}"`);
  if (seconds !== undefined && seconds > MAX_CONNECT_TIMEOUT_S)
    throw new MeshctlError(
      `--connect-timeout ${flags.connectTimeout} is too long: at most ${MAX_CONNECT_TIMEOUT_S} seconds (node's longest timer)`,
    );
  return {
    acceptNew: flags.acceptNew ?? false,
    connectTimeoutMs: seconds === undefined ? undefined : seconds * 1000,
    signal: interruptSignal,
    onHostKeyRecorded: (e) =>
      log(`trusted new host key of ${e.node} (${e.host}:${e.port}) ${e.keyType} ${e.fingerprint}, recorded in ${e.file}`),
    onWarning: (w) => log(`warning: ${w.message}`),
    ...(persist ? { controlPersistS: persist } : {}),
  };
}

/**
 * A connector that can start connecting before the command needs the connections: `up` starts them as soon as the
 * inventory is read and loads the engine while the nodes answer (issue 10: start-up to the first SSH connection).
 */
export interface EarlyConnector extends Connector {
  /**
   * Begins connecting to these nodes now: a speculative TCP connection to each node whose ssh.host is an IP address
   * (see speculate), their `ssh -G` at once, then (once the transport has loaded) key exchange, login and root probe,
   * as connectAll does. The next connectAll for exactly these nodes (by name) takes the result; a connectAll for other nodes connects as usual.
   * Calls after the first are ignored.
   */
  start(nodes: readonly Node[]): void;
  /**
   * Resolves once the first connection `start` began is ready (or every one has failed). Loading more code before
   * that would only delay it: module loading, the key exchange and the login share one thread. The other nodes go on
   * connecting meanwhile. Resolves at once when `start` was not called.
   */
  underWay(): Promise<void>;
  /** Closes connections started by `start` that no connectAll took (the command failed before it connected). */
  release(): Promise<void>;
}

/** Settings that connect straight to the node: no ProxyJump, no ProxyCommand (ssh.ts refuses the latter). */
const isDirect = (s: ResolvedSshConfig) => s.proxyJump.length === 0 && !s.proxyCommand;

/**
 * A TCP connection begun speculatively to where the inventory says a node's sshd is (ssh.host, ssh.port), before
 * `ssh -G` has answered (issue 10: it saves the spawn and the answer, 30-120 ms on a loaded 2-core machine, from the
 * start to the first connection). Only for a host written as an IP address: a name may be an alias that only the
 * ssh config resolves, and looking it up would ask the resolver about it. The ssh config still wins: see agrees.
 */
export function speculate(node: Node): EarlySocket | undefined {
  return isIP(node.ssh.host) !== 0 ? beginTcp(node.ssh.host, node.ssh.port) : undefined;
}

/**
 * Whether a speculative connection goes where `ssh -G` says the node is: the same HostName and Port, and straight
 * there (no ProxyJump or ProxyCommand). When not, the caller drops it and connects as the ssh config says.
 */
export function agrees(guess: Pick<EarlySocket, 'host' | 'port'>, settings: ResolvedSshConfig): boolean {
  return isDirect(settings) && settings.hostname === guess.host && settings.port === guess.port;
}

const nameKey = (nodes: readonly Node[]) => JSON.stringify(nodes.map((n) => n.name).sort());

/** The connector `up` and `plan` use: one connection per node through the pool; a fresh one for the login check. */
export function connectorFor(options: ConnectOptions): EarlyConnector {
  let early: { key: string; result: Promise<ConnectAllResult> } | undefined;
  let started = false;
  let underWay = Promise.resolve();
  return {
    start(nodes) {
      if (started) return;
      started = true;
      // each direct node's TCP connection to the inventory's address begins first, before `ssh -G` is even spawned
      // (speculative: kept only when ssh -G agrees, see speculate); nothing but node:net is needed for it
      // (none with --control-persist: the master may hold the node's connection already, and a TCP connection to a
      // node's sshd that logs nothing in is one more for its MaxStartups and its log)
      const speculative = !options.signal?.aborted && !options.controlPersistS;
      const guesses = new Map(nodes.map((n) => [n.name, speculative ? speculate(n) : undefined]));
      // node:net makes those connect(2) calls on ticks of their own (queued just now): everything else waits for
      // them, the transport's import (its resolution and file reads take this thread too) and the `ssh -G` spawn
      const connectsMade = new Promise<void>((resolve) => process.nextTick(resolve));
      const loading = connectsMade.then(transport);
      // every node's `ssh -G` asked by one child process (one spawn, not one per node: see resolveSshConfigs)
      const asking = connectsMade.then(() =>
        resolveNodeSshConfigs(
          nodes.map((n) => n.ssh),
          options,
        ),
      );
      const asked = nodes.map((_, i) => asking.then((answers) => answers[i]!));
      const presolved = new Map(nodes.map((n, i) => [n.name, asked[i]!]));
      // a failure is the connection's to report (connectAll turns it into that node's failure), not unhandled meanwhile
      for (const settings of asked) settings.catch(() => undefined);
      // otherwise each direct node's TCP connection begins as soon as its `ssh -G` answers, while ssh2 still loads:
      // the node's sshd accepts and sends its banner meanwhile (node:net is part of node; nothing more is loaded for it)
      const earlySockets = new Map(
        nodes.map((n, i) => [
          n.name,
          asked[i]!.then(
            (s) => {
              const guess = guesses.get(n.name);
              if (guess && agrees(guess, s)) return guess;
              guess?.socket.destroy(); // the ssh config sends this node elsewhere (or through a jump host): it wins
              return isDirect(s) && speculative && !options.signal?.aborted ? beginTcp(s.hostname, s.port) : undefined;
            },
            () => {
              guesses.get(n.name)?.socket.destroy();
              return undefined;
            },
          ),
        ]),
      );
      const list = [...nodes];
      let firstDone: () => void = () => undefined;
      const first = new Promise<void>((resolve) => (firstDone = resolve));
      const result = loading.then((t) =>
        t.connectAll(list, {
          ...options,
          presolved,
          earlySockets,
          connect: (node, nodeOptions) => {
            const connection = t.connectNode(node, nodeOptions);
            connection.then(firstDone, firstDone);
            return connection;
          },
        }),
      );
      early = { key: nameKey(nodes), result };
      underWay = Promise.race([first, result.then(() => undefined)]);
    },
    underWay: () => underWay,
    async connectAll(inventory) {
      let result: ConnectAllResult;
      if (early && early.key === nameKey(inventory.nodes)) {
        const taken = early.result;
        early = undefined;
        result = inOrder(await taken, inventory.nodes);
      } else {
        result = await (await transport()).connectAll(inventory.nodes, options);
      }
      const { closeAll } = await transport();
      return { connections: result.connections, failures: result.failures, close: () => closeAll(result.connections, result.jumpHosts) };
    },
    // the login check is a fresh login by definition (a change must not have locked SSH out): never a kept connection
    connectOne: async (node) => (await transport()).connectNode(node, { ...options, acceptNew: false, controlPersistS: 0 }),
    async release() {
      const left = early;
      early = undefined;
      if (!left) return;
      const result = await left.result;
      await (await transport()).closeAll(result.connections, result.jumpHosts);
    },
  };
}

/** Both maps in the order of `nodes` (connectAll keeps the order of the nodes it was given). */
function inOrder(result: ConnectAllResult, nodes: readonly Node[]): ConnectAllResult {
  const order = <T>(m: Map<string, T>) => new Map(nodes.filter((n) => m.has(n.name)).map((n) => [n.name, m.get(n.name) as T]));
  return { ...result, connections: order(result.connections), failures: order(result.failures) };
}

/** --forks: a positive whole number of hosts at once, or undefined for the default. */
export function parseForks(value: string | undefined): number | undefined {
  const forks = value === undefined ? undefined : Number(value);
  if (forks !== undefined && !(Number.isInteger(forks) && forks > 0))
    throw new MeshctlError(`--forks must be a positive whole number, not "${value}"`);
  return forks;
}
