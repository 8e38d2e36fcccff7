"""The shared plumbing: padding, bucketed batches, the warmup schedule, atomic weights, data files."""
import importlib
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import fine_tuning
from fine_tuning import UserError, WarmupThenDecay, epoch_batches, pad, read_data_file, save_weights_atomically


def test_pad_fills_to_the_longest_sequence_of_the_batch_only():
    assert pad([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [4, 0, 0]]
    labels = pad([np.ones((2, 3)), np.ones((1, 3))])
    assert labels.shape == (2, 2, 3) and labels[1, 1].tolist() == [0, 0, 0]


@pytest.mark.parametrize("bucket", [True, False])
def test_every_example_appears_exactly_once_per_epoch_in_a_new_order(bucket):
    lengths = np.random.default_rng(0).integers(5, 300, size=1003)
    first = epoch_batches(lengths, 32, seed=1, epoch=0, bucket=bucket)
    second = epoch_batches(lengths, 32, seed=1, epoch=1, bucket=bucket)
    for batches in (first, second):
        assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
        assert all(len(batch) <= 32 for batch in batches)
    assert np.concatenate(first).tolist() != np.concatenate(second).tolist()
    again = epoch_batches(lengths, 32, seed=1, epoch=0, bucket=bucket)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def padding_share(lengths, batches):
    return 1 - sum(lengths[b].sum() for b in batches) / sum(lengths[b].max() * len(b) for b in batches)


def test_bucketing_cuts_padding_to_a_few_percent_and_still_shuffles_the_batches():
    lengths = np.clip(np.random.default_rng(0).lognormal(4.2, 0.6, size=5000).astype(int), 5, 130)
    random_share = padding_share(lengths, epoch_batches(lengths, 32, 0, 0, bucket=False))
    bucketed = epoch_batches(lengths, 32, 0, 0, bucket=True)
    assert random_share > 0.3
    assert padding_share(lengths, bucketed) < 0.05
    # In shuffled order, not short to long: half the steps to a longer batch, not nearly all
    longest = [lengths[batch].max() for batch in bucketed]
    assert np.mean(np.diff(longest) >= 0) < 0.75


@pytest.mark.parametrize("script", ["sentiment", "relation_extraction", "subject_extraction", "ner"])
def test_every_script_batches_at_random_as_the_blog_unless_asked_to_bucket(script):
    # Measured: length-sorted batches reached the dev target in more epochs (README, "Batching: time to accuracy").
    parser = importlib.import_module(script).build_parser()
    assert parser.parse_args([]).bucket is False
    assert parser.parse_args(["--bucket"]).bucket is True
    assert parser.parse_args(["--no-bucket"]).bucket is False


def test_span_and_ner_heads_start_as_bert_initialises_its_layers_not_as_keras_dense(tiny_checkpoint):
    import ner
    import relation_extraction
    import subject_extraction

    models = {"subject": subject_extraction.build_model(tiny_checkpoint)[1],
              "relation": relation_extraction.build_models(tiny_checkpoint, 5)[2],
              "ner": ner.build_model(tiny_checkpoint, 9)[1]}
    bert_layers = {layer.name for layer in subject_extraction.load_bert(tiny_checkpoint).layers}
    for name, model in models.items():
        kernels = [layer.kernel.numpy() for layer in model.layers
                   if isinstance(layer, keras.layers.Dense) and layer.name not in bert_layers]
        assert kernels, name
        for kernel in kernels:  # Glorot over the tiny BERT's 128 features would be 0.09 to 0.12 wide
            assert 0.01 < kernel.std() < 0.025 and np.abs(kernel).max() <= 0.04 + 1e-6, name


def test_schedule_warms_up_over_its_share_of_the_steps_then_decays_to_min_lr_by_the_last():
    schedule = WarmupThenDecay(lr=5e-5, min_lr=1e-5, total_steps=300, warmup=0.1)
    values = [float(schedule(step)) for step in (0, 15, 30, 165, 300, 1000)]
    np.testing.assert_allclose(values, [0, 2.5e-5, 5e-5, 3e-5, 1e-5, 1e-5], rtol=1e-6)


def test_schedule_without_warmup_starts_at_lr_and_decays_from_the_first_step():
    schedule = WarmupThenDecay(lr=5e-5, min_lr=1e-5, total_steps=300, warmup=0)
    values = [float(schedule(step)) for step in (0, 1, 150, 300, 1000)]
    np.testing.assert_allclose(values, [5e-5, 5e-5 - 4e-5 / 300, 3e-5, 1e-5, 1e-5], rtol=1e-6)


def test_a_crash_while_saving_leaves_the_previous_weights_whole(tmp_path, monkeypatch):
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    path = str(tmp_path / "best_weights.h5")
    save_weights_atomically(model, path)
    saved = open(path, "rb").read()

    def crash_midway(filepath, *args, **kwargs):
        open(filepath, "wb").write(b"half a file")
        raise OSError("disk full")

    model.set_weights([w + 1 for w in model.get_weights()])
    monkeypatch.setattr(model, "save_weights", crash_midway)
    with pytest.raises(OSError):
        save_weights_atomically(model, path)
    assert open(path, "rb").read() == saved


def test_data_file_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_data_file(str(tmp_path / "absent.tsv"))
    (tmp_path / "empty.tsv").write_text(" \n", encoding="utf-8")
    with pytest.raises(UserError, match="empty"):
        read_data_file(str(tmp_path / "empty.tsv"))
    (tmp_path / "bom.tsv").write_bytes("\ufeff好\t1\n".encode("utf-8"))
    assert read_data_file(str(tmp_path / "bom.tsv")) == "好\t1\n"
    (tmp_path / "latin.tsv").write_bytes(b"ok\n\xff\xfe\xfd\n")
    with pytest.raises(UserError, match=r"line 2 is not UTF-8"):
        read_data_file(str(tmp_path / "latin.tsv"))


def test_training_batches_feed_keras_with_per_batch_padding():
    lengths = [3, 5, 2, 7]
    seen_widths = []

    def make_batch(indices):
        width = max(lengths[i] for i in indices)
        seen_widths.append(width)
        token_ids = pad([[1] * lengths[i] for i in indices])
        return (token_ids,), np.zeros((len(indices), 1), np.float32)

    signature = ((tf.TensorSpec((None, None), tf.int64),), tf.TensorSpec((None, 1), tf.float32))
    batches = fine_tuning.TrainingBatches(lengths, make_batch, signature, batch_size=2, seed=0)
    shapes = [inputs[0].shape[1] for inputs, _ in batches.dataset()]
    assert len(shapes) == len(batches) == 2
    assert sorted(shapes) == sorted(seen_widths)
    assert batches.real_tokens == sum(lengths)


def test_random_draws_inside_batches_depend_on_seed_and_epoch_only_so_a_resumed_run_repeats_them():
    def drawing_batches(epochs_done):
        draws = []

        def make_batch(indices):
            draws.append(batches.rng.integers(1000, size=len(indices)).tolist())
            return (pad([[1]] * len(indices)),), np.zeros((len(indices), 1), np.float32)

        signature = ((tf.TensorSpec((None, None), tf.int64),), tf.TensorSpec((None, 1), tf.float32))
        batches = fine_tuning.TrainingBatches([1] * 6, make_batch, signature, batch_size=2, seed=0)
        batches.epoch = epochs_done  # as --resume sets it
        for _ in range(3 - epochs_done):
            list(batches.dataset())
        return draws

    uninterrupted = drawing_batches(0)
    assert uninterrupted[:3] != uninterrupted[3:6]  # each epoch draws afresh
    assert drawing_batches(1) == uninterrupted[3:]


class FakeGpu:
    def __init__(self, name):
        self.name = name


def test_device_line_names_the_gpus_used_or_the_cpu_and_its_cores(monkeypatch):
    gpus = []
    details = {"/physical_device:GPU:0": {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)},
               "/physical_device:GPU:1": {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda gpu: details[gpu.name])
    assert fine_tuning.describe_devices().startswith("device: CPU, %d cores" % len(os.sched_getaffinity(0)))
    gpus[:] = [FakeGpu("/physical_device:GPU:0")]
    assert fine_tuning.describe_devices() == "device: GPU NVIDIA H100 80GB HBM3 (compute capability 9.0)"
    gpus.append(FakeGpu("/physical_device:GPU:1"))
    assert fine_tuning.describe_devices("one-device").endswith("(1 of 2; --strategy mirrored uses all)")
    assert fine_tuning.describe_devices("mirrored").startswith("device: 2 GPUs: NVIDIA H100 80GB HBM3 (")


class Written:
    """A stream that records what is written to it, in order, with the other streams sharing `writes`."""

    def __init__(self, name, writes):
        self.name = name
        self.writes = writes

    def write(self, text):
        self.writes.append((self.name, text))
        return len(text)

    def flush(self):
        pass


@pytest.mark.parametrize("script, predict", [
    ("sentiment", ["好"]), ("relation_extraction", ["好"]), ("subject_extraction", ["公司", "好"])])
def test_the_device_line_is_the_first_thing_every_script_prints(
        tiny_checkpoint, tmp_path, monkeypatch, script, predict):
    writes = []
    monkeypatch.setattr(sys, "stdout", Written("stdout", writes))
    monkeypatch.setattr(sys, "stderr", Written("stderr", writes))
    with pytest.raises(SystemExit) as exit_info:  # no trained weights: the script stops after its first lines
        fine_tuning.run(importlib.import_module(script).main,
                        ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path), "--predict"] + predict)
    assert exit_info.value.code == 2 and "no trained weights" in "".join(text for _, text in writes)
    # On stderr, before anything else: stdout stays --predict's data
    assert writes[0][0] == "stderr" and writes[0][1].startswith("device: ")
    assert not any(text.startswith("device:") for stream, text in writes if stream == "stdout")


