"""One M-step process, alive for the whole job (started by TrainerProcesses, see
trainer_processes.py): `python -m emreason.training.distributed` under torchrun.

It joins the process group, connects to the job, and then does what the job asks, in order:
build the trainer (its shard of it), run M-steps, write weights for the engine, save and load
checkpoints. Every process gets every request, so their collectives line up.
"""

import traceback

import torch.distributed as dist

from emreason.training.data_parallel import join_process_group
from emreason.training.m_step import MStepTrainer, NonFiniteTrainingError
from emreason.training.trainer_processes import CLOSE, FAILED, NON_FINITE, OK, START, connect_to_job


def main() -> None:
    ranks, device = join_process_group()
    job = connect_to_job(ranks.rank)
    trainer = None
    while True:
        method, args = job.recv()
        if method == CLOSE:
            break
        try:
            if method == START:
                trainer = MStepTrainer(*args, device=device, ranks=ranks)
                reply = (OK, None)
            else:
                reply = (OK, getattr(trainer, method)(*args))
        except NonFiniteTrainingError as error:
            # Every process stops at the same step (they see the same loss and norm), and the
            # trainer is still the one before that step: the job decides what comes next.
            reply = (NON_FINITE, str(error))
        except Exception:
            job.send((FAILED, traceback.format_exc()))
            raise
        job.send(reply)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
