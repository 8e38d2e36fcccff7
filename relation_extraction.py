"""Relation (SPO triple) extraction from Chinese sentences by fine-tuning Chinese BERT.

The second example of the blog post "当Bert遇上Keras" (kexue.fm/archives/6736), its entry to the
2019 Baidu information extraction contest (DuIE): find every (subject, predicate, object) in a
sentence, e.g. 《七里香》是周杰伦演唱的歌曲 -> (七里香, 歌手, 周杰伦).

Head, as in the blog: two `Dense(1, sigmoid)` over BERT's sequence output mark where subjects
start and end; then, given one subject, its start and end vectors are averaged and added to the
sequence, and two `Dense(num_predicates, sigmoid)` mark where the objects of each predicate start
and end. Unlike the blog's, they start out answering "no" everywhere (`pointer_head`): started at
0.5, a real BERT stayed at F1 0 for seven epochs where it now passes 0.97 in two. Loss: binary
cross-entropy over the real tokens, summed over the four outputs. Decoding: a start above
--start-threshold takes the nearest end at or after it above --end-threshold.
Metric: micro precision, recall and F1 over exact triples; the blog reaches dev F1 ~0.82.
Beside the blog's script (docs/blog_map.md, "3. 关系抽取"): `seq_gather` is `gather_vectors`, the model and
its masked losses `build_models`, `extract_items` is `extract_triples` (batched), its warmup `WarmupThenDecay`
(Google BERT's: a tenth of the steps).

Data: `--data-dir` holds DuIE's original files, read as they are. `train_data.json` and
`dev_data.json`, one JSON object a line:
    {"text": "...", "spo_list": [{"subject": "...", "predicate": "...", "object": "...",
                                   "subject_type": "...", "object_type": "..."}, ...]}
and `all_50_schemas`, one {"subject_type", "predicate", "object_type"} a line, which lists the
predicates. The bundled `data/relation` is a small made-up sample in that format, written by
`python data/synthetic.py relation --out data/relation --examples 800`. DuIE 2.0's
`duie_train.json`, `duie_dev.json`, `duie_schema.json` are found too (each also in a folder of
its own name, as the zips unpack), and CMeIE's files (or any others) are named with
`--train-file`, `--dev-file`, `--schema-file`. Their objects and object types are
{"@value": "..."}: the model learns the @value, and the extra slots of DuIE 2.0's complex
objects (inWork, ...) are counted, not modelled.

    python relation_extraction.py                            # train, keep the best dev weights
    python relation_extraction.py --bert-dir chinese_L-12_H-768_A-12 --data-dir DuIE
    python relation_extraction.py --train-file CMeIE_train.json --dev-file CMeIE_dev.json --schema-file 53_schemas.json
    python relation_extraction.py --predict "《七里香》是周杰伦演唱的歌曲"
    python relation_extraction.py --predict-file test1_data_postag.json
"""
import collections
import json
import os

# First: tokenizer imports TensorFlow as keras-bert needs it (Keras 2), without its start-up noise.
from tokenizer import OurTokenizer, load_vocab

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from bert_checkpoint import load_bert  # noqa: E402
from fine_tuning import (  # noqa: E402
    AccumulatingModel, TrainingBatches, UserError, WarmupThenDecay, check_sequence_length, head_initializer,
    load_best_weights, make_parser, pad, parse_flags, prediction_batches, read_json_lines, report_truncated, run,
    set_up_devices, train)
from output_lock import lock_output_dir  # noqa: E402
from serving import ServingModule, substrings, write_export  # noqa: E402

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# Settings: the blog's defaults; each one is overridden by the flag of the same name.
# ---------------------------------------------------------------------------------------------

