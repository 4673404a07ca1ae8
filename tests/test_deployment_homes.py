"""What the docs say about where the image runs, checked against the Dockerfile, the settings and the routes.

A user copies these commands and files as they are: a port, a mount path or a variable name that drifted from
the image would start a server that looks healthy to nobody, or reads no voices. So the commands are parsed,
not grepped, and compared with what the image and the server really use.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import fields
from pathlib import Path

import yaml

from settings import Settings
from tests.server_process import ROOT
from tests.test_dockerfile import DOCKERFILE

GUIDE = (ROOT / "docs" / "deployment-guide.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMPOSE_FILE = ROOT / "deploy" / "compose.yaml"
SETTING_NAMES = {item.name.upper() for item in fields(Settings)}


def image_env() -> dict[str, str]:
    """The final stage's ENV, as the container sees it."""
    env: dict[str, str] = {}
    for instruction, arguments in DOCKERFILE["final"]:
        if instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(arguments))
    return env


def exposed_ports() -> set[int]:
    return {int(arguments.split("/")[0]) for instruction, arguments in DOCKERFILE["final"] if instruction == "EXPOSE"}


def writable_dir() -> str:
    """The one path the final stage gives uid 1000 (tests/test_dockerfile.py checks it is the only one)."""
    runs = " && ".join(arguments for instruction, arguments in DOCKERFILE["final"] if instruction == "RUN")
    for command in runs.split("&&"):
        words = shlex.split(command)
        if words[0] == "install" and "-o" in words and words[words.index("-o") + 1] != "root":
            return words[-1]
    raise AssertionError("the final stage gives uid 1000 no directory")


def stop_budget() -> int:
    """Seconds a stop must allow: the drain after SIGTERM, then the graceful shutdown of the streams in flight."""
    defaults = Settings()
    return defaults.drain_seconds + defaults.shutdown_timeout


def open_get_routes() -> set[str]:
    """Paths a health checker may GET without the API key, from the application's own route table."""
    from api.app import Application

    app = Application(Settings(api_key="k"), Path("GenieData"), [])
    return {route.path for route in app.routes.routes if route.open and route.method == "GET"}


def bash_blocks(text: str) -> list[str]:
    """The ```bash blocks of a Markdown text, continuation lines joined."""
    return [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)]


def commands(text: str, prefix: str) -> list[list[str]]:
    """Every shell command in the text's bash blocks that starts with `prefix`, split as the shell would."""
    found = []
    for block in bash_blocks(text):
        for line in block.splitlines():
            for command in line.split("&&"):
                words = shlex.split(command, comments=True)
                if words[: len(prefix.split())] == prefix.split():
                    found.append(words)
    return found


def seconds(duration: str) -> float:
    """A Compose duration ("45s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


# ---- no "free" claim about Docker Spaces or CPU basic --------------------------------------------------------

DOC_FILES = [
    ROOT / "README.md",
    ROOT / "models" / "README.md",
    ROOT / ".env.example",
    ROOT / "Dockerfile",
    ROOT / "api" / "openapi.json",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "playground").glob("*.html")),
    *sorted(path for path in (ROOT / "deploy").rglob("*") if path.is_file()),
]
FREE = re.compile(r"(?<![-\w])free\b", re.IGNORECASE)
HOSTING = re.compile(r"\bSpaces?\b|CPU[ -]basic|hardware|Docker|Gradio", re.IGNORECASE)
TRUE_FREE = re.compile(r"\bstatic Spaces? (?:are|is) free\b", re.IGNORECASE)


def free_hosting_claims(text: str) -> list[str]:
    """Sentences that call some Space or its hardware free, other than the true "static Spaces are free"."""
    sentences = re.split(r"(?<=[.!?;])\s+|\n\s*\n", TRUE_FREE.sub("", text))
    return [" ".join(sentence.split()) for sentence in sentences if FREE.search(sentence) and HOSTING.search(sentence)]


def test_the_claim_detector_finds_what_the_old_docs_said() -> None:
    """The regex itself, on the sentences the docs had before Hugging Face required a paid plan."""
    old = (
        "a short clip of the voice to an OpenAI-compatible speech endpoint on a free Hugging Face Space.\n"
        "1. On huggingface.co: **New Space**, SDK **Docker**, hardware **CPU basic** (free: 2 vCPU, 16 GB).\n"
        "Figures measured on a 2-core machine like the free Space, with a V2ProPlus voice:\n"
    )
    assert len(free_hosting_claims(old)) == 3
    assert free_hosting_claims("Docker Spaces need a paid plan; only static Spaces are free. A noise-free graph.") == []


def test_no_doc_calls_a_docker_space_or_cpu_basic_free() -> None:
    assert (ROOT / "deploy").is_dir()
    claims = {path.relative_to(ROOT).as_posix(): free_hosting_claims(path.read_text(encoding="utf-8")) for path in DOC_FILES}
    assert {path: found for path, found in claims.items() if found} == {}


def test_the_readme_and_the_guide_say_a_docker_space_needs_a_paid_plan() -> None:
    for text in (README, GUIDE):
        text = " ".join(text.split())
        assert re.search(r"Docker \(and Gradio\) Spaces[^.]*paid plan to create[^.]*PRO[^.]*Team or Enterprise", text)


# ---- deploy/compose.yaml -------------------------------------------------------------------------------------


def compose_service() -> dict:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert list(document["services"]) == ["speech"], "one service: the speech server"
    return document["services"]["speech"]


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """Container path -> (source, mode) of the service's short-syntax volumes."""
    found = {}
    for item in service["volumes"]:
        source, target, *mode = item.split(":")
        found[target] = (source, mode[0] if mode else "rw")
    return found


