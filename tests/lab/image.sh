#!/bin/bash
# Build (once) the lab guest image; print the directory that holds it and
# "built" or "cached":
#   vmlinuz   Debian's 6.1 kernel (linux-image-6.1.0-N-amd64, not -cloud: that
#             flavour lacks 9p and scsi_dh_alua)
#   root.cpio uncompressed initramfs = the whole bookworm root file system
#   kver      the guest kernel release
# The cache key hashes this script, packages.txt, the kernel package version
# and the google-re2 version, so changing any of them builds a new image.
# Cache: $PERIPETY_LAB_CACHE (default /var/cache/peripety-lab), outside git.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PERIPETY_LAB_CACHE:-/var/cache/peripety-lab}
mkdir -p "$cache"

# Newest Debian 6.1 kernel ABI known to apt (apt-get update first if none).
kpkg() { apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | awk '{print $1}' | sort -V | tail -1; }
image_pkg=$(kpkg)
if [ -z "$image_pkg" ]; then apt-get update -qq; image_pkg=$(kpkg); fi
[ -n "$image_pkg" ] || { echo "image.sh: no linux-image-6.1.0-N-amd64 in apt" >&2; exit 1; }
abi=${image_pkg#linux-image-}                      # 6.1.0-57-amd64
headers_pkg=linux-headers-$abi
common_pkg=linux-headers-${abi%-amd64}-common
kversion=$(apt-cache policy "$image_pkg" | awk '/Candidate:/ {print $2}')
# bookworm has no python3-re2: the guest gets the same google-re2 wheel as the
# host venv (Python 3.11 on both sides, self-contained manylinux wheel).
re2_version=$("$repo/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("google-re2"))')

key=$( { cat "$0" "$here/packages.txt"; echo "$image_pkg $kversion re2 $re2_version"; } | sha256sum | cut -c1-16)
out=$cache/$key
if [ -f "$out/root.cpio" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/kver" ]; then
    echo "$out cached"
    exit 0
fi

exec 9>"$cache/.build.lock"
flock 9
if [ -f "$out/root.cpio" ]; then echo "$out cached"; exit 0; fi   # built while we waited
start=$(date +%s)
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "image.sh: building $key ($image_pkg $kversion) in $work" >&2

mapfile -t pkgs < <(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$')
include=$(IFS=,; echo "${pkgs[*]}")
mmdebstrap --variant=essential --include="$include" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --aptopt='Apt::Install-Recommends "false"' \
    bookworm "$root" http://deb.debian.org/debian >&2

# Kernel, modules and headers unpacked, not installed: no initramfs-tools, no
# gcc (bcc needs only the header tree).
debs=$work/debs
mkdir -p "$debs"
(cd "$debs" && apt-get download "$image_pkg" "$headers_pkg" "$common_pkg" >&2)
# (through tar --keep-directory-symlink: dpkg-deb -x would turn the merged-usr
# /lib symlink into a directory)
for d in "$debs"/*.deb; do dpkg-deb --fsys-tarfile "$d" | tar -x -C "$root" --keep-directory-symlink; done
kver=$abi
# Trim modules the lab never loads (graphics, sound, radios, media, IB).
for d in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband \
         drivers/staging drivers/iio drivers/bluetooth drivers/isdn sound net/wireless net/mac80211 \
         net/bluetooth drivers/hwmon drivers/comedi drivers/usb/gadget; do
    rm -rf "$root/lib/modules/$kver/kernel/$d"
done
depmod -b "$root" "$kver"
ln -sfn "/usr/src/linux-headers-$kver" "$root/lib/modules/$kver/build"
img=$work/img
mkdir -p "$img"
cp "$root/boot/vmlinuz-$kver" "$img/vmlinuz"
rm -rf "$root/boot"/* "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*

"$repo/.venv/bin/pip" install -q --no-deps --only-binary=:all: --no-compile \
    --target "$root/usr/local/lib/python3.11/dist-packages" "google-re2==$re2_version" >&2

# Guest configuration that does not change per run.
echo peripety-lab > "$root/etc/hostname"
echo "127.0.1.1 peripety-lab" >> "$root/etc/hosts"
: > "$root/etc/fstab"
mkdir -p "$root/mnt/src" "$root/mnt/out"
# The stub /init: mount the project share and hand over to the init script of
# *this run's* tree, so changing the scenarios never rebuilds the image.
cat > "$root/lab-init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe -a virtio_pci 9pnet_virtio 9p
mount -t 9p -o trans=virtio,version=9p2000.L,ro src /mnt/src && exec /bin/bash /mnt/src/tests/lab/guest/init.sh
echo "lab-init: no project share (mount_tag src)" >&2
exec /bin/bash
INIT
chmod +x "$root/lab-init"
echo "$kver" > "$img/kver"

(cd "$root" && find . -xdev -print0 | cpio --null -o -H newc --quiet) > "$img/root.cpio"
rm -rf "$out"
mv "$img" "$out"
echo "image.sh: built $out in $(( $(date +%s) - start )) s ($(du -sh "$out/root.cpio" | cut -f1) root)" >&2
echo "$out built"
