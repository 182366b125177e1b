#!/bin/bash
# sbatch_multinode.sh - one long emreason run on N nodes x G GPUs: EM (the vLLM engine) on the
# first node, the M-step sharded over every GPU of every node (FSDP2, one torchrun agent per
# node, started with srun by the job; rendezvous on the first node).
#
#   sbatch --nodes=2 --gpus-per-node=8 launchers/sbatch_multinode.sh \
#          model=qwen2_5_3b generator=vllm_gpu generator.sleep_during_m_step=true
#
# The node and GPU counts come from SLURM's environment (SLURM_NNODES, SLURM_GPUS_ON_NODE);
# everything else, requeueing included, is launchers/sbatch_single_job.sh, which this script
# runs with the optimizer overrides added. Untested here (no GPU, one node): docs/training.md.
#
#SBATCH --job-name=emreason
#SBATCH --partition=gpu
#SBATCH --time=48:00:00
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --mem=0
#SBATCH --exclusive
#SBATCH --output=slurm-%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120

set -uo pipefail
gpus="${SLURM_GPUS_ON_NODE:?run with --gpus-per-node}"
exec "${SLURM_SUBMIT_DIR}/launchers/sbatch_single_job.sh" \
  optimizer.launcher=srun optimizer.nodes="${SLURM_NNODES}" optimizer.processes="$((SLURM_NNODES * gpus))" "$@"