def test_compose_builds_this_repository_and_reads_its_env_file() -> None:
    service = compose_service()
    context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
    assert context == ROOT and (context / service["build"]["dockerfile"]).is_file()
    env_files = [(COMPOSE_FILE.parent / item["path"]).resolve() for item in service["env_file"]]
    assert env_files == [ROOT / ".env"]  # the file .env.example says to copy it to
    assert all(item["required"] is False for item in service["env_file"])  # no .env is fine: the defaults


def test_compose_sets_only_real_settings_and_pins_the_images_paths() -> None:
    environment = {name: str(value) for name, value in compose_service()["environment"].items()}
    assert set(environment) <= SETTING_NAMES, sorted(set(environment) - SETTING_NAMES)
    image = image_env()
    for name in ("MODELS_DIR", "GENIE_DATA_DIR", "GENIE_DOWNLOAD"):  # what a checkout's .env would get wrong
        assert environment[name] == image[name], name
    assert int(environment["PORT"]) == Settings().port


def test_compose_publishes_the_port_the_server_listens_on() -> None:
    service = compose_service()
    published = [item.rsplit(":", 1) for item in service["ports"]]
    assert [int(container) for _host, container in published] == [Settings().port]
    assert Settings().port in exposed_ports()


def test_compose_mounts_the_voices_read_only_where_the_image_reads_them_and_a_named_cache() -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    found = mounts(compose_service())
    env = image_env()
    models_source, models_mode = found[env["MODELS_DIR"]]
    assert (COMPOSE_FILE.parent / models_source).resolve() == ROOT / "models" and models_mode == "ro"
    cache = writable_dir()
    assert env["XDG_CACHE_HOME"] == cache and env["HF_HOME"].startswith(cache + "/")  # CACHE_DIR defaults under it
    cache_source, cache_mode = found[cache]
    assert cache_source in document["volumes"] and cache_mode == "rw"  # a named volume, created owned by uid 1000
    assert set(found) == {env["MODELS_DIR"], cache}


def test_compose_health_check_asks_an_open_route_on_the_servers_port() -> None:
    check = compose_service()["healthcheck"]
    assert check["test"][:2] == ["CMD", "python"]  # the image has python, not curl
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", " ".join(check["test"]))
    assert len(urls) == 1, check["test"]
    port, path = urls[0]
    assert int(port) == Settings().port and path == "/health" and path in open_get_routes()
    image_check = next(arguments for instruction, arguments in DOCKERFILE["final"] if instruction == "HEALTHCHECK")
    image_start_period = re.search(r"--start-period=(\S+)", image_check).group(1)
    assert seconds(check["start_period"]) >= seconds(image_start_period)  # as patient as the image's own check


def test_compose_waits_for_the_drain_and_the_streams_before_killing() -> None:
    assert seconds(compose_service()["stop_grace_period"]) > stop_budget()


# ---- the commands the guide shows ----------------------------------------------------------------------------

