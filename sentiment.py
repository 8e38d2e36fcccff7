"""Sentiment classification of Chinese reviews by fine-tuning Chinese BERT.

The first example of the blog post "当Bert遇上Keras" (kexue.fm/archives/6736): the smallest
possible head on top of BERT, the `[CLS]` vector into `Dense(1, activation='sigmoid')`, trained
with binary cross-entropy and `Adam(1e-5)` for 5 epochs; the blog reaches 95.5%+ validation
accuracy on its ~21k reviews.
Beside the blog's script (docs/blog_map.md, "2. 文本分类"): its `data_generator` is `make_batch` with
fine_tuning's `TrainingBatches`, its model lines are `build_model`, its `fit_generator` fine_tuning's `train`.

Data: `--data-dir` holds `train.tsv` and, optionally, `dev.tsv` and `test.tsv`; each line is
`text<TAB>label`, label 0 (negative) or 1 (positive), UTF-8. Without `dev.tsv` a tenth of the
training set is held out, as in the blog. The bundled `data/sentiment` is a slice of real reviews.
A header line naming `label` and `text_a`, `text`, `review` or `sentence` picks those columns
instead (ChnSentiCorp's `label<TAB>text_a`, `qid<TAB>label<TAB>text_a`); a `.csv` file is read
by its header too (`label,review`, `cat,label,review`). `--train-file`, `--dev-file` and
`--test-file` name files directly; a test file without labels is not scored.

    python sentiment.py                                 # train, keep the best dev weights
    python sentiment.py --bert-dir chinese_L-12_H-768_A-12 --data-dir my_reviews
    python sentiment.py --train-file weibo_senti_100k.csv
    python sentiment.py --predict "这家店的服务太好了" "质量太差，不会再买"
"""
import os

# First: tokenizer imports TensorFlow as keras-bert needs it (Keras 2), without its start-up noise.
from tokenizer import OurTokenizer, load_vocab

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from bert_checkpoint import load_bert  # noqa: E402
from fine_tuning import (  # noqa: E402
    AccumulatingModel, TrainingBatches, UserError, check_sequence_length, load_best_weights, prediction_batches,
    make_parser, pad, parse_flags, read_csv_rows, read_data_file, report_truncated, run, set_up_devices, train)
from output_lock import lock_output_dir  # noqa: E402
from serving import ServingModule, write_export  # noqa: E402

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# Settings: the blog's defaults; each one is overridden by the flag of the same name.
# ---------------------------------------------------------------------------------------------

SETTINGS = dict(
    data_dir=os.path.join(PROJECT_DIR, "data", "sentiment"),
    output_dir="outputs/sentiment",
    epochs=5,
    batch_size=32,
    maxlen=100,
    lr=1e-5,
    seed=42,
)
# A tiny random BERT barely moves at the blog's learning rate; these make it learn visibly.
TINY_BERT_SETTINGS = dict(lr=5e-4, epochs=3)


def build_parser():
    parser = make_parser(__doc__, SETTINGS)
    parser.add_argument("--predict", nargs="+", metavar="TEXT",
                        help="print the positive probability of each TEXT with the saved best weights")
    parser.add_argument("--predict-file", metavar="FILE",
                        help="like --predict, for every line of FILE, or its text column if it has a header")
    parser.add_argument("--test-file", metavar="FILE",
                        help="the test file, instead of test.tsv in --data-dir; without labels it is not scored")
    return parser


# ---------------------------------------------------------------------------------------------
# Data: `text<TAB>label` lines, or the columns a header names (ChnSentiCorp, the review CSVs)
# ---------------------------------------------------------------------------------------------

TEXT_COLUMNS = ("text_a", "text", "review", "sentence")  # as ChnSentiCorp and the review CSVs name it


def read_rows(path):
    """[(line number, fields)] of the non-blank rows: a .csv file's by the csv module (quoted fields), else at tabs."""
    if path.lower().endswith(".csv"):
        return read_csv_rows(path)
    return [(line_number, line.rstrip("\r").split("\t"))
            for line_number, line in enumerate(read_data_file(path).split("\n"), 1) if line.strip()]


def header_columns(fields):
    """(names, text column, label column or None) when `fields` is a header naming label or a text column, else None."""
    names = [field.strip().lower() for field in fields]
    if "label" not in names and not set(TEXT_COLUMNS) & set(names):
        return None
    text = next((names.index(name) for name in TEXT_COLUMNS if name in names), None)
    return names, text, names.index("label") if "label" in names else None


