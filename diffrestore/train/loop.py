"""`train_and_evaluate(config, workdir)`: the training run, as one story.

mesh → model, optimizer and their programs (`programs.build_programs`) → sharded state
(restored if the workdir has a checkpoint) → input from the restored step → update step
(compiled ahead of time, compile time logged) → loop with measurements checked on the host,
checkpoints, and validation with the EMA weights.

A workdir is a diffrestore run directory (see `diffrestore.checkpoint`): config.json,
checkpoints/<step>/ (params, ema_params, opt_state), plus metrics.jsonl and tensorboard/.
Running again on the same workdir resumes from the latest checkpoint; since the input is a
pure function of (seed, step) and so is the step's rng, a resumed run takes exactly the steps
an uninterrupted one would.
"""
from __future__ import annotations

import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from diffrestore import checkpoint
from diffrestore import config as config_lib
from diffrestore import xla_cache
from diffrestore.train import mesh as mesh_lib
from diffrestore.train import writers
from diffrestore.train.programs import build_programs
from diffrestore.train.state import TrainState

log = logging.getLogger("diffrestore.train")


class NonFiniteLossError(FloatingPointError):
    """Raised when a training step produced a NaN or infinite loss."""


def _check_finite(step: int, measurements: dict, last_checkpoint) -> None:
    where = f"the last checkpoint is step {last_checkpoint}" if last_checkpoint is not None else "no checkpoint was written"
    bad_inputs = measurements.get("nonfinite_inputs", 0.0)
    if bad_inputs:
        raise NonFiniteLossError(
            f"training stopped: non-finite input ({int(bad_inputs)} NaN/inf samples in the batch) at step {step}; "
            f"{where}. Check the training files (the batch of step N is a function of (training.seed, N - 1))."
        )
    loss = measurements["loss"]
    if not np.isfinite(loss):
        others = ", ".join(f"{k}={v:.4g}" for k, v in measurements.items() if k != "loss")
        raise NonFiniteLossError(
            f"training stopped: non-finite loss ({loss}) at step {step} ({others}); {where}. "
            "Lower optim.lr, set optim.grad_clip_norm, or check the input data."
        )


def _save(manager, state: TrainState) -> int:
    step = int(jax.device_get(state.step))
    manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            ema_params=ocp.args.StandardSave(state.ema_params),
            opt_state=ocp.args.StandardSave(state.opt_state),
        ),
        force=True,  # the loop decides when to save
    )
    return step


def _restore(manager, step: int, abstract_state: TrainState, state_sharding: TrainState, mesh) -> TrainState:
    step_dir = pathlib.Path(manager.directory) / str(step)
    if not (step_dir / "opt_state").exists():
        raise ValueError(
            f"{step_dir} holds parameters only (e.g. written by `diffrestore convert`), no optimizer "
            "state: training resumes only from workdirs written by training. Use another --workdir."
        )
    # Restore straight into the target shardings: no full copy on one device first.
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, state_sharding
    )
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(target.params),
            ema_params=ocp.args.StandardRestore(target.ema_params),
            opt_state=ocp.args.StandardRestore(target.opt_state),
        ),
    )
    step_array = mesh_lib.replicate(np.int32(step), mesh)
    return TrainState(step=step_array, params=restored["params"], ema_params=restored["ema_params"], opt_state=restored["opt_state"])


