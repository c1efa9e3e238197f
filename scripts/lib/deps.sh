# Debian packages pktbroker needs, and an installer that adds only the missing ones.
# Sourced by scripts/build, scripts/test, scripts/demo.

PKTBROKER_PACKAGES=(
  # build
  cmake g++ make pkg-config
  libnetfilter-queue-dev libmnl-dev
  libboost-dev libboost-program-options-dev
  libspdlog-dev libyaml-cpp-dev catch2
  # tests and demo
  python3 iptables iproute2 iputils-ping curl netcat-openbsd util-linux procps kmod
  # lint
  clang-format clang-tidy
)

pktbroker_install_deps() {
  local missing=()
  local package
  for package in "${PKTBROKER_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]})); then
    if ((EUID != 0)); then
      echo "pktbroker: missing Debian packages: ${missing[*]}; run as root to install them" >&2
      return 1
    fi
    echo "==> installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # NFQUEUE and conntrack support are modules on Debian kernels; they may also be built in.
  modprobe -q nfnetlink_queue 2>/dev/null || true
  modprobe -q xt_NFQUEUE 2>/dev/null || true
  modprobe -q nf_conntrack 2>/dev/null || true
}
