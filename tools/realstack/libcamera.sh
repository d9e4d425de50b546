#!/usr/bin/env bash
# Build libcamera's `virtual` camera with its Python bindings, once, into a cache outside the checkout.
#
#   tools/realstack/libcamera.sh          prints the install prefix (builds it first if missing)
#
# The real-stack test tier (tests/realstack/) runs real picamera2 on it; camctl.testing.realstack
# finds the prefix. Idempotent: the prefix is named after libcamera's version and a hash of this
# script and the patch, and a finished build leaves a stamp; a second run only prints the prefix.
#
# What it does (facts behind each step: ../shared/REALSTACK.md, section "libcamera + real picamera2"):
# - installs the build dependencies from Debian's packages when missing (needs root);
# - fetches libcamera's source package from Debian (sid) with a private apt state, never touching the
#   system's apt sources;
# - applies tools/realstack/libcamera-virtual.patch: the virtual camera accepts the Raw role (one
#   10-bit Bayer sensor mode per listed size), writes YUV420/XRGB8888/XBGR8888/RGB888/BGR888 besides
#   NV12, paces frames like a sensor (FrameDurationLimits within the mode's range; a frame no request
#   was queued for is lost and its sequence skipped) and reports SensorTimestamp, FrameDuration,
#   ExposureTime and AnalogueGain in each request's metadata;
# - builds only the virtual pipeline and the Python bindings (meson + ninja, ~7 min on 2 cores);
# - installs tools/realstack/virtual.yaml, the virtual camera's list (copied again when it changes).
# Environment: CAMCTL_CACHE (default ~/.cache/camctl), LIBCAMERA_VERSION (default 0.7.2).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${CAMCTL_CACHE:-$HOME/.cache/camctl}"
version="${LIBCAMERA_VERSION:-0.7.2}"
patch="$here/libcamera-virtual.patch"
# Bump RECIPE when a build step below changes what gets built (camctl.testing.realstack reads it).
RECIPE=1
key="$( (cat "$patch"; echo "recipe=$RECIPE") | sha256sum | cut -c1-12)"
prefix="$cache/libcamera/$version-$key"
yaml="$prefix/share/libcamera/pipeline/virtual/virtual.yaml"

if [[ -f "$prefix/.complete" ]]; then
    cmp -s "$here/virtual.yaml" "$yaml" || cp "$here/virtual.yaml" "$yaml"
    echo "$prefix"
    exit 0
fi

log() { echo "libcamera.sh: $*" >&2; }
# shellcheck source=../debian-packages.sh
source "$(dirname "$0")/../debian-packages.sh"

# -- build dependencies (Debian 12) -------------------------------------------------------------
# (libcap-dev: picamera2's python-prctl compiles against it when the tests install picamera2)
deps=(g++ meson ninja-build pkg-config python3-dev python3-yaml python3-ply python3-jinja2
      pybind11-dev libyaml-dev libyuv-dev libjpeg-dev libgnutls28-dev libudev-dev libcap-dev)
ensure_debian_packages "build dependencies" "${deps[@]}" || exit 1

# -- source, from Debian's registry with a private apt state ------------------------------------
src="$cache/libcamera/src"
tarball="$src/libcamera_$version.orig.tar.gz"
if [[ ! -f "$tarball" ]]; then
    state="$src/apt"
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
         "http://deb.debian.org/debian sid main" > "$state/sources.list"
    opts=(-o "Dir::Etc::sourcelist=$state/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
          -o "APT::Sandbox::User=root")
    log "fetching libcamera $version's source from Debian"
    apt-get "${opts[@]}" update -qq >&2
    (cd "$src" && apt-get "${opts[@]}" source --download-only -qq libcamera >&2)
    [[ -f "$tarball" ]] || { log "Debian's libcamera source is not $version: $(ls "$src")"; exit 1; }
fi

# -- patch, configure, build, install ------------------------------------------------------------
work="$(mktemp -d "$cache/libcamera/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
tree="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)"
patch -d "$tree" -p1 --quiet < "$patch"
log "building libcamera $version (virtual pipeline, Python bindings) into $prefix"
# meson must find Debian's python3 (the bindings are then built for CPython 3.11)
PATH="/usr/bin:$PATH" meson setup "$work/build" "$tree" --prefix "$prefix" \
    -Dpipelines=virtual -Dipas= -Dpycamera=enabled -Dudev=enabled -Dcam=disabled \
    -Dqcam=disabled -Dgstreamer=disabled -Dv4l2=false -Dlc-compliance=disabled -Dtest=false \
    -Ddocumentation=disabled -Dbuildtype=release -Dwerror=false >"$work/meson.log" 2>&1 || \
    { tail -30 "$work/meson.log" >&2; exit 1; }
rm -rf "$prefix"
PATH="/usr/bin:$PATH" ninja -C "$work/build" install >"$work/ninja.log" 2>&1 || \
    { tail -40 "$work/ninja.log" >&2; exit 1; }

# The virtual camera's list (read from <prefix>/share at the manager's start; no override)
mkdir -p "$(dirname "$yaml")"
cp "$here/virtual.yaml" "$yaml"
touch "$prefix/.complete"
log "done"
echo "$prefix"
