/**
 * Leaving the process as soon as a command is done (issue 10, "end fast"): see src/cli.ts and main.ts's
 * exitsWhenDone. What must not be lost is what was written to stdout and stderr, so the exit waits for them.
 */

/**
 * Resolves once every stream has handed what was written to it to the system: at once for files, pipes and
 * terminals on Linux (node writes those synchronously), after 'drain' where a write was queued (a pipe on macOS),
 * or when the stream closed or broke (a reader that went away takes nothing more).
 */
export function flushed(streams: readonly NodeJS.WritableStream[]): Promise<void> {
  return Promise.all(streams.map(drained)).then(() => undefined);
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  const s = stream as NodeJS.WritableStream & { writableLength?: number; destroyed?: boolean };
  if (!s.writableLength || s.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      for (const event of ['drain', 'close', 'error']) s.removeListener(event, done);
      resolve();
    };
    for (const event of ['drain', 'close', 'error']) s.once(event, done);
  });
}
