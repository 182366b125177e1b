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
from emreason.training.trainer_processes import CLOSE, FAILED, OK, RAISED, START, connect_to_job, receive, send


def main() -> None:
    """Serve the job's requests until it closes the trainer."""
    ranks, device = join_process_group()
    job = connect_to_job(ranks.rank)
    trainer = None
    while True:
        method, args = receive(job)
        if method == CLOSE:
            break
        try:
            if method == START:
                base_model_dir, config, pad_id, seed, checkpoint = args
                trainer = MStepTrainer(base_model_dir, config, pad_id, seed, device, checkpoint, ranks)
                reply = (OK, None)
            else:
                reply = (OK, getattr(trainer, method)(*args))
        except (NonFiniteTrainingError, OSError) as error:
            # A non-finite step stops every process at the same step (they see the same loss and
            # norm), with the trainer still the one before it; a failed checkpoint write (DCP
            # reports it to every process) leaves the trainer as it was. The job decides.
            reply = (RAISED, error)
        except Exception:
            send(job, (FAILED, traceback.format_exc()))
            raise
        send(job, reply)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
