/**
 * Loads a playbook (data: ordered phases naming steps and checks) and checks it completely before anything runs.
 *
 * Contract: loadPlaybook(path, registry) returns a Playbook or throws MeshctlError (exit 2) whose message names
 * the file and whose details are `file:line:col: field.path: message` lines, every problem at once, sorted by
 * position (the inventory's format, src/schema/problems.ts). Reading the file is its only I/O.
 *
 * Stages: YAML syntax (src/schema/yaml-tree.ts), structure against `playbookSpec` (types, unknown keys with a
 * did-you-mean, unknown step and check names), then rules across phases: unique phase ids, and the registry's
 * contracts (every value a step or check needs is provided by an earlier step).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { badInput } from '../errors.js';
import { readInputFile } from '../schema/input.js';
import { jsonSchemaDocument, jsonSchemaText } from '../schema/json-schema.js';
import { didYouMean, formatPath, formatProblem, listWords, sortProblems, type PathPart, type Problem } from '../schema/problems.js';
import { anyText, checkSpec, type Spec, type StringFormat } from '../schema/spec.js';
import { nodeAt, parseTree, positionOf, type TreeNode } from '../schema/yaml-tree.js';
import type { PhaseSpec, Playbook } from './types.js';

/**
 * What the loader needs from the step and check registry: each step's and check's contract. The names of
 * values ("facts", "publicKeys") are the registry's own vocabulary; the loader only matches them.
 */
export interface RegistryContract {
  /** step name -> the names of the values it needs (facts, outputs of earlier steps) and those it provides */
  steps: ReadonlyMap<string, { needs: readonly string[]; provides: readonly string[] }>;
  /** check name -> the values it reads */
  checks: ReadonlyMap<string, { needs: readonly string[] }>;
}

/** The registry before contracts: names only (every step and check then needs and provides nothing). */
export interface RegistryNames {
  steps: ReadonlySet<string>;
  checks: ReadonlySet<string>;
}

export const builtinPlaybookPath = (name: string) => fileURLToPath(new URL(`../../playbooks/${name}.yaml`, import.meta.url));

/**
 * Where `npm run build` writes a built-in playbook compiled (scripts/build.mjs, compilePlaybooks): dist/playbook-NAME.json,
 * beside the bundle's chunks (this module's URL is dist/engine/playbook.js there). Not there when run from src/ (tsx).
 */
export const compiledPlaybookPath = (name: string) => fileURLToPath(new URL(`../playbook-${name}.json`, import.meta.url));

/** What compilePlaybooks writes: the playbook's YAML text as it was, and the Playbook it checked into (less its source). */
export interface CompiledPlaybook {
  yaml: string;
  playbook: Omit<Playbook, 'source'>;
}

/**
 * The built-in playbook at `path`, already checked (issue 10: parsing and checking playbooks/up.yaml cost 10-18 ms of
 * every `up`): `npm run build` checked it against the registry of the same build and wrote the result to `compiled`.
 * Used only when the playbook's text is still, byte for byte, the text that was checked: playbooks/*.yaml stay the
 * source, and one edited since the build (or a compiled file missing or unreadable) is parsed and checked as usual.
 */
export function compiledPlaybook(
  path: string,
  text: string,
  compiled = compiledPlaybookPath(basename(path, '.yaml')),
): Playbook | undefined {
  if (path !== builtinPlaybookPath(basename(path, '.yaml'))) return undefined;
  let data: CompiledPlaybook;
  try {
    data = JSON.parse(readFileSync(compiled, 'utf8')) as CompiledPlaybook;
  } catch {
    return undefined;
  }
  if (data?.yaml !== text || !Array.isArray(data.playbook?.phases)) return undefined;
  return { ...data.playbook, source: path };
}

// --- the format ----------------------------------------------------------------------------------------------

const NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

const prose: StringFormat = { ...anyText, what: 'text' };

const playbookName: StringFormat = {
  what: 'a playbook name like up',
  check: (value) => (value === '' ? 'expected a playbook name, got an empty string' : undefined),
  jsonSchema: { minLength: 1 },
};

const phaseId: StringFormat = {
  what: 'a phase id like keys',
  check: (value) => (NAME.test(value) ? undefined : `"${value}" is not a phase id: use lowercase letters, digits and "-"`),
  jsonSchema: { pattern: NAME.source },
};

