/**
 * Types for the two parts of ssh2 that meshctl loads by path (src/transport/ssh.ts): its package entry also loads its
 * SSH server, key generator and HTTP agents, which a client never uses (issue 10: less to load before the first login).
 * Each is the same value the package entry exports under that name.
 */
declare module 'ssh2/lib/client.js' {
  import type { Client } from 'ssh2';
  const client: typeof Client;
  export default client;
}

declare module 'ssh2/lib/protocol/keyParser.js' {
  import type { utils } from 'ssh2';
  const keyParser: { parseKey: typeof utils.parseKey };
  export default keyParser;
}
