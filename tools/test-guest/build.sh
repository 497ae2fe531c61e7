#!/bin/sh
# Build xenstack's test guest from Debian packages, cached by package versions.
#
#   tools/test-guest/build.sh [CACHE]      prints the directory that holds the guest
#
# CACHE defaults to $XSG_CACHE or /var/cache/xenstack-test-guest. The guest lives in
# CACHE/<key>/, where <key> digests the kernel and busybox package versions and this
# directory's files, so a second run with nothing changed returns at once. Needs apt lists
# (apt-get update once), dpkg, kmod, e2fsprogs, lz4 and python3; no root.
#
# Writes: vmlinuz (Debian's cloud kernel), vmlinux (the same, uncompressed: PVH boot),
# initrd.img (busybox, virtio modules, /init, the agent), disk.raw (a 64 MiB ext4 root with
# the same tree), cmdline (the kernel command line), versions (what was used); and points
# CACHE/current at it (the "xenstack test guest" template boots CACHE/current/vmlinux).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:-${XSG_CACHE:-/var/cache/xenstack-test-guest}}
META=${XSG_KERNEL_META:-linux-image-cloud-amd64}
kpkg=$(apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$kpkg" ] || { echo "build.sh: cannot resolve $META (run apt-get update)" >&2; exit 1; }
ver() { apt-cache policy "$1" | awk '/Candidate:/{print $2; exit}'; }
versions="$kpkg=$(ver "$kpkg") busybox-static=$(ver busybox-static)"
# openssl (and the libraries it needs) for nova's agent protocol: the password is AES-128-CBC
SSL_DEBS="openssl libssl3 libc6"
for p in $SSL_DEBS; do versions="$versions $p=$(ver "$p")"; done
key=$( (echo "$versions"; cat "$HERE"/build.sh "$HERE"/init "$HERE"/xsg-agent "$HERE"/udhcpc.script) |
       sha256sum | cut -c1-16)
OUT=$CACHE/$key
if [ -s "$OUT/versions" ]; then ln -sfn "$key" "$CACHE/current"; echo "$OUT"; exit 0; fi
# one build at a time (test workers in parallel): the others wait, then find it made
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -s "$OUT/versions" ]; then ln -sfn "$key" "$CACHE/current"; echo "$OUT"; exit 0; fi
DEBS=$CACHE/debs
mkdir -p "$DEBS"
W=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$W"' EXIT
( cd "$DEBS"
  for p in "$kpkg" busybox-static $SSL_DEBS; do
    ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" >/dev/null 2>&1
  done )
mkdir -p "$W/k" "$W/bb" "$W/out"
dpkg -x "$DEBS"/"${kpkg}"_*.deb "$W/k"
dpkg -x "$DEBS"/busybox-static_*.deb "$W/bb"
KVER=${kpkg#linux-image-}
cp "$W/k/boot/vmlinuz-$KVER" "$W/out/vmlinuz"
# the bzImage's payload is an LZ4 legacy frame: unpack it for a PVH boot (-kernel vmlinux)
off=$(python3 -c "import sys;d=open(sys.argv[1],'rb').read();print(d.find(b'\x02\x21\x4c\x18'))" \
      "$W/out/vmlinuz")
tail -c +$((off + 1)) "$W/out/vmlinuz" | lz4 -dc > "$W/out/vmlinux" 2>/dev/null || true

depmod -b "$W/k" "$KVER"
R=$W/root
mkdir -p "$R/bin" "$R/sbin" "$R/etc/acpi/PWRF" "$R/lib/modules" "$R/proc" "$R/sys" "$R/dev" \
         "$R/run" "$R/tmp" "$R/newroot" "$R/root" "$R/mnt" "$R/var"
: > "$R/etc/modules"
for m in virtio_pci virtio_mmio virtio_blk virtio_net virtio_console virtio_balloon button evdev \
         pvpanic_mmio; do
  modprobe -d "$W/k" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  b=$(basename "$ko"); cp "$ko" "$R/lib/modules/$b"; echo "$b" >> "$R/etc/modules"
done
# the CD drive (IDE on the pc machine) and ISO 9660: loaded by /init in the background, after
# the boot's own modules, so probing the IDE ports does not delay the boot
: > "$R/etc/modules.late"
for m in ata_piix sr_mod isofs; do
  modprobe -d "$W/k" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  b=$(basename "$ko"); grep -qx "$b" "$R/etc/modules" && continue
  cp "$ko" "$R/lib/modules/$b"; echo "$b" >> "$R/etc/modules.late"
done
cp "$W/bb/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
ln -sf ../bin/busybox "$R/sbin/init"
mkdir -p "$W/ssl" "$R/lib/x86_64-linux-gnu" "$R/lib64"
for p in $SSL_DEBS; do dpkg -x "$DEBS"/"${p}"_*.deb "$W/ssl"; done
cp "$W/ssl/usr/bin/openssl" "$R/bin/openssl"
for l in libssl.so.3 libcrypto.so.3 libc.so.6; do
  cp -L "$W/ssl/usr/lib/x86_64-linux-gnu/$l" "$R/lib/x86_64-linux-gnu/$l" 2>/dev/null ||
    cp -L "$W/ssl/lib/x86_64-linux-gnu/$l" "$R/lib/x86_64-linux-gnu/$l"
done
cp -L "$W/ssl/lib64/ld-linux-x86-64.so.2" "$R/lib64/" 2>/dev/null ||
  cp -L "$W/ssl/usr/lib64/ld-linux-x86-64.so.2" "$R/lib64/"
ln -sf ../run "$R/var/run"
cat > "$R/etc/os-release" <<OS
NAME="xenstack test guest"
ID=xsg
VERSION_ID=1
PRETTY_NAME="xenstack test guest (busybox, Linux $KVER)"
OS
echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
echo "root:x:0:" > "$R/etc/group"
install -m 755 "$HERE/init" "$R/init"
install -m 755 "$HERE/xsg-agent" "$R/sbin/xsg-agent"
install -m 755 "$HERE/udhcpc.script" "$R/etc/udhcpc.script"
printf '#!/bin/sh\necho XSG-POWERBUTTON > /dev/console\nsync; poweroff -f\n' \
  > "$R/etc/acpi/PWRF/00000080"
chmod 755 "$R/etc/acpi/PWRF/00000080"
( cd "$R" && find . | LC_ALL=C sort | "$W/bb/bin/busybox" cpio -o -H newc 2>/dev/null ) \
  > "$W/out/initrd.img"
touch "$R/.rootfs"
mke2fs -q -t ext4 -L xsgroot -d "$R" -E root_owner=0:0 "$W/out/disk.raw" 64M >&2
khz=$(awk -F: '/^cpu MHz/{printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
echo "console=ttyS0 panic=-1 quiet${khz:+ tsc_early_khz=$khz}" > "$W/out/cmdline"
echo "$versions" > "$W/out/versions"
chmod 755 "$W/out"; chmod 644 "$W/out"/*
rm -rf "$OUT"; mv "$W/out" "$OUT"
ln -sfn "$key" "$CACHE/current"   # what the "xenstack test guest" template boots
echo "$OUT"
