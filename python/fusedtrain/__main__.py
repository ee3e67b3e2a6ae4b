"""Command line (``fusedtrain`` or ``python -m fusedtrain``): ``train``, ``evaluate``, ``predict``,
``export`` (implemented in cli.py), ``bench``, ``info``, and ``--cmake-dir`` / ``--include-dir`` for C++
builds against the installed kernels.

A mistake in the arguments or the data prints one line, ``fusedtrain: error: ...``, to stderr
and exits with status 2 (argparse's convention)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import NoReturn, Optional, Sequence

from . import cli
from .distributed import launched_size, world

DESCRIPTION = "Train, evaluate and run neural networks on fusedtrain's C++ kernels."
EPILOG = ("With no DATA, train, evaluate and predict use the bundled digits data set. "
          "Run 'fusedtrain COMMAND --help' for a command's options.")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (no usage block), as every other error here."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split()[1:]
        where = f"{' '.join(command)}: " if command else ""
        hint = f"{self.prog} --help"
        self.exit(2, f"fusedtrain: error: {where}{message} (see {hint})\n")


def _layers(text: str):
    try:
        return cli.parse_layers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _column_list(text: str):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    return names


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train", help="train a model on a data file (or the bundled digits)",
        description="Train an MLP on DATA: standardise the features, split train/validation/test, fit with "
                    "early stopping, print a report and write the model, history.json and a plot.")
    train.add_argument("data", nargs="*", metavar="DATA",
                       help="a CSV file with a header row (or Parquet), an .npz holding x and y, or two .npy files "
                            "(features, targets); none: the bundled digits")
    train.add_argument("--target", metavar="COLUMN", help="the CSV column to predict (default: the last)")
    for option, what in (("categorical", "one-hot encode these columns (categorical)"),
                         ("numeric", "read these columns as numbers"),
                         ("drop", "leave these columns out"),
                         ("keep", "keep these columns that the rules would drop (identifiers, high-cardinality text)")):
        train.add_argument(f"--{option}", type=_column_list, metavar="COLS", help=f"{what}; comma-separated names")
    train.add_argument("--dates", choices=("expand", "drop"), default="expand",
                       help="date columns: expanded into year, month, day, ... (default) or dropped")
    train.add_argument("--missing", choices=("impute", "drop"), default="impute",
                       help="missing feature values: imputed with a missing indicator (default), or their rows "
                            "left out of training")
    train.add_argument("--task", choices=cli.TASKS, default="auto",
                       help="auto: classification for text labels and for integers with at most 20 values")
    train.add_argument("--layers", type=_layers, default=[128, 64], metavar="SIZES",
                       help="hidden layer sizes, comma-separated (default: 128,64; '' for none)")
    train.add_argument("--activation", choices=cli.ACTIVATIONS, default="relu", help="of the hidden layers")
    train.add_argument("--epochs", type=int, default=100, metavar="N", help="at most this many epochs (default: 100)")
    train.add_argument("--batch-size", type=int, default=64, metavar="N", help="samples per step (default: 64)")
    train.add_argument("--lr", type=float, default=1e-3, metavar="RATE", help="learning rate (default: 0.001)")
    train.add_argument("--optimizer", choices=tuple(cli.OPTIMIZERS), default="adam", help="(default: adam)")
    train.add_argument("--patience", type=int, default=10, metavar="N",
                       help="stop after this many epochs without a better validation loss; 0: never (default: 10)")
    train.add_argument("--val-split", type=float, default=0.15, metavar="FRACTION",
                       help="validation fraction (default: 0.15)")
    train.add_argument("--test-split", type=float, default=0.15, metavar="FRACTION",
                       help="test fraction (default: 0.15)")
    train.add_argument("--device", default="auto", metavar="DEVICE",
                       help="auto (the GPU where one is usable, else the CPU), cpu, cuda or cuda:N (default: auto)")
    train.add_argument("--seed", type=int, default=0, metavar="N", help="for the split, the weights and the shuffling")
    train.add_argument("--out", default="model.safetensors", metavar="PATH",
                       help="the model file (default: model.safetensors); the plot goes beside it")
    train.add_argument("--history", metavar="PATH", help="the history file (default: history.json beside --out)")
    train.add_argument("--no-plot", action="store_true", help="do not write the PNG of the training curves")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="also write TensorBoard event files to DIR (train/ and validation/ runs; needs "
                            "fusedtrain[tensorboard])")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="1: a progress bar per epoch, 2: one line per epoch, 0: the report only")


def _add_model_commands(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="score a model file on labelled data",
                                   description="Print the loss and accuracy (or MAE and R^2) of MODEL on DATA.")
    evaluate.add_argument("model", metavar="MODEL", help="a model file written by fusedtrain train or model.save")
    evaluate.add_argument("data", nargs="*", metavar="DATA", help="as for train; none: the bundled digits")
    evaluate.add_argument("--target", metavar="COLUMN",
                          help="the CSV column holding the targets (default: the model's target column, or the last)")
    predict = commands.add_parser("predict", help="write a model's predictions to a CSV file",
                                  description="Write one row per sample of DATA: the predicted label and each "
                                              "class' probability (classifiers) or the predicted values.")
    predict.add_argument("model", metavar="MODEL", help="a model file written by fusedtrain train or model.save")
    predict.add_argument("data", nargs="*", metavar="DATA",
                         help="a CSV file of the model's feature columns, an .npz holding x, or an .npy file; "
                              "none: the bundled digits")
    predict.add_argument("--out", default="predictions.csv", metavar="PATH", help="the CSV file to write ('-': stdout)")
    export = commands.add_parser("export", help="write a model file as ONNX, for onnxruntime",
                                 description="Write MODEL as an ONNX graph that gives predict's probabilities (or "
                                             "values); a model trained on a CSV takes its raw columns as inputs.")
    export.add_argument("model", metavar="MODEL", help="a model file written by fusedtrain train or model.save")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="(default: onnx)")
    export.add_argument("--out", default="model.onnx", metavar="PATH", help="the file to write (default: model.onnx)")
    export.add_argument("--outputs", choices=("probabilities", "logits"), default="probabilities",
                        help="a classifier's output: probabilities, as predict (default), or logits")
    export.add_argument("--opset", type=int, default=None, metavar="N", help="the ONNX opset (default: 17, at least 13)")
    export.add_argument("--encoded", action="store_true",
                        help="a model trained on a table: take the encoded features (one float32 input x) instead of "
                             "the raw columns")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fusedtrain", description=DESCRIPTION, epilog=EPILOG)
    paths = parser.add_mutually_exclusive_group()
    paths.add_argument("--cmake-dir", action="store_true",
                       help="print the directory of fusedtrainConfig.cmake (for -Dfusedtrain_DIR=) and exit")
    paths.add_argument("--include-dir", action="store_true",
                       help="print the directory holding the fusedtrain/ C++ headers and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(commands)
    _add_model_commands(commands)
    bench = commands.add_parser("bench", help="time the kernels against NumPy")
    bench.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    bench.add_argument("--threads", type=int, default=None, help="threads for both libraries")
    commands.add_parser("info", help="print the build and device report")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)

    if args.cmake_dir or args.include_dir:
        if args.command is not None:
            parser.error("--cmake-dir and --include-dir take no command")
        from ._paths import get_cmake_dir, get_include

        print(get_cmake_dir() if args.cmake_dir else get_include())
        return 0
    if args.command == "info":
        from ._info import info

        print(info())
        return 0
    if args.command == "bench":
        from .bench import run

        return run(quick=args.quick, threads=args.threads)
    if args.command in ("train", "evaluate", "predict", "export"):
        try:
            if launched_size() > 1 and not world().is_main:
                # Under mpiexec every rank runs the command; rank 0 alone reports and writes.
                with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                    return getattr(cli, args.command)(args)
            return getattr(cli, args.command)(args)
        except cli.UsageError as error:
            # One line whatever the message quotes (a file's header, another library's error).
            print(f"fusedtrain: error: {' '.join(str(error).split())}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("fusedtrain: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # Whoever read stdout has gone (fusedtrain ... | head): stop quietly, as other tools
            # do; stdout goes to devnull so that Python's exit does not complain again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
