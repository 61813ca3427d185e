#!/usr/bin/env bash
# Checks deploy/systemd as shipped: the unit passes `systemd-analyze verify`,
# and three nodes started with the unit's own ExecStart line and the example
# environment file (edited per node as deploy/README.md says) form a cluster
# across three network namespaces with their own addresses (10.0.0.1-3, as
# in the example): writes through a follower, reads from every node, a
# leader stopped with SIGTERM and started again with the same command, and
# a member replaced by a new machine that joins (CAIRN_JOIN); then a new
# cluster with TLS and client certificates made by deploy/certs.sh.
#
# Needs root (ip netns, veth, a bridge); .ci/run runs it. Nothing outside
# the namespaces it creates is touched; they are removed on exit.
#   deploy/test.sh                 # builds cairn (static)
#   CAIRN=/path/to/cairn deploy/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "deploy/test.sh: needs root (network namespaces)"; exit 1
fi
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
command -v systemd-analyze >/dev/null || { apt-get update -qq && apt-get install -y -qq systemd >/dev/null; }

work=$(mktemp -d /tmp/cairn-deploy-test.XXXXXX)
bin="${CAIRN:-}"
# Static (CGO_ENABLED=0), as deploy/README.md builds it for servers.
if [ -z "$bin" ]; then bin="$work/cairn"; CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/cairn; fi
unit=deploy/systemd/cairn.service
envfile=deploy/systemd/cairn.env
run="cd$$"                  # namespace names: <run>-hub, <run>-n1..n3
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for ns in hub n1 n2 n3 n4; do ip netns del "$run-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "deploy/test.sh: FAIL: $*"; for i in 1 2 3; do echo "--- n$i.log"; tail -20 "$work/n$i.log" 2>/dev/null || true; done; exit 1; }
step() { echo "deploy/test.sh: $*"; }

step "systemd-analyze verify $unit (ExecStart pointed at the built binary)"
sed "s|/usr/local/bin/cairn serve|$bin serve|" "$unit" > "$work/cairn.service"
out=$(systemd-analyze verify "$work/cairn.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"

# The ExecStart command line, continuation lines joined.
execstart=$(awk '/^ExecStart=/{on=1} on{line=line $0; if ($0 !~ /\\$/) {print line; exit} } ' "$unit" \
  | sed -e 's/\\//g' -e 's/^ExecStart=//' -e "s|/usr/local/bin/cairn|$bin|" | tr -s ' ')
case "$execstart" in "$bin serve"*) ;; *) fail "could not read ExecStart from $unit: $execstart" ;; esac

step "network: a bridge in $run-hub (10.0.0.254), nodes in $run-n1..n4 (10.0.0.1-4)"
ip netns add "$run-hub"
ip -n "$run-hub" link add br0 type bridge
ip -n "$run-hub" addr add 10.0.0.254/24 dev br0
ip -n "$run-hub" link set br0 up
ip -n "$run-hub" link set lo up
for i in 1 2 3 4; do
  ns="$run-n$i"
  ip netns add "$ns"
  ip link add "v$run$i" type veth peer name eth0 netns "$ns"
  ip link set "v$run$i" netns "$run-hub"
  ip -n "$run-hub" link set "v$run$i" master br0 up
  ip -n "$ns" addr add "10.0.0.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done
hub() { ip netns exec "$run-hub" "$@"; }

# node_env i: the example file as the README says to edit it for node i,
# with the data under the test's directory and two more flags set.
node_env() {
  sed -e "s/^CAIRN_NODE_ID=.*/CAIRN_NODE_ID=n$1/" \
      -e "s/^CAIRN_RAFT_ADVERTISE=10\.0\.0\.1:/CAIRN_RAFT_ADVERTISE=10.0.0.$1:/" \
      -e "s/^CAIRN_GRPC_ADVERTISE=10\.0\.0\.1:/CAIRN_GRPC_ADVERTISE=10.0.0.$1:/" \
      -e "s|^CAIRN_DATA_DIR=.*|CAIRN_DATA_DIR=$work/n$1/data|" \
      "$envfile" > "$work/n$1.env"
  printf 'CAIRN_RETAIN_CHECKPOINTS=3\nCAIRN_LOG_LEVEL=info\n' >> "$work/n$1.env"
}

