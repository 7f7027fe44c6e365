/**
 * TCP connections begun before the SSH code is loaded (issue 10: start-up to the first SSH connection). `up` starts
 * one per direct node as soon as its `ssh -G` answers (src/commands/connect-options.ts); connectNode hands it to
 * ssh2 (`sock`), which starts the key exchange on it. This module loads nothing but node:net.
 */
import { connect as connectTcp, type Socket } from 'node:net';

/** A TCP connection begun before ssh2 was loaded (see ConnectOptions.earlySockets). */
export interface EarlySocket {
  socket: Socket;
  host: string;
  port: number;
  /** performance.now() when it connected */
  connectedMs?: number;
  /** set when it failed (ssh2 then connects by itself, and reports that error in its own words) */
  failed?: Error;
}

/**
 * Begins a TCP connection to host:port now, with nothing loaded but node:net. Errors are kept on the value (there is
 * a listener from the start, so a refusal before ssh2 takes the socket is not an uncaught error). Unref'd until taken.
 */
export function beginTcp(host: string, port: number): EarlySocket {
  // noDelay (TCP_NODELAY): see noDelay in ./ssh.ts
  const early: EarlySocket = { socket: connectTcp({ host, port, noDelay: true }), host, port };
  // nobody may ever take it (a command that fails first, Ctrl-C): it must not keep the process alive until then
  early.socket.unref();
  early.socket.once('connect', () => (early.connectedMs = performance.now()));
  early.socket.on('error', (error) => (early.failed ??= error));
  return early;
}
