#!/usr/bin/perl
# The farm's reachability, O(1) per pair (perl-base: in every Debian, and it can seek). Each node keeps, beside
# its peer list (wg/peers), an index wg/byip: one fixed-width record per farm node, in overlay-IP order
# (/run/farm-index/ips), holding the public key of the peer whose AllowedIPs carry that node's /32 (blank if
# none). "Does B have me as a peer, with my key and my /32" is then one seek into B's index, not a read of B's
# whole peer list (which made a ping round O(N^3) over the farm: 1e9 lines at 1,000 nodes).
#   _mesh.pl reindex               rebuild this node's wg/byip from wg/peers (after every change of the peers)
#   _mesh.pl reach ME_IP TARGET... one line "IP ok|fail" per target (see docs/farm.md for the rule)
#   _mesh.pl dump PUBKEY NOW       the peer lines of `wg show IFACE dump` (a handshake when the pair passes)
# Reads other nodes' state read-only (/run/farm-all/NAME/run/farm-node); sends nothing.
use strict;
use warnings;

my $S = '/run/farm-node';
my $W = 44;        # a base64 WireGuard key
my $R = $W + 1;    # the record: the key and a newline

sub line1 {
  my ($f) = @_;
  open(my $h, '<', $f) or return '';
  my $l = <$h>;
  close $h;
  return '' unless defined $l;
  chomp $l;
  return $l;
}

# overlay IP -> (node name, index in the farm), from the farm's one-file-per-IP index
sub node_of {
  my ($ip) = @_;
  my ($name, $idx) = split /\s+/, line1("/run/farm-index/$ip");
  return ($name // '', $idx // -1);
}

# the key at record IDX of a node's index (its state directory ST), '' when blank or absent
sub record {
  my ($st, $idx) = @_;
  return '' if $idx < 0;
  open(my $h, '<', "${st}wg/byip") or return '';
  seek($h, $idx * $R, 0) or return '';
  my $n = read($h, my $k, $W);
  close $h;
  return '' unless $n && $n == $W;
  $k =~ s/\s+$//;
  return $k;
}

my $mode = shift @ARGV // '';
if ($mode eq 'reindex') {
  my @ips = do { open(my $h, '<', '/run/farm-index/ips') or die "no farm index\n"; map { chomp; $_ } <$h> };
  my %idx;
  @idx{@ips} = (0 .. $#ips);
  my @rec = (' ' x $W) x @ips;
  if (open(my $p, '<', "$S/wg/peers")) {
    while (my $l = <$p>) {
      chomp $l;
      my ($key, $aips) = split /\t/, $l;
      next unless defined $aips && length($key) == $W;
      for my $a (split /,/, $aips) {
        next unless $a =~ m{^(\d+\.\d+\.\d+\.\d+)/32$} && exists $idx{$1};
        $rec[$idx{$1}] = $key;
      }
    }
    close $p;
  }
  open(my $o, '>', "$S/wg/byip.new") or die "$!\n";
  print $o map { "$_\n" } @rec;
  close $o;
  rename("$S/wg/byip.new", "$S/wg/byip") or die "$!\n";
} elsif ($mode eq 'reach') {
  my $me = shift @ARGV // '';
  my (undef, $myidx) = node_of($me);
  my $up = line1("$S/wg/up") ne '';
  my $mykey = line1("$S/wg/pubkey");
  for my $ip (@ARGV) {
    my $ok = 0;
    my ($name, $idx) = node_of($ip);
    if ($up && $mykey ne '' && $name ne '') {
      my $st = "/run/farm-all/$name/run/farm-node/";
      my $theirkey = line1("${st}wg/pubkey");
      $ok = 1 if line1("${st}wg/up") ne '' && $theirkey ne '' && record("$S/", $idx) eq $theirkey && record($st, $myidx) eq $mykey;
    }
    print "$ip ", ($ok ? 'ok' : 'fail'), "\n";
  }
} elsif ($mode eq 'dump') {
  my ($me, $now) = @ARGV;
  my (undef, $myidx) = node_of(overlay());
  open(my $p, '<', "$S/wg/peers") or exit 0;
  while (my $l = <$p>) {
    chomp $l;
    my ($key, $aips, $ep, $ka) = split /\t/, $l;
    my ($ip) = split /,/, $aips // '';
    $ip = ($ip // '') =~ s{/32$}{}r;
    my ($name) = node_of($ip);
    my $hs = 0;
    if ($name ne '') {
      my $st = "/run/farm-all/$name/run/farm-node/";
      $hs = $now - 1 if line1("${st}wg/up") ne '' && record($st, $myidx) eq $me;
    }
    print join("\t", $key, '(none)', $ep // '(none)', $aips // '', $hs, ($hs ? 1184 : 0), ($hs ? 1216 : 0), $ka // 'off'), "\n";
  }
  close $p;
} else {
  die "_mesh.pl: reindex | reach ME_IP TARGET... | dump PUBKEY NOW\n";
}

# this node's overlay IP (the farm writes it to /run/farm-node/self as overlay=IP)
sub overlay {
  open(my $h, '<', "$S/self") or return '';
  while (my $l = <$h>) { return $1 if $l =~ /^overlay=(\S+)/ }
  return '';
}
