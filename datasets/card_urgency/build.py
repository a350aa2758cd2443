"""Build card_urgency: a binary, imbalanced, headerless TSV set derived from banking77 (CC-BY-4.0).

A customer message is ``urgent`` when it reports a lost, stolen or compromised card or phone, or a
payment or withdrawal the customer does not recognise (five banking77 intents), else ``routine``
(the other 72). The files take the shape of the SMS spam collection: ``label<TAB>text``, no header.
About one message in eight is urgent, in both splits. Deterministic:

    python datasets/card_urgency/build.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "banking77"
URGENT = {"compromised_card", "lost_or_stolen_card", "lost_or_stolen_phone", "card_payment_not_recognised",
          "cash_withdrawal_not_recognised"}
SIZES = {"train": (240, 1760), "test": (100, 700)}  # (urgent, routine) rows


def build(split: str, seed: int = 7) -> list[tuple[str, str]]:
    with open(SOURCE / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    rng = random.Random(seed)
    urgent = sorted(t for t, c in rows if c in URGENT)
    routine = sorted(t for t, c in rows if c not in URGENT)
    n_urgent, n_routine = SIZES[split]
    picked = [("urgent", t) for t in rng.sample(urgent, n_urgent)] + [("routine", t) for t in
                                                                      rng.sample(routine, n_routine)]
    rng.shuffle(picked)
    return picked


if __name__ == "__main__":
    for split in SIZES:
        lines = [f"{label}\t{' '.join(text.split())}" for label, text in build(split)]
        (HERE / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(split, len(lines), "rows", sum(ln.startswith("urgent") for ln in lines), "urgent")
