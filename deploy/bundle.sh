#!/usr/bin/env bash
# Packs what the robot needs into one archive: the runtime (numpy + onnxruntime only), the
# pidog_env modules it shares with the simulator, and an exported policy.
#   deploy/bundle.sh outputs/<exp>/export [pidog_deploy.tar.gz]
set -euo pipefail
export_dir=${1:?usage: deploy/bundle.sh EXPORT_DIR [OUT.tar.gz]}
out=${2:-pidog_deploy.tar.gz}
root=$(cd "$(dirname "$0")/.." && pwd)
for f in "$export_dir/policy.onnx" "$export_dir/policy.json"; do
  [ -f "$f" ] || { echo "error: $f not found (run pidog export first)" >&2; exit 2; }
done
[ -e "$out" ] && { echo "error: $out exists; remove it or pass another name" >&2; exit 2; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/pidog_deploy/deploy" "$stage/pidog_deploy/pidog_env" "$stage/pidog_deploy/policy"
cp "$root"/deploy/{__init__,runtime,cli,imu_check,replay,safety,hardware,policy_spec,vendor,fake_vendor,commands,sysid}.py "$root"/deploy/requirements-pi.txt \
   "$root"/deploy/README.md "$stage/pidog_deploy/deploy/"
cp "$root"/pidog_env/{__init__,robot,observation,files,kinematics,gaits,config,config_tree}.py "$stage/pidog_deploy/pidog_env/"
cp "$export_dir/policy.onnx" "$export_dir/policy.json" "$stage/pidog_deploy/policy/"
tar -czf "$out" -C "$stage" pidog_deploy
echo "wrote $out"
