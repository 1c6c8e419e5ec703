"""Optuna pieces of `harness sweep`: storages (journal file, SQLite, PostgreSQL/MySQL), samplers, the
pruner, the study (refusing to mix settings), and the budget rule shared by every worker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness.config.experiment import Experiment, canonical_hash
from harness.core.errors import UserError
from harness.sweep.config import SweepConfig


# ------------------------------------------------------------------------------------------ storage
@dataclass
class Storage:
    obj: optuna.storages.BaseStorage
    url: str  # for messages and optuna-dashboard (password hidden)


def open_storage(url: str | None, out: Path) -> Storage:
    """A journal file (default <out>/optuna.journal) or an RDB URL; unreachable -> UserError, nothing written."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url is None or "://" not in url:
        path = Path(url) if url else out / "optuna.journal"
        if url and not path.parent.is_dir():
            raise UserError(f"--storage {url}: folder {path.parent} does not exist")
        if url is None:
            out.mkdir(parents=True, exist_ok=True)
        try:
            backend = optuna.storages.journal.JournalFileBackend(str(path))
        except OSError as e:
            raise UserError(f"--storage {path}: cannot open the journal file ({e})") from None
        return Storage(optuna.storages.JournalStorage(backend), str(path))
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(
            f"--storage {url!r}: not a storage URL (sqlite:///FILE.db, postgresql://USER@HOST/DB, "
            f"mysql+pymysql://USER@HOST/DB, or a journal file path)"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    # SQLite: wait up to 60 s for another worker's write lock (its default, 5 s, is short on a loaded machine)
    kwargs = (
        {"connect_args": {"timeout": 60}}
        if parsed.get_backend_name() == "sqlite"
        else {"connect_args": {"connect_timeout": 10}}
    )
    try:
        store = _rdb_storage(url, kwargs)
    except sqlalchemy.exc.NoSuchModuleError:
        raise UserError(
            f"--storage {shown}: unknown database kind {parsed.drivername!r}; not a storage URL "
            f"(sqlite:///FILE.db, postgresql://USER@HOST/DB, mysql+pymysql://USER@HOST/DB, or a journal file path)"
        ) from None
    except ImportError as e:
        raise UserError(f"--storage {shown}: the database driver is not installed ({e}); install it, e.g. "
                        f"psycopg2-binary for postgresql, pymysql for mysql+pymysql") from None
    except Exception as e:  # noqa: BLE001 - SQLAlchemy raises many types for an unreachable database
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--storage {shown}: unreachable ({first})") from None
    return Storage(store, shown)


def _rdb_storage(url: str, engine_kwargs: dict, attempts: int = 5) -> optuna.storages.RDBStorage:
    """RDBStorage, retried when another worker is creating the same fresh database's tables right now."""
    import sqlalchemy

    for i in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as e:
            # two workers creating a fresh database: "table ... already exists", "database is locked", or the
            # second insert of alembic's version row (SQLite "UNIQUE constraint failed", PostgreSQL "duplicate
            # key", MySQL "Duplicate entry")
            racing = (
                isinstance(e, sqlalchemy.exc.IntegrityError)
                or "already exists" in str(e)
                or "database is locked" in str(e)
            )
            if not racing or i == attempts - 1:
                raise
            time.sleep(1.0 + i)
    raise AssertionError("unreachable")


def dashboard_command(store_url: str) -> str:
    """The one line that opens the study in optuna-dashboard (journal files need the storage-class hint)."""
    hint = "" if "://" in store_url else "--storage-class JournalFileStorage "
    return f"optuna-dashboard {hint}{store_url}"


# ------------------------------------------------------------------------------------------ sampler
class PerTrialSeed(optuna.samplers.BaseSampler):
    """Re-creates the wrapped sampler with a seed drawn from (seed, trial number) at each trial start.

    Workers sharing a study then never draw the same random sequence (two TPE workers with one seed
    would propose identical start-up points), and a one-worker sweep stays reproducible."""

    def __init__(self, make, seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        import numpy as np

        self._inner = self._make(int(np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0]))
        self._inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)


class Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler; trial n < grid size gets grid point n (seeded shuffle): exact and reproducible.

    Its after_trial would call study.stop(), which only works inside study.optimize; the driver's
    budget (every grid point once) decides when the study ends instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_sampler(cfg: SweepConfig) -> optuna.samplers.BaseSampler:
    s = optuna.samplers
    if cfg.sampler == "grid":
        return Grid(cfg.grid_space, seed=cfg.seed)
    make = {"tpe": lambda seed: s.TPESampler(seed=seed),
            "random": lambda seed: s.RandomSampler(seed=seed),
            "cmaes": lambda seed: s.CmaEsSampler(seed=seed, warn_independent_sampling=False)}[cfg.sampler]
    return PerTrialSeed(make, cfg.seed)


def make_pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    return (
        optuna.pruners.MedianPruner(n_startup_trials=3)
        if cfg.pruner == "median"
        else optuna.pruners.NopPruner()
    )


def study_fingerprint(cfg: SweepConfig, exp: Experiment) -> str:
    """What a study's trials are made from: the sweep and the base experiment, without what changes no
    run (`loggers`; `verl:` on a local experiment), as harness.config.experiment.expand leaves them out of run ids.
    """
    unused = {"loggers"} | ({"verl"} if exp.backend == "local" else set())
    return canonical_hash([cfg.fingerprint(), exp.model_dump(exclude=unused)])


def open_study(cfg: SweepConfig, exp: Experiment, store: Storage, name: str) -> optuna.Study:
    """Create or join the study; refuse to mix trials made from other settings (sweep or base experiment)."""
    study = optuna.create_study(
        study_name=name,
        storage=store.obj,
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg),
        direction=cfg.direction,
        load_if_exists=True,
    )
    fingerprint = study_fingerprint(cfg, exp)
    fp = study.user_attrs.get("sweep_fingerprint")
    if fp is None:
        study.set_user_attr("sweep_fingerprint", fingerprint)
    elif fp != fingerprint:
        raise UserError(
            f"study {name!r} in {store.url} was made from other settings (sweep params, sampler, objective, "
            f"seeds or the base experiment); use another --results folder or --storage, or restore the old files"
        )
    return study


# ------------------------------------------------------------------------------------------ budget
def fail_kind(t) -> str:
    return str(t.user_attrs.get("fail_kind", "error"))


def counts(t, grid: bool, retried: frozenset = frozenset()) -> bool:
    """Whether a trial uses up one unit of the study's budget (`retried`: numbers of failed trials run again)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    return (
        t.state == TrialState.FAIL
        and grid
        and fail_kind(t) in ("error", "killed")
        and t.number not in retried
    )


def retried_numbers(trials) -> frozenset:
    return frozenset(int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs)
