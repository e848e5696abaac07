#!/usr/bin/env bash
# The Debian package, end to end, on this machine: build it with cargo-deb (from the debug
# build, which `cargo test` has already made), install it, check what it installed (the
# binaries, the conffiles, the user mta, the directories, the enabled unit, `systemd-analyze
# verify`, `mta check-config` as the user mta), start the MTA the way the unit does and talk
# SMTP to it, reload it, stop it, upgrade the package (a local edit of a conffile survives; a
# configuration the new binary refuses stops the restart), and purge it.
#
# Needs root and dpkg; without them it prints "test-deb: SKIP: <why>" and exits 0. It ends
# with "test-deb: PASS" (status 0) or "test-deb: FAIL: <what>" (status 1), and it always
# purges what it installed and removes the user, state (spool) and log directories it created.
#
# Where systemd is not PID 1 (containers, most CI machines) the start is emulated from the
# installed unit file: its StateDirectory= and LogsDirectory= are created (if missing) under
# /var/lib and /var/log and given to its User= with their modes, as systemd does; then its
# ExecStartPre= and ExecStart= run as its User= with its capabilities, LimitMEMLOCK=,
# LimitNOFILE= and Environment=, in a mount namespace where the whole file system is read-only
# but those directories and its ReadWritePaths= (ProtectSystem=strict), with a private /tmp
# and no /home or /root. Where systemd runs, the package's own postinst starts the real
# service and the test uses systemctl.
#
# cargo-deb is installed (pinned, once) into target/tools: nothing is cached outside the
# repository.
# shellcheck disable=SC2015,SC2016 # "a && b || fail" is meant; the sandbox expands in its shell
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
UNIT=/usr/lib/systemd/system/mta.service
CONFIG=/etc/mta/mta.toml
WORK=target/debian/test

say() { echo "test-deb: $*"; }
skip() {
    say "SKIP: $*"
    exit 0
}
fail() {
    say "FAIL: $*" >&2
    exit 1
}

command -v dpkg >/dev/null && command -v dpkg-deb >/dev/null ||
    skip "no dpkg on this machine (not Debian or Ubuntu)"
[ "$(id -u)" = 0 ] || skip "installing a package needs root (run as root on a disposable machine)"
status=$(dpkg-query -W -f='${db:Status-Status}' mta 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != not-installed ]; then
    fail "a package mta is already on this machine (status $status); this test installs and purges its own"
fi

# What existed before, so that cleanup removes only what the test made.
had_user=no had_group=no had_state=no had_log=no
getent passwd mta >/dev/null && had_user=yes
getent group mta >/dev/null && had_group=yes
[ -e /var/lib/mta ] && had_state=yes
[ -e /var/log/mta ] && had_log=yes
installed=no
mta_pid=

cleanup() {
    local rc=$?
    if [ -n "$mta_pid" ] && kill -0 "$mta_pid" 2>/dev/null; then
        kill -KILL "$mta_pid" 2>/dev/null || true
        wait "$mta_pid" 2>/dev/null || true
    fi
    if [ "$installed" = yes ]; then
        dpkg --purge mta </dev/null >"$WORK/purge-cleanup.log" 2>&1 || say "cleanup: dpkg --purge mta failed"
    fi
    [ "$had_state" = yes ] || rm -rf /var/lib/mta
    [ "$had_log" = yes ] || rm -rf /var/log/mta
    if [ "$had_user" = no ] && getent passwd mta >/dev/null; then
        userdel mta || say "cleanup: userdel mta failed"
    fi
    if [ "$had_group" = no ] && getent group mta >/dev/null; then
        groupdel mta || say "cleanup: groupdel mta failed"
    fi
    exit "$rc"
}
trap cleanup EXIT

rm -rf "$WORK"
mkdir -p "$WORK"

# --- build -----------------------------------------------------------------------------------
cargo_deb=target/tools/bin/cargo-deb
if ! "$cargo_deb" --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION\$"; then
    say "installing cargo-deb $CARGO_DEB_VERSION into target/tools"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --root target/tools \
        >"$WORK/cargo-install.log" 2>&1 || {
        cat "$WORK/cargo-install.log" >&2
        fail "cargo install cargo-deb"
    }