def _initialize_from(path: str, state: TrainState, programs) -> TrainState:
    """The fresh state with the parameters and EMA of a trained model (`training.init_from`:
    a run directory or a reference `.ckpt`, as `Enhancer.from_checkpoint` takes): CRP
    fine-tuning, StoRM with a frozen pretrained denoiser. The optimizer state stays fresh and
    the EMA warm-up restarts with the step count.

    Raises:
      ValueError: the weights do not have the parameter tree of this config's network.
    """
    _, params, ema_params = checkpoint.load_weights(path)
    want = jax.tree_util.tree_flatten_with_path(programs.abstract_state.params)[0]
    for name, tree in (("parameters", params), ("EMA parameters", ema_params)):
        got = jax.tree_util.tree_flatten_with_path(tree)[0]
        got_shapes = {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in got}
        for key, leaf in want:
            shape = got_shapes.get(jax.tree_util.keystr(key))
            if shape != tuple(leaf.shape):
                raise ValueError(
                    f"training.init_from={path}: its {name} do not fit this config's network: "
                    f"{jax.tree_util.keystr(key)} is {shape}, expected {tuple(leaf.shape)}"
                )
        if len(got) != len(want):
            raise ValueError(f"training.init_from={path}: {len(got)} {name}, this config's network has {len(want)}")

    def place(tree, shardings):
        host = jax.device_get(tree)
        return jax.tree.map(
            lambda a, s: jax.make_array_from_callback(np.shape(a), s, lambda index: np.asarray(a, np.float32)[index]),
            host, shardings,
        )

    return state.replace(params=place(params, programs.state_sharding.params),
                         ema_params=place(ema_params, programs.state_sharding.ema_params))


