#!/bin/bash
# Tests the bash completions of pktbrokerd, pktbrokerctl and pktreplay (config/completion/).
#
# Usage: test_completion.sh COMPLETION_DIR PKTBROKERD PKTBROKERCTL PKTREPLAY
#
# Sources bash-completion's /usr/share/bash-completion/bash_completion and the three completion
# files, simulates readline (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT) for command lines of
# each command, calls the completion function and compares COMPREPLY with what is expected (as
# sets: readline sorts them). Then runs each binary's --help and fails when an option of its
# Options section is not among the options the completion offers for "CMD -", or the completion
# offers an option --help does not print. Needs no network, no root, only bash-completion.
# Exit status: 0 all checks passed, 1 some check failed, 2 bad usage or missing bash-completion.

if (($# != 4)); then
    echo "usage: $0 COMPLETION_DIR PKTBROKERD PKTBROKERCTL PKTREPLAY" >&2
    exit 2
fi
completion_dir=$1
declare -A binary=([pktbrokerd]=$2 [pktbrokerctl]=$3 [pktreplay]=$4)
commands=(pktbrokerd pktbrokerctl pktreplay)

bash_completion=/usr/share/bash-completion/bash_completion
if [[ ! -r $bash_completion ]]; then
    echo "$0: $bash_completion is missing (apt-get install bash-completion)" >&2
    exit 2
fi

# Nothing from the user's or the system's own completions, and readline's default word breaks.
export BASH_COMPLETION_USER_FILE=/dev/null BASH_COMPLETION_COMPAT_DIR=/nonexistent
COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'
export LC_ALL=C
# shellcheck source=/dev/null
source "$bash_completion" || exit 2

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

declare -A function_of
for command in "${commands[@]}"; do
    file=$completion_dir/$command
    if [[ ! -r $file ]]; then
        echo "$0: no completion file $file" >&2
        exit 2
    fi
    # shellcheck source=/dev/null
    source "$file"
    spec=$(complete -p "$command" 2>/dev/null)
    if [[ $spec =~ -F\ ([^ ]+)\ $command$ ]]; then
        function_of[$command]=${BASH_REMATCH[1]}
    else
        fail "$file does not register a completion function for $command (complete -p: '$spec')"
    fi
done
((failures)) && exit 1

# The interfaces _available_interfaces offers (it asks ifconfig or ip): fixed, for the test.
_available_interfaces() {
    # shellcheck disable=SC2207
    COMPREPLY=($(compgen -W 'eth0 lo ppp0' -- "$cur"))
}

# complete LINE: completes at the end of LINE as readline would, leaving the candidates in
# COMPREPLY. LINE is split into words at blanks; ':' and '=' are words of their own (as in
# COMP_WORDBREAKS); a LINE ending in a blank completes an empty word.
complete_line() {
    local line=$1 char word="" i
    local -a comp_words=()
    for ((i = 0; i < ${#line}; i++)); do
        char=${line:i:1}
        case $char in
            ' ')
                [[ $word ]] && comp_words+=("$word")
                word=""
                ;;
            [=:])
                [[ $word && $word != [=:]* ]] && comp_words+=("$word") && word=""
                word+=$char
                ;;
            *)
                [[ $word == [=:]* ]] && comp_words+=("$word") && word=""
                word+=$char
                ;;
        esac
    done
    comp_words+=("$word")
    COMP_WORDS=("${comp_words[@]}")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE=$line
    COMP_POINT=${#line}
    COMP_TYPE=9
    COMP_KEY=9
    COMPREPLY=()
    local command=${COMP_WORDS[0]}
    "${function_of[$command]}" "$command" "${COMP_WORDS[COMP_CWORD]}" \
        "${COMP_WORDS[COMP_CWORD - 1]}" 2>/dev/null
}

# sorted VAR [WORD...]: VAR=the WORDs sorted, without duplicates, one a line (no subshell: the
# test stays fast on a busy machine).
sorted() {
    local -n into=$1
    shift
    local -a words=()
    local word i j
    for word; do
        for ((i = 0; i < ${#words[@]}; i++)); do
            [[ ${words[i]} < $word ]] || break
        done
        [[ ${words[i]-} == "$word" ]] && continue
        for ((j = ${#words[@]}; j > i; j--)); do words[j]=${words[j - 1]}; done
        words[i]=$word
    done
    local IFS=$'\n'
    # shellcheck disable=SC2034 # a nameref
    into="${words[*]}"
}

# check DIR LINE [EXPECTED...]: completing LINE in DIR gives exactly EXPECTED.
check() {
    local dir=$1 line=$2
    shift 2
    local expected actual
    sorted expected "$@"
    pushd "$dir" >/dev/null || exit 2
    complete_line "$line"
    popd >/dev/null || exit 2
    sorted actual "${COMPREPLY[@]}"
    if [[ $actual != "$expected" ]]; then
        fail "'$line' (in $dir): got [${actual//$'\n'/ }], expected [${expected//$'\n'/ }]"
    fi
}

scratch=$(mktemp -d) || exit 2
trap 'rm -rf "$scratch"' EXIT
policies=$scratch/policies
captures=$scratch/captures
mkdir -p "$policies" "$captures/sub"
touch "$policies/a.yaml" "$policies/b.txt"
touch "$captures/c.pcap" "$captures/d.pcapng" "$captures/e.cap" "$captures/f.txt" \
    "$captures/g.so" "$captures/h.yml"
mapfile -t users_ro < <(getent passwd | cut -d: -f1 | grep '^ro')

# pktbrokerd
check "$policies" 'pktbrokerd --c' --check --config
check "$policies" 'pktbrokerd --s' --syslog
check "$policies" 'pktbrokerd -V' -V
check "$policies" 'pktbrokerd --log-level ' trace debug info warn error off
check "$policies" 'pktbrokerd -l w' warn
check "$policies" 'pktbrokerd --log-level=d' debug
check "$policies" 'pktbrokerd -c ' a.yaml
check "$policies" 'pktbrokerd --check --config ' a.yaml
check "$policies" 'pktbrokerd --config=' a.yaml
check "$captures" 'pktbrokerd -c ' h.yml sub
check "$policies" 'pktbrokerd --threads '
check "$policies" 'pktbrokerd -f --user ro' "${users_ro[@]}"
check "$policies" 'pktbrokerd --help '

# pktbrokerctl
check "$policies" 'pktbrokerctl ' status sessions stats rules reload plugin channels kick channel-create \
    pending answer apps add-rule delete-rule
check "$policies" 'pktbrokerctl c' channels channel-create
check "$policies" 'pktbrokerctl a' answer apps add-rule
check "$policies" 'pktbrokerctl answer 7 ' allow deny
check "$policies" 'pktbrokerctl answer 7 allow --' --for --until-exit --always --socket --json --help
check "$policies" 'pktbrokerctl add-rule --verdict ' accept drop
check "$policies" 'pktbrokerctl add-rule --ma' --match
check "$policies" 'pktbrokerctl channel-create lab --l' --link
check "$policies" 'pktbrokerctl channel-create lab --link ' ethernet ip
check "$policies" 'pktbrokerctl channel-create lab --overflow b' backpressure
check "$policies" 'pktbrokerctl channel-create lab --delivery ' broadcast switch
check "$policies" 'pktbrokerctl channel-create lab --max-members '
check "$policies" 'pktbrokerctl s' sessions stats status
check "$policies" 'pktbrokerctl --j' --json
check "$policies" 'pktbrokerctl -' -s --socket --json -h --help
check "$policies" 'pktbrokerctl --json st' stats status
check "$policies" 'pktbrokerctl -s ' a.yaml b.txt
check "$policies" 'pktbrokerctl --socket=' a.yaml b.txt
check "$policies" 'pktbrokerctl -s /run/x.sock r' reload rules
check "$policies" 'pktbrokerctl status '
check "$policies" 'pktbrokerctl status --' --socket --json --help
check "$policies" 'pktbrokerctl plugin ' resend
check "$policies" 'pktbrokerctl plugin -'
check "$policies" 'pktbrokerctl -s sock plugin resend ' wakeup down status help
check "$policies" 'pktbrokerctl plugin resend st' status
check "$policies" 'pktbrokerctl plugin resend wakeup ' --iface --addr
check "$policies" 'pktbrokerctl plugin resend wakeup --iface ' eth0 lo ppp0
check "$policies" 'pktbrokerctl plugin resend wakeup --iface p' ppp0
check "$policies" 'pktbrokerctl plugin resend wakeup --iface ppp0 ' --addr
check "$policies" 'pktbrokerctl plugin resend wakeup --iface ppp0 --addr '
check "$policies" 'pktbrokerctl plugin resend down ' --iface
check "$policies" 'pktbrokerctl plugin resend down --iface lo '
check "$policies" 'pktbrokerctl plugin resend status ' --json
check "$policies" 'pktbrokerctl plugin resend status --json '
check "$policies" 'pktbrokerctl plugin dns '

# pktreplay
check "$captures" 'pktreplay ' c.pcap d.pcapng e.cap sub
check "$policies" 'pktreplay '
check "$captures" 'pktreplay --t' --target --timing --turn-timeout --turn-max-time --turn-max-bytes
check "$captures" 'pktreplay --timing ' asap original
check "$captures" 'pktreplay --timing=o' original
check "$captures" 'pktreplay -c '
check "$captures" 'pktreplay --speed '
check "$captures" 'pktreplay -t 192.0.2.1 ' c.pcap d.pcapng e.cap sub
check "$captures" 'pktreplay --pcap-out ' c.pcap sub
check "$captures" 'pktreplay --plugin ' dns ftp http resend tls
check "$captures" 'pktreplay --plugin h' http
check "$captures" 'pktreplay --plugin x=' g.so sub
check "$captures" 'pktreplay --plugin=x=' g.so sub
check "$captures" 'pktreplay c.pcap --no' --no-plugins
check "$captures" 'pktreplay c.pcap -t 192.0.2.1 x'
check "$captures" 'pktreplay --json c.pcap --a' --all

# Every option in the Options section of CMD --help is offered for "CMD -", and nothing else.
for command in "${commands[@]}"; do
    if ! help=$("${binary[$command]}" --help); then
        fail "${binary[$command]} --help failed"
        continue
    fi
    section=$(sed -n '/^Options:$/,/^$/p' <<<"$help")
    # shellcheck disable=SC2046 # split into options
    sorted documented $(grep -oE -- '--[a-z-]+' <<<"$section") \
        $(grep -oE -- '^  -[A-Za-z] ' <<<"$section")
    # shellcheck disable=SC2154 # set by sorted
    if ! grep -qx -- --help <<<"$documented"; then
        fail "no Options section with --help in '${binary[$command]} --help'"
        continue
    fi
    complete_line "$command -"
    declare -A is_offered=() is_documented=()
    for option in "${COMPREPLY[@]}"; do is_offered[$option]=1; done
    missing=() extra=()
    for option in $documented; do
        is_documented[$option]=1
        [[ ${is_offered[$option]-} ]] || missing+=("$option")
    done
    for option in "${COMPREPLY[@]}"; do
        [[ ${is_documented[$option]-} ]] || extra+=("$option")
    done
    ((${#missing[@]})) &&
        fail "$command --help prints options its completion lacks: ${missing[*]}"
    ((${#extra[@]})) &&
        fail "$command's completion offers options --help does not print: ${extra[*]}"
    unset is_offered is_documented
done

if ((failures)); then
    echo "$failures completion check(s) failed" >&2
    exit 1
fi
echo "all completion checks passed"
