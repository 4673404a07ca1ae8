"""What docs/deployment-guide.md claims, checked against the code it describes (a new user follows it literally)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests.server_process import ROOT

GUIDE = (ROOT / "docs" / "deployment-guide.md").read_text(encoding="utf-8")


def open_routes() -> set[str]:
    """The paths the application serves without the API key, read from its route table."""
    from api.app import Application
    from settings import Settings

    app = Application(Settings(api_key="k"), Path("GenieData"), [])
    return {route.path for route in app.routes.routes if route.open}


def test_the_guide_names_exactly_the_routes_open_without_the_key() -> None:
    sentence = GUIDE[GUIDE.index("**Secret** `API_KEY`") :].split("\n- ", 1)[0]
    open_part = sentence[sentence.index(";") : sentence.index("stay open")]
    named = set(re.findall(r"`(/[^`]*)`", open_part))
    assert named == open_routes()


def test_every_curl_that_writes_a_wav_asks_for_wav() -> None:
    commands = re.findall(r"curl [^`]*?-o (\S+)", GUIDE, re.DOTALL)
    assert commands, "the guide shows no curl command"
    for block in re.findall(r"(curl [^`]*?-o \S+\.wav)", GUIDE, re.DOTALL):
        body = json.loads(re.search(r"-d '([^']*)'", block).group(1))
        assert body.get("response_format") == "wav", block  # else DEFAULT_RESPONSE_FORMAT=mp3 writes MP3 into .wav


def test_the_sample_request_line_has_every_field_the_server_logs() -> None:
    source = (ROOT / "api" / "speech.py").read_text()
    start = source.index("def log(self)")
    logged = re.findall(r"(\w+)=%", source[start : source.index("self.request.id", start)]) + ["client"]
    sample = next(line for line in GUIDE.splitlines() if line.startswith("INFO gsv.request "))
    shown = re.findall(r"(\w+)=", sample)
    assert shown == logged


def test_the_python_examples_say_what_to_install() -> None:
    examples = GUIDE.index("import requests")
    assert "pip install openai requests" in GUIDE[:examples]


def test_the_local_run_uses_the_servers_own_virtualenv() -> None:
    local = GUIDE[GUIDE.index("### Try it locally") :]
    local = local[: local.index("\n## ")]
    assert "bash scripts/serve.sh --check" in local and "ModuleNotFoundError: No module named 'uvicorn'" in local
    assert 'exec .venv/bin/python server.py "$@"' in (ROOT / "scripts" / "serve.sh").read_text()  # --check reaches server.py
    # The system Python's first missing package is the first third-party import of server.py.
    imported = re.findall(r"^(?:import|from) (\w+)", (ROOT / "server.py").read_text(), re.MULTILINE)
    first = next(name for name in imported if name not in sys.stdlib_module_names and name != "__future__")
    assert first == "uvicorn"


def test_the_readme_and_the_guide_say_how_to_get_a_c_compiler_on_each_platform() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    installs = ("apt-get install gcc python3-dev", "dnf install gcc python3-devel", "xcode-select --install", "C++ Build Tools")
    for text in (readme, GUIDE):
        for install in installs:
            assert install in text


def test_the_voice_upload_puts_the_folder_content_where_the_init_container_downloads_it() -> None:
    """`kubectl apply` needs the voice in a Hub repository whose root is one voice folder's content: the init
    container downloads the whole repository into /models/$(VOICE_NAME)."""
    import subprocess

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    manifests = (ROOT / "deploy" / "kubernetes" / "README.md").read_text(encoding="utf-8")
    for text in (GUIDE, readme, manifests):
        upload = re.search(r"hf upload (\S+) (\S+) (\S+)( --private)?", text)
        assert upload, "no `hf upload` command"
        repo, local, in_repo, _ = upload.groups()
        assert repo == "<your-name>/<your-voice>" and local == "models/my-voice" and in_repo == ".", upload.group(0)
        assert text.index("hf upload") < text.index("kubectl apply -f deploy/kubernetes/")
    cli = Path(sys.executable).with_name("hf")
    usage = subprocess.run([str(cli), "upload", "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "[PATH_IN_REPO]" in usage.stdout and "--private" in usage.stdout, usage.stdout
    deployment = (ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text(encoding="utf-8")
    assert '"$(VOICE_REPO)", "--revision", "$(VOICE_REVISION)", "--local-dir", "/models/$(VOICE_NAME)"' in deployment
