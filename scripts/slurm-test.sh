#!/usr/bin/env bash
# End-to-end test of `lra sweep --slurm` on a real single-node Slurm cluster (called by .ci/run):
# installs Debian's slurm-wlm and munge if missing, starts munged + slurmctld + slurmd on
# localhost with a throw-away config, submits the generated job array for a tiny two-row sweep,
# waits for it, checks that every cell's summary.json arrived and that `lra table` reads them,
# then preempts a longer job (SIGTERM) and checks that it re-queued itself and finished, and stops
# the daemons it started.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
lra="${CARGO_TARGET_DIR:-$repo/target}/release/lra"
[[ -x "$lra" ]] || cargo build --release --bin lra

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; }
fi

work=$(mktemp -d /tmp/lra-slurm.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# munge: a key of our own and a socket in the work folder, so a system munged is left alone.
mkdir -p "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1 count=1024 status=none
chmod 700 "$work/munge" && chmod 400 "$work/munge/munge.key"
chown -R munge:munge "$work/munge" 2>/dev/null || true
munge_socket="$work/munge/munge.socket"
runuser -u munge -- munged --key-file="$work/munge/munge.key" --socket="$munge_socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed" 2>/dev/null ||
    munged --force --key-file="$work/munge/munge.key" --socket="$munge_socket" \
        --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
        --seed-file="$work/munge/munged.seed"
for _ in $(seq 50); do [[ -s "$work/munge/munged.pid" ]] && break; sleep 0.1; done
pids+=("$(cat "$work/munge/munged.pid")")

node=$(hostname -s)
cpus=$(nproc)
mem=$(($(free -m | awk '/^Mem:/ {print $2}') - 512))
mkdir -p "$work/spool/ctld" "$work/spool/d"
export SLURM_CONF="$work/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=lra-ci
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$munge_socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$work/spool/ctld
SlurmdSpoolDir=$work/spool/d
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do [[ -s "$work/slurmctld.pid" && -s "$work/slurmd.pid" ]] && break; sleep 0.1; done
pids+=("$(cat "$work/slurmctld.pid")" "$(cat "$work/slurmd.pid")")
for _ in $(seq 60); do sinfo -h -o %t 2>/dev/null | grep -qE '^idle' && break; sleep 1; done
sinfo -h -o %t | grep -qE '^idle' || { echo "slurm node never became idle"; cat "$work"/*.log; exit 1; }

# A tiny sweep: 2 rows × 1 task × 1 seed, one array task per cell.
cat >"$work/sweep.toml" <<EOF
preset = "tiny"
tasks = ["listops"]
seeds = [0]
out = "$work/out"
set = [
    "task.data_dir=$work/data",
    "task.generate.train=256",
    "task.generate.val=64",
    "task.generate.test=64",
    "task.max_len=32",
    "task.generate.max_len=32",
    "model.d_model=16",
    "model.d_ffn=32",
    "model.head_hidden=16",
    "train.steps=20",
    "train.eval_every=10",
]

[slurm]
cpus_per_task = 1
mem = "1G"
time = "00:10:00"

[[row]]
name = "Transformer"
attention = "softmax"

[[row]]
name = "Linear Transformer"
attention = "linear"
EOF
# Generate the data once before the array starts, so the two tasks do not both write it.
"$lra" data generate listops --out "$work/data" --train 256 --val 64 --test 64 --min-len 10 --max-len 32 --max-depth 4 --max-args 5 >/dev/null
script=$("$lra" sweep "$work/sweep.toml" --slurm)
sbatch --wait "$script" || { echo "job array failed"; cat "$work"/out/slurm/*.out "$work"/*.log; exit 1; }

for cell in transformer linear-transformer; do
    summary="$work/out/listops/$cell/s0/summary.json"
    [[ -s "$summary" ]] || { echo "missing $summary"; cat "$work"/out/slurm/*.out; exit 1; }
done
table=$("$lra" table "$work/sweep.toml" 2>/dev/null)
echo "$table"
rows=$(grep -cE '^\| (Transformer|Linear Transformer) \| [0-9]' <<<"$table")
[[ "$rows" == 2 ]] || { echo "lra table did not read both runs"; exit 1; }
echo "slurm sweep test passed"

# Preemption: a longer one-cell sweep is signalled as Slurm does at preemption or the time limit
# (SIGTERM to the job's shell and its processes) once its first checkpoint is there; lra
# checkpoints at the next step and exits with 75, the script re-queues the task, and its next
# start finishes the cell.
sed -e "s|out = \"$work/out\"|out = \"$work/preempt\"|" -e 's|"train.steps=20"|"train.steps=400"|' \
    -e '/^\[\[row\]\]$/,$d' "$work/sweep.toml" >"$work/preempt.toml"
printf '[[row]]\nname = "Transformer"\nattention = "softmax"\n' >>"$work/preempt.toml"
script=$("$lra" sweep "$work/preempt.toml" --slurm)
job=$(sbatch --parsable "$script")
cell="$work/preempt/listops/transformer/s0"
for _ in $(seq 600); do [[ -f "$cell/checkpoint/state.json" ]] && break; sleep 0.1; done
[[ -f "$cell/checkpoint/state.json" ]] || { echo "no checkpoint before preemption"; cat "$work"/preempt/slurm/*.out; exit 1; }
scancel --signal=TERM --full "$job"
for _ in $(seq 300); do [[ -s "$cell/summary.json" ]] && break; sleep 1; done
[[ -s "$cell/summary.json" ]] || { echo "the preempted cell never finished"; scontrol show job "$job"; cat "$work"/preempt/slurm/*.out "$work"/*.log; exit 1; }
scontrol show job "$job" | grep -q 'Restarts=1' || { echo "the preempted task was not re-queued"; scontrol show job "$job"; exit 1; }
echo "slurm preemption test passed"
