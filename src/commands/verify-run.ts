/**
 * What `verify` needs once it is connected, as ONE module imported once (src/commands/verify.ts): fewer entry points
 * for the bundle's code splitting, so fewer files for node's module loader (see ./up-run.ts; issue 10: start-up).
 */
export { collectVerify, knownPublicKeys } from '../checks/collect.js';
export { redactDeep } from '../remote/redact.js';
export { evaluateVerify } from '../checks/verify.js';
export { buildReport, renderReport } from '../checks/report.js';
export { sudoOf } from '../engine/root-check.js';
