"""Chinese named-entity recognition by fine-tuning Chinese BERT: a tag per character, softmax or CRF.

Not one of the blog's three examples, but what people fine-tune a Chinese BERT for most after
classification (bert4keras' `task_sequence_labeling_ner_crf.py`, transformers' `run_ner.py`, CLUE's
CLUENER2020). One token per character (tokenizer.py), so tag i belongs to character i; entities
are (type, start, end) character offsets into the original text, end exclusive: text[start:end].

Head: BERT's sequence output into `Dense(number of tags)`, then a linear-chain CRF (the default):
transition scores between consecutive tags, the log-likelihood of the gold path as the loss (the
forward algorithm) and Viterbi decoding, in TensorFlow ops of our own (keras-contrib's and TF
Addons' CRFs do not run on this stack). `--no-crf`: a softmax per character instead, trained with
cross-entropy over the characters. On CLUENER with a real 4-layer BERT the CRF was ahead of the
softmax by 0.13 to 0.22 F1 at each of three epochs, in two seeds (benchmarks/README.md, "NER on
CLUENER"). The model tags in BIO whatever the data's scheme: O, then B-type and I-type for each
entity type. Decoding reads a tag sequence as conlleval does: an I- tag that does not continue an
entity of its own type (after O, or after another type) starts a new entity of its type; gold
files in BIOES and BMES are read by the same rule.
Metric: entity-level micro precision, recall and F1, an entity right only when its type, start
and end all match (seqeval's strict mode, CLUE's scorer); after training a per-type table and the
wrong dev entities are written to --output-dir.

A text longer than --maxlen is never cut: it is read in windows of --maxlen characters, one every
--stride characters, in training (every window is an example), evaluation, prediction and the export.

Data, the layouts as published, found in --data-dir under their usual file names (or named with
--train-file, --dev-file, --test-file, the layout then told by the content):
- CLUENER2020: `train.json`, `dev.json`, `test.json`, JSON lines `{"text": ..., "label": {type:
  {entity: [[start, end], ...]}}}` with inclusive offsets; test lines carry an `id` and no label.
- People's Daily as bert4keras reads it: `example.train`, `example.dev`, `example.test`, a character
  and its tag a line (`中 B-ORG`), a blank line between sentences, BIO over PER, LOC, ORG.
- MSRA NER: `msra_train_bio.txt`, `msra_test_bio.txt` (or without `.txt`), the same two columns,
  tab- or space-separated.
- Weibo NER: `weiboNER_2nd_conll.train`, `.dev`, `.test`: a digit after each character (its place
  in a segmented word) is dropped; tags such as `B-PER.NAM`.
- Resume NER: `train.char.bmes`, `dev.char.bmes`, `test.char.bmes`, BMES tags (B-, M-, E-, S-).
The tagging scheme (BIO, BIOES, BMES) is read from the tags. Without a dev file a tenth of the
training file is held out; a labelled test file is scored with the best weights. The bundled
`data/ner/` holds a small made-up sample of each layout; `data/ner/cluener` is the default.

    python ner.py                                      # train on the bundled CLUENER sample
    python ner.py --bert-dir chinese_L-12_H-768_A-12 --data-dir cluener_public
    python ner.py --data-dir china-people-daily-ner-corpus --no-crf     # a softmax per character
    python ner.py --predict "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。"
    python ner.py --predict-file cluener_public/test.json --submission cluener_predict.json
"""
import argparse
import collections
import json
import os
import reprlib

# First: tokenizer imports TensorFlow as keras-bert needs it (Keras 2), without its start-up noise.
from tokenizer import OurTokenizer, load_vocab, window_starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from bert_checkpoint import load_bert  # noqa: E402
from fine_tuning import (  # noqa: E402
    AccumulatingModel, TrainingBatches, UserError, check_sequence_length, head_initializer, load_best_weights,
    make_parser, pad, parse_flags, prediction_batches, read_data_file, read_json_lines, run, set_up_devices, train)
from output_lock import lock_output_dir  # noqa: E402
from serving import ServingModule, substrings, window_starts_in_graph, write_export  # noqa: E402

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
TAGS_NAME = "tags.json"  # beside the best weights: the entity types and the head the model was trained with

# ---------------------------------------------------------------------------------------------
# Settings: bert4keras' NER example's defaults; each one is overridden by the flag of the same name.
# ---------------------------------------------------------------------------------------------

SETTINGS = dict(
    data_dir=os.path.join(PROJECT_DIR, "data", "ner", "cluener"),
    output_dir="outputs/ner",
    epochs=10,
    batch_size=32,
    maxlen=256,
    lr=1e-5,
    seed=42,
    stride=None,  # half of --maxlen
)
# A tiny random BERT barely moves at BERT-base's learning rate; these make it learn visibly.
TINY_BERT_SETTINGS = dict(lr=1e-3, epochs=3, batch_size=16)
# bert4keras' crf_lr_multiplier: the transitions learn this many times faster than BERT, or at a
# fine-tuning rate they hardly leave zero. Tiny model, 400 lines of the CLUENER sample, lr 1e-3, dev F1
# after 3 epochs: 0.35 0.60 0.72 with 1, 0.92 1.00 1.00 with 100, 0.95 1.00 1.00 with 1000.
TRANSITIONS_LR_MULTIPLIER = 1000


