#!/usr/bin/env bash
# Podman on a Debian machine, the way CI and tests/docker/test_podman.py use it (docs/docker.md).
#
#   sudo bash docker/podman-setup.sh      (make podman)
#
# 1. installs podman, runc and debootstrap from apt (each only when missing);
# 2. writes a containers.conf drop-in: runc as the runtime (crun fails on hosts with hybrid
#    cgroups) and no default ulimits (raising RLIMIT_NOFILE is not permitted in sandboxed hosts);
# 3. builds the stand-in base image localhost/pybase:3.11 when it does not exist yet: no public
#    image registry is reachable from CI, so python:3.11-slim-bookworm cannot be pulled. It is a
#    Debian bookworm minbase from this machine's own apt mirror with Debian's python3.11, venv and
#    pip, `python` on /usr/local/bin as in the official image, and this machine's CA bundle and
#    pip index settings, so that pip inside `podman build` reaches the package index as the host
#    does. The Dockerfile is used as it is; only its PYTHON_IMAGE argument points at this base.
#
# Safe to run again: every step checks first. BASE_IMAGE and SUITE can be overridden.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root: pip's settings are read with .venv's pip when it exists

BASE_IMAGE=${BASE_IMAGE:-localhost/pybase:3.11}
SUITE=${SUITE:-bookworm}
PACKAGES="podman:podman runc:runc debootstrap:debootstrap curl:curl"  # curl: the README example
DROP_IN=/etc/containers/containers.conf.d/50-fusionserve.conf

log() { echo "podman-setup: $*"; }
die() { echo "podman-setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo bash $0): it installs packages and builds a root file system"

# 1. Packages, one apt-get call per missing tool (a tool installed outside apt is kept).
updated=
for pair in $PACKAGES; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 && continue
  [ -n "$updated" ] || { apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null; updated=1; }
  log "apt-get install $pkg"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "$pkg" >/dev/null
done

# 2. Engine settings (a drop-in, so a containers.conf of the machine's own is left alone).
conf=$'# Written by fusionserve docker/podman-setup.sh\n[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
if [ "$(cat "$DROP_IN" 2>/dev/null)" != "${conf%$'\n'}" ]; then
  mkdir -p "$(dirname "$DROP_IN")"
  printf '%s' "$conf" > "$DROP_IN"
  log "wrote $DROP_IN"
fi

# 3. The stand-in base image.
if podman image exists "$BASE_IMAGE"; then
  log "$BASE_IMAGE exists (podman rmi it to rebuild)"
  exit 0
fi

# The Debian mirror this machine's apt uses for $SUITE (deb822 .sources files or one-line lists).
mirror=
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && [ -z "$mirror" ] || continue
  case $f in
    *.sources)  # deb822: blank-line separated stanzas
      mirror=$(awk -v suite="$SUITE" 'BEGIN { RS = "" } {
        deb = has = 0; uri = ""; n = split($0, line, "\n")
        for (j = 1; j <= n; j++) {
          k = split(line[j], w, /[ \t]+/)
          if (w[1] == "Types:") for (i = 2; i <= k; i++) if (w[i] == "deb") deb = 1
          if (w[1] == "URIs:") uri = w[2]
          if (w[1] == "Suites:") for (i = 2; i <= k; i++) if (w[i] == suite) has = 1
        }
        if (deb && has && uri != "") { print uri; exit }
      }' "$f") ;;
    *)  # one-line: deb [options] URI SUITE COMPONENTS...
      mirror=$(sed -n -E "s/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+$SUITE[[:space:]].*/\2/p" "$f" | head -n1) ;;
  esac
done
[ -n "$mirror" ] || die "no 'deb' source for $SUITE in /etc/apt/sources.list*: cannot tell which Debian mirror to use"

# The CA bundle pip uses on this machine (pip's cert setting, else the system bundle).
pip_cmd=(python3 -m pip)
[ -x .venv/bin/python ] && pip_cmd=(.venv/bin/python -m pip)
pip_conf=$("${pip_cmd[@]}" config list 2>/dev/null || true)
setting() { sed -n "s/^[^.]*\.$1='\(.*\)'$/\1/p" <<<"$pip_conf" | tail -n1; }
ca_bundle=$(setting cert)
ca_bundle=${ca_bundle:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -f "$ca_bundle" ] || die "CA bundle $ca_bundle not found"

root=$(mktemp -d /var/tmp/pybase.XXXXXX)
cleanup() {
  for m in proc sys dev/pts dev; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap $SUITE from $mirror (minbase + python3.11)"
debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-pip,ca-certificates \
  "$SUITE" "$root" "$mirror" > "$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
rm -f "$root.log"

ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python"
ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
# This machine's CAs (a TLS-inspecting proxy's, say): the bundle, and the sources so that an
# `update-ca-certificates` inside a build keeps them.
cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
# pip: the same certificate and the same network indexes as the host (local folders and file://
# indexes are not visible inside a build and are left out).
{
  echo "[global]"
  echo "cert = /etc/ssl/certs/ca-certificates.crt"
  for key in index-url extra-index-url trusted-host timeout default-timeout; do
    value=$(setting "$key")
    value=$(tr ' ' '\n' <<<"$value" | grep -v -E '^(file:|/|$)' | paste -sd' ' || true)
    if [ -n "$value" ]; then echo "$key = $value"; fi
  done
} > "$root/etc/pip.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$BASE_IMAGE" >/dev/null
log "built $BASE_IMAGE in $(( $(date +%s) - start )) s, $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"