class FakeBatches:
    """A training set of `steps` batches that TrainingBatches would count 100 real tokens each."""

    def __init__(self, steps):
        self.steps = steps
        self.real_tokens = self.padded_tokens = self.batches_made = 0

    def __len__(self):
        return self.steps

    def make(self):
        self.real_tokens += 100
        self.padded_tokens += 128
        self.batches_made += 1


def run_epoch(progress, batches, seconds_per_step, prefetched=3):
    """Drive the callback through one epoch on a fake clock, the pipeline `prefetched` batches ahead."""
    now = [0.0]
    progress.clock = lambda: now[0]
    for _ in range(prefetched):
        batches.make()
    progress.on_epoch_begin(0)
    for step in range(len(batches)):
        if batches.batches_made < len(batches):
            batches.make()
        now[0] += seconds_per_step
        progress.on_train_batch_end(step, {"loss": 0.5})
    progress.on_epoch_end(0)


def test_without_a_terminal_a_short_epoch_prints_a_line_at_every_tenth(capsys):
    batches = FakeBatches(200)
    run_epoch(fine_tuning.ProgressBar(batches, epochs=2, terminal=False), batches, seconds_per_step=0.1)
    lines = capsys.readouterr().err.strip().split("\n")
    assert [line.split(",")[0] for line in lines] == ["epoch 1/2: step %d/200" % step for step in range(20, 201, 20)]
    # 100 real tokens per 0.1 s step, however far the pipeline prefetched; 18 s left after 2 s of 20.
    assert lines[0] == "epoch 1/2: step 20/200, loss 0.5000, 1000 tokens/s, 18 s left"


