#!/usr/bin/env bash
# N sweep workers as a SLURM array, one GPU each, all pointed at one study. The distributed engine
# is the Optuna storage: a journal file on a shared filesystem, or PostgreSQL.
#
#   sbatch --array=0-15 sweeps/slurm_array.sh ackley_width_lr journal:///shared/sweeps/ackley.log
#   sbatch --array=0-63 sweeps/slurm_array.sh ackley_width_lr postgresql://optuna@dbhost/optuna
#
# A width-scan reproduction (atlas, fig2a) the same way: every task is a worker of the scan's study, and one
# final command writes the results (it finds the scan finished and reads every record from the storage):
#
#   PROFILE=paper WORK=/shared/runs sbatch --array=0-31 sweeps/slurm_array.sh atlas postgresql://optuna@dbhost/optuna
#   grelu-reproduce atlas --profile paper --storage postgresql://optuna@dbhost/optuna --work /shared/runs
#
#SBATCH --job-name=grelu-sweep
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --signal=TERM@120
set -uo pipefail
SWEEP=${1:?sweep name (a file in lightning_grelu/sweep_conf/sweep/)}
STORAGE=${2:?storage URL: journal:///shared/path.log or postgresql://user@host/db}
# Each array task is one worker: SLURM gives it one GPU (CUDA_VISIBLE_DEVICES is set by --gres), it
# claims trials until none is left and exits. Pre-emption or the time limit sends SIGTERM (--signal: 120 s
# before the limit): the trial in hand stops at an epoch's end with its checkpoint and goes back to the
# queue, the worker exits 143, and the task is requeued; requeued or re-submitted workers resume the study
# (nothing completed is redone; an interrupted trial continues from its checkpoint).
case "$SWEEP" in
  atlas|fig2a)  # a reproduction's width scan: this task is one worker (one GPU), no results written here
    grelu-reproduce "$SWEEP" --profile "${PROFILE:-paper}" --storage "$STORAGE" --workers 1 \
      --work "${WORK:-runs/reproduce}" --no-report ;;
  *)
    grelu-sweep "sweep=${SWEEP}" "sweep.storage=${STORAGE}" \
      "sweep.out_dir=${SWEEP_OUT:-sweeps_out}/${SWEEP}" "sweep.trial_overrides=['trainer=gpu']" ;;
esac
rc=$?
if [ "$rc" -eq 143 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then job="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; else job="$SLURM_JOB_ID"; fi
  scontrol requeue "$job"
fi
exit "$rc"