SETTINGS = dict(
    data_dir=os.path.join(PROJECT_DIR, "data", "relation"),
    output_dir="outputs/relation_extraction",
    # The blog ran 120 "epochs" of 1000 steps of 32, about 22 passes over its 170k sentences;
    # our epoch is one full pass.
    epochs=20,
    batch_size=32,
    maxlen=160,
    lr=5e-5,
    min_lr=1e-5,
    warmup=0.0,  # a share of the steps; benchmarks/README.md, "The warmup"
    seed=42,
)
# A tiny random BERT needs a far higher learning rate, and many small steps on the small sample
# (measured on the bundled sample, with the heads then started at 0.5: batch 16 sat at F1 0 for 4 epochs;
# lr 8e-3 diverged).
TINY_BERT_SETTINGS = dict(lr=3e-3, min_lr=1e-3, warmup=0.1, batch_size=8, epochs=6)


def build_parser():
    parser = make_parser(__doc__, SETTINGS)
    parser.add_argument("--predict", nargs="+", metavar="TEXT",
                        help="print the triples found in each TEXT with the saved best weights")
    parser.add_argument("--predict-file", metavar="FILE",
                        help="a file like dev_data.json (spo_list optional): write its texts with the "
                        "predicted spo_list to --output-dir, in its own format (DuIE 2019 or 2.0)")
    parser.add_argument("--schema-file", metavar="FILE",
                        help="the schema file (all_50_schemas, duie_schema.json, 53_schemas.json, ...), instead of "
                        "the one in --data-dir")
    parser.add_argument("--start-threshold", type=float, default=0.5,
                        help="a span starts where the start probability is above this (default: %(default)s)")
    parser.add_argument("--end-threshold", type=float, default=0.4,
                        help="and ends at the nearest end probability above this (default: %(default)s)")
    return parser


# ---------------------------------------------------------------------------------------------
# Data: DuIE's JSON lines (2019, 2.0, CMeIE), triples located in the text character by character
# ---------------------------------------------------------------------------------------------

FILE_NAMES = {  # (train, dev, schema) as each release names them, looked for in --data-dir
    "DuIE 2019": {"train": "train_data.json", "dev": "dev_data.json", "schema": "all_50_schemas"},
    "DuIE 2.0": {"train": "duie_train.json", "dev": "duie_dev.json", "schema": "duie_schema.json"},
}


def release_file(data_dir, name):
    """data_dir/name, or data_dir/stem/name where a release's own zip unpacks it (duie_schema/duie_schema.json)."""
    in_subfolder = os.path.join(data_dir, os.path.splitext(name)[0], name)
    return in_subfolder if os.path.isfile(in_subfolder) else os.path.join(data_dir, name)


def find_data_files(data_dir, named):
    """{part: path} for the parts of `named` ({"train": --train-file, ...}): each file named by its flag,
    the others under the names of the first release of which data_dir holds any of them."""
    missing = [part for part, path in named.items() if not path]
    if not missing:
        return dict(named)
    for names in FILE_NAMES.values():
        found = {part: release_file(data_dir, name) for part, name in names.items()}
        if any(os.path.exists(found[part]) for part in missing):
            return {part: path or found[part] for part, path in named.items()}
    looked_for = "; ".join("%s's %s" % (release, ", ".join(names[part] for part in missing))
                           for release, names in FILE_NAMES.items())
    raise UserError("%s has none of the files looked for (%s): name them with %s"
                    % (data_dir, looked_for, ", ".join("--%s-file" % part for part in missing)))


def spo_value(value):
    """The string of a DuIE 2019 field ("周杰伦"), or the "@value" of a DuIE 2.0 / CMeIE one ({"@value": ...})."""
    if isinstance(value, dict):
        value = value.get("@value")
    return value if isinstance(value, str) else None


def uses_values(records):
    """Whether records (spo_list items or schema lines) wrap objects in {"@value": ...}, as DuIE 2.0 and CMeIE do."""
    return any(isinstance(record.get(key), dict) for record in records for key in ("object", "object_type"))


def read_schemas(path):
    """{predicate: (subject_type, object_type)} in file order; its keys are the predicate list."""
    schemas = {}
    for line_number, record in read_json_lines(path):
        if not isinstance(record.get("predicate"), str):
            raise UserError('%s line %d: expected {"subject_type", "predicate", "object_type"}, found no '
                            '"predicate"' % (path, line_number))
        object_type = spo_value(record.get("object_type")) or ""  # DuIE 2.0's {"@value": ...} as a plain type
        schemas.setdefault(record["predicate"], (record.get("subject_type", ""), object_type))
    return schemas


