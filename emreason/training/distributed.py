"""One torchrun process of a multi-process M-step (started by MStepTrainer, see
data_parallel.py): `python -m emreason.training.distributed <hand-off folder>`."""

import json
import sys
from pathlib import Path

import torch.distributed as dist

from emreason.training.data_parallel import ERROR, LOSSES, Handoff, join_process_group
from emreason.training.m_step import MStepTrainer, NonFiniteTrainingError


def main(folder: Path) -> None:
    ranks, device = join_process_group()
    handoff = Handoff.load(folder)
    trainer = MStepTrainer(handoff.base_model_dir, handoff.config, handoff.pad_id, handoff.seed, device, folder)
    try:
        losses = trainer.train(handoff.steps, ranks)
    except NonFiniteTrainingError as error:
        # Every process sees the same summed loss and gradient norm, so all stop here.
        if ranks.rank == 0:
            (folder / ERROR).write_text(str(error))
        sys.exit(1)
    if ranks.rank == 0:
        trainer.save_weights(folder / "model")
        trainer.save_training_state(folder)
        (folder / LOSSES).write_text(json.dumps(losses))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
