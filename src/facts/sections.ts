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
/** What both markers start with: the stream looks for it, not at every line. */
const MARK = '@@meshctl ';
const NEWLINE = 10;
/** The end marker's rc, after the section's name. */
const RC = ' rc=';
/** `text` holds `word` at `at`. */
function follows(text: string, at: number, word: string): boolean {
  if (at + word.length > text.length) return false;
  for (let i = 0; i < word.length; i++) if (text.charCodeAt(at + i) !== word.charCodeAt(i)) return false;
  return true;
}
/** A section name an end marker can carry (the end marker's `(\S+)`). */
const TOKEN = /^\S+$/;

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

/**
 * splitSections as the output arrives (issue 10: verify's outputs are ~0.4 MB a node at 1,000 nodes, and held whole
 * until their end, every node's at once on a real farm, then cut): `write` each piece of stdout in order (pieces may
 * split anywhere, mid-line or mid-marker), `end` once it is all in; `onSection` gets each section as soon as its end
 * marker line has arrived (an unfinished one at `end`, without rc), the same sections, in the same order, with the
 * same names, bodies and rcs as splitSections on the whole output (a Map built from them by `set` is splitSections'
 * Map). Held between pieces: the unfinished last line and the current section's body so far, nothing else.
 * Carriage returns: splitSections reads output that holds one line by line (\r\n endings dropped), which changes only
 * the bodies that hold one; so a body here drops the \r of its \r\n endings, and one without is as it came.
 * A body is a slice of the pieces (a string of 13 characters or more cut from another keeps it alive in V8): a caller
 * that keeps a body long copies it.
 */
export class SectionStream {
  /** the unfinished last line, when the last piece did not end with a newline */
  private line = '';
  /** the open section's name, and its body's text so far (whole lines, each with its newline) */
  private name: string | undefined;
  private body = '';
  /** the open section's name is a plain token (no white space, not empty): its end marker may be read the quick way */
  private token = false;
  private ended = false;
  /** characters written so far */
  private written = 0;

  constructor(private readonly onSection: (section: Section) => void) {}

  /** Reads the next piece of output; throws after end(). */
  write(piece: string): void {
    if (this.ended) throw new Error('SectionStream: write after end');
    if (piece === '') return;
    this.written += piece.length;
    let from = 0;
    if (this.line !== '') {
      const nl = piece.indexOf('\n');
      // still no line end: the line grows (a cons string, nothing copied)
      if (nl < 0) {
        this.line += piece;
        return;
      }
      const first = this.line + piece.slice(0, nl + 1);
      this.line = '';
      this.scan(first, 0, false);
      from = nl + 1;
    }
    this.scan(piece, from, false);
  }

  /** The output is all in: its last line (even without a newline) is read, and an open section handed on without rc. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const last = this.line;
    this.line = '';
    this.scan(last, 0, true);
    this.close(undefined);
  }

  /**
   * end() for a run whose pieces were written as they came (RunOptions.onStdout): `stdout` is the run's result's, empty
   * when the transport kept none of it (RunOptions.discardStdout), else the whole output (a transport or fake that
   * kept it, or gave no pieces at all), of which the part past what was written is read first.
   */
  endWith(stdout: string): void {
    if (stdout.length > this.written) this.write(stdout.slice(this.written));
    this.end();
  }

