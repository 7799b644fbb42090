# shellcheck shell=bash
# A real headless browser for the browser tests: Chromium and its WebDriver
# server from Debian's packages, and axe-core (the accessibility checker the
# tests inject into pages) from the npm registry, pinned by version and by
# digest. Source this file, then:
#   install_browser   chromium, chromium-driver (as root, when missing) and
#                     axe-core (downloaded once, checked on every run);
#                     exports the paths below
# Exported for the tests:
#   CUSTODY_TEST_CHROMIUM      the browser binary
#   CUSTODY_TEST_CHROMEDRIVER  its WebDriver server
#   CUSTODY_TEST_AXE           axe.min.js, the script the tests inject

# The registry's dist.integrity for this version: a changed tarball fails.
AXE_VERSION=4.11.4
AXE_INTEGRITY="sha512-KunSNx+TVpkAw/6ULfhnx+HWRecjqZGTOyquAoWHYLRSdK1tB5Ihce1ZW+UY3fj33bYAFWPu7W/GRSmmrCGuxA=="
_axe_dir="${HOME:?}/.cache/custody-browser/axe-core-$AXE_VERSION"

install_browser() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "browser: installing ${missing[*]} (Debian packages)" >&2
    if [ "$(id -u)" -ne 0 ]; then
      echo "browser: run as root, or install ${missing[*]} first" >&2
      return 1
    fi
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; }
  fi
  _install_axe || return 1
  export CUSTODY_TEST_CHROMIUM=/usr/bin/chromium
  export CUSTODY_TEST_CHROMEDRIVER=/usr/bin/chromedriver
  export CUSTODY_TEST_AXE="$_axe_dir/axe.min.js"
}

_install_axe() {
  local tarball="$_axe_dir/axe-core-$AXE_VERSION.tgz"
  mkdir -p "$_axe_dir"
  if [ ! -f "$tarball" ]; then
    echo "browser: downloading axe-core $AXE_VERSION from the npm registry" >&2
    # Into a temporary name first: an interrupted download is never taken for the tarball.
    curl -fsSL --retry 3 -o "$tarball.part" \
      "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz" \
      || { rm -f "$tarball.part"; echo "browser: could not download axe-core $AXE_VERSION" >&2; return 1; }
    mv "$tarball.part" "$tarball"
  fi
  # Checked on every run, not only after a download: the cache is as untrusted as the network.
  local want got
  want="$(printf '%s' "${AXE_INTEGRITY#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')"
  got="$(sha512sum "$tarball" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    echo "browser: $tarball does not match the pinned digest of axe-core $AXE_VERSION" >&2
    echo "browser:   expected sha512 $want" >&2
    echo "browser:   got      sha512 $got" >&2
    echo "browser: delete it to download it again; if the registry serves it changed, do not trust it" >&2
    return 1
  fi
  tar -xzf "$tarball" -O package/axe.min.js >"$_axe_dir/axe.min.js.part" \
    || { echo "browser: $tarball has no package/axe.min.js" >&2; return 1; }
  mv "$_axe_dir/axe.min.js.part" "$_axe_dir/axe.min.js"
}
