"""Event-subject extraction (CCKS 2019 financial events) by fine-tuning Chinese BERT.

The third example of the blog post "当Bert遇上Keras" (kexue.fm/archives/6736): given a piece of
financial news and an event type, find the one entity in the text that is the subject of that
event. The lesson is the single-input formulation: event type and text are joined into one
sequence `___{event_type}___{text}`, and two softmax pointers over its positions, the blog's
`Dense(1, use_bias=False)` for the start and for the end with padding masked by -1e10, mark the
answer span. The metric is the exact-match accuracy of the entity; the blog reaches 89%+.
Beside the blog's script (docs/blog_map.md, "4. 事件主体抽取"): the model with its -1e10 mask and losses is
`build_model`, `extract_entity` is `best_span` (one joint choice of start and end), `test()` is `write_results`.

Data, the contest's format: `--data-dir` holds `event_type_entity_extract_train.csv`, comma
separated, no header, columns `id, text, event_type, entity` (UTF-8, quoted fields allowed).
Rows of type 其他 (no subject) are left out, as in the blog; a row whose entity does not occur in
its text is not trained on, and in dev it counts as wrong, as the contest's scorer counts it. A
fixed 1 in 9 of the rows is held out for dev unless `--dev-file` is given; `--train-file` names a training file by another name. If `event_type_entity_extract_eval.csv`
(`id, text, event_type`) is there too, the best weights write `result.txt` (`"id","entity"`
lines, the submission format) into `--output-dir`.
The bundled `data/subject` is made up, written by `data/synthetic.py subject`.

Beyond the blog: the decoder takes the best-scoring (start, end) pair with end >= start inside
the text (never in the event-type prefix), at most `--max-span` characters long. A text longer
than `--maxlen` is not cut but read in windows of `--maxlen` characters, one every `--stride`
(SQuAD's doc_stride): training takes each window that holds the entity, and the answer is the
best-scoring span of all windows, in dev, `--predict`, `--predict-file`, result.txt and `--export`.

    python subject_extraction.py                        # train, keep the best dev weights
    python subject_extraction.py --bert-dir chinese_L-12_H-768_A-12 --data-dir ccks2019_event_entity_extract
    python subject_extraction.py --predict 财务造假 "金鹰科技因虚增利润被证监会立案调查"
    python subject_extraction.py --predict-file event_type_entity_extract_eval.csv
"""
import csv
import os
from collections import namedtuple

# First: tokenizer imports TensorFlow as keras-bert needs it (Keras 2), without its start-up noise.
from tokenizer import OurTokenizer, load_vocab, window_starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import backend as K  # noqa: E402

from bert_checkpoint import load_bert  # noqa: E402
from fine_tuning import (  # noqa: E402
    AccumulatingModel, TrainingBatches, UserError, WarmupThenDecay, check_sequence_length, head_initializer,
    load_best_weights, make_parser, pad, parse_flags, prediction_batches, read_csv_rows, report_truncated, run,
    set_up_devices, train)
from output_lock import lock_output_dir  # noqa: E402
from serving import ServingModule, substrings, window_starts_in_graph, write_export  # noqa: E402

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
TRAIN_FILE_NAME = "event_type_entity_extract_train.csv"
EVAL_FILE_NAME = "event_type_entity_extract_eval.csv"
NO_SUBJECT = "其他"

# ---------------------------------------------------------------------------------------------
# Settings: the blog's defaults; each one is overridden by the flag of the same name.
# ---------------------------------------------------------------------------------------------

SETTINGS = dict(
    data_dir=os.path.join(PROJECT_DIR, "data", "subject"),
    output_dir="outputs/subject_extraction",
    epochs=10,
    batch_size=32,
    maxlen=128,
    lr=5e-5,
    min_lr=1e-5,
    warmup=0.0,  # a share of the steps; benchmarks/README.md, "The warmup"
    stride=None,  # half of maxlen
    seed=42,
)
MAX_SPAN = 32
# A tiny random BERT barely moves at the blog's learning rate; with these it goes from 0 to ~0.28
# dev accuracy on the bundled sample in 3 epochs: it learns where company names are, but not
# which one the event type asks for (ignoring it gives ~0.5; benchmarks/condition_learning.py:
# not even when the text spells the event type out; it memorises the training texts instead).
TINY_BERT_SETTINGS = dict(lr=1e-3, min_lr=2e-4, warmup=0.1, epochs=3)


