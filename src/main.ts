/**
 * argv -> command. The one place that turns errors into exit codes and messages (src/cli.ts runs it).
 *
 * Start-up cost: only the command being run is loaded (with its SSH, listr2, inquirer and schema code); `--version`
 * and the top-level `--help` load none of them, only the table below. Each command's module registers its full
 * definition (arguments, options, action) when it is the one named on the command line.
 */
import { Command, CommanderError } from 'commander';
import { ExitCode, MeshctlError, type CommandResult } from './errors.js';
import { interruptSignal } from './interrupt.js';
import { reportInterrupted } from './interrupted.js';

// for src/cli.ts, which imports this module alone (one file fewer to load each: issue 10, start-up)
export { installInterruptHandler } from './interrupt.js';
export { flushed } from './exit.js';
import { safeText } from './ui/safe-text.js';
import { VERSION } from './version.js';

/** How a command module adds itself to the program. */
type Register = (program: Command, finish: (result: CommandResult) => void) => void;

/**
 * Every command: its name, the one-line summary the top-level help shows, and its module, imported only when the
 * command runs (or its own --help is asked). A unit test checks each summary against the module's description.
 */
export const COMMANDS: ReadonlyArray<{ name: string; summary: string; load: () => Promise<Register> }> = [
  {
    name: 'validate',
    summary: 'check an inventory (nothing is contacted) and show the mesh it describes: sites, nodes, who dials whom',
    load: async () => (await import('./commands/validate.js')).registerValidate,
  },
  {
    name: 'up',
    summary:
      'build the mesh: facts -> baseline -> install -> keys -> config -> enable -> ping matrix, with a STOP/GO gate after each phase',
    load: async () => (await import('./commands/up.js')).registerUp,
  },
  {
    name: 'plan',
    summary: 'show what `up` would change on each node (peers, files with their diff, services and why); changes nothing',
    load: async () => (await import('./commands/plan.js')).registerPlan,
  },
  {
    name: 'down',
    summary:
      'take the mesh down on some nodes (interface, service; --purge: configs, keys, sysctl file, drop-in) and remove their peers from the others',
    load: async () => (await import('./commands/down.js')).registerDown,
  },
  {
    name: 'verify',
    summary:
      'check a running mesh: interfaces, listeners, peers, AllowedIPs, endpoints, handshakes, routes, rp_filter, MTU, drift; N x N ping matrix and path MTU (read-only)',
    load: async () => (await import('./commands/verify.js')).registerVerify,
  },
  {
    name: 'debug',
    summary:
      'find why pairs of nodes cannot talk: two-ended evidence, optional packet captures, a named cause and a suggested fix (changes nothing)',
    load: async () => (await import('./commands/debug.js')).registerDebug,
  },
  {
    name: 'import',
    summary: 'take over a hand-built wg-quick mesh: read every node (nothing secret), write an inventory of it, keep every key pair',
    load: async () => (await import('./commands/import.js')).registerImport,
  },
  {
    name: 'rotate-keys',
    summary: 'new WireGuard key pairs on nodes (made on the node), every peer updated live, the old key gone; then the ping matrix',
    load: async () => (await import('./commands/rotate-keys.js')).registerRotateKeys,
  },
  {
    name: 'lab',
    summary: 'a sealed local replica of an inventory: containers, NAT routers, an operator namespace (root only)',
    load: async () => (await import('./commands/lab.js')).registerLab,
  },
];

/** The first word of argv that is not an option: the command asked for, if any. */
const commandWord = (argv: string[]): string | undefined => argv.slice(2).find((word) => !word.startsWith('-'));

/**
 * Commands after which the executable exits as soon as main() returned and the output is flushed (src/cli.ts),
 * instead of waiting for node to finish on its own: each awaits all it must do (locks released, state written,
 * report printed) before it returns, and what is left then is the nodes' sockets closing and node's teardown.
 */
const EXIT_WHEN_DONE = new Set(['up', 'verify', 'plan']);

/** Whether argv names a command after which the process may exit as soon as main() returned (see EXIT_WHEN_DONE). */
export const exitsWhenDone = (argv: string[]): boolean => EXIT_WHEN_DONE.has(commandWord(argv) ?? '');

/**
 * The program; each command hands its result to `finish` (the last one wins; none means success).
 * With `argv`, only the command it names is loaded in full; the others appear by name and summary (for --help).
 * Without it, every command is loaded (tests, completion).
 */
export async function buildProgram(finish: (result: CommandResult) => void = () => undefined, argv?: string[]): Promise<Command> {
  const program = new Command('meshctl')
    .description('Build and check WireGuard meshes over SSH, phase by phase, with a STOP/GO gate after each.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const wanted = argv ? commandWord(argv) : undefined;
  for (const command of COMMANDS) {
    if (argv === undefined || command.name === wanted) (await command.load())(program, finish);
    else program.command(command.name).description(command.summary);
  }
  return program;
}

/** An error as lines on stderr; messages and details quote inputs and node output, so they are shown through safeText. */
function printError(error: MeshctlError): void {
  process.stderr.write(`meshctl: ${safeText(error.message)}\n`);
  for (const line of error.details) process.stderr.write(`  ${safeText(line)}\n`);
}

export async function main(argv: string[]): Promise<number> {
  let result = 'ok' as CommandResult;
  let program: Command | undefined;
  try {
    program = await buildProgram((r) => {
      result = r;
    }, argv);
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
      // whatever failed after Ctrl-C failed because of it; the command already stopped its remote work. What it
      // said of where it stopped (../interrupted.ts: Ctrl-C during the logins, with how far they got) is printed,
      // with --json also as a JSON report on stdout; anything else as `meshctl: interrupted`
      const command = commandWord(argv);
      const json = program?.commands.find((c) => c.name() === command)?.opts().json === true;
      return reportInterrupted(error, {
        ...(command ? { command } : {}),
        json,
        print: (line) => process.stderr.write(`${safeText(line)}\n`),
        stdout: process.stdout,
      });
    }
    return reportFailure(error);
  }
}

/**
 * Prints an error no command handled and returns the exit code: a MeshctlError as its message and details (its own
 * code); a TransportError (a connection lost in a command that does not handle it per node; Q9: `down` printed a
 * stack trace) as the node and why, exit 3; anything else as an internal error with its stack, exit 70.
 */
export function reportFailure(error: unknown): number {
  if (error instanceof MeshctlError) {
    printError(error);
    return error.exitCode;
  }
  // matched by name, so that main loads no transport code
  if (error instanceof Error && error.name === 'TransportError') {
    printError(
      new MeshctlError(error.message, 'connect', [
        'the command stopped there; what it had done on the nodes until then stays: run it again once the node answers',
      ]),
    );
    return ExitCode.connect;
  }
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`meshctl: internal error: ${text.split('\n').map(safeText).join('\n')}\n`);
  return ExitCode.internal;
}
