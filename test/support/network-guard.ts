/**
 * A module for `node --import` that makes any network use (TCP/UDP socket, DNS lookup) fail loudly with exit 99,
 * so a test can prove a command contacted nothing. Unix sockets stay allowed (tsx uses them for its own IPC).
 */
export const NETWORK_GUARD = `data:text/javascript,${encodeURIComponent(`
import net from 'node:net';
import dgram from 'node:dgram';
import dns from 'node:dns';
const refuse = (what) => () => { process.stderr.write('NETWORK ATTEMPT: ' + what + '\\n'); process.exit(99); };
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const local = typeof first === 'string' || (first && typeof first === 'object' && 'path' in first);
  return local ? connect.apply(this, args) : refuse('tcp connect')(); // unix sockets (tsx's own IPC) are not the network
};
dgram.Socket.prototype.send = refuse('udp send');
dgram.Socket.prototype.bind = refuse('udp bind');
dns.lookup = refuse('dns lookup');
dns.promises.lookup = refuse('dns lookup');
`)}`;
