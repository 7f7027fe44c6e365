/**
 * meshctl's one schema system: a file format (or a JSON output) written once as data, with field types, ranges,
 * defaults and a description per field. Three things are derived from a spec:
 * - `checkSpec`: walks a located YAML tree (./yaml-tree.ts) and reports every type, range, missing-field and
 *   unknown-field problem at the exact line:col, with a did-you-mean;
 * - `checkValue`: the same rules on a plain JS value (e.g. the `verify --json` report), problems by path;
 * - `toJsonSchema` (./json-schema.ts): the published JSON Schema under schema/ that editors and scripts use.
 *
 * Why not zod: its issues carry a path but no position, messages are generic ("Invalid input"), and an unknown
 * key is reported at its parent. Walking the YAML tree ourselves gives the position of the offending key or
 * value and messages written for each format; keeping the rules as data keeps the JSON Schemas in step.
 * Rules that involve more than one field (duplicates, overlaps, references) are the loaders' own.
 *
 * Names are looked up as own properties only: a key such as `constructor`, `toString` or `__proto__` is an
 * unknown field like any other, never a match inherited from Object.prototype.
 */
import { didYouMean, formatPath, listWords, type PathPart, type Position, type Problem } from './problems.js';
import type { TreeNode } from './yaml-tree.js';

interface Common {
  description: string;
  examples?: unknown[];
  /** default applied by the loader when the field is absent (also published in the JSON Schema) */
  default?: unknown;
  required?: boolean;
  /** null is accepted too (a JSON output's "nothing here"; YAML `key: ~`) */
  nullable?: boolean;
}

export interface StringFormat {
  /** "an IPv4 address like 192.168.1.10": used in "expected ..., got ..." */
  what: string;
  /** undefined when valid, else the message */
  check: (value: string) => string | undefined;
  jsonSchema: Record<string, unknown>;
  /**
   * Any characters are fine (free text such as command output). Without it, a string with leading or trailing
   * whitespace or with control characters is an error: in a file a person wrote, they are a mistake.
   */
  anyText?: boolean;
}

export type Spec =
  | (Common & {
      type: 'object';
      fields: Record<string, Spec>;
      /** messages for fields that do not belong here but are a known mistake (misplaced, or not allowed here) */
      hints?: Record<string, string>;
      /** extra JSON Schema keywords (e.g. oneOf for site kinds, which the inventory's semantic check enforces) */
      jsonSchema?: Record<string, unknown>;
    })
  | (Common & {
      type: 'record';
      /** what the keys are, e.g. "node name" */
      keyWhat: string;
      keyFormat: StringFormat;
      /** e.g. "ms-1: { site: home, ... }", shown when something else was written */
      shape: string;
      value: Spec;
    })
  | (Common & { type: 'string'; format: StringFormat })
  | (Common & { type: 'integer'; minimum?: number; maximum?: number; what: string })
  | (Common & { type: 'number'; minimum?: number; maximum?: number; what: string })
  | (Common & { type: 'boolean' })
  | (Common & { type: 'enum'; values: readonly (string | number)[] })
  | (Common & { type: 'array'; items: Spec });

/** Any string at all (free text, keys of an output map). */
export const anyText: StringFormat = { what: 'a string', check: () => undefined, jsonSchema: {}, anyText: true };

/** `Object.hasOwn` as a lookup: the value of an own property, never an inherited one. */
export function ownValue<T>(record: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined;
}

/** Sets an own, enumerable property even for `__proto__` (a plain assignment would change the prototype). */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

// --- messages ------------------------------------------------------------------------------------------------

function describeGot(node: TreeNode): string {
  if (node.kind === 'map') return 'a map';
  if (node.kind === 'seq') return 'a list';
  const value = node.value;
  if (value === null || value === undefined) return 'nothing';
  if (typeof value === 'string') return value === '' ? 'an empty string' : `the string "${value}"`;
  return String(value);
}

const quoteHint = (node: TreeNode) =>
  node.kind === 'scalar' && typeof node.value === 'string' && /^-?\d+$/.test(node.value.trim()) ? ' (remove the quotes)' : '';

function expectation(spec: Spec): string {
  const what = expectationOf(spec);
  return spec.nullable ? `${what} or null` : what;
}

