/**
 * The wire format of every read-only probe: one POSIX sh script per round trip whose output is cut into named
 * sections by marker lines (`@@meshctl begin NAME` ... `@@meshctl end NAME rc=N`), each with the exit status of its
 * command. A fact is read by its name, never by its position, so a command that prints nothing yields an empty
 * value instead of shifting every later value by one line.
 */

export interface Section {
  name: string;
  /** stdout and stderr of the section's command, trailing white space removed */
  body: string;
  /** exit status of the command; undefined when the end marker never came (script cut short) */
  rc?: number;
}

const BEGIN = '@@meshctl begin ';
const END = '@@meshctl end ';

/** The begin marker line of section NAME (the ping script writes its markers from background jobs). */
export const beginMarker = (name: string) => `${BEGIN}${name}`;
/** The end marker of section NAME without its rc (the ping script appends it). */
export const endMarker = (name: string) => `${END}${name}`;

/** Every probe starts with it: a known locale and a PATH that has the sbin tools, whatever the login shell set. */
export const PATH_PRELUDE = 'export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * One section of a combined script. `name` must be a plain token (letters, digits, . : - _); it is checked
 * because it is written into the script unquoted. Throws on any other name.
 */
export function sectionScript(name: string, command: string): string {
  if (!/^[\w.:-]+$/.test(name)) throw new Error(`bad section name ${name}`);
  // The leading newline of the end marker guards against commands whose output does not end with one.
  return `echo '${BEGIN}${name}'\n{ ${command}\n} 2>&1\nprintf '\\n${END}${name} rc=%s\\n' "$?"`;
}

/**
 * Cuts probe stdout into its sections, by name. A section whose end marker is missing has no rc. A body is one slice
 * of the output between its marker lines (no array of every line, joined again: issue 10, verify reads N outputs of
 * O(N) sections each); output with carriage returns takes the line-by-line way, which drops them (\r\n endings).
 */
export function splitSections(stdout: string): Map<string, Section> {
  if (stdout.includes('\r')) return splitSectionsByLine(stdout);
  const sections = new Map<string, Section>();
  let name: string | undefined;
  let bodyStart = 0;
  const close = (bodyEnd: number, rc?: number) => {
    if (name === undefined) return;
    // the body's lines without the newline before the marker line (an empty body when there is none)
    const body = bodyEnd > bodyStart ? stdout.slice(bodyStart, bodyEnd).trimEnd() : '';
    sections.set(name, { name, body, ...(rc !== undefined ? { rc } : {}) });
    name = undefined;
  };
  for (let at = 0; at <= stdout.length; ) {
    const nl = stdout.indexOf('\n', at);
    const lineEnd = nl < 0 ? stdout.length : nl;
    if (stdout.startsWith(BEGIN, at)) {
      close(at - 1);
      name = stdout.slice(at + BEGIN.length, lineEnd).trim();
      bodyStart = lineEnd + 1;
    } else if (name !== undefined && stdout.startsWith(END, at)) {
      const end = /^(\S+) rc=(\d+)$/.exec(stdout.slice(at + END.length, lineEnd).trim());
      if (end && end[1] === name) close(at - 1, Number(end[2]));
    }
    if (nl < 0) break;
    at = nl + 1;
  }
  close(stdout.length);
  return sections;
}

/** splitSections line by line (the lines split at \r\n or \n): the way for output with carriage returns. */
export function splitSectionsByLine(stdout: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  let current: { name: string; lines: string[] } | undefined;
  const close = (rc?: number) => {
    if (!current) return;
    sections.set(current.name, { name: current.name, body: current.lines.join('\n').trimEnd(), ...(rc !== undefined ? { rc } : {}) });
    current = undefined;
  };
  for (const line of stdout.split(/\r?\n/)) {
    if (line.startsWith(BEGIN)) {
      close();
      current = { name: line.slice(BEGIN.length).trim(), lines: [] };
      continue;
    }
    const end = line.startsWith(END) ? /^(\S+) rc=(\d+)$/.exec(line.slice(END.length).trim()) : null;
    if (end && current && end[1] === current.name) {
      close(Number(end[2]));
      continue;
    }
    current?.lines.push(line);
  }
  close();
  return sections;
}

/**
 * `key=value` lines of a section body (the value runs to the end of the line, may be empty). Lines without `=`
 * are ignored; a repeated key keeps its last value. Facts that have several values print one named line each, so
 * a value that is empty stays empty instead of moving the next one up.
 */
export function keyValues(body: string | undefined): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of (body ?? '').split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) values.set(line.slice(0, at).trim(), line.slice(at + 1).trim());
  }
  return values;
}

/** Non-empty trimmed lines of a section body. */
export const linesOf = (section: Section | undefined): string[] =>
  (section?.body ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
