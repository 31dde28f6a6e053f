"""docker-compose.yml is consistent with the code, without a Docker engine.

No engine runs on the development machines, so the file is checked by reading it: services it
names exist, the commands it runs are real `settlepay` commands or importable modules, the
SETTLEPAY_* variables it sets are Settings fields (and documented in the README), ports agree
with the Settings defaults, and the search attributes it creates are the ones the code upserts.
Scale-out: the API runs in replicas behind the load balancer, whose configuration points at the
API service; every task queue has workers of its own, in replicas; Temporal's history shard
count is set, and the README's capacity plan states the same one.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from settlepay import search_attributes, task_queues
from settlepay.cli import build_parser
from settlepay.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
ONE_SHOT_RESTARTS = {"no", "on-failure"}
VARIABLE = re.compile(r"\$\{(SETTLEPAY_[A-Z0-9_]+)")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def is_one_shot(service: dict) -> bool:
    return str(service.get("restart", "")).split(":")[0] in ONE_SHOT_RESTARTS


def runnable(module: str) -> bool:
    """What `python -m module` needs: a module, or a package with a __main__."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(module + ".__main__") is not None
    return True


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def published(service: dict) -> dict[int, int]:
    """container port -> host port."""
    ports = {}
    for mapping in service.get("ports", []):
        host, container = str(mapping).rsplit(":", 2)[-2:]
        ports[int(container)] = int(host)
    return ports


def test_every_dependency_exists_and_its_condition_can_be_met(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition per service"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target} to be healthy, it has no healthcheck")
            elif condition == "service_completed_successfully":
                assert is_one_shot(services[target]), (
                    f"{name} waits for {target} to complete, it is not a one-shot")
            else:
                pytest.fail(f"{name} -> {target}: use service_healthy or "
                            f"service_completed_successfully, not {condition}")
            assert "profiles" not in services[target], (
                f"{name} depends on {target}, which only runs in a profile")


