"""The `diffrestore` command line: convert, enhance, restore, sample, evaluate, train, quickstart.

    diffrestore convert SRC.ckpt DEST
    diffrestore enhance --checkpoint CK INPUT OUTPUT [--sampler pc --num-steps 30 ...]
    diffrestore restore --checkpoint PRIOR --task bwe|declip|inpaint [--cutoff HZ ...] INPUT OUTPUT
    diffrestore sample --checkpoint PRIOR --seconds S --num N OUT_DIR
    diffrestore evaluate [--clean DIR] --enhanced DIR [--noisy DIR] --out results.csv
    diffrestore train --config configs/X.py --workdir DIR [--config.a.b=v ...]
    diffrestore quickstart --workdir runs/quickstart
"""
from __future__ import annotations

import argparse
import sys
import time


def _cmd_convert(args) -> int:
    from diffrestore.convert.sgmse import convert_checkpoint

    dest = convert_checkpoint(args.src, args.dest)
    print(f"wrote {dest} (config.json + Orbax checkpoint)")
    return 0


def _cmd_enhance(args) -> int:
    import logging

    from diffrestore import Enhancer
    from diffrestore.batch import enhance_path

    _log_compiles()
    cache = False if args.no_compilation_cache else (args.compilation_cache or True)
    enhancer = Enhancer.from_checkpoint(args.checkpoint, compilation_cache=cache)
    # Unset options are the model's own (its config's sampler, step count and PC options).
    options = dict(sampler=args.sampler, num_steps=args.num_steps, corrector=args.corrector, snr=args.snr,
                   corrector_steps=args.corrector_steps)
    options = {k: v for k, v in options.items() if v is not None}
    settings = enhancer.sampler_settings(**options)  # checks them before any file is read
    logging.getLogger("diffrestore").info("sampling with %s", settings.describe())
    options.update(seed=args.seed, batch_size=args.batch_size)
    if args.buckets:
        options["buckets"] = _int_list(args.buckets, "--buckets")
    report = enhance_path(enhancer, args.input, args.output, overwrite=args.overwrite, progress=not args.quiet, **options)
    compiled = [e for e in enhancer.compile_log if not e["from_cache"]]
    print(
        f"enhanced {len(report.written)} file(s), skipped {len(report.skipped)} existing, "
        f"failed {len(report.failed)}; real-time factor {report.real_time_factor:.3f} "
        f"({settings.describe()}; {len(compiled)} program(s) compiled in {sum(e['seconds'] for e in compiled):.1f} s, "
        f"{len(enhancer.compile_log) - len(compiled)} loaded from the compilation cache)"
    )
    for path, reason in report.failed.items():
        print(f"FAILED {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _log_compiles() -> None:
    """Shows the Enhancer's one-line compile messages (INFO) on stderr."""
    import logging

    logger = logging.getLogger("diffrestore")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _cmd_restore(args) -> int:
    import logging

    from diffrestore import Prior
    from diffrestore.batch import restore_path

    _log_compiles()
    cache = False if args.no_compilation_cache else (args.compilation_cache or True)
    prior = Prior.from_checkpoint(args.checkpoint, compilation_cache=cache)
    options = dict(num_steps=args.steps, xi=args.xi, seed=args.seed, batch_size=args.batch_size)
    if args.task == "bwe":
        options.update(cutoff_hz=args.cutoff, filter=args.filter)
    elif args.task == "declip":
        options.update(clip_level=args.clip_level)
    elif args.task == "inpaint":
        options.update(gaps=_gap_list(args.gaps))
    options = {k: v for k, v in options.items() if v is not None}
    # Every option is checked once here, before any file is read.
    from diffrestore import restoration

    task_keys = ("cutoff_hz", "filter", "clip_level", "gaps", "xi")
    spec = restoration.make_task(args.task, prior.sample_rate, **{k: options[k] for k in task_keys if k in options})
    settings = prior.sampler_settings(num_steps=options.get("num_steps"))
    logging.getLogger("diffrestore").info("%s with %s T=%d, xi %g", spec.description, settings[0], settings[1], spec.xi)
    report = restore_path(prior, args.input, args.output, task=args.task, overwrite=args.overwrite,
                          progress=not args.quiet, **options)
    compiled = [e for e in prior.programs.compile_log if not e["from_cache"]]
    print(
        f"restored {len(report.written)} file(s) ({spec.description}), skipped {len(report.skipped)} existing, "
        f"failed {len(report.failed)}; real-time factor {report.real_time_factor:.3f} "
        f"({len(compiled)} program(s) compiled in {sum(e['seconds'] for e in compiled):.1f} s)"
    )
    for path, reason in report.failed.items():
        print(f"FAILED {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _gap_list(text):
    """'1.0:1.2,3.5:3.6' -> [(1.0, 1.2), (3.5, 3.6)] (seconds)."""
    if not text:
        raise ValueError("--task inpaint needs --gaps START:END[,START:END...] (seconds)")
    try:
        gaps = [tuple(float(v) for v in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--gaps expects START:END pairs in seconds, got {text!r}") from None
    if any(len(g) != 2 for g in gaps):
        raise ValueError(f"--gaps expects START:END pairs in seconds, got {text!r}")
    return gaps


def _cmd_sample(args) -> int:
    import pathlib

    from diffrestore import Prior
    from diffrestore.io import write_audio_atomic

    _log_compiles()
    cache = False if args.no_compilation_cache else (args.compilation_cache or True)
    prior = Prior.from_checkpoint(args.checkpoint, compilation_cache=cache)
    if args.num < 1 or args.seconds <= 0:
        raise ValueError(f"--num must be positive and --seconds above 0, got {args.num} and {args.seconds}")
    options = {"S_churn": args.churn} if args.churn is not None else {}
    out_dir = pathlib.Path(args.output)
    start = time.perf_counter()
    audio = prior.sample(args.num, seconds=args.seconds, num_steps=args.num_steps, seed=args.seed,
                         batch_size=args.batch_size, **options)
    seconds = time.perf_counter() - start
    for i, wave in enumerate(audio):
        # 32-bit float: nothing is clipped (a briefly trained prior may draw beyond full scale).
        write_audio_atomic(out_dir / f"sample_{args.seed}_{i:03d}.wav", wave, prior.sample_rate, subtype="FLOAT", fmt="WAV")
    print(f"wrote {len(audio)} sample(s) of {args.seconds:g} s at {prior.sample_rate} Hz to {out_dir} "
          f"({prior.last_network_evaluations} network calls each, {seconds:.1f} s)")
    return 0


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated integers, got {text!r}") from None


def _cmd_evaluate(args) -> int:
    from diffrestore.evaluate import evaluate_folders, format_summary, summarize, write_results

    rows = evaluate_folders(args.clean, args.enhanced, args.noisy, measures=args.measures)
    if not rows:
        raise ValueError(f"{args.enhanced}: no audio files to evaluate")
    summary = summarize(rows)
    json_path = write_results(rows, summary, args.out)
    print(format_summary(summary))
    print(f"wrote {args.out} ({len(rows)} files) and {json_path}")
    return 0


def _cmd_train(argv) -> int:
    from diffrestore.train import main_train

    return main_train(argv) or 0


def _cmd_quickstart(args) -> int:
    import logging

    from diffrestore.quickstart import run_bwe_quickstart, run_quickstart

    # Show the training progress line (steps/s, ETA) and milestones; Orbax narrates at INFO.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("diffrestore").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)

    if args.task == "bwe":
        run_bwe_quickstart(args.workdir or "runs/quickstart_bwe", minutes=args.minutes)
    else:
        run_quickstart(args.workdir or "runs/quickstart", minutes=args.minutes, family=args.family)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffrestore", description="Audio restoration with diffusion models (JAX).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an sgmse Lightning .ckpt into a diffrestore checkpoint")
    p.add_argument("src", help="the sgmse .ckpt file")
    p.add_argument("dest", help="output run directory (config.json + Orbax checkpoint)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("enhance", help="enhance a file or a folder of recordings")
    p.add_argument("--checkpoint", required=True, help="run directory, training workdir or sgmse .ckpt")
    p.add_argument("input", help="an audio file or a folder (recursive)")
    p.add_argument("output", help="output file or folder (relative paths are mirrored)")
    p.add_argument("--sampler", default=None,
                   help="pc, ode_euler, ode_heun, ode_adaptive, sb_ode, sb_sde (default: the model's, from its config)")
    p.add_argument("--num-steps", type=int, default=None, help="reverse steps N (default: the model's)")
    p.add_argument("--corrector", default=None, choices=("ald", "langevin", "none"), help="PC corrector (default: the model's)")
    p.add_argument("--corrector-steps", type=int, default=None, help="PC corrector steps (default: the model's)")
    p.add_argument("--snr", type=float, default=None, help="PC corrector SNR (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4,
                   help="at most this many signals or chunks per batch (rounded up to a multiple of the devices); "
                        "smaller batches run with fewer rows")
    p.add_argument("--compilation-cache", default=None, metavar="DIR",
                   help="folder of the persistent XLA compilation cache (default: $DIFFRESTORE_CACHE_DIR or "
                        "~/.cache/diffrestore/xla), so later runs load the compiled programs instead of compiling")
    p.add_argument("--no-compilation-cache", action="store_true", help="neither read nor write the compilation cache")
    p.add_argument("--buckets", default=None,
                   help="padded frame counts, multiples of 64 (default: 64,128,192,256,320,384,512,640,768,1024,1280,1536,2048); longer signals are enhanced in overlapping chunks of the largest")
    p.add_argument("--overwrite", action="store_true", help="re-enhance files whose output exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_enhance)

    p = sub.add_parser("restore", help="restore recordings with a known degradation using a prior (zero-shot)")
    p.add_argument("--checkpoint", required=True, help="a prior's run directory, or a CQT-Diff / BABE / BUDDy .pt file")
    p.add_argument("--task", required=True, choices=("bwe", "declip", "inpaint"))
    p.add_argument("input", help="an audio file or a folder (recursive): the degraded recordings")
    p.add_argument("output", help="output file or folder (relative paths are mirrored)")
    p.add_argument("--cutoff", type=float, default=None, help="bwe: the recording's cutoff frequency, Hz")
    p.add_argument("--filter", default="fir", choices=("fir", "cheby1", "biquad"),
                   help="bwe: the low-pass that degraded it (default fir: firwin, 500 taps)")
    p.add_argument("--clip-level", type=float, default=None, help="declip: where it was clipped (default: each file's peak)")
    p.add_argument("--gaps", default=None, help="inpaint: missing spans START:END[,START:END...] in seconds")
    p.add_argument("--steps", type=int, default=None, help="sampler steps T (default: the prior's, 35)")
    p.add_argument("--xi", type=float, default=None, help="guidance step (default: the task's, 0.2 for most)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--overwrite", action="store_true", help="restore files whose output exists again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--compilation-cache", default=None, metavar="DIR", help="folder of the persistent XLA cache")
    p.add_argument("--no-compilation-cache", action="store_true")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("sample", help="draw unconditional samples from a prior of clean audio")
    p.add_argument("--checkpoint", required=True, help="a prior's run directory, or a CQT-Diff / BABE / BUDDy .pt file")
    p.add_argument("output", help="folder for the samples (sample_<seed>_<i>.wav)")
    p.add_argument("--seconds", type=float, default=4.0, help="duration of each sample (default 4)")
    p.add_argument("--num", type=int, default=1, help="number of samples")
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps T (default: the prior's, 35 for CQT-Diff)")
    p.add_argument("--churn", type=float, default=None, help="S_churn of the stochastic sampler (default: the prior's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--compilation-cache", default=None, metavar="DIR", help="folder of the persistent XLA cache")
    p.add_argument("--no-compilation-cache", action="store_true")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("evaluate", help="PESQ, ESTOI, SI-SDR/SIR/SAR, SDR, LSD of enhanced files against clean ones; "
                                        "DNSMOS with or without them")
    p.add_argument("--clean", default=None, help="folder of clean reference files (without it: DNSMOS only)")
    p.add_argument("--enhanced", required=True, help="folder of enhanced files (same relative paths)")
    p.add_argument("--noisy", default=None,
                   help="folder of the noisy/degraded inputs (adds SI-SIR, SI-SAR, noisy figures and SDR/SI-SDR improvements)")
    p.add_argument("--measures", default=None,
                   help="comma-separated subset of pesq,estoi,si_sdr,lsd,sdr,si_sir,si_sar,lsd_db,dnsmos "
                        "(default: all but lsd_db; without --clean: dnsmos; e.g. lsd,si_sdr,sdr for music)")
    p.add_argument("--out", default="results.csv", help="per-file CSV; the summary goes beside it as .summary.json")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("quickstart", help="synthetic corpus -> train -> enhance (or restore) -> evaluate, in minutes on a CPU")
    p.add_argument("--task", choices=("enhance", "bwe"), default="enhance",
                   help="enhance: speech enhancer (configs/quickstart.py); bwe: music prior and zero-shot "
                        "bandwidth extension (configs/quickstart_bwe.py)")
    p.add_argument("--workdir", default=None, help="default runs/quickstart, or runs/quickstart_bwe with --task bwe")
    p.add_argument("--minutes", type=float, default=None, help="override the training time budget")
    p.add_argument("--family", default="sb", choices=("sb", "sgmse", "bbed", "storm", "flow"),
                   help="enhance: the supervised family to train on the quickstart network (default sb, the "
                        "Schrödinger bridge: the best quality in the time budget); use its own --workdir")
    p.set_defaults(func=_cmd_quickstart)

    sub.add_parser("train", help="train a model: --config configs/X.py --workdir DIR [--config.a.b=v]", add_help=False)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        # Training flags (--config.a.b=v overrides) are parsed by the training entry point.
        return _cmd_train(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, MemoryError) as err:
        print(f"diffrestore {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
