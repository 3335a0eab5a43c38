"""What :class:`chatbot_site.pgconnection.Outage` says of an outage, in process (the served
behaviour, through daphne and a stalled database, is in ``test_servers``)."""

from __future__ import annotations

from structlog.testing import capture_logs

from chatbot_site.pgconnection import DatabaseNoAnswer, FailureLog, Outage


def test_an_outage_is_three_kinds_of_line_and_its_refusals_none_of_their_own():
    outage = Outage()
    outage.log.summary_seconds = 0.0  # a summary with every refusal: no clock in the test
    with capture_logs() as lines:
        assert not outage.absorbs()  # up: the caller logs its own line
        outage.failed(cause=DatabaseNoAnswer("no answer from the database in 32 s"))
        outage.failed(cause=DatabaseNoAnswer("again"))  # the same outage: not a new one
        assert outage.absorbs() and outage.absorbs()
        outage.answered()
        outage.answered()  # once
        assert not outage.absorbs()
    events = [line["event"] for line in lines]
    assert events == [
        "database_outage_started",
        "database_outage_continues",  # the second failure: none refused yet
        "database_outage_continues",
        "database_outage_continues",
        "database_outage_ended",
    ], events
    started, *_continues, ended = lines
    assert (started["cause"], started["error"], started["log_level"]) == (
        "DatabaseNoAnswer",
        "no answer from the database in 32 s",
        "error",
    )
    assert [(c["refused"], c["refused_total"]) for c in _continues] == [(0, 0), (1, 1), (1, 2)]
    assert ended["refused"] == 2 and ended["log_level"] == "warning"


def test_a_summary_is_written_at_most_once_an_interval():
    outage = Outage()
    outage.log.summary_seconds = 3600.0
    with capture_logs() as lines:
        outage.failed(cause=None)
        for _request in range(500):
            assert outage.absorbs()
        outage.answered()
    assert [line["event"] for line in lines] == [
        "database_outage_started",
        "database_outage_ended",
    ]
    assert lines[-1]["refused"] == 500


def test_failures_that_are_what_is_counted_count_from_the_first():
    """Health's probes are themselves the failures its lines count (an outage counts the
    requests it refuses, not its attempts): the first names the cause, the rest are counted."""
    import structlog

    failures = FailureLog(
        structlog.get_logger("test"), started="probe_failed", continues="probe_failing",
        ended="probe_recovered", counted="failed",
    )  # fmt: skip
    failures.summary_seconds = 3600.0
    with capture_logs() as lines:
        for _probe in range(5):
            failures.failed(ConnectionRefusedError("refused"), counted=True)
        failures.ended()
        failures.ended()  # once
    assert [line["event"] for line in lines] == ["probe_failed", "probe_recovered"]
    assert (lines[0]["cause"], lines[0]["error"]) == ("ConnectionRefusedError", "refused")
    assert lines[-1]["failed"] == 5
