#!/usr/bin/env bash
# Prepare the kernel GPIO test tier, once, into a cache outside the checkout.
#
#   tools/kernelvm/setup.sh          prints the tier's directory (prepares it first if missing)
#
# The tier (tests/test_kernel_gpio.py, tests/kernelvm/) boots Debian's own kernel in a small QEMU
# VM with virtme-ng and drives the kernel's GPIO simulator (gpio-sim) through lgpio and gpiozero's
# LGPIOFactory: camctl.testing.kernelvm finds the directory and runs tests in the VM. Idempotent:
# a finished directory has a stamp, and a second run only prints it (it does not ask the archive
# for a newer kernel; delete the directory, or bump RECIPE, to move on).
#
# What it does (facts behind each step: ../shared/REALSTACK.md, "A real kernel's GPIO (and I2C)
# in a VM"):
# - installs the host packages when missing (needs root): QEMU, busybox (virtme's initramfs),
#   kmod, and the compiler the kernel's headers were built with;
# - fetches Debian's kernel image, headers, kbuild and linux-source with `apt-get download` for
#   the ABI `linux-image-amd64` points at now (6.1.0-NN moves with security updates) and unpacks
#   them with `dpkg-deb -x`: nothing is installed into /boot or /lib/modules;
# - builds gpio-sim, gpio-mockup and irq_sim (disabled in Debian's config) as out-of-tree modules
#   from linux-source into the unpacked tree's lib/modules/<ver>/extra, and runs depmod there;
# - installs virtme-ng with pip into its own venv in the directory (never the project's env).
# The downloads (~220 MB) are deleted once the tree is built; ~440 MB stays (most of it the
# kernel's own modules, which the guest loads from there).
# Environment: CAMCTL_CACHE (default ~/.cache/camctl).
set -euo pipefail

base="${CAMCTL_CACHE:-$HOME/.cache/camctl}/kernelvm"
# Bump RECIPE when a step below changes what gets built (camctl.testing.kernelvm reads it).
RECIPE=1
VIRTME_NG="virtme-ng==1.42"

log() { echo "setup.sh: $*" >&2; }
# shellcheck source=../debian-packages.sh
source "$(dirname "$0")/../debian-packages.sh"

# -- already prepared? (one setup at a time: test runs in other checkouts share the cache) -------
mkdir -p "$base"
exec 9>"$base/.setup.lock"
flock 9
shopt -s nullglob
done_dirs=("$base"/*-r"$RECIPE"/.complete)
if ((${#done_dirs[@]})); then
    dirname "${done_dirs[-1]}"
    exit 0
fi

# -- host packages (Debian 12) -------------------------------------------------------------------
deps=(qemu-system-x86 busybox-static kmod gcc-12 make libc6-dev file)
ensure_debian_packages "host packages" "${deps[@]}" || exit 1

# -- which kernel: the ABI the archive's metapackage depends on now -------------------------------
abi_of() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/.*Depends: linux-image-\(6\.1\.0-[0-9]*\)-amd64$/\1/p' | head -1
}
abi="$(abi_of)"
if [[ -z "$abi" ]]; then
    apt-get update -qq >&2
    abi="$(abi_of)"
fi
[[ -n "$abi" ]] || { log "apt knows no linux-image-amd64 for 6.1 (not Debian 12?)"; exit 1; }
kver="$abi-amd64"
pkgver="$(apt-cache show "linux-image-$kver" | sed -n 's/^Version: //p' | head -1)"
dir="$base/$kver-r$RECIPE"

# -- download and unpack (into the directory itself: its stamp comes last, a failure removes it;
# in place because the venv's scripts name their own path) ---------------------------------------
work="$dir"
rm -rf "$work"
mkdir "$work"
trap 'rm -rf "$work"' EXIT
root="$work/root"
pkgs=("linux-image-$kver" "linux-headers-$kver" "linux-headers-$abi-common"
      "linux-kbuild-6.1" "linux-source-6.1")
log "fetching Debian's kernel $kver ($pkgver): ${pkgs[*]}"
mkdir -p "$work/debs"
# (as root, apt would hand the download to its _apt user, who may not reach the cache)
(cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root "${pkgs[@]/%/=$pkgver}" >&2)
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root"
done
rm -rf "$work/debs"

# -- gpio-sim, gpio-mockup, irq_sim as out-of-tree modules ----------------------------------------
src="$work/modsrc"
mkdir -p "$src"
tar -xJf "$root"/usr/src/linux-source-6.1.tar.xz -C "$work" --wildcards --strip-components=1 \
    '*/drivers/gpio/gpio-sim.c' '*/drivers/gpio/gpio-mockup.c' '*/drivers/gpio/gpiolib.h' \
    '*/kernel/irq/irq_sim.c'
cp "$work"/drivers/gpio/{gpio-sim.c,gpio-mockup.c,gpiolib.h} "$work/kernel/irq/irq_sim.c" "$src/"
rm -rf "$root/usr/src/linux-source-6.1.tar.xz" "$work/drivers" "$work/kernel"
# irq_sim built in uses irq_to_desc(), which is not exported to modules; generic_handle_irq()
# does the same for a virtual irq. A module needs its licence to use GPL symbols.
sed -i 's/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/' "$src/irq_sim.c"
grep -q 'generic_handle_irq(irqnum)' "$src/irq_sim.c" || \
    { log "irq_sim.c changed upstream: $(grep -n irq_to_desc "$src/irq_sim.c")"; exit 1; }
echo 'MODULE_LICENSE("GPL");' >> "$src/irq_sim.c"
echo 'obj-m := irq_sim.o gpio-sim.o gpio-mockup.o' > "$src/Kbuild"
headers="$root/usr/src/linux-headers-$kver"
# the headers' Makefile includes the common headers' by absolute path: point it at the tree
sed -i "s|/usr/src/|$root/usr/src/|g" "$headers/Makefile"
log "building gpio-sim, gpio-mockup, irq_sim for $kver"
make -C "$headers" M="$src" CC=gcc-12 modules >"$work/make.log" 2>&1 || \
    { tail -30 "$work/make.log" >&2; exit 1; }
moddir="$root/lib/modules/$kver"
mkdir -p "$moddir/extra"
cp "$src"/{irq_sim,gpio-sim,gpio-mockup}.ko "$moddir/extra/"
# the headers were for the build only; the guest needs the image and lib/modules
rm -rf "$root/usr/src" "$root/usr/lib/linux-kbuild-6.1" "$root/usr/share" "$moddir/build" \
    "$moddir/source"
depmod -b "$root" "$kver"
modinfo -b "$root" -k "$kver" gpio-sim | grep -q '^depends:.*irq_sim' || \
    { log "depmod: gpio-sim does not depend on irq_sim"; exit 1; }

# -- virtme-ng, in its own venv ------------------------------------------------------------------
log "installing $VIRTME_NG"
python3 -m venv "$work/vng"
"$work/vng/bin/python" -m pip install --quiet --disable-pip-version-check "$VIRTME_NG" >&2

echo "$kver" > "$work/kernel-version"
touch "$work/.complete"
trap - EXIT
log "done"
echo "$dir"
