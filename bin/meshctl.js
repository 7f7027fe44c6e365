#!/usr/bin/env node
// Runs the compiled CLI; `npm run build` (done by scripts/setup.sh) produces dist/.
// `meshctl --version` alone is answered here, before any other module of meshctl's is loaded, and written with one
// write(2) (process.stdout would build a stream first): scripts and shell completions call it most, and it should
// cost no more than node's own start (issue 10). This file is CommonJS (bin/package.json) for the same reason: an
// ES module entry point starts node's ESM loader first. The version is package.json's, as in src/version.ts.
const { existsSync, readFileSync, writeSync } = require('node:fs');
const { join } = require('node:path');
const { pathToFileURL } = require('node:url');

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8'));
  try {
    writeSync(1, `${version}\n`);
  } catch (error) {
    // a closed pipe (`meshctl --version | true`) is not an error worth a stack trace; a busy non-blocking one waits
    if (error.code === 'EAGAIN') process.stdout.write(`${version}\n`);
    else if (error.code !== 'EPIPE') throw error;
  }
} else {
  const compiled = join(__dirname, '..', 'dist', 'cli.js');
  if (!existsSync(compiled)) {
    process.stderr.write('meshctl: dist/ is missing; run `npm run build` (or scripts/setup.sh) first\n');
    process.exit(2);
  }
  import(pathToFileURL(compiled).href);
}
