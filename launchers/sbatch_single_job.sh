#!/bin/bash
# sbatch_single_job.sh - one long emreason run as a plain SLURM batch job
# (no Hydra launcher, no waiting process on the login node).
#
# Usage, from the repo root with the venv that has emreason on PATH (the job
# inherits the submitting shell's environment and runs in the submit dir):
#
#   sbatch launchers/sbatch_single_job.sh experiment=tiny sampler=star seed=0
#
# Everything after the script name is passed to emreason as Hydra overrides.
# sbatch options given on the command line beat the #SBATCH lines below:
#
#   sbatch --partition=a100 --time=2-00:00:00 --gpus-per-node=4 --mem=256G \
#          launchers/sbatch_single_job.sh sampler=pps seed=1
#
# On a cluster without GPUs in the partition, pass --gpus-per-node=0.
#
# Environment (read by this script, exported by sbatch from your shell):
#   EMREASON_BIN           emreason executable (default: `emreason` on PATH,
#                          e.g. /shared/emreason/.venv/bin/emreason)
#   EMREASON_MAX_REQUEUES  requeues on time limit / preemption (default: 3)
#   EMREASON_RUN_DIR       Hydra run dir (default: outputs/slurm/<job id>);
#                          or pass hydra.run.dir=... yourself
#
# Time limit and preemption: SLURM sends SIGUSR1 to this batch shell 120 s
# before the time limit (--signal=B:USR1@120; sites that preempt with a grace
# period send it on preemption too).  The trap below requeues the job with
# `scontrol requeue` (needs --requeue, set below); SLURM then stops the
# running step (SIGTERM, then SIGKILL after the site's KillWait) and starts
# the job again (after SLURM's requeue delay, ~2 min here), same job id, with
# SLURM_RESTART_COUNT incremented.  The
# Hydra run dir is keyed on the job id, so the restarted emreason runs in the
# same directory: it continues only if emreason resumes from what it saved
# there.  Preemption by requeue (PreemptMode=REQUEUE) needs nothing from this
# script.  Logs append to slurm-<job name>-<job id>.out across restarts.
#
#SBATCH --job-name=emreason
#SBATCH --partition=gpu
#SBATCH --time=24:00:00
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --gpus-per-node=1
#SBATCH --mem=64G
#SBATCH --output=slurm-%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120

set -uo pipefail

EMREASON_BIN="${EMREASON_BIN:-emreason}"
MAX_REQUEUES="${EMREASON_MAX_REQUEUES:-3}"
RESTARTS="${SLURM_RESTART_COUNT:-0}"

args=("$@")
run_dir_given=0
for a in "${args[@]}"; do
  [[ "$a" == hydra.run.dir=* || "$a" == ++hydra.run.dir=* ]] && run_dir_given=1
done
if ((run_dir_given == 0)); then
  args+=("hydra.run.dir=${EMREASON_RUN_DIR:-outputs/slurm/${SLURM_JOB_ID:-local}}")
fi

# shellcheck disable=SC2317  # called by the trap
on_usr1() {
  echo "[sbatch_single_job] $(date -Is) SIGUSR1: time limit or preemption ahead (restart ${RESTARTS}/${MAX_REQUEUES})"
  if ((RESTARTS < MAX_REQUEUES)); then
    echo "[sbatch_single_job] requeuing job ${SLURM_JOB_ID}"
    scontrol requeue "${SLURM_JOB_ID}"
  else
    echo "[sbatch_single_job] not requeuing: ${MAX_REQUEUES} requeues used"
  fi
}
trap on_usr1 USR1

echo "[sbatch_single_job] $(date -Is) job ${SLURM_JOB_ID:-?} on $(hostname), restart ${RESTARTS}, cwd $(pwd)"
echo "[sbatch_single_job] ${EMREASON_BIN} ${args[*]}"

# srun in the background so the trap runs as soon as the signal arrives
# (bash defers traps while a foreground command runs).
srun --kill-on-bad-exit=1 "${EMREASON_BIN}" "${args[@]}" &
srun_pid=$!
while :; do
  wait "$srun_pid"
  rc=$?
  # wait returns early (>128) when a trapped signal arrives: keep waiting.
  kill -0 "$srun_pid" 2>/dev/null || break
done
echo "[sbatch_single_job] $(date -Is) emreason exited with ${rc}"
exit "$rc"