def build_parser():
    parser = make_parser(__doc__, SETTINGS)
    parser.add_argument("--max-span", type=int, default=MAX_SPAN,
                        help="longest entity, in characters, the decoder may return; 0: no limit (default: %(default)s)")
    parser.add_argument("--predict", nargs=2, metavar=("EVENT_TYPE", "TEXT"),
                        help="print the subject of EVENT_TYPE in TEXT, with the saved best weights")
    parser.add_argument("--predict-file", metavar="FILE",
                        help="a file like event_type_entity_extract_eval.csv (id, text, event_type): write the "
                        "subject of each row to --output-dir as FILE's name + _result.txt, in result.txt's layout")
    return parser


# ---------------------------------------------------------------------------------------------
# Data: the contest's CSV files
# ---------------------------------------------------------------------------------------------

Example = namedtuple("Example", "id text event_type entity")


def read_rows(path, columns):
    """[(line_number, row)] of a header-less CSV file whose rows have exactly these columns."""
    rows = read_csv_rows(path)
    for line_number, row in rows:
        if len(row) != len(columns):
            raise UserError("%s line %d: expected %d comma-separated columns (%s), found %d"
                            % (path, line_number, len(columns), ", ".join(columns), len(row)))
    return rows


def read_labelled(path):
    """The Examples of a training-format file that have a subject (every type but 其他).

    A subject that does not occur in its text cannot be trained on, and in dev it counts as a
    wrong answer, as the contest's scorer counts it; those rows are counted here.
    """
    examples, no_subject, not_in_text = [], 0, []
    for line_number, (id_, text, event_type, entity) in read_rows(path, Example._fields):
        if event_type == NO_SUBJECT:
            no_subject += 1
            continue
        if not entity or entity not in text:
            not_in_text.append(line_number)
        examples.append(Example(id_, text, event_type, entity))
    print("%s: %d rows with a subject, %d of type %s left out" % (path, len(examples), no_subject, NO_SUBJECT))
    if not_in_text:
        print("%s: %d rows name a subject that does not occur in their text (lines %s%s): not trained on, "
              "wrong in dev" % (path, len(not_in_text), ", ".join(map(str, not_in_text[:5])),
                                ", ..." if len(not_in_text) > 5 else ""))
    if not examples:
        raise UserError("%s has no row with an event type other than %s" % (path, NO_SUBJECT))
    return examples


def read_unlabelled(path):
    return [Example(id_, text, event_type, None)
            for _, (id_, text, event_type) in read_rows(path, Example._fields[:3])]


def load_data(data_dir, dev_file, seed, train_file=None):
    """{'train': [...], 'dev': [...], 'eval': [...] or None}; without --dev-file 1 in 9 rows are dev."""
    train_path = train_file or os.path.join(data_dir, TRAIN_FILE_NAME)
    data = {"train": read_labelled(train_path)}
    if dev_file:
        data["dev"] = read_labelled(dev_file)
    else:
        order = np.random.default_rng(seed).permutation(len(data["train"]))
        held_out = set(order[::9].tolist())  # the blog's `i % 9 == 0` on a shuffled order
        data["dev"] = [example for i, example in enumerate(data["train"]) if i in held_out]
        data["train"] = [example for i, example in enumerate(data["train"]) if i not in held_out]
        if not data["train"]:
            raise UserError("%s has too few rows to hold 1 in 9 out for dev; add rows or give --dev-file"
                            % train_path)
    eval_path = os.path.join(data_dir, EVAL_FILE_NAME)
    data["eval"] = read_unlabelled(eval_path) if os.path.exists(eval_path) else None
    for name, examples in data.items():
        if examples:
            print("%s: %d questions" % (name, len(examples)))
    return data


