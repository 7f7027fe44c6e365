/** Finds the Debian mirror the host already uses (never a hard-coded host): pure parsing plus one reader. */
import { existsSync, readFileSync } from 'node:fs';

/** deb822 (`debian.sources`): the first URI of a `deb` stanza whose Suites include `suite`. */
export function mirrorFromDeb822(text: string, suite = 'bookworm'): string | undefined {
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split('\n')) {
      const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (match && !line.startsWith('#')) fields.set(match[1]!.toLowerCase(), match[2]!.trim());
    }
    if ((fields.get('enabled') ?? 'yes') === 'no') continue;
    if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) continue;
    if (!(fields.get('suites') ?? '').split(/\s+/).includes(suite)) continue;
    const uri = (fields.get('uris') ?? '').split(/\s+/).find(Boolean);
    if (uri) return uri;
  }
  return undefined;
}

/** One-line format (`sources.list`): `deb [options] URI SUITE COMPONENTS`. */
export function mirrorFromSourcesList(text: string, suite = 'bookworm'): string | undefined {
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (match && match[2] === suite) return match[1];
  }
  return undefined;
}

export function hostMirror(): string | undefined {
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  if (existsSync(deb822)) {
    const found = mirrorFromDeb822(readFileSync(deb822, 'utf8'));
    if (found) return found;
  }
  if (existsSync('/etc/apt/sources.list')) return mirrorFromSourcesList(readFileSync('/etc/apt/sources.list', 'utf8'));
  return undefined;
}
