"""Text classification by fine-tuning Chinese BERT: the blog's sentiment example, for any labels and sentence pairs.

The first example of the blog post "当Bert遇上Keras" (kexue.fm/archives/6736): the smallest
possible head on top of BERT, the `[CLS]` vector into `Dense(1, activation='sigmoid')`, trained
with binary cross-entropy and `Adam(1e-5)` for 5 epochs; the blog reaches 95.5%+ validation
accuracy on its ~21k reviews. The same few lines classify anything else: any other set of labels
gets `Dense(N, softmax)` with sparse categorical cross-entropy, and a sentence pair is one input,
`[CLS] a [SEP] b [SEP]` with segment ids 0 and 1 (README, "Your own classification task").
Beside the blog's script (docs/blog_map.md, "2. 文本分类"): its `data_generator` is `make_batch` with
fine_tuning's `TrainingBatches`, its model lines are `build_model`, its `fit_generator` fine_tuning's `train`.

Data: `--data-dir` holds the training file and, optionally, dev and test files, under the names
their publishers use (`train.tsv`, `train.json` ... ; classification_data.py lists them); without a
dev file a tenth of the training set is held out, as in the blog. The bundled `data/sentiment`
is `text<TAB>label` lines of real reviews, label 0 (negative) or 1 (positive). CLUE's JSON lines,
LCQMC's `text_a<TAB>text_b<TAB>label`, headers such as ChnSentiCorp's and PAWS-X's and the review
CSVs are read as published; `--columns label,text` names any other column order (THUCNews).
Labels 0 and 1 keep the blog's head; other labels are taken from the training file, saved in
`labels.json` beside the best weights, and named as the data names them (TNEWS' `label_desc`).
Metric: accuracy each epoch (macro-F1 beside it for more than two labels); after training, a
per-label report and confusion matrix for dev and test, and the wrong dev predictions, in --output-dir.

    python sentiment.py                                 # train, keep the best dev weights
    python sentiment.py --bert-dir chinese_L-12_H-768_A-12 --data-dir my_reviews
    python sentiment.py --data-dir data/classification/tnews     # 15 news topics, CLUE's files
    python sentiment.py --data-dir data/classification/lcqmc     # question pairs
    python sentiment.py --predict "这家店的服务太好了" "质量太差，不会再买"
"""
import json
import os

# First: tokenizer imports TensorFlow as keras-bert needs it (Keras 2), without its start-up noise.
from tokenizer import OurTokenizer, load_vocab, pair_lengths

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from bert_checkpoint import load_bert  # noqa: E402
from classification_data import (  # noqa: E402
    SPLIT_FILE_NAMES, Labels, find_split_file, parse_columns, read_class_names, read_examples,
    read_texts_to_classify)
from fine_tuning import (  # noqa: E402
    AccumulatingModel, TrainingBatches, UserError, check_sequence_length, load_best_weights, make_parser, pad,
    parse_flags, prediction_batches, report_truncated, run, set_up_devices, train)
from output_lock import lock_output_dir  # noqa: E402
from serving import ServingModule, write_export  # noqa: E402

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
LABELS_NAME = "labels.json"  # beside the best weights: the label order of the model's outputs
BLOG_LABELS = Labels(["0", "1"])  # the blog's reviews: 0 negative, 1 positive, one text

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
                        help="print the label and its probability for each TEXT with the saved best weights (0/1 "
                        "labels: the probability of 1); a pair model takes the TEXTs two by two")
    parser.add_argument("--predict-file", metavar="FILE",
                        help="like --predict, for every line of FILE (a pair model: text_a<TAB>text_b), or its "
                        "text columns if it has a header or is JSON lines (a CLUE test file)")
    parser.add_argument("--submission", metavar="FILE",
                        help="with --predict-file: also write one {\"id\": ..., \"label\": ...} per line to FILE, "
                        "CLUE's submission layout (e.g. tnews_predict.json)")
    parser.add_argument("--test-file", metavar="FILE",
                        help="the test file, instead of the one in --data-dir; without labels it is not scored")
    parser.add_argument("--columns", metavar="ROLES",
                        help="the columns of a tab- or comma-separated file, in order: text (or text_a), text_b, "
                        "label, id, or - to skip one; e.g. label,text for THUCNews (default: from the header, "
                        "else text<TAB>label, or text_a<TAB>text_b<TAB>label when most lines have three fields)")
    return parser


