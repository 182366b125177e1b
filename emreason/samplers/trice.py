"""TRICE: MCMC-EM with a persistent memory of one rationale per training question and a
leave-one-out control variate (Phan et al., NeurIPS 2023).

The math (beta, the signed sequence weights, systematic resampling) is in small functions on
tensors so it can be checked without a model; `TRICESampler` runs one MCMC step per question.
"""

from dataclasses import dataclass, field, replace
from enum import Enum

import torch

from emreason.checks import at_least
from emreason.data.example import Example
from emreason.generation.completion import Completion
from emreason.samplers.base import EStepResult, Proposer, Rationale, Sampler, SamplerConfig, ToSequences
from emreason.training.trainer_processes import Trainer


class MemoryInit(str, Enum):
    hinted = "hinted"  # the guide prompt q(z | x, y*): the correct answer as a hint
    unhinted = "unhinted"  # samples from the model p(z | x)


@dataclass
class TRICEConfig(SamplerConfig):
    name: str = "trice"
    # Where a question's first memory rationale comes from.
    memory_init: MemoryInit = MemoryInit.hinted
    # Rationales drawn once per question to initialise its memory; the first correct one is
    # kept, and a question with none stays out of the gradient until a proposal is accepted.
    init_samples: int = field(default=4, metadata=at_least(1))
    # Temperature of the proposals and of the initial samples: must be 1 (see problems).
    temperature: float = 1.0
    # Questions per TRICE step: one E-step on this minibatch, then ONE optimizer step on its
    # estimate (the paper's M).
    minibatch_size: int = field(default=8, metadata=at_least(1))
    # (E-step on a fresh minibatch, one optimizer step) pairs per EM iteration, each followed by
    # a weight sync, before the iteration evaluates; em.questions_per_iteration is not used.
    steps_per_iteration: int = field(default=4, metadata=at_least(1))
    # Log the variance of the step's gradient estimate with and without the control variate
    # (one extra forward pass, no backward, over the step's memory rationales and proposals).
    log_gradient_variance: bool = True
    # Subtract the leave-one-out control variate: wrong proposals get negative weights.
    control_variate: bool = True
    # Train on subsample_size sequences drawn by systematic resampling instead of all of them.
    subsample: bool = False
    # L, the sequences drawn per E-step when subsample is true.
    subsample_size: int = field(default=8, metadata=at_least(1))

    def problems(self) -> list[str]:
        if self.temperature != 1.0:
            return [
                f"sampler.temperature={self.temperature}: sampler=trice needs 1.0. Accepting a proposal "
                "iff it is correct is Metropolis-Hastings only when the proposals come from the model "
                "p(z | x) itself; another temperature (or top-p/top-k) samples a different distribution."
            ]
        return []


# ---- The estimator, on tensors of shape (M,): c' = `valid`, c~ = `proposal_correct` (0/1). ----


def leave_one_out_beta(valid: torch.Tensor, proposal_correct: torch.Tensor) -> torch.Tensor:
    """beta_m = sum_{m' != m} c'_{m'} c~_{m'} / sum_{m' != m} c'_{m'}, 0 where nothing is left."""
    accepted = valid * proposal_correct
    others_accepted = accepted.sum() - accepted
    others_valid = valid.sum() - valid
    return torch.where(others_valid > 0, others_accepted / others_valid.clamp(min=1), 0.0)


def mean_or_zero(values: torch.Tensor) -> float:
    """0 instead of NaN when every question of the step was skipped as too long: no proposals."""
    return values.mean().item() if len(values) else 0.0