def _local_copy(tree):
    """A replicated tree as arrays on this process's first device (evaluation runs per process)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


class _Validation:
    """Validation enhancement with the EMA weights, compiled once and reused across evaluations.

    Runs on the calling process alone, with a local copy of the (replicated) EMA weights.
    """

    def __init__(self, config, writer):
        from diffrestore import sampling
        from diffrestore.data import load_eval_pairs
        from diffrestore.train.evaluate import load_examples, select_eval_pairs

        t = config.training
        self.config = config
        self.writer = writer
        pairs = select_eval_pairs(load_eval_pairs(config.data, "valid"), int(t.num_eval_files))
        self.examples = load_examples(pairs, int(config.data.sample_rate))
        self.num_steps = int(t.eval_num_steps)
        self.num_examples = int(t.num_eval_examples)
        self.sampler = str(config.sampling.sampler)
        if sampling.model_kind(self.sampler) != config_lib.output_spec(config).model_kind:
            self.sampler = None  # the model's default (sb_ode for a bridge, pc for a score model)
        self.enhancer = None
        self.noisy_metrics = None

    def __call__(self, step: int, ema_params) -> dict:
        from diffrestore.enhancer import Enhancer
        from diffrestore.train.evaluate import evaluate_enhancement, file_metrics, mean_metrics, spectrogram_image

        if not self.examples:
            log.warning("validation skipped: no validation files found")
            return {}
        cfg = self.config
        params = _local_copy(ema_params)
        if self.enhancer is None:
            # The training job's own setting decides the compilation cache (training.compilation_cache_dir).
            self.enhancer = Enhancer(cfg, params, compilation_cache=None)
        else:
            self.enhancer.params = params  # same shapes: the compiled sampler is reused
        start = time.perf_counter()
        # The sampler's options are the config's (`Enhancer.sampler_settings`).
        scores, enhanced = evaluate_enhancement(self.enhancer, self.examples, num_steps=self.num_steps, sampler=self.sampler)
        scores = {f"valid/{k}": v for k, v in scores.items()}
        scores["valid/seconds"] = time.perf_counter() - start
        first = self.noisy_metrics is None
        if first:  # the unprocessed inputs' scores, for comparison
            self.noisy_metrics = mean_metrics(
                [file_metrics(e.clean, e.noisy, e.sample_rate) for e in self.examples], "valid/noisy_"
            )
        scores.update(self.noisy_metrics)

        image = lambda w: spectrogram_image(w, int(cfg.data.n_fft), int(cfg.data.hop_length))
        for i, (example, wave) in enumerate(zip(self.examples[: self.num_examples], enhanced)):
            self.writer.write_audio(step, f"example{i}/enhanced", wave, example.sample_rate)
            self.writer.write_image(step, f"example{i}/enhanced", image(wave))
            if first:  # inputs and targets do not change: written once
                for name, w in (("noisy", example.noisy), ("clean", example.clean)):
                    self.writer.write_audio(step, f"example{i}/{name}", w, example.sample_rate)
                    self.writer.write_image(step, f"example{i}/{name}", image(w))
        return scores


class _PriorValidation:
    """Validation of a prior with the EMA weights: the EDM loss on fixed clean validation
    segments at fixed noise levels (the same noise every time, so successive values differ
    only by the weights) and a few unconditional samples, written as audio and spectrograms.
    """

    SIGMAS = (0.01, 0.1, 1.0)  # noise levels of the validation loss, around σ_data .. σ_max

    def __init__(self, config, writer):
        from diffrestore.data import load_eval_segments
        from diffrestore.data.defaults import crop_length

        t = config.training
        self.config, self.writer = config, writer
        self.length = crop_length(config.data)
        self.segments = load_eval_segments(config.data, "valid", int(t.num_eval_files), self.length)
        self.num_samples = int(t.num_eval_examples)
        self.num_steps = int(t.eval_num_steps)
        self.prior = None
        self._loss = None

    def _build_loss(self):
        from diffrestore.losses import edm_loss_from_output

        module, sde = self.prior.module, self.prior.sde
        apply_fn = config_lib.prior_apply_fn(module)
        reduction = str(self.config.model.get("loss_reduction", "mean"))
        rng = np.random.default_rng(20241)
        noise = rng.standard_normal((len(self.SIGMAS),) + self.segments.shape).astype(np.float32)

        def losses(params, x0):
            out = []
            for k, level in enumerate(self.SIGMAS):
                sigma = jnp.full(x0.shape[:1], level, jnp.float32)
                x_noisy = x0 + level * noise[k]
                _, _, c_in, c_noise = sde.precondition(sigma)
                net = apply_fn(params, c_in[:, None] * x_noisy, c_noise)
                out.append(edm_loss_from_output(net, x0=x0, x_noisy=x_noisy, sigma=sigma, sde=sde, reduction=reduction))
            return jnp.stack(out)

        return jax.jit(losses)

    def __call__(self, step: int, ema_params) -> dict:
        from diffrestore.prior import Prior
        from diffrestore.train.evaluate import spectrogram_image

        params = _local_copy(ema_params)
        if self.prior is None:
            self.prior = Prior(self.config, params, devices=jax.local_devices()[:1], compilation_cache=None)
        else:
            self.prior.params = params
        start = time.perf_counter()
        scores = {}
        if len(self.segments):
            if self._loss is None:
                self._loss = self._build_loss()
            values = np.asarray(self._loss(self.prior.params, jnp.asarray(self.segments)))
            scores["valid/loss"] = float(np.mean(values))
            scores.update({f"valid/loss_sigma_{level:g}": float(v) for level, v in zip(self.SIGMAS, values)})
        if self.num_samples > 0:
            samples = self.prior.sample(self.num_samples, length=self.length, num_steps=self.num_steps, seed=0)
            scores["valid/sample_rms"] = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
            rate = self.prior.sample_rate
            for i, wave in enumerate(samples):
                self.writer.write_audio(step, f"sample{i}", np.clip(wave, -1.0, 1.0), rate)
                self.writer.write_image(step, f"sample{i}", spectrogram_image(wave, 1024, 256))
        scores["valid/seconds"] = time.perf_counter() - start
        return scores


def train_and_evaluate(config, workdir) -> dict:
    """Trains (or resumes training of) `config` in `workdir`.

    Args:
      config: a full config (see `configs/*.py`): model, sde, data, sampling, training, optim, mesh.
      workdir: the run directory. If it holds checkpoints, training resumes from the latest;
        with a larger `training.num_steps` it continues.

    Returns:
      The last logged measurements (step, loss, grad_norm, ..., and valid/* when evaluated),
      plus compile_seconds.

    Raises:
      NonFiniteLossError: a step produced a NaN/inf loss (the message names the step).
    """
    from diffrestore.data import make_train_iterator

    started = time.perf_counter()
    workdir = pathlib.Path(workdir)
    t = config.training
    enable_compilation_cache(t.get("compilation_cache_dir", ""))
    is_main = jax.process_index() == 0
    if is_main:
        checkpoint.write_config(workdir, config)
    writer = writers.MetricWriter(workdir, enabled=is_main, tensorboard=bool(t.tensorboard))

    # ---- mesh: the batch is split over `data`, the state replicated.
    mesh = mesh_lib.make_mesh(config.mesh)
    local_batch_size = mesh_lib.check_batch_size(int(t.batch_size), mesh)
    log.info("mesh %s, %d process(es); global batch %d, %d per process",
             dict(mesh.shape), jax.process_count(), int(t.batch_size), local_batch_size)

    # ---- model, optimizer, sharded init and update step (memoised per config and mesh).
    programs = build_programs(config, mesh)
    init_rng, train_rng = jax.random.split(jax.random.key(int(t.seed)))
    manager = checkpoint.make_manager(
        workdir,
        max_to_keep=int(t.keep_checkpoints) if int(t.keep_checkpoints) > 0 else None,
        keep_period=int(t.keep_period) if int(t.keep_period) > 0 else None,
        enable_async=True,
    )
    try:
        last_saved = manager.latest_step()
        if last_saved is None and str(config.model.loss_type) == "crp" and not str(t.get("init_from", "") or ""):
            raise ValueError("CRP fine-tunes a trained model: set --config.training.init_from=CK (a run directory or a .ckpt)")
        if last_saved is None:
            # Initialised straight into its shardings: never materialised whole on one device.
            state = programs.initialize(init_rng)
            log.info("initialised %s with %.2fM parameters", config.model.backbone, programs.num_params / 1e6)
            if str(t.get("init_from", "") or ""):
                state = _initialize_from(str(t.init_from), state, programs)
                log.info("weights (and their EMA) from %s", t.init_from)
        else:
            state = _restore(manager, last_saved, programs.abstract_state, programs.state_sharding, mesh)
            log.info("resumed from %s at step %d (%.2fM parameters)", workdir, last_saved, programs.num_params / 1e6)
        start_step = int(jax.device_get(state.step))
        num_steps = int(t.num_steps)
        writer.truncate_after(start_step)  # steps after the checkpoint are about to be redone
        if start_step >= num_steps:
            log.info("nothing to do: %s is at step %d and training.num_steps is %d", workdir, start_step, num_steps)
            return {"step": start_step}

        # ---- input: batch k is a pure function of (seed, k), so starting at the restored step
        # gives exactly the batches an uninterrupted run would have seen.
        data_iter = make_train_iterator(
            config.data, global_batch_size=int(t.batch_size), seed=int(t.seed), start_step=start_step,
            process_index=jax.process_index(), process_count=jax.process_count(),
        )

        # ---- update step: compiled ahead of time (to log the compile time) for the sharded
        # state, the batch split over `data`, and the replicated rng.
        train_rng = mesh_lib.replicate(train_rng, mesh)
        batch = mesh_lib.global_batch(next(data_iter), mesh)
        train_step, compile_seconds = programs.compiled_step(state, batch, train_rng)
        flops = _flops(train_step)
        log.info("train step: %s%s", f"compiled in {compile_seconds:.1f} s" if compile_seconds else "reused the compiled program",
                 f" ({flops / 1e9:.3g} GFLOP per step per device)" if flops else "")

        # ---- evaluation: validation enhancement with the EMA weights, on process 0.
        eval_every = int(t.eval_every_steps)
        validator = _PriorValidation if config_lib.is_prior(config) else _Validation
        validation = validator(config, writer) if eval_every > 0 and is_main else None

        # ---- loop.
        log_every = max(1, int(t.log_every_steps))
        ckpt_every = int(t.checkpoint_every_steps)
        max_minutes = float(t.get("max_minutes", 0.0))
        deadline = started + 60.0 * max_minutes if max_minutes > 0 else None
        progress = writers.Progress(start_step, num_steps)
        pending = []  # (step, measurements on device) not fetched yet: the host syncs only to log
        last = {"step": start_step}

        for step in range(start_step + 1, num_steps + 1):  # `step` counts the updates done, this one included
            if step > start_step + 1:
                batch = mesh_lib.global_batch(next(data_iter), mesh)
            state, measurements = train_step(state, batch, train_rng)
            pending.append((step, measurements))

            out_of_time = deadline is not None and _time_is_up(deadline, step, log_every)
            first, is_last = step == start_step + 1, step == num_steps or out_of_time
            do_ckpt = is_last or (ckpt_every > 0 and step % ckpt_every == 0)
            do_eval = eval_every > 0 and (step % eval_every == 0 or is_last)
            if not (first or is_last or do_ckpt or do_eval or step % log_every == 0):
                continue
            # Every step since the last fetch is checked, so a NaN is reported with the step that
            # produced it, and no checkpoint is written after it.
            record = _fetch_and_check(pending, last_saved)
            pending = []
            record.update(progress.update(step), examples_per_sec=progress.last_rate * int(t.batch_size))
            if first:
                record["compile_seconds"] = compile_seconds
            log.info(
                "step %d/%d  loss %.4f  grad_norm %.3g  lr %.3g  %.2f steps/s  ETA %s",
                step, num_steps, record["loss"], record["grad_norm"], record["learning_rate"],
                record["steps_per_sec"], writers.format_duration(record["eta_seconds"]),
            )
            if do_ckpt:
                last_saved = _save(manager, state)
            if do_eval:
                # Every process gathers FSDP-sharded EMA weights (a collective); process 0 evaluates.
                ema_params = state.ema_params if mesh.shape.get("fsdp", 1) == 1 else mesh_lib.replicate(state.ema_params, mesh)
            if validation is not None and do_eval:
                scores = validation(step, ema_params)
                log.info("validation at step %d: %s", step, "  ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items())))
                record.update(scores)
                progress.restart_clock(step)  # validation time is not training throughput
            writer.write_scalars(step, record)
            last = {"step": step, **record}
            if out_of_time:
                log.info("stopping at step %d: training.max_minutes=%g reached (run again to continue)", step, max_minutes)
                break
        last["compile_seconds"] = compile_seconds
        return last
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()


def enable_compilation_cache(directory: str) -> None:
    """Keeps compiled programs in `directory` across runs (a resumed or repeated job starts
    without recompiling). Empty: leave JAX's setting alone (it honours
    JAX_COMPILATION_CACHE_DIR itself)."""
    if not directory:
        return
    # Cache every program that took a second to compile: the training step and the
    # validation sampler are the ones that matter.
    path = xla_cache.enable(directory, min_compile_seconds=1.0)
    log.info("compilation cache: %s", path)


def _time_is_up(deadline: float, step: int, log_every: int) -> bool:
    """Whether the time budget is spent; every process must agree on the step it stops at."""
    if jax.process_count() == 1:
        return time.perf_counter() > deadline
    if step % log_every:
        return False  # multi-host: decide at log steps only, as process 0 says
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.bool_(time.perf_counter() > deadline)))


def _fetch_and_check(pending, last_saved) -> dict:
    """Fetches [(step, measurements)] in one transfer, checks each step, returns the last's."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
        _check_finite(step, {k: float(v) for k, v in m.items()}, last_saved)
    return {k: float(v) for k, v in fetched[-1].items()}


def _flops(compiled) -> float | None:
    try:
        analysis = compiled.cost_analysis()
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0]
        return float(analysis.get("flops", 0.0)) or None
    except Exception:  # not every backend reports costs
        return None
