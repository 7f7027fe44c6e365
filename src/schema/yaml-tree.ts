/**
 * YAML text -> a small tree of maps, lists and scalars where every value knows its line:col and the line:col of
 * the key that holds it. Schema and semantic checks work on this tree, so each problem can point at the exact
 * value. YAML syntax errors and duplicate keys are found here.
 *
 * Aliases are followed (the value then points at the anchor); `<<: *anchor` merge keys are honoured, keys written
 * in the map itself win over merged ones. Expanding aliases is bounded (MAX_ALIAS_VALUES): a few hundred bytes of
 * nested aliases ("billion laughs") would otherwise expand to billions of values.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Alias, type Document, type Node as YamlNode } from 'yaml';
import { withoutTurbofan } from './interpreted.js';
import { formatPath, type PathPart, type Position, type Problem } from './problems.js';

interface Located {
  /** where the value starts */
  pos: Position;
  /** where the key holding it starts (absent for the root and list items) */
  keyPos?: Position;
}

export interface TreeMap extends Located {
  kind: 'map';
  entries: Map<string, TreeNode>;
}
export interface TreeSeq extends Located {
  kind: 'seq';
  items: TreeNode[];
}
export interface TreeScalar extends Located {
  kind: 'scalar';
  value: unknown;
  /** already reported (e.g. an alias to nothing): checks skip it silently */
  broken?: boolean;
}
export type TreeNode = TreeMap | TreeSeq | TreeScalar;

export interface ParsedTree {
  /** undefined for an empty document */
  root?: TreeNode;
  problems: Problem[];
  /** true when the YAML itself is broken: other checks are skipped (they would only add noise) */
  syntaxBroken: boolean;
}

const START: Position = { line: 1, col: 1 };

/** When the parser reports several errors on one line, the first of these codes says best what is wrong. */
const SYNTAX_RANK = ['TAB_AS_INDENT', 'MISSING_CHAR', 'MULTILINE_IMPLICIT_KEY', 'BAD_INDENT', 'BLOCK_AS_IMPLICIT_KEY'];

/** A YAML parser error as a sentence for people, keyed by the parser's error code. */
function yamlMessage(code: string, message: string, documentNoun: string): string {
  switch (code) {
    case 'MISSING_CHAR':
      if (/quote/.test(message)) return 'YAML syntax error: this quoted string is never closed';
      break;
    case 'BAD_INDENT':
      if (/^Flow sequence/.test(message))
        return 'YAML syntax error: this [ list is never closed with ] (or the next line is not indented enough)';
      if (/^Flow mapping/.test(message))
        return 'YAML syntax error: this { map is never closed with } (or the next line is not indented enough)';
      break;
    case 'MULTIPLE_DOCS':
      return `the file holds more than one YAML document (---): ${documentNoun} is one document`;
    case 'TAB_AS_INDENT':
      return 'YAML syntax error: tabs cannot indent YAML, use spaces';
    case 'MULTILINE_IMPLICIT_KEY':
      return 'YAML syntax error: a key runs over more than one line (is the next line indented too far, or a ":" missing?)';
    case 'BLOCK_AS_IMPLICIT_KEY':
      return 'YAML syntax error: a map cannot start on the same line as its key (put it on the next line, indented, or write it in braces { })';
  }
  const text = message.replace(/ at line \d+, column \d+:[\s\S]*$/, '').trim();
  return `YAML syntax error: ${text.charAt(0).toLowerCase()}${text.slice(1)}`;
}

/**
 * Where to point for a parser error: the parser reports an unclosed quote at the end of the file; the quote that
 * was opened is more useful.
 */
