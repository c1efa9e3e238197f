# Throwaway network namespaces for scripts, and exit hooks that remove them however the
# script ends (success, error, Ctrl-C, SIGTERM). Sourced by scripts/demo.
#
#   pktbroker_on_exit CMD...        run CMD when the script exits (last registered runs first)
#   pktbroker_netns_create NAME     `ip netns add NAME`, loopback up, deleted on exit
#   pktbroker_netns_delete NAME     stop every process inside NAME, then delete it

PKTBROKER_EXIT_HOOKS=()

pktbroker_on_exit() {
  PKTBROKER_EXIT_HOOKS+=("$*")
}

pktbroker_run_exit_hooks() {
  local i
  for ((i = ${#PKTBROKER_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
    eval "${PKTBROKER_EXIT_HOOKS[i]}" || true
  done
  PKTBROKER_EXIT_HOOKS=()
}
trap pktbroker_run_exit_hooks EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

pktbroker_netns_create() {
  local name=$1
  echo "==> creating network namespace $name (loopback up)"
  ip netns add "$name"
  pktbroker_on_exit pktbroker_netns_delete "$name"
  ip netns exec "$name" ip link set lo up
}

pktbroker_netns_delete() {
  local name=$1 pids _
  [[ -e "/run/netns/$name" ]] || return 0
  pids=$(ip netns pids "$name" 2>/dev/null || true)
  if [[ -n "$pids" ]]; then
    # shellcheck disable=SC2086  # one pid per word
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z "$(ip netns pids "$name" 2>/dev/null)" ]] && break
      sleep 0.1
    done
    pids=$(ip netns pids "$name" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
  fi
  echo "==> deleting network namespace $name"
  ip netns del "$name"
}
