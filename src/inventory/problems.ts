/** The problem list and its `file:line:col: field: message` lines moved to src/schema/problems.ts (shared by every format). */
export * from '../schema/problems.js';