# ---------------------------------------------------------------------------------------------
# Data: the training, dev and test files as published; the label set from the training file
# ---------------------------------------------------------------------------------------------

def load_data(data_dir, seed, train_file=None, dev_file=None, test_file=None, columns=None):
    """({'train': [...], 'dev': [...], 'test': [...] or None}, the training set's Labels).

    Without a dev file, a 9:1 split as the blog. A file named by its flag replaces the one in
    data_dir; a test file without labels is for prediction only.
    """
    columns = parse_columns(columns) if columns else None
    train_path = train_file or find_split_file(data_dir, "train")
    if train_path is None:
        raise UserError("no training file in %s: expected one of %s, or name it with --train-file"
                        % (data_dir, ", ".join(SPLIT_FILE_NAMES["train"])))
    data = {"train": read_examples(train_path, columns)}
    labels = Labels.of_training_set(data["train"], train_path, read_class_names(data_dir))
    dev_path = dev_file or find_split_file(data_dir, "dev")
    if dev_path:
        data["dev"] = read_examples(dev_path, columns, text_pair=labels.text_pair)
        labels.check(data["dev"], dev_path)
    else:
        order = np.random.default_rng(seed).permutation(len(data["train"]))
        held_out = set(order[:max(1, len(order) // 10)].tolist())
        data["dev"] = [example for i, example in enumerate(data["train"]) if i in held_out]
        data["train"] = [example for i, example in enumerate(data["train"]) if i not in held_out]
    test_path = test_file or find_split_file(data_dir, "test")
    data["test"] = None
    if test_path:
        data["test"] = read_examples(test_path, columns, require_label=False, text_pair=labels.text_pair)
    if data["test"] and data["test"][0].label is None:
        print("%s has no labels: no test accuracy; predict its texts with --predict-file %s" % (test_path, test_path))
        data["test"] = None
    if data["test"]:
        labels.check(data["test"], test_path)
    for name, examples in data.items():
        if examples:
            print("%s: %d %s, %s" % (name, len(examples), "pairs" if labels.text_pair else "texts",
                                     describe_labels(examples, labels)))
    return data, labels


def describe_labels(examples, labels):
    """`50.0% positive` for the blog's labels, else the label count and the most common label's share."""
    counts = {value: 0 for value in labels.values}
    for example in examples:
        counts[example.label] += 1
    if labels.binary:
        return "%.1f%% positive" % (100.0 * counts["1"] / len(examples))
    common = max(counts, key=counts.get)
    return "%d labels, the most common %s (%.1f%%)" % (len(labels), labels.name(common),
                                                        100.0 * counts[common] / len(examples))


# ---------------------------------------------------------------------------------------------
# Batches: one token per character, each batch padded to its own longest sequence
# ---------------------------------------------------------------------------------------------

def encode_texts(tokenizer, texts, maxlen, source):
    """Token ids and segment ids of each text, or (text_a, text_b) pair, cut to `maxlen` characters.

    A text keeps its first `maxlen` characters (the blog's `text[:maxlen]`); a pair keeps `maxlen`
    characters in all, cutting the longer text first, as Google's run_classifier does.
    """
    encoded, cut = [], 0
    for text in texts:
        text = (text,) if isinstance(text, str) else text
        if len(text) == 1:
            encoded.append(tokenizer.encode(first=text[0][:maxlen]))
            cut += len(text[0]) > maxlen
        else:
            first, second = text
            kept_first, kept_second = pair_lengths(len(first), len(second), maxlen)
            encoded.append(tokenizer.encode(first=first[:kept_first], second=second[:kept_second]))
            cut += len(first) + len(second) > maxlen
    report_truncated(cut, len(texts), maxlen, source)
    return encoded


def label_targets(labels, values):
    """What the loss compares with: the 0/1 label as a float for the blog's head, else the label's index."""
    if labels.binary:
        return np.asarray([float(value) for value in values], dtype=np.float32)[:, None]
    return np.asarray([labels.index[value] for value in values], dtype=np.int64)


def batch_inputs(encoded, indices):
    """(token_ids, segment_ids) of the examples at `indices`, padded to the longest of them."""
    return pad([encoded[i][0] for i in indices]), pad([encoded[i][1] for i in indices])


def make_batch(encoded, targets, indices):
    """((token_ids, segment_ids), targets) for the examples at `indices`."""
    return batch_inputs(encoded, indices), targets[indices]


def batch_signature(labels):
    inputs = (tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None, None), tf.int64))
    return inputs, (tf.TensorSpec((None, 1), tf.float32) if labels.binary else tf.TensorSpec((None,), tf.int64))


# ---------------------------------------------------------------------------------------------
# Model: the blog's ten lines; N labels other than 0/1 get a softmax over N
# ---------------------------------------------------------------------------------------------

def build_model(checkpoint, labels=BLOG_LABELS, accumulate=1):
    bert = load_bert(checkpoint)
    token_ids = keras.layers.Input(shape=(None,), name="token_ids")
    segment_ids = keras.layers.Input(shape=(None,), name="segment_ids")
    x = bert([token_ids, segment_ids])
    x = keras.layers.Lambda(lambda x: x[:, 0], name="cls_vector")(x)
    # float32 even under --mixed-precision, so that the probabilities and the loss stay exact
    if labels.binary:
        p = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="positive_probability")(x)
    else:
        p = keras.layers.Dense(len(labels), activation="softmax", dtype="float32", name="label_probabilities")(x)
    # keras.Model, plus gradient accumulation (--accumulate)
    return AccumulatingModel([token_ids, segment_ids], p, accumulate=accumulate)


