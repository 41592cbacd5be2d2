"""``python -m core``: segment, evaluate, analyse lesions, train, cross-validate, compare models, fetch the sample and the pretrained weights, serve the app.

Every command exits 0 on success. A problem the user can fix
(``LiverSegError``, a missing or unreadable file) prints one ``error: ...`` line
and exits 2: no traceback, and no partial output file (outputs are written
through ``core.atomic``). Heavy modules are imported inside the commands so
that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.devices import DEVICES, PRECISIONS
from core.errors import LiverSegError

EXIT_USAGE = 2


#: Share of the progress bar per stage of ``core.pipeline.run`` (start, width), in percent: inference dominates.
#: A UNet reports first_stage, preprocess, infer; the pretrained pair abdomen, liver_network, lesion_network.
_SEGMENT_STAGES = {"first_stage": (0, 10), "preprocess": (10, 10), "infer": (20, 65),
                   "abdomen": (0, 10), "liver_network": (10, 30), "lesion_network": (40, 45),
                   "postprocess": (85, 10), "lesions": (95, 5)}


def _segment(args: argparse.Namespace) -> None:
    import time

    from core.imageio.limits import check_header

    started = time.perf_counter()
    check_header(args.input)  # a file whose header shows the fault is refused before torch is imported

    from core.imageio.nifti import NIFTI_SUFFIXES, read_scan, write_labels

    if not args.output.name.lower().endswith(NIFTI_SUFFIXES):
        raise LiverSegError(f"{args.output.name}: the label map is written as NIfTI; name the output .nii.gz or .nii")
    if args.dicom_seg and args.dicom_seg.suffix.lower() != ".dcm":
        raise LiverSegError(f"{args.dicom_seg.name}: the DICOM SEG is written as a DICOM file; name it .dcm")
    scan = read_scan(args.input)
    if scan.details.get("series", "the only series") != "the only series":
        print(f"note: {scan.source}: took {scan.details['series']}", file=sys.stderr)
    if args.dicom_seg:
        from core.imageio.dicom_seg import unavailable_reason

        reason = unavailable_reason(scan)  # before the model runs, not after
        if reason:
            raise LiverSegError(f"--dicom-seg: {reason}")
    read_seconds = time.perf_counter() - started

    from tqdm import tqdm

    from core import pipeline
    from core.inference.segmenter import Segmenter

    segmenter = Segmenter(args.model, args.device, args.precision)
    # disable=None: the bar is drawn only on a terminal, so logs and pipes get no control characters.
    with tqdm(total=100, file=sys.stderr, disable=None, leave=False, bar_format="{desc:<12}|{bar}| {percentage:3.0f}% {elapsed}") as bar:

        def progress(stage: str, fraction: float) -> None:
            start, width = _SEGMENT_STAGES[stage]
            bar.set_description_str(stage, refresh=False)
            bar.update(start + width * fraction - bar.n)

        result = pipeline.run(scan, segmenter, progress=progress)
    segmentation = result.segmentation
    seconds = {"read": read_seconds, **result.seconds}
    table = result.lesions.to_csv() if args.lesions else None  # before writing: a failure leaves no output
    seg = None
    if args.dicom_seg:
        from core.imageio.dicom_seg import dicom_seg_bytes

        start = time.perf_counter()
        seg = dicom_seg_bytes(segmentation)  # before writing: a failure leaves no output
        seconds["dicom_seg"] = time.perf_counter() - start
    start = time.perf_counter()
    write_labels(segmentation.labels, scan, args.output)
    from core.atomic import write_atomically

    if table is not None:
        write_atomically(args.lesions, table.encode())
    if seg is not None:
        write_atomically(args.dicom_seg, seg)
    seconds["write"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - started

    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.output}: liver {result.lesions.liver_ml:.0f} mL, lesions {result.lesions.lesion_ml:.1f} mL "
          f"(model {segmentation.model}, {segmentation.device}, {seconds['total']:.1f} s)")
    if args.verbose:
        print("seconds: " + " ".join(f"{stage}={value:.2f}" for stage, value in seconds.items()), file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> None:
    import json
    from dataclasses import replace

    from core.imageio.limits import check_header

    check_header(args.prediction)  # before the heavy imports below
    check_header(args.ground_truth)
    from core import pipeline
    from core.affine import spacing_mm
    from core.evaluation.metrics import format_evaluation
    from core.imageio.ground_truth import LabelGrid, check_label_values, load_ground_truth
    from core.imageio.nifti import read_label_map

    # The prediction's grid is the reference grid: the ground truth is brought onto it.
    prediction, affine = read_label_map(args.prediction)
    check_label_values(prediction, f"prediction {args.prediction.name}")
    truth = load_ground_truth(args.ground_truth, LabelGrid(prediction.shape, affine))
    for warning in truth.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.not_liver_only:
        truth = replace(truth, liver_only=False)
    result = pipeline.score(prediction, spacing_mm(affine), truth)
    print(json.dumps(result, indent=2, allow_nan=False) if args.json else format_evaluation(result))


def _lesions(args: argparse.Namespace) -> None:
    from core.imageio.limits import check_header

    check_header(args.scan)  # before the heavy imports below
    check_header(args.mask)
    from core import pipeline
    from core.imageio.ground_truth import check_label_values, to_grid
    from core.imageio.nifti import read_label_map, read_scan
    from core.segmentation import Segmentation

    scan = read_scan(args.scan)
    labels, affine = read_label_map(args.mask)
    check_label_values(labels, f"label map {args.mask.name}")
    labels, warnings = to_grid(labels, affine, scan, f"label map {args.mask.name}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    report = pipeline.measure(Segmentation(labels, scan)).lesions
    sys.stdout.write(report.to_csv() if args.csv else report.to_text() + "\n")


def _train(args: argparse.Namespace) -> None:
    from core.training.options import TrainOptions
    from core.training.run import train

    train(TrainOptions.from_namespace(args))


def _cross_validate(args: argparse.Namespace) -> None:
    from core.model.card import CARD_FILE
    from core.model.registry import model_dir
    from core.training.cross_validation import cross_validate, markdown_table, record_in_card

    folder = args.model if (args.model / CARD_FILE).is_file() else model_dir(str(args.model))
    work = args.work or Path(".cache") / "cv" / folder.name
    results = cross_validate(folder, work, args.data, log=lambda line: print(line, file=sys.stderr))
    print(markdown_table(results))
    chosen = results["lesion_threshold"]
    print(f"lesion threshold chosen on the out-of-fold predictions: {chosen['threshold']} (pooled detection F1 {chosen['f1']})")
    if args.write_card:
        record_in_card(folder, results)
        print(f"written into {folder / CARD_FILE}")


def _sample(args: argparse.Namespace) -> None:
    from core.imageio.sample import ensure_sample

    scan, labels = ensure_sample()
    print(f"sample scan: {scan}\nsample labels: {labels}")


def _pretrained(args: argparse.Namespace) -> None:
    from core.model.pretrained import ensure_all_converted

    for path in ensure_all_converted():
        print(f"pretrained weights: {path}")


def _compare_models(args: argparse.Namespace) -> None:
    from core import config
    from core.training.comparison import compare, markdown, record_in_cards

    rows = compare(args.models, args.data or config.data_dirs(), device=args.device, log=lambda line: print(line, file=sys.stderr))
    print(markdown(rows))
    if args.write_cards:
        for name in record_in_cards(rows):
            print(f"written into the card of {name}")


def _hash_password(args: argparse.Namespace) -> None:
    import getpass
    import json

    from core.server.access import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise LiverSegError("the two passwords differ; run the command again")
    else:  # piped in, for scripts: the first line
        password = sys.stdin.readline().rstrip("\r\n")
    encoded = hash_password(password, iterations=args.iterations)
    print(f'{json.dumps(args.user)} = "{encoded}"' if args.user else encoded)  # a TOML line; the quotes allow any name


def _serve(args: argparse.Namespace) -> None:
    import os

    from core import allocator, config

    # The Streamlit server replaces this process, with the allocator's settings in its environment
    # from its start (``core.allocator``); .streamlit/config.toml holds the rest.
    command = [sys.executable, "-m", "streamlit", "run", str(config.ROOT / "app.py"),
               "--server.address", args.address, "--server.port", str(args.port)]
    os.execve(sys.executable, command, allocator.environment(dict(os.environ)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Liver and liver-lesion segmentation of abdominal CT.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    segment = commands.add_parser("segment", help="segment a CT scan into liver (1) and lesions (2)")
    segment.add_argument("input", type=Path, help="NIfTI file (.nii, .nii.gz), DICOM series folder, or .zip of one")
    segment.add_argument("-o", "--output", type=Path, required=True, help="label map to write (.nii.gz), on the input's grid")
    segment.add_argument("--model", help="model folder name under trained/ (default: the configured default model)")
    segment.add_argument("--device", choices=DEVICES, default="auto", help="auto takes CUDA when present (default)")
    segment.add_argument("--lesions", type=Path, metavar="CSV", help="also write the lesion table here")
    segment.add_argument("--dicom-seg", type=Path, metavar="OUT.dcm",
                         help="also write a DICOM Segmentation (liver, lesion) referencing the source series; needs a DICOM input")
    segment.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: mixed precision on a GPU, float32 on the CPU (default); mixed: also bfloat16 on CPUs that compute it "
        "natively (AVX512-BF16, AMX), about 1.7x faster; float32: never mixed",
    )
    segment.add_argument("-v", "--verbose", action="store_true", help="print the seconds each stage took (on stderr)")
    segment.set_defaults(run=_segment)

    evaluate = commands.add_parser("evaluate", help="score a predicted label map against ground truth")
    evaluate.add_argument("prediction", type=Path, help="predicted label map (0/1/2)")
    evaluate.add_argument("ground_truth", type=Path, help="reference label map (0/1/2, or a binary liver mask)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument(
        "--not-liver-only",
        action="store_true",
        help="the ground truth is not liver-only: a 0/1/2 map of a case without lesions; score predicted lesions against none "
        "(by default a ground truth without label 2 is read as a liver-only mask, and lesion metrics are not available)",
    )
    evaluate.set_defaults(run=_evaluate)

    lesions = commands.add_parser("lesions", help="list the lesions of a label map")
    lesions.add_argument("mask", type=Path, help="label map (0/1/2)")
    lesions.add_argument("--scan", type=Path, required=True, help="the CT the mask belongs to (for HU and geometry)")
    lesions.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    lesions.set_defaults(run=_lesions)

    from core.training.options import add_arguments  # light: argparse only, no torch

    train = commands.add_parser("train", help="train or fine-tune a model on labelled CT")
    add_arguments(train)
    train.set_defaults(run=_train)

    validate = commands.add_parser("cross-validate", help="leave-one-case-out cross-validation of a model's own recipe")
    validate.add_argument("model", type=Path, help="model name in trained/, or a model folder; its card's training "
                                                   "commands are the recipe (both stages of a cascade)")
    validate.add_argument("--work", type=Path, help="where the fold models go (default .cache/cv/MODEL); finished folds "
                                                    "with the same recipe are reused, interrupted ones resumed")
    validate.add_argument("--data", type=Path, action="append", metavar="DIR",
                          help="where the recipe's data folders are, found by the names its card records (repeatable; "
                               "default: LIVERSEG_DATA_DIRS, else ../shared/data and the sample)")
    validate.add_argument("--write-card", action="store_true",
                          help="record the table in the model's card and apply the lesion threshold chosen on the folds")
    validate.set_defaults(run=_cross_validate)

    compare = commands.add_parser("compare-models", help="score models side by side on every labelled case, each only "
                                                         "where it never saw the case")
    compare.add_argument("models", nargs="+", help="model names in trained/, or model folders (a fold, a training output)")
    compare.add_argument("--data", type=Path, action="append", metavar="DIR",
                         help="data folders to find labelled cases in (repeatable; default: LIVERSEG_DATA_DIRS, else "
                              "../shared/data and the sample)")
    compare.add_argument("--device", choices=DEVICES, default="auto")
    compare.add_argument("--write-cards", action="store_true", help="record each model's rows in its card (metrics.comparison)")
    compare.set_defaults(run=_compare_models)

    sample = commands.add_parser("sample", help="fetch the built-in sample scan (LiTS 117) once")
    sample.set_defaults(run=_sample)
    pretrained = commands.add_parser("pretrained", help="fetch the pretrained networks' wheel once, check and convert its weights")
    pretrained.set_defaults(run=_pretrained)

    from core.server.access import DEFAULT_ITERATIONS

    hashing = commands.add_parser("hash-password", help="hash a password for the app's login (asked for, or read from stdin)")
    hashing.add_argument("--user", help="print a `NAME = \"hash\"` line for [auth.users] or LIVERSEG_USERS_FILE")
    hashing.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help=f"PBKDF2-SHA256 rounds (default {DEFAULT_ITERATIONS})")
    hashing.set_defaults(run=_hash_password)

    serve = commands.add_parser("serve", help="serve the app (Streamlit) with the allocator settings segmentation is fast with")
    serve.add_argument("--address", default="127.0.0.1", help="interface to listen on (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=8501, help="port (default: %(default)s)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except LiverSegError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as error:
        print(f"error: {error.strerror or error}: {error.filename}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a full disk, a lost network share: the machine's state, not a bug
        print(f"error: {error.strerror or error}; free space or fix the folder and run again (earlier outputs are intact)",
              file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:  # a volume within the limits, but more than the machine has free at this moment
        print("error: not enough memory for this input now; try again when the server is less busy, or with a smaller scan",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0