function syntaxErrorOffset(doc: Document, code: string, message: string, offset: number): number {
  let opening = offset;
  if (code === 'MISSING_CHAR') {
    treeWork.documentWalks++;
    visit(doc, {
      Scalar(_key, node) {
        if ((node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') && node.range?.[1] === offset) opening = node.range[0];
      },
    });
  } else if (/^Flow (sequence|mapping)/.test(message)) {
    treeWork.documentWalks++;
    visit(doc, {
      Seq(_key, node) {
        if (node.flow && node.range?.[1] === offset) opening = node.range[0];
      },
      Map(_key, node) {
        if (node.flow && node.range?.[1] === offset) opening = node.range[0];
      },
    });
  }
  return opening;
}

export interface ParseTreeOptions {
  /** what the keys of the map at `path` are called in messages ("duplicate node name wk-1"); default "key" */
  keyNoun?: (path: readonly PathPart[]) => string;
  /** what the file is, for "the file holds more than one YAML document (---): an inventory is one document" */
  documentNoun?: string;
}

/**
 * How many values all alias expansions of one file may produce together. Sharing a few settings through anchors
 * costs tens of values; 10 000 leaves room for any real file and keeps a "billion laughs" file to milliseconds.
 */
export const MAX_ALIAS_VALUES = 10_000;

/**
 * How deep flow collections (`[` and `{`) may nest. An inventory needs three or four levels; the YAML library
 * composes nodes recursively, so a file of 20 000 `[` would otherwise exhaust the stack (a RangeError after
 * half a second) instead of getting a clear message at once.
 */
export const MAX_FLOW_DEPTH = 64;

/**
 * Where flow collections first nest deeper than MAX_FLOW_DEPTH, or undefined. A lexical scan, linear in the text:
 * it skips quoted strings and comments; a `[` inside a plain scalar (`a[1]`) counts too, which can only make a
 * file that is nonsense anyway fail here rather than in the parser.
 */
export function flowTooDeep(text: string): number | undefined {
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) i = text.indexOf('\n', i) === -1 ? text.length : text.indexOf('\n', i);
    else if (c === '[' || c === '{') {
      if (++depth > MAX_FLOW_DEPTH) return i;
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return undefined;
}

/**
 * What parseTree has done in this process, counted (for tests: work, not time). `documentWalks`: whole-document
 * `visit` passes besides the one conversion into the tree (alias targets, the opening of an unclosed quote or bracket).
 */
export const treeWork = { documentWalks: 0 };

/**
 * The located tree of `text` (one YAML document), or its problems: syntax errors (`syntaxBroken`), unknown tags,
 * duplicate keys, aliases to nothing or expanding past MAX_ALIAS_VALUES. Never throws on any text. Runs with V8's
 * optimising compiler off (./interpreted.ts: parsing one file is over before optimised code would pay back).
 */
export function parseTree(text: string, options: ParseTreeOptions = {}): ParsedTree {
  return withoutTurbofan(() => parseTreeNow(text, options));
}

function parseTreeNow(text: string, options: ParseTreeOptions): ParsedTree {
  const lineCounter = new LineCounter();
  const deep = flowTooDeep(text);
  if (deep !== undefined) {
    lineCounter.addNewLine(0);
    for (let i = text.indexOf('\n'); i !== -1 && i < deep; i = text.indexOf('\n', i + 1)) lineCounter.addNewLine(i + 1);
    const message = `lists and maps nest deeper than ${MAX_FLOW_DEPTH} levels here: a meshctl file needs a few`;
    return { syntaxBroken: true, problems: [{ ...lineCounter.linePos(deep), path: 'syntax', message }] };
  }
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false, keepSourceTokens: false });
  const at = (offset: number | undefined): Position => (offset === undefined ? START : lineCounter.linePos(offset));
  if (doc.errors.length > 0) {
    // The parser's follow-on errors mostly repeat the first in other words: keep one per line (the most telling),
    // and after a tab used as indentation, only the tab errors (everything after it is misread).
    const tabs = doc.errors.some((error) => error.code === 'TAB_AS_INDENT');
    const byLine = new Map<number, Problem & { rank: number }>();
    for (const error of doc.errors) {
      if (tabs && error.code !== 'TAB_AS_INDENT') continue;
      const pos = at(syntaxErrorOffset(doc, error.code, error.message, error.pos[0]));
      const rank = SYNTAX_RANK.indexOf(error.code) === -1 ? SYNTAX_RANK.length : SYNTAX_RANK.indexOf(error.code);
      const kept = byLine.get(pos.line);
      if (kept && kept.rank <= rank) continue;
      byLine.set(pos.line, {
        ...pos,
        path: 'syntax',
        message: yamlMessage(error.code, error.message, options.documentNoun ?? 'a meshctl file'),
        rank,
      });
    }
    return { syntaxBroken: true, problems: [...byLine.values()].map(({ rank: _rank, ...problem }) => problem) };
  }
  // a value whose tag is unknown has no meaning to check: report the tags alone
  const tagProblems: Problem[] = doc.warnings
    .filter((warning) => warning.code === 'TAG_RESOLVE_FAILED')
    .map((warning) => ({
      ...at(warning.pos[0]),
      path: 'syntax',
      message: `unknown YAML tag ${text.slice(warning.pos[0], warning.pos[1])}: a meshctl file uses plain values, without tags`,
    }));
  if (tagProblems.length > 0) return { syntaxBroken: true, problems: tagProblems };
  const problems: Problem[] = [];
  const keyNoun = options.keyNoun ?? (() => 'key');
  // an alias is written `*name`: a text without a `*` has none, and needs no walk to find their targets
  const targets = text.includes('*') ? aliasTargets(doc) : new Map<Alias, YamlNode>();
  const context: Context = { at, problems, keyNoun, aliasTargets: targets, aliasValues: 0, aliasDepth: 0 };
  const root = doc.contents ? convert(doc, doc.contents as YamlNode, [], context, new Set()) : undefined;
  return { root, problems, syntaxBroken: false };
}

