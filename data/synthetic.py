"""Generate larger synthetic data sets in each task's original file format.

The bundled samples are small; these template-made sets are for trying a script at scale and
for the tests, where a tiny model must be able to learn the task. The texts are made up.

    python data/synthetic.py sentiment --out /tmp/sentiment --examples 5000
"""
import argparse
import os
import random

# ---------------------------------------------------------------------------------------------
# Sentiment: `text<TAB>label` lines (train.tsv, dev.tsv)
# ---------------------------------------------------------------------------------------------

POSITIVE_PHRASES = ["非常好", "很满意", "质量不错", "服务热情", "物超所值", "推荐购买", "下次还来", "值得信赖"]
NEGATIVE_PHRASES = ["太差了", "很失望", "质量糟糕", "服务冷漠", "不值这个价", "不推荐", "再也不来", "骗人的"]
TOPICS = ["这家酒店", "这台电脑", "这本书", "这次购物", "房间", "快递", "屏幕", "客服", "早餐", "包装"]
FILLERS = ["总的来说", "说实话", "我觉得", "用了几天", "住了两晚", "朋友推荐的", "第一次买", "价格一般"]


def sentiment_examples(count, seed=0):
    """(text, label) pairs whose label is given by the phrases they contain; 0 negative, 1 positive."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        label = rng.randint(0, 1)
        phrases = POSITIVE_PHRASES if label else NEGATIVE_PHRASES
        parts = [rng.choice(TOPICS), rng.choice(phrases)]
        parts += rng.sample(FILLERS, rng.randint(0, 3)) + [rng.choice(phrases)]
        rng.shuffle(parts)
        examples.append(("，".join(parts) + "。", label))
    return examples


def write_sentiment(out_dir, count, seed):
    examples = sentiment_examples(count, seed)
    dev_size = max(1, count // 10)
    for name, rows in (("dev.tsv", examples[:dev_size]), ("train.tsv", examples[dev_size:])):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as writer:
            writer.writelines("%s\t%d\n" % (text, label) for text, label in rows)


WRITERS = {"sentiment": write_sentiment}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(WRITERS))
    parser.add_argument("--out", required=True, help="folder to write the files into")
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    WRITERS[args.task](args.out, args.examples, args.seed)
    print("wrote %d %s examples to %s" % (args.examples, args.task, args.out))


if __name__ == "__main__":
    main()