def build_parser():
    parser = make_parser(__doc__, SETTINGS)
    parser.add_argument("--crf", action=argparse.BooleanOptionalAction, default=True,
                        help="a linear-chain CRF on top of the tag scores (transitions, Viterbi decoding; the "
                        "default), or with --no-crf a softmax per character; --predict and --export use the head "
                        "the model was trained with")
    parser.add_argument("--predict", nargs="+", metavar="TEXT",
                        help="print the entities of each TEXT (type, offsets start:end, end exclusive) with the saved "
                        "best weights")
    parser.add_argument("--predict-file", metavar="FILE",
                        help="like --predict, for every line of FILE, or for the texts of a CLUENER test file")
    parser.add_argument("--submission", metavar="FILE",
                        help="with --predict-file: also write one {\"id\": ..., \"label\": {type: {entity: [[start, "
                        "end]]}}} per line to FILE, CLUE's submission layout (inclusive offsets)")
    parser.add_argument("--test-file", metavar="FILE",
                        help="the test file, instead of the one in --data-dir; without labels it is not scored")
    return parser


# ---------------------------------------------------------------------------------------------
# Data: each layout as published, read into texts and their (type, start, end) entities
# ---------------------------------------------------------------------------------------------

# entities: sorted (type, start, end), end exclusive; None for a text without labels. line: where
# the text starts in its file; character_lines: whether character i is on line `line + i`.
Example = collections.namedtuple("Example", "line text entities id character_lines")

LAYOUTS = {  # each published layout's file names in --data-dir, by split; alternatives in order
    "CLUENER": {"train": ["train.json"], "dev": ["dev.json"], "test": ["test.json"]},
    "People's Daily": {"train": ["example.train"], "dev": ["example.dev"], "test": ["example.test"]},
    "MSRA": {"train": ["msra_train_bio.txt", "msra_train_bio"], "dev": [],
             "test": ["msra_test_bio.txt", "msra_test_bio"]},
    "Weibo": {"train": ["weiboNER_2nd_conll.train"], "dev": ["weiboNER_2nd_conll.dev"],
              "test": ["weiboNER_2nd_conll.test"]},
    "Resume": {"train": ["train.char.bmes"], "dev": ["dev.char.bmes"], "test": ["test.char.bmes"]},
}
TAG_PREFIXES = ("B", "I", "M", "E", "S")
SCHEMES_OF_PREFIX = {"I": "BIO's or BIOES'", "M": "BMES'"}  # the two prefixes no scheme has both of


def find_data_files(data_dir, named):
    """{split: path or None} for train, dev and test: each file named by its flag (`named`), the others
    under the names of the layout whose training file is in data_dir (or is the named training file)."""
    for names in LAYOUTS.values():
        if named["train"]:
            if os.path.basename(named["train"]) not in names["train"]:
                continue
        elif not any(os.path.isfile(os.path.join(data_dir, name)) for name in names["train"]):
            continue
        found = {split: next((os.path.join(data_dir, name) for name in names[split]
                              if os.path.isfile(os.path.join(data_dir, name))), None) for split in names}
        return {split: named[split] or found[split] for split in names}
    if named["train"]:
        return dict(named)
    raise UserError("%s has no training file of a layout we know (%s): name it with --train-file"
                    % (data_dir, "; ".join("%s's %s" % (layout, " or ".join(names["train"]))
                                           for layout, names in LAYOUTS.items())))


