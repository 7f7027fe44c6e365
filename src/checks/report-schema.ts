/**
 * The shape of `meshctl verify --json` (version 3) as a Spec (src/schema/spec.ts): the executable form of
 * docs/verify-json.md, published as schema/verify-report.schema.json. Objects are closed: a field added to the
 * report must be added here (and to the doc), or test/unit/checks-json.test.ts fails.
 */
import { jsonSchemaDocument, jsonSchemaText } from '../schema/json-schema.js';
import { anyText, checkValue, type Spec } from '../schema/spec.js';
import { CHECK_IDS } from './verify.js';

/** The same spec, marked required (most report fields are always there). */
const req = (spec: Spec): Spec => ({ ...spec, required: true });
const text = (description: string): Spec => ({ type: 'string', format: anyText, description });
const flag = (description: string): Spec => ({ type: 'boolean', description });
const count = (description: string): Spec => ({ type: 'integer', minimum: 0, what: 'a count (0 or more)', description });

const checkEntrySpec: Spec = {
  type: 'object',
  description: 'One check on one node (per-peer and per-pair checks name the peer).',
  fields: {
    node: req(text('The node the check ran on (for ping and path-mtu: the pinging node).')),
    peer: text('Per-peer and per-pair checks only: the other node (a stale peer: its public key).'),
    id: req({ type: 'enum', values: CHECK_IDS, description: 'What was checked (see the table in docs/verify-json.md).' }),
    status: req({ type: 'enum', values: ['pass', 'warn', 'fail'], description: 'The verdict.' }),
    message: req(text('The verdict in words.')),
    evidence: req({ type: 'array', items: text('One raw fact.'), description: 'The raw facts behind the verdict, one per line.' }),
  },
};

const passedGroupSpec: Spec = {
  type: 'object',
  description: 'The passing checks of one per-peer or per-pair kind on one node, counted instead of listed in checks.',
  fields: {
    node: req(text('The node the checks ran on (for ping, path-mtu and cold-start: the sending node).')),
    id: req({ type: 'enum', values: CHECK_IDS, description: 'What was checked (see the table in docs/verify-json.md).' }),
    peers: req(count('How many peers (pairs from this node) passed it; the others are in checks, with their evidence.')),
  },
};

const pathMtuSpec: Spec = {
  type: 'object',
  description: 'Path MTU towards the peer (absent with --no-mtu).',
  fields: {
    expected: req({ type: 'integer', what: 'a payload size in bytes', description: 'Payload size that should pass: MTU - 28.' }),
    largest: req(count('Largest ICMP payload (bytes) that passed with DF set; 0 when not even the smallest did.')),
    ok: req(flag('The expected payload passed.')),
    tries: req({
      type: 'array',
      description: 'Payload sizes tried, in order, and whether each passed.',
      items: {
        type: 'object',
        description: 'One try.',
        fields: {
          size: req({ type: 'integer', what: 'a payload size in bytes', description: 'ICMP payload in bytes.' }),
          ok: req(flag('An echo reply came back.')),
        },
      },
    }),
    skipped: flag('Only when the peer answered no ping at all (not probed).'),
  },
};

const cellSpec: Spec = {
  type: 'object',
  description: 'The pings from one node to another.',
  fields: {
    ok: req(
      flag(
        'Every echo request sent was answered before the deadline, and at least one was sent (on a loaded node ping may send fewer than `asked`; each answered counts).',
      ),
    ),
    asked: count("Echo requests asked for (ping -c); `transmitted` is below it when ping's deadline (-w) came first."),
    loss: req({
      type: 'number',
      minimum: 0,
      maximum: 100,
      what: 'a percentage from 0 to 100',
      description: 'Echo requests lost, in percent.',
    }),
    transmitted: req(count('Echo requests sent.')),
    received: req(count('Echo replies received.')),
    rttMs: { type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description: 'Average round trip in ms, when any reply came.' },
    error: text("Why there is no result (node not connected, ping's own error message)."),
    pmtu: pathMtuSpec,
  },
};

const rtt = (description: string): Spec => ({ type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description });

const matrixSpec: Spec = {
  type: 'object',
  nullable: true,
  description:
    'The ping matrix over the overlay; null when nothing could be pinged. Version 3: one RTT array per row; cells lists only the cells that did not plainly pass (every cell with --all-checks).',
  fields: {
    nodes: req({ type: 'array', items: text('A node name.'), description: 'Row and column order.' }),
    rttMs: req({
      type: 'array',
      description: 'rttMs[i][j]: the average ping RTT from nodes[i] to nodes[j] in ms; null on the diagonal and where no reply came.',
      items: {
        type: 'array',
        description: 'One pinging node (nodes[i]): an entry per node, in nodes order.',
        items: { ...rtt('The average RTT in ms, or null.'), nullable: true },
      },
    }),
    cellsListed: req({
      type: 'enum',
      values: ['not-passing', 'all'],
      description:
        'not-passing: cells lists only the cells that did not plainly pass (a pair not listed answered every echo request asked for, with no error, and passed the path-MTU probe when made); all (--all-checks): every cell.',
    }),
    cells: req({
      type: 'record',
      keyWhat: 'node name',
      keyFormat: anyText,
      shape: '"ms-1": { "wk-1": { ... } }',
      description: 'cells[from][to], as cellsListed says; no diagonal; a row with no cell listed is left out.',
      value: {
        type: 'record',
        keyWhat: 'node name',
        keyFormat: anyText,
        shape: '"wk-1": { "ok": true, ... }',
        description: 'The cells of one pinging node, by pinged node.',
        value: cellSpec,
      },
    }),
  },
};

