#!/usr/bin/env bash
# One-step set-up on a fresh machine: the offline Fashion-MNIST files (Debian's
# dataset-fashion-mnist) and holoeb with its dependencies.
#   ./install.sh                  -> holoeb and its runtime dependencies
#   ./install.sh --tests          -> plus everything the test suite exercises: pytest,
#                                    tensorflow-datasets + tensorflow-cpu (TFDS loader tests),
#                                    orbax-checkpoint (checkpoint/resume tests)
#   --quiet                       -> less output (used by .ci/run)
set -euo pipefail
cd "$(dirname "$0")"
quiet=""
extras=""
for arg in "$@"; do
  case "$arg" in
    --quiet) quiet="-q" ;;
    --tests) extras="[test,tfds,checkpoint]" ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -e "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] && [ ! -e "$FMNIST_DIR/train-images-idx3-ubyte" ] && [ -z "${HOLOEB_FMNIST_DIR:-}" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian package dataset-fashion-mnist (offline Fashion-MNIST IDX files)"
  $SUDO apt-get install -y $quiet dataset-fashion-mnist >/dev/null 2>&1 || {
    $SUDO apt-get update $quiet >/dev/null && $SUDO apt-get install -y $quiet dataset-fashion-mnist >/dev/null
  }
fi
python3 -m pip install $quiet -e ".$extras"