def loss_for(labels):
    return "binary_crossentropy" if labels.binary else "sparse_categorical_crossentropy"


def label_probabilities(model, encoded, batch_size):
    """[texts, labels] probabilities, in the order of Labels.values, batched by length so little is padding.

    The blog's head gives the probability of 1 only: its rows are (1 - p, p).
    """
    outputs = None
    for indices in prediction_batches([len(token_ids) for token_ids, _ in encoded], batch_size):
        batch = model.predict_on_batch(list(batch_inputs(encoded, indices)))
        if outputs is None:
            outputs = np.zeros((len(encoded), batch.shape[1]), dtype=np.float32)
        outputs[indices] = batch
    if outputs is None:
        raise UserError("nothing to classify")
    return np.concatenate([1 - outputs, outputs], axis=1) if outputs.shape[1] == 1 else outputs


# ---------------------------------------------------------------------------------------------
# Evaluation: accuracy, as CLUE scores these tasks; macro-F1, the per-label table and the
# confusion matrix for more than two labels, where accuracy hides the rare ones
# ---------------------------------------------------------------------------------------------

def confusion_matrix(gold, predicted, label_count):
    """matrix[i, j]: examples of label i predicted as label j."""
    matrix = np.zeros((label_count, label_count), dtype=np.int64)
    np.add.at(matrix, (gold, predicted), 1)
    return matrix


def per_label_scores(matrix):
    """(precision, recall, f1, support) per label; 0 where a label is never predicted or never present."""
    correct = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(correct),
                   where=precision + recall > 0)
    return precision, recall, f1, support


def macro_f1(matrix):
    """The mean F1 over the labels present in gold or predictions."""
    _, _, f1, support = per_label_scores(matrix)
    present = (support > 0) | (matrix.sum(axis=0) > 0)
    return float(f1[present].mean())


def classification_report(matrix, labels):
    """The per-label precision/recall/F1/support table, then the confusion matrix, as text."""
    precision, recall, f1, support = per_label_scores(matrix)
    names = [labels.name(value) for value in labels.values]
    width = max(len(name) for name in names + ["label"])
    lines = ["%-*s  precision  recall  f1      support" % (width, "label")]
    lines += ["%-*s  %.4f     %.4f  %.4f  %d" % (width, name, *scores)
              for name, *scores in zip(names, precision, recall, f1, support)]
    lines.append("accuracy %.4f, macro-F1 %.4f, %d examples"
                 % (np.trace(matrix) / max(matrix.sum(), 1), macro_f1(matrix), matrix.sum()))
    lines.append("confusion matrix (rows: gold, columns: predicted, in the order above):")
    lines += ["%-*s  %s" % (width, name, " ".join("%5d" % count for count in row)) for name, row in zip(names, matrix)]
    return "\n".join(lines)


