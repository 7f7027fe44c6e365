# Which overlay IPs this node reaches through the simulated tunnel (run with -v me=OWN_OVERLAY, targets as args
# after "--", one verdict line "IP ok|fail" each). A pair passes when both ends are up, hold a key, and each has
# the other as a peer with the other's real public key and its /32 in AllowedIPs: what a WireGuard handshake and
# the route need. Reads other nodes' state read-only; sends nothing.
function load(dir, peers,    l, p, n) {
  n = 0
  while ((getline l < (dir "peers")) > 0) { split(l, p, "\t"); peers[p[1]] = "," p[2] ","; n++ }
  close(dir "peers"); return n
}
function readline1(f,    l) { l = ""; if ((getline l < f) <= 0) l = ""; close(f); return l }
BEGIN {
  mine = "/run/farm-node/wg/"
  up = readline1(mine "up") != ""; mykey = readline1(mine "pubkey")
  if (up) load(mine, my)
  for (i = 1; i < ARGC; i++) {
    ip = ARGV[i]; ok = 0
    name = readline1("/run/farm-index/" ip)
    if (up && mykey != "" && name != "") {
      st = "/run/farm-all/" name "/run/farm-node/wg/"
      theirkey = readline1(st "pubkey")
      if (readline1(st "up") != "" && theirkey != "" && (theirkey in my) && index(my[theirkey], "," ip "/32,")) {
        delete their; load(st, their)
        if ((mykey in their) && index(their[mykey], "," me "/32,")) ok = 1
      }
    }
    print ip, (ok ? "ok" : "fail")
  }
  exit
}
