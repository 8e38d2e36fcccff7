"""Fine-tuning plumbing shared by sentiment.py, relation_extraction.py and subject_extraction.py.

Only what the three scripts would otherwise copy: the shared flags and the choice of
checkpoint, devices and precision (tf.distribute, mixed precision), reading data files with
clear errors, random batches (of similar lengths with --bucket) padded to their own longest
sequence (the blog's `seq_padding`), the learning-rate schedule, a keras.Model that can accumulate gradients, and
`train()`: Keras `fit` with callbacks that keep the best weights, stop on NaN or Ctrl-C, and resume.
Beside the blog (docs/blog_map.md): `seq_padding` is `pad`, its generators' shuffling `epoch_batches` and
`TrainingBatches`, its `Evaluate` callback's warmup `WarmupThenDecay`, its `fit_generator` `train`.
"""
import argparse
import contextlib
import csv
import io
import json
import math
import os
import shutil
import signal
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # keras-bert needs Keras 2: TensorFlow's tf-keras, not Keras 3
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras_self_attention import ScaledDotProductAttention  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import backend as K  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bert_checkpoint import CheckpointError, find_checkpoint, print_tiny_banner  # noqa: E402
from output_lock import OutputDirBusy, release_output_dirs  # noqa: E402
from tokenizer import FIRST_STEP_NOISE, HOLD_BACK_NOISE, lines_held_back  # noqa: E402

BEST_WEIGHTS_NAME = "best_weights.h5"  # not ".weights.h5": Keras 2.15 reads that suffix as its new format
RESUME_DIR_NAME = "resume"


class UserError(Exception):
    """Bad input or a stopped run: the message is for the user, the exit status is 2."""

    exit_status = 2


def run(main, argv=None):
    """Call `main(argv)`; turn a UserError, CheckpointError or OutputDirBusy into one message and exit
    status 2; release the output folder however main ends."""
    try:
        main(argv)
    except (UserError, CheckpointError, OutputDirBusy) as error:
        print("error: %s" % error, file=sys.stderr)
        sys.exit(getattr(error, "exit_status", 2))
    finally:
        release_output_dirs()


# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------

