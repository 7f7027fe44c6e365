/** argv -> command. The one place that turns errors into exit codes and messages (src/cli.ts runs it). */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ExitCode, MeshctlError, type CommandResult } from './errors.js';
import { interruptSignal } from './interrupt.js';
import { registerLab } from './commands/lab.js';
import { registerUp } from './commands/up.js';
import { registerPlan } from './commands/plan.js';
import { registerVerify } from './commands/verify.js';
import { registerDebug } from './commands/debug.js';
import { registerValidate } from './commands/validate.js';
import { safeText } from './ui/safe-text.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/** The program; each command hands its result to `finish` (the last one wins; none means success). */
export function buildProgram(finish: (result: CommandResult) => void = () => undefined): Command {
  const program = new Command('meshctl')
    .description('Build and check WireGuard meshes over SSH, phase by phase, with a STOP/GO gate after each.')
    .version(pkg.version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerValidate(program, finish);
  registerUp(program, finish);
  registerPlan(program, finish);
  registerVerify(program, finish);
  registerDebug(program, finish);
  registerLab(program, finish);
  return program;
}

/** An error as lines on stderr; messages and details quote inputs and node output, so they are shown through safeText. */
function printError(error: MeshctlError): void {
  process.stderr.write(`meshctl: ${safeText(error.message)}\n`);
  for (const line of error.details) process.stderr.write(`  ${safeText(line)}\n`);
}

export async function main(argv: string[]): Promise<number> {
  let result = 'ok' as CommandResult;
  const program = buildProgram((r) => {
    result = r;
  });
  try {
    await program.parseAsync(argv);
    if (typeof result === 'object') return result.passthrough;
    // Ctrl-C that a command survived (it stopped its remote work and reported) still ends as interrupted
    return ExitCode[interruptSignal.aborted ? 'interrupted' : result];
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version "errors" are successes; usage errors are bad input
      return error.exitCode === 0 ? ExitCode.ok : ExitCode.badInput;
    }
    if (interruptSignal.aborted) {
      // whatever failed after Ctrl-C failed because of it; the command already stopped its remote work
      process.stderr.write('meshctl: interrupted\n');
      return ExitCode.interrupted;
    }
    if (error instanceof MeshctlError) {
      printError(error);
      return error.exitCode;
    }
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`meshctl: internal error: ${text.split('\n').map(safeText).join('\n')}\n`);
    return ExitCode.internal;
  }
}
