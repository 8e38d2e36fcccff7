"""Gradient accumulation, mixed precision and tf.distribute give the training they promise.

Exactness checks need a model without dropout: a copy of the tiny checkpoint whose config says
dropout 0 (the scripts take dropout from the checkpoint's config).
"""
import argparse
import importlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import sentiment
import synthetic
from fine_tuning import set_up_devices, train
from synthetic import sentiment_examples, write_sentiment
from tokenizer import OurTokenizer, load_vocab

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def no_dropout_checkpoint(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("no_dropout") / "bert"
    shutil.copytree(tiny_checkpoint.bert_dir, folder)
    config = json.loads((folder / "bert_config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "bert_config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """99 training texts: with batch 16 the last batch has 3, which two replicas split unevenly."""
    folder = tmp_path_factory.mktemp("sentiment")
    write_sentiment(str(folder), 110, seed=3)
    return str(folder)


def weights_in(path):
    """All arrays of a Keras .h5 weights file, in a fixed order."""
    arrays = []
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset) else None)
    return [array for _, array in sorted(arrays, key=lambda pair: pair[0])]


def assert_same_weights(path_a, path_b, atol):
    a, b = weights_in(path_a), weights_in(path_b)
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=atol)


def record_batch_sizes(loss_denominator, path):
    """loss_denominator that also appends the size of each batch it is given to `path`, from inside the graph."""

    def recorded(x):
        tf.print(tf.shape(tf.nest.flatten(x)[0])[0], output_stream="file://%s" % path)
        return loss_denominator(x)

    return recorded


def test_accumulating_four_micro_batches_makes_the_update_of_the_whole_batch(no_dropout_checkpoint, tmp_path):
    from bert_checkpoint import BertCheckpoint

    checkpoint = BertCheckpoint(no_dropout_checkpoint)
    tokenizer = OurTokenizer(load_vocab(checkpoint.vocab_path))
    examples = sentiment_examples(16, seed=5)
    encoded = sentiment.encode_texts(tokenizer, [text for text, _ in examples], 100, "test")
    targets = sentiment.label_targets(sentiment.BLOG_LABELS, [str(label) for _, label in examples])
    inputs, labels = sentiment.make_batch(encoded, targets, np.arange(16))
    updated = []
    for accumulate in (1, 4):
        keras.utils.set_random_seed(0)
        model = sentiment.build_model(checkpoint, accumulate=accumulate)
        model.loss_denominator = record_batch_sizes(model.loss_denominator, tmp_path / "sizes")
        model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.5))
        before = [w.copy() for w in model.get_weights()]
        model.train_on_batch(list(inputs), labels)
        updated.append([w - b for w, b in zip(model.get_weights(), before)])
    # Inside the step: the batch once (its loss share), then 4 micro-batches; one pass of 16 makes the same update
    assert sorted(map(int, (tmp_path / "sizes").read_text().split())) == sorted([16] + [16 // 4] * 4)
    largest_update = max(np.abs(u).max() for u in updated[0])
    assert largest_update > 1e-2  # the step did move the weights
    for whole, accumulated in zip(*updated):
        np.testing.assert_allclose(accumulated, whole, atol=1e-5)


@pytest.fixture
def global_policy_restored(monkeypatch):
    """--mixed-precision sets a process-wide Keras policy and attention call: undone after the test."""
    from keras_self_attention import ScaledDotProductAttention

    monkeypatch.setattr(ScaledDotProductAttention, "call", ScaledDotProductAttention.call)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["bfloat16"])
def test_mixed_precision_computes_bert_in_16_bits_and_the_head_loss_and_weights_in_float32(
        tmp_path, no_dropout_checkpoint, data_dir, policy, global_policy_restored, monkeypatch, capsys):
    trained = []

    def train_and_keep(model, batches, *args):
        trained.append((model, batches))
        return train(model, batches, *args)

    monkeypatch.setattr(sentiment, "train", train_and_keep)
    sentiment.main(["--bert-dir", no_dropout_checkpoint, "--data-dir", data_dir, "--output-dir", str(tmp_path),
                    "--epochs", "2", "--batch-size", "16", "--lr", "1e-3", "--mixed-precision", policy])
    (model, batches), = trained
    bert = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert {layer.compute_dtype for layer in bert.layers if not isinstance(layer, keras.layers.InputLayer)} == {policy}
    assert bert.output.dtype == policy
    assert model.get_layer("positive_probability").compute_dtype == "float32" and model.output.dtype == "float32"
    x, y = next(iter(batches.dataset()))
    assert model.compute_loss(x, y, model(x, training=True)).dtype == "float32"

    losses = [float(line.split("loss ")[1].split(",")[0])
              for line in capsys.readouterr().out.split("\n") if line.startswith("epoch ")]
    assert len(losses) == 2 and np.isfinite(losses).all() and losses[1] < losses[0]
    assert {array.dtype for array in weights_in(str(tmp_path / "best_weights.h5"))} == {np.dtype(np.float32)}


@pytest.mark.parametrize("script", ["relation_extraction", "subject_extraction"])
def test_mixed_precision_keeps_every_head_output_and_loss_of_the_span_scripts_in_float32(
        tiny_checkpoint, global_policy_restored, script):
    module = importlib.import_module(script)
    set_up_devices(argparse.Namespace(mixed_precision="bfloat16", strategy="one-device", batch_size=16))
    # Both return the training model last: it holds the loss.
    models = module.build_models(tiny_checkpoint, 3) if script == "relation_extraction" else module.build_model(
        tiny_checkpoint)
    bert = next(layer for layer in models[-1].layers if isinstance(layer, keras.Model))
    assert bert.output.dtype == "bfloat16"
    heads = [layer for model in models for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert heads and {layer.compute_dtype for layer in heads} == {"float32"}
    assert {output.dtype for model in models for output in model.outputs} == {tf.float32}
    assert models[-1].losses and {loss.dtype for loss in models[-1].losses} == {tf.float32}


SPEED_FLAGS = {  # --xla cannot go with --accumulate: two runs
    "--accumulate 2 --bucket --mixed-precision bfloat16 --strategy mirrored":
        dict(accumulate=2, bucket=True, bert_dtype="bfloat16", mirrored=True, xla=False),
    "--xla": dict(accumulate=1, bucket=False, bert_dtype="float32", mirrored=False, xla=True),
}


class TrainingReached(Exception):
    """Raised where a script's main would start training."""


@pytest.mark.parametrize("flags", SPEED_FLAGS)
@pytest.mark.parametrize("script", ["sentiment", "relation_extraction", "subject_extraction"])
def test_every_script_hands_the_speed_flags_to_its_training_model_and_batches(
        tiny_checkpoint, tmp_path, global_policy_restored, monkeypatch, script, flags):
    module = importlib.import_module(script)
    synthetic.WRITERS[script.split("_")[0]](str(tmp_path), 40, seed=1)
    reached = {}

    def stop_at_training(model, batches, *args):  # what main built is all this test needs
        bert = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        reached.update(accumulate=model.accumulate, bucket=batches.bucket, bert_dtype=bert.output.dtype.name,
                       mirrored=isinstance(model.distribute_strategy, tf.distribute.MirroredStrategy),
                       xla=model.jit_compile)
        raise TrainingReached

    monkeypatch.setattr(module, "train", stop_at_training)
    with pytest.raises(TrainingReached):
        module.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path),
                     "--output-dir", str(tmp_path / "out")] + flags.split())
    assert reached == SPEED_FLAGS[flags]


