/**
 * What the bench leaves out of the environment of the processes it times (meshctl, Ansible, a bare `node -e 0`).
 */

/**
 * Set in this machine's environment but dropped for every timed process: node 20 reads and parses the CA bundle
 * NODE_EXTRA_CA_CERTS names at start, whether or not the process ever opens a TLS connection. Measured here
 * (2026-12-01, `npm run bench`'s start line): a bare `node -e 0` 125 ms with it, 40 ms without.
 */
export const DROPPED_ENV = ['NODE_EXTRA_CA_CERTS'] as const;

/**
 * `env` without DROPPED_ENV. meshctl opens no TLS connection (SSH only), and an operator's shell does not normally
 * set the variable, so the bench times meshctl as it starts for them; the table still prints a bare `node -e 0`
 * with the variable (run.ts), so its cost is shown, not hidden.
 */
export function toolEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !(DROPPED_ENV as readonly string[]).includes(key)));
}
