#!/usr/bin/env bash
# shellcheck disable=SC2317  # the checks are functions that `check` calls
# Smoke test of the Docker images and compose services, where a Docker engine is available (not part
# of CI: CI has no engine and no registry for the base image). From the repository root:
#   docker/smoke.sh
# Builds the runtime and dev images through compose, then checks: the default command, that the
# runtime image has no dev tools and no Ray (and its size), a gym step, an offscreen render (EGL and
# OSMesa) with nothing printed at exit, a sweep on worker processes, the test suite inside the dev
# image, a `--quick` one-shot run as each uid in SMOKE_UIDS (a uid other than 1000, and root) with the
# ownership of everything it wrote, TensorBoard answering on 127.0.0.1, and the Ray image (the runtime
# image built with WITH_RAY=1) importing Ray Tune. It prints one PASS/FAIL line per check and exits 1
# if any check failed (2 on a usage error).
# It works in a temporary folder it creates and removes (never ./outputs) and its own compose project.
#
# Environment:
#   COMPOSE              "docker compose" (v2) or "docker-compose" (v1); default: v2 if present
#   SMOKE_COMPOSE_FILES  extra compose files, colon-separated (docker/compose.host-network.yml
#                        where the daemon runs without a bridge network)
#   SMOKE_UIDS           uid:gid pairs for the --quick run (default "1001:1001 0:0")
#   SMOKE_TB_PORT        host port for TensorBoard (default 16006)
#   SMOKE_SKIP_BUILD=1   use the images already built
#   SMOKE_SKIP_RAY=1     skip the Ray image (its build adds about 0.5 GB)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"
  elif command -v docker-compose >/dev/null; then COMPOSE="docker-compose"
  else echo "smoke.sh: neither 'docker compose' nor 'docker-compose' found" >&2; exit 2; fi
fi
read -r -a compose_cmd <<< "$COMPOSE"
files=(-f docker-compose.yml)
IFS=: read -r -a extra <<< "${SMOKE_COMPOSE_FILES:-}"
for f in "${extra[@]}"; do [ -n "$f" ] && files+=(-f "$f"); done
uids=${SMOKE_UIDS:-"1001:1001 0:0"}
tb_port=${SMOKE_TB_PORT:-16006}
project="pidogsmoke$$"
image=pidog-sim2real:cpu

work=$(mktemp -d "${TMPDIR:-/tmp}/pidog-smoke.XXXXXX") || exit 2
logs="$work/logs"
mkdir -p "$logs"
failed=0

dc() { "${compose_cmd[@]}" -p "$project" "${files[@]}" "$@"; }