def test_without_a_terminal_a_long_epoch_prints_a_line_at_least_every_30_seconds(capsys):
    batches = FakeBatches(1000)
    run_epoch(fine_tuning.ProgressBar(batches, epochs=1, terminal=False), batches, seconds_per_step=2.0)
    steps = [int(line.split("step ")[1].split("/")[0]) for line in capsys.readouterr().err.strip().split("\n")]
    assert steps[0] == 15  # the first sign of life after 30 s, not at 10% (200 s)
    assert max(2.0 * (later - earlier) for earlier, later in zip([0] + steps, steps)) <= 30
    assert 100 in steps and len(steps) < 1000 / 15 + 10
    assert fine_tuning.format_duration(2.0 * 985) == "32 min 50 s"


def test_in_a_terminal_progress_is_a_tqdm_bar_not_lines(capsys):
    batches = FakeBatches(50)
    run_epoch(fine_tuning.ProgressBar(batches, epochs=1, terminal=True), batches, seconds_per_step=1.0)
    err = capsys.readouterr().err
    assert "epoch 1/1:" in err and "50/50" in err and "step 10/50" not in err


# ---------------------------------------------------------------------------------------------
# TensorFlow's harmless oneDNN line at the first training step, held back
# ---------------------------------------------------------------------------------------------