def read_texts(path, maxlen):
    """[(line number, record, text cut to maxlen)]; each record must have a "text"."""
    rows = []
    for line_number, record in read_json_lines(path):
        if not isinstance(record.get("text"), str):
            raise UserError('%s line %d: expected a "text" string' % (path, line_number))
        rows.append((line_number, record, record["text"][:maxlen]))
    report_truncated(sum(len(record["text"]) > maxlen for _, record, _ in rows), len(rows), maxlen, path)
    return rows


def read_examples(path, schemas, maxlen):
    """[{"text", "triples", "gold"}], text cut to maxlen.

    "triples" are those found in that text, to train on (the others are skipped and counted);
    "gold" are all of them, to score against, as the contest does.
    """
    examples, kept, skipped, unmodelled = [], 0, 0, collections.Counter()
    for line_number, record, text in read_texts(path, maxlen):
        spo_list = record.get("spo_list")
        if not isinstance(spo_list, list):
            raise UserError('%s line %d: expected an "spo_list" list' % (path, line_number))
        triples, gold = [], set()
        for spo in spo_list:
            obj = spo_value(spo.get("object")) if isinstance(spo, dict) else None
            if obj is None or not all(isinstance(spo.get(key), str) for key in ("subject", "predicate")):
                raise UserError('%s line %d: expected each spo_list item to have "subject" and "predicate" strings and '
                                'an "object" string or {"@value": string}, found %s'
                                % (path, line_number, json.dumps(spo, ensure_ascii=False)))
            subject, predicate = spo["subject"], spo["predicate"]
            if predicate not in schemas:
                raise UserError("%s line %d: predicate %r is not in the schema file" % (path, line_number, predicate))
            if isinstance(spo["object"], dict):  # DuIE 2.0's complex objects: {"@value": ..., "inWork": ...}
                unmodelled.update(slot for slot in spo["object"] if slot != "@value")
            gold.add((subject, predicate, obj))
            if subject and obj and subject in text and obj in text:
                triples.append((subject, predicate, obj))
            else:
                skipped += 1
        kept += len(triples)
        examples.append({"text": text, "triples": sorted(set(triples)), "gold": gold})
    with_triples = sum(bool(example["triples"]) for example in examples)
    print("%s: %d sentences, %d with triples, %d triples" % (path, len(examples), with_triples, kept))
    if skipped:
        print("%s: %d triples skipped: their subject or object is not in the text (cut to --maxlen %d)"
              % (path, skipped, maxlen))
    if unmodelled:
        print("%s: %d extra object slots not modelled (%s): each triple keeps its object's @value"
              % (path, sum(unmodelled.values()), ", ".join("%s %d" % item for item in sorted(unmodelled.items()))))
    if not with_triples:
        raise UserError("%s: no sentence has a triple whose subject and object occur in its text" % path)
    return examples


def load_data(paths, maxlen):
    """The schemas and {'train': [...], 'dev': [...]} of the files found by find_data_files."""
    schemas = read_schemas(paths["schema"])
    print("%d predicates: %s" % (len(schemas), " ".join(schemas)))
    data = {name: read_examples(paths[name], schemas, maxlen) for name in ("train", "dev")}
    return schemas, data


# ---------------------------------------------------------------------------------------------
# Batches: token i+1 is character i, so spans are character positions shifted by one
# ---------------------------------------------------------------------------------------------

def occurrences(text, span):
    """Token (start, end) of every occurrence of `span` in `text`, overlapping ones included."""
    positions, start = [], text.find(span)
    while start >= 0:
        positions.append((start + 1, start + len(span)))
        start = text.find(span, start + 1)
    return positions