fi
cargo build --workspace --bins --quiet
# Releases are `cargo deb -p mta` (the release profile). The test packages the debug build
# instead (--profile dev, which cargo-deb accepts with a warning, silenced by --quiet): the
# same assets, unit and scripts, without a second, optimised build of the whole workspace.
build_deb() {
    "$cargo_deb" -p mta --no-build --profile dev --fast --quiet --deb-revision "$1" \
        -o "$WORK/mta-$1.deb" >/dev/null
}
build_deb 0test1 || fail "cargo-deb (first package)"
build_deb 0test2 || fail "cargo-deb (upgrade package)"
say "built $WORK/mta-0test1.deb and $WORK/mta-0test2.deb"

# --- install ---------------------------------------------------------------------------------
installed=yes
dpkg -i "$WORK/mta-0test1.deb" </dev/null >"$WORK/install.log" 2>&1 || {
    cat "$WORK/install.log" >&2
    fail "dpkg -i"
}
[ "$(dpkg-query -W -f='${db:Status-Status}' mta)" = installed ] || fail "mta is not installed after dpkg -i"

for conffile in /etc/mta/mta.toml /etc/mta/shaping.toml; do
    dpkg-query -W -f='${Conffiles}\n' mta | grep -q "^ $conffile " ||
        fail "$conffile is not a conffile of the package"
    [ -f "$conffile" ] || fail "$conffile was not installed"
done
cmp -s packaging/mta.toml /etc/mta/mta.toml || fail "/etc/mta/mta.toml is not packaging/mta.toml"
cmp -s config/shaping.toml /etc/mta/shaping.toml || fail "/etc/mta/shaping.toml is not config/shaping.toml"
cmp -s config/mta.service "$UNIT" || fail "$UNIT is not config/mta.service"
for f in /usr/share/doc/mta/OPERATIONS.md /usr/share/doc/mta/examples/mta.toml /usr/share/doc/mta/copyright; do
    [ -f "$f" ] || fail "$f was not installed"
done
/usr/bin/mta --version >/dev/null || fail "/usr/bin/mta --version"
/usr/bin/loadgen --help >/dev/null || fail "/usr/bin/loadgen --help"

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd mta) || fail "no user mta after install"
getent group mta >/dev/null || fail "no group mta after install"
[ "$uid" -lt 1000 ] || fail "mta is not a system user (uid $uid)"
[ "$home" = /var/lib/mta ] || fail "home of mta is $home, not /var/lib/mta"
[ "$shell" = /usr/sbin/nologin ] || fail "shell of mta is $shell"
for d in /var/lib/mta /var/log/mta; do
    [ "$(stat -c '%U:%G %a' "$d" 2>/dev/null)" = "mta:mta 750" ] ||
        fail "$d is not a directory mta:mta 750 ($(stat -c '%U:%G %a' "$d" 2>&1))"
done
[ -L /etc/systemd/system/multi-user.target.wants/mta.service ] ||
    fail "the unit is not enabled (no multi-user.target.wants/mta.service link)"
say "installed: binaries, conffiles, docs, user mta (uid $uid), directories, unit enabled"

# --- systemd-analyze verify ------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null; then
    say "systemd-analyze is missing: installing the systemd package"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd; } \
        >"$WORK/apt.log" 2>&1 || say "could not install systemd (see $WORK/apt.log)"
fi
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "$UNIT" >"$WORK/verify.log" 2>&1 || {
        cat "$WORK/verify.log" >&2
        fail "systemd-analyze verify $UNIT"
    }
    # verify also reports on other units on the machine; none of it may be about ours.
    if grep -i "mta" "$WORK/verify.log" >&2; then
        fail "systemd-analyze verify has something to say about $UNIT"
    fi
    say "systemd-analyze verify: clean"
else
    say "SKIP systemd-analyze verify: systemd-analyze is not available and could not be installed"
fi