# ---------------------------------------------------------------------------------------------
# Batches: `___{event_type}___{text}`, one token per character, start and end as one-hot rows
# ---------------------------------------------------------------------------------------------

def encode(tokenizer, event_type, text):
    """token_ids, segment_ids of `___{event_type}___{text}`, and the position of the text's first token.

    Token 0 is [CLS] and token i+1 is character i of the joined string, so character j of the
    text is token `text_start + j`.
    """
    prefix = "___%s___" % event_type
    token_ids, segment_ids = tokenizer.encode(first=prefix + text)
    return token_ids, segment_ids, 1 + len(prefix)


Window = namedtuple("Window", "question offset token_ids segment_ids text_start")


def encode_questions(tokenizer, examples, maxlen, stride, source):
    """The Windows of each example: `___{event_type}___` and `maxlen` characters of its text from
    character `offset`, one window a `stride` (tokenizer.window_starts); `question` is the example's index."""
    windows = []
    for i, example in enumerate(examples):
        for offset in window_starts(len(example.text), maxlen, stride):
            window_text = example.text[offset:offset + maxlen]
            windows.append(Window(i, offset, *encode(tokenizer, example.event_type, window_text)))
    longer = sum(len(example.text) > maxlen for example in examples)
    if longer:
        print("%s: %d of %d texts are longer than --maxlen %d: read in windows (%d windows for %d questions)"
              % (source, longer, len(examples), maxlen, len(windows), len(examples)))
    return windows


def answer_positions(windows, examples, maxlen, source):
    """[(window index, start, end)]: the token positions of the entity in each window that holds it whole.

    A window holds the entity's first occurrence in its characters; an entity longer than the
    windows' overlap may be in none (and is not trained on), counted here.
    """
    positions, found = [], set()
    for w, window in enumerate(windows):
        example = examples[window.question]
        char_start = example.text[window.offset:window.offset + maxlen].find(example.entity) if example.entity else -1
        if char_start >= 0:
            start = window.text_start + char_start
            positions.append((w, start, start + len(example.entity) - 1))
            found.add(window.question)
    missing = sum(1 for i, example in enumerate(examples) if i not in found and example.entity in example.text)
    if missing:
        print("%s: %d entities lie across every window's edge (longer than --maxlen - --stride) and are not "
              "trained on" % (source, missing))
    return positions


def make_batch(windows, positions):
    """((token_ids, segment_ids, start_one_hot, end_one_hot),) for these (window index, start, end)."""
    token_ids = pad([windows[w].token_ids for w, _, _ in positions])
    segment_ids = pad([windows[w].segment_ids for w, _, _ in positions])
    start, end = np.zeros(token_ids.shape, np.float32), np.zeros(token_ids.shape, np.float32)
    for row, (_, start_position, end_position) in enumerate(positions):
        start[row, start_position] = 1
        end[row, end_position] = 1
    return (token_ids, segment_ids, start, end),


BATCH_SIGNATURE = ((
    tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None, None), tf.int64),
    tf.TensorSpec((None, None), tf.float32), tf.TensorSpec((None, None), tf.float32),
),)


# ---------------------------------------------------------------------------------------------
# Model: the blog's pointers; `model` predicts, `train_model` adds the labels and the loss
# ---------------------------------------------------------------------------------------------

