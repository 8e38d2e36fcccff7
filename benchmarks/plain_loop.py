"""The yardstick: each script against a plain PyTorch + transformers loop of its model, on the same rows.

Our scripts go through keras-bert, a Keras training model, callbacks and a schedule; a loop of a
few dozen lines in PyTorch has none of that. Both sides read the same checkpoint folder, the same
training and dev files, one token per character, and score dev the way the script does. The loop
trains with Adam at a constant rate from the first step, batches in a new random order every
epoch, and dropout where transformers' BertModel has it. A script that learns slower than its
loop has something of ours to find. Each run is its own process, the two sides alternating.

- subject: CCKS 2019 rows (`--ccks-dir`): `[CLS]___{event_type}___{text}[SEP]`, the text cut to
  `--maxlen`; a Linear layer gives a start and an end logit per position, padding masked, softmax
  cross-entropy on the gold start plus on the gold end; dev: the best span (end >= start, inside
  the text, at most 32 characters) equals the entity, every dev row counted.
- relation: data/synthetic.py's relation set (2,000 training sentences, 222 dev): the blog's model,
  sigmoid subject start/end pointers, one subject a sentence a step, its start and end vectors
  averaged and added to every position, sigmoid object start/end pointers per predicate; binary
  cross-entropy over the real tokens; decoded as relation_extraction.py decodes; dev triple F1.
- sentiment: the bundled reviews (data/sentiment): the [CLS] vector into Linear(1) and a sigmoid,
  binary cross-entropy; dev accuracy.
- ner: CLUENER2020 lines (`--cluener-dir`, its train.json: the first --dev-rows of a seed-0 shuffle
  for dev, the next --train-rows for training): a Linear layer gives each character's BIO tag
  scores, softmax cross-entropy over the characters (no CRF); dev entity F1, an entity right when
  type, start and end match, tags read as conlleval reads them (an I- that continues nothing starts one).

torch and transformers are needed for the loop side only, never by the scripts or the tests
(`pip install torch transformers`); without them the loop side is skipped with a message. The
checkpoint's weights are read by the project's own readers (safetensors, or torch_weights.py for
a pytorch_model.bin: no pickle is run).

    python benchmarks/plain_loop.py --bert-dir $M --task subject --ccks-dir ../shared/data/ccks2019 --epochs 3 --seeds 1,2
    python benchmarks/plain_loop.py --bert-dir $M --task relation --epochs 10 --lr 1e-4
    python benchmarks/plain_loop.py --bert-dir $M --task sentiment --epochs 2 --sides loop
    python benchmarks/plain_loop.py --bert-dir $M --task ner --cluener-dir ../shared/data/cluener --train-rows 4000
"""
import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [PROJECT_DIR, os.path.join(PROJECT_DIR, "data")]

import numpy as np  # noqa: E402

import synthetic  # noqa: E402
from torch_weights import read_torch_state_dict  # noqa: E402

CCKS_TRAIN_FILE = "event_type_entity_extract_train.csv"
NO_SUBJECT = "其他"
MAX_SPAN = 32
EPOCH_LINE = re.compile(r"^epoch (\d+): loss ([\d.naninf]+), dev \w+ ([\d.]+) .*?, ([\d.]+) s, ", re.M)


# ---------------------------------------------------------------------------------------------
# Data: the files both sides train and score on
# ---------------------------------------------------------------------------------------------