def make_parser(doc, settings):
    """The flags every script has, with the script's defaults; the script adds its own extras."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--bert-dir", metavar="DIR_OR_HUB_ID",
                        help="Google's BERT folder (bert_config.json, vocab.txt, bert_model.ckpt.*), a Hugging Face "
                        "model folder (config.json, vocab.txt or tokenizer.json, model.safetensors or "
                        "pytorch_model.bin), or a Hub id ORG/NAME[@REVISION] to download, e.g. "
                        "hfl/chinese-roberta-wwm-ext (README: Checkpoints); default: $BERT_DIR, then "
                        "./chinese_L-12_H-768_A-12, then a tiny random BERT for trying things out")
    parser.add_argument("--data-dir", default=settings["data_dir"],
                        help="the task's files under their usual names "
                        "(default: %(default)s, or the folder of --train-file)")
    parser.add_argument("--train-file", metavar="FILE", help="the training file, instead of the one in --data-dir")
    parser.add_argument("--dev-file", metavar="FILE",
                        help="the dev file, in the training file's format, instead of the one in --data-dir (without "
                        "one, sentiment and subject extraction hold part of the training file out)")
    parser.add_argument("--output-dir", default=settings["output_dir"],
                        help="best weights, logs and resumable state go here (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=settings["epochs"], help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=settings["batch_size"], help="default: %(default)s")
    parser.add_argument("--maxlen", type=int, default=settings["maxlen"],
                        help="characters of text the model reads at once; a longer text is %s (default: %%(default)s)"
                        % ("read in windows, see --stride" if "stride" in settings else "cut"))
    parser.add_argument("--lr", type=float, default=settings["lr"], help="learning rate (default: %(default)s)")
    if "min_lr" in settings:
        parser.add_argument("--min-lr", type=float, default=settings["min_lr"],
                            help="the rate the schedule decays to by the last step "
                            "(README: Flags; default: %(default)s)")
        parser.add_argument("--warmup", type=float, default=settings["warmup"], metavar="FRACTION",
                            help="the share of the steps over which the rate climbs from 0 to --lr (Google's BERT: "
                            "0.1; README: Flags; default: %(default)s, start at --lr)")
    if "stride" in settings:
        parser.add_argument("--stride", type=int, default=settings["stride"],
                            help="a text longer than --maxlen is read in windows of --maxlen characters, one "
                            "starting every STRIDE characters (default: half of --maxlen)")
    parser.add_argument("--seed", type=int, default=settings["seed"],
                        help="fixes the data split, batch order and initial weights (default: %(default)s)")
    parser.add_argument("--export", metavar="DIR",
                        help="no training: load the best weights from --output-dir and write to DIR a TensorFlow "
                        "SavedModel that takes raw text and gives the answer (README: Serving)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run saved in --output-dir")
    # Random batches by default: measured, length-sorted ones reached the dev target in more epochs
    # with the tiny random BERT, and with a real 4-layer BERT on sentiment (benchmarks/README.md,
    # "Batching on real weights"); on its span tasks they cost no epochs.
    parser.add_argument("--bucket", action=argparse.BooleanOptionalAction, default=False,
                        help="batches of texts of similar length: ~40%% less padding, 1.5-1.8x faster epochs; "
                        "a real small BERT reached the sentiment target an epoch later with them, the span "
                        "tasks' as soon (default: --no-bucket, random batches as in the blog)")
    parser.add_argument("--accumulate", type=int, default=1, metavar="N",
                        help="split each batch into N micro-batches and sum their gradients: the "
                        "memory of a batch N times smaller, the updates of the full one (default: 1)")
    parser.add_argument("--mixed-precision", choices=["float16", "bfloat16"],
                        help="train in 16 bits, keep weights and losses in float32 (GPUs; training only: --predict "
                        "and --export compute in float32; default: off)")
    parser.add_argument("--xla", action="store_true",
                        help="compile training steps with XLA (recompiles for every new batch width)")
    parser.add_argument("--strategy", choices=["one-device", "mirrored", "multi-worker"], default="one-device",
                        help="mirrored: all GPUs of this machine; multi-worker: several machines, "
                        "described by $TF_CONFIG (default: %(default)s)")
    return parser


def parse_flags(parser, argv, tiny_bert_settings):
    """Parse the flags and find the checkpoint; the tiny one brings its demo settings."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    check_flags(args)
    print(describe_devices(args.strategy), file=sys.stderr, flush=True)  # on stderr: --predict's stdout stays data
    if args.train_file and args.data_dir == parser.get_default("data_dir"):
        args.data_dir = os.path.dirname(os.path.abspath(args.train_file))  # never the bundled sample's other files
    if args.xla and args.accumulate > 1:
        raise UserError("--xla cannot compile --accumulate's micro-batch loop (tf2xla conversion fails): "
                        "use one of the two")
    checkpoint = find_checkpoint(args.bert_dir)
    print(checkpoint.describe(), file=sys.stderr, flush=True)
    if checkpoint.is_tiny:
        given = {flag.split("=")[0][2:].replace("-", "_") for flag in argv if flag.startswith("--")}
        demo_settings = {name: value for name, value in tiny_bert_settings.items() if name not in given}
        for name, value in demo_settings.items():
            setattr(args, name, value)
        print_tiny_banner(demo_settings)
    if "stride" in vars(args) and args.stride is None:
        args.stride = max(1, args.maxlen // 2)
    keras.utils.set_random_seed(args.seed)
    return args, checkpoint


# Each flag's possible values, by the flag's name in args; a script checks the flags it has.
AT_LEAST_ONE = ("epochs", "batch_size", "maxlen", "accumulate", "stride")
AT_LEAST_ZERO = ("min_lr", "seed", "max_span")  # 0 is a real choice: decay to 0, seed 0, --max-span 0 (no limit)
PROBABILITIES = ("start_threshold", "end_threshold")
FOLDERS = ("bert_dir", "data_dir", "output_dir", "export")
FILES = ("train_file", "dev_file", "test_file", "predict_file", "schema_file")


def check_flags(args):
    """Refuse a flag value no run can use, before anything is loaded: one message naming the flag."""
    for name, value in vars(args).items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if name in AT_LEAST_ONE and not value >= 1:
            raise UserError("%s must be at least 1, got %s" % (flag, value))
        if name == "lr" and not value > 0:  # `not >`: NaN is refused too
            raise UserError("--lr must be above 0, got %g" % value)
        if name in AT_LEAST_ZERO and not value >= 0:
            raise UserError("%s cannot be negative, got %s" % (flag, value))
        if name == "warmup" and not 0 <= value <= 1:
            raise UserError("--warmup is a share of the training steps: it must lie between 0 and 1, got %g" % value)
        if name in PROBABILITIES and not 0 < value < 1:
            raise UserError("%s is a probability: it must lie between 0 and 1, got %g" % (flag, value))
        if name in FOLDERS and os.path.exists(value) and not os.path.isdir(value):
            raise UserError("%s %s is a file, not a folder" % (flag, value))
        if name in FILES and os.path.isdir(value):
            raise UserError("%s %s is a folder, not a file" % (flag, value))
        if name in FILES and not os.path.exists(value):
            raise UserError("%s %s not found" % (flag, value))
    if getattr(args, "stride", None) is not None and args.stride > args.maxlen:
        raise UserError("--stride %d would skip characters between windows of --maxlen %d: give at most %d"
                        % (args.stride, args.maxlen, args.maxlen))


def describe_devices(strategy="one-device"):
    """The first line of every run: the GPU(s) it will use, or the CPU and its cores."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return "device: CPU, %d cores (TensorFlow %s found no GPU)" % (cores, tf.__version__)
    used = gpus[:1] if strategy == "one-device" else gpus
    names = []
    for gpu in used:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        names.append(details.get("device_name", gpu.name)
                     + (" (compute capability %d.%d)" % tuple(capability) if capability else ""))
    if len(used) > 1:
        return "device: %d GPUs: %s" % (len(used), ", ".join(names))
    note = " (1 of %d; --strategy mirrored uses all)" % len(gpus) if len(gpus) > 1 else ""
    return "device: GPU %s%s" % (names[0], note)


def set_up_devices(args):
    """The tf.distribute strategy of --strategy, with the --mixed-precision policy in force and
    dropout that --resume can continue exactly.

    Call it before building any model; build and compile the models in `strategy.scope()`.
    """
    # Dropout from a tf.random.Generator per layer, whose state --resume restores; Keras' default
    # stateful random ops keep theirs inside the kernels, out of reach of any checkpoint.
    keras.backend.experimental.enable_tf_random_generator()
    if args.mixed_precision:
        ScaledDotProductAttention.call = attention_in_float32
        keras.mixed_precision.set_global_policy("mixed_" + args.mixed_precision)
    if args.strategy == "mirrored":  # every GPU, or on a machine without one every (logical) CPU
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    elif args.strategy == "multi-worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        return tf.distribute.get_strategy()
    print("%s strategy: %d replicas, each batch of %d split between them"
          % (args.strategy, strategy.num_replicas_in_sync, args.batch_size))
    return strategy


def attention_in_float32(self, inputs, mask=None, **kwargs):
    """keras-self-attention's ScaledDotProductAttention.call, with scores and softmax in float32.

    The original casts its scale and mask to float32 and fails on 16-bit inputs ("x and y must
    have the same dtype"); float32 scores also keep exp() and the -10000 mask from overflowing.
    """
    query, key, value = inputs if isinstance(inputs, list) else (inputs, inputs, inputs)
    if isinstance(mask, list):
        mask = mask[1]
    scores = tf.cast(K.batch_dot(query, key, axes=2), tf.float32)
    scores /= K.sqrt(K.cast(K.shape(query)[-1], tf.float32))
    if self.history_only:
        query_len, key_len = K.shape(query)[1], K.shape(key)[1]
        later = K.expand_dims(K.arange(0, key_len), axis=0) > K.expand_dims(K.arange(0, query_len), axis=-1)
        scores -= 10000.0 * K.expand_dims(K.cast(later, tf.float32), axis=0)
    if mask is not None:
        scores -= 10000.0 * (1.0 - K.cast(K.expand_dims(mask, axis=-2), tf.float32))
    self.intensity = scores
    weights = K.exp(scores - K.max(scores, axis=-1, keepdims=True))
    self.attention = weights / K.sum(weights, axis=-1, keepdims=True)
    output = K.batch_dot(tf.cast(self.attention, value.dtype), value)
    if self.return_attention:
        return [output, tf.cast(self.attention, value.dtype)]
    return output


def check_sequence_length(longest_sequence, checkpoint, flag="--maxlen"):
    """Refuse sequences longer than the checkpoint's position embeddings (512 in Google's)."""
    positions = checkpoint.config()["max_position_embeddings"]
    if longest_sequence > positions:
        raise UserError("%s gives sequences of up to %d tokens, but %s has only %d positions"
                        % (flag, longest_sequence, checkpoint.config_path, positions))


# ---------------------------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------------------------

def read_data_file(path):
    """The text of a UTF-8 data file (a BOM is allowed); clear errors when missing, empty or GBK."""
    if not os.path.isfile(path):
        raise UserError("data file %s not found" % path)
    with open(path, "rb") as reader:
        raw = reader.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_number = raw[:error.start].count(b"\n") + 1
        hint = "convert it to UTF-8"
        try:
            raw.decode("gb18030")
            hint = "it looks like GBK/GB18030: iconv -f GB18030 -t UTF-8 %s > %s.utf8" % (path, path)
        except UnicodeDecodeError:
            pass
        raise UserError("%s line %d is not UTF-8 (%s)" % (path, line_number, hint))
    if not text.strip():
        raise UserError("data file %s is empty" % path)
    return text


def read_csv_rows(path):
    """[(line number, fields)] of the non-blank rows of a UTF-8 CSV file (quoted fields may hold commas,
    quotes and line breaks); a malformed row is an error naming its line."""
    rows, reader = [], csv.reader(io.StringIO(read_data_file(path), newline=""))
    while True:
        line_number = reader.line_num + 1  # where this row starts; a quoted field may span lines
        try:
            row = next(reader)
        except StopIteration:
            return rows
        except csv.Error as error:
            raise UserError("%s line %d: %s" % (path, line_number, error))
        if "".join(row).strip():
            rows.append((line_number, row))


def read_json_lines(path):
    """(line number, object) for each non-blank line of a JSON-lines file."""
    for line_number, line in enumerate(read_data_file(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deep to parse
            raise UserError("%s line %d: expected one JSON object, got malformed JSON (%s)" % (path, line_number, error))
        if not isinstance(record, dict):
            raise UserError("%s line %d: expected a JSON object {...}, got %s" % (path, line_number, type(record).__name__))
        yield line_number, record


def report_truncated(count, total, maxlen, path):
    if count:
        print("%s: %d of %d texts were longer than --maxlen %d and were cut" % (path, count, total, maxlen))


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

def pad(sequences, value=0):
    """The blog's seq_padding: stack sequences, padded to the longest one of this batch only."""
    first = np.asarray(sequences[0])
    width = max(len(sequence) for sequence in sequences)
    padded = np.full((len(sequences), width) + first.shape[1:], value, dtype=first.dtype)
    for i, sequence in enumerate(sequences):
        padded[i, :len(sequence)] = sequence
    return padded


def epoch_batches(lengths, batch_size, seed, epoch, bucket=False):
    """Index batches for one epoch: every example once, in an order fixed by (seed, epoch).

    With `bucket`, examples are sorted by length within shuffled chunks of 100 batches and the
    batches shuffled again, so a batch holds similar lengths and little of it is padding.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if bucket:
        lengths = np.asarray(lengths)
        chunk = batch_size * 100
        order = np.concatenate([
            part[np.argsort(lengths[part], kind="stable")]
            for part in np.array_split(order, max(1, math.ceil(len(order) / chunk)))])
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if bucket:
        rng.shuffle(batches)
    return batches


def prediction_batches(lengths, batch_size):
    """Index batches for evaluation and prediction, sorted by length (little padding), with a progress bar."""
    order = np.argsort(lengths, kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return tqdm(batches, desc="predicting", unit="batch", leave=False, disable=None)


class TrainingBatches:
    """The training set as a prefetching tf.data pipeline of padded batches, new order each epoch.

    `make_batch(indices)` returns one batch as (inputs, targets) or (inputs,) matching
    `signature`; its first input must be the token ids, from which real and padded tokens
    are counted for the throughput report. Random choices inside a batch take `rng`, which
    each epoch seeds afresh from (seed, epoch): a resumed run draws what the uninterrupted one did.
    """

    def __init__(self, lengths, make_batch, signature, batch_size, seed, bucket=False):
        self.lengths = lengths
        self.make_batch = make_batch
        self.signature = signature
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = bucket
        self.epoch = 0
        self.rng = None  # each epoch's, from (seed, epoch)
        self.real_tokens = 0
        self.padded_tokens = 0
        self.batches_made = 0

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def _generate(self):
        batches = epoch_batches(self.lengths, self.batch_size, self.seed, self.epoch, self.bucket)
        self.rng = np.random.default_rng([self.seed, self.epoch, 1])  # 1: a stream apart from the batch order's
        self.epoch += 1
        for indices in batches:
            batch = self.make_batch(indices)
            token_ids = batch[0][0]
            self.real_tokens += int(np.count_nonzero(token_ids))
            self.padded_tokens += token_ids.size
            self.batches_made += 1
            yield batch

    def dataset(self):
        dataset = tf.data.Dataset.from_generator(self._generate, output_signature=self.signature)
        options = tf.data.Options()
        # Several workers: each makes the same (seed, epoch) batches and keeps its share of each.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return (dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
                .with_options(options).prefetch(tf.data.AUTOTUNE))


# ---------------------------------------------------------------------------------------------
# The heads' initial weights
# ---------------------------------------------------------------------------------------------

def head_initializer():
    """A new initializer for a head's kernel, BERT's own: a normal of stddev 0.02 (initializer_range in
    Google's and the Hub's configs) cut at two deviations, as Google's run_classifier and run_squad
    start their output layers.

    Keras' default (Glorot) starts a Dense(1) over 512 features 2.5 times wider. On CCKS with a real
    4-layer BERT the two were within noise of each other (benchmarks/README.md, "Against a plain
    PyTorch loop"); this one is what the checkpoint's authors trained their heads from. The span
    scripts and NER use it; sentiment's head keeps Keras' start, with which its real-weight numbers
    were measured (its bfloat16 loss rose with this one).
    """
    return keras.initializers.TruncatedNormal(stddev=0.02)


# ---------------------------------------------------------------------------------------------
# Learning rate
# ---------------------------------------------------------------------------------------------

class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> lr over the first `warmup` share of the steps, lr -> min_lr by the last, then flat.

    The blog warmed up over the whole first epoch and decayed over the second, made for the contests'
    17,000 and 170,000 rows; Google's BERT warms up over a tenth of the steps. On a few thousand rows
    of a real BERT, Google's warmup cost first-epoch accuracy against a plain loop at a constant rate
    (benchmarks/README.md, "The warmup"), so the span scripts start at lr (warmup 0) and only decay.
    """

    def __init__(self, lr, min_lr, total_steps, warmup):
        self.lr = lr
        self.min_lr = min_lr
        self.total_steps = total_steps
        self.warmup = warmup
        self.warmup_steps = int(total_steps * warmup)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup_steps = float(self.warmup_steps)
        decay_steps = float(max(1, self.total_steps - self.warmup_steps))
        warmup = self.lr * step / max(1.0, warmup_steps)
        decay = self.lr + (self.min_lr - self.lr) * tf.minimum(1.0, (step - warmup_steps) / decay_steps)
        return tf.where(step < warmup_steps, warmup, decay)

    def get_config(self):
        return {"lr": self.lr, "min_lr": self.min_lr, "total_steps": self.total_steps, "warmup": self.warmup}


# ---------------------------------------------------------------------------------------------
# The training model: Keras' own, plus gradient accumulation
# ---------------------------------------------------------------------------------------------

class AccumulatingModel(keras.Model):
    """A functional keras.Model whose training step can go through a batch in micro-batches.

    With `accumulate` N, each batch is cut into N micro-batches that go forward and backward one
    after the other (the activation memory of one), and their gradients, weighted by their share
    of the batch, are applied once: one step is still one update of the whole batch, so the
    schedule, resuming and the step count do not change. Under a tf.distribute strategy it also
    weights each replica by its share of the global batch, which Keras' own step does not when a
    batch does not split evenly. `loss_denominator(x)` is what the loss averages over (default:
    the examples; e.g. the real tokens, for a loss that is a mean over tokens).
    """

    def __init__(self, *args, accumulate=1, loss_denominator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.accumulate = accumulate
        self.loss_denominator = loss_denominator or (lambda x: tf.cast(tf.shape(tf.nest.flatten(x)[0])[0], tf.float32))

    def train_step(self, data):
        replica = tf.distribute.get_replica_context()
        if self.accumulate == 1 and replica.num_replicas_in_sync == 1:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        parts = tf.minimum(self.accumulate, batch)  # no empty micro-batch, even on a short replica
        # Keras divides each replica's loss by the replica count; `share` below undoes that.
        total = replica.all_reduce(tf.distribute.ReduceOp.SUM, self.loss_denominator(x)) / replica.num_replicas_in_sync

        def micro_step(i, sums):
            start, end = i * batch // parts, (i + 1) * batch // parts
            xi, yi, wi = (tf.nest.map_structure(lambda t: None if t is None else t[start:end], part)
                          for part in (x, y, sample_weight))
            with tf.GradientTape() as tape:
                prediction = self(xi, training=True)
                loss = self.compute_loss(xi, yi, prediction, wi)  # compiled and add_loss losses
            # The optimizer's compute_gradients applies and removes float16 loss scaling.
            gradients = [g for g, _ in self.optimizer.compute_gradients(loss, variables, tape=tape)]
            self.compiled_metrics.update_state(yi, prediction, wi)  # reading them here would fail when mirrored
            share = self.loss_denominator(xi) / total
            # A plain product: tf.math.multiply_no_nan here met a Grappler bug (wrong gradients).
            return i + 1, [s + tf.cast(share, s.dtype) * tf.convert_to_tensor(g) for s, g in zip(sums, gradients)]

        # One micro-step in the graph whatever N is; parallel_iterations=1 runs them one at a time.
        _, sums = tf.while_loop(lambda i, _: i < parts, micro_step,
                                (tf.constant(0), [tf.zeros_like(v) for v in variables]), parallel_iterations=1)
        self.optimizer.apply_gradients(zip(sums, variables))
        return self.get_metrics_result()


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

def best_weights_path(output_dir):
    return os.path.join(output_dir, BEST_WEIGHTS_NAME)


def save_weights_atomically(model, path):
    """Write to a temporary file, then rename: a crash mid-write leaves the previous file whole."""
    temporary_path = path[:-len(".h5")] + ".partial.h5"
    model.save_weights(temporary_path)
    os.replace(temporary_path, path)


def load_best_weights(model, output_dir, script):
    path = best_weights_path(output_dir)
    if not os.path.isfile(path):
        raise UserError("no trained weights at %s: train first with `python %s --output-dir %s`"
                        % (path, script, output_dir))
    model.load_weights(path)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

class TrainingInterrupted(UserError):
    """Raised from a callback at the end of a step, so Keras records no half epoch as done."""

    exit_status = 130  # the shell's status for a process stopped by Ctrl-C


class StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C or SIGTERM: finish the current step, then stop (the resumable state stays)."""

    def __init__(self):
        super().__init__()
        self.previous_handlers = {}

    def on_train_begin(self, logs=None):
        self.signal_name = None
        self.previous_handlers = {
            signum: signal.signal(signum, self._remember) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _remember(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def on_train_batch_end(self, batch, logs=None):
        if self.signal_name:
            raise TrainingInterrupted(self.signal_name)

    def restore_handlers(self):
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)
        self.previous_handlers = {}


class HoldBackFirstStepNoise(keras.callbacks.Callback):
    """TensorFlow's harmless line at the first training step (tokenizer.FIRST_STEP_NOISE), held back
    as its start-up lines are: stderr is caught during that one step and its other lines passed on."""

    def __init__(self, enabled=HOLD_BACK_NOISE):
        super().__init__()
        self.enabled = enabled
        self.held = contextlib.ExitStack()

    def on_train_batch_begin(self, batch, logs=None):
        if self.enabled:
            self.held.enter_context(lines_held_back(FIRST_STEP_NOISE))

    def on_train_batch_end(self, batch, logs=None):
        self.enabled = False
        self.release()

    def release(self):
        """Pass stderr through again (also after a first step that failed)."""
        self.held.close()


class StopOnNaN(keras.callbacks.Callback):
    """A NaN or infinite loss stops training with advice; the best weights so far stay."""

    def __init__(self, lr, path):
        super().__init__()
        self.lr = lr
        self.path = path
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise UserError("the loss became %s at epoch %d, step %d; the best weights so far are kept "
                            "at %s. Try a lower --lr than %g." % (loss, self.epoch + 1, batch + 1, self.path, self.lr))


class ProgressBar(keras.callbacks.Callback):
    """Each epoch's progress with the running loss and the real (non-padding) tokens per second.

    In a terminal, a tqdm bar. Elsewhere (a log file, nohup, a notebook cell that is not a
    terminal) a bar is unreadable, so a plain line at every tenth of the epoch or after 30 s
    without one, whichever comes first: a sign of life within half a minute even in an hour-long
    epoch, and no more than ten lines for a short one.
    """

    LINE_SECONDS = 30

    def __init__(self, batches, epochs, terminal=None, clock=time.monotonic):
        super().__init__()
        self.batches = batches
        self.epochs = epochs
        self.terminal = sys.stderr.isatty() if terminal is None else terminal  # stderr: where tqdm draws
        self.clock = clock
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.terminal:
            self.bar = tqdm(total=len(self.batches), desc="epoch %d/%d" % (epoch + 1, self.epochs),
                            unit="step", dynamic_ncols=True)
        self.start_time = self.last_line_time = self.clock()
        self.last_tenth = 0
        self.start_tokens = (self.batches.real_tokens, self.batches.padded_tokens, self.batches.batches_made)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss", float("nan"))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss="%.4f" % loss, refresh=False)
            return
        step, now = batch + 1, self.clock()
        tenth = 10 * step // len(self.batches)
        if tenth > self.last_tenth or now - self.last_line_time >= self.LINE_SECONDS:
            self.last_tenth, self.last_line_time = tenth, now
            print(self.progress_line(step, loss, now - self.start_time), file=sys.stderr, flush=True)

    def progress_line(self, step, loss, seconds):
        total = len(self.batches)
        # The pipeline prefetches ahead of training: count tokens per batch made, times the steps done.
        real = self.batches.real_tokens - self.start_tokens[0]
        made = self.batches.batches_made - self.start_tokens[2]
        tokens_per_second = real / max(made, 1) * step / max(seconds, 1e-9)
        return "epoch %d/%d: step %d/%d, loss %.4f, %.0f tokens/s, %s left" % (
            self.epoch + 1, self.epochs, step, total, loss, tokens_per_second,
            format_duration(seconds / step * (total - step)))

    def epoch_summary(self):
        seconds = self.clock() - self.start_time
        real = self.batches.real_tokens - self.start_tokens[0]
        padded = self.batches.padded_tokens - self.start_tokens[1]
        return "%.1f s, %.0f tokens/s, %.1f%% padding" % (
            seconds, real / max(seconds, 1e-9), 100.0 * (1 - real / max(padded, 1)))

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()


def format_duration(seconds):
    """`45 s`, `12 min 5 s`, `3 h 20 min`: a time left as a person reads it."""
    seconds = int(round(seconds))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %d s" % divmod(seconds, 60)
    return "%d h %d min" % (seconds // 3600, seconds % 3600 // 60)


class KeepBestWeights(keras.callbacks.Callback):
    """Evaluate on dev after every epoch; weights that beat the best so far replace it."""

    def __init__(self, evaluate, metric_name, output_dir, progress, best=-math.inf):
        super().__init__()
        self.evaluate = evaluate
        self.metric_name = metric_name
        self.path = best_weights_path(output_dir)
        self.state_path = os.path.join(output_dir, RESUME_DIR_NAME, "state.json")
        self.progress = progress
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        summary = self.progress.epoch_summary()
        score = self.evaluate()
        score, other_metrics = score if isinstance(score, tuple) else (score, "")  # e.g. macro-F1 beside accuracy
        note = ""
        if score > self.best:
            self.best = score
            save_weights_atomically(self.model, self.path)
            note = ", saved"
        print("epoch %d: loss %.4f, dev %s %.4f (best %.4f%s)%s, %s"
              % (epoch + 1, (logs or {}).get("loss", float("nan")), self.metric_name, score,
                 self.best, note, ", " + other_metrics if other_metrics else "", summary), flush=True)
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        generators = {name: generator.state.numpy().tolist()
                      for name, generator in dropout_generators(self.model).items()}
        with open(self.state_path + ".partial", "w") as writer:
            json.dump({"epochs_done": epoch + 1, "best": self.best, "dropout_generators": generators}, writer)
        os.replace(self.state_path + ".partial", self.state_path)


def dropout_generators(model):
    """{layer name: its tf.random.Generator} of the model's dropout layers, which Keras leaves out of
    its weights and checkpoints (so a resumed run would draw other masks than the uninterrupted one)."""
    return {layer.name: layer._random_generator._generator for layer in model.submodules
            if getattr(getattr(layer, "_random_generator", None), "_generator", None) is not None}


def train(model, batches, evaluate, args, metric_name, script):
    """`model.fit` for `args.epochs` with the shared callbacks; returns the best dev metric.

    The model must be compiled. `evaluate()` returns the dev metric (higher is better), or the
    metric and a note of other metrics for the epoch line.
    Afterwards the model holds the best weights.
    """
    output_dir = args.output_dir
    strategy = model.distribute_strategy
    if not strategy.extended.should_checkpoint:  # another worker than the chief of a multi-worker run
        output_dir = os.path.join(output_dir, "worker-%d" % strategy.cluster_resolver.task_id)
    resume_dir = os.path.join(output_dir, RESUME_DIR_NAME)
    state_path = os.path.join(resume_dir, "state.json")
    best = -math.inf
    if args.resume:
        if not os.path.isfile(state_path):
            raise UserError("nothing to resume in %s: no interrupted run was saved there" % output_dir)
        with open(state_path) as reader:
            state = json.load(reader)
        batches.epoch, best = state["epochs_done"], state["best"]
        saved_generators = state.get("dropout_generators", {})
        for name, generator in dropout_generators(model).items():
            if name in saved_generators:
                generator.reset(saved_generators[name])  # the masks of the uninterrupted run's next epoch
            else:  # a state saved by an earlier version of these scripts: resumable, but not exactly
                print("note: %s has no state for dropout layer %s: the resumed run will not repeat the "
                      "uninterrupted one exactly" % (state_path, name))
        print("resuming after epoch %d of %d, best dev %s so far %.4f"
              % (batches.epoch, args.epochs, metric_name, best))
    elif os.path.isdir(resume_dir):
        raise UserError("%s holds an interrupted run: add --resume to continue it, or delete %s to "
                        "start over" % (output_dir, resume_dir))
    os.makedirs(output_dir, exist_ok=True)

    first_step = HoldBackFirstStepNoise()
    progress = ProgressBar(batches, args.epochs)
    stop_on_signal = StopOnSignal()
    keep_best_weights = KeepBestWeights(evaluate, metric_name, output_dir, progress, best)
    callbacks = [
        first_step,  # first: its step's lines are passed on before the other callbacks print
        progress,
        StopOnNaN(args.lr, best_weights_path(output_dir)),
        stop_on_signal,
        keep_best_weights,
        # Weights, optimizer state (so the schedule's step) and epoch count, saved every epoch.
        keras.callbacks.BackupAndRestore(resume_dir),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False),
    ]
    try:
        model.fit(batches.dataset(), epochs=args.epochs, callbacks=callbacks, verbose=0)
    except TrainingInterrupted as interruption:
        raise TrainingInterrupted(
            "stopped by %s; the best weights are kept at %s and the last finished epoch in %s. "
            "To continue, run the same command with --resume" % (interruption, best_weights_path(output_dir), resume_dir))
    except tf.errors.ResourceExhaustedError:
        raise UserError("out of memory. Try a smaller --batch-size or --maxlen, --accumulate 2 or more (the same "
                        "updates in less memory), or --mixed-precision on a GPU; the best weights so far are kept "
                        "at %s" % best_weights_path(output_dir))
    finally:
        first_step.release()
        stop_on_signal.restore_handlers()
    shutil.rmtree(resume_dir, ignore_errors=True)  # finished: nothing left to resume
    load_best_weights(model, output_dir, script)
    return keep_best_weights.best
