/**
 * The heap a test process still holds after a full collection, for tests that prove a value is let go (the peak
 * RSS of issue 10's farm was made of what the run kept). `--expose-gc` is set at run time and `gc` taken from a
 * fresh context, where V8 exposes it once the flag is on.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
/** V8's full collection (a fresh context's `gc`, exposed by the flag above) */
const gc = runInNewContext('gc') as () => void;

/** The heap in use after two full collections, bytes. */
export function heldBytes(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