const pathSpec: Spec = {
  type: 'object',
  description: "One pair's path, as planned from the inventory (relays: README), and what the ping matrix measured on it.",
  fields: {
    a: req(text('The node listed first in the inventory.')),
    b: req(text('The other node.')),
    kind: req({
      type: 'enum',
      values: ['direct', 'relayed', 'none'],
      description: 'direct: one side dials the other; relayed: both go through a public node (via); none: no path.',
    }),
    via: text('Relayed pairs only: the relay node.'),
    why: req(
      text(
        'Why the pair takes this path, in words (e.g. "b-1 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-1").',
      ),
    ),
    rttMs: rtt('Average ping round trip over both directions (through the relay for a relayed pair), when any reply came.'),
    legsRttMs: {
      type: 'array',
      items: rtt('One leg, both directions averaged.'),
      description: 'Relayed pairs only: round trips a <-> via and via <-> b from the same ping matrix, when both were measured.',
    },
    direct: text('Relayed pairs that also have a direct path (relay: always) only: that the direct RTT is not measured, and why.'),
  },
};

/** The whole `meshctl verify --json` report, version 3. */
export const verifyReportSpec: Spec = {
  type: 'object',
  description:
    'The report of `meshctl verify --json` (version 3). New fields may be added in version 3; a change of meaning bumps version.',
  fields: {
    version: req({
      type: 'enum',
      values: [3],
      description:
        'Format version. 2: passing per-peer and per-pair checks are counted in passed, listed in checks only with --all-checks. 3: matrix holds an RTT array per row and only the cells that did not plainly pass, paths only the pairs that are not direct (both in full with --all-checks).',
    }),
    inventory: req(text('The inventory file, as given.')),
    ok: req(flag('No check failed and every node was reached (warnings allowed unless --strict).')),
    exitCode: req({
      type: 'enum',
      values: [0, 1, 3],
      description: '0 ok, 1 a check failed (or warned with --strict), 3 a node could not be connected.',
    }),
    summary: req({
      type: 'object',
      description: 'How many checks passed, warned and failed (the ones counted in passed included).',
      fields: { pass: req(count('Checks that passed.')), warn: req(count('Checks that warned.')), fail: req(count('Checks that failed.')) },
    }),
    durationMs: req({ type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description: 'How long verify took, in ms.' }),
    nodes: req({
      type: 'array',
      description: 'Every node of the inventory and whether meshctl could log in.',
      items: {
        type: 'object',
        description: 'One node.',
        fields: {
          name: req(text('Node name.')),
          site: req(text('Site name.')),
          overlayIp: req(text('Overlay address.')),
          connected: req(flag('meshctl logged in.')),
          error: text('Unreachable nodes only: why.'),
        },
      },
    }),
    checks: req({
      type: 'array',
      items: checkEntrySpec,
      description:
        'Every node check, and every per-peer and per-pair check that warns or fails, with its evidence, in node order (with --all-checks: every check).',
    }),
    passed: req({
      type: 'array',
      items: passedGroupSpec,
      description: 'The passing per-peer and per-pair checks not listed in checks, counted per node and id (empty with --all-checks).',
    }),
    matrix: req(matrixSpec),
    timings: {
      type: 'object',
      description: 'Where the time went, in ms.',
      fields: {
        connectMs: req({ type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description: 'SSH logins to every node, at once.' }),
        checklistMs: req({ type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description: 'The read-only checklist round.' }),
        preMs: {
          type: 'number',
          minimum: 0,
          what: 'milliseconds (0 or more)',
          description: "The pre script on every node (the cold-start probe's counters before; part of coldStartMs).",
        },
        coldStartMs: { type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description: 'The cold-start probe.' },
        coldStartRoundTrips: count('Round trips of the cold-start probe after the pre script: 1 on a healthy mesh.'),
        pingMs: req({ type: 'number', minimum: 0, what: 'milliseconds (0 or more)', description: 'The ping round, path MTU included.' }),
        firstContactMs: {
          type: 'number',
          minimum: 0,
          what: 'milliseconds (0 or more)',
          description: 'The first-contact round before the pings (part of pingMs), only when a pair had no fresh session.',
        },
        collectMs: {
          type: 'number',
          minimum: 0,
          what: 'milliseconds (0 or more)',
          description: 'Checklist, cold-start probe and ping round together: they overlap (the checklist runs beside the other two).',
        },
      },
    },
    channels: {
      type: 'record',
      keyWhat: 'node name',
      keyFormat: anyText,
      shape: '"ms-1": 3',
      description: 'Per node: SSH session channels verify opened on its one connection.',
      value: count('Channels opened.'),
    },
    paths: req({
      type: 'array',
      items: pathSpec,
      description:
        'The pairs whose path is not direct (relayed via a public node, or none), in inventory order; with --all-checks every pair. A pair not listed is direct.',
    }),
    pathCounts: req({
      type: 'object',
      description: 'How many pairs have each kind of path (all pairs, listed in paths or not).',
      fields: {
        direct: req(count('Pairs where one side dials the other.')),
        relayed: req(count('Pairs relayed through a public node.')),
        none: req(count('Pairs with no path.')),
      },
    }),
  },
};

/** Problems of a would-be report, one `field.path: message` line each; none when it matches the documented shape. */
export const checkVerifyReport = (report: unknown): string[] => checkValue(verifyReportSpec, report);

/** The published JSON Schema (schema/verify-report.schema.json). */
export const verifyReportJsonSchema = (): Record<string, unknown> => jsonSchemaDocument('meshctl verify --json report', verifyReportSpec);

/** The exact text of schema/verify-report.schema.json. */
export const verifyReportJsonSchemaText = () => jsonSchemaText(verifyReportJsonSchema());
