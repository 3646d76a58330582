#!/usr/bin/env bash
# The harness on a GPU through Burn's Vulkan backend (README, "GPU backends"): build here, run on a
# GPU machine that has only the binaries, the repository files and the Vulkan loader.
#
#   scripts/gpu-check.sh build                  # here: target/gpu-check/{lra,conformance} (GPU_FEATURE=vulkan)
#   scripts/gpu-check.sh run [--quick] [--device NAME] [--out DIR]   # on the GPU machine
#   scripts/gpu-check.sh ci                     # .ci/run: the same on Mesa's software driver, 20 steps
#
# `run` writes under --out (default results/bench/gpu/): machine.txt (GPU, driver, commit),
# conformance.log (the whole suite on --device), tiny-summary.json (the tiny ListOps preset),
# attention.csv (`lra bench attention`), step.csv (`lra bench step --preset lra-pytorch/listops`),
# efficiency.csv (`lra bench efficiency`), pytorch-step.csv and pytorch-sdpa.csv
# (scripts/bench_pytorch.py eager and scaled_dot_product_attention, same shapes, on CUDA when torch
# sees it) and summary.md (lra step time / PyTorch eager step time). --quick uses tiny sizes and
# writes to target/gpu-check/quick/ unless --out is given: it checks this script on the software
# driver, its numbers mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

bundle=target/gpu-check
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# Mesa's window-system code complains on every device opened without one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# The cargo feature built (`vulkan`: cubecl's SPIR-V compiler, for GPUs; `wgpu`: WGSL shaders,
# which is what Mesa's software driver runs: it crashes compiling cubecl's SPIR-V matmul kernels).
# `build` uses a target folder of its own, so that the bundle's build leaves target/release/lra
# the CPU one; `ci` shares the workspace's with a profile of its own (below).
workspace_target=${CARGO_TARGET_DIR:-}
use_feature() {
    feature=$1
    export CARGO_TARGET_DIR="target/$feature"
}
use_feature "${GPU_FEATURE:-vulkan}"

die() {
    echo "gpu-check: $*" >&2
    exit 1
}

# Debian packages, installed if missing (as scripts/slurm-test.sh does for Slurm).
install_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
            missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "install ${missing[*]} (no apt-get here)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