OBSERVED_RUN = textwrap.dedent("""
    import sys
    import tensorflow as tf
    if "mirrored" in sys.argv:  # two logical CPUs to mirror over
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import fine_tuning
    import sentiment
    train_step = fine_tuning.AccumulatingModel.train_step

    def observed_train_step(self, data):
        # What each replica really gets: a model built outside strategy.scope() trains on one device.
        tf.print("train step:", self.distribute_strategy.num_replicas_in_sync,
                 tf.distribute.get_replica_context().num_replicas_in_sync, tf.shape(data[1])[0])
        return train_step(self, data)

    fine_tuning.AccumulatingModel.train_step = observed_train_step
    sentiment.main(sys.argv[1:])
""")


def observed_steps(output):
    """(replicas of the model, replicas in the step, examples on this replica) of each step of each replica."""
    return [tuple(map(int, line.split()[2:])) for line in output.split("\n") if line.startswith("train step:")]


def train_size(data_dir):
    return len(sentiment.load_data(data_dir, seed=sentiment.SETTINGS["seed"])[0]["train"])


def test_mirrored_over_two_devices_trains_as_one_device_does(tmp_path, no_dropout_checkpoint, data_dir):
    examples = train_size(data_dir)
    for strategy in ("one-device", "mirrored"):
        result = subprocess.run(
            [sys.executable, "-c", OBSERVED_RUN, "--bert-dir", no_dropout_checkpoint, "--data-dir", data_dir,
             "--output-dir", str(tmp_path / strategy), "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
             "--strategy", strategy], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        steps = observed_steps(result.stderr)
        replicas = 2 if strategy == "mirrored" else 1
        # Each step on every replica, each replica a share of the batch of 16: all of the data, once.
        assert {(model, context) for model, context, _ in steps} == {(replicas, replicas)}
        assert len(steps) == replicas * math.ceil(examples / 16)
        assert max(batch for _, _, batch in steps) == 16 // replicas
        assert sum(batch for _, _, batch in steps) == examples
    assert_same_weights(str(tmp_path / "one-device" / "best_weights.h5"),
                        str(tmp_path / "mirrored" / "best_weights.h5"), atol=1e-4)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_on_localhost_finish_with_identical_weights(tmp_path, no_dropout_checkpoint, data_dir):
    workers = ["127.0.0.1:%d" % port for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        log = open(tmp_path / ("worker%d.log" % index), "w")
        processes.append(subprocess.Popen(
            [sys.executable, "-c", OBSERVED_RUN, "--bert-dir", no_dropout_checkpoint, "--data-dir", data_dir,
             "--output-dir", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "16", "--lr", "1e-3",
             "--strategy", "multi-worker"],
            cwd=PROJECT_DIR, env=dict(os.environ, TF_CONFIG=json.dumps(tf_config)),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        codes = [process.wait(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, 9)  # only our workers: each leads its own process group
    logs = [(tmp_path / ("worker%d.log" % index)).read_text() for index in range(2)]
    assert codes == [0, 0], logs
    assert all("multi-worker strategy: 2 replicas" in log for log in logs)
    steps, examples = [observed_steps(log) for log in logs], train_size(data_dir)
    # One replica per worker, each a share of every batch of 16: between them all of the data, once.
    assert all({(model, context) for model, context, _ in worker} == {(2, 2)} for worker in steps)
    assert [len(worker) for worker in steps] == [math.ceil(examples / 16)] * 2
    assert max(batch for worker in steps for _, _, batch in worker) == 16 // 2
    assert sum(batch for worker in steps for _, _, batch in worker) == examples
    assert_same_weights(str(tmp_path / "out" / "best_weights.h5"),
                        str(tmp_path / "out" / "worker-1" / "best_weights.h5"), atol=1e-6)
