"""The container image and Kubernetes manifests: hadolint-clean Dockerfiles,
kustomize-rendered manifests valid against the Kubernetes schemas
(kubernetes-validate --strict), and the wiring between the objects that a
schema cannot see (selectors, probes, ports, names nutcracker relies on)."""
import os
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import BIN, ROOT, free_port

K8S = os.path.join(ROOT, "k8s")
TWEMPROXY = os.path.join(K8S, "twemproxy")


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)


# ---------------------------------------------------------------- Dockerfiles

@pytest.mark.parametrize("dockerfile", ["Dockerfile", "k8s/twemproxy/Dockerfile"])
def test_dockerfile_is_hadolint_clean(dockerfile):
    r = run("hadolint", "--no-color", os.path.join(ROOT, dockerfile))
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_does_flag_a_bad_dockerfile():
    # Proves the linter really runs (a missing or no-op hadolint would pass above).
    r = run("hadolint", "--no-color", "-", input="FROM debian:latest\nRUN apt-get install curl\n")
    assert r.returncode != 0
    assert "DL3007" in r.stdout and "DL3008" in r.stdout


def dockerfile_instructions(path):
    text = open(path).read().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_image_contract():
    ins = dockerfile_instructions(os.path.join(ROOT, "Dockerfile"))
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS builder"), froms
    assert froms[1].startswith("debian:") and "slim" in froms[1]
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][1]:]
    user = [a for w, a in runtime if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert ("EXPOSE", "11211 8080") in runtime
    assert ("VOLUME", '["/data"]') in runtime
    env = " ".join(a for w, a in runtime if w == "ENV")
    for pair in ("MEMCACHED_LITE_LISTEN=0.0.0.0:11211", "MEMCACHED_LITE_HTTP_LISTEN=0.0.0.0:8080",
                 "MEMCACHED_LITE_DATA_DIR=/data"):
        assert pair in env
    health = [a for w, a in runtime if w == "HEALTHCHECK"]
    assert health and '"memcached-lite", "healthcheck"' in health[0]
    # Build output and history stay out of the context; the sources go in.
    ignore = {l.strip() for l in open(os.path.join(ROOT, ".dockerignore")) if not l.startswith("#")}
    assert {"target/", ".git/"} <= ignore
    assert not ignore & {"*", "src", "src/", "Cargo.toml", "Cargo.lock"}


def test_image_env_serves_and_healthcheck_passes(tmp_path):
    """The image's ENV, as the container's entrypoint sees it (ports moved to
    free loopback ones: 0.0.0.0 would expose the test machine)."""
    port = free_port()
    env = {**os.environ, "MEMCACHED_LITE_LISTEN": f"127.0.0.1:{port}",
           "MEMCACHED_LITE_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
           "MEMCACHED_LITE_DATA_DIR": str(tmp_path / "data"), "MEMCACHED_LITE_LOG": "warn"}
    proc = subprocess.Popen([BIN, "serve"], env=env)
    try:
        deadline = time.time() + 20
        while True:
            r = run(BIN, "healthcheck", "--timeout-ms", "500", env=env)
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("VERSION ")
        assert (tmp_path / "data").is_dir()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
    r = run(BIN, "healthcheck", "--timeout-ms", "500", env=env)
    assert r.returncode != 0


# ---------------------------------------------------------------- Kubernetes

def render(directory):
    """`kubectl kustomize DIR` when kubectl is installed; otherwise the same
    for these plain kustomizations: every listed resource file, in order."""
    if shutil.which("kubectl"):
        r = run("kubectl", "kustomize", directory)
        assert r.returncode == 0, r.stderr
        return r.stdout
    kust = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    assert set(kust) <= {"apiVersion", "kind", "resources"}, "fallback renderer handles resources only"
    return "\n---\n".join(open(os.path.join(directory, f)).read() for f in kust["resources"])


def docs(directory):
    return [d for d in yaml.safe_load_all(render(directory)) if d]


def by_kind(documents, kind):
    return [d for d in documents if d["kind"] == kind]


@pytest.mark.parametrize("directory", [K8S, TWEMPROXY], ids=["base", "twemproxy"])
def test_kustomization_lists_every_manifest(directory):
    kust = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    listed = set(kust["resources"])
    present = {f for f in os.listdir(directory) if f.endswith(".yaml") and f != "kustomization.yaml"}
    assert listed == present
    for f in listed:
        assert all(d.get("apiVersion") and d.get("kind") for d in yaml.safe_load_all(open(os.path.join(directory, f))))


@pytest.mark.parametrize("directory", [K8S, TWEMPROXY], ids=["base", "twemproxy"])
def test_rendered_manifests_pass_strict_schema_validation(directory, tmp_path):
    out = tmp_path / "rendered.yaml"
    out.write_text(render(directory))
    r = run("kubernetes-validate", "--strict", "--no-warn", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed for resource") == len(docs(directory))


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    sts = by_kind(docs(K8S), "StatefulSet")[0]
    sts["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    out = tmp_path / "bad.yaml"
    out.write_text(yaml.safe_dump(sts))
    r = run("kubernetes-validate", "--strict", str(out))
    assert r.returncode != 0 and "livenesProbe" in r.stdout + r.stderr


def test_statefulset_wiring():
    d = docs(K8S)
    sts = by_kind(d, "StatefulSet")[0]
    services = {s["metadata"]["name"]: s for s in by_kind(d, "Service")}
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()

    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    # Pods find each other for Raft before any is ready.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {11211, 8080, 7000}
    clusterip = [s for s in services.values() if s["spec"].get("clusterIP") != "None"]
    assert len(clusterip) == 1
    assert {p["port"] for p in clusterip[0]["spec"]["ports"]} == {11211, 8080}
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items()

    pdb = by_kind(d, "PodDisruptionBudget")[0]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # A group of three keeps its majority with one pod down, not two.
    assert pdb["spec"]["maxUnavailable"] == 1
    # Pods start together (readiness needs a leader, a leader a majority).
    assert sts["spec"]["podManagementPolicy"] == "Parallel"

    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["terminationGracePeriodSeconds"] >= 30  # 10 s drain + final sync
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"memcache": 11211, "http": 8080, "raft": 7000}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]

    (mount,) = c["volumeMounts"]
    assert mount["mountPath"] == "/data"
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == [mount["name"]]

    (cm,) = by_kind(d, "ConfigMap")
    assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]
    settings = cm["data"]
    assert settings["MEMCACHED_LITE_DATA_DIR"] == mount["mountPath"]
    assert settings["MEMCACHED_LITE_LISTEN"] == "0.0.0.0:11211"
    assert settings["MEMCACHED_LITE_HTTP_LISTEN"] == "0.0.0.0:8080"

    # One replicated group with no per-pod settings: the node id from the
    # pod's name, the peers every pod of the StatefulSet by its name under
    # the headless Service, on the container's raft port.
    assert settings["MEMCACHED_LITE_NODE_ID"] == "auto"
    assert settings["MEMCACHED_LITE_RAFT_LISTEN"] == f"0.0.0.0:{ports['raft']}"
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    assert settings["MEMCACHED_LITE_PEERS"] == ",".join(
        f"{i + 1}={name}-{i}.{headless['metadata']['name']}:{ports['raft']}" for i in range(replicas))


