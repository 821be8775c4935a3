"""Small scripts standing in for busybox applets that Debian's busybox-static leaves out.

The upstream test images are busybox builds with these applets; the suites
that run them (critest, the Kubernetes e2e suites) call them by name. Each
script does the one thing the suites use, from what the kernel shows.
"""

from __future__ import annotations

from pathlib import Path

from e2e.images.builder import Entry, busybox_rootfs

PGREP = b"""#!/bin/sh
# pgrep NAME: the pids whose process name contains NAME (procps' pgrep without options).
found=1
for d in /proc/[0-9]*; do
  name=$(cat "$d/comm" 2>/dev/null) || continue
  case "$name" in *"$1"*) echo "${d#/proc/}"; found=0 ;; esac
done
exit $found
"""

IPCS = b"""#!/bin/sh
# ipcs -m: the System V shared memory segments of this IPC namespace, from the kernel's table.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
  printf '0x%08x %-10s %-10s %-10s %-10s %-10s\\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
"""

NMETER = b"""#!/bin/sh
# nmeter -d0 '%3t', the one use the e2e suites make of it: the time of day with milliseconds,
# a line at a time. busybox's date has no sub-second format; a file's mtime has microseconds.
for dir in /tmp /dev/shm; do
  f="$dir/.nmeter.$$"
  if touch "$f" 2>/dev/null; then
    trap 'rm -f "$f"' EXIT
    while touch "$f"; do
      t=$(stat -c %y "$f")
      t=${t#* }
      echo "${t:0:12}"
    done
    exit 0
  fi
done
while :; do echo "$(date -u +%T).000"; done
"""

CURL = b"""#!/bin/sh
# curl [-g -q -s -i] [-o FILE] [-w %{http_code}] [--max-time N] [--connect-timeout N] URL: the
# options the e2e suites pass, over busybox's wget. As curl without -f, an HTTP error status
# still exits 0; no response at all exits 7 (28 on --max-time).
out=-; fmt=; head=; max=; url=
while [ $# -gt 0 ]; do
  case "$1" in
    -g|-q|-s|--silent|--globoff) ;;
    -i|--include) head=1 ;;
    -o|--output) out=$2; shift ;;
    -w|--write-out) fmt=$2; shift ;;
    -m|--max-time) max=$2; shift ;;
    # Parsed and left out: Debian's busybox wget crashes on -T. An unreachable pod refuses
    # at once; --max-time still bounds the whole call.
    --connect-timeout) shift ;;
    -*) echo "curl (shim): unsupported option $1" >&2; exit 2 ;;
    *) url=$1 ;;
  esac
  shift
done
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
# Without -q: busybox's wget prints the response headers (-S) only when not quiet.
${max:+timeout "$max"} wget -S -O "$tmp/body" "$url" 2>"$tmp/headers"
rc=$?
code=$(sed -n 's|^  HTTP/[0-9.]* \\([0-9][0-9][0-9]\\).*|\\1|p' "$tmp/headers" | tail -n 1)
if [ -z "$code" ]; then
  case $rc in 124|143) exit 28 ;; *) exit 7 ;; esac
fi
if [ "$out" = - ]; then
  [ -n "$head" ] && sed -n '/^  $/q; s/^  //p' "$tmp/headers" && echo
  cat "$tmp/body" 2>/dev/null
else
  cat "$tmp/body" >"$out" 2>/dev/null || : >"$out"
fi
[ -n "$fmt" ] && printf '%s' "$fmt" | sed "s/%{http_code}/$code/g"
exit 0
"""

# Only where bash is: busybox's nc has no UDP, bash's /dev/udp has.
NC_UDP = b"""#!/bin/bash
# nc -w N -u HOST PORT: send stdin as one datagram, print the reply that comes within N
# seconds (the e2e suites' UDP dial). Everything else is busybox's nc.
udp=; wait=1; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -u) udp=1 ;;
    -w) wait=$2; args+=(-w "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done
[ -n "$udp" ] || exec /bin/busybox nc "${args[@]}"
[ ${#args[@]} -ge 2 ] || { echo "nc (shim): -u needs HOST PORT" >&2; exit 2; }
host=${args[-2]}; port=${args[-1]}
exec 3<>"/dev/udp/$host/$port" || exit 1
cat >&3
read -r -N 65507 -t "$wait" reply <&3
printf '%s' "$reply"
[ -n "$reply" ]
"""


def bash_entries(bash_static: Path = Path("/bin/bash-static")) -> list[Entry]:
    """Debian's static bash as /bin/bash (agnhost's image has bash; some specs run it), and the
    UDP-capable nc over it."""
    return [
        Entry("bin/bash", data=bash_static.read_bytes(), mode=0o755),
        Entry("usr/bin/bash", "symlink", linkname="../../bin/bash"),
        Entry("bin/nc", data=NC_UDP, mode=0o755),
        Entry("usr/bin/nc", "symlink", linkname="../../bin/nc"),
    ]


def shim_entries() -> list[Entry]:
    return [
        Entry("usr/bin/pgrep", data=PGREP, mode=0o755),
        Entry("usr/bin/ipcs", data=IPCS, mode=0o755),
        Entry("usr/bin/nmeter", data=NMETER, mode=0o755),
        Entry("usr/bin/curl", data=CURL, mode=0o755),
    ]


def busybox_with_shims() -> list[Entry]:
    """busybox as the upstream busybox image lays it out (every applet also in /bin, where the
    suites call some of them: /bin/sysctl, /bin/top), with the shims."""
    entries = busybox_rootfs()
    in_bin = {e.name for e in entries if e.name.startswith("bin/")}
    for e in list(entries):
        name = e.name.rsplit("/", 1)[-1]
        if e.kind == "symlink" and f"bin/{name}" not in in_bin:
            entries.append(Entry(f"bin/{name}", "symlink", linkname="busybox", mode=0o777))
            in_bin.add(f"bin/{name}")
    return entries + shim_entries()