def encode_example(tokenizer, example, predicate_ids):
    """Token ids, subject start/end labels, and each subject's object spans with their predicate.

    Every occurrence of a subject or object is labelled: identical characters should not be a
    subject in one place and nothing in the other, and the metric compares strings anyway.
    """
    text = example["text"]
    token_ids, segment_ids = tokenizer.encode(first=text)
    subject_starts = np.zeros(len(token_ids), dtype=np.float32)
    subject_ends = np.zeros(len(token_ids), dtype=np.float32)
    subjects, objects = [], {}
    for subject, predicate, obj in example["triples"]:
        if subject not in objects:
            objects[subject] = []
            for start, end in occurrences(text, subject):
                subjects.append((start, end, subject))
                subject_starts[start] = subject_ends[end] = 1
        objects[subject] += [(start, end, predicate_ids[predicate]) for start, end in occurrences(text, obj)]
    return {"token_ids": token_ids, "segment_ids": segment_ids, "subject_starts": subject_starts,
            "subject_ends": subject_ends, "subjects": subjects, "objects": objects}


def object_labels(object_spans, length, num_predicates):
    """Start and end labels of shape (length, num_predicates) from [(start, end, predicate_id)]."""
    object_starts = np.zeros((length, num_predicates), dtype=np.float32)
    object_ends = np.zeros((length, num_predicates), dtype=np.float32)
    for start, end, predicate_id in object_spans:
        object_starts[start, predicate_id] = object_ends[end, predicate_id] = 1
    return object_starts, object_ends


def make_batch(encoded, indices, num_predicates, rng):
    """One training batch; each sentence brings one subject, drawn at random, and its objects.

    The blog drew k1 among all subject starts and k2 among all ends after it, which can pair one
    subject's start with another's end (its issue #23); we draw a real subject, start and end.
    """
    columns = {name: [] for name in ("token_ids", "segment_ids", "subject_starts", "subject_ends",
                                     "k1", "k2", "object_starts", "object_ends")}
    for i in indices:
        example = encoded[i]
        start, end, subject = example["subjects"][rng.integers(len(example["subjects"]))]
        object_starts, object_ends = object_labels(
            example["objects"][subject], len(example["token_ids"]), num_predicates)
        for name in ("token_ids", "segment_ids", "subject_starts", "subject_ends"):
            columns[name].append(example[name])
        columns["k1"].append([start])
        columns["k2"].append([end])
        columns["object_starts"].append(object_starts)
        columns["object_ends"].append(object_ends)
    return (tuple(pad(columns[name]) for name in columns),)


def batch_signature(num_predicates):
    sequence, labels = tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None, None), tf.float32)
    index = tf.TensorSpec((None, 1), tf.int64)
    object_labels_spec = tf.TensorSpec((None, None, num_predicates), tf.float32)
    return ((sequence, sequence, labels, labels, index, index, object_labels_spec, object_labels_spec),)


# ---------------------------------------------------------------------------------------------
# Model: the blog's head; subject_model, object_model and train_model share every weight
# ---------------------------------------------------------------------------------------------

def gather_vectors(inputs):
    """The vector of each sequence at its own index: (batch, len, hidden), (batch, 1) -> (batch, 1, hidden)."""
    sequence, indices = inputs
    return tf.gather(sequence, tf.cast(indices, tf.int32), batch_dims=1)


def masked_mean(loss, mask):
    return tf.reduce_sum(loss * mask) / tf.reduce_sum(mask)


def pointer_head(units, name):
    """Dense(units, sigmoid) that starts out answering "no" at every position (probability 0.01), as spans are rare.

    Started at 0.5 everywhere, a sentence costs its 2 + 2 x predicates outputs about 0.7 each: the first
    steps' large gradients go through BERT and fill Adam's second moments, which remember them for about
    a thousand steps, and a warmup (--warmup) keeps the loss high for longer. On real weights the pointers
    then stayed under 0.5 for many epochs (benchmarks/README.md, "Relation extraction").
    """
    return keras.layers.Dense(units, activation="sigmoid", kernel_initializer=head_initializer(),
                              bias_initializer=keras.initializers.Constant(np.log(0.01 / 0.99)), dtype="float32",
                              name=name)


