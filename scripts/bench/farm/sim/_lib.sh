# Shared by the simulated tools of a farm node (sourced; bash). The node's state lives under /run/farm-node:
#   pkgs            installed packages, one a line
#   wg/up           the interface is up (key=value: address, mtu, port, ifindex)
#   wg/peers        its peers: public key, allowed IPs, endpoint, keepalive (tab-separated)
#   wg/byip         the peer index: per farm node (overlay-IP order) the key of the peer carrying its /32 (_mesh.pl)
#   wg/privkey      the private key the interface holds (what `wg set IFACE private-key FILE` loaded)
#   routes          IPv4 routes on the interface, one destination a line
#   units/NAME      systemd unit state: enabled=yes|no
# Other nodes' state is read (never written) under /run/farm-all/NAME/run/farm-node; overlay IP -> "name position"
# under /run/farm-index/IP, all overlay IPs in order in /run/farm-index/ips. Nothing here sends a packet: the sandbox has no network besides its own loopback.
S=/run/farm-node
[ -d "$S/units" ] || mkdir -p "$S/wg" "$S/units"
# builtins only: every process a simulated tool starts is farm time
kv() { local l; [ -r "$2" ] || return 0; while IFS= read -r l; do [ "${l%%=*}" = "$1" ] && printf '%s\n' "${l#*=}"; done < "$2"; return 0; }
self_overlay() { kv overlay "$S/self"; }
# kvv VAR KEY FILE: as kv, into a variable, without the subshell a $(kv ...) forks (every process is farm time)
kvv() { local l; printf -v "$1" '%s' ''; [ -r "$3" ] || return 0; while IFS= read -r l; do [ "${l%%=*}" = "$2" ] && printf -v "$1" '%s' "${l#*=}"; done < "$3"; return 0; }
# the public key of a private key: a stand-in for Curve25519 (sha256 of the key text), same shape as a real one
pubkey_of() { local h; h=$(printf '%s' "$1" | sha256sum | cut -c1-64); printf "$(printf '%s' "$h" | sed 's/../\\x&/g')" | base64; }