def shorten(text, limit=40):
    """A quotable piece of a text that may be a million characters long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def read_examples(path):
    """The Examples of a file in any layout: JSON lines (CLUENER) or a character and its tag a line."""
    if read_data_file(path).lstrip()[:1] == "{":
        return read_cluener(path)
    return read_tagged(path)


def read_cluener(path):
    """CLUENER's JSON lines; a line without "label" (a test file's) has entities None."""
    examples = []
    for line_number, record in read_json_lines(path):
        text = record.get("text")
        if not isinstance(text, str):
            raise UserError('%s line %d: expected a "text" string' % (path, line_number))
        entities = cluener_entities(record["label"], text, path, line_number) if "label" in record else None
        examples.append(Example(line_number, text, entities, record.get("id"), False))
    return examples


def cluener_entities(label, text, path, line_number):
    """The sorted (type, start, end) of a CLUENER label {type: {entity: [[start, end], ...]}}, offsets
    inclusive there and checked against the text, end exclusive here."""
    expected = 'expected "label" to be {type: {entity: [[start, end], ...]}}'
    if not isinstance(label, dict):
        raise UserError("%s line %d: %s, found %s" % (path, line_number, expected, type(label).__name__))
    entities = set()
    for entity_type, mentions in label.items():
        if not entity_type or not isinstance(mentions, dict):
            raise UserError("%s line %d: %s, found type %s" % (path, line_number, expected, shorten(entity_type)))
        for entity, spans in mentions.items():
            if not isinstance(spans, list):
                raise UserError("%s line %d: %s, found %s for %s" % (path, line_number, expected, reprlib.repr(spans),
                                                                   shorten(entity)))
            for span in spans:
                if not (isinstance(span, list) and len(span) == 2 and all(type(offset) is int for offset in span)):
                    raise UserError("%s line %d: %s, found %s for %s" % (path, line_number, expected,
                                                                       reprlib.repr(span), shorten(entity)))
                start, end = span
                if not 0 <= start <= end < len(text):
                    raise UserError("%s line %d: %s %s at [%d, %d] lies outside the text of %d characters"
                                    % (path, line_number, entity_type, shorten(entity), start, end, len(text)))
                if text[start:end + 1] != entity:
                    raise UserError("%s line %d: %s %s at [%d, %d]: the text there is %s"
                                    % (path, line_number, entity_type, shorten(entity), start, end,
                                       shorten(text[start:end + 1])))
                entities.add((entity_type, start, end + 1))
    return sorted(entities, key=lambda entity: (entity[1], entity[2], entity[0]))


def split_character_and_tag(line, path, line_number):
    """(character, tag) of a `character<TAB>tag` or `character tag` line; the digit that Weibo NER
    writes after each character (its place in a segmented word) is dropped."""
    head, _, tag = line.rstrip().rpartition("\t" if "\t" in line else " ")
    head = head.rstrip(" \t")
    if len(head) > 1 and head[1:].isascii() and head[1:].isdigit():
        head = head[0]
    if len(head) != 1 or not tag:
        raise UserError("%s line %d: expected a character and its tag, separated by a tab or a space, found %s"
                        % (path, line_number, shorten(line)))
    return head, tag


def tag_prefix(tag, path, line_number):
    """O, or the B, I, M, E or S of a tag such as B-PER."""
    prefix, dash, entity_type = tag.partition("-")
    if tag == "O" or (prefix in TAG_PREFIXES and dash and entity_type):
        return prefix
    raise UserError("%s line %d: tag %s is not O or one of %s followed by -TYPE (the BIO, BIOES and BMES schemes)"
                    % (path, line_number, shorten(tag), ", ".join(prefix + "-" for prefix in TAG_PREFIXES)))


def scheme_of(prefixes):
    return "BMES" if "M" in prefixes else "BIOES" if prefixes & {"E", "S"} else "BIO"


def read_tagged(path):
    """A character and its tag a line, a blank line between texts (People's Daily, MSRA, Weibo, Resume)."""
    examples, characters, tags, first_seen = [], [], [], {}  # first_seen: prefix -> (line, tag)

    def end_text(next_line):
        if characters:
            examples.append(Example(next_line - len(characters), "".join(characters), tags_to_entities(tags), None,
                                    True))
            characters.clear()
            tags.clear()

    lines = read_data_file(path).split("\n")
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            end_text(line_number)
            continue
        character, tag = split_character_and_tag(line, path, line_number)
        prefix = tag_prefix(tag, path, line_number)
        other = {"I": "M", "M": "I"}.get(prefix)
        if other in first_seen:
            seen_line, seen_tag = first_seen[other]
            raise UserError("%s line %d: tag %s is %s, but line %d's %s is %s: a file uses one tagging scheme"
                            % (path, line_number, shorten(tag), SCHEMES_OF_PREFIX[prefix], seen_line,
                               shorten(seen_tag), SCHEMES_OF_PREFIX[other]))
        first_seen.setdefault(prefix, (line_number, tag))
        characters.append(character)
        tags.append(tag)
    end_text(len(lines) + 1)
    print("%s: %s tags" % (path, scheme_of(set(first_seen))))
    return examples


def tags_to_entities(tags):
    """(type, start, end) of each entity of a tag sequence in BIO, BIOES or BMES, end exclusive.

    Read as conlleval reads it: an I-, M- or E- tag that does not continue an entity of its own
    type (after O, or after another type) starts one; B- and S- always start one; E- and S- end it.
    """
    entities, current = [], None  # current: [type, start] of the entity being read
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, entity_type = tag.partition("-")
        if current is None or current[0] != entity_type or prefix not in ("I", "M", "E"):
            if current is not None:
                entities.append((current[0], current[1], i))
            current = None if prefix == "O" else [entity_type, i]
        if prefix in ("E", "S"):
            entities.append((current[0], current[1], i + 1))
            current = None
    return entities


def load_data(data_dir, seed, train_file=None, dev_file=None, test_file=None):
    """({'train': [...], 'dev': [...], 'test': [...] or None}, the sorted entity types of training).

    Without a dev file a tenth of the training texts (fixed by the seed) is held out. A test file
    without labels is for --predict-file only.
    """
    paths = find_data_files(data_dir, {"train": train_file, "dev": dev_file, "test": test_file})
    data = {"train": read_examples(paths["train"])}
    check_labelled(data["train"], paths["train"])
    types = sorted({entity_type for example in data["train"] for entity_type, _, _ in example.entities})
    if not types:
        raise UserError("%s has no entity: there is nothing to learn" % paths["train"])
    if paths["dev"]:
        data["dev"] = read_examples(paths["dev"])
        check_labelled(data["dev"], paths["dev"])
        check_types(data["dev"], types, paths["dev"], paths["train"])
    else:
        order = np.random.default_rng(seed).permutation(len(data["train"]))
        held_out = set(order[:max(1, len(order) // 10)].tolist())
        data["dev"] = [example for i, example in enumerate(data["train"]) if i in held_out]
        data["train"] = [example for i, example in enumerate(data["train"]) if i not in held_out]
        if not data["train"]:
            raise UserError("%s has too few texts to hold a tenth out for dev; add texts or give --dev-file"
                            % paths["train"])
    data["test"] = read_examples(paths["test"]) if paths["test"] else None
    if data["test"] and data["test"][0].entities is None:
        print("%s has no labels: no test f1; predict its texts with --predict-file %s" % (paths["test"], paths["test"]))
        data["test"] = None
    if data["test"]:
        check_labelled(data["test"], paths["test"])
        check_types(data["test"], types, paths["test"], paths["train"])
    for name, examples in data.items():
        if examples:
            counts = collections.Counter(entity_type for example in examples for entity_type, _, _ in example.entities)
            print("%s: %d texts, %d entities (%s)" % (name, len(examples), sum(counts.values()),
                                                     ", ".join("%s %d" % (t, counts[t]) for t in types)))
    return data, types


def check_labelled(examples, path):
    for example in examples:
        if example.entities is None:
            raise UserError('%s line %d: expected a "label" {type: {entity: [[start, end], ...]}}, found none'
                            % (path, example.line))


def check_types(examples, types, path, train_path):
    """Refuse an entity type the training file never had: the model has no tag for it."""
    for example in examples:
        for entity_type, start, _ in example.entities:
            if entity_type not in types:
                line = example.line + start if example.character_lines else example.line
                raise UserError("%s line %d: entity type %s never occurs in the training file %s (its types: %s)"
                                % (path, line, shorten(entity_type), train_path, ", ".join(types)))


# ---------------------------------------------------------------------------------------------
# Batches: windows of --maxlen characters, one token each, with the BIO tag ids of their characters
# ---------------------------------------------------------------------------------------------

def tag_names(types):
    """The model's tags, by id: O, then B- and I- of each type."""
    return ["O"] + ["%s-%s" % (prefix, entity_type) for entity_type in types for prefix in "BI"]


def entity_tags(length, entities, tag_ids):
    """The BIO tag id of each of `length` characters, and how many entities overlap one already tagged
    (a tag sequence holds one entity per character: the one that starts first, the longer on a tie, is kept)."""
    tags, overlapping = np.zeros(length, np.int32), 0
    for entity_type, start, end in sorted(entities, key=lambda entity: (entity[1], -entity[2])):
        if tags[start:end].any():
            overlapping += 1
            continue
        tags[start] = tag_ids["B-" + entity_type]
        tags[start + 1:end] = tag_ids["I-" + entity_type]
    return tags, overlapping


Window = collections.namedtuple("Window", "text start token_ids segment_ids")  # text: the text's index


def make_windows(tokenizer, texts, maxlen, stride, source):
    """The windows of --maxlen characters over each text (tokenizer.window_starts), in text order."""
    windows, longer = [], 0
    for i, text in enumerate(texts):
        longer += len(text) > maxlen
        for start in window_starts(len(text), maxlen, stride):
            windows.append(Window(i, start, *tokenizer.encode(first=text[start:start + maxlen])))
    if longer:
        print("%s: %d of %d texts are longer than --maxlen %d: read in %d windows (--stride %d)"
              % (source, longer, len(texts), maxlen, len(windows), stride))
    return windows


def make_batch(windows, tags, indices):
    """((token_ids, segment_ids, tags),) for the windows at `indices`; tags: each text's BIO tag ids."""
    chosen = [windows[i] for i in indices]
    window_tags = [tags[window.text][window.start:window.start + len(window.token_ids) - 2] for window in chosen]
    return (pad([window.token_ids for window in chosen]), pad([window.segment_ids for window in chosen]),
            pad(window_tags)),


BATCH_SIGNATURE = ((
    tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None, None), tf.int32),
),)


# ---------------------------------------------------------------------------------------------
# The CRF: transition scores, the forward algorithm's log-likelihood, Viterbi decoding
# ---------------------------------------------------------------------------------------------

def at_least_one_step(scores):
    """Scores padded to one position if they have none (a batch of empty texts), so that each loop
    below has a first step; the padded position lies past every length."""
    return tf.pad(scores, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(scores)[1])], [0, 0]])


