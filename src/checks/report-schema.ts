/**
 * The shape of `meshctl verify --json` (version 1) as a zod schema: the executable form of docs/verify-json.md.
 * Strict objects: a field added to the report must be added here and to the doc, or the test fails.
 */
import { z } from 'zod';
import { CHECK_IDS } from './verify.js';

const status = z.enum(['pass', 'warn', 'fail']);

export const checkSchema = z.strictObject({
  node: z.string(),
  peer: z.string().optional(),
  id: z.enum(CHECK_IDS),
  status,
  message: z.string(),
  evidence: z.array(z.string()),
});

export const pathMtuSchema = z.strictObject({
  expected: z.number().int(),
  largest: z.number().int().nonnegative(),
  ok: z.boolean(),
  tries: z.array(z.strictObject({ size: z.number().int(), ok: z.boolean() })),
  skipped: z.boolean().optional(),
});

export const cellSchema = z.strictObject({
  ok: z.boolean(),
  loss: z.number().min(0).max(100),
  transmitted: z.number().int().nonnegative(),
  received: z.number().int().nonnegative(),
  rttMs: z.number().nonnegative().optional(),
  error: z.string().optional(),
  pmtu: pathMtuSchema.optional(),
});

export const matrixSchema = z.strictObject({
  nodes: z.array(z.string()),
  cells: z.record(z.string(), z.record(z.string(), cellSchema)),
});

export const verifyReportSchema = z.strictObject({
  version: z.literal(1),
  inventory: z.string(),
  ok: z.boolean(),
  exitCode: z.union([z.literal(0), z.literal(1), z.literal(3)]),
  summary: z.strictObject({ pass: z.number().int(), warn: z.number().int(), fail: z.number().int() }),
  durationMs: z.number().nonnegative(),
  nodes: z.array(
    z.strictObject({ name: z.string(), site: z.string(), overlayIp: z.string(), connected: z.boolean(), error: z.string().optional() }),
  ),
  checks: z.array(checkSchema),
  matrix: matrixSchema.nullable(),
});
