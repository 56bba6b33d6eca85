"""Preparing a study: every argument checked, the storage opened, the study created or resumed."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.storages import BaseStorage

from bioscale import spaces
from bioscale.contract import (ARCHITECTURE, CONFIG, DEFAULT_CONFIG, OUTSIDE_SPACE, QUEUED_PARAMS, ROLE, SAME_ON_RESUME, STAGE,
                               TRIALS, TUNE, WINNER, WINNER_TRIAL, StudyInfo, best_trial, name_objective)
from bioscale.data import load
from bioscale.devices import resolve_devices
from bioscale.errors import UsageError
from bioscale.nets import arch_family, resolve_arch
from bioscale.run_config import RunConfig
from bioscale.spaces.protocols import check_protocol
from bioscale.storages import heartbeat_settings, open_storage, parse_storage

from .checkpoints import directory as checkpoint_directory
from ._design import Design
from ._plan import Plan, StudySpec, check_spec, search_space, study_name
from ._samplers import sampler_settings


def prepare(spec: StudySpec) -> tuple[Plan, BaseStorage, list[str]]:
    """Check a study's whole specification, then open its storage; raises UsageError before creating anything."""
    spec, overrides = check_spec(spec)
    device_list = resolve_devices(spec.devices)
    check_protocol(spec.protocol)
    family, space, fixed_values = search_space(spec, overrides)
    if spec.default_trial and spec.stage == TUNE:  # a default the space cannot hold is refused before the storage opens
        default_params(spec.rule, {**fixed_values, "schedule": spec.schedule}, space)
    load(spec.dataset, root=spec.data_root, val_size=spec.val_size)  # the data must be there before any trial starts
    if spec.workers > 1 or device_list[0] != "cpu":
        load.cache_clear()  # the workers load their own copy, on their own device
    storage = parse_storage(spec.storage)
    spec = replace(spec, checkpoint_dir=str(checkpoint_directory(spec.checkpoint_dir, storage)))  # one folder every worker agrees on
    if storage.kind != "journal":
        heartbeat_settings()  # malformed heartbeat settings are user errors too
    storage_obj = open_storage(storage)
    arch_name, arch_spec, arch_from = spec.arch, None, None
    if spec.stage == TUNE:
        if spec.arch.startswith("@"):
            arch_from = spec.arch
            arch_spec = arch_name = winner_of(storage_obj, spec.arch[1:])
            family = arch_family(arch_spec)
        else:
            arch_spec = resolve_arch(spec.arch, spec.dataset)
    name = spec.study_name or study_name(spec.stage, spec.dataset, arch_name, spec.label, spec.activation)
    plan = Plan(spec=spec, protocol="custom" if overrides else spec.protocol, arch=arch_name, arch_spec=arch_spec,
                arch_from=arch_from, family=family, space=space, fixed=fixed_values, storage=storage, study_name=name)
    return plan, storage_obj, device_list


def winner_of(storage: BaseStorage, name: str) -> str:
    """The architecture spec an architecture-stage study chose."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage))
        raise UsageError(f"no study {name!r} in this storage to take an architecture from; studies: {names or 'none'}") from None
    info = StudyInfo.from_attrs(study.user_attrs)
    if info.stage != ARCHITECTURE:
        raise UsageError(f"study {name!r} is not an architecture-stage study")
    winner = info.winner
    if not winner:
        raise UsageError(f"architecture study {name!r} has no winner yet (no trial has completed)")
    return winner


def open_study(plan: Plan, storage: BaseStorage) -> optuna.Study:
    """Create the study (queueing the default configuration's trial when asked), or resume it when its settings match."""
    design = Design.of(plan.spec)
    attrs = _jsonable(replace(plan.info(sampler_settings(plan.spec.sampler, design.seed)), design=design.to_attr()).to_attrs())
    study = optuna.create_study(storage=storage, study_name=plan.study_name, direction="minimize", load_if_exists=True)
    existing = study.user_attrs
    if STAGE not in existing:
        if study.get_trials(deepcopy=False) or len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MINIMIZE:
            raise UsageError(f"study {plan.study_name!r} exists but bioscale did not create it; choose another --study-name")
        name_objective(study)
        if plan.spec.default_trial and plan.spec.stage == TUNE:
            enqueue_default(study, plan)
        for key, value in attrs.items():  # `stage` last: a worker that sees it knows every other attribute is there
            study.set_user_attr(key, value)
        return study
    for key in SAME_ON_RESUME:
        if _jsonable(existing.get(key)) != attrs[key]:
            shown = "its search space" if key == "space" else f"{key}={json.dumps(existing.get(key))}"
            raise UsageError(f"study {plan.study_name!r} exists with {shown}, which this run changes; "
                             f"rerun with the same settings to resume it, or give another --study-name")
    if existing.get(TRIALS) != plan.spec.trials:
        study.set_user_attr(TRIALS, plan.spec.trials)
    return study


def enqueue_default(study: optuna.Study, plan: Plan) -> list[str]:
    """Queue one trial of the rule's default settings (`role` "default": how much tuning buys); returns the settings it
    trains outside the space (a --set range that excludes a default), which its `outside_space` attribute lists too."""
    params, outside = default_params(plan.spec.rule, plan.trial_fixed(), plan.space)
    if outside:
        shown = ", ".join(f"{name}={params[name]}" for name in outside)
        print(f"bioscale: study {plan.study_name}: the default trial trains the rule's default {shown}, outside the "
              f"searched range", file=sys.stderr, flush=True)
    study.enqueue_trial(params, user_attrs={ROLE: DEFAULT_CONFIG, OUTSIDE_SPACE: outside, QUEUED_PARAMS: params},
                        skip_if_exists=True)
    return outside


def default_params(rule: str, fixed: dict[str, Any], space: dict[str, BaseDistribution]) -> tuple[dict[str, Any], list[str]]:
    """(the rule's default value of every name `space` samples, `fixed` overriding; the names whose default it excludes).

    A numeric default outside a --set range trains anyway (as the rule's default); a categorical one
    cannot be stored outside its choices and is refused (UsageError).
    """
    defaults = {**spaces.rule_defaults(rule), **fixed}
    params = {name: defaults.get(name) for name in space}
    outside = [name for name, dist in space.items() if not _inside(dist, params[name])]
    for name in outside:
        if isinstance(space[name], CategoricalDistribution) or params[name] is None:
            raise UsageError(f"--set {name} leaves out the rule's default {name}={params[name]}, which the default trial "
                             f"trains: include it in the choices, or run without the default trial")
    return params, outside


def _inside(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return isinstance(value, (int, float)) and not isinstance(value, bool) and dist.low <= value <= dist.high


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def record_winner(study: optuna.Study) -> str | None:
    """Store the best complete trial's architecture as the study's `winner`; returns it."""
    best = best_trial(study.get_trials(deepcopy=False))
    if best is None:
        return None
    winner = RunConfig.from_stored(best.user_attrs[CONFIG]).arch
    info = StudyInfo.from_attrs(study.user_attrs)
    if info.winner != winner or info.winner_trial != best.number:
        study.set_user_attr(WINNER, winner)
        study.set_user_attr(WINNER_TRIAL, best.number)
    return winner
