"""deploy/haproxy/haproxy.cfg, the balancer configuration the docs recommend, and how the tests render it.

The e2e runs (tests/test_scale_e2e.py, bench/scale.py) use `render_config`: these tests keep it honest, so that
what runs in the tests is the file users copy, with only its addresses changed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.haproxy import RECOMMENDED, REPLICA_HEADER, RESILIENCE, haproxy_binary, render_config


def directives(config: str) -> list[str]:
    return [line.strip() for line in config.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_recommended_file_has_the_settings_streaming_and_replicas_need() -> None:
    lines = directives(RECOMMENDED.read_text())
    for needed in (
        "balance leastconn",
        "option httpchk",
        "http-check send meth GET uri /health ver HTTP/1.1 hdr Host haproxy-health-check",
        "http-check expect status 200",
        "default-server check inter 1s fall 2 rise 2",
        "option forwardfor",
        "retries 3",
        "option redispatch 1",
        "retry-on conn-failure empty-response",
        "timeout server 300s",
        "timeout client 300s",
    ):
        assert needed in lines, needed
    # Anything that would hold the audio back or replay a request that was answered.
    assert not [line for line in lines if line.startswith(("compression", "filter", "option http-buffer-response"))]
    assert not [line for line in lines if line.startswith("retry-on") and ("all-retryable-errors" in line or "timeout" in line)]


def test_render_changes_only_the_addresses() -> None:
    template = RECOMMENDED.read_text()
    rendered = render_config(template, 18080, [18001, 18002, 18003])
    kept = [line for line in directives(template) if not line.startswith(("bind", "server"))]
    assert [line for line in directives(rendered) if not line.startswith(("bind", "server"))] == kept
    assert "bind 127.0.0.1:18080" in directives(rendered)
    assert [line for line in directives(rendered) if line.startswith("server")] == [
        f"server replica{n} 127.0.0.1:1800{n}" for n in (1, 2, 3)
    ]


def test_render_keeps_the_server_lines_options_and_drops_what_it_is_told() -> None:
    template = "global\n    maxconn 10\nbackend b\n    bind :80 name x\n    retries 3\n    server a 10.0.0.1:80 check weight 2\n"
    rendered = directives(render_config(template, 1, [2, 3], without=["retries"]))
    assert rendered == [
        "global",
        "maxconn 10",
        "backend b",
        "bind 127.0.0.1:1 name x",
        *[f"server replica{n} 127.0.0.1:{n + 1} check weight 2" for n in (1, 2)],
    ]


def test_render_with_a_stats_socket_adds_the_socket_and_the_replica_header_only(tmp_path: Path) -> None:
    template = RECOMMENDED.read_text()
    plain = directives(render_config(template, 1, [2]))
    observed = directives(render_config(template, 1, [2], stats_socket=tmp_path / "admin.sock"))
    assert sorted(set(observed) - set(plain)) == sorted(
        [f"stats socket {tmp_path / 'admin.sock'} mode 600 level admin", f"http-response set-header {REPLICA_HEADER} %s"]
    )


def test_without_resilience_no_health_check_retry_or_redispatch_is_left() -> None:
    rendered = render_config(RECOMMENDED.read_text(), 1, [2, 3], without=RESILIENCE)
    lines = directives(rendered)
    assert not [line for line in lines if "check" in line or line.startswith(("retries", "retry-on", "option redispatch"))]


def test_a_template_without_bind_or_server_lines_is_refused() -> None:
    with pytest.raises(ValueError, match="bind"):
        render_config("backend b\n    server a 1.2.3.4:5\n", 1, [2])
    with pytest.raises(ValueError, match="server"):
        render_config("frontend f\n    bind :80\n", 1, [2])


@pytest.mark.parametrize("without", [(), RESILIENCE])
def test_haproxy_accepts_the_rendered_configuration(tmp_path: Path, without: tuple[str, ...]) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(RECOMMENDED.read_text(), 18080, [18001, 18002], without=without, stats_socket=tmp_path / "s"))
    checked = subprocess.run([haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr
