#!/usr/bin/env bash
# Installs what building and testing arenalm needs beyond a Rust toolchain
# (rustup, https://rustup.rs): Rust targets and components, and Debian
# packages. The one list of prerequisites: scripts/test.sh and .ci/run use it.
#
#   scripts/setup.sh            install whatever is missing (idempotent)
#   scripts/setup.sh --check    install nothing; list what is missing, exit 1 if any
#
# Uses sudo only when not root; runs apt-get update only when an install fails.
set -euo pipefail

# Rust targets: aarch64 Linux (cross build, tests under qemu) and a bare-metal
# Cortex-M (proves that arenalm-core is no_std without alloc).
RUST_TARGETS=(aarch64-unknown-linux-gnu thumbv7em-none-eabihf)
RUST_COMPONENTS=(rustfmt clippy)

# Debian packages, each with the command that shows it is installed.
#   package                 command
DEB_PACKAGES="
  gcc                     cc
  g++                     c++
  binutils                readelf
  make                    make
  gcc-aarch64-linux-gnu   aarch64-linux-gnu-gcc
  g++-aarch64-linux-gnu   aarch64-linux-gnu-g++
  qemu-user               qemu-aarch64
  valgrind                valgrind
  python3-pip             pip
  cmake                   cmake
  pkg-config              pkg-config
"

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

# Whether the command that marks a package is there. pip counts in any of the
# forms the fetch scripts accept.
have_command() {
  if [ "$1" = pip ]; then
    command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 \
      || python3 -m pip --version >/dev/null 2>&1
  else
    command -v "$1" >/dev/null 2>&1
  fi
}

missing=()         # human-readable, for --check
missing_debs=()

if ! command -v rustup >/dev/null 2>&1 || ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: rustup and cargo are missing: install Rust from https://rustup.rs first" >&2
  exit 1
fi

installed_targets=$(rustup target list --installed)
missing_targets=()
for t in "${RUST_TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || missing_targets+=("$t")
done
installed_components=$(rustup component list --installed)
missing_components=()
for c in "${RUST_COMPONENTS[@]}"; do
  grep -q "^$c-" <<<"$installed_components" || missing_components+=("$c")
done

while read -r pkg cmd; do
  [ -n "$pkg" ] || continue
  have_command "$cmd" || missing_debs+=("$pkg")
done <<<"$DEB_PACKAGES"

for t in "${missing_targets[@]}"; do missing+=("Rust target $t"); done
for c in "${missing_components[@]}"; do missing+=("Rust component $c"); done
for p in "${missing_debs[@]}"; do missing+=("Debian package $p"); done

if [ "$check_only" = 1 ]; then
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup.sh: every prerequisite is installed"
    exit 0
  fi
  echo "missing prerequisites:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "install them with: scripts/setup.sh" >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: every prerequisite is already installed"
  exit 0
fi

if [ ${#missing_targets[@]} -gt 0 ]; then
  echo "==> rustup target add ${missing_targets[*]}"
  rustup target add "${missing_targets[@]}"
fi
if [ ${#missing_components[@]} -gt 0 ]; then
  echo "==> rustup component add ${missing_components[*]}"
  rustup component add "${missing_components[@]}"
fi

if [ ${#missing_debs[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: apt-get is not available; install the equivalents of these Debian" >&2
    echo "packages with your system's package manager: ${missing_debs[*]}" >&2
    exit 1
  fi
  as_root() {
    if [ "$(id -u)" = 0 ]; then
      "$@"
    elif command -v sudo >/dev/null 2>&1; then
      sudo "$@"
    else
      echo "setup.sh: need root to install ${missing_debs[*]}, and sudo is missing" >&2
      exit 1
    fi
  }
  export DEBIAN_FRONTEND=noninteractive
  install=(apt-get install -y --no-install-recommends "${missing_debs[@]}")
  echo "==> ${install[*]}"
  if ! as_root "${install[@]}"; then
    echo "==> apt-get update (the install failed; the package lists may be stale)"
    as_root apt-get update
    as_root "${install[@]}"
  fi
fi

# Verify, so that a package whose command is still missing fails here.
exec "$0" --check
