/**
 * The published JSON Schema (draft 2020-12) of the inventory, derived from the same spec the loader checks
 * against, so the two cannot drift. `scripts/gen-schema.ts` writes it to schema/inventory.schema.json; a unit
 * test fails when the committed file is out of date. The schema checks structure; cross-field rules (duplicates,
 * overlaps, reachability) are only checked by `meshctl validate`.
 */
import { jsonSchemaDocument, jsonSchemaText } from '../schema/json-schema.js';
import { inventorySpec } from './spec.js';

export const inventoryJsonSchema = (): Record<string, unknown> => jsonSchemaDocument('meshctl inventory', inventorySpec);

/** The exact text of schema/inventory.schema.json. */
export const inventoryJsonSchemaText = () => jsonSchemaText(inventoryJsonSchema());
