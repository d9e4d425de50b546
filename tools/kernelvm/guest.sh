#!/bin/sh
# Runs inside the kernel tier's VM (camctl.testing.kernelvm boots it): sets up the kernel's GPIO
# simulator and an I2C stub, then runs the command given (pytest) with the chip's names in the
# environment. The guest shares the host's root filesystem read-only (/tmp and the checkout,
# which camctl.testing.kernelvm gives as an overlay, are writable; the host never sees writes).
#
#   guest.sh COMMAND [ARG...]
#
# Environment for COMMAND:
#   CAMCTL_IN_KERNELVM=1         the tests that need the VM run only where this is set
#   CAMCTL_KERNELVM_CHIP         the gpio-sim chip's character device (/dev/gpiochipN)
#   CAMCTL_KERNELVM_CHIP_NUM     N, as gpiozero's LGPIOFactory(chip=N) wants it
#   CAMCTL_KERNELVM_SIM          its sysfs directory: sim_gpioK/pull drives line K
#   CAMCTL_KERNELVM_LINES        the chip's line count (BCM GPIOn is line n)
#   CAMCTL_KERNELVM_I2C          the i2c-stub bus's /dev/i2c-N (chips at CAMCTL_KERNELVM_I2C_ADDRS)
# The last line printed is "kernelvm: exit N", N being COMMAND's exit status.
set -eu

LINES=${CAMCTL_KERNELVM_LINES:-58}   # a Pi 4's gpiochip0 has 58 lines
# i2c-stub chips (at most 10): the sensors' default addresses, ICM-42688-P 0x68, LSM6DSOX 0x6A,
# BMP390 0x76/0x77 (camctl/board/config_sensors.py PARTS; tests/kernelvm/test_in_vm_i2c.py)
I2C_ADDRS=${CAMCTL_KERNELVM_I2C_ADDRS:-0x68,0x6A,0x76,0x77}

fail() { echo "guest.sh: $*" >&2; echo "kernelvm: exit 125"; exit 125; }

modprobe gpio-sim || fail "modprobe gpio-sim failed (is the tree's extra/ built and depmod'ed?)"
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
cfg=/sys/kernel/config/gpio-sim/camctl
mkdir "$cfg" "$cfg/bank0"
echo "$LINES" > "$cfg/bank0/num_lines"
echo 1 > "$cfg/live"
chip=$(cat "$cfg/bank0/chip_name")
dev=$(cat "$cfg/dev_name")
[ -c "/dev/$chip" ] || fail "no /dev/$chip after gpio-sim went live"

modprobe i2c-dev
modprobe i2c-stub chip_addr="$I2C_ADDRS"
i2c=""
for a in /sys/class/i2c-adapter/i2c-*; do
    case "$(cat "$a/name")" in *stub*) i2c=/dev/$(basename "$a") ;; esac
done
[ -n "$i2c" ] || fail "no i2c-stub adapter"

export CAMCTL_IN_KERNELVM=1 CAMCTL_KERNELVM_CHIP="/dev/$chip" \
    CAMCTL_KERNELVM_CHIP_NUM="${chip#gpiochip}" \
    CAMCTL_KERNELVM_SIM="/sys/devices/platform/$dev/$chip" CAMCTL_KERNELVM_LINES="$LINES" \
    CAMCTL_KERNELVM_I2C="$i2c" CAMCTL_KERNELVM_I2C_ADDRS="$I2C_ADDRS"
# bytecode written in the VM would vanish with it
export PYTHONDONTWRITEBYTECODE=1
set +e
"$@"
rc=$?
echo "kernelvm: exit $rc"
exit "$rc"
