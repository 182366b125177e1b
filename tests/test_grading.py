"""Answer extraction and grading on realistic model output: right, wrong and unparseable."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emreason.data.answers import normalize_number, normalize_text
from emreason.data.config import PromptConfig
from emreason.data.example import AnswerKind, Example
from emreason.data.grading import extract_answer, grade

ARC = Example("arc-1", "Which is a planet?", "B", AnswerKind.LETTER, ("the Sun", "Mars", "the Moon", "a comet"))
FIVE = Example("arc-5", "Pick one.", "E", AnswerKind.LETTER, ("a", "b", "c", "d", "e"))
BBH_LETTER = Example(
    "date_understanding/test/1",
    "Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?\nOptions:\n"
    "(A) 12/11/1937\n(B) 12/25/1937\n(C) 01/04/1938\n(D) 12/04/1937\n(E) 12/25/2006\n(F) 07/25/1937",
    "B",
    AnswerKind.LETTER,
)
GSM = Example("gsm-1", "How many clips did Natalia sell?", "72", AnswerKind.NUMBER)
THOUSAND = Example("gsm-2", "How much does it cost?", "1000", AnswerKind.NUMBER)
NEGATIVE = Example("bbh-arith", "((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7)) =", "-3.5", AnswerKind.NUMBER)
VALID = Example("formal_fallacies/test/1", "Is the argument valid?", "invalid", AnswerKind.TEXT)
TRUE = Example("boolean_expressions/test/1", "not ( True ) and ( True ) is", "False", AnswerKind.YES_NO)
LIAR = Example("web_of_lies/test/1", "Does Sima tell the truth?", "No", AnswerKind.YES_NO)
NAVIGATE = Example(
    "navigate/test/1",
    "If you follow these instructions, do you return to the starting point? Take 3 steps. Turn around. Take 3 steps.\n"
    "Options:\n- Yes\n- No",
    "Yes",
    AnswerKind.YES_NO,
)
GAS = Example(
    "arc-gas", "Which gas do plants take in?", "B", AnswerKind.LETTER, ("oxygen", "carbon dioxide", "nitrogen", "helium")
)
FOOD = Example("arc-food", "What is a lion?", "C", AnswerKind.LETTER, ("prey", "a plant", "predator", "a rock"))
WATER = Example("arc-water", "What covers most of Earth?", "B", AnswerKind.LETTER, ("water", "salt water", "ice", "sand"))
FOREST = Example("arc-forest", "Where do owls live?", "B", AnswerKind.LETTER, ("a desert", "a forest", "the sea", "a cave"))
HALF = Example("gsm-half", "What share is left?", "0.5", AnswerKind.NUMBER)
FIVE_NUM = Example("gsm-5", "What is 2 + 3?", "5", AnswerKind.NUMBER)
DYCK = Example("dyck_languages/test/1", "Complete the rest of the sequence: [ [ (", ") ] ]", AnswerKind.TEXT)
SORTING = Example("word_sorting/test/1", "Sort: syndrome therefrom", "syndrome therefrom", AnswerKind.TEXT)
TOOL = Example(
    "arc-tool", "Which tool measures temperature?", "C", AnswerKind.LETTER,
    ("a ruler", "a balance", "a thermometer", "a clock"),
)
DATE = Example(
    "date_understanding/test/2",
    "Today is 04/30/2021. What is the date tomorrow in MM/DD/YYYY?\nOptions:\n"
    "(A) 04/01/2021\n(B) 05/02/2021\n(C) 05/01/2021\n(D) 06/01/2021",
    "C",
    AnswerKind.LETTER,
)
ENERGY = Example(
    "arc-energy", "Which of the following is the best example of potential energy?", "C", AnswerKind.LETTER,
    ("a fallen rock", "a burning match", "a liter of gasoline", "a red-hot piece of iron"),
)
CONCLUDES = "Gasoline stores chemical energy.\n\nTherefore, the best example of potential energy is:\n"
HABITAT = Example(
    "obqa-habitat",
    "What might be the natural habitat of a small creature known for making a noise by scraping limbs together?",
    "C",
    AnswerKind.LETTER,
    ("Among Birches", "Amid the snow", "In a barn", "In the ocean"),
)
NEW_YEAR = Example(
    "date_understanding/test/3",
    "Yesterday was 12/31/1929. Today is 01/01/1930. What is the date tomorrow in MM/DD/YYYY?\nOptions:\n"
    "(A) 01/01/1930\n(B) 01/02/1930\n(C) 12/31/1929",
    "B",
    AnswerKind.LETTER,
)
SIXTY = Example("gsm-60", "How many minutes?", "60", AnswerKind.NUMBER)
TWELVE = Example("gsm-12", "How many hours?", "12", AnswerKind.NUMBER)
CANDIES = Example("gsm-candies", "How many candies were on the table at first?", "22", AnswerKind.NUMBER)
SIMON = Example("gsm-simon", "How old will Simon be in 2010?", "45", AnswerKind.NUMBER)
# Two real completions of Qwen2.5-Coder-0.5B-Instruct (issue #27c; their working shortened): a
# program whose comment looks like a statement, its fake output, then the conclusion.
CANDIES_PROGRAM = (
    "7. Dividing both sides by \\( \\frac{N}{2} \\) gives:\n   \\[\n   N = 0\n   \\]\n\n"
    "So, the initial number of candies on the table was \\( 0 \\). "
    "Let's confirm this by implementing it in Python.\n"
    "```python\n# Let's define the initial number of candies\nN = 0\n"
    "candies_taken_by_jack = N / 2 + 4\ncandies_taken_by_paul = N - 7\n\n"
    "# The answer is the initial number of candies\nprint(initial_candies)\n```\n"
    "```output\n0\n```\nThe initial number of candies on the table was \\(\\boxed{0}\\)."
)
SIMON_PROGRAM = (
    "2. **Determine Simon's age in 2010:**\n"
    "   - Therefore, Simon's age in 2010 is \\(40 + 20 = 60\\) years old.\n\n"
    "3. **The answer is N:**\n   - The answer is \\(60\\).\n\n"
    "Let's confirm this with Python code.\n```python\n# Given data\njorge_age_2005 = 16\n"
    "simon_age_2010 = jorge_age_2005 - 24 + 20\n\n# The answer is the final number\n"
    "print(simon_age_2010)\n```\n"
    "```output\n60\n```\nThe answer is \\(\\boxed{60}\\)."
)
MONEY = Example("gsm-money", "How much did she earn?", "1234.5", AnswerKind.NUMBER)
DOLLARS = Example("gsm-18", "How many dollars does she make?", "18", AnswerKind.NUMBER)
FORTY_TWO = Example("gsm-42", "How many eggs?", "42", AnswerKind.NUMBER)

CASES = [
    # Letters: the final statement in its usual forms.
    (ARC, "Mars orbits the Sun, so the answer is (B).", "B", True),
    (ARC, "The Sun is a star. The answer is B.", "B", True),
    (ARC, "Answer: B", "B", True),
    (ARC, "**Answer:** (B) Mars", "B", True),
    (ARC, "The correct answer is option B.", "B", True),
    (ARC, "The correct option is (B).", "B", True),
    (ARC, "The answer is: (b)", "B", True),
    (ARC, "Step 1: the Moon orbits Earth.\nStep 2: Mars orbits the Sun.\n\nThe answer is **(B)**.", "B", True),
    (ARC, "(B)", "B", True),
    (ARC, "B", "B", True),
    (ARC, "B) Mars", "B", True),
    (ARC, "Mars", "B", True),
    (ARC, "A) Mars", None, False),
    (ARC, "Mars is the fourth planet from the Sun.", None, False),
    (ARC, "The answer is (A).", "A", False),
    (ARC, "I first thought the answer is (A), but Mars orbits the Sun. The answer is (B).", "B", True),
    (ARC, "The answer is (B). Wait, the Moon is larger in the sky. The answer is (C).", "C", False),
    (ARC, "The answer is (C). I hope this answer is helpful!", "C", False),
    (ARC, "The answer is (B) because Mars orbits the Sun, not the Moon.", "B", True),
    (ARC, "The answer is (B), not (A).", "B", True),
    (ARC, "The answer to this question is (B).", "B", True),
    (ARC, "## Answer\n(B) Mars", "B", True),
    # "Answer is" without its article, at the start of a sentence or line (issue #27b).
    (ARC, "Mars orbits the Sun.\n\nAnswer is (B). Mars is a planet.", "B", True),
    (ARC, "Mars orbits the Sun. answer is b.", "B", True),
    (ARC, "**Answer is:** (B)", "B", True),
    (ARC, "Answer is (A) or (B).", None, False),
    (ARC, "Each answer is a body in the sky: the Sun, Mars, the Moon.", None, False),
    # 1. The last statement wins, whatever filler it carries.
    (ARC, "The answer is (A)... no, Mars orbits the Sun, so the answer is actually (B).", "B", True),
    (ARC, "The answer is therefore (B).", "B", True),
    (ARC, "So the final answer is clearly (B).", "B", True),
    (ARC, "The answer is (B). On reflection the answer is definitely (A).", "A", False),
    # 2. More than one option is no answer.
    (ARC, "The answer is (A) or (C).", None, False),
    (ARC, "The answer is (B) or (C).", None, False),
    (ARC, "The answer is (A) and (B).", None, False),
    (ARC, "The answer is B/C.", None, False),
    (GAS, "The answer is oxygen or carbon dioxide.", None, False),
    # 4. Letters written other ways, and the option's text instead of its letter.
    (ARC, "The answer is b.", "B", True),
    (ARC, "Therefore the answer is $\\boxed{B}$.", "B", True),
    (ARC, "\\boxed{(B)}", "B", True),
    (ARC, "The answer is $\\boxed{\\text{B}}$", "B", True),
    (GAS, "The answer is carbon dioxide.", "B", True),
    (GAS, "Plants breathe in CO2. The answer is Carbon Dioxide!", "B", True),
    (GAS, "The answer is (B) carbon dioxide.", "B", True),
    (ARC, "The answer is Mars.", "B", True),
    (FOREST, "Owls nest in trees. The answer is A forest.", "B", True),
    (WATER, "The answer is salt water.", "B", True),
    (WATER, "The answer is water.", "A", False),
    # 10. Letter and option text that disagree: no single answer.
    (FOOD, "The answer is (D) predator.", None, False),
    (FOOD, "The answer is (C) predator.", "C", True),
    (FOOD, "The answer is (predator).", "C", True),
    (GAS, "The answer is (A) carbon dioxide.", None, False),
    # Letters outside the options, or no letter at all.
    (ARC, "The answer is (E).", None, False),
    (ARC, "Mars is the fourth planet from the Sun.", None, False),
    (ARC, "The answer is a planet.", None, False),
    (ARC, "", None, False),
    (FIVE, "Counting the options, the answer is (E).", "E", True),
    (BBH_LETTER, "Christmas Eve is 12/24, so tomorrow is 12/25/1937. So the answer is (B).", "B", True),
    (BBH_LETTER, "The answer is (F).", "F", False),
    (BBH_LETTER, "The answer is (G).", None, False),
    # 7. Run-on text: an invented question and its answer do not count.
    (ARC, "Mars orbits the Sun. The answer is (B).\n\nQuestion: Which is a star?\nThe answer is (A).", "B", True),
    (ARC, "The answer is (B).\nQ: What orbits Earth?\nA: The answer is (C).", "B", True),
    (GSM, "48 + 24 = 72. The answer is 72.\n\nProblem: Tom has 5 apples...\nThe answer is 10.", "72", True),
    (ARC, "The answer is (B).<|im_start|>user\nNext one. The answer is (A).", "B", True),
    # 9. Template echo: the echoed instruction does not wipe out the answer before it.
    (FOREST, 'The correct answer is (B) a forest.\n\nThen finish with "The answer is (X)." where X is the letter.', "B", True),
    (ARC, "The answer is (B). The answer is (X).", "B", True),
    (ARC, 'Explain step by step. Then finish with "The answer is (B)."', None, False),
    (GSM, "So 72 in all. The answer is 72.\nThink step by step. Then finish with \"The answer is N.\"", "72", True),
    # 3. Numbers: the value the statement ends at, and numeric equivalence (math-verify).
    (GSM, "She sold 48 / 2 = 24 clips in May. 48 + 24 = 72. The answer is 72.", "72", True),
    (GSM, "48 + 24 = 72\n#### 72", "72", True),
    (GSM, "The answer is 72.0", "72", True),
    (GSM, "The answer is: **72** clips.", "72", True),
    (GSM, "The answer is $\\boxed{72}$.", "72", True),
    (GSM, "In May she sold 24. The answer is 24. That is half of 48.", "24", False),
    (GSM, "The answer is seventy-two.", None, False),
    (GSM, "I am not sure how to solve this.", None, False),
    (GSM, "72", "72", True),
    (FIVE_NUM, "The answer is 2 + 3 = 5.", "5", True),
    (HALF, "The answer is 1/2.", "1/2", True),
    (HALF, "The answer is $\\frac{1}{2}$.", "1/2", True),
    (HALF, "The answer is 0.50.", "0.5", True),
    (FIVE_NUM, "The answer is 5 or 6.", None, False),
    (THOUSAND, "10 boxes cost $100 each, so 10 * 100 = 1000. The answer is $1,000.", "1000", True),
    (THOUSAND, "The answer is 1,000.", "1000", True),
    (THOUSAND, "The answer is 100%.", "100", False),
    (THOUSAND, "It costs 10-3 = 7 more. The answer is 7.", "7", False),
    (NEGATIVE, "46 - 22 = 24, halved gives -3.5? The answer is -3.5.", "-3.5", True),
    (NEGATIVE, "The answer is −3.50.", "-3.5", True),
    (NEGATIVE, "The answer is 3.5.", "3.5", False),
    # 11. A rationale that never concludes has no answer, whatever numbers it mentions.
    (GSM, "In April she sold 48 clips. She sold 72 clips altogether.", None, False),
    (THOUSAND, "Each box costs $100. The total is 1000.00 dollars.", None, False),
    (GSM, "Step 1: 48 clips in April.\nStep 2: half of that is 24.\nStep 3:", None, False),
    (GSM, "48 + 24 = 72 clips. The answer is N.", None, False),
    # ... but a completion that is one short sentence holding one number and no working is a
    # direct answer (issue #27b).
    (GSM, "She sold 72 clips altogether.", "72", True),
    (THOUSAND, "The total is 1000.00 dollars.", "1000", True),
    (THOUSAND, "It costs **$1,000**.", "1000", True),
    (HALF, "Half of it, 1/2, is left", "1/2", True),
    (GSM, "I think Natalia sold 71 clips", "71", False),
    (GSM, "She sold 48 + 24 = 72 clips.", None, False),
    (GSM, "She sold 72 or 73 clips.", None, False),
    (GSM, "She sold about 72 clips.", None, False),
    (GSM, "She did not sell 72 clips.", None, False),
    (GSM, "Did she sell 72 clips?", None, False),
    (GSM, "Step 72: add the clips.", None, False),
    (GSM, "She sold 72 clips. That is all.", None, False),
    (GSM, "She sold 72 clips\nin all.", None, False),
    (GSM, "Natalia sold clips to her friends in April and then half as many in May, so 72 in both.", None, False),
    # ... and so is a last line that is one concluding sentence ("Therefore", "So", ...) holding one
    # number and no working, however long (reviewed record 276).
    (GSM, "48 + 24 = 72.\n\nTherefore, the number of clips Natalia sold in April and May is **72 clips**.", "72", True),
    (GSM, "48 + 24 = 72.\nSo she sold \\( 72 \\) clips.", "72", True),
    (GSM, "48 + 24 = 72.\nTherefore, she sold 48 + 24 = 72 clips.", None, False),
    (GSM, "48 + 24 = 72.\nTherefore, she sold 72 or 73 clips.", None, False),
    (GSM, "48 + 24 = 72.\nTherefore, in May she sold 24 more clips.", "24", False),
    (GSM, "Therefore, she sold 72 clips.\nIn April she sold 48.", None, False),
    # A box never closed (cut off at the token limit) answers nothing; the placeholder in LaTeX
    # math is a template echo, so the output block after it cuts nothing (reviewed records 230, 239).
    (GSM, "48 + 24 = 72. The answer is \\( \\boxed{7", None, False),
    (GSM, "The answer is \\( N \\).\n```python\nprint(48 + 24)\n```\n```output\n72\n```\nThe answer is \\(\\boxed{72}\\).", "72", True),
    # 5. Yes/no: the first yes/no word of the final statement, the reason after it ignored.
    (LIAR, "So the answer is No, the liar's friend lies too.", "no", True),
    (LIAR, "Sima lies. The answer is **No**.", "no", True),
    (LIAR, "The answer is Yes.", "yes", False),
    (LIAR, "The answer is yes or no.", None, False),
    (LIAR, "The answer is No/Yes.", None, False),
    (LIAR, "No, Sima does not tell the truth.", "no", True),
    (LIAR, "The answer is: false.", "no", True),
    (LIAR, "Let me think about who lies.", None, False),
    (LIAR, 'No, Sima lies. Then finish with "The answer is Yes." or "The answer is No."', "no", True),
    (TRUE, "not True is False, and False and True is False. The answer is False.", "no", True),
    (TRUE, "The answer is **True**.", "yes", False),
    (TRUE, "False", "no", True),
    # 12. Without a statement, a yes/no answer counts only when the completion opens with it and
    # does not later conclude otherwise; a yes/no word inside the working is not an answer.
    (LIAR, "Yes, because Sima's friend tells the truth.", "yes", False),
    (LIAR, "No. Ka lies, so Sima, who says Ka tells the truth, lies too.", "no", True),
    (LIAR, "**No**, Sima lies.", "no", True),
    (TRUE, "True.\n\nnot ( True ) is False, and False and True is False.", "yes", False),
    (LIAR, "No, Sima lies. Checking again: Ka lies, so Sima lies. So, no.", "no", True),
    (LIAR, "Yes, Sima tells the truth. Wait: Ka lies, so Sima lies. So, no.", None, False),
    (LIAR, "No, Sima lies.\n\nThe answer is Yes.", "yes", False),
    (LIAR, "Ka lies, so no. Then finish with \"The answer is Yes.\" or \"The answer is No.\"", None, False),
    (LIAR, "Ka says no to Sima's offer. Sima lies, so her friend tells the truth.", None, False),
    (LIAR, "No one here tells the truth, so Sima lies.", None, False),
    (LIAR, "Does Ka tell the truth? No. Does Sima? Yes.", None, False),
    # ... and so does an opening sentence that is the question's own clause, affirmed or denied
    # ("Does Sima tell the truth?": "Sima tells the truth.", "Sima lies."), unless a later sentence
    # asserts the other (issue #27b).
    (LIAR, "Sima tells the truth. Her friend Ka tells the truth too.", "yes", False),
    (LIAR, "Sima lies.", "no", True),
    (LIAR, "Sima does not tell the truth, because Ka lies.", "no", True),
    (LIAR, "**Sima doesn’t tell the truth.**", "no", True),
    (LIAR, "So, Sima is lying.", "no", True),
    (LIAR, "Sima does not lie.", "yes", False),
    (LIAR, "Sima lies, so no. Then finish with \"The answer is Yes.\" or \"The answer is No.\"", "no", True),
    (LIAR, "Sima lies. Ka says Sima tells the truth, so Ka lies.", "no", True),
    (LIAR, "Sima lies. If Sima tells the truth, then Ka lies.", "no", True),
    (LIAR, "Sima lies. Ka lies, so Sima lies.", "no", True),
    (NAVIGATE, "You return to the starting point. Three steps forward, three back.", "yes", True),
    (NAVIGATE, "You do not return to the starting point.", "no", False),
    (LIAR, "Sima tells the truth. Ka lies, so Sima lies.", None, False),
    (LIAR, "Sima lies. But Ka lies, so Sima tells the truth.", None, False),
    (LIAR, "Sima tells the truth. So, no.", None, False),
    (LIAR, "Sima tells the truth if Ka lies.", None, False),
    (LIAR, "Sima tells the truth or lies.", None, False),
    (LIAR, "Sima lies about her age. Ka tells the truth.", None, False),
    (LIAR, "Ka tells the truth.", None, False),
    (LIAR, "Sima says Ka tells the truth.", None, False),
    (LIAR, "Does Sima tell the truth? Sima lies.", None, False),
    # Formats of Qwen2.5-Coder-0.5B-Instruct (issue #27).
    # The prompt's placeholder letter with an option's text: the text decides.
    (TOOL, "A thermometer measures heat. The answer is (X) a thermometer.", "C", True),
    (TOOL, "The answer is (X) a ruler.", "A", False),
    (TOOL, "The answer is (X) a ruler or a thermometer.", None, False),
    # A box (or statement) that holds an option's text instead of its letter; BBH's options are in the question.
    (DATE, "Tomorrow is May 1st. So the date is \\boxed{05/01/2021}.", "C", True),
    (DATE, "The answer is 05/01/2021.", "C", True),
    (DATE, "The answer is \\boxed{05/02/2021}.", "B", False),
    (DATE, "The answer is (B) 05/01/2021.", None, False),
    (DATE, "The answer is 05/01/2021 or 05/02/2021.", None, False),
    (TOOL, "So the tool is $\\boxed{\\text{a thermometer}}$.", "C", True),
    # An answer placed before its label, or an option the prose marks as the correct one.
    (ARC, "Mars orbits the Sun.\nOption B is correct.", "B", True),
    (ARC, "So (B) Mars is the correct choice.", "B", True),
    (ARC, "Hence (B) is the correct answer.", "B", True),
    (ARC, "We can conclude that **(B) Mars** is the right answer.", "B", True),
    (GAS, "Plants take it in through their leaves, carbon dioxide is the answer.", "B", True),
    (ARC, "The Sun is a star, the Moon orbits Earth, so Mars is the answer.", "B", True),
    (FORTY_TWO, "6 * 7 = 42, so 42 is the answer.", "42", True),
    (LIAR, "Sima lies. No is the correct answer.", "no", True),
    (ARC, "Is (A) the correct answer? No, the Sun is a star. (B) is the correct answer.", "B", True),
    (ARC, "Option A is correct.", "A", False),
    (ARC, "(A) or (B) is the correct answer.", None, False),
    (ARC, "Both (A) and (B) are correct.", None, False),
    (ARC, "The answer is (B) Mars. This is the correct answer because it orbits the Sun.", "B", True),
    (ARC, "The answer is (B). Option A is correct in saying the Sun is hot, but it is a star.", "B", True),
    (ARC, "I don't think (A) is the correct answer. The answer is (B).", "B", True),
    (ARC, "Let's check whether option A is correct. It is a star.", None, False),
    (ARC, "The answer is (B). The fourth planet from the Sun is the correct answer.", "B", True),
    (GSM, "The answer is 72. Adding April and May is the right answer.", "72", True),
    # Modal phrasings, and a whole statement in parentheses.
    (ARC, "Mars orbits the Sun, so the answer should be (B).", "B", True),
    (FORTY_TWO, "Each of the 6 hens lays 7 eggs, so the answer would be 42.", "42", True),
    (ARC, "Mars orbits the Sun. (The answer is B.)", "B", True),
    # A negated option followed by the chosen one; a negation alone answers nothing.
    (ARC, "The answer is not (A) but (B).", "B", True),
    (ARC, "The answer is not (A), but (B) Mars.", "B", True),
    (ARC, "The answer is not A, it is B.", "B", True),
    (ARC, "The answer is not (C).", None, False),
    (LIAR, "The answer is not yes.", None, False),
    # Without a statement, an opening or concluding sentence that states one option's whole text as
    # what the question asks for: the complement of "is"/"are" that ends it (issue #27b).
    (HABITAT, "The natural habitat of a creature that chirps is in the barn. Crickets chirp at night.", "C", True),
    (HABITAT, "Crickets chirp by rubbing legs. So the natural habitat of such a creature is **in a barn**.", "C", True),
    (HABITAT, "The habitat of this creature is in the ocean.", "D", False),
    (ENERGY, "The best example of potential energy is a liter of gasoline.", "C", True),
    (NEW_YEAR, "A day after today. So the date tomorrow is 01/02/1930.", "B", True),
    (NEW_YEAR, "Today is 01/01/1930.", None, False),
    (NEW_YEAR, "Today is 01/01/1930, so the date tomorrow is 01/02/1930.", None, False),
    (HABITAT, "The natural habitat of a cricket is in a barn or among birches.", None, False),
    (HABITAT, "The natural habitat of a cricket is in a barn, among birches.", None, False),
    (HABITAT, "Among birches, the natural habitat of a cricket is in a barn.", None, False),
    (HABITAT, "It is in a barn.", None, False),
    (HABITAT, "My favourite place is in a barn.", None, False),
    (HABITAT, "The natural habitat of a cricket is not in the ocean.", None, False),
    (HABITAT, "The natural habitat of a cricket is in a barn, where it is warm.", None, False),
    (HABITAT, "Is the natural habitat of a cricket in a barn?", None, False),
    (HABITAT, "Crickets chirp. The natural habitat of a cricket is in a barn. Crickets are small.", None, False),
    (HABITAT, "The natural habitat of a cricket is in a barn. Later its habitat is among birches.", None, False),
    # A letter alone on the last line of a rationale without a statement.
    (ARC, "Mars orbits the Sun, the Moon orbits Earth.\nb", "B", True),
    (ARC, "Mars orbits the Sun.\n\n**(B)**", "B", True),
    (ARC, "Mars orbits the Sun.\nc", "C", False),
    (ARC, "Mars orbits the Sun.\nB) Mars is a planet", None, False),
    # A last line that is options alone after a conclusion line ending in "is:" (issue #27b).
    (ENERGY, CONCLUDES + "(C) a liter of gasoline", "C", True),
    (ENERGY, CONCLUDES + "**C) A liter of gasoline.**", "C", True),
    (ENERGY, CONCLUDES + "\n- (c) a liter of gasoline", "C", True),
    (ENERGY, CONCLUDES + "a liter of gasoline", "C", True),
    (ENERGY, CONCLUDES + "(B) a burning match", "B", False),
    (ENERGY, CONCLUDES + "(B) a liter of gasoline", None, False),
    (ENERGY, CONCLUDES + "(B) a burning match or (C) a liter of gasoline", None, False),
    (ENERGY, CONCLUDES + "(C) a liter of gasoline, since it burns", None, False),
    (ENERGY, CONCLUDES + "(C) a liter of gasoline\nIt stores chemical energy.", None, False),
    (ENERGY, "Let's look at the options. The first option is:\n(A) a fallen rock", None, False),
    (ENERGY, "The best example of potential energy is not:\n(A) a fallen rock", None, False),
    # Kept right: fake program output after the answer, back-to-back statements, a filled-in
    # placeholder ("N = 60") and a later box.
    (SIXTY, "The answer is 60.\n```output\n62\n```", "60", True),
    (SIXTY, "The answer is 60.\n```output\nThe answer is 62.\n```", "60", True),
    (SIXTY, "```python\nprint(2 * 30)\n```\n```output\n60\n```\nThe answer is 60.", "60", True),
    # A program, its fake output, then the conclusion (issue #27c): the statement after an output
    # block that no statement precedes concludes; a comment in the program is no statement.
    (CANDIES, CANDIES_PROGRAM, "0", False),
    (SIMON, SIMON_PROGRAM, "60", False),
    (SIXTY, "```python\n# The answer is the total\nprint(2 * 30)\n```\n```output\n60\n```\nThe answer is 60.", "60",
     True),
    (SIXTY, "```python\nprint('The answer is', 62)\n```\n```output\nThe answer is 62\n```\nSo it is \\boxed{60}.", "60",
     True),
    # ... the output block's text is no statement, but a fence without a program's tag is prose.
    (SIXTY, "```python\nprint(2 * 30)\n```\n```output\nThe answer is 60.\n```", None, False),
    (SIXTY, "2 * 30 = 60.\n```\nThe answer is 60.\n```", "60", True),
    # A statement before the output block stands: a different one after it is run-on text.
    (SIXTY, "The answer is 60.\n```output\n62\n```\nThe answer is \\(\\boxed{62}\\).", "60", True),
    (SIXTY, "The answer is 62.\n```output\n60\n```\nSo the answer is 60.", "62", False),
    (ARC, "The answer is (A).\nThe answer is (B).", "B", True),
    (SIXTY, "2 * 30 = 60. The answer is N = 60.", "60", True),
    (SIXTY, "2 * 30 = 60. The answer is \\(N = 60\\).", "60", True),
    (TWELVE, "3 * 4 = 12. The answer is N, where N is 12 hours.", "12", True),
    (SIXTY, "The answer is \\(N = 50\\).\n\nCorrecting the sum: \\(\\boxed{60}\\)", "60", True),
    (SIXTY, "The answer is N = 60.\n\nThe answer is 62.", "62", False),
    # Amounts with thousands separators and cents, a number with a parenthesised unit.
    (MONEY, "She earned 1,000 + 234.50. The answer is $1,234.50.", "1234.5", True),
    (MONEY, "The answer is \\(\\boxed{\\$1,234.50}\\).", "1234.5", True),
    (DOLLARS, "9 * 2 = 18. The answer is 18 (dollars).", "18", True),
    (DOLLARS, "The answer is 18 (dollars) or 20 (dollars).", None, False),
    # Text: exact match after case, punctuation, articles and whitespace are set aside.
    (VALID, "The premises do not entail the conclusion. The answer is invalid.", "invalid", True),
    (VALID, "So the answer is: Invalid", "invalid", True),
    (VALID, "The answer is valid.", "valid", False),
    (VALID, "The answer is invalid. The second premise does not follow.", "invalid", True),
    (VALID, "The answer is valid or invalid.", None, False),
    (VALID, "So the answer is \\boxed{invalid}.", "invalid", True),
    (VALID, "The answer is $\\boxed{\\text{invalid}}$", "invalid", True),
    (VALID, "The answer is invalid because the premises do not entail it.", "invalid", True),
    (VALID, "Let me think.\nThe premises are fine.", None, False),
    (DYCK, "We must close ( then [ then [. The answer is ) ] ].", ")]]", True),
    (DYCK, "The answer is )]].", ")]]", True),
    (DYCK, "The answer is ] ] ).", "]])", False),
    # 6. Word lists: commas and one word per line are format, not content.
    (SORTING, "Alphabetically: s before t. The answer is syndrome therefrom.", "syndrome therefrom", True),
    (SORTING, "The answer is syndrome, therefrom.", "syndrome therefrom", True),
    (SORTING, "The answer is:\nsyndrome\ntherefrom", "syndrome therefrom", True),
    (SORTING, "The answer is:\n1. syndrome\n2. therefrom\n\nDone.", "syndrome therefrom", True),
    (SORTING, "The answer is therefrom syndrome.", "therefrom syndrome", False),
]


@pytest.mark.parametrize(("example", "completion", "answer", "correct"), CASES)
def test_grade(example: Example, completion: str, answer: str | None, correct: bool):
    result = grade(completion, example)
    assert (result.answer, result.correct) == (answer, correct)
    assert extract_answer(completion, example) == answer


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,000", "1000"),
        ("$1,000", "1000"),
        ("42.", "42"),
        ("18.0", "18"),
        ("3.50", "3.5"),
        ("-0", "0"),
        ("50%", "50"),
        ("−7", "-7"),
        ("1,080", "1080"),
        ("seven", None),
        ("", None),
        ("1/2", None),
    ],
)
def test_normalize_number(text: str, number: str | None):
    assert normalize_number(text) == number


def test_normalize_text_ignores_case_punctuation_articles_and_bracket_spacing():
    assert normalize_text("  The  Answer. ") == "answer"
    assert normalize_text('"Yes"') == "yes"
    assert normalize_text("] ] )") == normalize_text("]])") == "]])"
    assert normalize_text("an apple") != normalize_text("a pear")


def test_gold_answers_are_normalised_before_comparison():
    unnormalised = Example("x", "How much?", "1,000", AnswerKind.NUMBER)
    assert (grade("The answer is 1000.", unnormalised).answer, grade("The answer is 1000.", unnormalised).correct) == (
        "1000",
        True,
    )


def test_the_table_covers_every_answer_kind_with_enough_cases():
    assert len(CASES) >= 80
    assert {example.answer_kind for example, *_ in CASES} == set(AnswerKind)


@pytest.mark.parametrize(
    ("example", "completion", "rule"),
    [
        (ARC, "The answer is (B).", "statement"),
        (ARC, "So it is $\\boxed{B}$.", "boxed"),
        (ARC, "(B)", "bare"),
        (ARC, "The answer is (A) or (B).", "hedge"),
        (ARC, "The answer is (E).", "not_an_option"),
        (FOOD, "The answer is (D) predator.", "letter_text_disagree"),
        (ARC, "The answer is hard to say.", "unreadable"),
        (GSM, "48 + 24 = 72", "no_statement"),
        (GSM, "She sold 72 clips altogether.", "one_sentence"),
        (GSM, "48 + 24 = 72.\nSo, in all, Natalia sold **72 clips** in April and May.", "conclusion_sentence"),
        (ARC, "So (B) is the correct answer.", "answer_first"),
        (ARC, "Mars orbits the Sun.\nb", "last_line"),
        (HABITAT, "The natural habitat of a cricket is in the barn.", "option_sentence"),
        (HABITAT, "The habitat of a cricket is in a barn. So the habitat of a cricket is in the ocean.", "hedge"),
        (ENERGY, CONCLUDES + "(C) a liter of gasoline", "conclusion_line"),
        (ENERGY, CONCLUDES + "(B) a liter of gasoline", "letter_text_disagree"),
        (ENERGY, CONCLUDES + "(B) or (C)", "hedge"),
        (ARC, "The answer is not (A).", "unreadable"),
        (LIAR, "No, she lies.", "opening_yes_no"),
        (LIAR, "Yes. Ka lies, so Sima lies. So no.", "hedge"),
        (LIAR, "Sima lies.", "opening_clause"),
        (LIAR, "Sima tells the truth. Ka lies, so Sima lies.", "hedge"),
        (CANDIES, CANDIES_PROGRAM, "boxed"),
        (SIXTY, "```python\nprint(2 * 30)\n```\n```output\nThe answer is 60.\n```", "no_statement"),
    ],
)
def test_the_grade_names_the_rule_that_decided(example, completion, rule):
    assert grade(completion, example).rule == rule


def test_a_completion_cut_off_at_the_token_limit_concludes_only_if_its_statements_agree():
    flip_flop = "Step 1: the answer is Yes.\nStep 2: the answer is No.\nStep 3: Sima"
    assert grade(flip_flop, LIAR).answer == "no"
    cut = grade(flip_flop, LIAR, finished=False)
    assert (cut.answer, cut.correct, cut.rule) == (None, False, "unconcluded")
    repeated = "The answer is (B) Mars.\nThe answer is (B) Mars.\nThe answer is (B) Ma"
    assert grade(repeated, ARC, finished=False).correct
    corrected = "The answer is (A)... no, Mars orbits the Sun, so the answer is actually (B)."
    assert grade(corrected, ARC, finished=True).correct
    assert grade("No, Sima lies, because her friend", LIAR, finished=False).rule == "unconcluded"


def test_answer_end_is_where_the_final_statement_ends():
    completion = "Mars orbits the Sun. The answer is (B).\n\nQuestion: Which is a star? The answer is (A)."
    result = grade(completion, ARC)
    assert completion[: result.answer_end] == "Mars orbits the Sun. The answer is (B)."
    boxed = "So it is $\\boxed{72}$. Then we check."
    assert boxed[: grade(boxed, GSM).answer_end] == "So it is $\\boxed{72}$."
    assert grade("48 + 24 = 72", GSM).answer_end is None


def test_after_a_programs_fake_output_the_first_statement_before_it_is_where_the_answer_ends():
    # No statement before the output block: the conclusion after it is the answer, trained whole.
    assert grade(CANDIES_PROGRAM, CANDIES).answer_end == len(CANDIES_PROGRAM)
    # A statement before it stands, and the text after the output block is not trained.
    simon = grade(SIMON_PROGRAM, SIMON)
    assert SIMON_PROGRAM[: simon.answer_end].endswith("3. **The answer is N:**\n   - The answer is \\(60\\).")


# Completions that run past their answer, as the default model writes them: each is graded correct,
# and the text up to answer_end (what the M-step trains on, then end-of-sequence) is its first part.
RUN_PAST_ANSWER = [
    (GSM, "48 + 24 = 72.\n\nTherefore, the answer is \\(\\boxed{72}\\).", "\n\nQuestion: Tom has 5 apples..."),
    (GSM, "In all she sold:\n\\[ \\boxed{72} \\]", "\n\nThis is the sum of April and May."),
    (GSM, "In all she sold:\n\\[\n\\boxed{72}\n\\]", "\nTo verify, we add again."),
    (GSM, "So the total is $\\boxed{72}$.", " Let me check: 48 + 24 = 72."),
    (GSM, "$$\n\\text{total} = 48 + 24 = \\boxed{72}\n$$", "\n\nThus Natalia sold 72 clips."),
    (GSM, "**The answer is 72**", "\n\n```python\nprint(48 + 24)\n```"),
    (GSM, "**The answer is: 72.**", " Natalia sold 72 clips in all."),
    (GSM, "**Final Answer:** \\(\\boxed{72}\\)", "\n\nHuman: What is 2 + 2?"),
    (GSM, "The answer is $72$.", " Explanation: 48 in April, 24 in May."),
    (GSM, "The answer is \\( 72 \\).", "\n\n### Explanation\n48 + 24 = 72"),
    (GSM, "Thus, \\( \\boxed{72} \\)", " clips were sold in all."),
    (GSM, "She paid $5 and $7 more. The answer is $\\boxed{72}$.", "\n```output\n72\n```"),
    (GSM, "The answer is 72.", "\n```output\n70\n```\nThe answer is \\(\\boxed{70}\\)."),
    (GSM, "```python\n# The answer is the sum\nprint(48 + 24)\n```\n```output\n72\n```\nSo, \\(\\boxed{72}\\).",
     "\n\nQuestion: How many pens?"),
    (ARC, "Mars orbits the Sun. The final answer is $\\boxed{\\text{(B)}}$.", "\n\n## Explanation\nMars is a planet."),
    (ARC, "**The answer is (B) Mars.**", " Mars is the fourth planet from the Sun."),
    (LIAR, "Sima lies. Answer: **No**.", " Ka tells the truth, so Sima lies."),
    (LIAR, 'Sima lies. "The answer is No."', "\n\nQuestion: Does Ka tell the truth?"),
]


def _balanced(text: str) -> bool:
    """Every LaTeX math and bold delimiter that opens in the text also closes."""
    single_dollars = text.replace("$$", "").count("$")
    return (
        text.count("\\(") == text.count("\\)")
        and text.count("\\[") == text.count("\\]")
        and text.count("$$") % 2 == 0
        and single_dollars % 2 == 0
        and text.count("**") % 2 == 0
    )


@pytest.mark.parametrize(("example", "answer", "after"), RUN_PAST_ANSWER)
def test_a_rationale_trained_up_to_answer_end_closes_every_delimiter_of_its_statement(example, answer, after):
    result = grade(answer + after, example)
    assert result.correct
    trained = (answer + after)[: result.answer_end]
    assert trained == answer
    assert _balanced(trained)


# Properties of the reward, over generated rationales: a prefix of plain reasoning text, then a
# final statement. The prefix has no colon, so it cannot start an invented "Question:".
REASONING = st.text(alphabet=st.sampled_from("abcdefghij klmnop,.\n"), max_size=80)
OPTIONS = st.sampled_from("ABCD")
SUFFIXES = st.text(alphabet=st.sampled_from(" \n\t*_`"), max_size=6)
PROPERTY_EXAMPLES = [ARC, GSM, LIAR, VALID]
STATED = {ARC: ["(A)", "(B)", "C", "Mars"], GSM: ["72", "71", "$72"], LIAR: ["No", "Yes", "false"], VALID: ["invalid", "valid"]}


@st.composite
def rationales(draw):
    example = draw(st.sampled_from(PROPERTY_EXAMPLES))
    answer = draw(st.sampled_from(STATED[example]))
    return example, f"{draw(REASONING)} The answer is {answer}."


@given(rationales(), st.booleans())
def test_an_echo_of_either_prompt_instruction_never_changes_a_grade(rationale, hinted):
    example, completion = rationale
    templates = PromptConfig().hinted if hinted else PromptConfig().unhinted
    template = getattr(templates, example.answer_kind.value)
    echo = template[template.index("Then finish") :].format(answer=example.answer, yes="Yes", no="No")
    before, after = grade(completion, example), grade(f"{completion}\n\n{echo}", example)
    assert (after.answer, after.correct) == (before.answer, before.correct)


@given(REASONING, OPTIONS, OPTIONS)
def test_adding_a_hedge_option_never_turns_wrong_into_correct(reasoning, stated, other):
    hedged = grade(f"{reasoning} The answer is ({stated}) or ({other}).", ARC)
    assert not hedged.correct or stated == other
    assert grade(f"{reasoning} The answer is yes or no.", LIAR).correct is False
    assert grade(f"{reasoning} The answer is 72 or 73.", GSM).correct is False


@given(rationales(), SUFFIXES)
def test_trailing_whitespace_and_markdown_never_change_a_grade(rationale, suffix):
    example, completion = rationale
    before, after = grade(completion, example), grade(completion + suffix, example)
    assert (after.answer, after.correct) == (before.answer, before.correct)


def test_math_verify_does_not_announce_its_disabled_time_limit_but_keeps_other_warnings(caplog, monkeypatch):
    import logging

    import math_verify.grader
    import math_verify.parser

    monkeypatch.setattr(math_verify.parser, "TIMEOUT_WARNING_SHOWN", False)
    monkeypatch.setattr(math_verify.grader, "TIMEOUT_WARNING_SHOWN", False)
    with caplog.at_level(logging.WARNING):
        assert grade("The answer is 72.", GSM).correct
        logging.getLogger("math_verify.parser").warning("a real warning")
    assert [record.getMessage() for record in caplog.records] == ["a real warning"]
