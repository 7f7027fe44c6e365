// Preload (node --require) that appends, at exit, the file URL of every CommonJS module the process loaded (the
// entry point included) to $MESHCTL_TRACE_MODULES; trace-modules.mjs sees only ES modules.
const { appendFileSync } = require('node:fs');
const { pathToFileURL } = require('node:url');

process.on('exit', () => {
  const urls = Object.keys(require.cache)
    .filter((file) => file !== __filename)
    .map((file) => `${pathToFileURL(file).href}\n`);
  appendFileSync(process.env.MESHCTL_TRACE_MODULES ?? '/dev/null', urls.join(''));
});
