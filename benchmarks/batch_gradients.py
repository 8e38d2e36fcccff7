"""Why length-sorted batches can slow span learning: their gradients against random batches'.

Trains subject_extraction.py's model for a few epochs (to where learning stalls), then, at those
weights and without updating them, computes the gradient of every full batch of one epoch twice:
once for length-sorted batches (`--bucket`) and once for the blog's random batches. It reports,
for each batching:
    noise           the mean squared distance of a batch gradient from the epoch's mean gradient;
    effective size  how many random examples a sorted batch of `--batch-size` is worth
                    (batch size x random noise / sorted noise): below the batch size, sorted
                    batches are noisier, a smaller effective batch at the same learning rate;
    agreement       the cosine between each group's mean gradient (sorted batches grouped by how
                    many companies their texts name) and the gradient of the whole epoch: a
                    group that pulls against the rest would show a low or negative cosine;
and how often two examples that share a batch share one again the next epoch (sorted batches
on a set smaller than their sorting window are nearly the same every epoch).

    python benchmarks/batch_gradients.py                                   # bundled sample
    python benchmarks/batch_gradients.py --data-dir my_ccks --warmup-epochs 3
"""
import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # keras-bert needs Keras 2: TensorFlow's tf-keras, not Keras 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's start-up INFO lines, keep warnings

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

import subject_extraction as se  # noqa: E402
from bert_checkpoint import find_checkpoint  # noqa: E402
from fine_tuning import TrainingBatches, epoch_batches  # noqa: E402
from tokenizer import OurTokenizer, load_vocab  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--bert-dir", help="default as the scripts: $BERT_DIR, ./chinese_L-12_H-768_A-12, tiny BERT")
    parser.add_argument("--data-dir", default=se.SETTINGS["data_dir"], help="default: %(default)s")
    parser.add_argument("--warmup-epochs", type=int, default=2, help="length-sorted epochs trained first (default: 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=1)
    return parser


def batch_of(indices):
    """For each example, the index of the batch that holds it."""
    owner = np.empty(sum(len(batch) for batch in indices), dtype=int)
    for number, batch in enumerate(indices):
        owner[batch] = number
    return owner


def batch_mates_kept(lengths, batch_size, seed, bucket):
    """The share of pairs batched together in one epoch that are batched together again the next."""
    first = batch_of(epoch_batches(lengths, batch_size, seed, 0, bucket))
    second = batch_of(epoch_batches(lengths, batch_size, seed, 1, bucket))
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(lengths), (2, 200000))
    together = (first[i] == first[j]) & (i != j)
    return float(np.mean(second[i[together]] == second[j[together]]))


def main(argv=None):
    args = build_parser().parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    checkpoint = find_checkpoint(args.bert_dir)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    data = se.load_data(args.data_dir, None, args.seed)
    encoded = se.encode_questions(tokenizer, data["train"], se.SETTINGS["maxlen"], "train")
    positions = se.answer_positions(encoded, data["train"], se.SETTINGS["maxlen"], "train")
    trainable = sorted(positions)
    lengths = [len(encoded[i][0]) for i in trainable]
    texts = collections.Counter(example.text for example in data["train"] + data["dev"])
    companies = np.array([texts[data["train"][i].text] for i in trainable])  # each company is one question

    def make_batch(indices):
        return se.make_batch(encoded, positions, [trainable[i] for i in indices])

    model, train_model = se.build_model(checkpoint)
    train_model.compile(optimizer=keras.optimizers.Adam(args.lr))
    warmup = TrainingBatches(lengths, make_batch, se.BATCH_SIGNATURE, args.batch_size, args.seed, bucket=True)
    train_model.fit(warmup.dataset(), epochs=args.warmup_epochs, verbose=0)

    variables = train_model.trainable_variables

    @tf.function(reduce_retracing=True)
    def gradient(inputs):
        with tf.GradientTape() as tape:
            train_model(inputs, training=False)  # no dropout: the gradient of the batch itself
            loss = tf.add_n(train_model.losses)
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    gradients, groups = {}, {}
    for name, bucket in (("length-sorted", True), ("random", False)):
        batches = [batch for batch in epoch_batches(lengths, args.batch_size, args.seed, 99, bucket)
                   if len(batch) == args.batch_size]
        gradients[name] = np.stack([np.concatenate([g.numpy().ravel() for g in gradient(make_batch(batch)[0])])
                                    for batch in batches])
        groups[name] = np.array([companies[batch].mean() for batch in batches])
    whole = np.concatenate(list(gradients.values())).mean(0)

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    noise = {name: float(np.mean(np.sum((g - g.mean(0)) ** 2, 1))) for name, g in gradients.items()}
    print("after %d length-sorted epochs at lr %g, %d batches of %d per batching:"
          % (args.warmup_epochs, args.lr, len(gradients["random"]), args.batch_size))
    for name, g in gradients.items():
        print("  %-13s noise %.4g, median cosine of a batch with the whole epoch %.3f, batch-mates kept next epoch %.2f"
              % (name, noise[name], np.median([cosine(row, whole) for row in g]),
                 batch_mates_kept(lengths, args.batch_size, args.seed, name == "length-sorted")))
    print("  a length-sorted batch of %d is worth %.1f random examples"
          % (args.batch_size, args.batch_size * noise["random"] / noise["length-sorted"]))
    for count in sorted(set(np.rint(groups["length-sorted"]).astype(int))):
        chosen = np.rint(groups["length-sorted"]).astype(int) == count
        print("  length-sorted batches whose texts name ~%d companies: %d, cosine of their mean gradient with "
              "the whole epoch %.3f" % (count, chosen.sum(), cosine(gradients["length-sorted"][chosen].mean(0), whole)))


if __name__ == "__main__":
    main()
