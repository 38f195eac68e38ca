#!/usr/bin/env bash
# The DeepLabCut 3 peer run: project, training, DeepLabCut's evaluation, held-out predictions, video analysis and
# speed, each step one process under /usr/bin/time -v (peak memory). Figures and logs go to WORK/out.
#   benchmarks/peers/deeplabcut/run.sh SOURCE_PROJECT WORK [VIDEO]
# SOURCE_PROJECT: a labelled single-animal DeepLabCut project (here DeepLabCut's openfield example); WORK: a folder
# outside the repository; VIDEO: default SOURCE_PROJECT/videos/m3v1mp4.mp4.
# Environment:
#   DLC_VENV   the peer virtualenv (setup.sh; default benchmarks/peers/deeplabcut/.venv)
#   SLOT       prefix of the single-core steps (training, evaluation, the whole video), e.g. "/work/bin/cpuslot"
#   EXCLUSIVE  prefix of the short timed steps (a clip of the video, forward passes), e.g.
#              "/work/bin/cpuslot --exclusive"; both default to nothing (run as is)
#   EPOCHS     override the epochs of make_project.py (120)
#   CLIP_FRAMES  frames of the timed clip (default 200)
#   SKIP_FULL_VIDEO=1  leave out analyze_videos on the whole video (the longest step on one core)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_project="$(cd "$1" && pwd)"
work="$(mkdir -p "$2" && cd "$2" && pwd)"
video="${3:-$source_project/videos/m3v1mp4.mp4}"
py="${DLC_VENV:-$here/.venv}/bin/python"
slot="${SLOT:-}"
exclusive="${EXCLUSIVE:-}"
clip_frames="${CLIP_FRAMES:-200}"
# One thread as kpreg's CPU runs (the exclusive prefix may raise it); nothing may be downloaded (no ImageNet weights).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" HF_HUB_OFFLINE=1

project="$work/project"
random_project="$work/random_project"
out="$work/out"
clip="$work/clips/$(basename "${video%.*}")_first${clip_frames}.mp4"
mkdir -p "$out"

step() {  # step NAME PREFIX CMD...: one process, its log and /usr/bin/time -v report in $out
  local name="$1" prefix="$2"
  shift 2
  if [ -f "$out/$name.done" ]; then  # a finished step is kept: delete WORK/out/NAME.done to run it again
    echo "== $name: done before ($out/$name.done)"
    return
  fi
  echo "== $name"
  # shellcheck disable=SC2086  # the prefix is a command and its options
  $prefix /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.log" 2>&1
  grep -E "Elapsed|Maximum resident" "$out/$name.time"
  touch "$out/$name.done"
}

if [ ! -d "$project" ]; then
  "$py" "$here/make_project.py" "$source_project" "$project" ${EPOCHS:+--epochs "$EPOCHS"} > "$out/make_project.log"
fi
step train "$slot" "$py" "$here/run.py" train "$project/config.yaml" "$out"
step evaluate "$slot" "$py" "$here/run.py" evaluate "$project/config.yaml" "$out"
if [ "${SKIP_FULL_VIDEO:-0}" != 1 ]; then
  step analyze "$slot" "$py" "$here/run.py" analyze "$project/config.yaml" "$video" "$out"
fi

# Speed: a clip of the video, both cores held; the trained model and the same model with random weights.
"$py" "$here/run.py" clip "$video" "$clip" --frames "$clip_frames"
if [ ! -d "$random_project" ]; then
  "$py" "$here/make_project.py" "$source_project" "$random_project" > "$out/make_random_project.log"
  "$py" "$here/run.py" random-snapshot "$random_project/config.yaml"
fi
step analyze_clip "$exclusive" "$py" "$here/run.py" analyze "$project/config.yaml" "$clip" "$out" --tag clip
step analyze_clip_random "$exclusive" "$py" "$here/run.py" analyze "$random_project/config.yaml" "$clip" "$out" \
  --tag clip_random
step model_speed "$exclusive" "$py" "$here/run.py" model-speed "$project/config.yaml" "$out"
echo "figures: $out/*.json; held-out predictions: $out/heldout_*.csv"
