#!/usr/bin/env bash
# A private, durable, tuned Postfix instance for side-by-side benchmarks on loopback.
#
#   benches/peers/postfix.sh setup    install Postfix from Debian packages if missing, write the
#                                     instance's configuration and queue under $PEER_DIR/postfix
#   benches/peers/postfix.sh start    start it (smtpd on 127.0.0.1:$PF_PORT, everything relayed
#                                     to [127.0.0.1]:$SINK_PORT)
#   benches/peers/postfix.sh stop     stop it
#   benches/peers/postfix.sh pid      print its master's PID
#
# The system's own Postfix (/etc/postfix, /var/spool/postfix) is never configured, started or
# stopped: the package is installed with "No configuration", and every postfix command here
# names the instance's own configuration directory (postfix -c). Its queue must be on a real
# disk (Postfix fsyncs every queued message; on tmpfs that would be free).
#
# Environment: PEER_DIR (default /var/tmp/mta-peers), PF_PORT (2625), SINK_PORT (2626),
# PF_PROC_LIMIT (300), PF_SMTP_CONC (50: connections to the sink), PF_MAX_USE (100).
set -euo pipefail

PEER_DIR=${PEER_DIR:-/var/tmp/mta-peers}
PF_BASE=$PEER_DIR/postfix
PF_ETC=$PF_BASE/etc
PF_PORT=${PF_PORT:-2625}
SINK_PORT=${SINK_PORT:-2626}
PF_PROC_LIMIT=${PF_PROC_LIMIT:-300}
PF_SMTP_CONC=${PF_SMTP_CONC:-50}
PF_MAX_USE=${PF_MAX_USE:-100}

log() { echo "[postfix.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }

install_postfix() {
  command -v postfix >/dev/null && command -v smtp-source >/dev/null && return 0
  [[ $(id -u) == 0 ]] || die "Postfix is not installed; run once as root (apt-get install postfix)"
  log "installing the Debian postfix package (with no system configuration)"
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
}

setup() {
  install_postfix
  mkdir -p "$PF_ETC" "$PF_BASE/spool" "$PF_BASE/data"
  local fs; fs=$(stat -f -c %T "$PF_BASE")
  [[ $fs == tmpfs || $fs == ramfs ]] && die "$PF_BASE is on $fs: set PEER_DIR to a directory on a disk"
  cat >"$PF_ETC/main.cf" <<CF
# Written by benches/peers/postfix.sh: a relay on 127.0.0.1:$PF_PORT to [127.0.0.1]:$SINK_PORT.
compatibility_level = 3.6
queue_directory = $PF_BASE/spool
data_directory = $PF_BASE/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $PF_BASE/maillog
myhostname = relay.peer.test
mydomain = peer.test
myorigin = \$myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
local_recipient_maps =
local_transport = error:local delivery is off in this instance
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
# Tuned for throughput: enough processes, no inbound flow delay, no per-client limit.
default_process_limit = $PF_PROC_LIMIT
smtp_destination_concurrency_limit = $PF_SMTP_CONC
in_flow_delay = 0s
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
max_use = $PF_MAX_USE
biff = no
append_dot_mydomain = no
smtputf8_enable = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
CF
  cat >"$PF_ETC/master.cf" <<CF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
  [[ -f /etc/postfix/dynamicmaps.cf ]] && cp -f /etc/postfix/dynamicmaps.cf "$PF_ETC/"
  [[ -d /etc/postfix/dynamicmaps.cf.d ]] && cp -rf /etc/postfix/dynamicmaps.cf.d "$PF_ETC/"
  touch "$PF_BASE/maillog"
  chown postfix:postfix "$PF_BASE/data" "$PF_BASE/maillog"
  postfix -c "$PF_ETC" set-permissions >/dev/null 2>&1 || true
  postfix -c "$PF_ETC" check
  log "instance ready in $PF_BASE (smtpd 127.0.0.1:$PF_PORT -> [127.0.0.1]:$SINK_PORT)"
}

case ${1:-} in
  setup) setup ;;
  start)
    [[ -f $PF_ETC/main.cf ]] || setup
    postfix -c "$PF_ETC" status >/dev/null 2>&1 && postfix -c "$PF_ETC" stop >/dev/null 2>&1
    postsuper -c "$PF_ETC" -d ALL >/dev/null 2>&1 || true
    postfix -c "$PF_ETC" start >/dev/null 2>&1 || die "start failed: $(tail -3 "$PF_BASE/maillog")"
    ;;
  stop) postfix -c "$PF_ETC" stop >/dev/null 2>&1 || true ;;
  pid) tr -d ' ' <"$PF_BASE/spool/pid/master.pid" ;;
  *) sed -n 2,17p "$0"; exit 2 ;;
esac
