/**
 * The published JSON Schema (draft 2020-12) of the inventory, derived from the same spec the loader checks
 * against, so the two cannot drift. `scripts/gen-schema.ts` writes it to schema/inventory.schema.json; a unit
 * test fails when the committed file is out of date. The schema checks structure; cross-field rules (duplicates,
 * overlaps, reachability) are only checked by `meshctl validate`.
 */
import { inventorySpec, type Spec } from './spec.js';

function toJsonSchema(spec: Spec): Record<string, unknown> {
  const common: Record<string, unknown> = { description: spec.description };
  if (spec.default !== undefined) common.default = spec.default;
  if (spec.examples) common.examples = spec.examples;
  switch (spec.type) {
    case 'object': {
      const required = Object.entries(spec.fields)
        .filter(([, field]) => field.required)
        .map(([name]) => name);
      return {
        type: 'object',
        ...common,
        properties: Object.fromEntries(Object.entries(spec.fields).map(([name, field]) => [name, toJsonSchema(field)])),
        ...(required.length > 0 ? { required } : {}),
        additionalProperties: false,
        ...(spec.jsonSchema ?? {}),
      };
    }
    case 'record':
      return {
        type: 'object',
        ...common,
        propertyNames: { description: `a ${spec.keyWhat}`, ...spec.keyFormat.jsonSchema },
        additionalProperties: toJsonSchema(spec.value),
      };
    case 'string':
      return { type: 'string', ...common, ...spec.format.jsonSchema };
    case 'integer':
      return { type: 'integer', ...common, minimum: spec.minimum, maximum: spec.maximum };
    case 'boolean':
      return { type: 'boolean', ...common };
    case 'enum':
      return { ...common, enum: [...spec.values] };
    case 'array':
      return { type: 'array', ...common, items: toJsonSchema(spec.items) };
  }
}

export function inventoryJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'meshctl inventory',
    ...toJsonSchema(inventorySpec),
  };
}

/** The exact text of schema/inventory.schema.json. */
export const inventoryJsonSchemaText = () => `${JSON.stringify(inventoryJsonSchema(), null, 2)}\n`;