def build_model(checkpoint, accumulate=1):
    bert = load_bert(checkpoint)
    token_ids = keras.layers.Input(shape=(None,), name="token_ids")
    segment_ids = keras.layers.Input(shape=(None,), name="segment_ids")
    start_in = keras.layers.Input(shape=(None,), name="start")
    end_in = keras.layers.Input(shape=(None,), name="end")

    mask = keras.layers.Lambda(lambda x: K.cast(K.greater(K.expand_dims(x, 2), 0), "float32"))(token_ids)
    x = bert([token_ids, segment_ids])
    # The pointers compute in float32 even under --mixed-precision: -1e10 does not fit in float16.
    start_logits = keras.layers.Dense(1, use_bias=False, kernel_initializer=head_initializer(), dtype="float32",
                                      name="start_pointer")(x)
    start_logits = keras.layers.Lambda(lambda x: x[0][..., 0] - (1 - x[1][..., 0]) * 1e10,
                                       dtype="float32")([start_logits, mask])
    end_logits = keras.layers.Dense(1, use_bias=False, kernel_initializer=head_initializer(), dtype="float32",
                                    name="end_pointer")(x)
    end_logits = keras.layers.Lambda(lambda x: x[0][..., 0] - (1 - x[1][..., 0]) * 1e10,
                                     dtype="float32")([end_logits, mask])

    model = keras.Model([token_ids, segment_ids], [start_logits, end_logits])
    # keras.Model, plus gradient accumulation (--accumulate)
    train_model = AccumulatingModel([token_ids, segment_ids, start_in, end_in], [start_logits, end_logits],
                                    accumulate=accumulate)
    train_model.add_loss(pointer_loss(start_in, end_in, start_logits, end_logits))
    return model, train_model


def pointer_loss(start, end, start_logits, end_logits):
    """Softmax cross-entropy of the gold start plus that of the gold end, over all real positions.

    The blog took the positions before the gold start out of the end's softmax, which suits its
    decoder (the start first, then an end after it); best_span scores every (start, end) pair at
    once, so the end pointer must rank those positions too. Left out, they cost a real 4-layer BERT
    on CCKS 0.124 and 0.182 of dev accuracy after epochs 1 and 2 (0.413 0.549 against 0.537 0.731;
    benchmarks/README.md, "Against a plain PyTorch loop").
    """
    return (K.mean(K.categorical_crossentropy(start, start_logits, from_logits=True))
            + K.mean(K.categorical_crossentropy(end, end_logits, from_logits=True)))


# ---------------------------------------------------------------------------------------------
# Decoding and metric
# ---------------------------------------------------------------------------------------------

def best_span(start_logits, end_logits, text_start, text_end, max_span=0):
    """The (start, end) token positions, text_start <= start <= end < text_end, of highest
    start_logit + end_logit (the product of the two softmaxes), and that score; at most max_span
    tokens if > 0.
    """
    start_logits = np.asarray(start_logits[text_start:text_end], dtype=np.float64)
    end_logits = np.asarray(end_logits[text_start:text_end], dtype=np.float64)
    starts, ends = np.indices((len(start_logits), len(end_logits)))
    valid = ends >= starts
    if max_span > 0:
        valid &= ends - starts < max_span
    scores = np.where(valid, start_logits[:, None] + end_logits[None, :], -np.inf)
    start, end = np.unravel_index(np.argmax(scores), scores.shape)
    return text_start + int(start), text_start + int(end), float(scores[start, end])