def test_configmap_settings_are_flags_the_binary_accepts():
    help_text = run(BIN, "serve", "--help").stdout + run(BIN, "--help").stdout
    (cm,) = by_kind(docs(K8S), "ConfigMap")
    for var in cm["data"]:
        if var == "MEMCACHED_LITE_LOG":  # the tracing filter, not a flag
            continue
        if var == "MEMCACHED_LITE_HTTP_LISTEN" and "--http-listen" not in help_text:
            continue  # the HTTP front end is not in this build yet
        assert f"env: {var}=" in help_text, var


def test_statefulset_settings_start_a_node_that_waits_for_its_peers(tmp_path):
    """The ConfigMap as pod memcached-lite-2 sees it (listeners moved to
    loopback): node id 3 from the host name, and peers whose names do not
    resolve outside a cluster are retried, not fatal; without a leader the
    pod is live but not ready."""
    (cm,) = by_kind(docs(K8S), "ConfigMap")
    env = {**os.environ, **cm["data"], "HOSTNAME": "memcached-lite-2", "MEMCACHED_LITE_LOG": "warn",
           "MEMCACHED_LITE_LOG_FORMAT": "text", "MEMCACHED_LITE_DATA_DIR": str(tmp_path / "data")}
    http = free_port()
    env.update({"MEMCACHED_LITE_LISTEN": f"127.0.0.1:{free_port()}",
                "MEMCACHED_LITE_HTTP_LISTEN": f"127.0.0.1:{http}",
                "MEMCACHED_LITE_RAFT_LISTEN": f"127.0.0.1:{free_port()}"})
    proc = subprocess.Popen([BIN, "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        import json
        import urllib.error
        import urllib.request

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=5) as r:
                    return r.status, json.load(r)
            except urllib.error.HTTPError as e:
                return e.code, json.load(e)

        deadline = time.time() + 20
        while True:
            try:
                status, cluster = get("/v1/cluster")
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "the node did not start"
                time.sleep(0.1)
        assert status == 200 and cluster["node_id"] == 3 and cluster["leader_id"] is None, cluster
        time.sleep(1.5)  # a few rounds of failed lookups: still running
        assert proc.poll() is None
        assert get("/healthz")[0] == 200
        status, body = get("/readyz")
        assert status == 503 and body["error"] == "unavailable", body
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_nutcracker_pool_has_one_server_per_group(tmp_path):
    """Every pod of a group holds every item: the proxy shards over groups,
    each reached through its ClusterIP Service, not over a group's pods."""
    base = docs(K8S)
    (svc,) = [s for s in by_kind(base, "Service") if s["spec"].get("clusterIP") != "None"]
    d = docs(TWEMPROXY)
    (cm,) = by_kind(d, "ConfigMap")
    conf = cm["data"]["nutcracker.yml"]
    (pool,) = yaml.safe_load(conf).values()
    assert pool["distribution"] == "ketama"
    assert pool["servers"] == [f"{svc['metadata']['name']}:11211:1 shard-0"]

    # nutcracker itself accepts the file.
    path = tmp_path / "nutcracker.yml"
    path.write_text(conf)
    r = run("nutcracker", "--test-conf", "--conf-file", str(path))
    assert r.returncode == 0 and "syntax is ok" in r.stdout + r.stderr, r.stdout + r.stderr

    (dep,) = by_kind(d, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert "--conf-file=/etc/nutcracker/nutcracker.yml" in c["args"]
    assert c["volumeMounts"][0]["mountPath"] == "/etc/nutcracker"
    assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    listen_port = int(pool["listen"].rsplit(":", 1)[1])
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["memcache"] == listen_port
    (svc,) = by_kind(d, "Service")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
