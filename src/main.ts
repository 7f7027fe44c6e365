/** argv -> command. The one place that turns errors into exit codes and messages (src/cli.ts runs it). */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ExitCode, MeshctlError } from './errors.js';
import { interruptSignal } from './interrupt.js';
import { registerLab } from './commands/lab.js';
import { registerUp } from './commands/up.js';
import { registerVerify } from './commands/verify.js';
import { registerDebug } from './commands/debug.js';
import { registerValidate } from './commands/validate.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('meshctl')
    .description('Build and check WireGuard meshes over SSH, phase by phase, with a STOP/GO gate after each.')
    .version(pkg.version, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerValidate(program);
  registerUp(program);
  registerVerify(program);
  registerDebug(program);
  registerLab(program);
  return program;
}

function printError(error: MeshctlError): void {
  process.stderr.write(`meshctl: ${error.message}\n`);
  for (const line of error.details) process.stderr.write(`  ${line}\n`);
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
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
    process.stderr.write(`meshctl: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return 70;
  }
}
