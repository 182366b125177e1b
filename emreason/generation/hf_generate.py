"""transformers `generate` behind the same interface as VLLMGenerator: the baseline the E-step
benchmark compares vLLM with (benchmarks/e_step.py)."""

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from emreason.generation.completion import Completion


class HFGenerator:
    def __init__(self, model_dir: Path, dtype: str, seed: int):
        # Left padding: every prompt of a batch ends where generation starts.
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
        stop = self.model.generation_config.eos_token_id
        self.stop_ids = set(stop if isinstance(stop, list) else [stop])
        torch.manual_seed(seed)

    def generate(
        self, prompts: list[str], *, n: int, temperature: float, max_new_tokens: int
    ) -> list[list[Completion]]:
        """All prompts in one padded batch, n rows each (temperature 0 = greedy)."""
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True)
        if temperature > 0:
            # top_k=0 and top_p=1: the whole distribution, as vLLM samples by default.
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        else:
            sampling = {"do_sample": False}
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                **sampling,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        rows = [self._completion(ids) for ids in output[:, inputs.input_ids.shape[1] :].tolist()]
        return [rows[i : i + n] for i in range(0, len(rows), n)]

    def _completion(self, ids: list[int]) -> Completion:
        """The row up to and including its first stop token (the batch pads finished rows)."""
        end = next((i + 1 for i, token in enumerate(ids) if token in self.stop_ids), None)
        token_ids = tuple(ids[:end] if end else ids)
        return Completion(self.tokenizer.decode(token_ids, skip_special_tokens=True), token_ids, finished=end is not None)