# start i: the unit's ExecStart in node i's namespace, with node i's
# environment file read as systemd reads it (KEY=VALUE lines, # comments,
# the rest of the line is the value) and ExecStart expanded as systemd
# does, should it name variables: ${VAR} one argument, $VAR split at
# whitespace.
start() {
  local i=$1
  (
    while IFS= read -r line; do
      case "$line" in ''|'#'*) continue ;; esac
      export "${line%%=*}=${line#*=}"
    done < "$work/n$i.env"
    cmd=$(printf '%s' "$execstart" | sed -E 's/\$\{([A-Z_]+)\}/"${\1}"/g')
    eval "exec ip netns exec $run-n$i $cmd" >> "$work/n$i.log" 2>&1
  ) &
  pids[$i]=$!
}

curlflags=()  # https and a client certificate in the TLS phase
scheme=http
ready() { hub curl -sf -m 1 "${curlflags[@]}" "$scheme://10.0.0.$1:7301/readyz" >/dev/null; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}
tlsflags=()   # the CLI's TLS flags, set for the TLS phase
cli() { hub "$bin" --endpoints 10.0.0.1:7101,10.0.0.2:7101,10.0.0.3:7101 --timeout 20s "${tlsflags[@]}" "$@"; }
leader_of() { cli cluster status -o json | python3 -c 'import json,sys; print(next(m["id"] for m in json.load(sys.stdin)["nodes"] if m["role"]=="leader"))'; }
has_leader() { cli cluster status -o json | python3 -c 'import json,sys; sys.exit(0 if any(m["role"]=="leader" for m in json.load(sys.stdin)["nodes"]) else 1)'; }
# every node's gRPC address as announced, from the replicated state
advertised() { cli cluster status -o json | python3 -c '
import json,sys
ms = json.load(sys.stdin)["nodes"]
sys.exit(0 if sorted(m["grpc_address"] for m in ms) == ["10.0.0.%d:7101" % i for i in (1,2,3)] else 1)'; }

step "three nodes from $unit + $envfile"
for i in 1 2 3; do node_env "$i"; start "$i"; done
for i in 1 2 3; do wait_for 60 "n$i /readyz" ready "$i"; done
# Formed: one leader, two followers, each at its own address (a node's
# client address is known once it announced it, shortly after /readyz).
formed() { cli cluster status -o json | python3 -c '
import json,sys
ms = json.load(sys.stdin)["nodes"]
ok = sorted(m["role"] for m in ms) == ["follower", "follower", "leader"]
ok = ok and all(m["raft_address"] == "10.0.0.%s:7201" % m["id"][1:] for m in ms)
sys.exit(0 if ok else 1)'; }
wait_for 30 "one leader and two followers at 10.0.0.1-3" formed
leader=$(leader_of)
follower=n1; [ "$leader" = n1 ] && follower=n2
step "leader $leader; a write through $follower, reads from every node"
out=$(hub "$bin" --endpoints "10.0.0.${follower#n}:7101" put deploy/key one) || fail "put via $follower: $out"
for i in 1 2 3; do
  v=$(hub "$bin" --endpoints "10.0.0.$i:7101" get deploy/key) || fail "get from n$i"
  [ "$v" = one ] || fail "n$i read '$v', want one"
done
wait_for 20 "every node's gRPC address announced" advertised

step "SIGTERM to the leader ($leader): a new leader, writes go on, the old one restarts with the same command"
li=${leader#n}
kill -TERM "${pids[$li]}"
wait "${pids[$li]}" || fail "$leader exited with status $? after SIGTERM"
grep -q "level=ERROR" "$work/n$li.log" && fail "$leader logged errors while stopping"
wait_for 30 "a new leader" has_leader
cli put deploy/key two >/dev/null || fail "put after the leader stopped"
start "$li"
wait_for 60 "$leader /readyz after its restart" ready "$li"
v=$(hub "$bin" --endpoints "10.0.0.$li:7101" get deploy/key --consistency stale)
[ "$v" = two ] || fail "$leader read '$v' after its restart, want two"
step "replace n3: cluster remove n3, which exits by itself (status 0); n4 (10.0.0.4) starts with CAIRN_JOIN and no CAIRN_BOOTSTRAP"
cli cluster remove n3 >/dev/null || fail "cluster remove n3"
for _ in $(seq 150); do kill -0 "${pids[3]}" 2>/dev/null || break; sleep 0.1; done
kill -0 "${pids[3]}" 2>/dev/null && fail "n3 still runs 15 s after its removal"
wait "${pids[3]}" || fail "removed n3 exited with status $?"
node_env 4
sed -i -e '/^CAIRN_BOOTSTRAP=/d' "$work/n4.env"
echo "CAIRN_JOIN=10.0.0.1:7101" >> "$work/n4.env"
start 4
wait_for 60 "n4 /readyz" ready 4
replaced() { cli cluster status -o json | python3 -c '
import json,sys
ms = json.load(sys.stdin)["nodes"]
ok = sorted(m["id"] for m in ms) == ["n1", "n2", "n4"]
ok = ok and sorted(m["role"] for m in ms) == ["follower", "follower", "leader"]
ok = ok and all(m["raft_address"] == "10.0.0.%s:7201" % m["id"][1:] for m in ms)
sys.exit(0 if ok else 1)'; }
wait_for 30 "members n1, n2, n4: one leader, two followers" replaced
v=$(hub "$bin" --endpoints 10.0.0.4:7101 get deploy/key --consistency stale)
[ "$v" = two ] || fail "n4 read '$v', want two"

for i in 1 2 4; do kill -TERM "${pids[$i]}"; done
for i in 1 2 4; do wait "${pids[$i]}" || fail "n$i exited with status $? after SIGTERM"; done
pids=()

step "TLS: certificates from deploy/certs.sh, the example's TLS lines uncommented, a new cluster"
deploy/certs.sh "$work/tls" n1=10.0.0.1 n2=10.0.0.2 n3=10.0.0.3 client:ops >/dev/null
for i in 1 2 3; do
  node_env "$i"
  sed -i -e "s|^CAIRN_DATA_DIR=.*|CAIRN_DATA_DIR=$work/tls-n$i/data|" \
    -e "s|^#CAIRN_TLS_CA=.*|CAIRN_TLS_CA=$work/tls/ca.pem|" \
    -e "s|^#CAIRN_TLS_CERT=.*|CAIRN_TLS_CERT=$work/tls/n$i.pem|" \
    -e "s|^#CAIRN_TLS_KEY=.*|CAIRN_TLS_KEY=$work/tls/n$i-key.pem|" \
    -e "s|^#CAIRN_TLS_CLIENT_AUTH=.*|CAIRN_TLS_CLIENT_AUTH=true|" \
    -e "s|^#CAIRN_HTTP_TLS=.*|CAIRN_HTTP_TLS=true|" "$work/n$i.env"
  grep -q "^CAIRN_HTTP_TLS=true" "$work/n$i.env" || fail "the example's TLS lines are not where the README says"
  start "$i"
done
scheme=https
curlflags=(--cacert "$work/tls/ca.pem" --cert "$work/tls/ops.pem" --key "$work/tls/ops-key.pem")
for i in 1 2 3; do wait_for 60 "n$i /readyz (TLS)" ready "$i"; done
hub curl -sf -m 2 "http://10.0.0.1:7301/readyz" >/dev/null 2>&1 && fail "/readyz answered plaintext HTTP with --http-tls"
hub curl -sf -m 2 --cacert "$work/tls/ca.pem" "https://10.0.0.1:7301/metrics" >/dev/null 2>&1 && fail "/metrics answered a client without a certificate"
tlsflags=(--cacert "$work/tls/ca.pem" --cert "$work/tls/ops.pem" --key "$work/tls/ops-key.pem")
wait_for 30 "one leader and two followers at 10.0.0.1-3 (TLS)" formed
leader=$(leader_of)
follower=n1; [ "$leader" = n1 ] && follower=n2
hub "$bin" --endpoints "10.0.0.${follower#n}:7101" "${tlsflags[@]}" put deploy/tls yes >/dev/null || fail "put via $follower over TLS"
for i in 1 2 3; do
  v=$(hub "$bin" --endpoints "10.0.0.$i:7101" "${tlsflags[@]}" get deploy/tls) || fail "get from n$i over TLS"
  [ "$v" = yes ] || fail "n$i read '$v' over TLS, want yes"
done
if out=$(hub "$bin" --endpoints 10.0.0.1:7101 --timeout 2s get deploy/tls 2>&1); then
  fail "a plaintext client read from a TLS cluster: $out"
fi
if out=$(hub "$bin" --endpoints 10.0.0.1:7101 --timeout 2s --cacert "$work/tls/ca.pem" get deploy/tls 2>&1); then
  fail "a client without a certificate read from a cluster that requires one: $out"
fi
for i in 1 2 3; do kill -TERM "${pids[$i]}"; done
for i in 1 2 3; do wait "${pids[$i]}" || fail "n$i exited with status $? after SIGTERM"; done
pids=()
step "ok: the unit verifies; three namespaces ran the unit's ExecStart; failover, restart, a replaced member and TLS work"
