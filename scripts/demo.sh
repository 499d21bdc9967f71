#!/usr/bin/env bash
# Quick start 1: train a DCGAN and a CGAN on the embedded MNIST digits (no download)
# and write sample grids, loss curves and a training animation under runs/demo/.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec gankit demo --outdir "${GANKIT_DEMO_OUT:-runs/demo}" --seconds "${GANKIT_DEMO_SECONDS:-150}" "$@"