def test_every_service_has_a_healthcheck_or_is_a_one_shot(services):
    for name, service in services.items():
        assert "healthcheck" in service or is_one_shot(service), (
            f"{name}: no healthcheck and not a one-shot")
        if "healthcheck" in service:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def test_the_stack_has_the_production_pieces(services):
    images = {name: service.get("image", "") for name, service in services.items()}
    assert images["postgres"].startswith("postgres:")
    assert images["temporal"].startswith("temporalio/auto-setup:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgres"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    for name in ("migrate", "api", "worker", "worker-settlement"):
        assert services[name]["build"] == ".", name
    assert is_one_shot(services["migrate"]) and services["migrate"]["command"] == ["migrate"]
    for name in ("api", "worker", "worker-settlement", "partitions"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_settlepay_variables_are_settings_fields_and_documented(services):
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    readme = (ROOT / "README.md").read_text()
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(VARIABLE.findall(text))
    for service in services.values():
        used |= {key for key in env_of(service) if key.startswith(ENV_PREFIX)}
    assert {"SETTLEPAY_DATABASE_URL", "SETTLEPAY_TEMPORAL_ADDRESS"} <= used
    assert used <= fields, f"not Settings fields: {sorted(used - fields)}"
    undocumented = sorted(v for v in used if f"`{v}`" not in readme)
    assert not undocumented, f"README.md does not document {undocumented}"


def test_the_readme_configuration_table_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(SETTLEPAY_[A-Z0-9_]+)`", readme, flags=re.M))
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), (
        f"add to the README configuration table: {sorted(fields - documented)}")
    assert documented - fields == set(), (
        f"README documents settings that do not exist: {sorted(documented - fields)}")


def test_ports_match_the_settings_defaults(services):
    defaults = Settings()
    temporal_port = int(defaults.temporal_address.rsplit(":", 1)[1])
    assert published(services["api-lb"]) == {defaults.api_port: defaults.api_port}
    assert published(services["api"]) == {}  # replicas: reached through the load balancer
    assert published(services["temporal"]) == {temporal_port: temporal_port}
    assert published(services["temporal-ui"]) == {8080: defaults.temporal_ui_port}
    env = env_of(services["api"])
    assert env["SETTLEPAY_API_PORT"] == str(defaults.api_port)
    assert env["SETTLEPAY_TEMPORAL_ADDRESS"] == f"temporal:{temporal_port}"
    for sandbox, port_field, base_field in (("stripe", "sandbox_stripe_port", "stripe_api_base"),
                                            ("kyc", "sandbox_kyc_port", "kyc_api_base"),
                                            ("notify", "sandbox_notify_port", "notify_api_base")):
        service = services[f"{sandbox}-sandbox"]
        port = getattr(defaults, port_field)
        command = service["command"]
        assert command[command.index("--port") + 1] == str(port), sandbox
        base = env[f"{ENV_PREFIX}{base_field.upper()}"]
        assert base.endswith(f"{sandbox}-sandbox:{port}}}"), (
            f"{base_field} does not point at the {sandbox} sandbox")
    # The sandboxes call the API back (signed webhooks) through the load balancer, by its
    # service name, not 127.0.0.1.
    assert env["SETTLEPAY_SANDBOX_STRIPE_WEBHOOK_URL"] == (
        f"http://api-lb:{defaults.api_port}/v1/webhooks/stripe")
    kyc = services["kyc-sandbox"]["command"]
    assert kyc[kyc.index("--webhook-url") + 1] == (
        f"http://api-lb:{defaults.api_port}/v1/webhooks/kyc")


def test_dockerfile_and_commands_are_real(services):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.M)
    assert re.search(r"^RUN pip install \.", dockerfile, flags=re.M)
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, flags=re.M).group(1)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint in scripts, f"ENTRYPOINT {entrypoint} is not a console script of the project"
    default_cmd = re.search(r"^CMD (\[.*\])", dockerfile, flags=re.M).group(1)
    build_parser().parse_args(yaml.safe_load(default_cmd))
    parser = build_parser()
    for name, service in services.items():
        if service.get("build") != ".":
            continue
        entry = service.get("entrypoint")
        if entry is None:  # the image's ENTRYPOINT: the command must parse as a settlepay command
            parser.parse_args(service["command"])
        else:
            assert entry[:2] == ["python", "-m"], name
            assert runnable(entry[2]), f"{name}: `python -m {entry[2]}` has nothing to run"
        test = service.get("healthcheck", {}).get("test", [])
        if test[:3] == ["CMD", "python", "-m"]:
            assert runnable(test[3]), f"{name}: no health module {test[3]}"
    for volume in services["temporal"]["volumes"]:
        source = volume.split(":", 1)[0]
        assert (ROOT / source).is_file(), f"temporal mounts {source}, which does not exist"
    assert (ROOT / ".dockerignore").read_text().count(".venv") == 1


def test_search_attributes_created_are_the_ones_the_code_upserts(services):
    setup = services["temporal-search-attributes"]
    created = dict(pair.split("=") for pair in env_of(setup)["SEARCH_ATTRIBUTES"].split())
    kinds = {"KEYWORD": "Keyword", "INT": "Int"}
    expected = {key.name: kinds[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
                for key in search_attributes.ALL}
    assert created == expected
    for worker in ("worker", "worker-settlement"):
        condition = services[worker]["depends_on"]["temporal-search-attributes"]["condition"]
        assert condition == "service_completed_successfully", worker


def replicas(service: dict) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_the_api_runs_in_replicas_behind_a_load_balancer_pointing_at_it(services):
    api_port = Settings().api_port
    assert replicas(services["api"]) >= 2
    # ... each serving with several processes (api/server.py).
    assert int(env_of(services["api"])["SETTLEPAY_API_PROCESSES"]) >= 2
    assert env_of(services["api"])["SETTLEPAY_DATABASE_URL"].endswith("@postgres:5432/settlepay")
    lb = services["api-lb"]
    assert lb["image"].startswith("nginx:")
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"
    mounts = dict(volume.split(":")[:2] for volume in lb["volumes"])
    source = mounts.pop("./deploy/nginx/nginx.conf")
    assert source == "/etc/nginx/nginx.conf" and not mounts
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    conf = re.sub(r"#.*", "", conf)
    assert conf.count("{") == conf.count("}")
    upstreams = dict(re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf))
    assert len(upstreams) == 1
    (name, body), = upstreams.items()
    # The API service's name (every replica, re-resolved), at the port the API listens on.
    assert re.search(rf"^\s*server\s+api:{api_port}\s+resolve\b", body, flags=re.M), body
    assert re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf, flags=re.M)
    assert re.search(rf"proxy_pass\s+http://{re.escape(name)};", conf)
    listen = int(re.search(r"^\s*listen\s+(\d+);", conf, flags=re.M).group(1))
    assert published(lb) == {listen: api_port}
    health = " ".join(lb["healthcheck"]["test"])
    location = re.search(r"(/[\w-]+)$", health.split("http://127.0.0.1:")[1].split()[0])
    assert f"location = {location.group(1)}" in conf


def test_every_task_queue_has_workers_of_its_own_in_replicas(services):
    parser = build_parser()
    polled: dict[str, str] = {}
    for name, service in services.items():
        command = service.get("command") or []
        if command[:1] != ["worker"]:
            continue
        queues = parser.parse_args(command).task_queue
        assert queues is not None and len(queues) == 1, (
            f"{name}: a worker service polls exactly one task queue (--task-queue)")
        assert queues[0] not in polled, f"{name} and {polled.get(queues[0])} poll one queue"
        polled[queues[0]] = name
        assert replicas(service) >= 2, f"{name}: one replica"
        # Its health check looks for pollers of the queue it polls.
        assert service["healthcheck"]["test"][-2:] == ["workers.health", queues[0]], name
    assert set(polled) == set(task_queues.ALL)


def test_temporal_history_shards_are_set_explicitly_and_documented(services):
    shards = services["temporal"]["environment"]["NUM_HISTORY_SHARDS"]
    count = int(shards)
    assert count >= 1 and count & (count - 1) == 0, "a power of two"
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Scale-out and capacity", 1)[1].split("\n## ", 1)[0]
    assert f"NUM_HISTORY_SHARDS={count}" in section.replace("`", "")
    assert readme.index("## Scale-out and capacity") < readme.index("## Configuration")


def test_the_codec_server_requires_its_token_and_the_browser_reaches_it_through_the_proxy(
        services):
    """codec-server binds 0.0.0.0, which settlepay/codec_server.py refuses without a token; it
    publishes no port. codec-proxy (nginx) is the UI's codec endpoint, on the host's loopback
    only, and adds the token from the same variable."""
    codec, proxy = services["codec-server"], services["codec-proxy"]
    assert "0.0.0.0" in codec["command"]
    token = env_of(codec)["SETTLEPAY_CODEC_SERVER_TOKEN"]
    assert token.startswith("${SETTLEPAY_CODEC_SERVER_TOKEN")
    assert env_of(codec)["SETTLEPAY_DATABASE_URL"]  # still the shared settlepay environment
    port = Settings().codec_server_port
    assert published(codec) == {}
    assert proxy["image"].startswith("nginx:")
    assert proxy["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert env_of(proxy)["SETTLEPAY_CODEC_SERVER_TOKEN"] == token
    assert proxy["depends_on"]["codec-server"]["condition"] == "service_healthy"
    mounts = dict(volume.split(":")[:2] for volume in proxy["volumes"])
    template = mounts.pop("./deploy/nginx/codec-proxy.conf.template")
    # The nginx image renders /etc/nginx/templates/*.template with envsubst at start.
    assert template == "/etc/nginx/templates/default.conf.template" and not mounts
    conf = re.sub(r"#.*", "", (ROOT / "deploy/nginx/codec-proxy.conf.template").read_text())
    assert conf.count("{") == conf.count("}")
    assert re.search(rf"^\s*listen\s+{port};", conf, flags=re.M)
    assert re.search(rf"proxy_pass\s+http://codec-server:{port};", conf)
    assert re.search(r'proxy_set_header\s+Authorization\s+"Bearer '
                     r'\$\{SETTLEPAY_CODEC_SERVER_TOKEN\}";', conf)
    health = " ".join(proxy["healthcheck"]["test"])
    location = re.search(rf"http://127\.0\.0\.1:{port}(/[\w-]+)", health).group(1)
    assert f"location = {location}" in conf
    assert env_of(services["temporal-ui"])["TEMPORAL_CODEC_ENDPOINT"] == (
        f"http://localhost:{port}")


def test_the_audit_chain_is_anchored_on_a_schedule_to_a_volume_of_its_own(compose, services):
    anchor = services["audit-anchor"]
    args = build_parser().parse_args(anchor["command"])
    assert args._path == ("audit", "anchor") and args.every == 3600
    path = env_of(anchor)["SETTLEPAY_AUDIT_ANCHOR_PATH"]
    volume, mount = anchor["volumes"][0].split(":")[:2]
    assert volume in compose["volumes"] and path.startswith(mount + "/")
    # Nothing else writes there, and the healthcheck watches the same file, within 2 intervals.
    assert all(volume + ":" not in " ".join(s.get("volumes", []))
               for name, s in services.items() if name != "audit-anchor")
    check = anchor["healthcheck"]["test"][-1]
    assert f"getmtime('{path}')" in check and f"> {2 * int(args.every)})" in check
    # The image makes the directory the non-root user writes to (a new named volume takes it).
    assert f"install -d -o settlepay {mount}" in (ROOT / "Dockerfile").read_text()