ONEDNN_LINE = ("E0000 00:00:1796265835.023412   14045 util.cc:131] oneDNN supports DT_INT32 only on platforms "
               "with AVX-512. Falling back to the default Eigen-based implementation if present.")
REAL_ERROR_LINE = "E0000 00:00:1796265835.1   14045 cuda_dnn.cc:522] Loaded runtime CuDNN library: 8.9.0"


def test_the_first_steps_onednn_line_is_held_back_and_every_other_line_passed_on(capfd):
    first_step = fine_tuning.HoldBackFirstStepNoise(enabled=True)
    first_step.on_train_batch_begin(0)
    os.write(2, ("%s\n%s\n" % (ONEDNN_LINE, REAL_ERROR_LINE)).encode())  # as TensorFlow's C++ writes
    print("epoch 1/1: step 1/9", file=sys.stderr)
    first_step.on_train_batch_end(0)
    # (pytest's sys.stderr does not go through the file descriptor, so the two may come in either order)
    assert sorted(capfd.readouterr().err.splitlines()) == sorted([REAL_ERROR_LINE, "epoch 1/1: step 1/9"])
    first_step.on_train_batch_begin(1)  # only the first step is held back
    os.write(2, b"a later line\n")
    assert capfd.readouterr().err == "a later line\n"
    first_step.on_train_batch_end(1)


def test_a_first_step_that_fails_gives_stderr_back(capfd):
    first_step = fine_tuning.HoldBackFirstStepNoise(enabled=True)
    first_step.on_train_batch_begin(0)
    first_step.release()  # what train() does when the step raises
    os.write(2, b"the step's traceback\n")
    assert capfd.readouterr().err == "the step's traceback\n"


@pytest.mark.parametrize("log_level, held_back", [(None, True), ("0", False), ("2", False)])
def test_noise_is_held_back_unless_the_user_sets_the_log_level(log_level, held_back):
    import subprocess

    from conftest import PROJECT_DIR

    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    if log_level is not None:
        environment["TF_CPP_MIN_LOG_LEVEL"] = log_level
    code = "import tokenizer, fine_tuning; print(fine_tuning.HoldBackFirstStepNoise().enabled)"  # as the scripts
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_DIR,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [str(held_back)]


def test_a_real_run_holds_back_the_onednn_line_unless_the_user_sets_the_log_level(tiny_checkpoint, tmp_path):
    import subprocess

    import synthetic
    from conftest import PROJECT_DIR

    synthetic.write_sentiment(str(tmp_path), 40, seed=1)

    def run_sentiment(**environment):
        environment = {name: value for name, value in dict(os.environ, **environment).items()
                       if name != "TF_CPP_MIN_LOG_LEVEL" or "TF_CPP_MIN_LOG_LEVEL" in environment}
        result = subprocess.run(
            [sys.executable, "sentiment.py", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out"),
             "--epochs", "1", "--maxlen", "20"], capture_output=True, text=True, cwd=PROJECT_DIR,
            env=dict(environment, TF_ENABLE_ONEDNN_OPTS="1"))  # oneDNN on, as where TensorFlow turns it on itself
        assert result.returncode == 0, result.stderr[-3000:]
        shutil.rmtree(tmp_path / "out")
        return result.stderr

    if "oneDNN supports DT_INT32" not in run_sentiment(TF_CPP_MIN_LOG_LEVEL="0"):
        pytest.skip("TensorFlow prints no oneDNN line on this CPU (it has AVX-512)")
    assert "oneDNN supports DT_INT32" not in run_sentiment()