def crf_path_score(scores, tags, lengths, transitions):
    """The score of each given tag path: its tags' scores plus the transitions between them.
    scores [batch, time, tags], tags [batch, time], lengths [batch] -> [batch]."""
    mask = tf.sequence_mask(lengths, tf.shape(tags)[1], dtype=scores.dtype)
    unary = tf.reduce_sum(tf.gather(scores, tags, batch_dims=2) * mask, axis=1)
    pairs = tf.gather_nd(transitions, tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))
    return unary + tf.reduce_sum(pairs * mask[:, 1:], axis=1)


def crf_log_partition(scores, lengths, transitions):
    """log of the sum of exp(path score) over every tag path of each sequence: the forward algorithm."""
    scores = at_least_one_step(scores)
    steps = tf.transpose(scores, [1, 0, 2])
    keep = tf.transpose(tf.sequence_mask(lengths, tf.shape(scores)[1]))
    first = tf.range(tf.shape(scores)[1]) == 0

    def forward(alpha, inputs):  # alpha: log-sum of the paths ending in each tag
        score, keep_row, is_first = inputs
        following = tf.reduce_logsumexp(alpha[:, :, None] + transitions[None], axis=1) + score
        return tf.where(keep_row[:, None], tf.where(is_first, score, following), alpha)

    alpha = tf.foldl(forward, (steps, keep, first), initializer=tf.zeros_like(scores[:, 0]))
    return tf.where(lengths > 0, tf.reduce_logsumexp(alpha, axis=1), 0.0)


def crf_log_likelihood(scores, tags, lengths, transitions):
    """log p(tags | scores) of each sequence under the CRF."""
    return crf_path_score(scores, tags, lengths, transitions) - crf_log_partition(scores, lengths, transitions)