interface Context {
  at: (offset: number | undefined) => Position;
  problems: Problem[];
  keyNoun: (path: readonly PathPart[]) => string;
  /** each alias -> the node of the last anchor of that name before it (YAML's rule) */
  aliasTargets: Map<Alias, YamlNode>;
  /** values produced so far inside alias expansions, against MAX_ALIAS_VALUES */
  aliasValues: number;
  /** > 0 while converting the target of an alias */
  aliasDepth: number;
  /** the budget ran out (reported once) */
  aliasBudgetSpent?: boolean;
}

/**
 * Every alias's target in one pass over the document, in document order. (`Alias.resolve` searches the whole
 * document on each call: quadratic on a file with many aliases.)
 */
function aliasTargets(doc: Document): Map<Alias, YamlNode> {
  const anchors = new Map<string, YamlNode>();
  const targets = new Map<Alias, YamlNode>();
  treeWork.documentWalks++;
  visit(doc, {
    Alias(_key, alias) {
      const target = anchors.get(alias.source);
      if (target) targets.set(alias, target);
    },
    Node(_key, node) {
      if (!isAlias(node) && node.anchor) anchors.set(node.anchor, node as YamlNode);
    },
  });
  return targets;
}

function convertAlias(doc: Document, alias: Alias, path: PathPart[], context: Context, resolving: Set<YamlNode>): TreeNode {
  const { at, problems } = context;
  const pos = at(alias.range?.[0]);
  const target = context.aliasTargets.get(alias);
  if (!target || resolving.has(target)) {
    problems.push({ ...pos, path: formatPath(path), message: `alias *${alias.source} does not name an earlier anchor` });
    return { kind: 'scalar', value: null, pos, broken: true };
  }
  if (context.aliasBudgetSpent) return { kind: 'scalar', value: null, pos, broken: true };
  resolving.add(target);
  context.aliasDepth++;
  const converted = convert(doc, target, path, context, resolving);
  context.aliasDepth--;
  resolving.delete(target);
  if (context.aliasValues > MAX_ALIAS_VALUES && context.aliasDepth === 0) {
    if (!context.aliasBudgetSpent) {
      problems.push({
        ...pos,
        path: formatPath(path),
        message: `alias *${alias.source}: the aliases of this file expand to more than ${MAX_ALIAS_VALUES} values; write the values out instead of nesting aliases`,
      });
    }
    context.aliasBudgetSpent = true;
    return { kind: 'scalar', value: null, pos, broken: true };
  }
  return converted;
}

