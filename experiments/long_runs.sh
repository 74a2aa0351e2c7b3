#!/usr/bin/env bash
# The long protocols of the seeded comparisons, each for a background process on one pinned core.
# Run directories live under experiments/results/ and are committed with their checkpoints as they
# go, so a later session resumes them (a finished run is skipped, a killed one continues from its
# last checkpoint):
#
#   setsid nohup bash experiments/long_runs.sh study 0 '["tbp","rbp","cl","p-ep","n-ep"]' > study0.log 2>&1 &
#   setsid nohup bash experiments/long_runs.sh study 1 '["c-ep","p-cpl","n-cpl","c-cpl"]' > study1.log 2>&1 &
#   bash experiments/long_runs.sh study_table      # once every run has finished: results.json + table.md
#
# Each study invocation rewrites table.md / results.json from every finished run in the directory
# (both processes write the same table); `holoeb study --summarize --out-dir DIR` does only that.
#
# study [CORE [RULES]]: the seven energy-based rules + TBP + RBP (or the JSON list RULES) on the CPU
#         protocol (narrow DCHN, 10k Fashion-MNIST images, 4 epochs), seed 0 for every rule first,
#         then seeds 1 and 2.
# study_table: reassemble experiments/results/study_cpu/results.json and table.md from the finished
#         runs of all rules and seeds 0-2 (it trains any run that is missing).
# table1: generalized hEP Table 1, continuous-time column at |beta| = 0.5, 10 epochs, seeds 0-2
#         (the N=1/2/6/true columns are in experiments/results/table1_fmnist_10epochs.md).
# cl_ablation: CL on the narrow DCHN, 1 epoch on 5,120 images, no augmentation, with every choice of
#         the released code (experiments/comparative_study_released.json), and with every choice but one,
#         and with all of them plus the released augmentation (crop + flip), seeds 0-2:
#         which of (a) warm start, (b) beta = 0 re-relaxation, (c) odd-first async order, (d)
#         first-max pool ties, (f) bias bound 0.5 the training depends on
#         (experiments/results/cl_diagnosis.md).
# study_long [CORE [SEED [RULES]]]: the CPU study protocol with 12 epochs instead of 4 (cosine schedule
#         over 12), one seed (default 2), rules N-EP, TBP, C-EP, N-CpL by default: whether the rules that
#         leave the chance plateau late approach TBP given time (experiments/results/study_cpu_12ep/).
# cl_free120 [CORE [SEED]]: CL in the 12-epoch protocol with free phases of 120 iterations instead of 60
#         (seed 2 by default): whether CL's stall follows from its unconverged free phases, which
#         experiments/study_free_convergence.py finds slow (not oscillating) and converged by 120 iterations
#         (experiments/results/study_cpu_12ep_cl_free120/).
# cl_warm_free [CORE [SEED]]: CL in the 12-epoch protocol (60 free iterations) with each batch's free phase
#         starting from the previous batch's free state instead of its clamped state (warm_start=free,
#         seed 2 by default): whether the clamped start is what leaves CL's free phases unconverged
#         (experiments/results/study_cpu_12ep_cl_warm_free/).
# anderson_check [CORE]: the main job (experiments/fmnist_mlp.json: 2x256 MLP, Cauchy N=6, 3 epochs) with
#         the paper's fixed 150 free iterations and with Anderson-accelerated free phases stopped at a
#         residual of 1e-4 (cap 150), seeds 0-2: whether the accelerated solver leaves the validation
#         error unchanged and how many free iterations it takes in training
#         (experiments/results/anderson_main_job/).
# p_small_beta [CORE [SEED [RULES]]]: P-CpL and P-EP (or RULES) in the 12-epoch protocol with beta 0.1
#         instead of 0.25 (seed 2 by default): the one-sided rules' Hebbian bias, which grows the weights
#         into the upper clamp (experiments/results/study_cpu_diagnosis.md), is (beta / 2) F''(0) + O(beta^3)
#         where the equilibrium is smooth in beta: whether a smaller nudge keeps P-CpL seed 2 from
#         collapsing (experiments/results/study_cpu_12ep_p_beta01/).
# n_small_beta [CORE [SEED [T_FREE [RERELAX]]]]: N-EP in the 12-epoch protocol with beta 0.1 instead of 0.25
#         (seed 2 by default), T_FREE free iterations (default the protocol's 60) and, with RERELAX true, the
#         beta = 0 state re-relaxed (rerelax_free, which keeps the unfinished free phase's drift out of the
#         estimate): the N rules' mirror-image bias pushes layer-4 units onto the lower clamp and holds N-EP on
#         the chance plateau (experiments/results/study_cpu_diagnosis.md); whether a smaller nudge closes N-EP's
#         gap to TBP (experiments/results/study_cpu_12ep_n_beta01[_T<T_FREE>][_rerelax]/).
# one_sided_remedy [CORE [RULE [SEEDS]]]: a one-sided rule (p-cpl, p-ep, n-cpl; N-EP is n_small_beta) in the
#         12-epoch protocol at beta 0.1 with the beta = 0 state re-relaxed (rerelax_free), from the rule's
#         12-epoch run config, seeds 0-2 by default: whether the remedy of the two diagnosed biases holds on
#         every seed (experiments/results/study_cpu_12ep_{p_beta01,n_beta01_rerelax}/<rule>-seed<S>-beta0.1-rerelax/).
# p_rules: P-EP and P-CpL in the same 1-epoch protocol, with the released code's choices and with
#         holoeb's defaults, seeds 0-2.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
what=${1:?study, study_long, cl_free120, cl_warm_free, p_small_beta, n_small_beta, one_sided_remedy, study_table, table1, cl_ablation, anderson_check or p_rules}
core=${2:-0}
pin="taskset -c $core"
short="--set n_train=5120 --set epochs=1 --set random_flip=false --set random_crop=0"
case $what in
  study)
    rules=${3:-}
    for seed in 0 1 2; do
      $pin holoeb study ${rules:+--set "rules=$rules"} --set seeds=[$seed] --set out_dir=experiments/results/study_cpu \
        --no-progress || exit 1
    done ;;
  study_long)
    seed=${3:-2}
    rules=${4:-'["n-ep","tbp","c-ep","n-cpl"]'}
    for rule in $(echo "$rules" | tr -d '[]" ' | tr ',' ' '); do
      $pin holoeb study --set "rules=[\"$rule\"]" --set seeds=[$seed] --set epochs=12 \
        --set out_dir=experiments/results/study_cpu_12ep --no-progress || exit 1
    done ;;
  cl_free120)
    seed=${3:-2}
    $pin holoeb study --set 'rules=["cl"]' --set seeds=[$seed] --set epochs=12 --set T_free=120 \
      --set out_dir=experiments/results/study_cpu_12ep_cl_free120 --no-progress ;;
  p_small_beta)
    seed=${3:-2}
    rules=${4:-'["p-cpl","p-ep"]'}
    for rule in $(echo "$rules" | tr -d '[]" ' | tr ',' ' '); do
      $pin holoeb study --set "rules=[\"$rule\"]" --set seeds=[$seed] --set epochs=12 --set beta=0.1 \
        --set out_dir=experiments/results/study_cpu_12ep_p_beta01 --no-progress || exit 1
    done ;;
  n_small_beta)
    seed=${3:-2}
    t_free=${4:-60}
    rerelax=${5:-false}
    out=experiments/results/study_cpu_12ep_n_beta01
    [ "$t_free" = 60 ] || out=${out}_T$t_free
    [ "$rerelax" = false ] || out=${out}_rerelax
    $pin holoeb study --set 'rules=["n-ep"]' --set seeds=[$seed] --set epochs=12 --set beta=0.1 \
      --set T_free=$t_free --set rerelax_free=$rerelax --set out_dir=$out --no-progress ;;
  cl_warm_free)
    seed=${3:-2}
    $pin holoeb study --set 'rules=["cl"]' --set seeds=[$seed] --set epochs=12 --set warm_start=free \
      --set out_dir=experiments/results/study_cpu_12ep_cl_warm_free --no-progress ;;
  study_table)
    $pin holoeb study --set seeds=[0,1,2] --set out_dir=experiments/results/study_cpu --no-progress ;;
  table1)
    $pin python3 experiments/table1.py --only continuous --betas 0.5 --epochs 10 --seeds 3 \
      --out experiments/results/table1_fmnist --checkpoint-every 200 --checkpoints-to-keep 1 ;;
  cl_ablation)
    declare -A drop=([all-matched]="" [a-zero-start]="warm_start=none" [b-no-rerelax]="rerelax_free=false"
                     [c-even-first]="schedule=async" [d-split-ties]="pool_ties=split" [f-bias-gain]="bias_gain=null")
    for seed in 0 1 2; do
      for name in all-matched a-zero-start b-no-rerelax c-even-first d-split-ties f-bias-gain; do
        $pin holoeb study --config experiments/comparative_study_released.json --set 'rules=["cl"]' $short \
          --set seeds=[$seed] ${drop[$name]:+--set ${drop[$name]}} --set out_dir=experiments/results/cl_ablation/$name \
          --no-progress || exit 1
      done
      # every choice matched, with the released code's augmentation (crop + flip)
      $pin holoeb study --config experiments/comparative_study_released.json --set 'rules=["cl"]' --set n_train=5120 \
        --set epochs=1 --set seeds=[$seed] --set out_dir=experiments/results/cl_ablation/all-matched-crop-flip \
        --no-progress || exit 1
    done ;;
  anderson_check)
    for seed in 0 1 2; do
      for variant in fixed anderson; do
        extra=""
        [ $variant = anderson ] && extra="--set estimator.free_method=anderson --set estimator.free_tol=1e-4"
        $pin holoeb train --config experiments/fmnist_mlp.json --seed $seed $extra --no-progress \
          --out experiments/results/anderson_main_job/$variant-seed$seed || exit 1
      done
    done ;;
  one_sided_remedy)
    rule=${3:-p-cpl}
    seeds=${4:-0 1 2}
    case $rule in p-*) parent=study_cpu_12ep_p_beta01 ;; *) parent=study_cpu_12ep_n_beta01_rerelax ;; esac
    for seed in $seeds; do
      $pin holoeb train --config experiments/results/study_cpu_12ep/fashion_mnist-$rule-seed$seed/config.json \
        --set estimator.beta=0.1 --set estimator.rerelax_free=true --stop-after-epochs 12 --no-progress \
        --out experiments/results/$parent/$rule-seed$seed-beta0.1-rerelax || exit 1
    done ;;
  p_rules)
    for seed in 0 1 2; do
      for rule in p-ep p-cpl; do
        $pin holoeb study --config experiments/comparative_study_released.json --set "rules=[\"$rule\"]" $short \
          --set seeds=[$seed] --set out_dir=experiments/results/p_rules/released --no-progress || exit 1
        $pin holoeb study --set "rules=[\"$rule\"]" $short --set seeds=[$seed] \
          --set out_dir=experiments/results/p_rules/default --no-progress || exit 1
      done
    done ;;
  *) echo "unknown protocol '$what': study, study_long, cl_free120, cl_warm_free, p_small_beta, n_small_beta, one_sided_remedy, study_table, table1, cl_ablation, anderson_check or p_rules" >&2; exit 2 ;;
esac
