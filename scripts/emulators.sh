# Installs and runs the emulators the tests use. Source this file, then:
#   install_emulators   moto[server] into .venv, Azurite into node_modules (only when missing)
#   start_emulators     both on free 127.0.0.1 ports; exports their endpoints; stops them on exit
# Endpoints exported for the tests:
#   CUSTODY_TEST_S3_ENDPOINT          http://127.0.0.1:PORT (moto, all AWS services)
#   CUSTODY_TEST_AZURE_BLOB_ENDPOINT  http://127.0.0.1:PORT/devstoreaccount1 (Azurite blob)

CUSTODY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOTO_REQUIREMENTS="$CUSTODY_ROOT/scripts/requirements-emulators.txt"
EMULATOR_LOGS="${EMULATOR_LOGS:-$CUSTODY_ROOT/target/emulator-logs}"

install_emulators() {
  local venv="$CUSTODY_ROOT/.venv"
  # Reinstall when the pinned requirements changed since the last install.
  local stamp="$venv/.custody-requirements"
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$MOTO_REQUIREMENTS" "$stamp"; then
    echo "emulators: installing moto into .venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$MOTO_REQUIREMENTS"
    cp "$MOTO_REQUIREMENTS" "$stamp"
  fi
  if [ ! -f "$CUSTODY_ROOT/node_modules/azurite/dist/src/blob/main.js" ] \
     || ! cmp -s "$CUSTODY_ROOT/package-lock.json" "$CUSTODY_ROOT/node_modules/.package-lock.json.custody"; then
    echo "emulators: installing Azurite into node_modules (npm ci)" >&2
    (cd "$CUSTODY_ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$CUSTODY_ROOT/package-lock.json" "$CUSTODY_ROOT/node_modules/.package-lock.json.custody"
  fi
  # Tools the tests run: shellcheck for the memory script, e2fsprogs for the
  # ext4 images of the EBS tests, Chromium for the readiness HTML report.
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || missing+=(e2fsprogs)
  # GNU time: the security probes measure peak memory with it.
  [ -x /usr/bin/time ] || missing+=(time)
  # Disk images as real disks are made, and The Sleuth Kit as the oracle
  # of what is on them (the disk-processing tests).
  command -v sgdisk >/dev/null || missing+=(gdisk)
  command -v mmls >/dev/null && command -v fls >/dev/null || missing+=(sleuthkit)
  command -v mkfs.xfs >/dev/null || missing+=(xfsprogs)
  command -v mkntfs >/dev/null || missing+=(ntfs-3g)
  command -v mkfs.vfat >/dev/null || missing+=(dosfstools)
  command -v cryptsetup >/dev/null || missing+=(cryptsetup-bin)
  command -v mcopy >/dev/null || missing+=(mtools)
  command -v pvcreate >/dev/null || missing+=(lvm2)
  command -v losetup >/dev/null || missing+=(util-linux)
  # NTFS images are filled through an ntfs-3g FUSE mount, with streams set by setfattr.
  command -v fusermount3 >/dev/null || missing+=(fuse3)
  command -v setfattr >/dev/null || missing+=(attr)
  # Journal files written by systemd-journal-remote, read back by journalctl.
  [ -x /lib/systemd/systemd-journal-remote ] || missing+=(systemd-journal-remote)
  command -v journalctl >/dev/null || missing+=(systemd)
  command -v xz >/dev/null || missing+=(xz-utils)
  # Login records: utmpdump/last/lastb (util-linux), lastlog (login).
  command -v utmpdump >/dev/null || missing+=(util-linux)
  command -v lastlog >/dev/null || missing+=(login)
  # authorized_keys fingerprints against ssh-keygen.
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "emulators: installing ${missing[*]} (Debian packages)" >&2
    if [ "$(id -u)" -eq 0 ]; then
      apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; }
    else
      echo "emulators: run as root, or install ${missing[*]} first" >&2
    fi
  fi
}

_free_port() {
  "$CUSTODY_ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_http_ok() {
  "$CUSTODY_ROOT/.venv/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" >/dev/null 2>&1
}

_emulator_pids=()

stop_emulators() {
  local pid
  for pid in "${_emulator_pids[@]:-}"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  _emulator_pids=()
}

start_emulators() {
  mkdir -p "$EMULATOR_LOGS"
  trap stop_emulators EXIT

  local moto_port
  moto_port="$(_free_port)"
  "$CUSTODY_ROOT/.venv/bin/python" "$CUSTODY_ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$moto_port" \
    >"$EMULATOR_LOGS/moto.log" 2>&1 &
  _emulator_pids+=($!)

  : >"$EMULATOR_LOGS/azurite.log"
  # Never --loose: it accepts wrong checksums, which the tests must see refused.
  node "$CUSTODY_ROOT/node_modules/azurite/dist/src/blob/main.js" \
    --blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --disableTelemetry \
    --skipApiVersionCheck >"$EMULATOR_LOGS/azurite.log" 2>&1 &
  _emulator_pids+=($!)

  local i azurite_port=""
  for i in $(seq 1 300); do
    if [ -z "$azurite_port" ]; then
      azurite_port="$(sed -n 's#.*successfully listens on http://127.0.0.1:\([0-9]*\).*#\1#p' "$EMULATOR_LOGS/azurite.log" | head -n 1)"
    fi
    if [ -n "$azurite_port" ] && _http_ok "http://127.0.0.1:$moto_port/moto-api/"; then
      break
    fi
    sleep 0.1
  done
  if [ -z "$azurite_port" ]; then
    echo "emulators: Azurite did not start; its log:" >&2
    cat "$EMULATOR_LOGS/azurite.log" >&2
    return 1
  fi
  if ! _http_ok "http://127.0.0.1:$moto_port/moto-api/"; then
    echo "emulators: moto did not start; its log:" >&2
    cat "$EMULATOR_LOGS/moto.log" >&2
    return 1
  fi
  export CUSTODY_TEST_S3_ENDPOINT="http://127.0.0.1:$moto_port"
  export CUSTODY_TEST_AZURE_BLOB_ENDPOINT="http://127.0.0.1:$azurite_port/devstoreaccount1"
  echo "emulators: moto at $CUSTODY_TEST_S3_ENDPOINT, Azurite at $CUSTODY_TEST_AZURE_BLOB_ENDPOINT" >&2
}