  /**
   * Reads the lines of `text` from `from` (a line's start): all of them when `final`, else only those that end with a
   * newline (the rest is kept in `line`). Only marker lines are looked at one by one: the scan jumps from one
   * `@@meshctl ` at a line's start to the next (String indexOf over the piece), and the lines between, a body's, are
   * handed on as one slice, with no per-line work (issue 10: ~320 ns a line before, every line of every node's output).
   * A `@@meshctl ` inside a line, or a line that starts with it but is no marker of the open section, is body.
   */
  private scan(text: string, from: number, final: boolean): void {
    let bodyFrom = from;
    let at = from;
    for (;;) {
      // the next line at or after `at` that starts with the markers' common head
      let m = text.indexOf(MARK, at);
      while (m > at && text.charCodeAt(m - 1) !== NEWLINE) m = text.indexOf(MARK, m + 1);
      // what follows the head: `begin ` or `end ` (read a character at a time: String startsWith costs ~20 ns a call)
      if (m < 0) {
        // no marker left: every whole line is body; the unfinished last line waits for the next piece (or, at the
        // end, is read as the last line)
        at = final ? text.length : text.lastIndexOf('\n') + 1 || at;
        if (at < from) at = from;
        break;
      }
      const nl = text.indexOf('\n', m);
      if (nl < 0 && !final) {
        // the marker's line is not all in yet
        at = m;
        break;
      }
      const lineEnd = nl < 0 ? text.length : nl;
      if (follows(text, m + MARK.length, 'begin ')) {
        if (this.name !== undefined) this.add(text, bodyFrom, m);
        this.close(undefined);
        this.name = text.slice(m + BEGIN.length, lineEnd).trim();
        this.token = TOKEN.test(this.name);
        bodyFrom = lineEnd + 1;
      } else if (this.name !== undefined && follows(text, m + MARK.length, 'end ')) {
        const rc = this.endOf(text, m + END.length, lineEnd);
        if (rc !== undefined) {
          this.add(text, bodyFrom, m);
          this.close(rc);
        }
      }
      if (nl < 0) {
        at = text.length;
        break;
      }
      at = nl + 1;
    }
    if (this.name !== undefined && at > bodyFrom) this.add(text, bodyFrom, Math.min(at, text.length));
    if (!final) this.line = text.slice(at);
  }

  /** The open section's body grows by text[from, to) (a slice; a cons string when the body spans pieces). */
  private add(text: string, from: number, to: number): void {
    if (to <= from) return;
    const part = text.slice(from, to);
    this.body = this.body === '' ? part : this.body + part;
  }

  /**
   * The rc of an end marker of the open section whose rest (after `@@meshctl end `) is text[from, lineEnd), or
   * undefined when it is not one: the rest, trimmed, must be `NAME rc=DIGITS`. The usual line (`NAME rc=0`, nothing
   * around it) is read in place; any other goes through the regular expression.
   */
  private endOf(text: string, from: number, lineEnd: number): number | undefined {
    const name = this.name!;
    const digits = from + name.length + RC.length;
    if (this.token && follows(text, from, name) && follows(text, from + name.length, RC)) {
      let rc = 0;
      let at = digits;
      for (; at < lineEnd; at++) {
        const c = text.charCodeAt(at) - 48;
        if (c < 0 || c > 9) break;
        rc = rc * 10 + c;
      }
      // rc=N exactly to the line's end (15 digits at most: a Number's exact integers, as the regular expression's)
      if (at === lineEnd && at > digits && at - digits <= 15) return rc;
    }
    const end = /^(\S+) rc=(\d+)$/.exec(text.slice(from, lineEnd).trim());
    return end && end[1] === name ? Number(end[2]) : undefined;
  }

  private close(rc: number | undefined): void {
    if (this.name === undefined) return;
    let body = this.body;
    if (body.includes('\r')) body = body.replace(/\r\n/g, '\n');
    body = body.trimEnd();
    const section: Section = rc !== undefined ? { name: this.name, body, rc } : { name: this.name, body };
    this.name = undefined;
    this.body = '';
    this.onSection(section);
  }
}

/**
 * `s` as a string of its own when it may have been cut from a longer one: V8 keeps a string of 13 characters or more
 * cut from another as a slice that keeps the other alive (a section's name or body: the piece of output it came in);
 * shorter ones it copies itself.
 */
export const ownText = (s: string): string => (s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8'));

/** A section whose name and body are strings of their own (ownText): it keeps no piece of the output alive. */
export const ownSection = (s: Section): Section => ({
  name: ownText(s.name),
  body: ownText(s.body),
  ...(s.rc !== undefined ? { rc: s.rc } : {}),
});

/** splitSections through a SectionStream fed `pieces` in order (for tests and callers with output in pieces). */
export function splitSectionsOf(pieces: Iterable<string>): Map<string, Section> {
  const sections = new Map<string, Section>();
  const stream = new SectionStream((s) => sections.set(s.name, s));
  for (const piece of pieces) stream.write(piece);
  stream.end();
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
