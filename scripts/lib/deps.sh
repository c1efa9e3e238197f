# The Debian packages pktbroker needs, and an installer that adds only the missing ones.
# Sourced by scripts/build, scripts/test and scripts/demo. Adding a package is adding its name
# to one of the lines below.

PKTBROKER_PACKAGES=(
  # build
  cmake make g++ pkg-config
  libnetfilter-queue-dev libmnl-dev
  libboost-dev libboost-program-options-dev
  libspdlog-dev libyaml-cpp-dev catch2
  libtins-dev libpcap-dev libcap-dev libsystemd-dev
  # the identity eBPF programs: compiled by clang, stripped by llvm-strip, embedded by bpftool
  libbpf-dev bpftool clang llvm
  # run, test, demo
  iptables iproute2 iputils-ping curl netcat-openbsd dnsutils python3 tmux
  util-linux procps kmod conntrack tcpdump time
  # servers the plugin tests talk to (started by the tests inside namespaces, never as services)
  dnsmasq-base nginx-light vsftpd openssl
  # the benchmark (scripts/bench): TCP bulk, a reference HTTP client, the chart
  iperf3 apache2-utils gnuplot-nox
  # style checks (scripts/lint)
  clang-format clang-tidy
  # man pages, bash completions, the Debian package and its checks (scripts/package)
  scdoc bash-completion dpkg-dev fakeroot lintian
  # the Prometheus endpoint (prometheus-cpp) and its format check (promtool, in prometheus)
  prometheus-cpp-dev prometheus
  # fuzzing (scripts/fuzz): clang with its sanitizer and libFuzzer runtimes
  clang libclang-rt-dev
)

# Kernel modules for NFQUEUE and conntrack; they may also be built into the kernel.
PKTBROKER_MODULES=(nfnetlink_queue xt_NFQUEUE nf_conntrack)

pktbroker_install_deps() {
  local missing=() package module
  # scripts/test calls scripts/build: check once per run.
  [[ -z "${PKTBROKER_DEPS_CHECKED:-}" ]] || return 0
  for package in "${PKTBROKER_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$package")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "==> Debian packages: all ${#PKTBROKER_PACKAGES[@]} present"
  else
    if ((EUID != 0)); then
      echo "pktbroker: missing Debian packages: ${missing[*]}; run as root to install them" >&2
      return 1
    fi
    echo "==> installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # nginx and vsftpd would start as services on the host: the tests run their own.
    local no_services=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      no_services=1
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [[ -z "$no_services" ]] || rm -f /usr/sbin/policy-rc.d
  fi

  echo "==> loading kernel modules (best effort): ${PKTBROKER_MODULES[*]}"
  for module in "${PKTBROKER_MODULES[@]}"; do
    modprobe -q "$module" 2>/dev/null || true
  done
  if [[ ! -e /proc/net/netfilter/nfnetlink_queue ]]; then
    echo "pktbroker: warning: this kernel shows no NFQUEUE support" \
      "(/proc/net/netfilter/nfnetlink_queue is missing)" >&2
  fi
  export PKTBROKER_DEPS_CHECKED=1
}
