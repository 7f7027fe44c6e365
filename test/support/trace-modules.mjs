// Preload (node --import) that appends the URL of every module the process resolves to $MESHCTL_TRACE_MODULES:
// the start-up test uses it to prove which code `meshctl --version` and `--help` load.
import { register } from 'node:module';

const hooks = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(${JSON.stringify(process.env.MESHCTL_TRACE_MODULES ?? '/dev/null')}, resolved.url + '\\n');
  return resolved;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
