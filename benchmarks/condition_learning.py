"""Condition learning: does the model read the event type, or only find company names?

Subject extraction asks for one of several companies in a text; only the event type in front,
`___{event_type}___{text}`, says which. This trains `subject_extraction.py` (random batches,
its own process) on sets where that is so, and prints the dev accuracy after each epoch next to
the accuracy of ignoring the event type (picking one of the text's companies at random):

- bundled: `data/subject`, news-like clauses that paraphrase their event type (造假, 评级, ...);
- named: clauses `{company}涉及{event_type}`, the event type itself right after its company;
- labelled: clauses `{event_type}：{company}`, the event type ending two characters before it.

Each text names 1 to 3 companies with different event types, so ignoring the type scores ~0.5.
A model that reads the type goes well above that; one that does not stays at or below it. The
tiny random BERT stays below on all three (benchmarks/README.md, "Condition learning"); with the real
checkpoint (`--bert-dir`) this tells whether a set is learnable at all.

    python benchmarks/condition_learning.py                      # tiny random BERT, ~6 min on 2 CPU cores
    python benchmarks/condition_learning.py --bert-dir chinese_L-12_H-768_A-12 --lr 5e-5 --min-lr 1e-5
    python benchmarks/condition_learning.py --bert-dir uer/chinese_roberta_L-4_H-512 --lr 1e-4 --min-lr 2e-5
"""
import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
from collections import Counter

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [PROJECT_DIR, os.path.join(PROJECT_DIR, "data"), os.path.dirname(os.path.abspath(__file__))]

import synthetic  # noqa: E402
from time_to_accuracy import train_epochs  # noqa: E402

TRAIN_FILE_NAME = "event_type_entity_extract_train.csv"
CLAUSES = {"named": "{company}涉及{event_type}", "labelled": "{event_type}：{company}"}
EVENT_TYPES = sorted(event_type for event_type in synthetic.SUBJECT_EVENTS if event_type != "其他")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--bert-dir", metavar="DIR_OR_HUB_ID",
                        help="a BERT folder (Google's or a Hugging Face one) or a Hub id such as "
                        "uer/chinese_roberta_L-4_H-512, as the scripts take it; default as the scripts: $BERT_DIR, "
                        "then ./chinese_L-12_H-768_A-12, then the tiny random BERT")
    parser.add_argument("--sets", default="bundled,named,labelled", help="default: %(default)s")
    parser.add_argument("--rows", type=int, default=1800, help="rows of each generated set (default: %(default)s)")
    parser.add_argument("--epochs", default="5", help="default: %(default)s")
    parser.add_argument("--lr", default="1e-3", help="default: %(default)s (the tiny BERT's)")
    parser.add_argument("--min-lr", default="1e-3", help="default: %(default)s")
    parser.add_argument("--seed", default="1", help="default: %(default)s")
    return parser


def condition_rows(clause, count, seed):
    """`id, text, event_type, entity` rows: each text names 1-3 companies, each with its own event type."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        event_types = rng.sample(EVENT_TYPES, rng.randint(1, 3))
        characters = rng.sample(synthetic.COMPANY_CHARACTERS, 3 * len(event_types))  # no shared character
        companies = ["".join(characters[3 * i:3 * i + rng.randint(2, 3)]) + rng.choice(synthetic.COMPANY_SUFFIXES)
                     for i in range(len(event_types))]
        text = "；".join(clause.format(company=company, event_type=event_type)
                        for event_type, company in zip(event_types, companies)) + "。"
        rows += [(str(len(rows) + i), text, event_type, company)
                 for i, (event_type, company) in enumerate(zip(event_types, companies))]
    return rows[:count]


def event_blind_accuracy(path):
    """Expected accuracy of picking one of the text's companies at random, over its answerable rows."""
    with open(path, encoding="utf-8", newline="") as reader:
        rows = list(csv.reader(reader))
    companies = Counter(text for _, text, _, _ in rows)  # one row per company of a text, 其他 included
    return statistics.mean(1 / companies[text] for _, text, event_type, entity in rows
                           if event_type != "其他" and entity and entity in text)


def data_dir(name, work_dir, rows):
    if name == "bundled":
        return os.path.join(PROJECT_DIR, "data", "subject")
    folder = os.path.join(work_dir, name)
    os.makedirs(folder)
    with open(os.path.join(folder, TRAIN_FILE_NAME), "w", encoding="utf-8", newline="") as writer:
        csv.writer(writer, lineterminator="\n").writerows(condition_rows(CLAUSES[name], rows, seed=7))
    return folder


def train(folder, output_dir, args):
    return train_epochs("subject_extraction.py", [
        "--data-dir", folder, "--output-dir", output_dir, "--no-bucket", "--epochs", args.epochs, "--lr", args.lr,
        "--min-lr", args.min_lr, "--seed", args.seed], args.bert_dir)


def main(argv=None):
    args = build_parser().parse_args(argv)
    names = args.sets.split(",")
    unknown = set(names) - {"bundled"} - set(CLAUSES)
    if unknown:
        sys.exit("error: unknown set %s; choose from bundled, %s" % (", ".join(sorted(unknown)), ", ".join(CLAUSES)))
    print("| set | ignoring the event type | dev accuracy after each epoch | best | last train loss |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="condition_learning_") as work_dir:
        for name in names:
            folder = data_dir(name, work_dir, args.rows)
            epochs = train(folder, os.path.join(work_dir, "outputs", name), args)
            print("| %s | %.3f | %s | %.3f | %.3f |" % (
                name, event_blind_accuracy(os.path.join(folder, TRAIN_FILE_NAME)),
                " ".join("%.3f" % epoch["metric"] for epoch in epochs),
                max(epoch["metric"] for epoch in epochs), epochs[-1]["loss"]), flush=True)


if __name__ == "__main__":
    main()