def signed_item_weights(valid: torch.Tensor, proposal_correct: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """The 2M signed, unnormalised weights s_i w~_i: first the memory rationales,
    c'_m (1 - c~_m beta_m) (an accepted proposal IS the memory rationale, so its -beta term is
    merged here), then the proposals, -c'_m (1 - c~_m) beta_m (only wrong ones are nonzero).
    beta = 0 gives the estimator without control variate."""
    memory = valid * (1 - proposal_correct * beta)
    proposals = -valid * (1 - proposal_correct) * beta
    return torch.cat([memory, proposals])


def full_weights(signed: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The weights of g = (1 / sum c') sum_i s_i w~_i grad log p(z_i | x_i); 0 when no c' is 1."""
    return signed / valid.sum() if valid.sum() > 0 else torch.zeros_like(signed)


def systematic_resample(probabilities: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """How many times each item is drawn among `size` draws: one uniform offset, `size` evenly
    spaced points, each picks the item whose cumulative-probability bin holds it. Every count is
    the floor or the ceiling of size * p_i, and its expectation is size * p_i."""
    points = (torch.rand(1, generator=generator, dtype=torch.float64) + torch.arange(size)) / size
    cumulative = probabilities.double().cumsum(0) / probabilities.sum()
    drawn = torch.searchsorted(cumulative, points, right=True).clamp(max=len(probabilities) - 1)
    return torch.bincount(drawn, minlength=len(probabilities))


def subsampled_weights(
    signed: torch.Tensor, valid: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The subsampled estimator (sum w~ / sum c') (1 / L) sum_l s_l grad log p(z_l | x_l), as a
    weight per item: L draws with probability proportional to w~, a drawn item's weight summed
    over its draws. Unbiased for `full_weights`."""
    magnitudes = signed.abs()
    if valid.sum() == 0 or magnitudes.sum() == 0:
        return torch.zeros_like(signed)
    counts = systematic_resample(magnitudes, size, generator)
    return counts * signed.sign() * (magnitudes.sum() / valid.sum()) / size


def gradient_variance(memory_scores: torch.Tensor, proposal_scores: torch.Tensor, valid: torch.Tensor,
                      proposal_correct: torch.Tensor, beta: torch.Tensor) -> float:
    """A cheap estimate of the variance (trace of the covariance) of one step's gradient estimate.

    memory_scores, proposal_scores: (M, D), a score grad log p(z | x) of each question's memory
    rationale and proposal on some parameters (zero rows where there is no memory rationale).
    The estimate is the sum over questions of a_m = c'_m (s(z_m) - beta_m s(z~_m)) / sum c'
    (beta = 0: without control variate); treating the a_m as independent draws, its variance is
    M / (M - 1) sum_m ||a_m - mean a||^2. 0 with fewer than two questions or no valid one.
    """
    if len(valid) < 2 or valid.sum() == 0:
        return 0.0
    scale = (valid / valid.sum()).unsqueeze(1)
    terms = scale * (memory_scores - beta.unsqueeze(1) * proposal_scores)
    centred = terms - terms.mean(dim=0)
    return (len(valid) / (len(valid) - 1) * centred.pow(2).sum()).item()


# ---- The sampler ----


@dataclass(frozen=True)
class Remembered:
    """A question's memory rationale: always a correct one."""

    completion: Completion
    answer: str
    hinted: bool
    # Where its final answer statement ends (Grade.answer_end): it is trained up to there.
    answer_end: int | None = None


class TRICESampler(Sampler):
    """One independence Metropolis-Hastings step per question of the minibatch.

    The memory is initialised lazily: a question's memory is filled the first time the EM loop
    puts it in a minibatch (`questions_for_iteration` walks the training set), so the sampler
    needs no pass over the whole training set before the first M-step. A question whose initial
    samples are all wrong is remembered as seen with no rationale (c' = 0, no gradient) until a
    proposal for it is accepted.

    `proposals` of the result holds the initial samples too (they count in tokens_generated);
    `trice_acceptance_rate` is over this step's MH proposals only. An EM iteration is
    `steps_per_iteration` pairs of (`e_step` on a minibatch, `train`: one optimizer step).
    """

    config: TRICEConfig

    def __init__(self, config: TRICEConfig, proposer: Proposer):
        super().__init__(config, proposer)
        # Question id -> its current correct rationale.
        self.memory: dict[str, Remembered] = {}
        # Ids of the questions whose memory has been initialised, with or without success.
        self.seen: set[str] = set()
        # The last E-step's memory rationales (None: no memory), proposals, c', c~ and beta.
        self.step: tuple[list[Rationale | None], list[Rationale], torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def questions_per_iteration(self, configured: int, train_size: int) -> int:
        return self.config.minibatch_size * self.config.steps_per_iteration

    def minibatches(self, questions: list[Example]) -> list[list[Example]]:
        size = self.config.minibatch_size
        return [questions[start : start + size] for start in range(0, len(questions), size)]

    def train(self, trainer: Trainer, e_step: EStepResult, to_sequences: ToSequences) -> dict[str, float]:
        """ONE optimizer step on -sum_i w_i log p(z_i | x_i), the weights of `e_step` as they
        are (they hold the paper's 1 / sum c'), after logging the estimate's variance at the
        parameters that sampled the proposals."""
        metrics = self._gradient_variances(trainer, to_sequences) if self.config.log_gradient_variance else {}
        return {**metrics, **trainer.estimator_step(to_sequences(e_step.accepted)).metrics()}

    def _gradient_variances(self, trainer: Trainer, to_sequences: ToSequences) -> dict[str, float]:
        """`gradient_variance` with and without the control variate, on the scores of a bias
        on the output logits (training/loss.py, `logit_bias_scores`)."""
        current, proposals, valid, proposal_correct, beta = self.step
        remembered = [r for r in current if r is not None]
        scores = trainer.log_likelihood_scores(to_sequences(remembered + proposals))
        memory_scores = torch.zeros(len(current), scores.shape[1])
        memory_scores[valid.bool()] = scores[: len(remembered)]
        proposal_scores = scores[len(remembered) :]
        return {
            "trice_grad_variance_cv": gradient_variance(memory_scores, proposal_scores, valid, proposal_correct, beta),
            "trice_grad_variance_no_cv": gradient_variance(
                memory_scores, proposal_scores, valid, proposal_correct, torch.zeros_like(beta)
            ),
        }

    def e_step(self, examples: list[Example]) -> EStepResult:
        new = list({ex.id: ex for ex in examples if ex.id not in self.seen}.values())
        initial = self._initialise(new)
        tries = self.proposer.propose(examples, hint=False, n=1, temperature=self.config.temperature)
        # One proposal per question; none for a question whose prompt was skipped as too long.
        proposals = [proposal for question_tries in tries for proposal in question_tries]
        current = [self._accept(proposal) for proposal in proposals]

        valid = torch.tensor([float(r is not None) for r in current])
        proposal_correct = torch.tensor([float(p.correct) for p in proposals])
        beta = leave_one_out_beta(valid, proposal_correct)
        cv_beta = beta if self.config.control_variate else torch.zeros_like(beta)
        signed = signed_item_weights(valid, proposal_correct, cv_beta)
        if self.config.subsample:
            weights = subsampled_weights(signed, valid, self.config.subsample_size)
        else:
            weights = full_weights(signed, valid)

        self.step = (current, proposals, valid, proposal_correct, beta)
        # A None in `current` (no memory rationale) has c' = 0, so weight 0, and is left out.
        items = current + proposals
        sequences = [replace(r, weight=float(w)) for r, w in zip(items, weights) if w != 0]
        return EStepResult(
            accepted=sequences,
            proposals=initial + proposals,
            metrics={
                "trice_acceptance_rate": mean_or_zero(proposal_correct),
                "trice_mean_beta": mean_or_zero(beta),
                "trice_new_questions": len(new),
                "trice_valid_rationales": len(self.memory),
                "trice_valid_share": len(self.memory) / len(self.seen),
            },
        )

    def _initialise(self, new: list[Example]) -> list[Rationale]:
        """Fill the memory of questions seen for the first time; return every sample drawn."""
        tries_per_question = self.proposer.propose(
            new,
            hint=self.config.memory_init is MemoryInit.hinted,
            n=self.config.init_samples,
            temperature=self.config.temperature,
        )
        for example, tries in zip(new, tries_per_question):
            self.seen.add(example.id)
            correct = [r for r in tries if r.correct]
            if correct:
                self._remember(correct[0])
        return [r for tries in tries_per_question for r in tries]

    def _accept(self, proposal: Rationale) -> Rationale | None:
        """The MH step with a 0/1 likelihood: the proposal replaces the memory iff it is correct.
        Returns the question's memory rationale after the step (None when it has none)."""
        if proposal.correct:
            self._remember(proposal)
            return proposal
        remembered = self.memory.get(proposal.example.id)
        if remembered is None:
            return None
        return Rationale(
            proposal.example, remembered.completion, remembered.answer, True, remembered.hinted,
            answer_end=remembered.answer_end,
        )

    def _remember(self, rationale: Rationale) -> None:
        self.memory[rationale.example.id] = Remembered(
            rationale.completion, rationale.answer, rationale.hinted, rationale.answer_end
        )

    def state_dict(self) -> dict:
        """The memory as JSON: question id -> rationale text, token ids, answer."""
        return {
            "seen": sorted(self.seen),
            "memory": {
                question_id: {
                    "text": r.completion.text,
                    "token_ids": list(r.completion.token_ids),
                    "finished": r.completion.finished,
                    "answer": r.answer,
                    "hinted": r.hinted,
                    "answer_end": r.answer_end,
                }
                for question_id, r in self.memory.items()
            },
        }

    def load_state_dict(self, state: dict) -> None:
        self.seen = set(state["seen"])
        self.memory = {
            question_id: Remembered(
                Completion(r["text"], tuple(r["token_ids"]), r["finished"]), r["answer"], r["hinted"], r["answer_end"]
            )
            for question_id, r in state["memory"].items()
        }