def best_spans_in_graph(start_logits, end_logits, text_start, text_end, max_span=0):
    """best_span in TensorFlow ops for a batch: [batch, length] logits, [batch] bounds -> [batch] start, end, score.

    Summed in float64 as numpy does, so that the two pick the same pair. A row without a
    character (an empty text) gets the empty span start = text_start, end = text_start - 1, score -inf.
    """
    length = tf.shape(start_logits)[1]
    starts, ends = tf.range(length)[None, :, None], tf.range(length)[None, None, :]
    text_start, text_end = text_start[:, None, None], text_end[:, None, None]
    valid = (starts >= text_start) & (ends >= starts) & (ends < text_end)
    if max_span > 0:
        valid &= ends - starts < max_span
    scores = tf.cast(start_logits, tf.float64)[:, :, None] + tf.cast(end_logits, tf.float64)[:, None, :]
    scores = tf.reshape(tf.where(valid, scores, -float("inf")), [tf.shape(scores)[0], -1])
    best = tf.argmax(scores, axis=1, output_type=tf.int32)
    found = tf.reduce_any(tf.reshape(valid, tf.shape(scores)), axis=1)
    empty = text_start[:, 0, 0]
    return (tf.where(found, best // length, empty), tf.where(found, best % length, empty - 1),
            tf.reduce_max(scores, axis=1))


def predict_entities(model, windows, examples, maxlen, batch_size, max_span):
    """The predicted entity of each example: the best-scoring span of all its windows, a slice of its text."""
    best = [((-np.inf, 0), 0, 0)] * len(examples)  # ((score, -offset), first character, character after the last)
    for indices in prediction_batches([len(window.token_ids) for window in windows], batch_size):
        token_ids = pad([windows[w].token_ids for w in indices])
        segment_ids = pad([windows[w].segment_ids for w in indices])
        start_logits, end_logits = model.predict_on_batch([token_ids, segment_ids])
        for row, w in enumerate(indices):
            window = windows[w]
            text_end = window.text_start + len(examples[window.question].text[window.offset:window.offset + maxlen])
            start, end, score = best_span(start_logits[row], end_logits[row], window.text_start, text_end, max_span)
            rank = (score, -window.offset)  # on a tie the earliest window, as the export's argmax
            if rank > best[window.question][0]:
                shift = window.offset - window.text_start
                best[window.question] = (rank, start + shift, end + shift + 1)
    return [example.text[start:end] for example, (_, start, end) in zip(examples, best)]


def accuracy(predicted, gold):
    """The contest's exact match over every dev question, those whose subject is not in their text included."""
    return float(np.mean([p == g for p, g in zip(predicted, gold)]))


# ---------------------------------------------------------------------------------------------
# Prediction: from the saved best weights, on new text and on the eval file
# ---------------------------------------------------------------------------------------------

def write_results(path, examples, entities):
    """The submission file: one `"id","entity"` line per eval row, in the file's order."""
    with open(path, "w", encoding="utf-8", newline="") as writer:
        csv.writer(writer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
            (example.id, entity) for example, entity in zip(examples, entities))
    print("wrote %d answers to %s" % (len(examples), path))


def predict(args, checkpoint, tokenizer):
    """--predict: print the subject; --predict-file: write each question's subject as result.txt does."""
    if args.predict:
        event_type, text = args.predict
        examples, source = [Example("--predict", text, event_type, None)], "--predict"
    else:
        examples, source = read_unlabelled(args.predict_file), args.predict_file
    model, train_model = build_model(checkpoint)
    load_best_weights(train_model, args.output_dir, "subject_extraction.py")
    windows = encode_questions(tokenizer, examples, args.maxlen, args.stride, source)
    entities = predict_entities(model, windows, examples, args.maxlen, args.batch_size, args.max_span)
    if args.predict:
        print(entities[0])
    else:
        name = os.path.splitext(os.path.basename(args.predict_file))[0] + "_result.txt"
        write_results(os.path.join(args.output_dir, name), examples, entities)


# ---------------------------------------------------------------------------------------------
# Export: a SavedModel that takes raw event types and texts (README: Serving the fine-tuned model)
# ---------------------------------------------------------------------------------------------

class SubjectServing(ServingModule):
    """serving_default: `event_type`, `text` (strings) -> `entity` (string) and its `start`, `end` (int32)
    character offsets in `text`, end exclusive: the answer of --predict, `text[start:end] == entity`.
    A text longer than maxlen is read in windows, as --predict reads it.
    """

    def __init__(self, models, vocab_path, maxlen, stride, max_span):
        super().__init__(models, vocab_path, maxlen)
        self.stride = stride
        self.max_span = max_span

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="event_type"),
                                  tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, event_type, text):
        underscores = tf.RaggedTensor.from_tensor(tf.fill([tf.size(text), 3], ord("_")))
        prefix = tf.concat([underscores, self.tokenizer.code_points(event_type), underscores], axis=1)
        characters = self.tokenizer.code_points(text)
        # Every window of every text is one row of the model's batch; `question` is its text's row.
        offsets = window_starts_in_graph(characters.row_lengths(), self.maxlen, self.stride)
        question, offset = offsets.value_rowids(), offsets.flat_values
        text_length = tf.gather(tf.cast(characters.row_lengths(), tf.int32), question)
        window_length = tf.minimum(self.maxlen, text_length - offset)
        positions = tf.ragged.range(offset, offset + window_length)  # the window's characters in its text
        first_character = tf.gather(tf.cast(characters.row_starts(), tf.int32), question)
        window_characters = tf.gather(characters.values, positions + first_character[:, None])
        window_prefix = tf.gather(prefix, question)
        token_ids, segment_ids = self.tokenizer.pad(
            self.tokenizer.token_ids(tf.concat([window_prefix, window_characters], axis=1)))
        model, = self.call_models
        start_logits, end_logits = model([token_ids, segment_ids])
        text_start = 1 + tf.cast(window_prefix.row_lengths(), tf.int32)  # as in encode(): [CLS], then the prefix
        start, end, score = best_spans_in_graph(start_logits, end_logits, text_start, text_start + window_length,
                                                self.max_span)
        # The best window of each text; argmax takes the earliest on a tie, as predict_entities does.
        best = tf.cast(offsets.row_starts(), tf.int32) + tf.argmax(
            offsets.with_flat_values(score).to_tensor(-float("inf")), axis=1, output_type=tf.int32)
        shift = tf.gather(offset - text_start, best)
        start, end = tf.gather(start, best) + shift, tf.gather(end, best) + shift + 1
        return {"entity": substrings(self.tokenizer.text(characters), start, end), "start": start, "end": end}