def viterbi_decode(scores, lengths, transitions):
    """The highest-scoring tag path of each sequence: [batch, time] int32, 0 (O) past its length."""
    time = tf.shape(scores)[1]
    scores = at_least_one_step(scores)
    steps = tf.transpose(scores, [1, 0, 2])
    keep = tf.transpose(tf.sequence_mask(lengths, tf.shape(scores)[1]))
    first = tf.range(tf.shape(scores)[1]) == 0
    same_tag = tf.range(tf.shape(transitions)[0])[None]

    def forward(carry, inputs):  # best: the best path's score ending in each tag; back: its previous tag
        best, _ = carry
        score, keep_row, is_first = inputs
        candidates = best[:, :, None] + transitions[None]
        following = tf.reduce_max(candidates, axis=1) + score
        back = tf.argmax(candidates, axis=1, output_type=tf.int32)
        # Past a sequence's end: the best scores stay and the pointers keep the tag, for the way back.
        return (tf.where(keep_row[:, None], tf.where(is_first, score, following), best),
                tf.where(keep_row[:, None], back, same_tag))

    bests, backs = tf.scan(forward, (steps, keep, first),
                           initializer=(tf.zeros_like(scores[:, 0]), tf.zeros_like(scores[:, 0], tf.int32)))
    last = tf.argmax(bests[-1], axis=1, output_type=tf.int32)
    # backs[t] maps a tag at t to the best tag at t - 1, so going backwards from `last` gives
    # earlier[t] = the tag at t - 1 (earlier[0] is before the start and dropped).
    earlier = tf.scan(lambda tag, back: tf.gather(back, tag, batch_dims=1), backs, initializer=last, reverse=True)
    path = tf.transpose(tf.concat([earlier[1:], last[None]], axis=0))[:, :time]
    return path * tf.sequence_mask(lengths, time, dtype=tf.int32)


