"""The pieces the performance benchmarks (benchmarks/, `make bench`) measure with."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO

# benchmarks/ sits at the repository root, outside the installed package.
sys.path.insert(0, str(REPO))

from benchmarks import e_step_profile, noise_floor
from benchmarks.common import report_target
from benchmarks.em_iteration import checkpoint_seconds, peak_memory
from benchmarks.hardware import Limits, parameter_count
from emreason.generation.hf_generate import HFGenerator
from emreason.training.loss import TrainingSequence
from emreason.training.m_step import padding_share

MIB = 2**20


@pytest.fixture(scope="module")
def hf_generator(smoke_model_dir):
    return HFGenerator(smoke_model_dir, "float32", seed=0)


def chat(generator: HFGenerator, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return generator.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# The real model: seconds alone, minutes on shared cores.
@pytest.mark.slow
def test_hf_greedy_is_the_models_argmax_despite_left_padding(hf_generator):
    prompts = [chat(hf_generator, "Hi"), chat(hf_generator, "Which planet is the largest in the solar system?")]
    batched = hf_generator.generate(prompts, n=1, temperature=0.0, max_new_tokens=6)
    for prompt, [completion] in zip(prompts, batched):
        ids = hf_generator.tokenizer(prompt, return_tensors="pt").input_ids
        expected = []
        with torch.no_grad():
            for _ in range(6):
                token = hf_generator.model(ids).logits[0, -1].argmax().item()
                expected.append(token)
                if token in hf_generator.stop_ids:
                    break
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        assert completion.token_ids == tuple(expected)
        assert completion.finished == (expected[-1] in hf_generator.stop_ids)


# The real model: seconds alone, minutes on shared cores.
@pytest.mark.slow
def test_hf_samples_n_per_prompt_cut_at_the_stop_token(hf_generator):
    prompts = [chat(hf_generator, "Say yes."), chat(hf_generator, "Name a colour.")]
    completions = hf_generator.generate(prompts, n=3, temperature=1.0, max_new_tokens=24)
    assert [len(samples) for samples in completions] == [3, 3]
    for completion in (c for samples in completions for c in samples):
        assert 0 < len(completion.token_ids) <= 24
        stops = [i for i, token in enumerate(completion.token_ids) if token in hf_generator.stop_ids]
        assert stops == ([len(completion.token_ids) - 1] if completion.finished else [])
        assert completion.text == hf_generator.tokenizer.decode(completion.token_ids, skip_special_tokens=True)


def sequences(*lengths: int) -> list[TrainingSequence]:
    return [TrainingSequence((1,) * (length - 1), (2,)) for length in lengths]


def test_padding_share_of_length_ordered_micro_batches():
    # Micro-batches of 2 in a step ordered by length: [2, 2] [4, 8] -> 20 positions for 16 real.
    assert padding_share([sequences(2, 2, 4, 8)], 2) == pytest.approx(4 / 20)
    # Two steps of 2: [8, 2] [4, 2] -> 16 + 8 positions for 16 real.
    assert padding_share([sequences(8, 2), sequences(4, 2)], 2) == pytest.approx(8 / 24)
    assert padding_share([sequences(3, 3), sequences(5, 5)], 2) == 0


def test_target_lines_say_met_or_by_how_much_missed(capsys):
    report_target("speedup", 2.2, 3.0, "x", at_least=True)
    report_target("seconds", 0.7, 1.0, " s", at_least=False)
    report_target("memory", 9.5, 8.0, " GiB", at_least=False)
    assert capsys.readouterr().out.splitlines() == [
        "speedup_target: >= 3x (missed by 0.80x)",
        "seconds_target: <= 1 s (met)",
        "memory_target: <= 8 GiB (missed by 1.50 GiB)",
    ]


def test_peak_memory_counts_the_child_processes():
    # A parent holding 100 MiB whose child holds 200 MiB.
    child = "import time; x = bytearray(200 * 2**20); time.sleep(3)"
    parent = f"import subprocess, sys; x = bytearray(100 * 2**20); subprocess.run([sys.executable, '-c', {child!r}])"
    job = subprocess.Popen([sys.executable, "-c", parent])
    peak_rss, peak_pss = peak_memory(job)
    assert job.returncode == 0
    assert 300 * MIB < peak_rss < 400 * MIB
    assert 300 * MIB < peak_pss <= peak_rss


def test_checkpoint_seconds_are_read_from_the_iterations_own_log_lines():
    job_log = "\n".join([
        "[2026-12-06 09:00:00,000][emreason.em][INFO] - EM iteration 0: checkpoint",
        "[2026-12-06 09:00:01,000][emreason.em][INFO] - EM iteration 0: done",
        "[2026-12-06 09:03:10,250][emreason.em][INFO] - EM iteration 1: checkpoint",
        "[2026-12-06 09:03:12,000][emreason.em][INFO] - EM iteration 1: done",
    ])
    assert checkpoint_seconds(job_log, iteration=1) == pytest.approx(1.75)


def test_the_limits_count_each_parameter_once_and_2_and_6_or_4_flop_per_parameter_and_token(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    # The tied embedding is one tensor, the LM head's weight.
    assert model.lm_head.weight is model.model.embed_tokens.weight
    params = parameter_count(AutoConfig.from_pretrained(tiny_model_dir))
    assert params == sum(p.numel() for p in model.parameters())
    limits = Limits(params, {"float32": 3.0})
    assert limits.decode_tokens_per_s("float32") == pytest.approx(3e9 / (2 * params))
    assert limits.training_tokens_per_s("float32") == pytest.approx(3e9 / (6 * params))
    # LoRA's frozen base: no weight gradients, so forward 2 and backward 2.
    assert limits.training_tokens_per_s("float32", frozen_base=True) == pytest.approx(3e9 / (4 * params))


def test_the_e_step_profile_splits_wall_time_without_counting_nested_events_twice():
    """Matrix products and attention run inside the forward range (and the vocabulary
    projection's product inside the logits range): the rest of the model is what is left of
    both ranges, the engine what is left of the wall time."""
    microseconds = {
        e_step_profile.FORWARD: 60e6,
        e_step_profile.LOGITS: 5e6,
        e_step_profile.SAMPLE: 8e6,
        e_step_profile.MATMUL: 40e6,
        e_step_profile.ATTENTION[0]: 14e6,
        e_step_profile.ATTENTION[1]: 1e6,
        "aten::mul": 3e6,  # counted through the ranges that hold it
    }
    events = [SimpleNamespace(key=key, cpu_time_total=value) for key, value in microseconds.items()]
    shares = e_step_profile.time_shares(events, wall_s=80.0)
    assert shares == pytest.approx({"matmul": 40, "attention": 15, "other_model": 10, "sampling": 8, "engine": 7})
    assert sum(shares.values()) == pytest.approx(80.0)


def test_the_noise_floor_composes_the_study_job_outside_its_sweep():
    job = noise_floor.compose(noise_floor.DEFAULT_OVERRIDES)
    assert (job.dataset.name, job.dataset.test_size, job.em.zero_shot_cache) == ("gsm8k", 250, None)
