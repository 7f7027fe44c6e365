/**
 * Inventory changes that `debug` suggests, checked before they are suggested: the change is applied to the
 * inventory's own text (comments and layout kept, with the `yaml` document API) and the result goes through the
 * very validation `meshctl validate` and `up` run (../inventory/load.ts checkInventoryText). A change the
 * validation rejects is never offered as a fix; the caller says why and suggests a fix outside the inventory.
 */
import { isMap, parseDocument } from 'yaml';
import { checkInventoryText } from '../inventory/load.js';
import type { Inventory } from '../inventory/types.js';
import { formatProblem } from '../schema/problems.js';

/** One value to set in the inventory: `path` as YAML keys from the root (e.g. ['mesh', 'mtu']). */
export interface InventoryPatch {
  path: string[];
  value: number | string;
}

/**
 * The outcome of a patch: the validated inventory (and its text), or the validation's own one-line problems
 * (`file:line:col: field: message`) when it rejects the patched file or the patch cannot be applied.
 */
export type PatchCheck = { ok: true; inventory: Inventory; text: string } | { ok: false; problems: string[] };

/** `mesh.mtu: 1328`: a patch as the operator would write it. */
export const describePatch = (patch: InventoryPatch): string => `${patch.path.join('.')}: ${patch.value}`;

/**
 * Applies `patches` to the inventory text `text` (from file `file`, used in messages) and validates the result.
 * Pure. A path through a missing, aliased or non-map node is refused rather than guessed at.
 */
export function checkInventoryPatch(text: string, file: string, patches: InventoryPatch[]): PatchCheck {
  const doc = parseDocument(text, { keepSourceTokens: false });
  if (doc.errors.length) return { ok: false, problems: doc.errors.map((e) => `${file}: ${e.message}`) };
  for (const patch of patches) {
    const parent = patch.path.length > 1 ? doc.getIn(patch.path.slice(0, -1), true) : doc.contents;
    if (!isMap(parent)) return { ok: false, problems: [`${file}: ${patch.path.slice(0, -1).join('.')} is not a plain map to change`] };
    parent.set(patch.path[patch.path.length - 1]!, patch.value);
  }
  const patched = doc.toString();
  const result = checkInventoryText(patched, file);
  if (!result.ok) return { ok: false, problems: result.problems.map((p) => formatProblem(file, p)) };
  return { ok: true, inventory: result.inventory, text: patched };
}
