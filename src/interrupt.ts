/**
 * Ctrl-C handling shared by every command: the first SIGINT aborts `interruptSignal` so running work can stop
 * its remote side (captures, half-done phases) and exit 130; a second SIGINT exits at once.
 */
import { setMaxListeners } from 'node:events';
import { ExitCode } from './errors.js';

const controller = new AbortController();
export const interruptSignal: AbortSignal = controller.signal;
// every remote command in flight listens on it (one per node and more at once, by design): Node's default warning
// past 10 listeners ("possible memory leak") would be printed to users of any mesh of more than 10 nodes
setMaxListeners(0, interruptSignal);

let installed = false;
export function installInterruptHandler(): void {
  if (installed) return;
  installed = true;
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(ExitCode.interrupted);
    controller.abort(new Error('interrupted'));
  });
}