# `lra` and the conformance test executable of a `--features $feature` build, copied to $bundle;
# the arguments select what cargo builds (default: only what the bundle ships, in release, with the
# `cli` test that brings the `lra` binary).
build() {
    local artifacts selection=("$@")
    ((${#selection[@]})) || selection=(-p lra-model -p lra --features "lra/$feature" --release
        --test conformance --test cli)
    artifacts=$(cargo test "${selection[@]}" --no-run \
        --message-format=json-render-diagnostics |
        python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        # The `lra` binary itself, not its unit-test harness (also a "bin" named lra).
        target, test_harness = message["target"], message["profile"]["test"]
        wanted = ("lra", "bin", False), ("conformance", "test", True)
        if (target["name"], target["kind"][0], test_harness) in wanted:
            print(target["name"], message["executable"])
')
    mkdir -p "$bundle"
    for name in lra conformance; do
        local path
        path=$(awk -v name="$name" '$1 == name { print $2 }' <<<"$artifacts" | tail -1)
        [[ -n "$path" ]] || die "the build produced no $name executable"
        cp "$path" "$bundle/$name.tmp" && mv "$bundle/$name.tmp" "$bundle/$name"
    done
    echo "$feature" >"$bundle/feature"
    git rev-parse HEAD >"$bundle/commit" 2>/dev/null || echo unknown >"$bundle/commit"
    echo "gpu-check: built $bundle/lra and $bundle/conformance ($(du -sh "$bundle" | cut -f1))"
}

# The conformance suite on $device (the mixers in LRA_MIXERS, or all); its log goes to $1.
conformance() {
    echo "gpu-check: conformance suite on $device ${LRA_MIXERS:+(mixers: $LRA_MIXERS)}"
    LRA_TEST_DEVICE=$device "$bundle/conformance" --test-threads 1 2>&1 | tee "$1"
}

# A tiny ListOps run on $device; $1: steps (empty: the preset's), $2: where its summary goes,
# the rest: more `lra run` options.
tiny_run() {
    local runs="$bundle/runs"
    local steps=()
    [[ -z "$1" ]] || steps=(--steps "$1")
    echo "gpu-check: tiny ListOps run on $device ${1:+($1 steps)}"
    "$bundle/lra" run --preset tiny --device "$device" "${steps[@]}" "${@:3}" --out "$runs" --quiet
    local summary
    summary=$(ls -t "$runs"/listops/softmax/*/summary.json | head -1)
    python3 -c '
import json, math, sys
summary = json.load(open(sys.argv[1]))
steps, loss = summary["steps"], summary["test_loss"]
assert math.isfinite(loss), f"test loss {loss}"
assert not sys.argv[2] or steps == int(sys.argv[2]), f"{steps} steps"
accuracy = summary.get("test_accuracy")
print(f"gpu-check: tiny run: {steps} steps, test loss {loss:.3f}, test accuracy {accuracy}")
' "$summary" "$1"
    cp "$summary" "$2"
}

run() {
    [[ -x "$bundle/lra" && -x "$bundle/conformance" ]] || die "no $bundle/lra: run \`$0 build\` first"
    device=$(cat "$bundle/feature")
    local quick=0 out=""
    while (($#)); do
        case $1 in
        --quick) quick=1 ;;
        --device) device=$2 && shift ;;
        --out) out=$2 && shift ;;
        *) die "unknown option $1 (see the header of $0)" ;;
        esac
        shift
    done
    ((quick)) && out=${out:-$bundle/quick} || out=${out:-results/bench/gpu}
    mkdir -p "$out"
    # Sizes: the issue's goals (ListOps step, attention 1K-16K, the efficiency table) or, with
    # --quick, the smallest that exercise every step.
    local tiny_steps="" attention=(--seq-len 1024,2048,4096,8192,16384) step=() efficiency=()
    local torch_step=() torch_sdpa=(--seq-len 1024,2048,4096,8192,16384)
    if ((quick)); then
        export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
        tiny_steps=20
        attention=(--seq-len 128,256 --repeats 1)
        step=(--set task.max_len=128 --set train.batch_size=2 --repeats 1)
        efficiency=(--attention softmax,linear --seq-len 64,128 --batch 1 --repeats 1)
        torch_step=(--seq-len 128 --batch 2 --repeats 1)
        torch_sdpa=(--seq-len 128,256 --repeats 1)
    fi

    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "commit: $(cat "$bundle/commit")"
        echo "device: $device"
        ((quick)) && echo "sizes: --quick (too small for the numbers to mean anything)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
            echo "gpu: none seen by nvidia-smi"
        echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
    } >"$out/machine.txt"

    conformance "$out/conformance.log"
    tiny_run "$tiny_steps" "$out/tiny-summary.json"
    # The fused flash/softmax ops have CPU kernels only (issue 16 part 5); off the CPU the mixers
    # run the composed reference, which is what is timed here.
    "$bundle/lra" bench attention --op reference --device "$device" "${attention[@]}" \
        --out "$out/attention.csv"
    "$bundle/lra" bench step --preset lra-pytorch/listops --device "$device" "${step[@]}" \
        --out "$out/step.csv"
    "$bundle/lra" bench efficiency --device "$device" "${efficiency[@]}" --out "$out/efficiency.csv"
    pytorch "$out" "${torch_step[@]}" -- "${torch_sdpa[@]}"
    summarise "$out"
    echo "gpu-check: results in $out/"
}

# PyTorch eager (the same ListOps step) and SDPA, on CUDA when torch sees a GPU; $1: out folder,
# then the step options, `--`, the sdpa options.
pytorch() {
    local out=$1 step=() sdpa=()
    shift
    while (($#)) && [[ $1 != -- ]]; do step+=("$1") && shift; done
    (($#)) && shift
    sdpa=("$@")
    local python=${PYTHON:-python3}
    if ! "$python" -c "import torch" 2>/dev/null; then
        echo "no torch for $python (set PYTHON to a venv's python)" >"$out/pytorch-skipped.txt"
        echo "gpu-check: PyTorch comparison skipped: no torch for $python"
        return
    fi
    local torch_device
    torch_device=$("$python" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
    "$python" scripts/bench_pytorch.py step --device "$torch_device" --threads "$(nproc)" \
        "${step[@]}" >"$out/pytorch-step.csv"
    "$python" scripts/bench_pytorch.py sdpa --device "$torch_device" --threads "$(nproc)" \
        --batch 1 "${sdpa[@]}" >"$out/pytorch-sdpa.csv"
}

# summary.md: the ListOps step next to PyTorch eager, and attention next to SDPA, per length.
summarise() {
    python3 - "$1" <<'EOF'
import csv, os, sys
out = sys.argv[1]
def rows(name):
    path = os.path.join(out, name)
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []
lines = ["# GPU check", "", open(os.path.join(out, "machine.txt")).read().strip(), ""]
step, torch_step = rows("step.csv"), rows("pytorch-step.csv")
if step and torch_step:
    ours, theirs = float(step[0]["median_ms"]), float(torch_step[0]["median_ms"])
    lines += ["| ListOps training step | lra | PyTorch eager | ratio |", "|---|---|---|---|",
              f"| {step[0]['device']} vs {torch_step[0]['device']} | {ours:.1f} ms | {theirs:.1f} ms | {ours / theirs:.2f}× |", ""]
attention = [r for r in rows("attention.csv") if r["mode"] == "train"]
sdpa = {r["seq_len"]: float(r["median_ms"]) for r in rows("pytorch-sdpa.csv")}
if attention:
    lines += ["| attention fwd+bwd | n | lra | PyTorch SDPA | ratio |", "|---|---|---|---|---|"]
    for r in attention:
        theirs = sdpa.get(r["seq_len"])
        ratio = f"{float(r['median_ms']) / theirs:.2f}×" if theirs else "—"
        lines.append(f"| {r['attention']} | {r['seq_len']} | {float(r['median_ms']):.2f} ms | "
                     f"{f'{theirs:.2f} ms' if theirs else '—'} | {ratio} |")
    lines.append("")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines))
print("\n".join(lines))
EOF
}

# CI on Mesa's software driver (lavapipe): the CLI's device errors, the conformance suite and 20
# steps of the tiny preset, all on `wgpu` (WGSL). lavapipe
# compiles every kernel with LLVM, about 2 minutes per mixer over the suite's 9 tests on 2 cores
# (the whole registry: over an hour), so CI runs it for mixers that cover the code paths GPU
# backends take differently (the composed attention reference, iterative pseudo-inverse, FFT
# convolution): GPU_CI_MIXERS, comma-separated; `all` for every mixer.
# It builds in the workspace's target folder, after `.ci/run`'s CPU build: every crate whose
# features the GPU backend leaves alone (tokenizers, parquet, …) is reused, which saves minutes
# of a cold CI run (a profile of its own at opt-level 1 rebuilt them all and took longer, 30 min);
# target/release/lra is then the wgpu binary, which runs on the CPU too.
ci() {
    install_packages libvulkan1 mesa-vulkan-drivers
    feature=wgpu
    if [[ -n $workspace_target ]]; then
        export CARGO_TARGET_DIR=$workspace_target
    else
        unset CARGO_TARGET_DIR
    fi
    # The packages, features and profile of every cargo call below, so that nothing is compiled
    # twice (other selections resolve features anew and rebuild Burn).
    local selection=(-p lra-model -p lra --features lra/wgpu --release)
    # No unit-test (`--lib`) harnesses: compiling lra-model and lra a second time in test mode
    # took 3.5 of CI's minutes, and their wgpu-relevant checks (folded linear layers, FFT
    # convolution, opening the device) run inside the conformance suite and the tiny run anyway.
    build "${selection[@]}" --test conformance --test cli
    # The software driver JIT-compiles every kernel variant that autotuning tries: try few.
    export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
    device=wgpu
    local out="$bundle/ci"
    mkdir -p "$out"
    cargo test "${selection[@]}" --test cli -- absent
    local mixers=${GPU_CI_MIXERS:-softmax,nystrom,s4}
    [[ $mixers == all ]] && mixers=""
    LRA_MIXERS=$mixers conformance "$out/conformance.log"
    # Batches of 8 and a 2-batch evaluation: lavapipe runs every kernel on the CPU.
    tiny_run 20 "$out/tiny-summary.json" --set train.batch_size=8 --set train.eval_batches=2
}

case ${1:-} in
build) build ;;
run) shift && run "$@" ;;
ci) ci ;;
*) die "usage: $0 build | run [--quick] [--device NAME] [--out DIR] | ci" ;;
esac
