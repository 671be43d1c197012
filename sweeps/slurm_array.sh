#!/usr/bin/env bash
# N sweep workers as a SLURM array, one GPU each, all pointed at one study. The distributed engine
# is the Optuna storage: a journal file on a shared filesystem, or PostgreSQL.
#
#   sbatch --array=0-15 sweeps/slurm_array.sh ackley_width_lr journal:///shared/sweeps/ackley.log
#   sbatch --array=0-63 sweeps/slurm_array.sh ackley_width_lr postgresql://optuna@dbhost/optuna
#
#SBATCH --job-name=grelu-sweep
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=12:00:00
set -euo pipefail
SWEEP=${1:?sweep name (a file in conf/sweep/)}
STORAGE=${2:?storage URL: journal:///shared/path.log or postgresql://user@host/db}
# Each array task is one worker: SLURM gives it one GPU (CUDA_VISIBLE_DEVICES is set by --gres), it
# claims trials until none is left and exits. Re-submitting the array resumes the study (nothing
# completed is redone; trials of a killed task are retried on PostgreSQL, marked failed on a journal).
exec grelu-sweep "sweep=${SWEEP}" "sweep.storage=${STORAGE}" \
  "sweep.out_dir=${SWEEP_OUT:-sweeps_out}/${SWEEP}" "sweep.trial_overrides=['trainer=gpu']"