def export(args, checkpoint):
    model, train_model = build_model(checkpoint)
    load_best_weights(train_model, args.output_dir, "subject_extraction.py")
    write_export(SubjectServing([model], checkpoint.vocab_path, args.maxlen, args.stride, args.max_span), args,
                 "subject_extraction.py")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    args, checkpoint = parse_flags(build_parser(), argv, TINY_BERT_SETTINGS)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    if args.predict or args.predict_file:
        return predict(args, checkpoint, tokenizer)
    if args.export:
        return export(args, checkpoint)

    lock_output_dir(args.output_dir)  # before anything is loaded: a second run on the folder stops at once
    data = load_data(args.data_dir, args.dev_file, args.seed, args.train_file)
    windows = {name: encode_questions(tokenizer, examples, args.maxlen, args.stride, name)
               for name, examples in data.items() if examples}
    check_sequence_length(max(len(window.token_ids) for part in windows.values() for window in part), checkpoint)
    positions = answer_positions(windows["train"], data["train"], args.maxlen, "train")
    if not positions:
        raise UserError("no training question has its subject in its text")

    batches = TrainingBatches(
        lengths=[len(windows["train"][w].token_ids) for w, _, _ in positions],
        make_batch=lambda indices: make_batch(windows["train"], [positions[i] for i in indices]),
        signature=BATCH_SIGNATURE, batch_size=args.batch_size, seed=args.seed, bucket=args.bucket)
    strategy = set_up_devices(args)
    with strategy.scope():
        model, train_model = build_model(checkpoint, args.accumulate)
        schedule = WarmupThenDecay(args.lr, args.min_lr, args.epochs * len(batches), args.warmup)
        train_model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=args.xla)
    gold = [example.entity for example in data["dev"]]
    best = train(train_model, batches,
                 lambda: accuracy(predict_entities(model, windows["dev"], data["dev"], args.maxlen,
                                                   args.batch_size, args.max_span), gold),
                 args, "accuracy", "subject_extraction.py")
    if data["eval"]:
        entities = predict_entities(model, windows["eval"], data["eval"], args.maxlen, args.batch_size, args.max_span)
        write_results(os.path.join(args.output_dir, "result.txt"), data["eval"], entities)
    print("best dev accuracy: %.4f" % best)


if __name__ == "__main__":
    run(main)
