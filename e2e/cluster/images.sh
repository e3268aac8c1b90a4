#!/usr/bin/env bash
# The images a real node runs, built here (there is no registry) into buildah's store:
#   images.sh [build]        the pod sandbox (pause), the Python base and the project image
#   images.sh project        the Python base and the project image only (`make image`)
#   images.sh import SOCKET  put the pause and project images into the containerd at SOCKET
#                            (namespace k8s.io) unless it already holds those image ids
# Each image is rebuilt only when its inputs change (their hash is a label on the image).
# Prints the project image name as the last line.
#   SERVICEPOOL_IMAGE       project image name (default localhost/servicepool:dev)
#   SERVICEPOOL_BASE_IMAGE  its base (default: the Debian bookworm base built here)
#   SERVICEPOOL_BUILD_IMAGE where its wheels are built: the base's Python plus a C compiler
#                           (default: the Debian base built here with gcc and Python's
#                           headers when the base is the one built here, else the base)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

IMAGE="${SERVICEPOOL_IMAGE:-localhost/servicepool:dev}"
LOCAL_BASE="localhost/servicepool-base:bookworm"
BASE_IMAGE="${SERVICEPOOL_BASE_IMAGE:-$LOCAL_BASE}"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
LOCAL_BUILD="localhost/servicepool-build:bookworm"
BUILD_PACKAGES="$BASE_PACKAGES,gcc,libc6-dev,python3-dev"
if [[ "$BASE_IMAGE" == "$LOCAL_BASE" ]]; then
  BUILD_IMAGE="${SERVICEPOOL_BUILD_IMAGE:-$LOCAL_BUILD}"
else
  BUILD_IMAGE="${SERVICEPOOL_BUILD_IMAGE:-$BASE_IMAGE}"
fi
LABEL="dev.servicepool.inputs"
WORK="$SERVICEPOOL_CACHE/images"
BUILD_MOUNTS="/dev/servicepool-build"

die() { echo "images.sh: $*" >&2; exit 1; }
label_of() {
  buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true
}
id_of() { buildah images --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -n 1 || true; }
hash_of() { sha256sum | cut -c 1-64; }

# After a tag moved to a new build, drop the image it left untagged (if nothing uses it).
drop_replaced() {  # old-id image
  [[ -n "$1" && "$1" != "$(id_of "$2")" ]] && buildah rmi "$1" >/dev/null 2>&1 || true
}

# Unmount whatever debootstrap left mounted under a root filesystem (it bind-mounts the
# host's /dev where it cannot create device nodes).
unmount_under() {
  local target
  awk -v root="$1/" 'index($2, root) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r target; do umount -l "$target"; done
}

remove_rootfs() {
  [[ -d "$1" ]] || return 0
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}

build_pause() {
  local inputs old tmp ctr
  inputs="$({ declare -f build_pause; cat "$HERE/pause.c"; } | hash_of)"
  [[ "$(label_of "$PAUSE_IMAGE")" == "$inputs" ]] && return 0
  echo "images.sh: building $PAUSE_IMAGE" >&2
  old="$(id_of "$PAUSE_IMAGE")"
  tmp="$(mktemp -d)"
  gcc -static -Os -s -o "$tmp/pause" "$HERE/pause.c"
  ctr="$(buildah from scratch)"
  buildah copy -q "$ctr" "$tmp/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --label "$LABEL=$inputs" "$ctr"
  buildah commit -q --rm "$ctr" "$PAUSE_IMAGE" >/dev/null
  rm -rf "$tmp"
  drop_replaced "$old" "$PAUSE_IMAGE"
}

# Debian's python refuses system-wide pip installs (PEP 668): the image's pip is a venv's,
# first on PATH, so the Dockerfile's plain `pip install` lands there.
build_base() {  # image packages
  local name="$1" packages="$2" mirror inputs old rootfs ctr mnt
  mirror="$(debian_mirror bookworm)"
  [[ -n "$mirror" ]] || die "no Debian bookworm mirror in /etc/apt/sources.list{,.d}"
  inputs="$({ declare -f build_base; echo "$mirror $packages"; } | hash_of)"
  [[ "$(label_of "$name")" == "$inputs" ]] && return 0
  echo "images.sh: building $name with debootstrap from $mirror (about a minute)" >&2
  old="$(id_of "$name")"
  rootfs="$WORK/rootfs-${name##*/}"
  remove_rootfs "$rootfs"
  mkdir -p "$WORK"
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" \
    > "$WORK/debootstrap.log" 2>&1 \
    || { remove_rootfs "$rootfs"; die "debootstrap failed, see $WORK/debootstrap.log"; }
  chroot "$rootfs" python3 -m venv /opt/venv
  chroot "$rootfs" apt-get clean
  # The runtime supplies these (device nodes, DNS, hostname); the host's copies do not belong
  # in an image.
  unmount_under "$rootfs"
  find "$rootfs/dev" "$rootfs/var/lib/apt/lists" -mindepth 1 -delete
  rm -f "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
  ctr="$(buildah from scratch)"
  mnt="$(buildah mount "$ctr")"
  tar -C "$rootfs" -cf - . | tar -C "$mnt" -xpf -
  buildah umount "$ctr" >/dev/null
  buildah config --cmd '["python3"]' --env LANG=C.UTF-8 --env VIRTUAL_ENV=/opt/venv \
    --env PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "$LABEL=$inputs" "$ctr"
  buildah commit -q --rm "$ctr" "$name" >/dev/null
  remove_rootfs "$rootfs"
  drop_replaced "$old" "$name"
}

