#!/usr/bin/env bash
# GPU validation of the real workload (issue 19), one script for a lent GPU machine (the `device` tool), < 8 min:
#   1. environment: python, torch, the GPU; the Python packages it lacks installed from carried wheels (.whl/)
#   2. bench/real_workload.py on the GPU: RN50x4 and ViT-B-32 (random weights), fp32 / fp16 / bf16, precision
#      parity against fp32, bare forward (batch swept) vs bare decode+forward vs `mlcl encode` of generated photos
#   3. `mlcl encode` of the photo folder on the GPU in bf16, run twice: the second run must skip everything
#   4. a short RN50x4 stage-2 training run on the GPU: `mlcl train` (LAVIS) when LAVIS imports, else the
#      plain-PyTorch stage-2 steps of bench/training_speed.py
#   5. `mlcl serve` with `device: cuda` (RN50x4) answering a composed query, and the Flow's /index images/s
#      (bench/real_workload.py with the Flow) -- when jina imports (it needs Python <= 3.11)
# Every step's status, time and output file go to bench/results/gpu_check[_cpu].json (and $OUT when set).
#
#   bash scripts/gpu_check.sh           # on the GPU machine
#   bash scripts/gpu_check.sh --cpu     # the same steps on the CPU, small: a dry run (results: *_dryrun.json)
#   HAVE_JINA=0 HAVE_LAVIS=0 bash scripts/gpu_check.sh --cpu   # the dry run of the H200 image's branches
#
# The H200 image has Python 3.12 with torch but no open_clip: carry its wheels (from this machine, once):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl open_clip_torch==2.32.0 ftfy wcwidth
# and call the tool with carry [".whl"] and `bash scripts/gpu_check.sh`. jina has no Python 3.12 wheels, and
# LAVIS pins packages older than the image's: steps 4 (`mlcl train`) and 5 then say "skipped" and why.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
export PYTHONUNBUFFERED=1 JINA_OPTOUT_TELEMETRY=1 JINA_HIDE_SURVEY=1
RESULTS=bench/results
SUFFIX=$([ "$MODE" = cpu ] && echo _dryrun || echo "")
LOG=$(mktemp -d /tmp/mlcl-gpu-check-XXXX)
STEPS=$LOG/steps.tsv
: > "$STEPS"

# ---------------------------------------------------------------- 1. environment
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else
  PY=python3
  if ls .whl/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
MLCL="$PY -m mlcl_cli"

if [ "$MODE" = gpu ]; then
  DEVICE=cuda; BACKBONES="RN50x4 ViT-B-32"; PRECISIONS="fp32 fp16 bf16"
  PHOTOS=128; PHOTO_SIZE="4000 3000"; BATCHES="64 128 256"; SWEEP=64; QUERIES=20
  TRAIN_TYPE=rn50x4; TRAIN_BACKBONE=RN50x4; TRAIN_GROUPS=256; TRAIN_BATCH=64; TRAIN_STEPS=20
else
  DEVICE=cpu; BACKBONES="RN50x4 ViT-B-32"; PRECISIONS="fp32 bf16"
  PHOTOS=4; PHOTO_SIZE="800 600"; BATCHES="2"; SWEEP=2; QUERIES=2
  TRAIN_TYPE=rn-tiny; TRAIN_BACKBONE=mlcl-rn-tiny; TRAIN_GROUPS=8; TRAIN_BATCH=8; TRAIN_STEPS=2
fi

SLOW=$([ "$MODE" = cpu ] && echo 4 || echo 1)  # the CPU dry run's big models are slow: longer time limits
step() {  # step NAME TIMEOUT_S CMD...: run, record status and seconds (never stops the script)
  local name=$1 limit=$(( $2 * SLOW )); shift 2
  local t0=$(date +%s.%N)
  echo "== $name: $*" | tee -a "$LOG/$name.log"
  timeout "$limit" "$@" >> "$LOG/$name.log" 2>&1
  local rc=$? t1=$(date +%s.%N)
  tail -n 25 "$LOG/$name.log"
  printf '%s\t%s\t%s\t%s\n' "$name" "$([ $rc = 0 ] && echo ok || echo "failed rc=$rc")" \
    "$(awk "BEGIN{print $t1 - $t0}")" "$LOG/$name.log" >> "$STEPS"
}
skip() { printf '%s\tskipped: %s\t0\t-\n' "$1" "$2" >> "$STEPS"; echo "== $1: skipped ($2)"; }

