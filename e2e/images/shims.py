"""Small scripts standing in for busybox applets that Debian's busybox-static leaves out.

The upstream test images are busybox builds with these applets; the suites
that run them (critest, the Kubernetes e2e suites) call them by name. Each
script does the one thing the suites use, from what the kernel shows.
"""

from __future__ import annotations

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


def shim_entries() -> list[Entry]:
    return [
        Entry("usr/bin/pgrep", data=PGREP, mode=0o755),
        Entry("usr/bin/ipcs", data=IPCS, mode=0o755),
        Entry("usr/bin/nmeter", data=NMETER, mode=0o755),
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
