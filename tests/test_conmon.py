"""What conmon hands back from a failed runc create, cut to runc's own error."""

from crib.runtime.conmon import runtime_reason

RUNC_STDERR = (
    'time="t" level=warning msg="cannot toggle freezer: cgroups not configured for container"\n'
    'time="t" level=error msg="runc create failed: unable to start container process: '
    'exec: \\"sleep\\": executable file not found in $PATH"\n'
)


def test_only_the_error_lines_and_their_quotes_remain() -> None:
    assert runtime_reason(RUNC_STDERR) == (
        "runc create failed: unable to start container process: "
        'exec: "sleep": executable file not found in $PATH'
    )


def test_text_that_is_not_logfmt_is_kept() -> None:
    assert runtime_reason("  conmon: failed to open log\n") == "conmon: failed to open log"
    assert runtime_reason("") == ""
