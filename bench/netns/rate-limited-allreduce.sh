#!/usr/bin/env bash
# all_reduce between two "hosts" over a rate-limited link: two network namespaces joined by a veth pair
# (10.213.9.1 and 10.213.9.2, addresses that exist only inside them), each end shaped by tc's token bucket
# (tbf), one rank in each, the tcp transport across, MASTER_ADDR the first host's link address.
#   bench/netns/rate-limited-allreduce.sh [RATE] [MIN_BYTES] [MAX_BYTES] [ITERS]      (as root)
# RATE is tc's syntax (default 100mbit). Prints the limit in GB/s, then rank 0's bench table; the namespaces are
# removed on every exit. The test NetworkFaultTests does the same and checks busbw never beats the limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-100mbit}; min=${2:-262144}; max=${3:-16777216}; iters=${4:-5}
cli=src/NativeParallel.Cli/bin/Release/net10.0/NativeParallel.Cli.dll
[ -f "$cli" ] || dotnet build src/NativeParallel.Cli -c Release -v q >/dev/null
ns=(npbench$$a npbench$$b); dev=(npb$$a npb$$b); addr=(10.213.9.1 10.213.9.2)
cleanup() { for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done; }
trap cleanup EXIT
for h in 0 1; do ip netns add "${ns[$h]}"; done
ip link add "${dev[0]}" type veth peer name "${dev[1]}"
for h in 0 1; do
  ip link set "${dev[$h]}" netns "${ns[$h]}"
  ip -n "${ns[$h]}" addr add "${addr[$h]}/24" dev "${dev[$h]}"
  ip -n "${ns[$h]}" link set "${dev[$h]}" up
  ip -n "${ns[$h]}" link set lo up
  ip netns exec "${ns[$h]}" tc qdisc add dev "${dev[$h]}" root tbf rate "$rate" burst 64kb latency 200ms
done
echo "# link: $(ip netns exec "${ns[0]}" tc qdisc show dev "${dev[0]}")"
for h in 1 0; do
  env RANK=$h WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 GROUP_WORLD_SIZE=2 MASTER_ADDR="${addr[0]}" MASTER_PORT=29500 \
    NATIVEPARALLEL_HOST_ID="host$h" ip netns exec "${ns[$h]}" dotnet "$cli" bench collectives --transport tcp --op all_reduce \
    -b "$min" -e "$max" -f 4 -n "$iters" -w 1 > "/tmp/npbench$$-r$h.txt" 2>&1 &
done
wait
cat "/tmp/npbench$$-r0.txt"
# The table's bandwidth columns have two decimals, too few at these rates: busbw again from the times (2 ranks:
# busbw = algbw = bytes / time), beside the limit.
limit=$(ip netns exec "${ns[0]}" tc -j qdisc show dev "${dev[0]}" | sed -E 's/.*"rate":([0-9]+).*/\1/')
awk -v limit="$limit" 'BEGIN { printf "# limit %.5f GB/s\n# %10s %14s %14s %9s\n", limit / 1e9, "bytes", "busbw out", "busbw in", "of limit" }
  $1 ~ /^[0-9]+$/ && NF >= 13 { o = $1 / ($6 * 1e3); i = $1 / ($10 * 1e3);
    printf "  %10d %10.5f GB/s %10.5f GB/s %4.0f-%.0f %%\n", $1, o, i, 100 * (o < i ? o : i) * 1e9 / limit, 100 * (o > i ? o : i) * 1e9 / limit }' "/tmp/npbench$$-r0.txt"
rm -f /tmp/npbench$$-r*.txt
