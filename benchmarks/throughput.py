"""Training throughput of sentiment.py: the blog's input pipeline against ours, one change at a time.

Every row trains the same model (sentiment.py's BERT + Dense(1, sigmoid), Adam, binary
cross-entropy) on the same data (`--data-dir`, sentiment.py's format) for `--warmup-steps`
untimed steps, which absorb tracing and the first compile, then `--steps` timed steps. The rows
are cumulative: each adds one change to the row above it.

    the blog     a Python generator handed to `fit`, random batches padded to their own longest
                 text, float32, no XLA
    tf.data      + fine_tuning.TrainingBatches: a tf.data pipeline that prefetches batches
    bucketing    + batches of texts of similar length, so little of each batch is padding
    xla          + jit_compile=True (XLA compiles once for every new batch width)
    xla-width8   + batch widths rounded up to a multiple of 8, so XLA compiles fewer shapes
    mixed        + mixed precision (bfloat16 on a CPU, float16 on a GPU; --mixed-precision)
    accumulate   + --accumulate 4: the same batch in 4 micro-batches (its point is peak memory),
                 without XLA and rounding, since XLA cannot compile the micro-batch loop

Each row runs in its own process of this script (`--variant NAME`, which prints one JSON line),
so the mixed-precision policy, XLA's caches and the peak memory of one row do not leak into the
next. Printed per row: real (non-padding) tokens per second and its ratio to the blog's, the
padded share of the tokens, the mean and median step time, the batch widths first seen in the
timed steps (each one an XLA compile), and the peak memory: the process's maximum resident set
on a CPU, TensorFlow's peak allocation on a GPU, where the model FLOPs utilisation is printed too.

    python benchmarks/throughput.py                                        # tiny BERT, CPU, minutes
    python benchmarks/throughput.py --bert-dir chinese_L-12_H-768_A-12     # real BERT on a GPU
    python benchmarks/throughput.py --variants blog,bucketing --steps 100
    python benchmarks/throughput.py --bert-base     # BERT-base's shape, random weights: share of matmul peak

`--bert-base` runs instead one row at BERT-base's shape (12 layers, hidden 768, 12 heads, 3,072
intermediate, the real vocabulary; random weights in Google's format, written once into
`.cache/random_bert_base`): a few training steps on fixed 8 x 128 batches, with the real tokens
per second and their model FLOPs as a share of this device's fp32 matmul rate, measured in the
same run with a large `tf.matmul`.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # keras-bert needs Keras 2: TensorFlow's tf-keras, not Keras 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's start-up INFO lines, keep warnings

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from bert_checkpoint import PROJECT_DIR, TINY_BERT_CONFIG, find_checkpoint, write_random_checkpoint_once  # noqa: E402
from fine_tuning import TrainingBatches, UserError, check_sequence_length, epoch_batches, run, set_up_devices  # noqa: E402
from sentiment import (  # noqa: E402
    BLOG_LABELS, SETTINGS, batch_signature, build_model, encode_texts, label_targets, load_data, make_batch)
from tokenizer import OurTokenizer, load_vocab  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Settings: each one is overridden by the flag of the same name.
# ---------------------------------------------------------------------------------------------

BENCHMARK_SETTINGS = dict(
    data_dir=SETTINGS["data_dir"],
    batch_size=32,
    maxlen=100,
    steps=40,
    warmup_steps=5,
    accumulate=4,
    seed=42,
)
LR = 1e-5  # the blog's; the learning rate does not change the time of a step

# (name, label, what it changes): each row keeps the changes of the rows above it.
VARIANTS = [
    ("blog", "the blog: generator, random batches", dict(pipeline="generator", bucket=False, xla=False,
                                                         width_multiple=1, mixed=False, accumulate=1)),
    ("tf.data", "+ tf.data prefetch pipeline", dict(pipeline="tf.data")),
    ("bucketing", "+ length bucketing", dict(bucket=True)),
    ("xla", "+ XLA (jit_compile)", dict(xla=True)),
    ("xla-width8", "+ widths rounded up to 8", dict(width_multiple=8)),
    ("mixed", "+ mixed precision (%s)", dict(mixed=True)),
    # XLA fails to compile AccumulatingModel's micro-batch loop ("tf2xla conversion failed"), so not here.
    ("accumulate", "+ --accumulate %d, same batch, no XLA", dict(accumulate="flag", xla=False, width_multiple=1)),
]

# Google's chinese_L-12_H-768_A-12 config, for the --bert-base row (random weights).
BERT_BASE_CONFIG = dict(TINY_BERT_CONFIG, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                        num_hidden_layers=12, pooler_fc_size=768, pooler_num_attention_heads=12,
                        pooler_size_per_head=128)
BERT_BASE_DIR = os.path.join(PROJECT_DIR, ".cache", "random_bert_base")
BERT_BASE_SETTINGS = dict(batch_size=8, sequence_length=128, warmup_steps=2, steps=5)
MATMUL_SIZE = 4096  # fp32 4096 x 4096 products: large enough to reach the BLAS library's best rate

# Dense 16-bit tensor-core peaks (TFLOP/s) from the vendors' data sheets, for the MFU column.
PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L4": 121, "V100": 125, "T4": 65}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--bert-dir", help="Google BERT folder; default as the scripts: $BERT_DIR, then "
                        "./chinese_L-12_H-768_A-12, then the tiny random BERT")
    parser.add_argument("--data-dir", default=BENCHMARK_SETTINGS["data_dir"],
                        help="train.tsv in sentiment.py's format (default: %(default)s)")
    for name in ("batch_size", "maxlen", "steps", "warmup_steps", "accumulate", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=BENCHMARK_SETTINGS[name],
                            help="default: %(default)s")
    parser.add_argument("--mixed-precision", choices=["float16", "bfloat16"],
                        help="16-bit type of the mixed row (default: float16 on a GPU, bfloat16 on a CPU)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's peak for the MFU column (default: looked up from its name: %s)"
                        % ", ".join("%s %g" % item for item in PEAK_TFLOPS.items()))
    parser.add_argument("--variants", default=",".join(name for name, _, _ in VARIANTS),
                        help="rows to run, comma-separated (default: %(default)s)")
    parser.add_argument("--bert-base", action="store_true",
                        help="instead of the rows: BERT-base's shape with random weights, %(batch_size)d x "
                        "%(sequence_length)d batches, %(steps)d timed steps; tokens/s and the share of the "
                        "measured fp32 matmul rate" % BERT_BASE_SETTINGS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one row, print its JSON line
    return parser


# ---------------------------------------------------------------------------------------------
# One row, in its own process
# ---------------------------------------------------------------------------------------------

def variant_settings(name, accumulate):
    settings = {}
    for variant, _, changes in VARIANTS:
        settings.update(changes)
        if variant == name:
            return dict(settings, accumulate=accumulate if settings["accumulate"] == "flag" else settings["accumulate"])
    raise UserError("unknown variant %r; known: %s" % (name, ", ".join(name for name, _, _ in VARIANTS)))


def step_batches(lengths, batch_size, seed, bucket, count):
    """The index batches of the first `count` steps, epoch after epoch, as both pipelines make them."""
    batches, epoch = [], 0
    while len(batches) < count:
        batches += epoch_batches(lengths, batch_size, seed, epoch, bucket)
        epoch += 1
    return batches[:count]


def token_counts(batches, lengths, width_multiple):
    """(real tokens, padded tokens, width) of each batch: padded to its longest, rounded up to the multiple."""
    counts = []
    for indices in batches:
        width = -(-max(lengths[i] for i in indices) // width_multiple) * width_multiple
        counts.append((sum(lengths[i] for i in indices), len(indices) * width, width))
    return counts


def widened(batch, multiple):
    """The batch with its token and segment ids padded on the right to a multiple of `multiple`."""
    (token_ids, segment_ids), labels = batch
    extra = -token_ids.shape[1] % multiple
    return (np.pad(token_ids, ((0, 0), (0, extra))), np.pad(segment_ids, ((0, 0), (0, extra)))), labels


def training_flops(model, checkpoint, sequence_lengths):
    """Training FLOPs of one step: 6 x non-embedding params x real tokens + 12 x layers x hidden x length^2 per text."""
    bert = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    embedding_params = sum(layer.count_params() for layer in bert.layers if layer.name.startswith("Embedding-"))
    config = checkpoint.config()
    lengths = np.asarray(sequence_lengths, dtype=np.float64)
    return (6.0 * (model.count_params() - embedding_params) * lengths.sum()
            + 12.0 * config["num_hidden_layers"] * config["hidden_size"] * np.square(lengths).sum())


class StepTimer(keras.callbacks.Callback):
    """The time at the end of every step; a batch-level callback also makes Keras wait for each step."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def measure(args):
    """Train one variant for the warm-up and timed steps; return its measurements."""
    settings = variant_settings(args.variant, args.accumulate)
    checkpoint = find_checkpoint(args.bert_dir)
    check_sequence_length(args.maxlen + 2 + 7, checkpoint)  # + [CLS], [SEP] and rounding up to 8
    examples = load_data(args.data_dir, args.seed)[0]["train"]
    encoded = encode_texts(OurTokenizer(load_vocab(checkpoint.vocab_path)), [example.texts for example in examples],
                           args.maxlen, "train.tsv")
    targets = label_targets(BLOG_LABELS, [example.label for example in examples])
    lengths = [len(token_ids) for token_ids, _ in encoded]
    total_steps = args.warmup_steps + args.steps

    gpus = tf.config.list_physical_devices("GPU")
    precision = args.mixed_precision or ("float16" if gpus else "bfloat16")
    strategy = set_up_devices(argparse.Namespace(mixed_precision=precision if settings["mixed"] else None,
                                                 strategy="one-device"))
    with strategy.scope():
        model = build_model(checkpoint, accumulate=settings["accumulate"])
        model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(LR), metrics=["accuracy"],
                      jit_compile=settings["xla"])

    def batch_of(indices):
        return widened(make_batch(encoded, targets, indices), settings["width_multiple"])

    if settings["pipeline"] == "generator":
        def blog_generator():  # the blog's data_generator.__iter__: forever, a new shuffle each epoch
            epoch = 0
            while True:
                for indices in epoch_batches(lengths, args.batch_size, args.seed, epoch, bucket=False):
                    yield batch_of(indices)
                epoch += 1
        data = blog_generator()
    else:
        data = TrainingBatches(lengths, batch_of, batch_signature(BLOG_LABELS), args.batch_size, args.seed,
                               bucket=settings["bucket"]).dataset().repeat()

    timer = StepTimer()
    model.fit(data, steps_per_epoch=total_steps, epochs=1, callbacks=[timer], verbose=0)

    # Both pipelines yield these batches in this order, so the tokens of step i are known exactly.
    batches = step_batches(lengths, args.batch_size, args.seed, settings["bucket"], total_steps)
    real, padded, widths = zip(*token_counts(batches, lengths, settings["width_multiple"]))
    sequence_lengths = [lengths[i] for indices in batches[args.warmup_steps:] for i in indices]
    seconds = timer.ends[-1] - timer.ends[args.warmup_steps - 1]
    step_seconds = np.diff(timer.ends[args.warmup_steps - 1:])
    if gpus:
        peak_bytes = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    else:
        peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
        device = "CPU"
    return dict(
        variant=args.variant, device=device, precision=precision, accumulate=settings["accumulate"],
        seconds=seconds, steps=args.steps,
        real_tokens=sum(real[args.warmup_steps:]), padded_tokens=sum(padded[args.warmup_steps:]),
        mean_step_ms=1000 * seconds / args.steps, median_step_ms=1000 * statistics.median(step_seconds),
        new_widths=len(set(widths[args.warmup_steps:]) - set(widths[:args.warmup_steps])),
        peak_mb=peak_bytes / 2 ** 20,
        flops=training_flops(model, checkpoint, sequence_lengths),
    )


