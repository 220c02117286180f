#!/usr/bin/python3
"""evaluate.py: score `sigflow predict` output against the true labels.

The model's quality figures in models/README.md come from the C pipeline, not from
the training script, so they measure what users actually run. This reads the
predictions (one JSON object per line, with EventId, label_index and
probabilities in the order of class_labels ["b", "s"]) and the labels from the
bundled CSV, and prints accuracy and ROC AUC (signal probability as the score).

    /usr/bin/python3 models/evaluate.py predictions.jsonl

Standard library only (no numpy), so it runs anywhere Python 3 does.
"""

import csv
import gzip
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "producer", "data",
                    "atlas-higgs-challenge-2014-v2-sample.csv.gz")


def auc(scores, labels):
    """Mann-Whitney statistic, ties counted half."""
    pairs = sorted(zip(scores, labels))
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j) / 2.0 + 1.0
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if pairs[k][1] == 1)
        i = j + 1
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: evaluate.py predictions.jsonl")
    with gzip.open(DATA, "rt", newline="") as f:
        truth = {int(r["EventId"]): 1 if r["Label"] == "s" else 0 for r in csv.DictReader(f)}
    scores, labels, correct, errors = [], [], 0, 0
    with open(sys.argv[1]) as f:
        for n, line in enumerate(f, 1):
            pred = json.loads(line)
            if "error" in pred:
                errors += 1
                continue
            y = truth[int(pred["EventId"])]
            scores.append(pred["probabilities"][1])
            labels.append(y)
            correct += pred["label_index"] == y
    if errors:
        print("%d events rejected" % errors)
    print("events %d  accuracy %.4f  ROC AUC %.4f  (signal %d, background %d)"
          % (len(labels), correct / len(labels), auc(scores, labels),
             sum(labels), len(labels) - sum(labels)))


if __name__ == "__main__":
    main()