RUN_VALUE_FLAGS = {"--name", "-p", "--publish", "-v", "--volume", "-e", "--env", "--env-file", "--stop-timeout"}
RUN_SWITCHES = {"-d", "--detach", "--rm"}


def parse_docker_run(words: list[str]) -> tuple[dict[str, list[str]], str]:
    """Options (by flag) and the image of `docker run ...` with no command after the image."""
    options: dict[str, list[str]] = {}
    index = 2
    while index < len(words) and words[index].startswith("-"):
        flag, equals, value = words[index].partition("=")
        if flag in RUN_SWITCHES:
            options.setdefault(flag, []).append("")
        elif flag in RUN_VALUE_FLAGS:
            if not equals:
                index += 1
                value = words[index]
            options.setdefault({"--publish": "-p", "--volume": "-v", "--env": "-e"}.get(flag, flag), []).append(value)
        else:
            raise AssertionError(f"docker run flag {flag} is not checked by this test: add it to the parser")
        index += 1
    assert index == len(words) - 1, f"expected the image last: {words[index:]}"
    return options, words[index]


def test_every_docker_run_in_the_docs_matches_the_image() -> None:
    built = {words[words.index("-t") + 1] for words in commands(GUIDE, "docker build")}
    runs = commands(GUIDE, "docker run") + commands(README, "docker run")
    assert runs, "the guide shows no docker run"
    env = image_env()
    for words in runs:
        options, image = parse_docker_run(words)
        assert image in built, f"{image} is not the tag the guide builds ({built})"
        ports = [int(item.rsplit(":", 1)[1]) for item in options["-p"]]
        assert ports == [Settings().port] and Settings().port in exposed_ports()
        volumes = {}
        for item in options["-v"]:
            source, target, *mode = item.split(":")
            volumes[target] = (source, mode)
        assert volumes[env["MODELS_DIR"]][1] == ["ro"] and volumes[env["MODELS_DIR"]][0].endswith("/models")
        assert writable_dir() in volumes and not volumes[writable_dir()][0].startswith(("/", "$"))  # a named volume
        assert set(volumes) == {env["MODELS_DIR"], writable_dir()}
        names = {item.split("=", 1)[0] for item in options.get("-e", [])}
        assert names <= SETTING_NAMES, sorted(names - SETTING_NAMES)
        assert int(options["--stop-timeout"][0]) > stop_budget()
    assert "chmod -R a+rX models" in GUIDE  # uid 1000 reads the mounted voices


def test_the_compose_commands_name_the_compose_file() -> None:
    shown = commands(GUIDE, "docker compose") + commands(README, "docker compose")
    assert shown, "the guide shows no docker compose command"
    for words in shown:
        assert (ROOT / words[words.index("-f") + 1]) == COMPOSE_FILE and COMPOSE_FILE.is_file()


def test_the_cloud_run_command_uses_the_servers_port_and_a_timeout_for_the_longest_stream() -> None:
    deploys = commands(GUIDE, "gcloud run deploy")
    assert len(deploys) == 1
    words = deploys[0]
    value = {words[index]: words[index + 1] for index in range(len(words) - 1) if words[index].startswith("--")}
    assert int(value["--port"]) == Settings().port
    assert Settings().max_audio_seconds < int(value["--timeout"]) <= 3600  # Cloud Run's maximum request timeout
    assert value["--cpu"] == "2"  # the benchmark's machine, which every figure in the guide is from
    assert value["--set-secrets"].split("=")[0] == "API_KEY"
    assert value["--set-env-vars"].split("=")[0] in SETTING_NAMES


def test_the_inference_endpoint_example_uses_the_servers_port_and_health_route() -> None:
    block = next(block for block in re.findall(r"```python\n(.*?)```", GUIDE, re.DOTALL) if "create_inference_endpoint" in block)
    call = next(
        node
        for node in ast.walk(ast.parse(block))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "create_inference_endpoint"
    )
    keywords = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    assert keywords["custom_image"]["port"] == Settings().port
    assert keywords["custom_image"]["healthRoute"] == "/health" and "/health" in open_get_routes()  # readiness, not /
    assert set(keywords["secrets"]) <= SETTING_NAMES
    assert keywords["min_replica"] == 0 and keywords["scale_to_zero_timeout"] > 0  # what the text around it explains