# ---------------------------------------------------------------------------------------------
# BERT-base's shape against the device's matmul rate
# ---------------------------------------------------------------------------------------------

def random_bert_base():
    """BERT-base with random weights in Google's format (about 400 MB), written once into .cache/."""
    write_random_checkpoint_once(BERT_BASE_DIR, BERT_BASE_CONFIG)
    return find_checkpoint(BERT_BASE_DIR)


def matmul_flops_per_second(size=MATMUL_SIZE, repeats=5):
    """The best rate of `repeats` fp32 size x size matrix products (after one to warm up), in FLOP/s."""
    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    best = math.inf
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        tf.matmul(a, b)[0, 0].numpy()  # reading one element waits for the whole product
        if repeat:
            best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best


def measure_bert_base():
    """Train BERT-base's shape on fixed full batches of random tokens; tokens/s and share of the matmul rate."""
    settings = BERT_BASE_SETTINGS
    checkpoint = random_bert_base()
    peak = matmul_flops_per_second()
    model = build_model(checkpoint)
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(LR))
    rng = np.random.default_rng(0)
    shape = (settings["batch_size"], settings["sequence_length"])
    token_ids = rng.integers(1, checkpoint.config()["vocab_size"], shape)  # no padding: every token is real
    batch = ((token_ids, np.zeros(shape, np.int64)), rng.integers(0, 2, (shape[0], 1)).astype(np.float32))
    timer = StepTimer()
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=settings["warmup_steps"] + settings["steps"],
              epochs=1, callbacks=[timer], verbose=0)
    seconds = timer.ends[-1] - timer.ends[settings["warmup_steps"] - 1]
    flops = training_flops(model, checkpoint, [shape[1]] * shape[0] * settings["steps"])
    return dict(tensorflow=tf.__version__, tokens_per_second=shape[0] * shape[1] * settings["steps"] / seconds,
                step_ms=1000 * seconds / settings["steps"], model_flops_per_second=flops / seconds,
                matmul_flops_per_second=peak)