/** A step or check name: any name-like string without a registry, one of the registry's names with one. */
function registered(kind: 'step' | 'check', known?: readonly string[]): StringFormat {
  return {
    what: `a ${kind} name`,
    check: (value) => {
      if (!known) return NAME.test(value) ? undefined : `"${value}" is not a ${kind} name`;
      if (known.includes(value)) return undefined;
      const guess = didYouMean(value, known);
      return `unknown ${kind} "${value}"${guess ? `; did you mean ${guess}?` : ` (known: ${known.join(', ')})`}`;
    },
    jsonSchema: { pattern: NAME.source },
  };
}

/**
 * The playbook format as a Spec. With `registry`, step and check names must be the registry's; without one
 * (the published schema/playbook.schema.json) any name-like string is accepted.
 */
export function playbookSpec(registry?: RegistryContract): Spec {
  const names = (kind: 'step' | 'check', map?: ReadonlyMap<string, unknown>): Spec => ({
    type: 'array',
    description:
      kind === 'step'
        ? 'Steps to run, in order, each on every node in parallel (or once for the mesh); names from the step registry (src/engine/registry.ts).'
        : "Checks evaluated after the phase's steps; any failure stops the run at the gate. Names from the check registry.",
    default: [],
    items: {
      type: 'string',
      format: registered(kind, map ? [...map.keys()] : undefined),
      description: `The name of a ${kind} in the registry.`,
      examples: kind === 'step' ? ['generate-keys'] : ['public-key-collected'],
    },
  });
  return {
    type: 'object',
    description:
      'A meshctl playbook: the phases `meshctl up` runs in order, each running its steps on every node, then its checks, then a STOP/GO gate.',
    fields: {
      name: {
        type: 'string',
        format: playbookName,
        description: 'Short name of the playbook, shown in reports.',
        default: 'playbook',
      },
      description: { type: 'string', format: prose, description: 'What running the playbook achieves, in one sentence.', default: '' },
      phases: {
        type: 'array',
        required: true,
        description:
          'The phases in order. A step may only need values that steps of earlier phases (or earlier steps of its own phase) provide.',
        items: {
          type: 'object',
          description: 'One phase: its steps, its checks and the GO criterion shown at its gate.',
          fields: {
            id: {
              type: 'string',
              format: phaseId,
              required: true,
              description: 'Unique id of the phase (reports, --json output).',
              examples: ['keys'],
            },
            title: {
              type: 'string',
              format: prose,
              description: "Title shown while the phase runs; {interface} stands for the mesh's interface name (wg0). Defaults to the id.",
            },
            steps: names('step', registry?.steps),
            checks: names('check', registry?.checks),
            go: { type: 'string', format: prose, description: "The runbook's GO criterion, shown at the gate.", default: '' },
          },
        },
      },
    },
  };
}

/** The published JSON Schema of playbooks (schema/playbook.schema.json). */
export const playbookJsonSchema = (): Record<string, unknown> => jsonSchemaDocument('meshctl playbook', playbookSpec());

/** The exact text of schema/playbook.schema.json. */
export const playbookJsonSchemaText = () => jsonSchemaText(playbookJsonSchema());

// --- checking ------------------------------------------------------------------------------------------------

interface RawPhase {
  id?: string;
  title?: string;
  steps?: (string | undefined)[];
  checks?: (string | undefined)[];
  go?: string;
}
interface RawPlaybook {
  name?: string;
  description?: string;
  phases?: (RawPhase | undefined)[];
}

export type PlaybookCheck = { ok: true; playbook: Playbook; problems: [] } | { ok: false; problems: Problem[] };

const isContract = (registry: RegistryContract | RegistryNames): registry is RegistryContract =>
  typeof (registry.steps as ReadonlyMap<string, unknown>).get === 'function';

/** The names-only registry as a contract in which nothing needs or provides anything. */
export function asContract(registry: RegistryContract | RegistryNames): RegistryContract {
  if (isContract(registry)) return registry;
  return {
    steps: new Map([...registry.steps].map((name) => [name, { needs: [], provides: [] }])),
    checks: new Map([...registry.checks].map((name) => [name, { needs: [] }])),
  };
}

/** Pure: checks playbook text against the registry. `file` becomes the Playbook's source. */
export function checkPlaybookText(text: string, file: string, registry: RegistryContract | RegistryNames): PlaybookCheck {
  const contract = asContract(registry);
  const parsed = parseTree(text, { documentNoun: 'a playbook' });
  if (parsed.syntaxBroken) return { ok: false, problems: sortProblems(parsed.problems) };
  const problems = [...parsed.problems];
  const root: TreeNode = parsed.root ?? { kind: 'map', entries: new Map(), pos: { line: 1, col: 1 } };
  const raw = (checkSpec(playbookSpec(contract), root, [], problems) ?? {}) as RawPlaybook;
  const phases = raw.phases ?? [];
  problems.push(...duplicatePhaseIds(phases, root), ...unmetNeeds(phases, contract, root));
  if (problems.length > 0) return { ok: false, problems: sortProblems(problems) };
  return { ok: true, playbook: normalise(raw, file), problems: [] };
}

