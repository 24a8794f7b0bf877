"""The chart's session housekeeping: a CronJob running `user-service purge-sessions`, off by
default, and a refusal of values the command would reject."""

from __future__ import annotations

import pytest

from .chart import Helm, HelmError, find, one, value_files


def test_purge_cronjob_is_off_by_default(helm: Helm) -> None:
    objects = helm.template(value_files("defaults"))
    assert not [
        cron
        for cron in find(objects, "CronJob")
        if "purge-sessions" in str(cron["spec"]["jobTemplate"])
    ]


def test_purge_cronjob_runs_the_command_as_the_app_does(helm: Helm) -> None:
    objects = helm.template(value_files("everything"))
    cron = one(objects, "CronJob", "sessions-purge")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == [
        "user-service",
        "purge-sessions",
        "--batch-size=1000",
        "--retain-days=3",
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["envFrom"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sessionPurge.batchSize": "0"}, "batchSize"),
        ({"sessionPurge.retainDays": "-1"}, "retainDays"),
    ],
)
def test_purge_values_the_command_would_refuse_are_refused(
    helm: Helm, values: dict[str, str], field: str
) -> None:
    with pytest.raises(HelmError, match=field):
        helm.template(value_files("defaults"), {"sessionPurge.enabled": "true", **values})