def build_models(checkpoint, num_predicates, accumulate=1):
    bert = load_bert(checkpoint)
    token_ids = keras.layers.Input(shape=(None,), name="token_ids")
    segment_ids = keras.layers.Input(shape=(None,), name="segment_ids")
    subject_starts_in = keras.layers.Input(shape=(None,), name="subject_starts")
    subject_ends_in = keras.layers.Input(shape=(None,), name="subject_ends")
    k1 = keras.layers.Input(shape=(1,), dtype="int64", name="k1")  # the subject's start token
    k2 = keras.layers.Input(shape=(1,), dtype="int64", name="k2")  # and its end token
    object_starts_in = keras.layers.Input(shape=(None, num_predicates), name="object_starts")
    object_ends_in = keras.layers.Input(shape=(None, num_predicates), name="object_ends")

    t = bert([token_ids, segment_ids])
    # The heads compute in float32 even under --mixed-precision, so that the losses stay exact.
    subject_starts = pointer_head(1, "subject_start")(t)
    subject_ends = pointer_head(1, "subject_end")(t)
    subject_model = keras.Model([token_ids, segment_ids], [subject_starts, subject_ends])

    k1v = keras.layers.Lambda(gather_vectors, name="k1_vector")([t, k1])
    k2v = keras.layers.Lambda(gather_vectors, name="k2_vector")([t, k2])
    kv = keras.layers.Average()([k1v, k2v])
    t = keras.layers.Add()([t, kv])
    object_starts = pointer_head(num_predicates, "object_start")(t)
    object_ends = pointer_head(num_predicates, "object_end")(t)
    object_model = keras.Model([token_ids, segment_ids, k1, k2], [object_starts, object_ends])

    # keras.Model, plus gradient accumulation (--accumulate) weighted by real tokens, as the loss is
    train_model = AccumulatingModel(
        [token_ids, segment_ids, subject_starts_in, subject_ends_in, k1, k2, object_starts_in, object_ends_in],
        [subject_starts, subject_ends, object_starts, object_ends],
        accumulate=accumulate, loss_denominator=lambda inputs: tf.reduce_sum(tf.cast(inputs[0] > 0, tf.float32)))
    mask = tf.cast(tf.greater(token_ids, 0), tf.float32)[:, :, None]  # real tokens, not padding
    bce = keras.backend.binary_crossentropy
    subject_loss = (masked_mean(bce(subject_starts_in[:, :, None], subject_starts), mask)
                    + masked_mean(bce(subject_ends_in[:, :, None], subject_ends), mask))
    object_loss = (masked_mean(tf.reduce_sum(bce(object_starts_in, object_starts), 2, keepdims=True), mask)
                   + masked_mean(tf.reduce_sum(bce(object_ends_in, object_ends), 2, keepdims=True), mask))
    train_model.add_loss(subject_loss + object_loss)
    return subject_model, object_model, train_model


# ---------------------------------------------------------------------------------------------
# Decoding and metric: plain numpy on the probabilities of one text's characters
# ---------------------------------------------------------------------------------------------

def decode_spans(start_probabilities, end_probabilities, start_threshold=0.5, end_threshold=0.4):
    """[(start, end)]: each position above start_threshold with the nearest end at or after it."""
    ends = np.flatnonzero(end_probabilities > end_threshold)
    spans = []
    for start in np.flatnonzero(start_probabilities > start_threshold):
        following = np.searchsorted(ends, start)
        if following < len(ends):
            spans.append((int(start), int(ends[following])))
    return spans


def decode_objects(start_probabilities, end_probabilities, start_threshold=0.5, end_threshold=0.4):
    """[(start, end, predicate_id)] from (length, num_predicates) arrays, an end of the same predicate."""
    return [(start, end, predicate_id)
            for predicate_id in range(start_probabilities.shape[1])
            for start, end in decode_spans(start_probabilities[:, predicate_id], end_probabilities[:, predicate_id],
                                           start_threshold, end_threshold)]