def evaluate(model, encoded, labels, gold, batch_size):
    """(dev accuracy, the epoch line's note): macro-F1 beside accuracy for more than two labels."""
    predicted = label_probabilities(model, encoded, batch_size).argmax(axis=1)
    matrix = confusion_matrix(gold, predicted, len(labels))
    return float(np.trace(matrix) / matrix.sum()), "" if len(labels) == 2 else "macro-F1 %.4f" % macro_f1(matrix)


def write_report(model, encoded, examples, labels, batch_size, output_dir, split):
    """Print and save the split's report with the best weights, for dev also its wrong predictions;
    return the accuracy."""
    probabilities = label_probabilities(model, encoded, batch_size)
    predicted = probabilities.argmax(axis=1)
    gold = np.asarray([labels.index[example.label] for example in examples])
    matrix = confusion_matrix(gold, predicted, len(labels))
    report = classification_report(matrix, labels)
    print("%s, with the best dev weights:\n%s" % (split, report))
    with open(os.path.join(output_dir, "%s_report.txt" % split), "w", encoding="utf-8") as writer:
        writer.write(report + "\n")
    if split == "dev":  # the blog writes its dev errors too: the quickest way to see what the model gets wrong
        errors_path = os.path.join(output_dir, "dev_errors.tsv")
        with open(errors_path, "w", encoding="utf-8") as writer:
            writer.write("line\tgold\tpredicted\tprobability\ttext%s\n" % ("\ttext_b" if labels.text_pair else ""))
            for example, label, scores in zip(examples, predicted, probabilities):
                if labels.index[example.label] != label:
                    writer.write("%d\t%s\t%s\t%.4f\t%s\n" % (example.line, labels.name(example.label),
                                                             labels.name(labels.values[label]), scores[label],
                                                             "\t".join(example.texts)))
        print("wrong dev predictions: %s" % errors_path)
    return float(np.trace(matrix) / matrix.sum())


# ---------------------------------------------------------------------------------------------
# Prediction: from the saved best weights, on new text
# ---------------------------------------------------------------------------------------------

def labels_path(output_dir):
    return os.path.join(output_dir, LABELS_NAME)


def texts_to_predict(args, labels):
    """([texts], [ids]) of --predict and --predict-file; a pair model takes its TEXTs two by two."""
    width = 2 if labels.text_pair else 1
    given = list(args.predict or [])
    if len(given) % width:
        raise UserError("--predict: this model classifies pairs of texts; give an even number of TEXTs, "
                        "%d given" % len(given))
    texts = [tuple(given[i:i + width]) for i in range(0, len(given), width)]
    ids = list(range(len(texts)))
    if args.predict_file:
        columns = parse_columns(args.columns) if args.columns else None
        examples = read_texts_to_classify(args.predict_file, columns, labels.text_pair)
        # CLUE's test files number their rows from 0 in an `id` field; a file without one by its order
        ids += [i if example.id is None else example.id for i, example in enumerate(examples)]
        texts += [example.texts for example in examples]
    return texts, ids


def predict(args, checkpoint, tokenizer):
    """Print each text's label and probability (the blog's labels: the probability of 1)."""
    labels = Labels.load(labels_path(args.output_dir))
    check_sequence_length(args.maxlen + (3 if labels.text_pair else 2), checkpoint)
    texts, ids = texts_to_predict(args, labels)
    model = build_model(checkpoint, labels)
    load_best_weights(model, args.output_dir, "sentiment.py")
    encoded = encode_texts(tokenizer, texts, args.maxlen, args.predict_file or "--predict")
    probabilities = label_probabilities(model, encoded, args.batch_size)
    predicted = probabilities.argmax(axis=1)
    for text, label, scores in zip(texts, predicted, probabilities):
        if labels.binary:
            print("%.4f\t%s" % (scores[1], "\t".join(text)))  # the blog's output: the probability of 1
        else:
            print("%s\t%.4f\t%s" % (labels.name(labels.values[label]), scores[label], "\t".join(text)))
    if args.submission:
        with open(args.submission, "w", encoding="utf-8") as writer:
            for identifier, label in zip(ids, predicted):
                writer.write(json.dumps({"id": identifier, "label": labels.values[label]}, ensure_ascii=False) + "\n")
        print("wrote %d predictions in CLUE's submission layout to %s" % (len(texts), args.submission))


