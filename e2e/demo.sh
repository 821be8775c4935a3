#!/usr/bin/env bash
# crib's first run: a web server in a pod, end to end, offline.
#
#   sudo e2e/demo.sh                 # after scripts/install.sh started cribd
#
# It builds a root filesystem from busybox-static (/bin/busybox with the applet
# links httpd needs), makes an image of it with `cribctl import`, runs a pod
# with a host port, creates and starts the web server in it, fetches the page
# over the host port on 127.0.0.1, runs a command in the container with
# `cribctl exec`, shows `cribctl logs`, forwards a local port to the pod with
# `cribctl port-forward` and fetches the page again. Then it removes the pod,
# the image and its temp files; it does that also when a step fails.
#
# Settings (environment):
#   CONTAINER_RUNTIME_ENDPOINT  cribd's socket (default unix:///run/crib/crib.sock)
#   CRIB_DEMO_PORT              the pod's host port on this machine (default 8080)
#   BUSYBOX                     a static busybox binary (default /bin/busybox)
#   TMPDIR                      where the temp files go (default /tmp)
set -euo pipefail

export CONTAINER_RUNTIME_ENDPOINT="${CONTAINER_RUNTIME_ENDPOINT:-unix:///run/crib/crib.sock}"
# Images go to the same cribd, whatever an /etc/crictl.yaml says.
export IMAGE_SERVICE_ENDPOINT="${IMAGE_SERVICE_ENDPOINT:-$CONTAINER_RUNTIME_ENDPOINT}"
port="${CRIB_DEMO_PORT:-8080}"
busybox="${BUSYBOX:-/bin/busybox}"
image="localhost/crib-demo/httpd:1"
page="Hello from a crib pod!"

# "$ command" lines go to fd 3 (the terminal), so $(run ...) captures only the command's output.
exec 3>&1
step() { printf '\n==> %s\n' "$*" >&3; }
run() {
  local line="" arg
  for arg in "$@"; do
    case "$arg" in
      "" | *[!A-Za-z0-9_./:=@%+,-]*) arg="'${arg//\'/\'\\\'\'}'" ;;
    esac
    line+=" $arg"
  done
  printf '$%s\n' "$line" >&3
  "$@"
}
# Fetch a page, bypassing any proxy of the environment, with busybox wget (its -T crashes in 1.35).
fetch=(timeout 10 "$busybox" wget -Y off -q -O -)
# Stop the background `cribctl port-forward`: SIGTERM, then SIGKILL if it is still there after 5 s.
stop_forwarder() {
  run kill "$forwarder"
  for _ in $(seq 50); do
    kill -0 "$forwarder" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$forwarder" 2>/dev/null
  wait "$forwarder" 2>/dev/null
  forwarder=""
}

# The pod carries this run's label: cleanup finds it even when runp was interrupted before it printed the ID.
run_label="crib-demo/run=$$"
tmp=""
ran_pod=0
imported=0
forwarder=""
cleanup() {
  local status=$?
  set +e
  step "Cleaning up"
  if [ -n "$forwarder" ] && kill -0 "$forwarder" 2>/dev/null; then
    stop_forwarder
  fi
  local pods p
  if [ "$ran_pod" -eq 1 ]; then
    pods=$(cribctl pods -q --label "$run_label")
    for p in $pods; do
      run cribctl stopp "$p"
      run cribctl rmp "$p"
    done
  fi
  if [ "$imported" -eq 1 ]; then
    run cribctl rmi "$image"
  fi
  if [ -n "$tmp" ]; then
    run rm -rf "$tmp"
  fi
  if [ "$status" -eq 0 ]; then
    printf '\nDone: the pod, its container, the image and the temp files are gone.\n'
  elif [ "$status" -eq 130 ] || [ "$status" -eq 143 ]; then
    printf '\ndemo.sh: interrupted; everything it made is removed.\n' >&2
  else
    printf '\ndemo.sh: a step failed (exit code %s); everything it made is removed.\n' "$status" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Checking cribd on $CONTAINER_RUNTIME_ENDPOINT"
command -v cribctl >/dev/null || {
  echo "demo.sh: cribctl is not on PATH; run scripts/install.sh first" >&2
  exit 1
}
[ -x "$busybox" ] || {
  echo "demo.sh: no busybox at $busybox (apt-get install busybox-static)" >&2
  exit 1
}
if ss -Hltn "sport = :$port" | grep -q .; then
  echo "demo.sh: port $port is in use on this machine; pick another with CRIB_DEMO_PORT=..." >&2
  exit 1
fi
run cribctl version

step "Building a root filesystem with busybox httpd"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crib-demo.XXXXXX")
rootfs="$tmp/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/www" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
cp "$busybox" "$rootfs/bin/busybox"
for applet in sh httpd cat ls hostname ps; do
  ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
printf '<h1>%s</h1>\n' "$page" >"$rootfs/www/index.html"
run tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$tmp/rootfs.tar" .
ls -l "$tmp/rootfs.tar"

step "Making the image $image from the tar (no registry needed)"
imported=1
run cribctl import --entrypoint '["/bin/httpd", "-f", "-vv", "-p", "80", "-h", "/www"]' \
  --expose 80/tcp "$tmp/rootfs.tar" "$image"
run cribctl images "$image"

step "Running a pod with host port $port -> container port 80"
cat >"$tmp/pod.yaml" <<EOF
metadata:
  name: crib-demo
  namespace: default
  uid: crib-demo-$$
hostname: crib-demo
log_directory: $tmp/logs
labels:
  ${run_label%%=*}: "${run_label#*=}"
port_mappings:
- container_port: 80
  host_port: $port
EOF
cat "$tmp/pod.yaml"
ran_pod=1
pod=$(run cribctl runp "$tmp/pod.yaml")
echo "$pod"
run cribctl pods --id "$pod"

step "Creating and starting the web server in the pod"
cat >"$tmp/web.yaml" <<EOF
metadata:
  name: web
image:
  image: $image
log_path: web.log
EOF
cat "$tmp/web.yaml"
ctr=$(run cribctl create "$pod" "$tmp/web.yaml" "$tmp/pod.yaml")
echo "$ctr"
run cribctl start "$ctr"
run cribctl ps --pod "$pod"

step "Fetching the page over the host port: http://127.0.0.1:$port/"
# httpd takes a moment to listen: try for up to 15 s.
deadline=$((SECONDS + 15))
while [ "$SECONDS" -lt "$deadline" ]; do
  if timeout 2 "$busybox" wget -Y off -q -O /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
run "${fetch[@]}" "http://127.0.0.1:$port/"

step "Running a command in the container"
run cribctl exec "$ctr" sh -c 'echo "hostname: $(hostname)"; ls /www; ps'

step "The container's logs (httpd logs each request)"
run cribctl logs "$ctr"

step "Forwarding a local port to the pod's port 80"
printf '$ cribctl port-forward %s :80 &\n' "$pod"
cribctl port-forward "$pod" :80 >"$tmp/port-forward.out" 2>&1 &
forwarder=$!
local_port=""
for _ in $(seq 200); do
  local_port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) -> 80$/\1/p' "$tmp/port-forward.out")
  if [ -n "$local_port" ] || ! kill -0 "$forwarder" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
shown=$(wc -l <"$tmp/port-forward.out")
cat "$tmp/port-forward.out"
if [ -z "$local_port" ]; then
  echo "demo.sh: cribctl port-forward did not start listening" >&2
  exit 1
fi
run "${fetch[@]}" "http://127.0.0.1:$local_port/"
stop_forwarder || true
tail -n "+$((shown + 1))" "$tmp/port-forward.out"
