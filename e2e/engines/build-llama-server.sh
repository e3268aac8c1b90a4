#!/usr/bin/env bash
# Build and cache llama.cpp's llama-server (CPU only) from the llama.cpp source that PyPI's
# llama-cpp-python sdist vendors; print the binary's path as the last line. The engine tests
# (tests/engines) and servicepool_dev.llama_engines run it. Idempotent: a cached binary returns
# at once. Needs cmake and g++ (install-deps.sh). Cold: 403 s on 2 cores (40 s of it the 77 MB
# download); a 13 MB static binary tuned to this machine's CPU (GGML_NATIVE), so the cache
# belongs to the machine. Prebuilt llama-server wheels are no substitute: they die with
# "Illegal instruction" where their instruction set does not match the CPU.
set -euo pipefail

# The newest llama-cpp-python whose sdist carries vendor/llama.cpp/tools/server, and the
# llama.cpp release it vendors (its CHANGELOG names the commit; release b11312 is that commit).
PIN="0.3.36"
LLAMA_COMMIT="0c1e57098"
LLAMA_BUILD_NUMBER="11312"
CACHE="${SERVICEPOOL_CACHE:-$HOME/.cache/servicepool}/llama-server-b$LLAMA_BUILD_NUMBER"
BINARY="$CACHE/llama-server"

if [[ -x "$BINARY" ]]; then
  echo "$BINARY"
  exit 0
fi

# One build at a time (make deps and a test session may both ask); the winner's binary serves all.
mkdir -p "$(dirname "$CACHE")"
exec 9>"$CACHE.lock"
flock 9
if [[ -x "$BINARY" ]]; then
  echo "$BINARY"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
WORK="$CACHE.tmp"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT  # nothing half-built stays behind
started=$SECONDS
echo "build-llama-server.sh: llama.cpp b$LLAMA_BUILD_NUMBER from llama-cpp-python $PIN's sdist" >&2
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps -d "$WORK" \
  "llama-cpp-python==$PIN" >&2
tar -xzf "$WORK"/llama_cpp_python-"$PIN".tar.gz -C "$WORK" \
  "llama_cpp_python-$PIN/vendor/llama.cpp" "llama_cpp_python-$PIN/CHANGELOG.md"
grep -q "llama.cpp@$LLAMA_COMMIT" "$WORK/llama_cpp_python-$PIN/CHANGELOG.md" \
  || { echo "build-llama-server.sh: $PIN does not vendor llama.cpp $LLAMA_COMMIT" >&2; exit 1; }
SOURCE="$WORK/llama_cpp_python-$PIN/vendor/llama.cpp"

# No web UI (the prebuilt one would be downloaded), no HTTPS, one static binary. Two cores
# shared with everything else: two jobs at low priority.
echo "build-llama-server.sh: compiling (about 6 minutes on 2 cores)" >&2
cmake -S "$SOURCE" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_NUMBER="$LLAMA_BUILD_NUMBER" -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT" >&2
nice -n 19 cmake --build "$WORK/build" --target llama-server -j 2 >&2
install -m 0755 -s "$WORK/build/bin/llama-server" "$WORK/llama-server"
echo "build-llama-server.sh: built in $((SECONDS - started)) s" >&2

mkdir -p "$CACHE"
mv "$WORK/llama-server" "$BINARY"
echo "$BINARY"
