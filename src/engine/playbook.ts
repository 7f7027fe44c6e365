/** Loads a playbook (data: ordered phases naming steps and checks) and checks every name against the registry. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, type Node as YamlNode } from 'yaml';
import { badInput } from '../errors.js';
import { formatProblem } from '../inventory/problems.js';
import type { PhaseSpec, Playbook } from './types.js';

export const builtinPlaybookPath = (name: string) => fileURLToPath(new URL(`../../playbooks/${name}.yaml`, import.meta.url));

/** The names a playbook may use (the registry's contract maps, or plain sets of names). */
export interface KnownNames {
  steps: { has(name: string): boolean; keys(): IterableIterator<string> };
  checks: { has(name: string): boolean; keys(): IterableIterator<string> };
}

export function loadPlaybook(path: string, known: KnownNames): Playbook {
  const text = readFileSync(path, 'utf8');
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true });
  const problems: string[] = [];
  const at = (node: YamlNode | null | undefined, field: string, message: string) => {
    const pos = node?.range ? lineCounter.linePos(node.range[0]) : { line: 1, col: 1 };
    problems.push(formatProblem(path, { line: pos.line, col: pos.col, path: field, message }));
  };
  for (const error of doc.errors) {
    const pos = lineCounter.linePos(error.pos[0]);
    problems.push(formatProblem(path, { line: pos.line, col: pos.col, path: 'syntax', message: error.message.split('\n')[0]! }));
  }
  const phasesNode = doc.get('phases', true);
  const phases: PhaseSpec[] = [];
  if (!isSeq(phasesNode)) at(doc.contents, 'phases', 'a list of phases is required');
  else {
    phasesNode.items.forEach((item, index) => {
      const field = `phases[${index}]`;
      if (!isMap(item)) {
        at(item as YamlNode, field, 'must be a map');
        return;
      }
      const names = (key: 'steps' | 'checks', registry: KnownNames['steps']): string[] => {
        const list = item.get(key, true);
        if (list === undefined) return [];
        if (!isSeq(list)) {
          at(list as YamlNode, `${field}.${key}`, 'must be a list of names');
          return [];
        }
        return list.items.flatMap((entry, i) => {
          const value = isScalar(entry) ? String(entry.value) : '';
          if (!registry.has(value)) {
            at(
              entry as YamlNode,
              `${field}.${key}[${i}]`,
              `unknown ${key === 'steps' ? 'step' : 'check'} "${value}" (known: ${[...registry.keys()].join(', ')})`,
            );
            return [];
          }
          return [value];
        });
      };
      const id = String(item.get('id') ?? '');
      if (!id) at(item, `${field}.id`, 'is required');
      phases.push({
        id,
        title: String(item.get('title') ?? id),
        go: String(item.get('go') ?? ''),
        steps: names('steps', known.steps),
        checks: names('checks', known.checks),
      });
    });
  }
  if (problems.length) throw badInput(`playbook ${path} has ${problems.length} problem${problems.length > 1 ? 's' : ''}`, problems);
  return { name: String(doc.get('name') ?? 'playbook'), description: String(doc.get('description') ?? ''), phases, source: path };
}
