/**
 * Ctrl-C handling shared by every command: the first SIGINT aborts `interruptSignal` so running work can stop
 * its remote side (captures, half-done phases) and exit 130; a second SIGINT exits at once.
 */
import { ExitCode } from './errors.js';

const controller = new AbortController();
export const interruptSignal: AbortSignal = controller.signal;

let installed = false;
export function installInterruptHandler(): void {
  if (installed) return;
  installed = true;
  process.on('SIGINT', () => {
    if (controller.signal.aborted) process.exit(ExitCode.interrupted);
    controller.abort(new Error('interrupted'));
  });
}
