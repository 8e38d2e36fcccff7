"""How long torch_weights.py takes to read a BERT-base `pytorch_model.bin` (409 MB), and, with
--against COMMIT, the same for that commit's torch_weights.py: what the checks of a file cost.

Random float32 weights at BERT-base's shapes (transformers' BertModel names: 12 layers, hidden 768,
the 21,128-token vocab) are written once into .cache/ as torch.save writes them (by torch where it
is installed, else byte for byte by tests/torch_pickles.py). Each round reads the file once with
each reader, interleaved, each in a fresh process that times `read_torch_state_dict` alone (the
file is in the page cache after the first read). Medians over the rounds.

    python benchmarks/bin_reader.py --against caac933 --rounds 7    # ~1 minute on 2 CPU cores
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(BENCHMARKS_DIR)
BIN_PATH = os.path.join(PROJECT_DIR, ".cache", "random_bert_base_pytorch_model.bin")
TIME_ONE_READ = """
import sys, time
sys.path.insert(0, sys.argv[1])
from torch_weights import read_torch_state_dict
start = time.perf_counter()
arrays = read_torch_state_dict(sys.argv[2])
print(time.perf_counter() - start, sum(array.nbytes for array in arrays.values()))
"""


def write_bin():
    """Run in a process of its own (--write-bin): it imports TensorFlow through bert_checkpoint."""
    sys.path[:0] = [PROJECT_DIR, os.path.join(PROJECT_DIR, "tests"), BENCHMARKS_DIR]
    import numpy as np

    from bert_checkpoint import google_variable_shapes, hub_names
    from throughput import BERT_BASE_CONFIG
    from torch_pickles import save_state_dict

    rng = np.random.default_rng(0)
    arrays = {}
    for google_name, shape in sorted(google_variable_shapes(BERT_BASE_CONFIG).items()):
        if google_name.startswith("bert/"):
            names, transposed = hub_names(google_name)
            arrays[names[0]] = rng.standard_normal(shape[::-1] if transposed else shape, np.float32)
    os.makedirs(os.path.dirname(BIN_PATH), exist_ok=True)
    staging = BIN_PATH + ".partial"
    save_state_dict(arrays, staging)
    os.rename(staging, BIN_PATH)


def reader_dir(commit, folder):
    """A folder holding `commit`'s torch_weights.py."""
    source = subprocess.run(["git", "show", "%s:torch_weights.py" % commit], cwd=PROJECT_DIR, check=True,
                            capture_output=True, text=True).stdout
    with open(os.path.join(folder, "torch_weights.py"), "w", encoding="utf-8") as writer:
        writer.write(source)
    return folder


def time_one_read(module_dir):
    output = subprocess.run([sys.executable, "-c", TIME_ONE_READ, module_dir, BIN_PATH], check=True,
                            capture_output=True, text=True).stdout.split()
    return float(output[0]), int(output[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", metavar="COMMIT", help="also time this commit's torch_weights.py")
    parser.add_argument("--write-bin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_bin:
        return write_bin()
    if not os.path.isfile(BIN_PATH):
        subprocess.run([sys.executable, os.path.abspath(__file__), "--write-bin"], check=True)
    with tempfile.TemporaryDirectory() as folder:
        readers = {"this tree": PROJECT_DIR}
        if args.against:
            readers[args.against] = reader_dir(args.against, folder)
        time_one_read(PROJECT_DIR)  # into the page cache
        seconds = {name: [] for name in readers}
        for round_number in range(args.rounds):
            for name, module_dir in readers.items():
                elapsed, nbytes = time_one_read(module_dir)
                seconds[name].append(elapsed)
                print("round %d, %-10s %.3f s (%d MB of tensors, load average %.1f)"
                      % (round_number + 1, name, elapsed, nbytes / 1e6, os.getloadavg()[0]), flush=True)
    size = os.path.getsize(BIN_PATH) / 1e6
    print("\n| torch_weights.py | reading a %.0f MB pytorch_model.bin (median of %d) |" % (size, args.rounds))
    print("| --- | --- |")
    for name, times in seconds.items():
        print("| %s | %.3f s |" % (name, statistics.median(times)))


if __name__ == "__main__":
    main()