function expectationOf(spec: Spec): string {
  switch (spec.type) {
    case 'object':
      return `a map (${Object.keys(spec.fields).join(', ')})`;
    case 'record':
      return `a map of ${spec.keyWhat}s, like ${spec.shape}`;
    case 'string':
      return spec.format.what;
    case 'integer':
    case 'number':
      return spec.what;
    case 'boolean':
      return 'true or false';
    case 'enum':
      return listWords(spec.values.map(String));
    case 'array':
      return 'a list';
  }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this looks for
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/; // C0, DEL, C1, bidi overrides (../ui/safe-text.ts)

/** The problem with a string's characters (surrounding whitespace, control characters), before its format. */
function textProblem(format: StringFormat, value: string): string | undefined {
  if (format.anyText || value === '') return undefined;
  if (value.trim() === '') return `expected ${format.what}, got only whitespace ${JSON.stringify(value)}`;
  if (value.trim() !== value) return `${JSON.stringify(value)} has leading or trailing whitespace: write ${JSON.stringify(value.trim())}`;
  if (CONTROL.test(value)) return `expected ${format.what}, got ${JSON.stringify(value)} (it holds control characters)`;
  return undefined;
}

function rangeProblem(spec: { minimum?: number; maximum?: number; what: string }, value: number): string | undefined {
  const low = spec.minimum !== undefined && value < spec.minimum;
  const high = spec.maximum !== undefined && value > spec.maximum;
  return low || high ? `${value} is out of range: expected ${spec.what}` : undefined;
}

// --- the tree walker -----------------------------------------------------------------------------------------

/**
 * Checks `node` against `spec`, pushing problems (positions from the tree, paths from `path`). Returns the plain
 * value made of the parts that passed (invalid scalars become undefined; maps keep their valid fields), so a
 * loader's cross-field checks can still run on the rest. Never throws on any input.
 */
export function checkSpec(spec: Spec, node: TreeNode, path: PathPart[], problems: Problem[]): unknown {
  if (node.kind === 'scalar' && node.broken) return undefined;
  if (spec.nullable && node.kind === 'scalar' && node.value === null) return null;
  const report = (message: string, at = node.pos) => problems.push({ ...at, path: formatPath(path), message });
  const mismatch = () => {
    report(`expected ${expectation(spec)}, got ${describeGot(node)}${quoteHint(node)}`);
    return undefined;
  };
  switch (spec.type) {
    case 'object':
      return node.kind === 'map' ? checkObject(spec, node, path, problems) : mismatch();
    case 'record': {
      if (node.kind !== 'map') return mismatch();
      const result: Record<string, unknown> = {};
      for (const [key, child] of node.entries) {
        const keyProblem = textProblem(spec.keyFormat, key) ?? spec.keyFormat.check(key);
        if (keyProblem) {
          problems.push({ ...keyPosition(child), path: formatPath([...path, key]), message: `${spec.keyWhat} ${keyProblem}` });
        }
        setOwn(result, key, checkSpec(spec.value, child, [...path, key], problems));
      }
      return result;
    }
    case 'string': {
      if (node.kind !== 'scalar' || typeof node.value !== 'string') return mismatch();
      const problem = textProblem(spec.format, node.value) ?? spec.format.check(node.value);
      if (problem) {
        report(problem);
        return undefined;
      }
      return node.value;
    }
    case 'integer':
    case 'number': {
      const value = node.kind === 'scalar' ? node.value : undefined;
      if (typeof value !== 'number' || !Number.isFinite(value) || (spec.type === 'integer' && !Number.isInteger(value))) {
        return mismatch();
      }
      const problem = rangeProblem(spec, value);
      if (problem) {
        report(problem);
        return undefined;
      }
      return value;
    }
    case 'boolean': {
      if (node.kind !== 'scalar' || typeof node.value !== 'boolean') return mismatch();
      return node.value;
    }
    case 'enum': {
      if (node.kind !== 'scalar' || !spec.values.includes(node.value as string | number)) {
        const guess =
          node.kind === 'scalar' && typeof node.value === 'string'
            ? didYouMean(
                node.value,
                spec.values.filter((v): v is string => typeof v === 'string'),
              )
            : undefined;
        report(`expected ${expectation(spec)}, got ${describeGot(node)}${guess ? `; did you mean ${guess}?` : ''}`);
        return undefined;
      }
      return node.value;
    }
    case 'array': {
      if (node.kind !== 'seq') return mismatch();
      return node.items.map((item, i) => checkSpec(spec.items, item, [...path, i], problems));
    }
  }
}

const keyPosition = (node: TreeNode): Position => node.keyPos ?? node.pos;

function checkObject(
  spec: Extract<Spec, { type: 'object' }>,
  node: Extract<TreeNode, { kind: 'map' }>,
  path: PathPart[],
  problems: Problem[],
) {
  const result: Record<string, unknown> = {};
  const known = Object.keys(spec.fields);
  for (const [key, child] of node.entries) {
    const fieldSpec = ownValue(spec.fields, key);
    if (!fieldSpec) {
      const hint = ownValue(spec.hints, key);
      const guess = didYouMean(key, known);
      const message = hint ?? (guess ? `unknown field; did you mean ${guess}?` : `unknown field (allowed here: ${known.join(', ')})`);
      problems.push({ ...keyPosition(child), path: formatPath([...path, key]), message });
      continue;
    }
    setOwn(result, key, checkSpec(fieldSpec, child, [...path, key], problems));
  }
  for (const [key, fieldSpec] of Object.entries(spec.fields)) {
    if (fieldSpec.required && !node.entries.has(key)) {
      const example = fieldSpec.examples?.[0];
      problems.push({
        ...keyPosition(node),
        path: formatPath([...path, key]),
        message: `missing required field${example === undefined ? '' : ` (e.g. ${key}: ${String(example)})`}`,
      });
    }
  }
  return result;
}

// --- plain values ----------------------------------------------------------------------------------------------

const NOWHERE: Position = { line: 0, col: 0 };

/** A plain JSON-like value as a tree without positions; undefined fields are left out, as JSON.stringify does. */
function treeOfValue(value: unknown): TreeNode {
  if (Array.isArray(value)) return { kind: 'seq', items: value.map(treeOfValue), pos: NOWHERE };
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const entries = new Map<string, TreeNode>();
    for (const [key, child] of Object.entries(value)) if (child !== undefined) entries.set(key, treeOfValue(child));
    return { kind: 'map', entries, pos: NOWHERE };
  }
  return { kind: 'scalar', value, pos: NOWHERE };
}

/**
 * Checks a plain JS value (e.g. a report about to be printed as JSON) against `spec` with the same rules as
 * `checkSpec`. Returns one `field.path: message` line per problem, none when the value conforms.
 */
export function checkValue(spec: Spec, value: unknown): string[] {
  const problems: Problem[] = [];
  checkSpec(spec, treeOfValue(value), [], problems);
  return problems.map((problem) => `${problem.path}: ${problem.message}`);
}