def decode_spans_in_graph(start_probabilities, end_probabilities, characters, start_threshold=0.5, end_threshold=0.4):
    """decode_spans in TensorFlow ops for many sequences at once.

    [rows, length] probabilities, and `characters` a [rows, length] mask of the positions that may
    start or end a span -> [spans, 3] int32 (row, start, end), rows in order, starts ascending.
    """
    length = tf.shape(start_probabilities)[1]
    is_start = (start_probabilities > start_threshold) & characters
    is_end = (end_probabilities > end_threshold) & characters
    # The nearest end at or after position j is the k-th end in position order, k = the ends before j.
    end_positions = tf.sort(tf.where(is_end, tf.range(length)[None, :], length), axis=1)  # ends, then `length`s
    ends_before = tf.cumsum(tf.cast(is_end, tf.int32), axis=1, exclusive=True)
    nearest_end = tf.gather(end_positions, ends_before, batch_dims=1)
    row_start = tf.cast(tf.where(is_start & (nearest_end < length)), tf.int32)
    return tf.concat([row_start, tf.gather_nd(nearest_end, row_start)[:, None]], axis=1)


def triple_scores(predicted, gold):
    """Micro (f1, precision, recall) over lists of triple sets: F1 = 2A/(B+C), P = A/B, R = A/C."""
    correct = sum(len(p & g) for p, g in zip(predicted, gold))
    n_predicted, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    f1 = 2.0 * correct / (n_predicted + n_gold) if n_predicted + n_gold else 0.0
    return f1, correct / n_predicted if n_predicted else 0.0, correct / n_gold if n_gold else 0.0


def extract_triples(models, encoded_texts, texts, predicates, args):
    """The set of (subject, predicate, object) of each text (already cut to maxlen).

    The subjects of all texts go through the object model together, `batch_size` rows at a
    time, instead of one model call per subject (the blog's slow prediction, its issue #25).
    """
    subject_model, object_model = models
    token_ids = pad([token_ids for token_ids, _ in encoded_texts])
    segment_ids = pad([segment_ids for _, segment_ids in encoded_texts])
    subject_starts, subject_ends = subject_model.predict_on_batch([token_ids, segment_ids])
    subjects = []  # (row, start, end) in token positions
    for row, text in enumerate(texts):
        characters = slice(1, len(text) + 1)  # drop [CLS], [SEP] and padding
        subjects += [(row, start + 1, end + 1) for start, end in decode_spans(
            subject_starts[row, characters, 0], subject_ends[row, characters, 0],
            args.start_threshold, args.end_threshold)]
    triples = [set() for _ in texts]
    for first in range(0, len(subjects), args.batch_size):
        chunk = subjects[first:first + args.batch_size]
        rows = np.array([row for row, _, _ in chunk])
        k1 = np.array([[start] for _, start, _ in chunk])
        k2 = np.array([[end] for _, _, end in chunk])
        object_starts, object_ends = object_model.predict_on_batch([token_ids[rows], segment_ids[rows], k1, k2])
        for i, (row, start, end) in enumerate(chunk):
            text = texts[row]
            characters = slice(1, len(text) + 1)
            for object_start, object_end, predicate_id in decode_objects(
                    object_starts[i, characters], object_ends[i, characters], args.start_threshold, args.end_threshold):
                triples[row].add((text[start - 1:end], predicates[predicate_id], text[object_start:object_end + 1]))
    return triples


def predict_triples(models, tokenizer, texts, predicates, args):
    """extract_triples over all texts, batched by length so little is padding."""
    encoded = [tokenizer.encode(first=text) for text in texts]
    triples = [None] * len(texts)
    for indices in prediction_batches([len(text) for text in texts], args.batch_size):
        batch_triples = extract_triples(models, [encoded[i] for i in indices], [texts[i] for i in indices],
                                        predicates, args)
        for i, found in zip(indices, batch_triples):
            triples[i] = found
    return triples


def evaluate(models, tokenizer, examples, predicates, args):
    """Dev F1 of the triples found against all gold ones, also those the model cannot see; P and R printed."""
    predicted = predict_triples(models, tokenizer, [example["text"] for example in examples], predicates, args)
    f1, precision, recall = triple_scores(predicted, [example["gold"] for example in examples])
    print("dev precision %.4f, recall %.4f" % (precision, recall))
    return f1


# ---------------------------------------------------------------------------------------------
# Prediction: from the saved best weights, on new text
# ---------------------------------------------------------------------------------------------