cleanup() {
  dc --profile dev --profile ray down --remove-orphans >/dev/null 2>&1
  # Files written by other uids: removed through the image, as root, inside $work only.
  if [ -d "$work" ] && docker image inspect "$image" >/dev/null 2>&1; then
    docker run --rm --network none --user 0:0 -v "$work:/w" "$image" \
      find /w -mindepth 1 -delete >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# check NAME COMMAND...: runs COMMAND with its output in $logs/NAME.log; PASS if it exits 0.
check() {
  local name=$1; shift
  local log="$logs/${name%% *}.log"
  if "$@" >"$log" 2>&1; then
    echo "PASS $name"
  else
    echo "FAIL $name (last lines of its log:)"
    tail -n 15 "$log" | sed 's/^/    /'
    failed=1
  fi
}

# outputs folders: as the uid would make it (`mkdir -p outputs`), or missing for root, whom Docker's
# own creation of a missing bind-mount source already matches.
outputs_for() {
  local uid=$1 gid=$2 dir="$work/outputs-$1"
  if [ "$uid" != 0 ]; then
    docker run --rm --network none --user 0:0 -v "$work:/w" "$image" \
      install -d -o "$uid" -g "$gid" "/w/outputs-$uid" >/dev/null || return 1
  fi
  echo "$dir"
}

as_caller() {  # as_caller UID:GID OUTPUTS_DIR compose-args...: compose with the caller's variables set
  local ids=$1 out=$2; shift 2
  HOST_UID=${ids%%:*} HOST_GID=${ids##*:} PIDOG_OUTPUTS=$out dc "$@"
}

build() {  # `docker compose build` as the README says (it builds pidog-sim2real:cpu once), then dev
  if [ "${SMOKE_SKIP_BUILD:-0}" != 1 ]; then dc build && dc --profile dev build pidog_dev || return 1; fi
  docker image inspect "$image" pidog-sim2real:dev >/dev/null || return 1
  echo "$image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}')"
}

first=${uids%% *}
check "build ($COMPOSE)" build || true
out1=$(outputs_for "${first%%:*}" "${first##*:}") || { echo "FAIL setup: cannot make $work/outputs"; exit 1; }

default_command() {
  local log
  log=$(as_caller "$first" "$out1" run --rm -T pidog_rl) || return 1
  echo "$log"
  grep -q "usage: train_pretrain_finetune.py" <<< "$log" && grep -q -- "--quick" <<< "$log"
}
check "default-command" default_command

runtime_lean() {
  as_caller "$first" "$out1" run --rm -T pidog_rl bash -c \
    '! python -c "import pytest" 2>/dev/null && ! python -c "import ray" 2>/dev/null && ! command -v hadolint &&
     ! test -d /app/tests && echo lean'
}
check "runtime-without-dev-tools (nor Ray)" runtime_lean

# quiet_python SNIPPET: python in the runtime image; fails if it prints a traceback, even one that
# Python ignores at exit (a renderer or env left open).
quiet_python() {
  local log
  log=$(as_caller "$first" "$out1" run --rm -T "${@:2}" pidog_rl python -c "$1" 2>&1) || { echo "$log"; return 1; }
  echo "$log"
  ! grep -qE "Traceback|Exception ignored" <<< "$log"
}

gym_step() {
  quiet_python '
import gymnasium as gym, numpy as np, pidog_env
env = gym.make("PiDog-v2")
obs, info = env.reset(seed=0)
obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
env.close()
assert obs.shape == env.observation_space.shape and np.isfinite(obs).all() and np.isfinite(reward)
print("gym step ok", obs.shape, float(reward))'
}
check "gym-step" gym_step

render() {  # render GL: an offscreen frame that is not blank
  quiet_python '
import os, gymnasium as gym, pidog_env
env = gym.make("PiDog-v2", render_mode="rgb_array")
env.reset(seed=0)
frame = env.render()
env.close()
assert frame.ndim == 3 and frame.shape[2] == 3 and frame.std() > 1, (frame.shape, frame.std())
print(os.environ["MUJOCO_GL"], "frame", frame.shape, "std", round(float(frame.std()), 1))' -e MUJOCO_GL="$1"
}
check "offscreen-render-egl" render egl
check "offscreen-render-osmesa" render osmesa

sweep_local() {  # a sweep spec at the tests' budget on worker processes (no Ray in this image)
  as_caller "$first" "$out1" run --rm -T pidog_rl python training/sweep.py --spec learning_rate \
    --preset tiny --set demo.n_envs=1 --seeds 0 --name lr-tiny --output-dir outputs/sweeps || return 1
  grep -c '"status": "ok"' "$out1/sweeps/lr-tiny/results.json"
  ! grep -q '"status": "\(failed\|stopped\|not run\)"' "$out1/sweeps/lr-tiny/results.json"
}
check "sweep-local (sweeps/learning_rate.toml at the tests' budget)" sweep_local

check "tests-in-image (dev image: python -m pytest)" as_caller "$first" "$out1" --profile dev run --rm -T pidog_dev

quick_run() {  # quick_run UID:GID OUTPUTS
  as_caller "$1" "$2" run --rm -T pidog_rl python train_pretrain_finetune.py --quick --no-live \
    --experiment-name smoke || return 1
  test -f "$2/smoke/final_model.zip" || { echo "no final_model.zip in $2/smoke"; return 1; }
}
owned_by() {  # owned_by UID:GID OUTPUTS LOG: every file belongs to the caller; HOME was writable
  local uid=${1%%:*} gid=${1##*:} wrong
  wrong=$(find "$2" \( ! -uid "$uid" -o ! -gid "$gid" \) -printf '%u:%g %p\n')
  echo "$(find "$2" | wc -l) paths under outputs; owned by others: ${wrong:-none}"
  [ -z "$wrong" ] || return 1
  if grep -E "not a writable directory|Permission denied" "$3"; then return 1; fi
}
for ids in $uids; do
  uid=${ids%%:*}
  if [ "$ids" = "$first" ]; then out=$out1; else out=$(outputs_for "$uid" "${ids##*:}") || out=; fi
  check "quick-run-uid$uid (--quick as $ids)" quick_run "$ids" "$out"
  check "outputs-owner-uid$uid (all files $ids, HOME writable)" owned_by "$ids" "$out" \
    "$logs/quick-run-uid$uid.log"
done

fetch() {
  if command -v curl >/dev/null; then curl -fsS --max-time 5 "$1"
  else python3 -c "import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())" "$1"; fi
}
tensorboard() {
  TENSORBOARD_PORT=$tb_port as_caller "$first" "$out1" up -d tensorboard || return 1
  local mapping body i
  mapping=$(TENSORBOARD_PORT=$tb_port as_caller "$first" "$out1" port tensorboard 6006)
  echo "published on $mapping"
  [ "$mapping" = "127.0.0.1:$tb_port" ] || { echo "not bound to 127.0.0.1 only"; return 1; }
  for i in $(seq 60); do
    body=$(fetch "http://127.0.0.1:$tb_port/data/runs" 2>/dev/null) && break
    sleep 2
  done
  echo "runs after ${i}x2 s: $body"
  [[ "$body" == *smoke* ]]
}
check "tensorboard (127.0.0.1:$tb_port lists the smoke run)" tensorboard

ray_image() {  # the runtime image built with WITH_RAY=1 (the ray_head service's own image)
  if [ "${SMOKE_SKIP_BUILD:-0}" != 1 ]; then dc --profile ray build ray_head || return 1; fi
  as_caller "$first" "$out1" --profile ray run --rm -T ray_head python -c \
    'import ray, ray.tune; print("ray", ray.__version__)' || return 1
  echo "pidog-sim2real:ray: $(docker image inspect -f '{{.Size}}' pidog-sim2real:ray | awk '{printf "%.2f GB", $1 / 1e9}')"
}
if [ "${SMOKE_SKIP_RAY:-0}" != 1 ]; then check "ray-image (WITH_RAY=1 imports Ray Tune)" ray_image; fi

if [ "$failed" = 0 ]; then echo "smoke: all checks passed ($COMPOSE)"; else echo "smoke: FAILED ($COMPOSE)"; fi
exit "$failed"
