/** What every command that connects to nodes takes from its flags: SSH settings, the connector, --forks. */
import type { Connector } from '../engine/up.js';
import { MeshctlError } from '../errors.js';
import { interruptSignal } from '../interrupt.js';
import { closeAll, connectAll } from '../transport/pool.js';
import { connectNode, type ConnectOptions } from '../transport/ssh.js';

/** SSH settings from the flags every connecting command shares; `log` shows trust decisions and warnings. */
export function sshOptionsFromFlags(flags: { acceptNew?: boolean; connectTimeout?: string }, log: (line: string) => void): ConnectOptions {
  const seconds = flags.connectTimeout === undefined ? undefined : Number(flags.connectTimeout);
  if (seconds !== undefined && !(seconds > 0))
    throw new MeshctlError(`--connect-timeout must be a positive number of seconds, not "${flags.connectTimeout}"`);
  return {
    acceptNew: flags.acceptNew ?? false,
    connectTimeoutMs: seconds === undefined ? undefined : seconds * 1000,
    signal: interruptSignal,
    onHostKeyRecorded: (e) =>
      log(`trusted new host key of ${e.node} (${e.host}:${e.port}) ${e.keyType} ${e.fingerprint}, recorded in ${e.file}`),
    onWarning: (w) => log(`warning: ${w.message}`),
  };
}

/** The connector `up` and `plan` use: one connection per node through the pool; a fresh one for the login check. */
export function connectorFor(options: ConnectOptions): Connector {
  return {
    async connectAll(inventory) {
      const result = await connectAll(inventory.nodes, options);
      return { connections: result.connections, failures: result.failures, close: () => closeAll(result.connections, result.jumpHosts) };
    },
    connectOne: (node) => connectNode(node, { ...options, acceptNew: false }),
  };
}

/** --forks: a positive whole number of hosts at once, or undefined for the default. */
export function parseForks(value: string | undefined): number | undefined {
  const forks = value === undefined ? undefined : Number(value);
  if (forks !== undefined && !(Number.isInteger(forks) && forks > 0))
    throw new MeshctlError(`--forks must be a positive whole number, not "${value}"`);
  return forks;
}
