/**
 * A probe script whose sections run at the same time on the node. verify's checklist is ~20 small commands
 * (`wg show`, `ss`, `systemctl is-active`, `iptables-save`, one `ip route get` per peer ...); run one after another
 * each costs its exec (35-100 ms on a loaded lab node), 1.5-2.5 s in all, more than the ping + path-MTU round.
 * Here they run in a few lanes (background jobs), each lane writing its sections to its own file in a private
 * temporary directory (`mktemp -d`, removed at the end); the files are printed in lane order once every lane has
 * finished, so the output is the same sections (../facts/sections.ts) as the sequential script, only in lane order,
 * and sections are read by name. Files, not pipes: a section can be larger than PIPE_BUF (a ruleset, a config), so
 * two jobs writing to the same pipe could interleave their bytes.
 *
 * Where `mktemp -d` fails (a read-only or full /tmp), the same lanes run one after another: the same output, the
 * old speed. Each lane is a shell function, so the script holds every section once.
 */
import { PATH_PRELUDE, sectionScript } from '../facts/sections.js';

/** One section of a probe: its name (a plain token) and its POSIX sh command. */
export interface SectionSpec {
  name: string;
  command: string;
}

/** Lanes at most: a few background jobs per node are enough to overlap the commands' exec and wait times. */
export const MAX_LANES = 6;

/**
 * Deals `units` (each a group of sections that stay together, in order) into at most `maxLanes` lanes, round
 * robin, keeping each lane's units in their given order. Pure. Returns no empty lane. Throws when maxLanes < 1.
 */
export function dealLanes<T>(units: ReadonlyArray<ReadonlyArray<T>>, maxLanes: number = MAX_LANES): T[][] {
  if (!Number.isInteger(maxLanes) || maxLanes < 1) throw new Error(`maxLanes must be a positive integer, got ${maxLanes}`);
  const lanes: T[][] = Array.from({ length: Math.min(maxLanes, units.length) }, () => []);
  units.forEach((unit, i) => {
    lanes[i % lanes.length]!.push(...unit);
  });
  return lanes.filter((lane) => lane.length > 0);
}

/**
 * The script: PATH_PRELUDE, the lanes (concurrently when a temporary directory can be made, else one after
 * another), then the `endSection` section, which proves the script ran to its end. Section names must be plain
 * tokens (sectionScript throws otherwise).
 */
export function concurrentSectionsScript(lanes: ReadonlyArray<ReadonlyArray<SectionSpec>>, endSection: string): string {
  const fn = (i: number) => `meshctl_lane${i}`;
  const defs = lanes.map((lane, i) => `${fn(i)}() {\n${lane.map((s) => sectionScript(s.name, s.command)).join('\n')}\n}`);
  const files = lanes.map((_, i) => `"$meshctl_d/${i}"`).join(' ');
  const background = lanes.map((_, i) => `${fn(i)} >"$meshctl_d/${i}" 2>&1 &`).join('\n');
  const sequential = lanes.map((_, i) => fn(i)).join('\n');
  return [
    PATH_PRELUDE,
    ...defs,
    'meshctl_d=$(mktemp -d 2>/dev/null) || meshctl_d=',
    'if [ -n "$meshctl_d" ] && [ -d "$meshctl_d" ]; then',
    // the directory goes also when the run is stopped (the remote `timeout` sends TERM)
    `trap 'rm -rf "$meshctl_d"' EXIT`,
    `trap 'exit 143' TERM INT HUP`,
    background,
    'wait',
    `cat ${files}`,
    'rm -rf "$meshctl_d"',
    'else',
    sequential || 'true',
    'fi',
    sectionScript(endSection, 'true'),
  ].join('\n');
}
