#!/usr/bin/env bash
# tuning/irq-affinity.sh: steer a NIC's interrupts and queues to the CPUs of
# the shardcast node's cores, so that a packet is handled on the CPU whose
# executor owns (or accepted) its socket. See docs/tuning.md#nic-queues-and-irqs.
#
#   tuning/irq-affinity.sh --iface eth0 --cores N [--first-cpu K] [--rps]
#                          [--rfs-entries E] [--dry-run] [--root DIR]
#
# The node pins its core i to CPU (K + i) mod C (C = online CPUs; the same
# rule as shardcast-node --cores N --first-cpu K). This script uses that list:
#   - IRQ j of the NIC (its MSI-X vectors, in order)  -> core (j mod N)'s CPU
#   - XPS: tx queue q sends from                       -> core (q mod N)'s CPU
#   - with --rps (NICs with fewer queues than cores): RPS spreads each rx
#     queue over all N CPUs and RFS steers a flow to the CPU that last read
#     its socket (rps_sock_flow_entries = E, rps_flow_cnt = E / rx queues).
# It prints every write as "write PATH VALUE"; --dry-run only prints.
# --root DIR reads and writes DIR/sys and DIR/proc (a fake tree, for tests).
# Stop irqbalance first (it rewrites smp_affinity): systemctl disable --now irqbalance.
# Nothing here persists across a reboot or a NIC reset: run it from a unit
# ordered after the network is up (docs/tuning.md). Needs root.
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
die() { echo "irq-affinity: $*" >&2; exit 2; }

IFACE="" CORES="" FIRST=0 DRY=0 RPS=0 RFS=32768 ROOT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --iface) IFACE=${2:?}; shift 2 ;;
    --cores) CORES=${2:?}; shift 2 ;;
    --first-cpu) FIRST=${2:?}; shift 2 ;;
    --rps) RPS=1; shift ;;
    --rfs-entries) RFS=${2:?}; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --root) ROOT=${2%/}; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ -n "$IFACE" ] || die "--iface is required"
[ -n "$CORES" ] || die "--cores is required (the node's --cores; 0 = every online CPU)"
[[ $CORES =~ ^[0-9]+$ && $FIRST =~ ^[0-9]+$ && $RFS =~ ^[0-9]+$ ]] || die "numbers expected"

# Online CPUs, e.g. "0-7" or "0-3,8-11": the count C.
online=$(cat "$ROOT/sys/devices/system/cpu/online") || die "cannot read CPUs online"
C=0
IFS=, read -ra parts <<<"$online"
for p in "${parts[@]}"; do
  lo=${p%-*} hi=${p#*-}
  C=$((C + hi - lo + 1))
done
[ "$CORES" -eq 0 ] && CORES=$C
[ "$CORES" -le "$C" ] || die "--cores $CORES exceeds the $C online CPUs"
CPUS=()
for ((i = 0; i < CORES; i++)); do CPUS+=($(((FIRST + i) % C))); done

# Hex mask of a list of CPUs, in 32-bit groups separated by commas.
mask() {
  local -a groups=()
  local c g top=0 out="" i
  for c in "$@"; do
    g=$((c / 32)); groups[g]=$(( ${groups[g]:-0} | (1 << (c % 32)) ))
    [ "$g" -gt "$top" ] && top=$g
  done
  for ((i = top; i >= 0; i--)); do
    if [ "$i" -eq "$top" ]; then out=$(printf '%x' "${groups[i]:-0}")
    else out+=$(printf ',%08x' "${groups[i]:-0}"); fi
  done
  echo "$out"
}

w() {
  echo "write $1 $2"
  [ "$DRY" -eq 1 ] && return 0
  printf '%s\n' "$2" >"$1" || die "cannot write $1"
}

NET="$ROOT/sys/class/net/$IFACE"
[ -d "$NET" ] || die "no network interface $IFACE under $ROOT/sys/class/net"
echo "# $IFACE: node cores $CORES from CPU $FIRST -> CPUs ${CPUS[*]} (of $C online)$([ $DRY -eq 1 ] && echo ', dry run')"

if [ -z "$ROOT" ] && pgrep -x irqbalance >/dev/null 2>&1; then
  echo "warning: irqbalance is running and will move these IRQs again: systemctl disable --now irqbalance" >&2
fi

# 1. IRQs: the NIC's MSI/MSI-X vectors, else the lines of /proc/interrupts naming it.
IRQS=()
if [ -d "$NET/device/msi_irqs" ]; then
  mapfile -t IRQS < <(ls "$NET/device/msi_irqs" | sort -n)
fi
if [ ${#IRQS[@]} -eq 0 ] && [ -r "$ROOT/proc/interrupts" ]; then
  mapfile -t IRQS < <(awk -v n="$IFACE" 'index($0, n) { sub(":", "", $1); print $1 }' "$ROOT/proc/interrupts")
fi
[ ${#IRQS[@]} -gt 0 ] || echo "# no IRQs found for $IFACE (a virtual NIC?): queues only" >&2
for j in "${!IRQS[@]}"; do
  f="$ROOT/proc/irq/${IRQS[j]}/smp_affinity_list"
  [ -e "$f" ] || continue
  w "$f" "${CPUS[j % CORES]}"
done

# 2. XPS: each tx queue sends from one core's CPU.
mapfile -t TXQ < <(ls -d "$NET"/queues/tx-* 2>/dev/null | sed 's/.*tx-//' | sort -n)
for q in "${TXQ[@]}"; do
  w "$NET/queues/tx-$q/xps_cpus" "$(mask "${CPUS[q % CORES]}")"
done

# 3. RPS/RFS, on request.
mapfile -t RXQ < <(ls -d "$NET"/queues/rx-* 2>/dev/null | sed 's/.*rx-//' | sort -n)
if [ "$RPS" -eq 1 ] && [ ${#RXQ[@]} -gt 0 ]; then
  w "$ROOT/proc/sys/net/core/rps_sock_flow_entries" "$RFS"
  for q in "${RXQ[@]}"; do
    w "$NET/queues/rx-$q/rps_cpus" "$(mask "${CPUS[@]}")"
    w "$NET/queues/rx-$q/rps_flow_cnt" "$((RFS / ${#RXQ[@]}))"
  done
fi
if [ ${#RXQ[@]} -ne "$CORES" ]; then
  echo "# $IFACE has ${#RXQ[@]} rx queue(s) for $CORES cores: 'ethtool -L $IFACE combined $CORES' if it supports that many, else --rps" >&2
fi
