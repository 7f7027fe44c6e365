#!/usr/bin/env node
// Runs the compiled CLI; `npm run build` (done by scripts/setup.sh) produces dist/.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const compiled = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
if (!existsSync(compiled)) {
  process.stderr.write('meshctl: dist/ is missing; run `npm run build` (or scripts/setup.sh) first\n');
  process.exit(2);
}
await import(compiled);