def print_bert_base_row(row):
    print("| TensorFlow | real tokens/s | step ms | model GFLOP/s | fp32 matmul GFLOP/s | share of matmul rate |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("| %s | %.0f | %.0f | %.1f | %.1f | %.0f%% |" % (
        row["tensorflow"], row["tokens_per_second"], row["step_ms"], row["model_flops_per_second"] / 1e9,
        row["matmul_flops_per_second"] / 1e9, 100.0 * row["model_flops_per_second"] / row["matmul_flops_per_second"]),
        flush=True)


# ---------------------------------------------------------------------------------------------
# The table: every row in a fresh process
# ---------------------------------------------------------------------------------------------

def run_variant(name, args):
    """Run one row in a child process; its measurements, or None after printing why it failed."""
    command = [sys.executable, os.path.abspath(__file__), "--variant", name, "--bert-dir", args.bert_dir,
               "--data-dir", args.data_dir]
    for flag in ("batch_size", "maxlen", "steps", "warmup_steps", "accumulate", "seed"):
        command += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if args.mixed_precision:
        command += ["--mixed-precision", args.mixed_precision]
    child = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode or not lines:
        print("%s failed (exit status %d):\n%s" % (name, child.returncode, child.stderr[-3000:]), file=sys.stderr)
        return None
    return json.loads(lines[-1])