# --- the configuration, as the unit's user ---------------------------------------------------
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
[ "$(unit_value User)" = mta ] || fail "the unit's User= is not mta"
[ "$(unit_value Group)" = mta ] || fail "the unit's Group= is not mta"
# The unit's user, capabilities (AmbientCapabilities=CAP_NET_BIND_SERVICE -> +net_bind_service)
# and Environment=, as a command prefix.
caps=$(unit_value AmbientCapabilities | tr 'A-Z ' 'a-z\n' | sed -n 's/^cap_\(.*\)/,+\1/p' | tr -d '\n')
as_mta=(setpriv --reuid=mta --regid=mta --init-groups --no-new-privs
    --inh-caps="-all$caps" --ambient-caps="-all$caps" --bounding-set="-all$caps"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
while IFS= read -r e; do as_mta+=("$e"); done < <(unit_value Environment)

"${as_mta[@]}" /usr/bin/mta check-config --config "$CONFIG" >"$WORK/check.out" 2>"$WORK/check.err" || {
    cat "$WORK/check.err" >&2
    fail "mta check-config --config $CONFIG as the user mta"
}
for want in 'path = "/var/lib/mta/spool"' 'dir = "/var/log/mta"' 'address = "127.0.0.1:25"' \
    'shaping_file = "/etc/mta/shaping.toml"'; do
    grep -qF "$want" "$WORK/check.out" || fail "the effective configuration lacks: $want"
done
say "mta check-config --config $CONFIG as mta: valid ($(grep -c warning "$WORK/check.err" || true) warnings)"

# --- start, reload, stop ---------------------------------------------------------------------
# Bash's /dev/tcp: the SMTP greeting, EHLO and QUIT on 127.0.0.1:25, every read bounded.
smtp_probe() {
    local fd line ok=no
    exec {fd}<>/dev/tcp/127.0.0.1/25 || return 1
    if read -t 5 -r line <&"$fd" && [[ $line == 220* ]]; then
        printf 'EHLO test-deb.invalid\r\n' >&"$fd"
        while read -t 5 -r line <&"$fd" && [[ $line == 250-* ]]; do :; done
        if [[ $line == 250\ * ]]; then
            printf 'QUIT\r\n' >&"$fd"
            read -t 5 -r line <&"$fd" && [[ $line == 221* ]] && ok=yes
        fi
    fi
    exec {fd}>&-
    [ $ok = yes ]
}
port25_in_use() { (exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null; }
wait_until() { # wait_until SECONDS COMMAND...: polls every 0.2 s
    local i
    for ((i = 0; i < $1 * 5; i++)); do
        "${@:2}" && return 0
        sleep 0.2
    done
    return 1
}
# LimitMEMLOCK=1G, LimitNOFILE=1048576, infinity: as ulimit's KiB and counts.
ulimit_value() {
    case "$1" in
    infinity) echo unlimited ;;
    *K) echo "${1%K}" ;;
    *M) echo $((${1%M} * 1024)) ;;
    *G) echo $((${1%G} * 1024 * 1024)) ;;
    *) echo "$1" ;;
    esac
}

if [ -d /run/systemd/system ]; then
    # systemd is PID 1: postinst started the service.
    wait_until 30 systemctl --quiet is-active mta || {
        systemctl status mta --no-pager >&2 || true
        fail "mta.service is not active after install"
    }
    wait_until 30 smtp_probe || fail "mta.service does not answer SMTP on 127.0.0.1:25"
    systemctl reload mta || fail "systemctl reload mta"
    sleep 1
    systemctl --quiet is-active mta && smtp_probe || fail "mta.service does not answer after a reload"
    say "systemd started mta.service: it answers SMTP on 127.0.0.1:25 and after a reload"
elif port25_in_use; then
    say "SKIP the start: 127.0.0.1:25 is already in use by another program on this machine"
elif ! unshare --mount --propagation private true 2>/dev/null; then
    say "SKIP the start: no mount namespace here, so ProtectSystem=strict cannot be emulated"