def output_spo(subject, predicate, obj, schemas, as_values):
    """One predicted spo_list item, in DuIE 2.0 / CMeIE's format (as_values) or in DuIE 2019's."""
    subject_type, object_type = schemas[predicate]
    if as_values:
        obj, object_type = {"@value": obj}, {"@value": object_type}
    return {"subject": subject, "predicate": predicate, "object": obj,
            "subject_type": subject_type, "object_type": object_type}


def spo_items(records):
    return [spo for record in records for spo in record.get("spo_list") or [] if isinstance(spo, dict)]


def predictions_use_values(records, args, schema_path):
    """Whether --predict-file writes {"@value": ...} objects: as the input's own spo_list items, else as
    the dev file's (CMeIE's test file has none, and its schema file has plain types), else as the schema's."""
    given = spo_items(records)
    if given:
        return uses_values(given)
    try:
        dev_path = find_data_files(args.data_dir, {"dev": args.dev_file})["dev"]
        dev_items = spo_items(record for _, record in read_json_lines(dev_path))
    except UserError:  # no dev file to go by
        dev_items = []
    return uses_values(dev_items or [record for _, record in read_json_lines(schema_path)])


def predict(args, checkpoint, tokenizer, schemas, schema_path):
    subject_model, object_model, train_model = build_models(checkpoint, len(schemas))
    load_best_weights(train_model, args.output_dir, "relation_extraction.py")
    models, predicates = (subject_model, object_model), list(schemas)
    if args.predict:
        texts = [text[:args.maxlen] for text in args.predict]
        report_truncated(sum(len(text) > args.maxlen for text in args.predict), len(texts), args.maxlen, "--predict")
        for text, triples in zip(args.predict, predict_triples(models, tokenizer, texts, predicates, args)):
            print(text)
            for triple in sorted(triples):
                print("    (%s, %s, %s)" % triple)
            if not triples:
                print("    no triple found")
    if args.predict_file:
        rows = read_texts(args.predict_file, args.maxlen)
        as_values = predictions_use_values([record for _, record, _ in rows], args, schema_path)
        triples = predict_triples(models, tokenizer, [text for _, _, text in rows], predicates, args)
        name = os.path.splitext(os.path.basename(args.predict_file))[0] + "_pred.json"
        path = os.path.join(args.output_dir, name)
        with open(path, "w", encoding="utf-8") as writer:
            for (_, record, _), found in zip(rows, triples):
                spo_list = [output_spo(subject, predicate, obj, schemas, as_values)
                            for subject, predicate, obj in sorted(found)]
                writer.write(json.dumps({"text": record["text"], "spo_list": spo_list}, ensure_ascii=False) + "\n")
        print("wrote the triples of %d texts to %s" % (len(rows), path))


# ---------------------------------------------------------------------------------------------
# Export: a SavedModel that takes raw texts (README: Serving the fine-tuned model)
# ---------------------------------------------------------------------------------------------