/**
 * Loads and checks the playbook at `path`. `registry`: the step and check contracts (or, until every step has
 * one, just the names). Throws MeshctlError (exit 2): `playbook PATH has N problems` with one
 * `path:line:col: field: message` line each, or one line when the file cannot be read.
 */
export function loadPlaybook(path: string, registry: RegistryContract | RegistryNames): Playbook {
  const text = readInputFile(path, 'playbook');
  // a built-in playbook the build checked against the full registry (with names only, the check is another one)
  const compiled = isContract(registry) ? compiledPlaybook(path, text) : undefined;
  if (compiled) return compiled;
  const result = checkPlaybookText(text, path, registry);
  if (!result.ok) {
    const count = result.problems.length === 1 ? '1 problem' : `${result.problems.length} problems`;
    throw badInput(
      `playbook ${path} has ${count}`,
      result.problems.map((problem) => formatProblem(path, problem)),
    );
  }
  return result.playbook;
}

/**
 * The playbook as a run shows it: `{interface}` in a phase's title and GO text is the mesh's interface name
 * (mesh.interface), so a mesh on `wghome` is not told "Push wg0.conf" (a new user's finding, Q6). Pure.
 */
export function forInterface(playbook: Playbook, iface: string): Playbook {
  const put = (text: string) => text.replaceAll('{interface}', iface);
  return { ...playbook, phases: playbook.phases.map((phase) => ({ ...phase, title: put(phase.title), go: put(phase.go) })) };
}

function problemAt(root: TreeNode, path: PathPart[], message: string): Problem {
  const { line, col } = positionOf(root, path);
  return { line, col, path: formatPath(path), message };
}

function duplicatePhaseIds(phases: readonly (RawPhase | undefined)[], root: TreeNode): Problem[] {
  const problems: Problem[] = [];
  const first = new Map<string, number>();
  phases.forEach((phase, i) => {
    if (phase?.id === undefined) return;
    const earlier = first.get(phase.id);
    if (earlier === undefined) first.set(phase.id, i);
    else {
      const at = nodeAt(root, ['phases', earlier, 'id'])!.pos;
      problems.push(problemAt(root, ['phases', i, 'id'], `duplicate phase id ${phase.id} (first at ${at.line}:${at.col})`));
    }
  });
  return problems;
}

/**
 * The contract rule: a step's needs must be provided by a step of an earlier phase or an earlier step of its own
 * phase; a check's needs by a step of its own phase or an earlier one. Unknown names were reported already.
 */
function unmetNeeds(phases: readonly (RawPhase | undefined)[], contract: RegistryContract, root: TreeNode): Problem[] {
  const problems: Problem[] = [];
  const provided = new Set<string>();
  const providers = (value: string) => {
    const names = [...contract.steps].filter(([, step]) => step.provides.includes(value)).map(([name]) => name);
    return names.length > 0 ? `provided by: ${listWords(names, 'and')}` : 'no step provides it';
  };
  phases.forEach((phase, p) => {
    (phase?.steps ?? []).forEach((name, s) => {
      const step = name === undefined ? undefined : contract.steps.get(name);
      if (!step) return;
      for (const need of step.needs.filter((n) => !provided.has(n))) {
        const message = `step "${name}" needs "${need}", which no earlier phase provides (${providers(need)})`;
        problems.push(problemAt(root, ['phases', p, 'steps', s], message));
      }
      for (const value of step.provides) provided.add(value);
    });
    (phase?.checks ?? []).forEach((name, c) => {
      const check = name === undefined ? undefined : contract.checks.get(name);
      if (!check) return;
      for (const need of check.needs.filter((n) => !provided.has(n))) {
        const message = `check "${name}" needs "${need}", which neither this phase nor an earlier one provides (${providers(need)})`;
        problems.push(problemAt(root, ['phases', p, 'checks', c], message));
      }
    });
  });
  return problems;
}

/** Only called on a playbook that passed every check. */
function normalise(raw: RawPlaybook, source: string): Playbook {
  const phases: PhaseSpec[] = (raw.phases ?? []).map((phase) => {
    const p = phase!;
    return {
      id: p.id!,
      title: p.title ?? p.id!,
      go: p.go ?? '',
      steps: (p.steps ?? []).map((s) => s!),
      checks: (p.checks ?? []).map((c) => c!),
    };
  });
  return { name: raw.name ?? 'playbook', description: raw.description ?? '', phases, source };
}
