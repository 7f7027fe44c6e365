/**
 * Loaded into the measured meshctl process by the farm bench (`node --require`): `execFile` with a `timeout`
 * option gets its deadline from a timer here instead of from node. On this machine (node v20.20.2) node's own
 * `timeout` lost the child's stdout now and then when many ran at once: of 100 concurrent `execFile('echo',
 * ['hi'], { timeout: 5000 })` 0-47 came back with no error and empty stdout (0 of 100 without the option), so up
 * at 100 farm nodes failed with "`ssh -G` printed no settings 3 times" on half the nodes. The same deadline, kill
 * signal and error (`killed`, `signal`) as node's; everything else is passed through unchanged. The real fix
 * belongs in src/transport/ssh-config.ts (its execFile); this shim only keeps the farm's measurements possible.
 */
'use strict';
const childProcess = require('node:child_process');
const { promisify } = require('node:util');

const original = childProcess.execFile;

function execFile(file, args, options, callback) {
  if (typeof args === 'function') [args, options, callback] = [[], {}, args];
  else if (args != null && !Array.isArray(args)) [args, options, callback] = [[], args, options];
  if (typeof options === 'function') [options, callback] = [{}, options];
  if (!options || !(options.timeout > 0)) return original.call(this, file, args, options, callback);
  const { timeout, ...rest } = options;
  let timer;
  const child = original.call(this, file, args ?? [], rest, (error, stdout, stderr) => {
    clearTimeout(timer);
    if (typeof callback === 'function') callback(error, stdout, stderr);
  });
  timer = setTimeout(() => child.kill(options.killSignal ?? 'SIGTERM'), timeout);
  return child;
}

execFile[promisify.custom] = (file, args, options) =>
  new Promise((resolve, reject) => {
    execFile(file, args, options, (error, stdout, stderr) => {
      if (error) reject(Object.assign(error, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });

childProcess.execFile = execFile;
// ES modules' `import { execFile } from 'node:child_process'` see the replacement too
require('node:module').syncBuiltinESMExports();