else
    [ "$(unit_value ProtectSystem)" = strict ] || fail "the unit's ProtectSystem= is not strict"
    pre=$(unit_value ExecStartPre)
    start=$(unit_value ExecStart)
    [ -n "$pre" ] && [ -n "$start" ] || fail "the unit has no ExecStartPre= or ExecStart="
    # StateDirectory= and LogsDirectory= (plain names, no ":" forms): systemd creates each
    # under /var/lib and /var/log at every start, owned by User= and Group=, with the mode of
    # StateDirectoryMode= and LogsDirectoryMode= (0755 when unset), and makes it writable.
    writable=$(unit_value ReadWritePaths)
    for kind in State:/var/lib Logs:/var/log; do
        mode=$(unit_value "${kind%%:*}DirectoryMode")
        for d in $(unit_value "${kind%%:*}Directory"); do
            [[ $d != *:* && $d != */* ]] || fail "the emulation handles only plain names in ${kind%%:*}Directory= ($d)"
            install -d -o "$(unit_value User)" -g "$(unit_value Group)" -m "${mode:-0755}" "${kind#*:}/$d"
            chmod "${mode:-0755}" "${kind#*:}/$d"
            writable="$writable ${kind#*:}/$d"
        done
    done
    # In a new mount namespace: each writable path becomes its own mount, then every other
    # mount but the kernel's (/proc, /sys, /dev) is made read-only; /tmp and /var/tmp are
    # private, /home, /root and /run/user empty (PrivateTmp=, ProtectHome=). Then the unit's
    # limits, and exec the command (unshare and bash exec too: the PID is the command's).
    sandbox='
        set -e
        for p in $WRITABLE; do mount --bind "$p" "$p"; done
        while read -r _ _ _ _ mp _; do
            case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
            case " $WRITABLE " in *" $mp "*) continue ;; esac
            mount -o remount,bind,ro "$mp" || true # checked below: /etc/mta must be read-only
        done </proc/self/mountinfo
        for d in /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
        for d in /home /root /run/user; do
            if [ -d "$d" ]; then mount -t tmpfs -o ro,mode=755 tmpfs "$d"; fi
        done
        ulimit -l "$MEMLOCK"
        ulimit -n "$NOFILE"
        exec "$@"'
    # systemd (with CAP_SYS_RESOURCE) sets any limit; a container's root may not be able to
    # raise its hard limit, so the limit is at most the hard limit here, and said so.
    limit() { # limit ulimit-flag unit-key
        local want
        want=$(ulimit_value "$(unit_value "$2")")
        if (ulimit "$1" "$want") 2>/dev/null; then
            echo "$want"
        else
            say "note: $2=$(unit_value "$2") is above this machine's hard limit; emulated with $(ulimit -H "$1")" >&2
            ulimit -H "$1"
        fi
    }
    memlock=$(limit -l LimitMEMLOCK)
    nofile=$(limit -n LimitNOFILE)
    in_unit() {
        WRITABLE="$writable" MEMLOCK="$memlock" NOFILE="$nofile" \
            unshare --mount --propagation private bash -c "$sandbox" sandbox "$@"
    }
    # The same in the background: the subshell execs, so $! is the command's PID.
    in_unit_background() {
        WRITABLE="$writable" MEMLOCK="$memlock" NOFILE="$nofile" \
            exec unshare --mount --propagation private bash -c "$sandbox" sandbox "$@"
    }
    # The sandbox must really be read-only where the unit says so.
    if in_unit "${as_mta[@]}" touch /var/lib/mta/.probe /etc/mta/.probe 2>/dev/null; then
        fail "the emulated ProtectSystem=strict let mta write /etc/mta"
    fi
    in_unit "${as_mta[@]}" touch /var/lib/mta/.probe /var/log/mta/.probe ||
        fail "mta cannot write /var/lib/mta and /var/log/mta under the unit's settings"
    rm -f /var/lib/mta/.probe /var/log/mta/.probe /etc/mta/.probe

    in_unit "${as_mta[@]}" bash -c "$pre" >"$WORK/pre.log" 2>&1 || {
        cat "$WORK/pre.log" >&2
        fail "ExecStartPre=$pre"
    }
    in_unit_background "${as_mta[@]}" bash -c "exec $start" >"$WORK/run.log" 2>&1 &
    mta_pid=$!
    ready() { grep -q ' ready' "$WORK/run.log"; }
    wait_until 30 ready || {
        cat "$WORK/run.log" >&2
        fail "the MTA did not get ready under the unit's settings"
    }
    [ "$(awk '/^Uid:/ { print $2 }' "/proc/$mta_pid/status")" = "$(id -u mta)" ] &&
        [ "$(readlink "/proc/$mta_pid/exe")" = /usr/bin/mta ] ||
        fail "PID $mta_pid is not /usr/bin/mta running as mta"
    smtp_probe || fail "no SMTP greeting, EHLO and QUIT on 127.0.0.1:25"
    ls -d /var/lib/mta/spool/shard-* >/dev/null 2>&1 || fail "no shard directory in /var/lib/mta/spool"

    # ExecReload= lines in order, as the unit's user, with $MAINPID.
    while IFS= read -r line; do
        "${as_mta[@]}" MAINPID="$mta_pid" bash -c "$line" >>"$WORK/reload.log" 2>&1 || {
            cat "$WORK/reload.log" >&2
            fail "ExecReload=$line"
        }
    done < <(unit_value ExecReload)
    reloaded() { grep -q 'configuration reloaded' "$WORK/run.log"; }
    wait_until 10 reloaded || {
        cat "$WORK/run.log" >&2
        fail "no reload in the MTA's log after ExecReload="
    }
    kill -0 "$mta_pid" && smtp_probe || fail "the MTA does not answer after the reload"

    # KillSignal=SIGTERM: a graceful stop, status 0, within TimeoutStopSec=.
    [ "$(unit_value KillSignal)" = SIGTERM ] || fail "the unit's KillSignal= is not SIGTERM"
    kill -TERM "$mta_pid"
    stopped() { ! kill -0 "$mta_pid" 2>/dev/null; }
    wait_until "$(unit_value TimeoutStopSec)" stopped || fail "the MTA did not stop on SIGTERM"
    rc=0
    wait "$mta_pid" || rc=$?
    mta_pid=
    [ "$rc" = 0 ] || {
        cat "$WORK/run.log" >&2
        fail "the MTA exited with status $rc after SIGTERM"
    }
    say "started as the unit starts it (user mta, read-only system but state directory and log): SMTP answers on 127.0.0.1:25, reload and stop work"
fi

# --- upgrade ---------------------------------------------------------------------------------
# A local edit of a conffile survives the upgrade; the new binary checks the configuration.
echo "# local edit by test-deb" >>"$CONFIG"
dpkg -i "$WORK/mta-0test2.deb" </dev/null >"$WORK/upgrade.log" 2>&1 || {
    cat "$WORK/upgrade.log" >&2
    fail "dpkg -i (upgrade)"
}
[ "$(dpkg-query -W -f='${Version}' mta)" = "$(dpkg-deb -f "$WORK/mta-0test2.deb" Version)" ] ||
    fail "the upgrade did not install the new version"
grep -q "local edit by test-deb" "$CONFIG" || fail "the upgrade replaced the edited $CONFIG"
if grep -q "does not pass" "$WORK/upgrade.log"; then
    cat "$WORK/upgrade.log" >&2
    fail "the upgrade refused a valid configuration"
fi
# A configuration the new version refuses: the package still configures, says so, and does
# not restart the MTA.
printf '[smtp]\nmax_recipients = 0\n' >>"$CONFIG"
dpkg -i "$WORK/mta-0test2.deb" </dev/null >"$WORK/upgrade-bad.log" 2>&1 || {
    cat "$WORK/upgrade-bad.log" >&2
    fail "dpkg -i (upgrade with a bad configuration)"
}
grep -q "does not pass 'mta check-config'" "$WORK/upgrade-bad.log" &&
    grep -q "smtp.max_recipients" "$WORK/upgrade-bad.log" || {
    cat "$WORK/upgrade-bad.log" >&2
    fail "the upgrade did not report the configuration error"
}
if [ -d /run/systemd/system ]; then
    systemctl --quiet is-active mta || fail "the running MTA was stopped by an upgrade with a bad configuration"
fi
say "upgrade: the edited conffile is kept; a configuration the new binary refuses is reported and the MTA not restarted"

# --- purge -----------------------------------------------------------------------------------
dpkg --purge mta </dev/null >"$WORK/purge.log" 2>&1 || {
    cat "$WORK/purge.log" >&2
    fail "dpkg --purge mta"
}
installed=no
status=$(dpkg-query -W -f='${db:Status-Status}' mta 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] || fail "mta is still $status after purge"
for gone in /usr/bin/mta /usr/bin/loadgen "$UNIT" /etc/mta/mta.toml /etc/mta/shaping.toml \
    /etc/systemd/system/multi-user.target.wants/mta.service /var/log/mta; do
    [ ! -e "$gone" ] && [ ! -L "$gone" ] || fail "$gone is still there after purge"
done
if [ -n "$(find /var/lib/mta -type f -print -quit 2>/dev/null)" ]; then
    grep -q "/var/lib/mta is kept" "$WORK/purge.log" || fail "purge kept a state directory with files without saying so"
elif [ -e /var/lib/mta ]; then
    fail "purge left an empty /var/lib/mta"
fi
say "purge: binaries, unit, conffiles, event log removed; a state directory with files (the spool) is kept and named"

say PASS