class RelationServing(ServingModule):
    """serving_default: `text` (strings) -> the triples --predict finds, one entry per triple in
    parallel flat outputs: `text_index` (int32, the text it was found in), `subject`, `predicate`, `object`.
    """

    def __init__(self, models, vocab_path, maxlen, predicates, start_threshold, end_threshold):
        super().__init__(models, vocab_path, maxlen)
        self.predicates = tf.constant(predicates)
        self.thresholds = start_threshold, end_threshold

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        characters = self.tokenizer.code_points(text, self.maxlen)
        token_ids, segment_ids = self.tokenizer.pad(self.tokenizer.token_ids(characters))
        subject_model, object_model = self.call_models
        subject_starts, subject_ends = subject_model([token_ids, segment_ids])
        positions = tf.range(tf.shape(token_ids)[1])[None, :]
        # Token i+1 is character i: [CLS], [SEP] and padding neither start nor end a span.
        is_character = (positions >= 1) & (positions <= tf.cast(characters.row_lengths(), tf.int32)[:, None])
        subjects = decode_spans_in_graph(subject_starts[..., 0], subject_ends[..., 0], is_character, *self.thresholds)
        rows, k1, k2 = subjects[:, 0], subjects[:, 1:2], subjects[:, 2:3]
        # All subjects of all texts through the object model at once.
        object_starts, object_ends = object_model([tf.gather(token_ids, rows), tf.gather(segment_ids, rows), k1, k2])
        num_predicates = tf.size(self.predicates)

        def by_predicate(probabilities):  # [subjects, length, predicates] -> [subjects * predicates, length]
            return tf.reshape(tf.transpose(probabilities, [0, 2, 1]), [-1, tf.shape(probabilities)[1]])

        objects = decode_spans_in_graph(by_predicate(object_starts), by_predicate(object_ends),
                                        tf.repeat(tf.gather(is_character, rows), num_predicates, axis=0),
                                        *self.thresholds)
        subject_index, predicate_id = objects[:, 0] // num_predicates, objects[:, 0] % num_predicates
        text_index = tf.gather(rows, subject_index)
        texts = tf.gather(self.tokenizer.text(characters), text_index)
        subject = substrings(texts, tf.gather(k1[:, 0], subject_index) - 1, tf.gather(k2[:, 0], subject_index))
        obj = substrings(texts, objects[:, 1] - 1, objects[:, 2])
        # A set per text, as --predict: the same strings found at two places are one triple.
        key = tf.strings.join([tf.strings.as_string(text_index), tf.strings.as_string(tf.strings.length(subject)),
                               subject, tf.strings.as_string(predicate_id), obj], separator=":")
        unique_keys, triple_ids = tf.unique(key)
        first = tf.math.unsorted_segment_min(tf.range(tf.size(key)), triple_ids, tf.size(unique_keys))
        return {"text_index": tf.gather(text_index, first), "subject": tf.gather(subject, first),
                "predicate": tf.gather(self.predicates, tf.gather(predicate_id, first)),
                "object": tf.gather(obj, first)}


def export(args, checkpoint, schemas):
    subject_model, object_model, train_model = build_models(checkpoint, len(schemas))
    load_best_weights(train_model, args.output_dir, "relation_extraction.py")
    write_export(RelationServing([subject_model, object_model], checkpoint.vocab_path, args.maxlen, list(schemas),
                                 args.start_threshold, args.end_threshold), args, "relation_extraction.py")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    args, checkpoint = parse_flags(build_parser(), argv, TINY_BERT_SETTINGS)
    check_sequence_length(args.maxlen + 2, checkpoint)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    if args.predict or args.predict_file or args.export:
        schema_path = find_data_files(args.data_dir, {"schema": args.schema_file})["schema"]
        schemas = read_schemas(schema_path)
        if args.predict or args.predict_file:
            return predict(args, checkpoint, tokenizer, schemas, schema_path)
        return export(args, checkpoint, schemas)

    lock_output_dir(args.output_dir)  # before anything is loaded: a second run on the folder stops at once
    paths = find_data_files(args.data_dir, {"train": args.train_file, "dev": args.dev_file, "schema": args.schema_file})
    schemas, data = load_data(paths, args.maxlen)
    predicate_ids = {predicate: i for i, predicate in enumerate(schemas)}
    # As in the blog, sentences without a triple are left out of training (there is no subject to draw).
    encoded = [encode_example(tokenizer, example, predicate_ids) for example in data["train"] if example["triples"]]
    batches = TrainingBatches(
        lengths=[len(example["token_ids"]) for example in encoded],
        make_batch=lambda indices: make_batch(encoded, indices, len(schemas), batches.rng),
        signature=batch_signature(len(schemas)), batch_size=args.batch_size, seed=args.seed, bucket=args.bucket)
    strategy = set_up_devices(args)
    with strategy.scope():
        subject_model, object_model, train_model = build_models(checkpoint, len(schemas), args.accumulate)
        schedule = WarmupThenDecay(args.lr, args.min_lr, args.epochs * len(batches), args.warmup)
        train_model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=args.xla)
    best = train(train_model, batches,
                 lambda: evaluate((subject_model, object_model), tokenizer, data["dev"], list(schemas), args),
                 args, "f1", "relation_extraction.py")
    print("best dev f1: %.4f" % best)


if __name__ == "__main__":
    run(main)
