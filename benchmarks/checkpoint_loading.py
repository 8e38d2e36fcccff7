"""How long a run takes to reach its first training step, and its peak memory, for the same
BERT-base weights as Google's TF1 checkpoint, as safetensors and as pytorch_model.bin.

Random weights at BERT-base's shape (12 layers, hidden 768, the 21,128-token vocab) are written
once into .cache/ in each layout (the .bin by tests/torch_pickles.py, as torch.save writes it).
Each round runs `sentiment.py` once per layout, interleaved, in a fresh process, on 8 reviews
(one step of batch 8); the time is from the process's start to its first progress line, the
peak from the process's own resource usage. Medians over the rounds.

    python benchmarks/checkpoint_loading.py            # 3 rounds, ~10 minutes on 2 CPU cores
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(BENCHMARKS_DIR)
BERT_BASE_DIR = os.path.join(PROJECT_DIR, ".cache", "random_bert_base")  # as throughput.py writes it
LAYOUTS = {"Google TF1 checkpoint": BERT_BASE_DIR,
           "safetensors": BERT_BASE_DIR + "_safetensors",
           "pytorch_model.bin": BERT_BASE_DIR + "_bin"}


def write_layouts():
    """Run in a process of its own (--write-layouts): a child inherits its parent's peak memory at fork."""
    sys.path[:0] = [PROJECT_DIR, os.path.join(PROJECT_DIR, "tests"), BENCHMARKS_DIR]
    from bert_checkpoint import write_random_checkpoint_once
    from hub_layouts import hub_tensors_from_google, write_hub_folder
    from throughput import BERT_BASE_CONFIG

    write_random_checkpoint_once(BERT_BASE_DIR, BERT_BASE_CONFIG)
    tensors = None
    for layout, folder in LAYOUTS.items():
        if layout != "Google TF1 checkpoint" and not os.path.isdir(folder):
            tensors = tensors or hub_tensors_from_google(BERT_BASE_DIR)
            staging = tempfile.mkdtemp(dir=os.path.dirname(folder))
            write_hub_folder(staging, BERT_BASE_CONFIG, tensors, "safetensors" if layout == "safetensors" else "bin")
            os.rename(staging, folder)


def first_step(bert_dir, data_dir):
    """(seconds from start to the first progress line, peak resident memory in MiB) of one run."""
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "sentiment.py", "--bert-dir", bert_dir, "--data-dir", data_dir, "--output-dir", output_dir,
             "--epochs", "1", "--batch-size", "8", "--maxlen", "32"],
            cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds, lines = None, []
        for line in process.stdout:
            lines.append(line)
            if seconds is None and "step 1/" in line:
                seconds = time.monotonic() - start
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0 or seconds is None:
            sys.exit("sentiment.py failed on %s:\n%s" % (bert_dir, "".join(lines[-20:])))
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return seconds, usage.ru_maxrss * 1024 / scale / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-layouts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_layouts:
        return write_layouts()
    subprocess.run([sys.executable, os.path.abspath(__file__), "--write-layouts"], check=True)
    with tempfile.TemporaryDirectory() as data_dir:
        for name in ("train.tsv", "dev.tsv"):
            with open(os.path.join(data_dir, name), "w", encoding="utf-8") as writer:
                writer.writelines("第%d条评论，服务很好\t%d\n" % (i, i % 2) for i in range(8))
        results = {layout: [] for layout in LAYOUTS}
        for round_number in range(args.rounds):
            for layout, folder in LAYOUTS.items():
                results[layout].append(first_step(folder, data_dir))
                print("round %d, %-22s %5.1f s to the first step, peak %5.0f MiB (load average %.1f)"
                      % (round_number + 1, layout, *results[layout][-1], os.getloadavg()[0]), flush=True)
    print("\n| weights | files | seconds to the first step (median) | peak memory (median) |")
    print("| --- | --- | --- | --- |")
    for layout, folder in LAYOUTS.items():
        size = sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)) / 1e6
        print("| %s | %.0f MB | %.1f s | %.0f MiB |" % (
            layout, size, statistics.median(s for s, _ in results[layout]), statistics.median(m for _, m in results[layout])))


if __name__ == "__main__":
    main()