def read_tsv(path, require_label=True):
    """[(text, label)] of a sentiment file, .tsv or .csv; the label is None in a test file without a label column.

    A header naming `label` and a text column (text_a, text, review or sentence) picks the columns
    and the others are ignored; without one, each line is `text<TAB>label` (`text,label` in a .csv).
    """
    rows = read_rows(path)
    columns = header_columns(rows[0][1]) if rows else None
    if columns is None:
        return read_text_label_rows(path, rows)
    names, text_column, label_column = columns
    if text_column is None:
        raise UserError("%s line %d: expected a text column named %s in the header, found %s"
                        % (path, rows[0][0], ", ".join(TEXT_COLUMNS), ", ".join(names)))
    if label_column is None and require_label:
        raise UserError("%s line %d: expected a label column in the header, found %s (only a test file may "
                        "have none)" % (path, rows[0][0], ", ".join(names)))
    examples = []
    for line_number, fields in rows[1:]:
        text_end = text_column + 1 + len(fields) - len(names)
        if text_end > text_column + 1 and not path.lower().endswith(".csv"):  # tabs inside the text, as before
            fields[text_column:text_end] = ["\t".join(fields[text_column:text_end])]
        if len(fields) != len(names):
            raise UserError("%s line %d: expected %d columns (%s), found %d"
                            % (path, line_number, len(names), ", ".join(names), len(fields)))
        label = None if label_column is None else check_label(fields[label_column], path, line_number)
        examples.append((fields[text_column], label))
    if not examples:
        raise UserError("%s holds no text" % path)
    return examples


def read_text_label_rows(path, rows):
    """[(text, label)] of header-less `text<TAB>label` rows; a first line whose label is not a number is skipped."""
    separator, shown, name = (",", ",", "comma") if path.lower().endswith(".csv") else ("\t", "<TAB>", "tab")
    examples = []
    for line_number, fields in rows:
        if len(fields) < 2:
            raise UserError("%s line %d: expected text%slabel, found no %s" % (path, line_number, shown, name))
        label = fields[-1]
        if line_number == rows[0][0] and not label.strip().isdigit():
            continue  # a header
        examples.append((separator.join(fields[:-1]), check_label(label, path, line_number)))
    if not examples:
        raise UserError("%s holds no labelled text" % path)
    return examples


def check_label(label, path, line_number):
    if label.strip() not in ("0", "1"):
        raise UserError("%s line %d: the label must be 0 or 1, found %r" % (path, line_number, label))
    return int(label)


def read_texts(path):
    """The texts to predict: a file with a header by its text column, any other file line by line."""
    rows = read_rows(path)
    if rows and header_columns(rows[0][1]):
        return [text for text, _ in read_tsv(path, require_label=False)]
    return [line.strip() for line in read_data_file(path).split("\n") if line.strip()]


def load_data(data_dir, seed, train_file=None, dev_file=None, test_file=None):
    """{'train': [...], 'dev': [...], 'test': [...] or None}; without a dev file a 9:1 split as the blog.

    A file named by its flag replaces the one of that name in data_dir; a test file without labels
    is for prediction only.
    """
    data = {"train": read_tsv(train_file or os.path.join(data_dir, "train.tsv"))}
    dev_path = dev_file or os.path.join(data_dir, "dev.tsv")
    if dev_file or os.path.exists(dev_path):
        data["dev"] = read_tsv(dev_path)
    else:
        order = np.random.default_rng(seed).permutation(len(data["train"]))
        held_out = set(order[:max(1, len(order) // 10)].tolist())
        data["dev"] = [example for i, example in enumerate(data["train"]) if i in held_out]
        data["train"] = [example for i, example in enumerate(data["train"]) if i not in held_out]
    test_path = test_file or os.path.join(data_dir, "test.tsv")
    data["test"] = read_tsv(test_path, require_label=False) if test_file or os.path.exists(test_path) else None
    if data["test"] and data["test"][0][1] is None:
        print("%s has no labels: no test accuracy; predict its texts with --predict-file %s" % (test_path, test_path))
        data["test"] = None
    for name, examples in data.items():
        if examples:
            positive = sum(label for _, label in examples)
            print("%s: %d texts, %.1f%% positive" % (name, len(examples), 100.0 * positive / len(examples)))
    return data


# ---------------------------------------------------------------------------------------------
# Batches: one token per character, each batch padded to its own longest text
# ---------------------------------------------------------------------------------------------

def encode_texts(tokenizer, texts, maxlen, source):
    """Token ids and segment ids of each text cut to `maxlen` characters (the blog's `text[:maxlen]`)."""
    encoded = [tokenizer.encode(first=text[:maxlen]) for text in texts]
    report_truncated(sum(len(text) > maxlen for text in texts), len(texts), maxlen, source)
    return encoded


def batch_inputs(encoded, indices):
    """(token_ids, segment_ids) of the examples at `indices`, padded to the longest of them."""
    return pad([encoded[i][0] for i in indices]), pad([encoded[i][1] for i in indices])


def make_batch(encoded, labels, indices):
    """((token_ids, segment_ids), labels) for the examples at `indices`."""
    return batch_inputs(encoded, indices), np.asarray(labels, dtype=np.float32)[indices, None]


BATCH_SIGNATURE = (
    (tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None, None), tf.int64)),
    tf.TensorSpec((None, 1), tf.float32),
)


# ---------------------------------------------------------------------------------------------
# Model: the blog's ten lines
# ---------------------------------------------------------------------------------------------

def build_model(checkpoint, accumulate=1):
    bert = load_bert(checkpoint)
    token_ids = keras.layers.Input(shape=(None,), name="token_ids")
    segment_ids = keras.layers.Input(shape=(None,), name="segment_ids")
    x = bert([token_ids, segment_ids])
    x = keras.layers.Lambda(lambda x: x[:, 0], name="cls_vector")(x)
    # float32 even under --mixed-precision, so that the probability and the loss stay exact
    p = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="positive_probability")(x)
    # keras.Model, plus gradient accumulation (--accumulate)
    return AccumulatingModel([token_ids, segment_ids], p, accumulate=accumulate)


