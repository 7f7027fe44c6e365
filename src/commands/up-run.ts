/**
 * What `up` needs once its first connection is ready, as ONE module imported once (src/commands/up.ts): each module
 * imported on its own was an entry point of the bundle's code splitting, and each entry point made more chunks (the
 * code shared by a different set of entry points is a chunk of its own). Node's ES module loader costs about 0.5 ms
 * of CPU per file it loads (resolve, read, compile, link; measured on node 20: 56 tiny modules 27 ms, one file of the
 * same code 1.7 ms), and `up` loaded 56 files (issue 10: start-up). The terminal's view (../ui/engine-view.ts) is
 * imported beside it, only when it draws (not for --json), and the ping matrix's text (../checks/matrix-render.ts,
 * with chalk) only for a terminal's summary at the end: nothing here loads chalk (~8 ms of CPU before the first
 * phase; test/unit/cli-start.test.ts).
 */
export { runUp } from '../engine/up.js';
export { relayedPairs } from '../topology/paths.js';
export { withFallbackRelays } from '../engine/fallback.js';
