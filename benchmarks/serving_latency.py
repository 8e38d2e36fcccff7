"""Time to answer one batch of reviews: sentiment.py's export against its --predict path.

Both answer the same `--batch-size` (32) reviews of the bundled dev set, raw strings in, positive
probabilities out, in one process, alternating, after `--warmup` untimed calls of each:

    export     tf.saved_model.load(--export).signatures["serving_default"](text=...): the
               tokenizer, the model and the answer all in the graph
    --predict  sentiment.py's own path: OurTokenizer in Python, then label_probabilities
               on the Keras model with the best weights of --output-dir

Printed: the median and spread of `--rounds` timed calls of each, and the largest difference
between their answers.

    python sentiment.py --epochs 1 && python sentiment.py --export outputs/sentiment/export
    python benchmarks/serving_latency.py --export outputs/sentiment/export
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
os.environ["TF_USE_LEGACY_KERAS"] = "1"  # keras-bert needs Keras 2: TensorFlow's tf-keras, not Keras 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # hide TensorFlow's start-up INFO lines, keep warnings

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import sentiment  # noqa: E402
from classification_data import read_examples  # noqa: E402
from bert_checkpoint import find_checkpoint  # noqa: E402
from fine_tuning import load_best_weights, run  # noqa: E402
from serving import folder_megabytes  # noqa: E402
from tokenizer import OurTokenizer, load_vocab  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="a folder written by sentiment.py --export")
    parser.add_argument("--output-dir", default=sentiment.SETTINGS["output_dir"], help="default: %(default)s")
    parser.add_argument("--bert-dir")
    parser.add_argument("--maxlen", type=int, default=sentiment.SETTINGS["maxlen"], help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--warmup", type=int, default=3, help="default: %(default)s")
    parser.add_argument("--rounds", type=int, default=20, help="default: %(default)s")
    args = parser.parse_args(argv)

    dev = read_examples(os.path.join(sentiment.SETTINGS["data_dir"], "dev.tsv"))
    texts = [example.texts[0] for example in dev[:args.batch_size]]
    serve = tf.saved_model.load(args.export).signatures["serving_default"]
    checkpoint = find_checkpoint(args.bert_dir)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    model = sentiment.build_model(checkpoint)
    load_best_weights(model, args.output_dir, "sentiment.py")

    def exported():
        return serve(text=tf.constant(texts))["positive_probability"].numpy()

    def predict_path():
        encoded = sentiment.encode_texts(tokenizer, texts, args.maxlen, "--predict")
        return sentiment.label_probabilities(model, encoded, args.batch_size)[:, 1]

    seconds = {exported: [], predict_path: []}
    for round_ in range(args.warmup + args.rounds):
        for answer in (exported, predict_path) if round_ % 2 == 0 else (predict_path, exported):
            start = time.perf_counter()
            answer()
            if round_ >= args.warmup:
                seconds[answer].append(time.perf_counter() - start)
    print("batch of %d bundled reviews, %d calls each after %d warm-up calls, alternating"
          % (len(texts), args.rounds, args.warmup))
    for name, answer in (("export", exported), ("--predict path", predict_path)):
        times = sorted(seconds[answer])
        print("%-15s median %.1f ms (fastest %.1f, slowest %.1f)"
              % (name, 1000 * statistics.median(times), 1000 * times[0], 1000 * times[-1]))
    print("largest difference between their probabilities: %.2g" % np.max(np.abs(exported() - predict_path())))
    print("export size: %.1f MB" % folder_megabytes(args.export))


if __name__ == "__main__":
    run(main)