class ConditionalRandomField(keras.layers.Layer):
    """A linear-chain CRF's transition scores, [from tag, to tag], over per-character tag scores.

    Called on [scores, lengths] it gives each sequence's Viterbi path; on [scores, lengths, tags],
    each sequence's negative log-likelihood of those tags. The stored kernel is the transitions divided
    by TRANSITIONS_LR_MULTIPLIER, so that Adam moves the transitions that many times faster.
    """

    def __init__(self, num_tags, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = num_tags

    def build(self, input_shape):
        self.kernel = self.add_weight(name="transitions", shape=(self.num_tags, self.num_tags), initializer="zeros",
                                      dtype=tf.float32)

    @property
    def transitions(self):
        return self.kernel * TRANSITIONS_LR_MULTIPLIER

    def call(self, inputs):
        scores, lengths = tf.cast(inputs[0], tf.float32), inputs[1]
        if len(inputs) == 2:
            return viterbi_decode(scores, lengths, self.transitions)
        return -crf_log_likelihood(scores, tf.cast(inputs[2], tf.int32), lengths, self.transitions)

    def get_config(self):
        return dict(super().get_config(), num_tags=self.num_tags)


# ---------------------------------------------------------------------------------------------
# Model: BERT -> Dense(tags) per character; `model` gives the decoded tags, `train_model` the loss
# ---------------------------------------------------------------------------------------------

def character_counts(token_ids):
    """Each sequence's characters: its real tokens but [CLS] and [SEP]."""
    return tf.reduce_sum(tf.cast(token_ids > 0, tf.int32), axis=1) - 2


def softmax_losses(probabilities, tags, lengths):
    """Cross-entropy of each character's gold tag, summed over each sequence's characters."""
    mask = tf.sequence_mask(lengths, tf.shape(tags)[1], dtype=tf.float32)
    return tf.reduce_sum(keras.backend.sparse_categorical_crossentropy(tags, probabilities) * mask, axis=1)


def build_model(checkpoint, num_tags, crf=False, accumulate=1):
    bert = load_bert(checkpoint)
    token_ids = keras.layers.Input(shape=(None,), name="token_ids")
    segment_ids = keras.layers.Input(shape=(None,), name="segment_ids")
    gold_tags = keras.layers.Input(shape=(None,), dtype="int32", name="tags")  # one per character

    x = bert([token_ids, segment_ids])
    # Token i + 1 is character i: [CLS] and the last position ([SEP], or padding) get no tag.
    x = keras.layers.Lambda(lambda x: x[:, 1:-1], name="characters")(x)
    lengths = keras.layers.Lambda(character_counts, name="lengths")(token_ids)
    # The head computes in float32 even under --mixed-precision, so that the loss stays exact.
    scores = keras.layers.Dense(num_tags, activation=None if crf else "softmax", kernel_initializer=head_initializer(),
                                dtype="float32", name="tag_scores")(x)
    if crf:
        crf_layer = ConditionalRandomField(num_tags, dtype="float32", name="crf")
        tags = crf_layer([scores, lengths])
        losses = crf_layer([scores, lengths, gold_tags])
    else:
        tags = keras.layers.Lambda(lambda p: tf.argmax(p, axis=-1, output_type=tf.int32), name="tags_out")(scores)
        losses = keras.layers.Lambda(lambda inputs: softmax_losses(*inputs), dtype="float32",
                                     name="losses")([scores, gold_tags, lengths])
    model = keras.Model([token_ids, segment_ids], tags)

    # Both losses are per character (a CRF's path losses summed, over the batch's characters), so that
    # --lr means the same for both heads; --accumulate weights micro-batches by their characters.
    train_model = AccumulatingModel(
        [token_ids, segment_ids, gold_tags], scores, accumulate=accumulate,
        loss_denominator=lambda inputs: tf.cast(tf.reduce_sum(character_counts(inputs[0])), tf.float32))
    train_model.add_loss(tf.reduce_sum(losses) / tf.cast(tf.reduce_sum(lengths), tf.float32))
    return model, train_model


# ---------------------------------------------------------------------------------------------
# Decoding and metric: each character's tag from one window, tags to entities, entity-level F1
# ---------------------------------------------------------------------------------------------

def window_owners(length, starts, maxlen):
    """For each character of a text, the index of the window (of `starts`) that gives its tag.

    Each character's tag comes from the window in which it lies farthest from the window's edges
    (the first one on a tie): with windows all of one width, the window whose centre is nearest.
    """
    width = min(length, maxlen)
    twice_halfway = np.asarray(starts[:-1]) + np.asarray(starts[1:]) + width - 1  # between two windows' centres
    return np.searchsorted(twice_halfway, 2 * np.arange(length), side="left")


def predict_entities(model, tokenizer, texts, types, maxlen, stride, batch_size, source):
    """The sorted (type, start, end) entities of each text, from the tags of its windows."""
    names = np.asarray(tag_names(types))
    windows = make_windows(tokenizer, texts, maxlen, stride, source)
    window_tags = [None] * len(windows)
    for indices in prediction_batches([len(window.token_ids) for window in windows], batch_size):
        tags = model.predict_on_batch([pad([windows[i].token_ids for i in indices]),
                                       pad([windows[i].segment_ids for i in indices])])
        for row, i in enumerate(indices):
            window_tags[i] = tags[row, :len(windows[i].token_ids) - 2]
    entities, first = [], 0
    for text in texts:
        starts = window_starts(len(text), maxlen, stride)
        its_tags = window_tags[first:first + len(starts)]
        first += len(starts)
        owners = window_owners(len(text), starts, maxlen)  # the window where each character is farthest from an edge
        offsets = np.cumsum([0] + [len(tags) for tags in its_tags])[owners]
        flat = np.concatenate(its_tags)
        character_tags = flat[offsets + np.arange(len(text)) - np.asarray(starts)[owners]]
        entities.append(sorted(tags_to_entities(names[character_tags]), key=lambda entity: (entity[1], entity[2])))
    return entities


def entity_counts(predicted, gold):
    """{type: [right, predicted, gold]} over lists of entity lists: right when type, start and end all match."""
    counts = collections.defaultdict(lambda: [0, 0, 0])
    for predicted_entities, gold_entities in zip(predicted, gold):
        predicted_entities, gold_entities = set(predicted_entities), set(gold_entities)
        for entity in predicted_entities:
            counts[entity[0]][1] += 1
            counts[entity[0]][0] += entity in gold_entities
        for entity in gold_entities:
            counts[entity[0]][2] += 1
    return counts


def precision_recall_f1(right, predicted, gold):
    precision = right / predicted if predicted else 0.0
    recall = right / gold if gold else 0.0
    return precision, recall, 2 * right / (predicted + gold) if predicted + gold else 0.0


def entity_scores(predicted, gold):
    """Micro (precision, recall, f1) over all entities."""
    right, n_predicted, n_gold = (sum(column) for column in zip([0, 0, 0], *entity_counts(predicted, gold).values()))
    return precision_recall_f1(right, n_predicted, n_gold)


def entity_report(predicted, gold, types):
    """The per-type precision/recall/F1/support table and the micro scores, as text."""
    counts = entity_counts(predicted, gold)
    width = max(len(name) for name in list(types) + ["micro"])
    lines = ["%-*s  precision  recall  f1      support" % (width, "type")]
    for name in types:
        right, n_predicted, n_gold = counts.get(name, (0, 0, 0))
        lines.append("%-*s  %.4f     %.4f  %.4f  %d" % (width, name, *precision_recall_f1(right, n_predicted, n_gold),
                                                        n_gold))
    precision, recall, f1 = entity_scores(predicted, gold)
    lines.append("%-*s  %.4f     %.4f  %.4f  %d" % (width, "micro", precision, recall, f1,
                                                    sum(len(set(entities)) for entities in gold)))
    return "\n".join(lines)


def evaluate(model, tokenizer, examples, types, args):
    """(dev f1, the epoch line's note: precision and recall)."""
    predicted = predict_entities(model, tokenizer, [example.text for example in examples], types, args.maxlen,
                                 args.stride, args.batch_size, "dev")
    precision, recall, f1 = entity_scores(predicted, [example.entities for example in examples])
    return f1, "precision %.4f, recall %.4f" % (precision, recall)


def write_report(model, tokenizer, examples, types, args, split):
    """Print and save the split's per-type report with the best weights, for dev also its wrong entities;
    return the f1."""
    predicted = predict_entities(model, tokenizer, [example.text for example in examples], types, args.maxlen,
                                 args.stride, args.batch_size, split)
    gold = [example.entities for example in examples]
    report = entity_report(predicted, gold, types)
    print("%s, with the best dev weights:\n%s" % (split, report))
    with open(os.path.join(args.output_dir, "%s_report.txt" % split), "w", encoding="utf-8") as writer:
        writer.write(report + "\n")
    if split == "dev":
        errors_path = os.path.join(args.output_dir, "dev_errors.tsv")
        with open(errors_path, "w", encoding="utf-8") as writer:
            writer.write("line\terror\ttype\tstart\tend\tentity\ttext\n")
            for example, entities in zip(examples, predicted):
                wrong = [("missed", entity) for entity in set(example.entities) - set(entities)]
                wrong += [("spurious", entity) for entity in set(entities) - set(example.entities)]
                for error, (entity_type, start, end) in sorted(wrong, key=lambda item: (item[1][1], item[1][2])):
                    writer.write("%d\t%s\t%s\t%d\t%d\t%s\t%s\n" % (example.line, error, entity_type, start, end,
                                                                   example.text[start:end], example.text))
        print("wrong dev entities: %s" % errors_path)
    return entity_scores(predicted, gold)[2]


# ---------------------------------------------------------------------------------------------
# Prediction: from the saved best weights, on new text
# ---------------------------------------------------------------------------------------------

def tags_path(output_dir):
    return os.path.join(output_dir, TAGS_NAME)


def load_tags(output_dir):
    """(entity types, crf) of the model trained in output_dir."""
    path = tags_path(output_dir)
    if not os.path.isfile(path):
        raise UserError("no trained model in %s (no %s): train first with `python ner.py --output-dir %s`"
                        % (output_dir, TAGS_NAME, output_dir))
    with open(path, encoding="utf-8") as reader:
        saved = json.load(reader)
    return saved["types"], saved["crf"]


def read_texts_to_tag(path):
    """([ids], [texts]): a CLUENER test file's ids and texts, or each non-blank line of FILE (ids from 0)."""
    if read_data_file(path).lstrip()[:1] == "{":
        examples = read_cluener(path)
        return [i if example.id is None else example.id for i, example in enumerate(examples)], [
            example.text for example in examples]
    texts = [line.strip() for line in read_data_file(path).split("\n") if line.strip()]
    return list(range(len(texts))), texts


def clue_label(entities):
    """CLUE's {type: {entity: [[start, end], ...]}} of (type, start, end, text) entities, end inclusive."""
    label = {}
    for entity_type, start, end, entity in entities:
        label.setdefault(entity_type, {}).setdefault(entity, []).append([start, end - 1])
    return label


def predict(args, checkpoint, tokenizer):
    """Print each text's entities; with --submission also CLUE's layout of them."""
    types, crf = load_tags(args.output_dir)
    texts = list(args.predict or [])
    ids = list(range(len(texts)))
    if args.predict_file:
        file_ids, file_texts = read_texts_to_tag(args.predict_file)
        ids, texts = ids + file_ids, texts + file_texts
    model, train_model = build_model(checkpoint, len(tag_names(types)), crf)
    load_best_weights(train_model, args.output_dir, "ner.py")
    entities = predict_entities(model, tokenizer, texts, types, args.maxlen, args.stride, args.batch_size,
                                args.predict_file or "--predict")
    for text, found in zip(texts, entities):
        print(text)
        for entity_type, start, end in found:
            print("    %s %d:%d %s" % (entity_type, start, end, text[start:end]))
        if not found:
            print("    no entity found")
    if args.submission:
        with open(args.submission, "w", encoding="utf-8") as writer:
            for identifier, text, found in zip(ids, texts, entities):
                label = clue_label([(entity_type, start, end, text[start:end]) for entity_type, start, end in found])
                writer.write(json.dumps({"id": identifier, "label": label}, ensure_ascii=False) + "\n")
        print("wrote the entities of %d texts in CLUE's submission layout to %s" % (len(texts), args.submission))


# ---------------------------------------------------------------------------------------------
# Export: a SavedModel that takes raw texts (README: Serving the fine-tuned model)
# ---------------------------------------------------------------------------------------------

def entities_in_graph(tags):
    """tags_to_entities in TensorFlow ops for BIO tag ids (0 O, 1 + 2k B- and 2 + 2k I- of type k).

    [rows, length] -> [entities, 4] int32 (row, type, start, end), rows in order, starts ascending.
    """
    length = tf.shape(tags)[1]
    entity_type = (tags - 1) // 2
    previous = tf.pad(tags, [[0, 0], [1, 0]])[:, :-1]  # O before the first character
    continues = (tags > 0) & (tags % 2 == 0) & (previous > 0) & ((previous - 1) // 2 == entity_type)
    # An entity ends where the next character does not continue it: the first such position after its start.
    breaks = ~continues
    break_positions = tf.sort(tf.where(breaks, tf.range(length)[None, :], length), axis=1)
    break_positions = tf.pad(break_positions, [[0, 0], [0, 1]], constant_values=length)
    breaks_through = tf.cumsum(tf.cast(breaks, tf.int32), axis=1)
    row_start = tf.cast(tf.where((tags > 0) & ~continues), tf.int32)
    end = tf.gather_nd(tf.gather(break_positions, breaks_through, batch_dims=1), row_start)
    return tf.concat([row_start[:, :1], tf.gather_nd(entity_type, row_start)[:, None], row_start[:, 1:],
                      end[:, None]], axis=1)


class EntityServing(ServingModule):
    """serving_default: `text` (strings) -> the entities --predict finds, one entry per entity in
    parallel flat outputs, by text and then by start: `text_index` (int32, which input text), `type`
    (string), `start`, `end` (int32 character offsets, end exclusive) and `entity` (string, text[start:end]).
    """

    def __init__(self, models, vocab_path, maxlen, stride, types):
        super().__init__(models, vocab_path, maxlen)
        self.stride = stride
        self.types = tf.constant(types)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        characters = self.tokenizer.code_points(text)  # not cut: a long text is read in windows
        lengths = tf.cast(characters.row_lengths(), tf.int32)
        starts = window_starts_in_graph(lengths, self.maxlen, self.stride)  # [texts, (windows)]
        window_text = tf.cast(starts.value_rowids(), tf.int32)
        window_start = starts.flat_values
        width = tf.minimum(lengths, self.maxlen)
        positions = tf.ragged.range(window_start, window_start + tf.gather(width, window_text))
        first_character = tf.gather(tf.cast(characters.row_starts(), tf.int32), window_text)
        window_characters = tf.gather(characters.flat_values,
                                      positions + tf.expand_dims(first_character, 1))
        model, = self.call_models
        window_tags = model(list(self.tokenizer.pad(self.tokenizer.token_ids(window_characters))))

        # Each character's tag from the window in which it lies farthest from its edges (window_owners).
        twice_halfway = starts[:, :-1] + starts[:, 1:] + tf.expand_dims(width - 1, 1)
        never = tf.fill([tf.size(lengths), 1], tf.int32.max)  # one more column: searchsorted wants one at least
        twice_halfway = tf.concat([twice_halfway.to_tensor(tf.int32.max), never], axis=1)
        character_positions = tf.ragged.range(lengths)
        owners = tf.searchsorted(twice_halfway, 2 * character_positions.to_tensor(), side="left")
        owners = tf.RaggedTensor.from_tensor(owners, lengths=lengths).flat_values
        character_text = tf.cast(character_positions.value_rowids(), tf.int32)
        window = tf.gather(tf.cast(starts.row_starts(), tf.int32), character_text) + owners
        offset = character_positions.flat_values - tf.gather(window_start, window)
        tags = tf.RaggedTensor.from_row_lengths(tf.gather_nd(window_tags, tf.stack([window, offset], axis=1)),
                                                lengths).to_tensor(0)

        entities = entities_in_graph(tags)
        text_index, start, end = entities[:, 0], entities[:, 2], entities[:, 3]
        texts = tf.gather(self.tokenizer.text(characters), text_index)
        return {"text_index": text_index, "type": tf.gather(self.types, entities[:, 1]), "start": start, "end": end,
                "entity": substrings(texts, start, end)}


def export(args, checkpoint):
    types, crf = load_tags(args.output_dir)
    model, train_model = build_model(checkpoint, len(tag_names(types)), crf)
    load_best_weights(train_model, args.output_dir, "ner.py")
    write_export(EntityServing([model], checkpoint.vocab_path, args.maxlen, args.stride, types), args, "ner.py")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    args, checkpoint = parse_flags(build_parser(), argv, TINY_BERT_SETTINGS)
    check_sequence_length(args.maxlen + 2, checkpoint)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    if args.predict or args.predict_file:
        return predict(args, checkpoint, tokenizer)
    if args.export:
        return export(args, checkpoint)

    lock_output_dir(args.output_dir)  # before anything is loaded: a second run on the folder stops at once
    data, types = load_data(args.data_dir, args.seed, args.train_file, args.dev_file, args.test_file)
    saved = {"types": types, "crf": args.crf}
    if args.resume and os.path.isfile(tags_path(args.output_dir)) and load_tags(args.output_dir) != (types, args.crf):
        raise UserError("%s holds other entity types or another head than this run's: resume with the data and "
                        "--crf of the interrupted run" % tags_path(args.output_dir))
    os.makedirs(args.output_dir, exist_ok=True)
    with open(tags_path(args.output_dir), "w", encoding="utf-8") as writer:
        json.dump(saved, writer, ensure_ascii=False, indent=1)

    tag_ids = {name: i for i, name in enumerate(tag_names(types))}
    training = [example for example in data["train"] if example.text]  # an empty text has nothing to tag
    tagged = [entity_tags(len(example.text), example.entities, tag_ids) for example in training]
    overlapping = sum(count for _, count in tagged)
    if overlapping:
        print("train: %d entities overlap another and are not trained on (they still count in scoring)" % overlapping)
    windows = make_windows(tokenizer, [example.text for example in training], args.maxlen, args.stride, "train")
    batches = TrainingBatches(
        lengths=[len(window.token_ids) for window in windows],
        make_batch=lambda indices: make_batch(windows, [tags for tags, _ in tagged], indices),
        signature=BATCH_SIGNATURE, batch_size=args.batch_size, seed=args.seed, bucket=args.bucket)
    strategy = set_up_devices(args)
    with strategy.scope():
        model, train_model = build_model(checkpoint, len(tag_ids), args.crf, args.accumulate)
        train_model.compile(optimizer=keras.optimizers.Adam(args.lr), jit_compile=args.xla)
    best = train(train_model, batches, lambda: evaluate(model, tokenizer, data["dev"], types, args),
                 args, "f1", "ner.py")
    write_report(model, tokenizer, data["dev"], types, args, "dev")
    if data["test"]:
        test_f1 = write_report(model, tokenizer, data["test"], types, args, "test")
        print("test f1 with the best dev weights: %.4f" % test_f1)
    print("best dev f1: %.4f" % best)


if __name__ == "__main__":
    run(main)
