"""The pieces of the EM loop that need no model: data order and M-step sequences."""

from emreason.data.example import AnswerKind, Example
from emreason.em import questions_for_iteration, training_sequences
from emreason.generation.completion import Completion
from emreason.samplers.base import Rationale

EOS = 2
TRAIN = [Example(f"q{i}", f"question {i}", "A", AnswerKind.LETTER, ("x", "y")) for i in range(10)]


def test_each_pass_visits_every_training_question_once_in_a_seeded_order():
    first_pass = [e.id for it in range(1, 6) for e in questions_for_iteration(TRAIN, it, 2, seed=0)]
    assert sorted(first_pass) == sorted(e.id for e in TRAIN)
    assert first_pass != [e.id for e in TRAIN]  # shuffled
    again = [e.id for it in range(1, 6) for e in questions_for_iteration(TRAIN, it, 2, seed=0)]
    assert again == first_pass
    other_seed = [e.id for it in range(1, 6) for e in questions_for_iteration(TRAIN, it, 2, seed=1)]
    assert other_seed != first_pass
    second_pass = [e.id for it in range(6, 11) for e in questions_for_iteration(TRAIN, it, 2, seed=0)]
    assert sorted(second_pass) == sorted(first_pass) and second_pass != first_pass


def test_an_iteration_asking_for_more_than_the_training_set_gets_each_question_once():
    assert len({e.id for e in questions_for_iteration(TRAIN, 1, 50, seed=0)}) == 10


class CharTokenizer:
    eos_token_id = EOS

    def __call__(self, text):
        return type("Encoding", (), {"input_ids": [ord(c) for c in text]})()

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == EOS))


class RecordingPrompts:
    def text(self, example, *, hint):
        return f"[{'HINT ' if hint else ''}{example.question}]"


def test_m_step_sequences_use_the_unhinted_prompt_and_end_finished_rationales_with_eos():
    hinted = Rationale(TRAIN[0], Completion("because", (5, 6), finished=True), "A", True, hinted=True)
    cut_off = Rationale(TRAIN[1], Completion("and so", (7, 8, 9), finished=False), "A", True, hinted=False, weight=-0.5)
    already_ended = Rationale(TRAIN[2], Completion("ok", (4, EOS), finished=True), "A", True, hinted=True)
    sequences = training_sequences([hinted, cut_off, already_ended], RecordingPrompts(), CharTokenizer())
    assert bytes(sequences[0].prompt_ids).decode() == "[question 0]"
    assert sequences[0].completion_ids == (5, 6, EOS)
    assert sequences[1].completion_ids == (7, 8, 9)
    assert sequences[1].weight == -0.5
    assert sequences[2].completion_ids == (4, EOS)


def test_a_rationale_that_runs_past_its_answer_is_trained_up_to_the_answer_then_eos():
    from emreason.data.grading import grade

    text = "Mars. The answer is (A).\n\nQuestion: what is 2+2? The answer is 4"
    completion = Completion(text, tuple(ord(c) for c in text), finished=False)
    graded = grade(text, TRAIN[0])
    rationale = Rationale(TRAIN[0], completion, graded.answer, graded.correct, hinted=False, answer_end=graded.answer_end)
    assert graded.correct and rationale.ran_past_answer
    (sequence,) = training_sequences([rationale], RecordingPrompts(), CharTokenizer())
    assert bytes(sequence.completion_ids[:-1]).decode() == "Mars. The answer is (A)."
    assert sequence.completion_ids[-1] == EOS
    ends_at_answer = Rationale(TRAIN[0], Completion("The answer is (A).", (1, 2), True), "A", True, False, answer_end=18)
    assert not ends_at_answer.ran_past_answer


def test_a_rationale_cut_after_a_latex_answer_is_trained_with_its_closing_delimiters():
    from emreason.data.grading import grade

    number = Example("n", "How many?", "800", AnswerKind.NUMBER)
    text = "So 8 * 100 = 800.\n\nTherefore, the answer is \\(\\boxed{800}\\).\n\nQuestion: how many?"
    graded = grade(text, number)
    completion = Completion(text, tuple(ord(c) for c in text), finished=False)
    rationale = Rationale(number, completion, graded.answer, graded.correct, hinted=False, answer_end=graded.answer_end)
    (sequence,) = training_sequences([rationale], RecordingPrompts(), CharTokenizer())
    assert "".join(map(chr, sequence.completion_ids[:-1])).endswith("\\(\\boxed{800}\\).")
    assert sequence.completion_ids[-1] == EOS


def test_iteration_metrics_count_only_the_rationales_learned_from():
    from emreason.em import iteration_metrics, test_metrics
    from emreason.evaluation import Evaluation
    from emreason.samplers.base import EStepResult

    right = Rationale(TRAIN[0], Completion("a", (1, 2, 3, 4), True), "A", True, hinted=True, weight=0.5)
    wrong = Rationale(TRAIN[1], Completion("b", (1, 2), True), "B", False, hinted=False, weight=-0.25)
    e_step = EStepResult(accepted=[right, wrong], proposals=[right, wrong], metrics={"trice_mean_beta": 0.5})
    row = iteration_metrics(3, TRAIN[:4], e_step, test_metrics(Evaluation(0.5, 0.1, 20.0)), {"e_step_s": 1.0})
    assert row["iteration"] == 3 and row["test_accuracy"] == 0.5
    assert row["rationales_kept"] == 1 and row["questions_with_rationale"] == 0.25
    assert row["mean_rationale_tokens"] == 4 and row["tokens_generated"] == 6
    assert row["acceptance_rate"] == 0.5 and row["trice_mean_beta"] == 0.5 and row["e_step_s"] == 1.0
    assert row["rationales_cut_after_answer"] == 0