# ---------------------------------------------------------------------------------------------
# Export: a SavedModel that takes raw texts (README: Serving the fine-tuned model)
# ---------------------------------------------------------------------------------------------

class ClassifierServing(ServingModule):
    """serving_default: `text` (strings), and `text_b` for a pair model, ->
    `positive_probability` (float32) for the blog's 0/1 labels, as --predict prints it; else
    `label` (the label, a string) and `probabilities` (float32, one per label in labels.json's order).
    """

    def __init__(self, models, vocab_path, maxlen, labels):
        super().__init__(models, vocab_path, maxlen)
        self.label_values = tuple(labels.values)
        self.binary = labels.binary
        text = tf.TensorSpec([None], tf.string, name="text")
        if labels.text_pair:
            self.serve = tf.function(self.classify_pairs, input_signature=[text, tf.TensorSpec([None], tf.string,
                                                                                                 name="text_b")])
        else:
            self.serve = tf.function(self.classify_texts, input_signature=[text])

    def classify_texts(self, text):
        return self.classify(*self.tokenizer.encode(text, self.maxlen))

    def classify_pairs(self, text, text_b):
        return self.classify(*self.tokenizer.encode_pair(text, text_b, self.maxlen))

    def classify(self, token_ids, segment_ids):
        model, = self.call_models
        probabilities = tf.cast(model([token_ids, segment_ids]), tf.float32)
        if self.binary:
            return {"positive_probability": probabilities[:, 0]}
        return {"label": tf.gather(tf.constant(self.label_values), tf.argmax(probabilities, axis=1)),
                "probabilities": probabilities}


def export(args, checkpoint):
    labels = Labels.load(labels_path(args.output_dir))
    model = build_model(checkpoint, labels)
    load_best_weights(model, args.output_dir, "sentiment.py")
    write_export(ClassifierServing([model], checkpoint.vocab_path, args.maxlen, labels), args, "sentiment.py")


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
    data, labels = load_data(args.data_dir, args.seed, args.train_file, args.dev_file, args.test_file, args.columns)
    check_sequence_length(args.maxlen + (3 if labels.text_pair else 2), checkpoint)  # a pair has two [SEP]s
    if args.resume and Labels.load(labels_path(args.output_dir)) != labels:
        raise UserError("%s holds other labels than %s: resume with the data of the interrupted run"
                        % (labels_path(args.output_dir), args.train_file or args.data_dir))
    os.makedirs(args.output_dir, exist_ok=True)
    labels.save(labels_path(args.output_dir))
    encoded = {name: encode_texts(tokenizer, [example.texts for example in examples], args.maxlen, name)
               for name, examples in data.items() if examples}
    targets = label_targets(labels, [example.label for example in data["train"]])
    dev_gold = np.asarray([labels.index[example.label] for example in data["dev"]])

    strategy = set_up_devices(args)
    with strategy.scope():
        model = build_model(checkpoint, labels, args.accumulate)
        model.compile(loss=loss_for(labels), optimizer=keras.optimizers.Adam(args.lr), metrics=["accuracy"],
                      jit_compile=args.xla)
    batches = TrainingBatches(
        lengths=[len(token_ids) for token_ids, _ in encoded["train"]],
        make_batch=lambda indices: make_batch(encoded["train"], targets, indices),
        signature=batch_signature(labels), batch_size=args.batch_size, seed=args.seed, bucket=args.bucket)
    best = train(model, batches, lambda: evaluate(model, encoded["dev"], labels, dev_gold, args.batch_size),
                 args, "accuracy", "sentiment.py")
    write_report(model, encoded["dev"], data["dev"], labels, args.batch_size, args.output_dir, "dev")
    if "test" in encoded:
        test_accuracy = write_report(model, encoded["test"], data["test"], labels, args.batch_size, args.output_dir,
                                     "test")
        print("test accuracy with the best dev weights: %.4f" % test_accuracy)
    print("best dev accuracy: %.4f" % best)


if __name__ == "__main__":
    run(main)