def predict_probabilities(model, encoded, batch_size):
    """The positive probability of each encoded text, batched by length so little is padding."""
    probabilities = np.zeros(len(encoded), dtype=np.float32)
    for indices in prediction_batches([len(token_ids) for token_ids, _ in encoded], batch_size):
        probabilities[indices] = model.predict_on_batch(list(batch_inputs(encoded, indices)))[:, 0]
    return probabilities


def accuracy(model, encoded, labels, batch_size):
    predictions = predict_probabilities(model, encoded, batch_size) > 0.5
    return float(np.mean(predictions == np.asarray(labels, dtype=bool)))


# ---------------------------------------------------------------------------------------------
# Prediction: from the saved best weights, on new text
# ---------------------------------------------------------------------------------------------

def predict(args, checkpoint, tokenizer):
    texts = list(args.predict or [])
    if args.predict_file:
        texts += read_texts(args.predict_file)
    model = build_model(checkpoint)
    load_best_weights(model, args.output_dir, "sentiment.py")
    encoded = encode_texts(tokenizer, texts, args.maxlen, args.predict_file or "--predict")
    for text, probability in zip(texts, predict_probabilities(model, encoded, args.batch_size)):
        print("%.4f\t%s" % (probability, text))


# ---------------------------------------------------------------------------------------------
# Export: a SavedModel that takes raw review texts (README: Serving the fine-tuned model)
# ---------------------------------------------------------------------------------------------

class SentimentServing(ServingModule):
    """serving_default: `text` (strings) -> `positive_probability` (float32), as --predict prints it."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        token_ids, segment_ids = self.tokenizer.encode(text, self.maxlen)
        model, = self.call_models
        probabilities = model([token_ids, segment_ids])
        return {"positive_probability": tf.cast(probabilities[:, 0], tf.float32)}


def export(args, checkpoint):
    model = build_model(checkpoint)
    load_best_weights(model, args.output_dir, "sentiment.py")
    write_export(SentimentServing([model], checkpoint.vocab_path, args.maxlen), args, "sentiment.py")


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
    data = load_data(args.data_dir, args.seed, args.train_file, args.dev_file, args.test_file)
    encoded = {name: encode_texts(tokenizer, [text for text, _ in examples], args.maxlen, name)
               for name, examples in data.items() if examples}
    labels = {name: [label for _, label in examples] for name, examples in data.items() if examples}

    strategy = set_up_devices(args)
    with strategy.scope():
        model = build_model(checkpoint, args.accumulate)
        model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(args.lr), metrics=["accuracy"],
                      jit_compile=args.xla)
    batches = TrainingBatches(
        lengths=[len(token_ids) for token_ids, _ in encoded["train"]],
        make_batch=lambda indices: make_batch(encoded["train"], labels["train"], indices),
        signature=BATCH_SIGNATURE, batch_size=args.batch_size, seed=args.seed, bucket=args.bucket)
    best = train(model, batches, lambda: accuracy(model, encoded["dev"], labels["dev"], args.batch_size),
                 args, "accuracy", "sentiment.py")
    if "test" in encoded:
        print("test accuracy with the best dev weights: %.4f"
              % accuracy(model, encoded["test"], labels["test"], args.batch_size))
    print("best dev accuracy: %.4f" % best)


if __name__ == "__main__":
    run(main)
