"""The Azure workbook and alert rules: every query names only what the app emits.

The queries read the app's logs (AppTraces: message and properties), metrics (AppMetrics: name and
dimensions) and spans (AppDependencies: name). What the app emits is read from its source: the
messages of its ``log.*`` calls, the keys of their ``extra`` and of ``log_context``, the instruments
of ``m365send/telemetry.py`` with the attributes they are recorded with, its span names, and the
problem types of ``m365send/errors.py``. A query naming anything else would chart nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from m365send import errors

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "m365send").glob("*.py")), ROOT / "function_app.py"]
DASHBOARD = ROOT / "infra" / "app" / "dashboard.bicep"
WORKBOOK = ROOT / "infra" / "app" / "workbook.json"


def _source() -> str:
    return "\n".join(path.read_text() for path in SOURCES)


def emitted_messages() -> set[str]:
    """Log message templates, up to their first placeholder."""
    found = re.findall(r"log\.(?:debug|info|warning|error|exception)\(\s*\"([^\"]*)\"", _source())
    return {message.split("%")[0] for message in found}


def emitted_properties() -> set[str]:
    source = _source()
    keys = set()
    for block in re.findall(r"extra=\{([^}]*)\}", source):
        keys |= set(re.findall(r"\"(\w+)\":", block))
    for call in re.findall(r"(?:log_context|add_log_context)\(([^)]*)\)", source):
        keys |= set(re.findall(r"(\w+)=", call))
    # Built up in a dict before the call (tokens.py's details).
    for block in re.findall(r"details[^=\n]*= \{([^}]*)\}", source):
        keys |= set(re.findall(r"\"(\w+)\":", block))
    keys |= set(re.findall(r"details\[\"(\w+)\"\]", source))
    return keys


def emitted_metrics() -> dict[str, set[str]]:
    """Instrument name → the attribute keys it is recorded with."""
    telemetry = (ROOT / "m365send" / "telemetry.py").read_text()
    names = dict(re.findall(r"(\w+) = _Instrument\(\s*\"\w+\",\s*\"([^\"]+)\"", telemetry))
    dimensions: dict[str, set[str]] = {name: set() for name in names.values()}
    for variable, attributes in re.findall(r"(\w+)\.(?:add|record)\([^{\n]*\{([^}\n]*)\}", _source()):
        if variable in names:
            dimensions[names[variable]] |= set(re.findall(r"\"(\w+)\":", attributes))
    return dimensions


def emitted_spans() -> set[str]:
    return set(re.findall(r"start_as_current_span\(\"([^\"]+)\"", _source()))


def problem_types() -> set[str]:
    """The problem types of the one error table, and the reasons recorded outside it."""
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.M365SendError)]
    slugs = {errors.outcome_of(cls.__new__(cls)).slug for cls in classes}
    recorded = set(re.findall(r"FAILURES\.add\(1, \{\"reason\": \"([\w-]+)\"", _source()))
    return slugs | recorded


def queries() -> list[tuple[str, str]]:
    """(where, KQL) of every workbook item and alert rule."""
    workbook = json.loads(WORKBOOK.read_text())
    found = [
        (f"workbook: {item['content']['title']}", item["content"]["query"])
        for item in workbook["items"]
        if item["type"] == 3
    ]
    bicep = DASHBOARD.read_text()
    reasons = re.search(r"var serviceReasons = '(.*)'", bicep)
    assert reasons is not None
    for name, body in re.findall(
        r"resource (\w+) 'Microsoft\.Insights/scheduledQueryRules@[^']+' = \{(.*?)\n\}", bicep, re.S
    ):
        query = re.search(r"query: '''(.*?)'''", body, re.S) or re.search(r"query: '((?:[^'\\]|\\.)*)'", body)
        assert query is not None, f"alert {name} has no query"
        text = query.group(1).replace("\\n", "\n").replace("${serviceReasons}", reasons.group(1))
        found.append((f"alert: {name}", text))
    return found


QUERIES = queries()


def test_the_workbook_and_every_alert_have_queries() -> None:
    names = {where for where, _ in QUERIES}

    assert sum(where.startswith("workbook") for where in names) >= 7
    assert {
        "alert: poisonAlert",
        "alert: deadLetterAlert",
        "alert: failureRatioAlert",
        "alert: credentialExpiryAlert",
    } <= names


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[w for w, _ in QUERIES])
def test_each_query_names_only_log_messages_the_app_writes(where: str, query: str) -> None:
    messages = emitted_messages()

    for operator, literal in re.findall(r"Message (==|startswith) \"([^\"]+)\"", query):
        if operator == "==":
            assert literal in messages, f"{where}: no log message is {literal!r}"
        else:
            assert any(m.startswith(literal) for m in messages), f"{where}: no log message starts {literal!r}"


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[w for w, _ in QUERIES])
def test_each_query_names_only_properties_and_dimensions_the_app_sets(where: str, query: str) -> None:
    metrics = emitted_metrics()
    named_metrics = set(re.findall(r"\"(m365send\.[\w.]+)\"", query)) - emitted_spans()
    dimensions = set().union(*(metrics.get(name, set()) for name in named_metrics)) if named_metrics else set()
    allowed = (emitted_properties() if "AppTraces" in query else set()) | dimensions

    for field in set(re.findall(r"Properties\.(\w+)", query)):
        assert field in allowed, f"{where}: nothing sets Properties.{field}"


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[w for w, _ in QUERIES])
def test_each_query_names_only_metrics_and_spans_the_app_has(where: str, query: str) -> None:
    known = set(emitted_metrics()) | emitted_spans()

    for name in re.findall(r"\"(m365send\.[\w.]+)\"", query):
        assert name in known, f"{where}: the app has no metric or span {name!r}"


@pytest.mark.parametrize(("where", "query"), QUERIES, ids=[w for w, _ in QUERIES])
def test_each_problem_type_a_query_names_exists(where: str, query: str) -> None:
    listed = re.search(r"Properties\.reason\) in \(([^)]*)\)", query)
    if listed is None:
        return

    for reason in re.findall(r"\"([^\"]+)\"", listed.group(1)):
        assert reason in problem_types(), f"{where}: no problem type {reason!r}"


def test_the_scanner_sees_what_the_app_emits() -> None:
    # A scanner that found nothing would pass every query above: it must find the known ones.
    assert "email accepted by Graph" in emitted_messages()
    assert {"mailbox", "kind", "problem", "credential_days_left"} <= emitted_properties()
    assert emitted_metrics()["m365send.failures"] == {"reason", "trigger", "disposition"}
    assert emitted_metrics()["m365send.graph.duration"] == {"status"}
    assert {"m365send.graph.request", "m365send.keyvault.read"} <= emitted_spans()
    assert {"dependency-unavailable", "credential", "record-not-written"} <= problem_types()


@pytest.mark.parametrize(
    ("check", "query"),
    [
        (test_each_query_names_only_log_messages_the_app_writes, 'AppTraces | where Message == "email delivered"'),
        (test_each_query_names_only_properties_and_dimensions_the_app_sets, "AppTraces | extend x = Properties.inbox"),
        (test_each_query_names_only_metrics_and_spans_the_app_has, 'AppMetrics | where Name == "m365send.opens"'),
        (test_each_problem_type_a_query_names_exists, 'x | where tostring(Properties.reason) in ("spam")'),
    ],
    ids=["message", "property", "metric", "problem type"],
)
def test_each_check_catches_a_query_naming_what_the_app_never_emits(check: object, query: str) -> None:
    with pytest.raises(AssertionError):
        check("a wrong query", query)  # type: ignore[operator]


def test_alerts_notify_the_action_group_only_when_an_address_is_given() -> None:
    bicep = DASHBOARD.read_text()

    assert "resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail))" in bicep
    assert "emailAddress: alertEmail" in bicep
    assert bicep.count("actions: actions") == 4
    assert "actionGroups: empty(alertEmail) ? [] : [actionGroup.id]" in bicep


def test_the_workbook_reads_the_apps_workspace() -> None:
    bicep = DASHBOARD.read_text()

    assert "serializedData: loadTextContent('workbook.json')" in bicep
    assert "sourceId: logAnalyticsId" in bicep