def subject_files(folder, args):
    """train.csv and dev.csv in the contest's layout from CCKS's training file: the rows with a
    subject, shuffled with seed 0, the first --dev-rows for dev and the next --train-rows for training."""
    with open(os.path.join(args.ccks_dir, CCKS_TRAIN_FILE), encoding="utf-8-sig", newline="") as reader:
        rows = [row for row in csv.reader(reader) if len(row) == 4 and row[2] != NO_SUBJECT]
    random.Random(0).shuffle(rows)
    files = {}
    for name, part in (("dev", rows[:args.dev_rows]), ("train", rows[args.dev_rows:args.dev_rows + args.train_rows])):
        files[name] = os.path.join(folder, name + ".csv")
        with open(files[name], "w", encoding="utf-8", newline="") as writer:
            csv.writer(writer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(part)
    return files


def relation_files(folder, args):
    synthetic.write_relation(folder, args.train_rows + args.train_rows // 9, seed=101)  # a tenth of them dev
    return {name: os.path.join(folder, file_name) for name, file_name in
            (("train", "train_data.json"), ("dev", "dev_data.json"), ("schema", "all_50_schemas"))}


def ner_files(folder, args):
    """train.json and dev.json, CLUENER's layout, from its published train.json (see subject_files)."""
    with open(os.path.join(args.cluener_dir, "train.json"), encoding="utf-8") as reader:
        lines = [line for line in reader if line.strip()]
    random.Random(0).shuffle(lines)
    files = {}
    for name, part in (("dev", lines[:args.dev_rows]), ("train", lines[args.dev_rows:args.dev_rows + args.train_rows])):
        files[name] = os.path.join(folder, name + ".json")
        with open(files[name], "w", encoding="utf-8") as writer:
            writer.writelines(part)
    return files


def sentiment_files(folder, args):
    bundled = os.path.join(PROJECT_DIR, "data", "sentiment")
    return {"train": os.path.join(bundled, "train.tsv"), "dev": os.path.join(bundled, "dev.tsv")}


# ---------------------------------------------------------------------------------------------
# The loop's side: the checkpoint in transformers, one token per character
# ---------------------------------------------------------------------------------------------

def read_vocab(bert_dir):
    """{token: id} from vocab.txt, or from tokenizer.json's WordPiece model when there is no vocab.txt."""
    vocab_path = os.path.join(bert_dir, "vocab.txt")
    if os.path.isfile(vocab_path):
        with open(vocab_path, encoding="utf-8") as reader:
            return {line.rstrip("\r\n"): i for i, line in enumerate(reader)}
    with open(os.path.join(bert_dir, "tokenizer.json"), encoding="utf-8") as reader:
        return json.load(reader)["model"]["vocab"]


class CharTokenizer:
    """tokenizer.py's rule, plainly: a character is its own token (or its lower case), a space
    [unused1], anything else [UNK]; [CLS] before, [SEP] after."""

    def __init__(self, bert_dir):
        self.vocab = read_vocab(bert_dir)

    def encode(self, text):
        vocab = self.vocab
        return [vocab["[CLS]"]] + [vocab["[unused1]"] if char.isspace() else vocab.get(
            char, vocab.get(char.lower(), vocab["[UNK]"])) for char in text] + [vocab["[SEP]"]]


def load_bert(bert_dir):
    """transformers' BertModel with the checkpoint's weights, read without running a pickle."""
    import torch
    import transformers

    model = transformers.BertModel(transformers.BertConfig.from_pretrained(bert_dir), add_pooling_layer=False)
    safetensors_path = os.path.join(bert_dir, "model.safetensors")
    if os.path.isfile(safetensors_path):
        from safetensors.numpy import load_file
        arrays = load_file(safetensors_path)
    else:
        arrays = read_torch_state_dict(os.path.join(bert_dir, "pytorch_model.bin"))
    state = {name[len("bert."):] if name.startswith("bert.") else name: torch.from_numpy(np.array(array))
             for name, array in arrays.items()}
    missing, _ = model.load_state_dict(state, strict=False)
    if any(not name.endswith("position_ids") for name in missing):
        sys.exit("error: %s lacks %s" % (bert_dir, ", ".join(missing)))
    return model


def pad(sequences):
    width = max(len(sequence) for sequence in sequences)
    return np.array([list(sequence) + [0] * (width - len(sequence)) for sequence in sequences])


def train_loop(args, bert, head, examples, batch_loss, evaluate):
    """Adam at a constant --lr over BertModel and the head; yields (epoch, dev metric, seconds, mean loss)."""
    import torch

    optimizer = torch.optim.Adam(list(bert.parameters()) + list(head.parameters()), lr=args.lr)
    order_rng = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        bert.train()
        head.train()
        began, losses = time.monotonic(), []
        order = order_rng.permutation(len(examples))
        for first in range(0, len(order), args.batch_size):
            loss = batch_loss([examples[i] for i in order[first:first + args.batch_size]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.monotonic() - began
        bert.eval()
        head.eval()
        with torch.no_grad():
            metric = evaluate()
        yield epoch, metric, seconds, float(np.mean(losses))


def sequence_output(bert, token_ids):
    import torch

    token_ids = torch.tensor(token_ids)
    return bert(input_ids=token_ids, attention_mask=(token_ids > 0).long()).last_hidden_state, token_ids > 0


# The subject loop ----------------------------------------------------------------------------

def best_span(start_logits, end_logits, text_start, text_end, max_span):
    """subject_extraction.best_span in numpy: the (start, end) of highest start + end logit."""
    start_logits, end_logits = start_logits[text_start:text_end], end_logits[text_start:text_end]
    starts, ends = np.indices((len(start_logits), len(end_logits)))
    scores = np.where((ends >= starts) & (ends - starts < max_span), start_logits[:, None] + end_logits[None, :], -np.inf)
    start, end = np.unravel_index(np.argmax(scores), scores.shape)
    return text_start + int(start), text_start + int(end)


def subject_logits(bert, head, token_ids):
    """The loop's start and end logits: a Linear over BERT's output, padding at -1e4."""
    hidden, mask = sequence_output(bert, token_ids)
    start, end = head(hidden).unbind(-1)
    return start.masked_fill(~mask, -1e4), end.masked_fill(~mask, -1e4)


def subject_loss(start_logits, end_logits, starts, ends):
    """Softmax cross-entropy of the gold start plus that of the gold end (token positions)."""
    import torch

    cross_entropy = torch.nn.functional.cross_entropy
    return cross_entropy(start_logits, torch.tensor(starts)) + cross_entropy(end_logits, torch.tensor(ends))


def subject_loop(args, files):
    import torch

    tokenizer = CharTokenizer(args.bert_dir)

    def read(path):
        with open(path, encoding="utf-8-sig", newline="") as reader:
            for _, text, event_type, entity in csv.reader(reader):
                prefix = "___%s___" % event_type
                yield tokenizer.encode(prefix + text[:args.maxlen]), 1 + len(prefix), text[:args.maxlen], entity

    train = [(token_ids, text_start + text.find(entity), text_start + text.find(entity) + len(entity) - 1)
             for token_ids, text_start, text, entity in read(files["train"]) if entity and entity in text]
    dev = list(read(files["dev"]))
    bert = load_bert(args.bert_dir)
    head = torch.nn.Linear(bert.config.hidden_size, 2)

    def batch_loss(batch):
        return subject_loss(*subject_logits(bert, head, pad([token_ids for token_ids, _, _ in batch])),
                            [start for _, start, _ in batch], [end for _, _, end in batch])

    def evaluate():
        right = 0
        for first in range(0, len(dev), args.batch_size):
            batch = dev[first:first + args.batch_size]
            start_logits, end_logits = subject_logits(bert, head, pad([token_ids for token_ids, _, _, _ in batch]))
            for row, (_, text_start, text, entity) in enumerate(batch):
                start, end = best_span(start_logits[row].numpy(), end_logits[row].numpy(),
                                       text_start, text_start + len(text), MAX_SPAN)
                right += text[start - text_start:end - text_start + 1] == entity
        return right / len(dev)

    return train_loop(args, bert, head, train, batch_loss, evaluate)


# The relation loop ---------------------------------------------------------------------------

def decode_spans(start_probabilities, end_probabilities, start_threshold=0.5, end_threshold=0.4):
    """relation_extraction.decode_spans: each start above its threshold with the nearest end at or after it."""
    ends = np.flatnonzero(end_probabilities > end_threshold)
    return [(int(start), int(ends[np.searchsorted(ends, start)])) for start in
            np.flatnonzero(start_probabilities > start_threshold) if np.searchsorted(ends, start) < len(ends)]


def occurrences(text, span):
    """Token (start, end) of every occurrence, as relation_extraction.occurrences finds them."""
    return [(i + 1, i + len(span)) for i in range(len(text)) if text.startswith(span, i)]


def relation_probabilities(head, hidden, k1, k2, count):
    """The blog's relation model on BERT's output: subject pointers, then each predicate's object pointers
    with the mean of the subject's start (k1) and end (k2) vectors added to every position."""
    import torch

    subject = torch.sigmoid(head["subject"](hidden))
    rows = torch.arange(len(hidden))
    conditioned = hidden + (hidden[rows, k1] + hidden[rows, k2])[:, None] / 2
    objects = torch.sigmoid(head["object"](conditioned)).view(len(hidden), -1, 2, count)
    return subject, objects


def relation_loss(subject, objects, subject_labels, object_labels, mask):
    """Every pointer's binary cross-entropy, summed over the pointers, averaged over the real tokens."""
    import torch

    bce = torch.nn.functional.binary_cross_entropy
    mask = mask.float()
    tokens = mask.sum()
    return ((bce(subject, subject_labels, reduction="none").sum(-1) * mask).sum() / tokens
            + (bce(objects, object_labels, reduction="none").sum((-1, -2)) * mask).sum() / tokens)


def relation_loop(args, files):
    import torch

    tokenizer = CharTokenizer(args.bert_dir)
    with open(files["schema"], encoding="utf-8") as reader:
        predicates = sorted({json.loads(line)["predicate"] for line in reader if line.strip()})
    predicate_ids = {predicate: i for i, predicate in enumerate(predicates)}

    def read(path):
        with open(path, encoding="utf-8") as reader:
            for line in reader:
                record = json.loads(line)
                text = record["text"][:args.maxlen]
                triples = {(spo["subject"], spo["predicate"], spo["object"]) for spo in record["spo_list"]}
                yield text, tokenizer.encode(text), triples

    train = []
    for text, token_ids, triples in read(files["train"]):
        subjects = {}  # (start, end) of every occurrence of a subject -> its objects' (start, end, predicate)
        for subject, predicate, obj in triples:
            for span in occurrences(text, subject):
                subjects.setdefault(span, []).extend(
                    (start, end, predicate_ids[predicate]) for start, end in occurrences(text, obj))
        if subjects:
            train.append((token_ids, subjects))
    dev = list(read(files["dev"]))
    bert = load_bert(args.bert_dir)
    hidden_size, count = bert.config.hidden_size, len(predicates)
    head = torch.nn.ModuleDict({"subject": torch.nn.Linear(hidden_size, 2),
                                "object": torch.nn.Linear(hidden_size, 2 * count)})
    rng = np.random.default_rng(args.seed)

    def batch_loss(batch):
        token_ids = pad([token_ids for token_ids, _ in batch])
        hidden, mask = sequence_output(bert, token_ids)
        chosen = [list(subjects)[rng.integers(len(subjects))] for _, subjects in batch]
        subject_labels = torch.zeros(token_ids.shape + (2,))
        object_labels = torch.zeros(token_ids.shape + (2, count))
        for row, ((_, subjects), span) in enumerate(zip(batch, chosen)):
            for start, end in subjects:
                subject_labels[row, start, 0] = subject_labels[row, end, 1] = 1
            for start, end, predicate in subjects[span]:
                object_labels[row, start, 0, predicate] = object_labels[row, end, 1, predicate] = 1
        subject, objects = relation_probabilities(head, hidden, torch.tensor([s for s, _ in chosen]),
                                                  torch.tensor([e for _, e in chosen]), count)
        return relation_loss(subject, objects, subject_labels, object_labels, mask)

    def evaluate():
        correct = predicted_count = gold_count = 0
        for text, token_ids, gold in dev:
            hidden, _ = sequence_output(bert, [token_ids])
            subject, _ = relation_probabilities(head, hidden, torch.tensor([0]), torch.tensor([0]), count)
            found = set()
            for start, end in decode_spans(subject[0, 1:len(text) + 1, 0].numpy(), subject[0, 1:len(text) + 1, 1].numpy()):
                _, objects = relation_probabilities(head, hidden, torch.tensor([start + 1]), torch.tensor([end + 1]), count)
                for predicate in range(count):
                    for object_start, object_end in decode_spans(objects[0, 1:len(text) + 1, 0, predicate].numpy(),
                                                                 objects[0, 1:len(text) + 1, 1, predicate].numpy()):
                        found.add((text[start:end + 1], predicates[predicate], text[object_start:object_end + 1]))
            correct += len(found & gold)
            predicted_count += len(found)
            gold_count += len(gold)
        return 2 * correct / (predicted_count + gold_count) if predicted_count + gold_count else 0.0

    return train_loop(args, bert, head, train, batch_loss, evaluate)


# The sentiment loop --------------------------------------------------------------------------

def sentiment_loop(args, files):
    import torch

    tokenizer = CharTokenizer(args.bert_dir)

    def read(path):
        with open(path, encoding="utf-8") as reader:
            return [(tokenizer.encode(text[:args.maxlen]), float(label))
                    for text, label in (line.rstrip("\n").rsplit("\t", 1) for line in reader if line.strip())]

    train, dev = read(files["train"]), read(files["dev"])
    bert = load_bert(args.bert_dir)
    head = torch.nn.Linear(bert.config.hidden_size, 1)

    def probability(token_ids):
        hidden, _ = sequence_output(bert, token_ids)
        return torch.sigmoid(head(hidden[:, 0]))[:, 0]

    def batch_loss(batch):
        return torch.nn.functional.binary_cross_entropy(probability(pad([token_ids for token_ids, _ in batch])),
                                                        torch.tensor([label for _, label in batch]))

    def evaluate():
        right = 0
        for first in range(0, len(dev), args.batch_size):
            batch = dev[first:first + args.batch_size]
            predicted = probability(pad([token_ids for token_ids, _ in batch])).numpy() > 0.5
            right += sum(p == (label > 0.5) for p, (_, label) in zip(predicted, batch))
        return right / len(dev)

    return train_loop(args, bert, head, train, batch_loss, evaluate)


# The NER loop ------------------------------------------------------------------------------

def bio_entities(tags):
    """(type, start, end) of a BIO tag sequence, end exclusive; an I- continuing nothing of its type starts one."""
    entities, current = [], None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, entity_type = tag.partition("-")
        if current is None or current[0] != entity_type or prefix != "I":
            if current is not None:
                entities.append((current[0], current[1], i))
            current = None if prefix == "O" else [entity_type, i]
    return entities


def ner_loop(args, files):
    import torch

    tokenizer = CharTokenizer(args.bert_dir)

    def read(path):
        with open(path, encoding="utf-8") as reader:
            for line in reader:
                record = json.loads(line)
                entities = {(entity_type, start, end + 1) for entity_type, mentions in record["label"].items()
                            for spans in mentions.values() for start, end in spans}
                yield record["text"][:args.maxlen], entities

    train, dev = list(read(files["train"])), list(read(files["dev"]))
    types = sorted({entity_type for _, entities in train for entity_type, _, _ in entities})
    names = ["O"] + ["%s-%s" % (prefix, entity_type) for entity_type in types for prefix in "BI"]
    ids = {name: i for i, name in enumerate(names)}

    def tag_ids(text, entities):
        tags = [0] * len(text)
        for entity_type, start, end in sorted(entities, key=lambda entity: (entity[1], -entity[2])):
            if end <= len(text) and not any(tags[start:end]):  # one entity a character, as ner.py tags them
                tags[start:end] = [ids["B-" + entity_type]] + [ids["I-" + entity_type]] * (end - start - 1)
        return tags

    train = [(tokenizer.encode(text), tag_ids(text, entities)) for text, entities in train]
    bert = load_bert(args.bert_dir)
    head = torch.nn.Linear(bert.config.hidden_size, len(names))

    def scores(token_ids):
        hidden, mask = sequence_output(bert, token_ids)
        return head(hidden)[:, 1:-1], mask[:, 2:]  # character i is token i + 1; [SEP] has no tag

    def batch_loss(batch):
        tag_scores, mask = scores(pad([token_ids for token_ids, _ in batch]))
        tags = torch.tensor(pad([tags for _, tags in batch]))
        losses = torch.nn.functional.cross_entropy(tag_scores.transpose(1, 2), tags, reduction="none")
        return (losses * mask).sum() / mask.sum()

    def evaluate():
        right = predicted = gold = 0
        for first in range(0, len(dev), args.batch_size):
            batch = dev[first:first + args.batch_size]
            tag_scores, _ = scores(pad([tokenizer.encode(text) for text, _ in batch]))
            for row, (text, entities) in enumerate(batch):
                found = set(bio_entities([names[i] for i in tag_scores[row, :len(text)].argmax(-1).tolist()]))
                right += len(found & entities)
                predicted += len(found)
                gold += len(entities)
        return 2 * right / (predicted + gold) if predicted + gold else 0.0

    return train_loop(args, bert, head, train, batch_loss, evaluate)


TASKS = {
    "subject": dict(script="subject_extraction.py", files=subject_files, loop=subject_loop, metric="accuracy",
                    maxlen=128, train_rows=3760),
    "relation": dict(script="relation_extraction.py", files=relation_files, loop=relation_loop, metric="f1",
                     maxlen=160, train_rows=2000),
    "sentiment": dict(script="sentiment.py", files=sentiment_files, loop=sentiment_loop, metric="accuracy",
                      maxlen=100, train_rows=None),
    "ner": dict(script="ner.py", files=ner_files, loop=ner_loop, metric="f1", maxlen=128, train_rows=4000),
}


# ---------------------------------------------------------------------------------------------
# Both sides, each run in its own process
# ---------------------------------------------------------------------------------------------

def run_script(args, files, seed, output_dir):
    """The script with the loop's settings (--lr, --epochs, --batch-size, --maxlen, --seed) and --flags."""
    command = [sys.executable, os.path.join(PROJECT_DIR, TASKS[args.task]["script"]), "--bert-dir", args.bert_dir,
               "--train-file", files["train"], "--dev-file", files["dev"], "--output-dir", output_dir,
               "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
               "--maxlen", str(args.maxlen), "--seed", str(seed)]
    if "schema" in files:
        command += ["--schema-file", files["schema"]]
    command += args.flags.split()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_DIR)
    if finished.returncode != 0:
        sys.exit("%s failed (exit %d):\n%s" % (" ".join(command), finished.returncode, finished.stderr[-2000:]))
    return [(int(epoch), float(metric), float(seconds)) for epoch, _, metric, seconds in EPOCH_LINE.findall(finished.stdout)]


def run_loop(args, files, seed):
    command = [sys.executable, os.path.abspath(__file__), "--side-loop", json.dumps(files), "--bert-dir", args.bert_dir,
               "--task", args.task, "--epochs", str(args.epochs), "--lr", str(args.lr),
               "--batch-size", str(args.batch_size), "--maxlen", str(args.maxlen), "--seeds", str(seed)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        sys.exit("the loop failed (exit %d):\n%s" % (finished.returncode, finished.stderr[-2000:]))
    return [(int(epoch), float(metric), float(seconds))
            for epoch, metric, seconds in re.findall(r"^loop epoch (\d+): .*dev \w+ ([\d.]+), ([\d.]+) s", finished.stdout, re.M)]


def loop_side(args):
    """In the loop's own process: train and print one line an epoch."""
    import torch

    args.seed = int(args.seeds)
    torch.manual_seed(args.seed)
    for epoch, metric, seconds, loss in TASKS[args.task]["loop"](args, json.loads(args.side_loop)):
        print("loop epoch %d: loss %.4f, dev %s %.4f, %.1f s" % (epoch, loss, TASKS[args.task]["metric"], metric, seconds),
              flush=True)


def torch_missing():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--bert-dir", required=True,
                        help="a Hugging Face BERT folder (config.json, vocab.txt or tokenizer.json, model.safetensors "
                        "or pytorch_model.bin): the loop reads only such a folder")
    parser.add_argument("--task", choices=list(TASKS), required=True)
    parser.add_argument("--ccks-dir", help="subject: the folder of CCKS 2019's " + CCKS_TRAIN_FILE)
    parser.add_argument("--cluener-dir", help="ner: the folder of CLUENER2020's train.json")
    parser.add_argument("--train-rows", type=int, help="subject: 3760, relation: 2000, ner: 4000 (default: the task's)")
    parser.add_argument("--dev-rows", type=int, default=1000, help="subject's and ner's dev rows (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=1e-4, help="the loop's constant rate, the script's --lr "
                        "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--maxlen", type=int, help="default: the script's")
    parser.add_argument("--seeds", default="1", help="default: %(default)s")
    parser.add_argument("--flags", default="", help="more flags for the script, after an = sign: --flags=--crf, --flags='--min-lr 1e-4'")
    parser.add_argument("--sides", default="script,loop", help="default: %(default)s")
    parser.add_argument("--side-loop", help=argparse.SUPPRESS)  # the files, in the loop's own process
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    task = TASKS[args.task]
    args.maxlen = args.maxlen or task["maxlen"]
    args.train_rows = args.train_rows or task["train_rows"]
    if args.side_loop:
        return loop_side(args)
    if args.task == "subject" and not args.ccks_dir:
        sys.exit("error: --task subject needs --ccks-dir, the folder of CCKS 2019's " + CCKS_TRAIN_FILE)
    if args.task == "ner" and not args.cluener_dir:
        sys.exit("error: --task ner needs --cluener-dir, the folder of CLUENER2020's train.json")
    sides = args.sides.split(",")
    missing = torch_missing() if "loop" in sides else None
    if missing:
        print("the loop side is skipped: %s (pip install torch transformers)" % missing, file=sys.stderr)
        sides.remove("loop")
    results = []
    with tempfile.TemporaryDirectory(prefix="plain_loop_") as work_dir:
        files = task["files"](work_dir, args)
        for i, seed in enumerate(int(seed) for seed in args.seeds.split(",")):
            for side in sides if i % 2 == 0 else sides[::-1]:
                epochs = (run_loop(args, files, seed) if side == "loop"
                          else run_script(args, files, seed, os.path.join(work_dir, "run-%d" % seed)))
                results.append((side, seed, epochs))
                print("%s seed %d: %s" % (side, seed, " ".join("%.3f" % metric for _, metric, _ in epochs)),
                      file=sys.stderr, flush=True)
    print("\n%s, dev %s after each epoch (--lr %g, batch %d, --maxlen %d%s)\n"
          % (args.task, task["metric"], args.lr, args.batch_size, args.maxlen, ", script " + args.flags if args.flags else ""))
    print("| side | seed | " + " | ".join("epoch %d" % (epoch + 1) for epoch in range(args.epochs)) + " | seconds an epoch |")
    print("| --- | --- |" + " --- |" * (args.epochs + 1))
    for side, seed, epochs in sorted(results):
        print("| %s | %d | %s | %s |" % (task["script"] if side == "script" else "plain loop", seed,
                                        " | ".join("%.3f" % metric for _, metric, _ in epochs),
                                        " ".join("%.0f" % seconds for _, _, seconds in epochs)))


if __name__ == "__main__":
    main()
