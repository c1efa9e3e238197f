#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds a program against it twice: with
# find_package(pktbroker) and with pkg-config; and builds plugins/README.md's example plugin
# against the installed SDK and has the installed pktbrokerd load it. The installed binaries run
# from the moved prefix without LD_LIBRARY_PATH or PKTBROKER_PLUGIN_PATH, and a DESTDIR-staged
# install writes nothing outside the stage.
# Usage: test_install.sh BUILD_DIR [SANITIZERS] (a sanitized library needs a consumer built with
# the same sanitizers).
set -euo pipefail
build=$1
flags=${2:+-fsanitize=$2}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
DESTDIR="$work/stage" cmake --install "$build" --prefix /opt/pktbroker >/dev/null
outside=$(find "$work/stage" -mindepth 1 -not -path "$work/stage/opt" -not -path "$work/stage/opt/pktbroker*")
[[ -z "$outside" ]] || { echo "installed outside the prefix: $outside"; exit 1; }
test -f "$work/stage/opt/pktbroker/etc/pktbroker/policy.yaml"
libdir=$(find "$work/prefix" -name 'libpktbroker.so' -printf '%h\n' | head -1)

cmake -S "$here/consumer" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
LD_LIBRARY_PATH=$libdir "$work/cmake-build/consumer" | tee "$work/cmake.out"

PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --exists pktbroker
# shellcheck disable=SC2046  # word splitting of the flags is intended
# shellcheck disable=SC2086  # $flags is empty or one flag
c++ $flags "$here/consumer/consumer.cpp" -o "$work/pc-consumer" \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs pktbroker)
LD_LIBRARY_PATH=$libdir "$work/pc-consumer" | tee "$work/pc.out"

expected="parse=none dport=53 connect=failed"
grep -qx "$expected" "$work/cmake.out"
grep -qx "$expected" "$work/pc.out"
echo "find_package and pkg-config consumers built and ran"

# A plugin built from the README's example alone, against the installed header.
cc -shared -fPIC -Wall -Wextra -Werror -std=c11 \
  $(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags pktbroker-plugin) \
  "$here/../../plugins/example/example.c" -o "$work/example.so"
plugindir=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --variable=plugindir pktbroker-plugin)
test -f "$plugindir/dns.so"  # the shipped plugins are where the .pc file says
cat >"$work/policy.yaml" <<POLICY
plugins:
  - {name: example, path: $work/example.so, config: {forbidden: shutdown}}
  - {name: dns}
rules:
  - {name: no-shutdown, match: {example.word: shutdown}, verdict: drop}
  - {name: echo, match: {proto: udp, dport: 7}, verdict: {inspect: [example]}}
POLICY
env -u LD_LIBRARY_PATH -u PKTBROKER_PLUGIN_PATH "$work/prefix/bin/pktbrokerctl" --help >/dev/null
env -u LD_LIBRARY_PATH -u PKTBROKER_PLUGIN_PATH \
  "$work/prefix/sbin/pktbrokerd" --check --config "$work/policy.yaml" | tee "$work/check.out"
grep -q "OK: 1 queue(s), 2 rule(s), 2 plugin(s)" "$work/check.out"
echo "the example plugin built against the installed SDK and loaded"
