"""Early classification on JapaneseVowels: how early can we call it?

JapaneseVowels holds 640 utterances of the vowel /ae/ by nine speakers (12 LPC cepstrum
channels, 7 to 29 frames each: a ragged panel). ``AarenClassifier`` reads the ragged series as
they are; one parallel pass (``predict_proba_prefix``) gives the speaker probabilities after
every frame, so the accuracy after any fraction of the utterance costs nothing extra. A live
utterance is then classified frame by frame with a stream (O(1) per frame), which agrees with
the parallel pass, and stopped as soon as the classifier is confident. Training on every
prefix as well (``prefix_loss``) makes those early calls much better.

Writes ``examples/classification_early.png`` (``--plot PATH`` elsewhere): accuracy vs the
fraction of the series seen.

Run from the repository root (the data from ``AAREN_TS_DATA``, or downloaded)::

    python examples/classification_early.py            # about a minute on one CPU core
    python examples/classification_early.py --quick    # a few epochs: checks that it runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from aaren_ts._checks import plot_option
from aaren_ts.datasets import DataUnavailableError, load_uea
from aaren_ts.estimators import AarenClassifier

PLOT = Path(__file__).with_suffix(".png")


def accuracy_at_fraction(proba: np.ndarray, lengths: np.ndarray, y, classes, f: float) -> float:
    """Accuracy when each series is called after ``ceil(f * length)`` of its steps."""
    steps = np.maximum(np.ceil(f * lengths).astype(int), 1) - 1
    calls = classes[proba[np.arange(len(y)), steps].argmax(1)]
    return float((calls == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs (for the tests)")
    parser.add_argument("--plot", type=plot_option(), default=PLOT, help="where to write the PNG")
    args = parser.parse_args()
    torch.set_num_threads(1)

    try:
        X, y = load_uea("JapaneseVowels", "train")
        X_test, y_test = load_uea("JapaneseVowels", "test")
    except DataUnavailableError as err:  # offline, without a local copy: say how to get one
        sys.exit(str(err))
    lengths = X_test.groupby(level=0, sort=False).size().to_numpy()
    print(f"train {len(y)} series, test {len(y_test)}; lengths {lengths.min()}-{lengths.max()}")

    # Two classifiers: trained on whole utterances only, and also on every prefix
    # (prefix_loss=0.5), which teaches the early calls as well.
    epochs = 5 if args.quick else 60
    curves, rules = {}, {}
    for label, weight in (("whole series only", 0.0), ("prefix_loss=0.5", 0.5)):
        # one network each (the default averages 3): the curves compare training objectives
        clf = AarenClassifier(max_epochs=epochs, prefix_loss=weight, random_state=0, n_networks=1)
        clf.fit(X, y)
        proba = clf.predict_proba_prefix(X_test)  # (370, 29, 9): after every frame
        final = float((clf.predict(X_test) == y_test).mean())
        fractions = np.linspace(0.1, 1.0, 10)
        curves[label] = [
            accuracy_at_fraction(proba, lengths, y_test, clf.classes_, f) for f in fractions
        ]
        print(f"[{label}] test accuracy on whole utterances: {final:.3f}")
        for f, a in zip(fractions, curves[label], strict=True):
            print(f"[{label}] seen {f:4.0%} of each utterance: accuracy {a:.3f}")
        # Call it early: stop each utterance once a class has probability >= 0.9.
        confident = np.nan_to_num(proba.max(-1)) >= 0.9
        stop = np.where(confident.any(1), confident.argmax(1), lengths - 1)
        calls = clf.classes_[proba[np.arange(len(y_test)), stop].argmax(1)]
        rules[label] = (float(((stop + 1) / lengths).mean()), float((calls == y_test).mean()))
        print(
            f"[{label}] stop at p >= 0.9: accuracy {rules[label][1]:.3f} after "
            f"{rules[label][0]:.0%} of each utterance on average"
        )

    # The same, live: one utterance frame by frame, O(1) per frame, equal to the prefix pass.
    first = X_test.loc[X_test.index.get_level_values(0)[0]].to_numpy()
    stream = clf.start_stream()
    for frame in first:
        p = stream.update(frame).predict_proba()[0]
        if p.max() >= 0.9:
            break
    gap = float(np.abs(p - proba[0, stream.n_steps - 1]).max())
    print(
        f"live utterance 0 (prefix_loss=0.5): called {clf.classes_[p.argmax()]} after "
        f"{stream.n_steps} of {len(first)} frames (true {y_test[0]}); "
        f"max |stream - prefix pass| {gap:.1e}"
    )

    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (label, accs) in enumerate(curves.items()):
        ax.plot(fractions * 100, accs, marker="o", color=f"C{k}", label=label)
        seen, acc = rules[label]
        ax.scatter([seen * 100], [acc], marker="*", s=150, color=f"C{k}", zorder=3)
    ax.scatter([], [], marker="*", s=150, color="grey", label="stop once p >= 0.9 (mean % seen)")
    ax.axhline(1 / len(clf.classes_), color="grey", linestyle=":", label="chance")
    ax.set_xlabel("% of each utterance seen")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("JapaneseVowels: how early can we call it?")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
