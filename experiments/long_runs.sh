#!/usr/bin/env bash
# The long protocols of the seeded comparisons, for a background process on one pinned core.
# Run directories live under experiments/results/ so that finished runs (and, for the 3-hour
# continuous-time seeds, the latest checkpoint) can be committed and a later session resumes them:
#
#   setsid nohup bash experiments/long_runs.sh study  0 > study.log  2>&1 &   # core 0
#   setsid nohup bash experiments/long_runs.sh table1 1 > table1.log 2>&1 &   # core 1
#
# study:  the seven energy-based rules + TBP + RBP on the CPU protocol (narrow DCHN, 10k
#         Fashion-MNIST images, 4 epochs), seed 0 for every rule first, then seeds 1 and 2, then
#         one pass over all three seeds that only reassembles results.json / table.md.
# table1: generalized hEP Table 1, continuous-time column at |beta| = 0.5, 10 epochs, seeds 0-2
#         (the N=1/2/6/true columns are in experiments/results/table1_fmnist_10epochs.md).
# cl_ablation: CL on the narrow DCHN, 1 epoch on 5,120 images, no augmentation, with every choice of the
#         released code (experiments/comparative_study_released.json) except one, seeds 0-2: which
#         of (a) warm start, (b) beta = 0 re-relaxation, (c) odd-first async order, (d) first-max
#         pool ties, (f) bias bound 0.5 the training depends on (experiments/results/cl_diagnosis.md).
set -u
cd "$(dirname "$0")/.."
what=${1:?study, table1 or cl_ablation}
core=${2:-0}
pin="taskset -c $core"
case $what in
  study)
    for seeds in "[0]" "[1]" "[2]" "[0,1,2]"; do
      $pin holoeb study --set seeds=$seeds --set out_dir=experiments/results/study_cpu --no-progress || exit 1
    done ;;
  table1)
    $pin python3 experiments/table1.py --only continuous --betas 0.5 --epochs 10 --seeds 3 \
      --out experiments/results/table1_fmnist --checkpoint-every 200 --checkpoints-to-keep 1 ;;
  cl_ablation)
    declare -A drop=([a-zero-start]="warm_start=none" [b-no-rerelax]="rerelax_free=false"
                     [c-even-first]="schedule=async" [d-split-ties]="pool_ties=split" [f-bias-gain]="bias_gain=null")
    for seed in 0 1 2; do
      for name in a-zero-start b-no-rerelax c-even-first d-split-ties f-bias-gain; do
        $pin holoeb study --config experiments/comparative_study_released.json --set 'rules=["cl"]' \
          --set n_train=5120 --set epochs=1 --set random_flip=false --set random_crop=0 --set seeds=[$seed] \
          --set ${drop[$name]} --set out_dir=experiments/results/cl_ablation/$name --no-progress || exit 1
      done
    done ;;
  *) echo "unknown protocol '$what': study, table1 or cl_ablation" >&2; exit 2 ;;
esac