# The host's pip settings (index, find-links, timeouts) and CA bundle, for pip in the build:
# writes a pip.conf naming them where they are mounted, prints "HOST-PATH MOUNT-PATH" lines.
# The mounts go under /dev, a fresh tmpfs in every RUN step, so not even an empty mountpoint
# ends up in the image.
host_pip_conf() {
  python3 - "$1" "$BUILD_MOUNTS" <<'PY'
import ast, configparser, os, subprocess, sys

conf_path, mounts_dir = sys.argv[1:]
listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                         capture_output=True, text=True).stdout.splitlines()
conf = configparser.ConfigParser(interpolation=None)
conf["global"] = {"cert": "/etc/ssl/certs/ca-certificates.crt"}
# Configuration files first, then the environment, which overrides them.
for line in sorted(listing, key=lambda line: line.startswith(":env:.")):
    name, _, value = line.partition("=")
    section, _, key = name.rpartition(".")
    section = "global" if section == ":env:" else section
    if not conf.has_section(section):
        conf.add_section(section)
    conf[section][key] = ast.literal_eval(value)
mounts = {conf_path: f"{mounts_dir}/pip.conf"}
for section in conf.sections():
    for key in ("cert", "client-cert", "find-links"):
        if key in conf[section]:
            values = []
            for value in conf[section][key].split():
                if os.path.exists(value):
                    mounts.setdefault(value, f"{mounts_dir}/{len(mounts)}")
                    value = mounts[value]
                values.append(value)
            conf[section][key] = " ".join(values)
with open(conf_path, "w") as out:
    conf.write(out)
for host, mounted in mounts.items():
    print(host, mounted)
PY
}

build_project() {
  local base_id build_id inputs old conf host mounted mounts=()
  [[ "$BASE_IMAGE" == "$LOCAL_BASE" ]] && build_base "$LOCAL_BASE" "$BASE_PACKAGES"
  [[ "$BUILD_IMAGE" == "$LOCAL_BUILD" ]] && build_base "$LOCAL_BUILD" "$BUILD_PACKAGES"
  base_id="$(id_of "$BASE_IMAGE")"
  build_id="$(id_of "$BUILD_IMAGE")"
  inputs="$(cd "$ROOT" && {
    echo "$BASE_IMAGE $base_id $BUILD_IMAGE $build_id"
    find Dockerfile pyproject.toml README.md api proxy operator dev -type f \
      -not -path '*/__pycache__/*' -not -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum
  } | hash_of)"
  if [[ "$(label_of "$IMAGE")" == "$inputs" ]]; then
    echo "images.sh: $IMAGE is up to date" >&2
    return 0
  fi
  echo "images.sh: building $IMAGE from $ROOT/Dockerfile on $BASE_IMAGE (wheels built on $BUILD_IMAGE)" >&2
  old="$(id_of "$IMAGE")"
  conf="$(mktemp)"
  # pip in the build reaches the package index like pip on this host: same network, settings
  # and CA bundle, mounted into the RUN steps only.
  while read -r host mounted; do
    mounts+=(-v "$host:$mounted:ro")
  done < <(host_pip_conf "$conf")
  buildah bud -q --isolation oci --network host --label "$LABEL=$inputs" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "BUILD_IMAGE=$BUILD_IMAGE" --build-arg "PIP_CONFIG_FILE=$BUILD_MOUNTS/pip.conf" \
    "${mounts[@]}" -f "$ROOT/Dockerfile" -t "$IMAGE" "$ROOT" >/dev/null \
    || { rm -f "$conf"; die "building $IMAGE failed"; }
  rm -f "$conf"
  drop_replaced "$old" "$IMAGE"
}

# Import IMAGE into containerd unless it already has the same image id (config digest).
import_image() {  # socket image
  local ctr=(ctr -a "$1" -n k8s.io) want manifest have="" archive
  want="$(id_of "$2")"
  [[ -n "$want" ]] || die "$2 is not built; run images.sh first"
  manifest="$("${ctr[@]}" images ls "name==$2" | awk 'NR == 2 { print $3 }')"
  [[ -n "$manifest" ]] && have="$("${ctr[@]}" content get "$manifest" | jq -r .config.digest)"
  [[ "$have" == "$want" ]] && return 0
  echo "images.sh: importing $2 into containerd" >&2
  archive="$(mktemp -u --suffix .tar)"
  buildah push -q "$2" "oci-archive:$archive:$2" >/dev/null
  "${ctr[@]}" images import "$archive" >/dev/null \
    || { rm -f "$archive"; die "importing $2 failed"; }
  rm -f "$archive"
}

case "${1:-build}" in
  build) build_pause; build_project ;;
  project) build_project ;;
  import)
    socket="${2:?usage: images.sh import SOCKET}"
    import_image "$socket" "$PAUSE_IMAGE"
    import_image "$socket" "$IMAGE"
    ;;
  *) die "usage: images.sh [build|project|import SOCKET]" ;;
esac
echo "$IMAGE"
