/**
 * Spec (./spec.ts) -> JSON Schema draft 2020-12, so a published schema cannot drift from what meshctl checks.
 * The schema states structure; rules across fields (duplicates, overlaps, references) are only the loaders'.
 */
import type { Spec } from './spec.js';

/** The JSON Schema of one spec node (objects closed: additionalProperties false). */
export function toJsonSchema(spec: Spec): Record<string, unknown> {
  const schema = baseSchema(spec);
  if (!spec.nullable) return schema;
  if (Array.isArray(schema.enum)) return { ...schema, enum: [...schema.enum, null] };
  return { ...schema, type: [schema.type, 'null'] };
}

function baseSchema(spec: Spec): Record<string, unknown> {
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
    case 'number':
      return { type: spec.type, ...common, ...range(spec) };
    case 'boolean':
      return { type: 'boolean', ...common };
    case 'enum':
      return { ...common, enum: [...spec.values] };
    case 'array':
      return { type: 'array', ...common, items: toJsonSchema(spec.items) };
  }
}

const range = (spec: { minimum?: number; maximum?: number }) => ({
  ...(spec.minimum !== undefined ? { minimum: spec.minimum } : {}),
  ...(spec.maximum !== undefined ? { maximum: spec.maximum } : {}),
});

/** A whole published schema document: `$schema`, a title, the spec's schema; as the exact text of the file. */
export function jsonSchemaDocument(title: string, spec: Spec): Record<string, unknown> {
  return { $schema: 'https://json-schema.org/draft/2020-12/schema', title, ...toJsonSchema(spec) };
}

/** The file text of a schema document: 2-space JSON and a final newline. */
export const jsonSchemaText = (schema: Record<string, unknown>) => `${JSON.stringify(schema, null, 2)}\n`;
