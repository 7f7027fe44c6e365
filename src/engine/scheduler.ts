/**
 * How hosts are scheduled, apart from how commands run (SSHKit's runner vs backend) and from the view.
 * Every host's outcome is collected (no first-failure abort: one broken node must not hide the others' results),
 * at most `forks` at once (Ansible's name for the same limit), and nothing new starts once `signal` is aborted.
 */
import pLimit from 'p-limit';

/** Default number of hosts worked on at once: every node of any mesh we have measured (32) fits in one wave. */
export const DEFAULT_FORKS = 64;

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

export interface ScheduleOptions {
  /** at most this many hosts at once (default DEFAULT_FORKS) */
  forks?: number;
  /** once aborted, hosts not yet started are settled with the abort reason and never started */
  signal?: AbortSignal;
}

/**
 * Runs `work` for every host, at most `forks` at once, and resolves when all have settled, in the input's order.
 * Never rejects: each host's error is its own Settled value.
 */
export async function forEachHost<H, T>(
  hosts: readonly H[],
  work: (host: H) => Promise<T>,
  options: ScheduleOptions = {},
): Promise<Settled<T>[]> {
  const limit = pLimit(Math.max(1, options.forks ?? DEFAULT_FORKS));
  return Promise.all(
    hosts.map((host) =>
      limit(async (): Promise<Settled<T>> => {
        if (options.signal?.aborted) return { ok: false, error: options.signal.reason };
        try {
          return { ok: true, value: await work(host) };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    ),
  );
}