function convert(doc: Document, node: YamlNode, path: PathPart[], context: Context, resolving: Set<YamlNode>): TreeNode {
  if (isAlias(node)) return convertAlias(doc, node, path, context, resolving);
  if (context.aliasDepth > 0) {
    context.aliasValues++;
    // out of budget: stop here; the outermost alias reports it
    if (context.aliasValues > MAX_ALIAS_VALUES) return { kind: 'scalar', value: null, pos: START, broken: true };
  }
  const { at, problems } = context;
  const pos = at(node.range?.[0]);
  if (isMap(node)) {
    const entries = new Map<string, TreeNode>();
    const keyPositions = new Map<string, Position>();
    const merged: TreeMap[] = [];
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const keyPos = at(keyNode?.range?.[0] ?? node.range?.[0]);
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        problems.push({ ...keyPos, path: formatPath(path), message: 'keys must be plain names, not lists or maps' });
        continue;
      }
      const key = String(keyNode.value);
      const valueNode = pair.value as YamlNode | null;
      if (key === '<<' && keyNode.type === 'PLAIN') {
        const sources = valueNode && isSeq(valueNode) ? (valueNode.items as YamlNode[]) : valueNode ? [valueNode] : [];
        for (const source of sources) {
          const converted = convert(doc, source, path, context, resolving);
          if (converted.kind === 'map') merged.push(converted);
          else problems.push({ ...keyPos, path: formatPath(path), message: '<< (merge) needs a map or a list of maps' });
        }
        continue;
      }
      const first = keyPositions.get(key);
      if (first) {
        problems.push({
          ...keyPos,
          path: formatPath([...path, key]),
          message: `duplicate ${context.keyNoun(path)} ${key} (first at ${first.line}:${first.col})`,
        });
        continue;
      }
      keyPositions.set(key, keyPos);
      let value: TreeNode;
      if (!valueNode || (isScalar(valueNode) && valueNode.value === null && valueNode.range?.[0] === valueNode.range?.[1])) {
        // `key:` with nothing after it: point at the key, there is no value to point at
        value = { kind: 'scalar', value: null, pos: keyPos };
      } else {
        value = convert(doc, valueNode, [...path, key], context, resolving);
      }
      value.keyPos = keyPos;
      entries.set(key, value);
    }
    for (const source of merged) {
      for (const [key, value] of source.entries) if (!entries.has(key)) entries.set(key, value);
    }
    return { kind: 'map', entries, pos };
  }
  if (isSeq(node)) {
    const items = (node.items as YamlNode[]).map((item, i) =>
      item ? convert(doc, item, [...path, i], context, resolving) : ({ kind: 'scalar', value: null, pos } as TreeScalar),
    );
    return { kind: 'seq', items, pos };
  }
  if (isScalar(node)) return { kind: 'scalar', value: node.value, pos };
  return { kind: 'scalar', value: null, pos };
}

/** Follows a path through the tree. */
export function nodeAt(root: TreeNode | undefined, path: readonly PathPart[]): TreeNode | undefined {
  let node = root;
  for (const part of path) {
    if (!node) return undefined;
    if (typeof part === 'number') node = node.kind === 'seq' ? node.items[part] : undefined;
    else node = node.kind === 'map' ? node.entries.get(part) : undefined;
  }
  return node;
}

/**
 * Where to point for a path: the value when it exists; otherwise the key of the deepest map on the way
 * (the map that should have held it), or the start of the file.
 */
export function positionOf(root: TreeNode | undefined, path: readonly PathPart[]): Position {
  const node = nodeAt(root, path);
  if (node) return node.pos;
  for (let depth = path.length - 1; depth >= 0; depth--) {
    const parent = nodeAt(root, path.slice(0, depth));
    if (parent) return parent.keyPos ?? parent.pos ?? START;
  }
  return START;
}

/** Position of the key itself (for "unknown field", "duplicate node" ...), falling back to the value. */
export function keyPositionOf(root: TreeNode | undefined, path: readonly PathPart[]): Position {
  const node = nodeAt(root, path);
  return node?.keyPos ?? node?.pos ?? positionOf(root, path);
}