step environment 120 $PY -c "
import platform, torch, PIL, open_clip
print('python', platform.python_version(), 'torch', torch.__version__, 'open_clip', open_clip.__version__, 'PIL', PIL.__version__)
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')
assert '$DEVICE' == 'cpu' or torch.cuda.is_available(), 'no GPU visible to torch'
"
# HAVE_JINA=0 / HAVE_LAVIS=0 in the environment: take the branches the H200 image takes (for a dry run here)
HAVE_JINA=${HAVE_JINA:-$($PY -c "import jina, docarray" > /dev/null 2>&1 && echo 1 || echo 0)}
HAVE_LAVIS=${HAVE_LAVIS:-$($PY -c "import lavis" > /dev/null 2>&1 && echo 1 || echo 0)}
PHOTO_DIR=$($PY -c "
import sys; sys.path.insert(0, '.')
from bench.photos import photo_folder
print(photo_folder($PHOTOS, tuple(int(x) for x in '$PHOTO_SIZE'.split())))")

# ---------------------------------------------------------------- 2. real workload, bare and mlcl encode
WORK=$LOG/work  # the random-weight checkpoints, kept for the steps below
step real_workload 420 $PY bench/real_workload.py --device $DEVICE --backbones $BACKBONES --precisions $PRECISIONS \
  --parity --photos $PHOTOS --photo-size $PHOTO_SIZE --batch-sizes $BATCHES --sweep-images $SWEEP --reps 3 \
  --skip flow --work "$WORK" --name real_workload_$DEVICE$SUFFIX

# ---------------------------------------------------------------- 3. mlcl encode (RN50x4, bf16), resumed
VECS=$LOG/vectors
CKPT=$WORK/random-RN50x4.pt
step encode 180 $MLCL encode "$PHOTO_DIR" --out "$VECS" --checkpoint "$CKPT" --device $DEVICE --precision bf16 --no-progress
step encode_resume 120 bash -c "$MLCL encode '$PHOTO_DIR' --out '$VECS' --checkpoint '$CKPT' --device $DEVICE \
  --precision bf16 --no-progress | tee /dev/stderr | grep -q '^encoded 0 images'"

# ---------------------------------------------------------------- 4. stage-2 training, RN50x4
if [ "$HAVE_LAVIS" = 1 ]; then
  step train_stage2 300 $MLCL train --config training/configs/shapes/stage2_mlcl.yaml --output "$LOG/train" --overwrite \
    --device $DEVICE --max-steps $TRAIN_STEPS --no-progress --options model.model_type=$TRAIN_TYPE model.pretrained=null \
    model.init_from=null datasets.shapes.procedural.groups=$TRAIN_GROUPS run.batch_size_train=$TRAIN_BATCH \
    run.evaluate=false run.export=null
else
  skip train_stage2 "LAVIS does not import with $($PY -V 2>&1) here; plain-PyTorch stage-2 steps instead"
  step train_stage2_plain 240 $PY bench/training_speed.py --backbone $TRAIN_BACKBONE --device $DEVICE \
    --batch-size $TRAIN_BATCH --steps 5 --warmup 1 --pool $((TRAIN_BATCH * 4)) --max-s 60 --name training_speed_gpu_check$SUFFIX
fi

# ---------------------------------------------------------------- 5. mlcl serve with device cuda
if [ "$HAVE_JINA" = 1 ]; then
  step flow 420 $PY bench/real_workload.py --device $DEVICE --backbones RN50x4 --precisions fp32 bf16 \
    --photos $PHOTOS --photo-size $PHOTO_SIZE --batch-sizes ${BATCHES##* } --sweep-images $SWEEP --reps 2 \
    --queries $QUERIES --skip encode --work "$WORK" --name real_workload_flow_$DEVICE$SUFFIX
else
  skip flow "jina does not import with $($PY -V 2>&1) here (it needs Python <= 3.11)"
fi

# ---------------------------------------------------------------- summary
$PY - "$STEPS" "$RESULTS/gpu_check$SUFFIX.json" "$MODE" <<'EOF'
import json, sys, datetime, platform
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
steps = [{"step": r[0], "status": r[1], "seconds": round(float(r[2] or 0), 1), "log": r[3]} for r in rows]
out = {"benchmark": "gpu_check", "mode": sys.argv[3], "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
       "host": platform.node(), "steps": steps}
open(sys.argv[2], "w").write(json.dumps(out, indent=2))
for s in steps:
    print(f"{s['step']:<20} {s['status']:<60} {s['seconds']:>7.1f} s")
print(f"total {sum(s['seconds'] for s in steps):.0f} s; {sys.argv[2]}")
EOF
if [ -n "${OUT:-}" ]; then
  for f in gpu_check real_workload_$DEVICE real_workload_flow_$DEVICE training_speed_gpu_check; do
    cp "$RESULTS/$f$SUFFIX.json" "$OUT/" 2>/dev/null
  done
  tar czf "$OUT/logs.tgz" -C "$LOG" . 2>/dev/null
fi