def peak_tflops(args, device):
    if args.peak_tflops:
        return args.peak_tflops
    return next((peak for card, peak in PEAK_TFLOPS.items() if card in device), None)


def print_table(rows, args):
    blog = next((row for row in rows if row["variant"] == "blog"), None)
    peak = peak_tflops(args, rows[0]["device"]) if rows and rows[0]["device"] != "CPU" else None
    labels = {name: label for name, label, _ in VARIANTS}
    header = ["variant", "real tokens/s", "vs blog", "padding", "step ms", "median ms", "new widths", "peak MB"]
    if peak:
        header.append("MFU")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        label = labels[row["variant"]]
        label = label % (row["precision"] if row["variant"] == "mixed" else row["accumulate"]) if "%" in label else label
        tokens_per_second = row["real_tokens"] / row["seconds"]
        cells = [label, "%.0f" % tokens_per_second,
                 "%.2fx" % (tokens_per_second * blog["seconds"] / blog["real_tokens"]) if blog else "-",
                 "%.1f%%" % (100.0 * (1 - row["real_tokens"] / row["padded_tokens"])),
                 "%.0f" % row["mean_step_ms"], "%.0f" % row["median_step_ms"], str(row["new_widths"]),
                 "%.0f" % row["peak_mb"]]
        if peak:
            cells.append("%.1f%%" % (100.0 * row["flops"] / row["seconds"] / (peak * 1e12)))
        print("| " + " | ".join(cells) + " |", flush=True)
    if rows and rows[0]["device"] != "CPU" and not peak:
        print("no MFU: unknown peak for %s; give --peak-tflops" % rows[0]["device"])


def main(argv=None):
    args = build_parser().parse_args(argv)
    if min(args.batch_size, args.maxlen, args.steps, args.warmup_steps, args.accumulate) < 1:
        raise UserError("--batch-size, --maxlen, --steps, --warmup-steps and --accumulate must be at least 1")
    if args.variant:
        print(json.dumps(measure(args)), flush=True)
        return
    if args.bert_base:
        print("random BERT-base weights in %s; batch %d x %d tokens; %d timed steps after %d warm-up steps; "
              "fp32 matmul rate of %d x %d products" % (
                  BERT_BASE_DIR, BERT_BASE_SETTINGS["batch_size"], BERT_BASE_SETTINGS["sequence_length"],
                  BERT_BASE_SETTINGS["steps"], BERT_BASE_SETTINGS["warmup_steps"], MATMUL_SIZE, MATMUL_SIZE), flush=True)
        start = time.time()
        print_bert_base_row(measure_bert_base())
        print("wall time %.0f s" % (time.time() - start))
        return
    checkpoint = find_checkpoint(args.bert_dir)  # once here, so the children need not make the tiny one
    args.bert_dir = checkpoint.bert_dir
    names = [name for name in args.variants.split(",") if name]
    for name in names:
        variant_settings(name, args.accumulate)  # an unknown name fails before anything runs
    print("%s checkpoint %s; data %s; batch %d, maxlen %d; %d timed steps after %d warm-up steps; TensorFlow %s"
          % ("tiny random" if checkpoint.is_tiny else "BERT", checkpoint.bert_dir, args.data_dir,
             args.batch_size, args.maxlen, args.steps, args.warmup_steps, tf.__version__), flush=True)
    start = time.time()
    rows = []
    for name in names:
        row_start = time.time()
        row = run_variant(name, args)
        if row:
            rows.append(row)
            print("%s: %.0f s" % (name, time.time() - row_start), file=sys.stderr, flush=True)
    print("device: %s" % (rows[0]["device"] if rows else "?"))
    print_table(rows, args)
    print("wall time %.0f s" % (time.time() - start))


if __name__ == "__main__":
    run(main)
