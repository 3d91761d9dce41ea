"""Offline checks of the Kubernetes manifests in deploy/kubernetes (deploy/check.sh runs this).

No cluster and no network: what kustomize would build from kustomization.yaml (its resources
and its configMapGenerator; anything else in it is refused rather than ignored) is

1. validated against the Kubernetes JSON schemas that the PyPI package kubernetes-validate
   bundles, strict (an unknown or misspelt field is an error), for the oldest and the newest
   Kubernetes versions in K8S_VERSIONS; KEDA's ScaledObject and TriggerAuthentication (CRDs,
   not in those schemas) against the schemas in deploy/kubernetes/schemas/;
2. checked for Ordo's own invariants, on every Deployment of the engine (selectors, probes,
   shutdown grace against the drain timeouts of the engine's role read from its source,
   security context, the pipelines file against the keys the engine knows and against the
   ScaledObject, secrets only by reference, Kafka over TLS, HTTPS from a Secret, a
   NetworkPolicy that keeps the admin port to its callers, ...), and for the split by role:
   one `ingest` and one `apply` Deployment (`ordo run --role`), the Service on the ingest pods
   only, KEDA on lag for apply and an HPA on CPU for ingest (one autoscaler per Deployment),
   and both running one engine (image, pipelines file, identity, the principal key, ...).

check_manifests_test.py breaks a copy of the directory once per invariant and expects this
script to name the problem.

Every problem is printed as `FILE: KIND/NAME: what is wrong`; the exit status is 1 if there is
any, 2 if the check itself cannot run.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

import jsonschema
import kubernetes_validate
import yaml

# The oldest Kubernetes the manifests claim to work on, and the newest the validator bundles.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# The schemas of the custom resources used (KEDA's), by kind.
SCALEDOBJECT_SCHEMA = "schemas/scaledobject-keda-v1alpha1.json"
CRD_SCHEMAS = {
    "ScaledObject": SCALEDOBJECT_SCHEMA,
    "TriggerAuthentication": "schemas/triggerauthentication-keda-v1alpha1.json",
}
# MSK's bootstrap port for IAM access control (TLS); 9092 is its plaintext one.
MSK_IAM_PORT = 9098
# librdkafka's security.protocol values that encrypt.
KAFKA_TLS_PROTOCOLS = {"SSL", "SASL_SSL"}
# The container that runs the engine.
ENGINE_CONTAINER = "engine"
# The roles of `ordo run --role` (engine/src/cli/args.rs) that the manifests split the engine
# into, one Deployment each; `all` (both in one process) is not one of them.
ROLES = ("ingest", "apply")
# What both Deployments must agree on: they are one engine split in two. The principal key
# above all: apply vouches for a principal only when ingest's signature checks under it.
SHARED_ENV = ("ORDO_PRINCIPAL_KEY", "ORDO_LOG_KEY_SECRET", "ORDO_ADMIN_TOKEN", "ORDO_CONFIG",
              "KAFKA_BROKERS", "AWS_REGION", "ORDO_TLS_CERT", "ORDO_TLS_KEY")
# Environment variables that must come from a Secret, and names that look like secrets.
SECRET_ENV = ("ORDO_ADMIN_TOKEN", "ORDO_LOG_KEY_SECRET", "ORDO_PRINCIPAL_KEY")
SECRET_LOOKING = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|_KEY|CREDENTIALS)$")
# Names that look like secrets but hold a path to one; check_https wants that file in a Secret.
SECRET_PATH_ENV = {"ORDO_TLS_KEY"}
# kustomization.yaml keys this script models; any other is refused so none is silently ignored.
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator"}
CLUSTER_SCOPED = {"Namespace"}
# What one ConfigMap may hold, data and binaryData together.
CONFIGMAP_LIMIT = 1024 * 1024


class Source:
    """Constants read from the engine's source, so the manifests follow the code."""

    def __init__(self, repo: Path, report: Callable[[str, str], None]):
        self.repo = repo
        self.report = report

    def _text(self, rel: str) -> str:
        try:
            return (self.repo / rel).read_text()
        except OSError as e:
            self.report(rel, f"cannot read it ({e}); deploy/check_manifests.py reads constants from it")
            return ""

    def find(self, rel: str, pattern: str, what: str) -> str | None:
        match = re.search(pattern, self._text(rel), re.M | re.S)
        if match is None:
            self.report(rel, f"no longer has {what} (pattern {pattern!r}); update deploy/check_manifests.py")
            return None
        return match.group(1)

    def seconds(self, rel: str, name: str) -> int | None:
        found = self.find(rel, rf"const {name}: Duration = Duration::from_secs\((\d+)\);", f"`const {name}` in whole seconds")
        return None if found is None else int(found)

    def pipeline_keys(self) -> tuple[set[str], set[str]]:
        """Every key of a `[pipelines.<name>]` table, and the required ones (by their doc comment)."""
        rel = "engine/src/config/file.rs"
        block = self.find(rel, r"struct PipelineFile \{\n(.*?)\n\}", "`struct PipelineFile`")
        known, required, comment = set(), set(), []
        for line in (block or "").splitlines():
            line = line.strip()
            if line.startswith("///"):
                comment.append(line)
            elif (field := re.match(r"pub (\w+):", line)) is not None:
                known.add(field.group(1))
                if "(required)" in " ".join(comment):
                    required.add(field.group(1))
                comment = []
        return known, required


class Workload(NamedTuple):
    """One Deployment of the engine, with the container that runs it."""

    file: str
    deploy: dict
    template: dict
    engine: dict

    @property
    def name(self) -> str:
        return self.deploy["metadata"]["name"]

    @property
    def labels(self) -> dict:
        return self.template.get("metadata", {}).get("labels") or {}


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (the API server would too)."""


def _mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class Checker:
    def __init__(self, kdir: Path):
        self.kdir = kdir
        self.repo = kdir.resolve().parent.parent
        self.problems: list[str] = []
        self.results: list[tuple[str, int]] = []
        self.objects: list[tuple[str, dict]] = []  # (file, object)
        self.generated: dict[str, dict] = {}  # ConfigMap name -> object
        self.src = Source(self.repo, lambda f, m: self.problem(f, None, m))
        self.namespace: str | None = None
        self.generated_files: dict[tuple[str, str], str] = {}  # (ConfigMap, key) -> file

    # -- reporting -------------------------------------------------------------------------

    def rel(self, path: Path | str) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.repo))
        except ValueError:
            return str(path)

    def problem(self, file: str, obj: dict | None, message: str) -> None:
        where = f"{file}: "
        if obj is not None:
            where += f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}: "
        # Both Deployments read one pipelines file: its problems are named once.
        if where + message not in self.problems:
            self.problems.append(where + message)

    def run(self, name: str, check: Callable[[], None]) -> None:
        before = len(self.problems)
        try:
            check()
        except Exception as e:  # a manifest shaped unlike what a check expects
            self.problems.append(f"{self.rel(self.kdir)}: check `{name}` could not finish: {type(e).__name__}: {e}")
        self.results.append((name, len(self.problems) - before))

    # -- lookups ---------------------------------------------------------------------------

    def of_kind(self, kind: str) -> list[tuple[str, dict]]:
        return [(f, o) for f, o in self.objects if o.get("kind") == kind]

    def workloads(self) -> list[Workload]:
        """Every Deployment, each with its engine container."""
        found = []
        for file, deploy in self.of_kind("Deployment"):
            template = deploy["spec"]["template"]
            engine = next((c for c in template["spec"]["containers"] if c.get("name") == ENGINE_CONTAINER), None)
            if engine is None:
                raise LookupError(f"Deployment/{deploy['metadata']['name']} has no container named `{ENGINE_CONTAINER}`")
            found.append(Workload(file, deploy, template, engine))
        if not found:
            raise LookupError("there is no Deployment")
        return found

    def each(self, check: Callable[[Workload], None]) -> Callable[[], None]:
        """A check of one Deployment, run on every one."""
        def run() -> None:
            for w in self.workloads():
                check(w)
        return run

    def role(self, w: Workload) -> tuple[str, str | None]:
        """The role the engine runs in (`--role` wins over ORDO_ROLE, as clap has it), and
        where that was set (None: neither, so the engine's default)."""
        argv = [str(a) for a in (w.engine.get("command") or []) + (w.engine.get("args") or [])]
        for i, arg in enumerate(argv):
            if arg == "--role" and i + 1 < len(argv):
                return argv[i + 1], "--role"
            if arg.startswith("--role="):
                return arg.split("=", 1)[1], "--role"
        entry = self.env(w.engine).get("ORDO_ROLE")
        if entry is not None:
            return str(entry.get("value")), "ORDO_ROLE"
        default = self.src.find("engine/src/cli/args.rs", r'env = "ORDO_ROLE", value_enum, default_value_t = RoleArg::(\w+)', "the default of `--role`")
        return (default or "all").lower(), None

    def of_role(self, role: str) -> list[Workload]:
        return [w for w in self.workloads() if self.role(w)[0] == role]

    def selects(self, selector: dict | None, w: Workload) -> bool:
        """Whether a matchLabels-style selector picks the pods of `w` (an empty one picks all)."""
        return all(w.labels.get(k) == v for k, v in (selector or {}).items())

    def env(self, container: dict) -> dict[str, dict]:
        return {e["name"]: e for e in container.get("env") or []}

    def config_source(self, w: Workload) -> str:
        """Where the pipelines file the engine reads comes from, for messages."""
        config = self.env(w.engine).get("ORDO_CONFIG", {}).get("value", "")
        key = config.rsplit("/", 1)[-1]
        for (name, k), file in self.generated_files.items():
            if k == key:
                return f"{file} (ConfigMap {name}, read as ORDO_CONFIG={config})"
        return f"ORDO_CONFIG={config}"

    def pipelines_file(self, w: Workload, strict: bool = False) -> tuple[str, dict] | None:
        """The pipelines file the engine reads: the ConfigMap key ORDO_CONFIG points at. A file
        that does not parse is `None`, unless `strict` (its own check names the error)."""
        template = w.template
        config = self.env(w.engine).get("ORDO_CONFIG", {}).get("value")
        if not config:
            return None
        for mount in w.engine.get("volumeMounts") or []:
            prefix = mount["mountPath"].rstrip("/") + "/"
            if not config.startswith(prefix):
                continue
            volume = next((v for v in template["spec"].get("volumes") or [] if v["name"] == mount["name"]), None)
            if volume is None or "configMap" not in volume:
                continue
            name, key = volume["configMap"]["name"], config[len(prefix):]
            cm = self.generated.get(name) or next(
                (o for _, o in self.of_kind("ConfigMap") if o["metadata"]["name"] == name), None)
            if cm is None or key not in (cm.get("data") or {}):
                return None
            try:
                return key, tomllib.loads(cm["data"][key])
            except tomllib.TOMLDecodeError:
                if strict:
                    raise
                return None
        return None

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> bool:
        kfile = self.kdir / "kustomization.yaml"
        krel = self.rel(kfile)
        try:
            with kfile.open() as stream:
                kust = yaml.load(stream, Loader=UniqueKeyLoader)
        except (OSError, yaml.YAMLError) as e:
            self.problem(krel, None, f"cannot be read: {e}")
            return False
        unknown = set(kust) - KUSTOMIZATION_KEYS
        if unknown:
            self.problem(krel, None, f"uses {', '.join(sorted(unknown))}, which deploy/check_manifests.py does not model (it models {', '.join(sorted(KUSTOMIZATION_KEYS))}): teach it before relying on it")
        if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
            self.problem(krel, None, "must be apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization")
        self.namespace = kust.get("namespace")
        listed = list(kust.get("resources") or [])
        for name in listed:
            path = self.kdir / name
            if not path.is_file():
                self.problem(krel, None, f"lists `{name}`, which does not exist")
                continue
            try:
                with path.open() as stream:
                    docs = [d for d in yaml.load_all(stream, Loader=UniqueKeyLoader) if d is not None]
            except yaml.YAMLError as e:
                self.problem(self.rel(path), None, f"is not valid YAML: {e}")
                continue
            for doc in docs:
                if not isinstance(doc, dict):
                    self.problem(self.rel(path), None, "holds a document that is not a mapping")
                    continue
                if self.namespace and doc.get("kind") not in CLUSTER_SCOPED:
                    doc.setdefault("metadata", {})["namespace"] = self.namespace
                self.objects.append((self.rel(path), doc))
        for path in sorted(self.kdir.glob("*.y*ml")):
            if path.name != "kustomization.yaml" and path.name not in listed:
                self.problem(self.rel(path), None, "is not listed in kustomization.yaml `resources`, so `kubectl apply -k` would leave it out")
        for gen in kust.get("configMapGenerator") or []:
            data, binary, size = {}, {}, 0
            for entry in gen.get("files") or []:
                key, _, name = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
                try:
                    raw = (self.kdir / name).read_bytes()
                except OSError as e:
                    self.problem(krel, None, f"configMapGenerator `{gen.get('name')}`: cannot read `{name}`: {e}")
                    continue
                size += len(raw)
                self.generated_files[(gen.get("name"), key)] = self.rel(self.kdir / name)
                try:
                    data[key] = raw.decode("utf-8")
                except UnicodeDecodeError:  # kustomize puts such a file in binaryData
                    binary[key] = base64.b64encode(raw).decode()
            if size > CONFIGMAP_LIMIT:
                self.problem(krel, None, f"configMapGenerator `{gen.get('name')}` holds {size} bytes, above the {CONFIGMAP_LIMIT} bytes (1 MiB) a ConfigMap may hold")
            unknown = set(gen) - {"name", "files", "options"}
            if unknown:
                self.problem(krel, None, f"configMapGenerator `{gen.get('name')}` uses {', '.join(sorted(unknown))}, not modelled here")
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen.get("name")}, "data": data}
            if binary:
                cm["binaryData"] = binary
            if self.namespace:
                cm["metadata"]["namespace"] = self.namespace
            self.generated[gen.get("name")] = cm
            self.objects.append((krel + f" (configMapGenerator {gen.get('name')})", cm))
        return True

    # -- checks ----------------------------------------------------------------------------

    def check_schemas(self) -> None:
        validators = {}
        for kind, rel in CRD_SCHEMAS.items():
            schema = json.loads((self.kdir / rel).read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
            validators[kind] = (self.rel(self.kdir / rel), jsonschema.Draft202012Validator(schema))
        for file, obj in self.objects:
            if obj.get("kind") in validators:
                schema_rel, validator = validators[obj["kind"]]
                for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
                    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
                    self.problem(file, obj, f"{path}: {error.message} (against {schema_rel})")
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path) or "(top level)"
                    self.problem(file, obj, f"{path}: {e.message} (Kubernetes {e.version} schema, strict)")
                    break
                except kubernetes_validate.SchemaNotFoundError as e:
                    self.problem(file, obj, f"no schema: {e.message}")
                    break

    def check_selectors(self) -> None:
        workloads = self.workloads()

        def matches(where: str, obj: dict, ofile: str, selector: dict | None, w: Workload) -> None:
            if not selector:
                self.problem(ofile, obj, f"{where} is empty: it would select every pod, or none")
                return
            wrong = {k: v for k, v in selector.items() if w.labels.get(k) != v}
            if wrong:
                self.problem(ofile, obj, f"{where} {wrong} does not match the pod labels {w.labels} of Deployment/{w.name}")

        for w in workloads:
            selector = w.deploy["spec"]["selector"].get("matchLabels")
            matches("spec.selector.matchLabels", w.deploy, w.file, selector, w)
            if w.deploy["spec"]["selector"].get("matchExpressions"):
                self.problem(w.file, w.deploy, "spec.selector.matchExpressions is not checked here: use matchLabels")
            # Two Deployments whose selectors overlap each count the other's pods as their own.
            for other in workloads:
                if other is not w and selector and self.selects(selector, other):
                    self.problem(w.file, w.deploy, f"spec.selector.matchLabels {selector} also selects the pods of Deployment/{other.name} ({other.labels}): each would scale and replace the other's pods")
            for i, tsc in enumerate(w.template["spec"].get("topologySpreadConstraints") or []):
                matches(f"spec.template.spec.topologySpreadConstraints[{i}].labelSelector.matchLabels", w.deploy, w.file,
                        (tsc.get("labelSelector") or {}).get("matchLabels"), w)
        for sfile, svc in self.of_kind("Service"):
            selector = svc["spec"].get("selector")
            if not selector:
                self.problem(sfile, svc, "spec.selector is empty: it would select every pod, or none")
            elif not any(self.selects(selector, w) for w in workloads):
                self.problem(sfile, svc, f"spec.selector {selector} matches the pods of no Deployment ({', '.join(f'{w.name}: {w.labels}' for w in workloads)})")
        pdbs = self.of_kind("PodDisruptionBudget")
        for w in workloads:
            mine = [(f, pdb) for f, pdb in pdbs if self.selects(pdb["spec"]["selector"].get("matchLabels"), w)]
            if len(mine) != 1:
                self.problem(w.file, w.deploy, f"needs exactly one PodDisruptionBudget selecting its pods, has {len(mine)} ({', '.join(pdb['metadata']['name'] for _, pdb in mine) or 'none'})")
        for pfile, pdb in pdbs:
            selector = pdb["spec"]["selector"].get("matchLabels")
            if not selector:
                self.problem(pfile, pdb, "spec.selector.matchLabels is empty: it would select every pod, or none")
            elif not any(self.selects(selector, w) for w in workloads):
                self.problem(pfile, pdb, f"spec.selector.matchLabels {selector} matches the pods of no Deployment ({', '.join(f'{w.name}: {w.labels}' for w in workloads)})")

    def autoscalers(self) -> list[tuple[str, dict, dict]]:
        """Every ScaledObject and HorizontalPodAutoscaler, with its scaleTargetRef. KEDA drives
        an HPA of its own for each ScaledObject, so both count as one autoscaler each."""
        return [(f, o, o["spec"].get("scaleTargetRef") or {})
                for kind in ("ScaledObject", "HorizontalPodAutoscaler") for f, o in self.of_kind(kind)]

    def check_scale_target(self) -> None:
        names = {w.name: w for w in self.workloads()}
        if not self.of_kind("ScaledObject"):
            self.problem(self.rel(self.kdir), None, "has no ScaledObject")
        targeted: dict[str, list[str]] = {}
        for file, obj, ref in self.autoscalers():
            if ref.get("name") not in names:
                self.problem(file, obj, f"spec.scaleTargetRef.name is `{ref.get('name')}`, but the Deployments are {', '.join(f'`{n}`' for n in names)}")
            if ref.get("kind", "Deployment") != "Deployment" or ref.get("apiVersion", "apps/v1") != "apps/v1":
                self.problem(file, obj, f"spec.scaleTargetRef must be an apps/v1 Deployment (is {ref.get('apiVersion')} {ref.get('kind')})")
            targeted.setdefault(ref.get("name"), []).append(f"{obj['kind']}/{obj['metadata']['name']}")
        for name, w in names.items():
            by = targeted.get(name, [])
            if len(by) > 1:
                self.problem(w.file, w.deploy, f"is the scaleTargetRef of {' and '.join(by)}: two autoscalers would fight over its replicas")

    def check_roles(self) -> None:
        """Exactly one Deployment per role, each saying its role, labelled with it."""
        default = None
        for w in self.workloads():
            role, how = self.role(w)
            if how is None:
                default = role
                self.problem(w.file, w.deploy, f"container `{ENGINE_CONTAINER}` sets neither ORDO_ROLE nor --role, so it runs the default role `{role}`; set one of {', '.join(ROLES)}")
            elif role not in ROLES:
                self.problem(w.file, w.deploy, f"container `{ENGINE_CONTAINER}`: {how} is {role!r}, not one of {', '.join(ROLES)}")
            component = w.labels.get("app.kubernetes.io/component")
            if role in ROLES and component != role:
                self.problem(w.file, w.deploy, f"runs the role `{role}` ({how}), but its pods are labelled app.kubernetes.io/component={shown(component)}: the Service, policies and budgets select by that label")
        for role in ROLES:
            found = self.of_role(role)
            if len(found) != 1:
                self.problem(self.rel(self.kdir), None, (
                    f"needs exactly one Deployment of role `{role}`, has {len(found)} ({', '.join(w.name for w in found) or 'none'})"
                    + (f"; one without a role runs `{default}`" if default else "")))

    def check_service_to_ingest(self) -> None:
        """Ingest traffic reaches the ingest pods only: an apply pod answers 404 on every route."""
        for sfile, svc in self.of_kind("Service"):
            selector = svc["spec"].get("selector")
            if not selector:
                continue  # named by check_selectors
            for w in self.workloads():
                role = self.role(w)[0]
                if self.selects(selector, w) and role != "ingest":
                    self.problem(sfile, svc, f"spec.selector {selector} selects the pods of Deployment/{w.name}, whose role is `{role}`: the Service is for ingest, and {'an apply pod answers 404 on every pipeline route' if role == 'apply' else 'only ingest pods should take it'}")
            if not any(self.selects(selector, w) for w in self.of_role("ingest")):
                self.problem(sfile, svc, f"spec.selector {selector} selects no ingest pod")

    def check_autoscaler_roles(self) -> None:
        """Apply scales on lag (KEDA), ingest on CPU (an HPA); each Deployment has one."""
        targets = {}
        for file, obj, ref in self.autoscalers():
            targets.setdefault(ref.get("name"), []).append((file, obj))
        for w in self.workloads():
            role = self.role(w)[0]
            mine = targets.get(w.name, [])
            kinds = [o["kind"] for _, o in mine]
            if role == "apply" and "ScaledObject" not in kinds:
                self.problem(w.file, w.deploy, f"is the apply Deployment, but no ScaledObject targets it ({', '.join(kinds) or 'nothing'} does): apply scales on the consumer group's lag")
            if role == "ingest" and "HorizontalPodAutoscaler" not in kinds:
                self.problem(w.file, w.deploy, f"is the ingest Deployment, but no HorizontalPodAutoscaler targets it ({', '.join(kinds) or 'nothing'} does)")
            for file, obj in mine:
                if obj["kind"] == "ScaledObject" and role != "apply":
                    self.problem(file, obj, (
                        f"targets Deployment/{w.name}, whose role is `{role}`, not `apply`: lag measures the apply side's work"
                        + (", and an ingest pod joins no consumer group" if role == "ingest" else "")))
                if obj["kind"] == "HorizontalPodAutoscaler" and role == "ingest":
                    self.hpa_on_cpu(file, obj, w)

    def hpa_on_cpu(self, file: str, hpa: dict, w: Workload) -> None:
        spec = hpa["spec"]
        lo, hi = spec.get("minReplicas", 1), spec["maxReplicas"]
        if lo < 2:
            self.problem(file, hpa, f"minReplicas is {lo}: ingest is what callers wait on; keep at least 2 so a drain or a crash leaves one serving")
        if hi < lo:
            self.problem(file, hpa, f"maxReplicas {hi} is below minReplicas {lo}")
        replicas = w.deploy["spec"].get("replicas", 1)
        if not lo <= replicas <= hi:
            self.problem(w.file, w.deploy, f"spec.replicas {replicas} is outside HorizontalPodAutoscaler/{hpa['metadata']['name']}'s minReplicas..maxReplicas ({lo}..{hi})")
        cpu = [m for m in spec.get("metrics") or []
               if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"]
        if not cpu:
            self.problem(file, hpa, "has no Resource metric on cpu: ingest scales on CPU here (or replace this with a request-rate scaler, docs/deploy.md)")
        for m in cpu:
            target = m["resource"].get("target") or {}
            if target.get("type") == "Utilization":
                if "cpu" not in ((w.engine.get("resources") or {}).get("requests") or {}):
                    self.problem(w.file, w.deploy, f"container `{ENGINE_CONTAINER}` has no cpu request, which the HPA's cpu Utilization is a share of")
                if not 0 < target.get("averageUtilization", 0) <= 90:
                    self.problem(file, hpa, f"cpu averageUtilization is {shown(target.get('averageUtilization'))}: above 90 % leaves no room while a new pod starts")

    def check_grace(self, w: Workload) -> None:
        """The grace period outlasts the shutdown of the engine's role: an ingest engine drains
        HTTP, an apply engine its consumers (and its listeners beside them); both then flush
        the producer. Pods behind a Service wait in preStop while they leave its endpoints."""
        file, deploy, template = w.file, w.deploy, w.template
        http = self.src.seconds("engine/src/serve.rs", "DRAIN_TIMEOUT")
        workers = self.src.seconds("engine/src/pipeline/consume.rs", "DRAIN_TIMEOUT")
        flush = self.src.seconds("engine/src/build.rs", "DRAIN_TIMEOUT")
        if None in (http, workers, flush):
            return
        pre_stop = 0
        hook = (w.engine.get("lifecycle") or {}).get("preStop")
        if hook:
            command = (hook.get("exec") or {}).get("command") or []
            if len(command) == 2 and command[0] == "sleep" and command[1].isdigit():
                pre_stop = int(command[1])
            elif "sleep" in hook:
                pre_stop = int(hook["sleep"]["seconds"])
            else:
                self.problem(file, deploy, f"the engine's preStop hook {hook} is not a plain sleep: its length cannot be counted in the grace period")
        services = [svc["metadata"]["name"] for _, svc in self.of_kind("Service") if svc["spec"].get("selector") and self.selects(svc["spec"]["selector"], w)]
        if services and not pre_stop:
            self.problem(file, deploy, (
                f"its pods are behind the Service {', '.join(services)} but have no preStop sleep: they would stop taking "
                "connections while the Service still sends them requests"))
        role = self.role(w)[0]
        # What runs at SIGTERM side by side, then the producer's flush after all of it.
        drains = {"HTTP drain": http}
        if role != "ingest":  # apply and all consume
            drains["consumer drain"] = workers
        longest = max(drains.values())
        budget = pre_stop + longest + flush
        grace = template["spec"].get("terminationGracePeriodSeconds", 30)
        if grace <= budget:
            parts = ", ".join(f"{k} {v} s" for k, v in drains.items())
            self.problem(file, deploy, (
                f"spec.template.spec.terminationGracePeriodSeconds is {grace}, not more than the shutdown of an engine of role `{role}`: "
                f"preStop {pre_stop} s + max({parts}) + producer flush {flush} s = {budget} s "
                "(DRAIN_TIMEOUT in engine/src/serve.rs, pipeline/consume.rs, build.rs)"))

    def check_probes(self, w: Workload) -> None:
        file, deploy, engine = w.file, w.deploy, w.engine
        ports = {p.get("name"): p["containerPort"] for p in engine.get("ports") or []}
        numbers = set(ports.values())
        listen = self.env(engine).get("ORDO_LISTEN", {}).get("value", "127.0.0.1:3000")
        listen_port = int(listen.rsplit(":", 1)[1])
        check_timeout = self.src.seconds("engine/src/operator/ready.rs", "CHECK_TIMEOUT")
        loaded = self.pipelines_file(w)
        pipelines = len((loaded[1] if loaded else {}).get("pipelines") or {}) or 1
        want = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"}
        for probe, path in want.items():
            spec = engine.get(probe)
            if spec is None:
                if probe != "startupProbe":
                    self.problem(file, deploy, f"container `{ENGINE_CONTAINER}` has no {probe} (it should GET {path})")
                continue
            get = spec.get("httpGet")
            if not get:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}`: {probe} must be an httpGet of {path}")
                continue
            if get.get("path") != path:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}`: {probe}.httpGet.path is `{get.get('path')}`, must be `{path}`")
            port = get.get("port")
            number = ports.get(port) if isinstance(port, str) else port
            if number is None or number not in numbers:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}`: {probe}.httpGet.port `{port}` is not a declared containerPort ({ports})")
            elif number != listen_port:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}`: {probe} probes port {number}, but the engine listens on {listen} (ORDO_LISTEN)")
        ready = engine.get("readinessProbe") or {}
        if check_timeout is not None and ready:
            need = check_timeout * (1 + pipelines)
            if ready.get("timeoutSeconds", 1) < need:
                self.problem(file, deploy, (
                    f"container `{ENGINE_CONTAINER}`: readinessProbe.timeoutSeconds is {ready.get('timeoutSeconds', 1)}, but /readyz may take "
                    f"{need} s ({check_timeout} s for the broker and {check_timeout} s for each of {pipelines} pipeline tables, one after the other)"))

    def check_listeners(self, w: Workload) -> None:
        file, deploy, template, engine = w
        env = self.env(engine)
        ports = {p.get("name"): p["containerPort"] for p in engine.get("ports") or []}
        for var, name in (("ORDO_LISTEN", "http"), ("ORDO_ADMIN_LISTEN", "admin")):
            value = env.get(var, {}).get("value")
            if value is None:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}` does not set {var}")
                continue
            host, _, port = value.rpartition(":")
            if host in ("127.0.0.1", "localhost", "[::1]"):
                self.problem(file, deploy, f"{var}={value} is loopback: nothing outside the pod could reach it")
            if ports.get(name) != int(port):
                self.problem(file, deploy, f"{var}={value}, but the containerPort named `{name}` is {ports.get(name)}")
        annotations = template.get("metadata", {}).get("annotations") or {}
        scrape = annotations.get("prometheus.io/port")
        if scrape is not None and ports.get("admin") != int(scrape):
            self.problem(file, deploy, f"the annotation prometheus.io/port is {scrape}, but /metrics is on the admin port {ports.get('admin')}")
        for sfile, svc in self.of_kind("Service"):
            if not (svc["spec"].get("selector") and self.selects(svc["spec"]["selector"], w)):
                continue
            for p in svc["spec"].get("ports") or []:
                target = p.get("targetPort", p.get("port"))
                number = ports.get(target) if isinstance(target, str) else target
                if number not in ports.values():
                    self.problem(sfile, svc, f"port `{p.get('name')}` targets `{target}`, which no containerPort of `{ENGINE_CONTAINER}` in Deployment/{w.name} declares ({ports})")

    def check_security(self, w: Workload) -> None:
        file, deploy, template = w.file, w.deploy, w.template
        pod_sc = template["spec"].get("securityContext") or {}
        containers = [("initContainers", c) for c in template["spec"].get("initContainers") or []]
        containers += [("containers", c) for c in template["spec"]["containers"]]
        for group, c in containers:
            sc = c.get("securityContext") or {}
            where = f"{group}[{c.get('name')}].securityContext"

            def effective(key: str) -> Any:
                return sc.get(key, pod_sc.get(key))

            if effective("runAsNonRoot") is not True:
                self.problem(file, deploy, f"{where}.runAsNonRoot must be true (here or in the pod's securityContext), is {shown(effective('runAsNonRoot'))}")
            uid = effective("runAsUser")
            if not isinstance(uid, int) or uid == 0:
                self.problem(file, deploy, f"{where}.runAsUser must be a non-root uid (the image's is 10001), is {shown(uid)}")
            if sc.get("readOnlyRootFilesystem") is not True:
                self.problem(file, deploy, f"{where}.readOnlyRootFilesystem must be true, is {shown(sc.get('readOnlyRootFilesystem'))}")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.problem(file, deploy, f"{where}.allowPrivilegeEscalation must be false, is {shown(sc.get('allowPrivilegeEscalation'))}")
            if sc.get("privileged"):
                self.problem(file, deploy, f"{where}.privileged must not be set")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                self.problem(file, deploy, f"{where}.capabilities.drop must hold ALL, is {shown(caps.get('drop'))}")
            if caps.get("add"):
                self.problem(file, deploy, f"{where}.capabilities.add must be empty, is {shown(caps.get('add'))}")
            seccomp = (effective("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                self.problem(file, deploy, f"{where}.seccompProfile.type must be RuntimeDefault (here or in the pod's), is {shown(seccomp)}")
            image = c.get("image", "")
            if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
                self.problem(file, deploy, f"{group}[{c.get('name')}].image `{image}` must name a tag (not latest) or a digest")
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in (resources.get(kind) or {}):
                        self.problem(file, deploy, f"{group}[{c.get('name')}].resources.{kind}.{res} is not set")
            for res in ("cpu", "memory"):
                req, lim = (resources.get("requests") or {}).get(res), (resources.get("limits") or {}).get(res)
                if req is not None and lim is not None and quantity(req) > quantity(lim):
                    self.problem(file, deploy, f"{group}[{c.get('name')}].resources: the {res} request {req} is above the limit {lim}")

    def check_security_and_namespace(self) -> None:
        self.each(self.check_security)()
        for nfile, ns in self.of_kind("Namespace"):
            if self.namespace and ns["metadata"]["name"] != self.namespace:
                self.problem(nfile, ns, f"is not the kustomization's namespace `{self.namespace}`")

    def check_secrets_everywhere(self) -> None:
        for file_, obj in self.objects:
            if obj.get("kind") == "Secret" and (obj.get("data") or obj.get("stringData")):
                self.problem(file_, obj, "holds secret values in the repository; make the Secret outside it (docs/deploy.md, Kubernetes)")
        self.each(self.check_secrets)()

    def check_secrets(self, w: Workload) -> None:
        file, deploy, template = w.file, w.deploy, w.template
        containers = (template["spec"].get("initContainers") or []) + template["spec"]["containers"]
        for c in containers:
            env = self.env(c)
            for name, entry in env.items():
                if "value" in entry and SECRET_LOOKING.search(name) and name not in SECRET_PATH_ENV:
                    self.problem(file, deploy, f"container `{c['name']}`: env {name} has a literal value; take it from a Secret (valueFrom.secretKeyRef)")
            for ref in c.get("envFrom") or []:
                if "configMapRef" in ref:
                    self.problem(file, deploy, f"container `{c['name']}`: envFrom a ConfigMap is not checked for secrets here; use env")
        engine = self.env(w.engine)
        for name in SECRET_ENV:
            ref = (engine.get(name, {}).get("valueFrom") or {}).get("secretKeyRef")
            if not ref and "value" not in engine.get(name, {}):  # a literal one is named above
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}`: env {name} must come from a Secret (valueFrom.secretKeyRef)")

    def check_identity_and_env(self, w: Workload) -> None:
        file, deploy, template = w.file, w.deploy, w.template
        name = template["spec"].get("serviceAccountName")
        accounts = {o["metadata"]["name"]: (f, o) for f, o in self.of_kind("ServiceAccount")}
        if name not in accounts:
            self.problem(file, deploy, f"serviceAccountName `{name}` is not a ServiceAccount of this directory ({', '.join(accounts) or 'none'})")
        else:
            afile, account = accounts[name]
            arn = (account["metadata"].get("annotations") or {}).get("eks.amazonaws.com/role-arn", "")
            if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", arn):
                self.problem(afile, account, f"annotation eks.amazonaws.com/role-arn must be an IAM role ARN (IRSA), is {arn!r}")
        env = self.env(w.engine)
        for var in ("KAFKA_BROKERS", "AWS_REGION", "ORDO_CONFIG"):
            if var not in env:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}` does not set {var}")
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            if var in env:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}` sets {var}: credentials come from IRSA, the endpoint from the region")

    def check_pipelines_file(self, w: Workload) -> None:
        file, deploy, template, engine = w
        config = self.env(engine).get("ORDO_CONFIG", {}).get("value")
        try:
            loaded = self.pipelines_file(w, strict=True)
        except tomllib.TOMLDecodeError as e:
            self.problem(self.config_source(w), None, f"does not parse as TOML: {e}")
            return
        if loaded is None:
            self.problem(file, deploy, f"ORDO_CONFIG={config} is not a key of a ConfigMap mounted in container `{ENGINE_CONTAINER}`")
            return
        _, doc = loaded
        where = self.config_source(w)
        unknown = set(doc) - {"pipelines", "auth", "audit", "kafka"}
        if unknown:
            self.problem(where, None, f"unknown top-level keys {sorted(unknown)} (the engine refuses them)")
        if "auth" not in doc and self.env(engine).get("ORDO_INSECURE_NO_AUTH", {}).get("value") not in ("true", "1"):
            self.problem(where, None, "has no [auth] table: the engine refuses to listen beyond loopback without one")
        known, required = self.src.pipeline_keys()
        pipelines = doc.get("pipelines") or {}
        if not pipelines:
            self.problem(where, None, "has no [pipelines.<name>] table")
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in engine.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
        filled = {m["name"] for c in template["spec"].get("initContainers") or [] for m in c.get("volumeMounts") or []}
        for name, p in pipelines.items():
            if known and set(p) - known:
                self.problem(where, None, f"pipeline `{name}`: unknown keys {sorted(set(p) - known)} (known: engine/src/config/file.rs)")
            if required - set(p):
                self.problem(where, None, f"pipeline `{name}`: missing required keys {sorted(required - set(p))}")
            for field in ("plugin", "plugin_self_test"):
                path = p.get(field)
                if path is None:
                    continue
                if not path.startswith("/"):
                    self.problem(where, None, f"pipeline `{name}`: `{field}` {path!r} is relative, so it would be read beside the mounted pipelines file; use a path in the plugins volume")
                    continue
                mount = max((m for m in mounts if path.startswith(m + "/")), key=len, default=None)
                if mount is None:
                    self.problem(where, None, f"pipeline `{name}`: `{field}` {path!r} is under no volume mounted in container `{ENGINE_CONTAINER}` ({sorted(mounts)})")
                    continue
                volume = volumes.get(mounts[mount], {})
                if "emptyDir" in volume and mounts[mount] not in filled:
                    self.problem(where, None, f"pipeline `{name}`: `{field}` {path!r} is in the emptyDir `{mounts[mount]}`, which no init container fills")
                elif "configMap" in volume:
                    cm_name, key = volume["configMap"]["name"], path[len(mount) + 1:]
                    cm = self.generated.get(cm_name) or next(
                        (o for _, o in self.of_kind("ConfigMap") if o["metadata"]["name"] == cm_name), {})
                    if key not in (cm.get("data") or {}) and key not in (cm.get("binaryData") or {}):
                        self.problem(where, None, f"pipeline `{name}`: `{field}` {path!r} is not a key of the ConfigMap `{cm_name}` mounted at {mount}")

    def check_kafka_transport(self) -> None:
        """Records and credentials never cross the network in clear text: the engine's Kafka
        clients, and KEDA's scaler reading the same brokers, speak TLS."""
        msk_iam = False
        for w in self.workloads():
            msk_iam |= self.kafka_transport(w)
        self.keda_transport(msk_iam)

    def kafka_transport(self, w: Workload) -> bool:
        """The engine's clients in one Deployment; whether they speak MSK IAM."""
        file, deploy = w.file, w.deploy
        loaded = self.pipelines_file(w)
        if loaded is None:
            return False  # named by check_pipelines_file
        where = self.config_source(w)
        kafka = loaded[1].get("kafka") or {}
        brokers = self.env(w.engine).get("KAFKA_BROKERS", {}).get("value") or ""
        msk_iam = "aws_msk_iam" in kafka
        protocol = "SASL_SSL" if msk_iam else str(kafka.get("security.protocol", "PLAINTEXT")).upper()
        if protocol not in KAFKA_TLS_PROTOCOLS:
            self.problem(where, None, (
                f"the engine's Kafka clients would speak {protocol}: records and credentials in clear text. "
                "Use [kafka.aws_msk_iam] (MSK's IAM port) or security.protocol SSL or SASL_SSL"))
        if msk_iam:
            for broker in filter(None, brokers.split(",")):
                port = broker.rsplit(":", 1)[-1]
                if port != str(MSK_IAM_PORT):
                    self.problem(file, deploy, (
                        f"KAFKA_BROKERS names {broker}, but [kafka.aws_msk_iam] ({where}) speaks to MSK's IAM port {MSK_IAM_PORT}"))
        return msk_iam

    def keda_transport(self, msk_iam: bool) -> None:
        """KEDA's scaler reads the engine's brokers: over TLS, and with IAM tokens when they
        want them."""
        auths = {o["metadata"]["name"]: o for _, o in self.of_kind("TriggerAuthentication")}
        for sfile, so in self.of_kind("ScaledObject"):
            for t in so["spec"].get("triggers") or []:
                if t.get("type") != "kafka":
                    continue
                meta, name = t.get("metadata") or {}, t.get("name", t["metadata"].get("topic"))
                if meta.get("tls") != "enable":
                    self.problem(sfile, so, f"kafka trigger `{name}`: tls is {shown(meta.get('tls'))}, must be `enable`: KEDA reads the same brokers as the engine")
                if msk_iam and (meta.get("sasl"), meta.get("saslTokenProvider")) != ("oauthbearer", "aws_msk_iam"):
                    self.problem(sfile, so, (
                        f"kafka trigger `{name}`: the brokers want MSK IAM, so sasl must be `oauthbearer` and saslTokenProvider "
                        f"`aws_msk_iam` (are {shown(meta.get('sasl'))}, {shown(meta.get('saslTokenProvider'))})"))
                ref = (t.get("authenticationRef") or {}).get("name")
                if msk_iam and ref not in auths:
                    self.problem(sfile, so, f"kafka trigger `{name}`: authenticationRef {shown(ref)} is not a TriggerAuthentication of this directory ({', '.join(auths) or 'none'})")
                elif msk_iam and (auths[ref]["spec"].get("podIdentity") or {}).get("provider") != "aws":
                    self.problem(sfile, so, f"kafka trigger `{name}`: TriggerAuthentication `{ref}` must use podIdentity provider `aws` for MSK IAM")

    def check_https(self, w: Workload) -> None:
        """Every port of the engine serves HTTPS, with a key from a Secret."""
        file, deploy, template, engine = w
        env = self.env(engine)
        mounts = {m["mountPath"].rstrip("/"): m for m in engine.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
        for var in ("ORDO_TLS_CERT", "ORDO_TLS_KEY"):
            path = env.get(var, {}).get("value")
            if not path:
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}` does not set {var}: it would serve bearer tokens and records over plain HTTP")
                continue
            mount = max((m for m in mounts if path.startswith(m + "/")), key=len, default=None)
            volume = volumes.get(mounts[mount]["name"], {}) if mount else {}
            if "secret" not in volume:
                self.problem(file, deploy, f"{var}={path} is not in a volume from a Secret (it is under {shown(mount)}): the certificate and its private key belong in a Secret")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = (engine.get(probe) or {}).get("httpGet")
            if get is not None and get.get("scheme", "HTTP") != "HTTPS":
                self.problem(file, deploy, f"container `{ENGINE_CONTAINER}`: {probe}.httpGet.scheme is {get.get('scheme', 'HTTP')}, but the engine serves HTTPS")
        annotations = template.get("metadata", {}).get("annotations") or {}
        if annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/scheme") != "https":
            self.problem(file, deploy, f"the annotation prometheus.io/scheme is {shown(annotations.get('prometheus.io/scheme'))}, but /metrics is served over HTTPS")

    def check_network_policy(self, w: Workload) -> None:
        """A NetworkPolicy selects the engine's pods and opens the admin port only to named
        peers (the scraper, operators' tools), never to every pod or address; an apply pod,
        which serves no pipeline route, is open on the admin port only."""
        labels = w.labels
        ports = {p.get("name"): p["containerPort"] for p in w.engine.get("ports") or []}
        admin = ports.get("admin")
        policies = []
        for nfile, np in self.of_kind("NetworkPolicy"):
            selector = np["spec"].get("podSelector") or {}
            if selector.get("matchExpressions"):
                self.problem(nfile, np, "spec.podSelector.matchExpressions is not checked here: use matchLabels")
                continue
            wanted = selector.get("matchLabels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                policies.append((nfile, np))
        if not policies:
            self.problem(self.rel(self.kdir), None, f"has no NetworkPolicy selecting the pods of Deployment/{w.name} {labels}: every pod of the cluster could reach the admin port {admin}")
            return
        if not any("Ingress" in (np["spec"].get("policyTypes") or ["Ingress"]) for _, np in policies):
            self.problem(self.rel(self.kdir), None, f"no NetworkPolicy of the pods of Deployment/{w.name} has policyType Ingress: it would restrict nothing coming in")
        apply = self.role(w)[0] == "apply"
        for nfile, np in policies:
            for i, rule in enumerate(np["spec"].get("ingress") or []):
                rule_ports = rule.get("ports") or []
                if apply:
                    others = [p.get("port") for p in rule_ports if p.get("port") not in ("admin", admin) or p.get("endPort")]
                    if not rule_ports or others:
                        self.problem(nfile, np, (
                            f"spec.ingress[{i}] opens {'every port' if not rule_ports else 'port ' + ', '.join(map(str, others))} of the apply pods "
                            f"(Deployment/{w.name}), which take nothing but the admin port {admin}: they serve no pipeline route"))
                opens_admin = not rule_ports or any(
                    p.get("port") is None or p.get("port") in ("admin", admin)
                    or (isinstance(p.get("port"), int) and p.get("endPort") and p["port"] <= admin <= p["endPort"])
                    for p in rule_ports)
                if not opens_admin:
                    continue
                peers = rule.get("from") or []
                if not peers:
                    self.problem(nfile, np, f"spec.ingress[{i}] opens the admin port {admin} to every source (no `from`)")
                for j, peer in enumerate(peers):
                    pods = peer.get("podSelector") or {}
                    if "ipBlock" in peer:
                        self.problem(nfile, np, f"spec.ingress[{i}].from[{j}] opens the admin port {admin} to addresses {peer['ipBlock'].get('cidr')}: name the scraper's pods instead")
                    elif not (pods.get("matchLabels") or pods.get("matchExpressions")):
                        self.problem(nfile, np, f"spec.ingress[{i}].from[{j}] opens the admin port {admin} to every pod of {'its namespaces' if 'namespaceSelector' in peer else 'the namespace'}: name the pods (podSelector)")

    def check_scaling(self) -> None:
        """The ScaledObject reads the lag of every pipeline its Deployment consumes, on the same
        brokers, and scales no further than the partitions; no budget blocks a drain."""
        workloads = {w.name: w for w in self.workloads()}
        default_partitions = self.src.find("engine/src/config/file.rs", r"const DEFAULT_PARTITIONS: i32 = (\d+);", "`const DEFAULT_PARTITIONS`")
        group_format = self.src.find("engine/src/config/rules.rs", r'consumer_group\.unwrap_or_else\(\|\| format!\("([^"]*)"', "the default consumer group's format")
        offset_reset = self.src.find("engine/src/bus/kafka/group.rs", r'"auto\.offset\.reset", "(\w+)"', "the consumer's auto.offset.reset")
        for sfile, so in self.of_kind("ScaledObject"):
            spec = so["spec"]
            w = workloads.get((spec.get("scaleTargetRef") or {}).get("name"))
            loaded = self.pipelines_file(w) if w else None
            if loaded is None:
                continue  # named by check_scale_target or check_pipelines_file
            pipelines = loaded[1].get("pipelines") or {}
            brokers = self.env(w.engine).get("KAFKA_BROKERS", {}).get("value")
            replicas = w.deploy["spec"].get("replicas", 1)
            lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
            if not lo <= replicas <= hi:
                self.problem(sfile, so, f"Deployment/{w.name}'s replicas ({replicas}) is outside minReplicaCount..maxReplicaCount ({lo}..{hi})")
            if lo < 1:
                self.problem(sfile, so, "minReplicaCount must be at least 1: at 0 the first event after a quiet spell waits for an apply pod to start (up to 2 minutes)")
            triggers = [t for t in spec.get("triggers") or [] if t.get("type") == "kafka"]
            for name, p in pipelines.items():
                group = p.get("consumer_group") or (group_format or "ordo.{name}").replace("{name}", name)
                topic = p.get("topic")
                partitions = p.get("partitions", int(default_partitions or 6))
                mine = [t for t in triggers if t["metadata"].get("topic") == topic]
                if len(mine) != 1:
                    self.problem(sfile, so, f"needs exactly one kafka trigger on pipeline `{name}`'s topic `{topic}`, has {len(mine)}")
                    continue
                meta = mine[0]["metadata"]
                if meta.get("consumerGroup") != group:
                    self.problem(sfile, so, f"trigger on `{topic}`: consumerGroup is `{meta.get('consumerGroup')}`, but pipeline `{name}`'s engines join `{group}`")
                if brokers is not None and meta.get("bootstrapServers") != brokers:
                    self.problem(sfile, so, f"trigger on `{topic}`: bootstrapServers `{meta.get('bootstrapServers')}` differs from Deployment/{w.name}'s KAFKA_BROKERS `{brokers}`")
                if offset_reset and meta.get("offsetResetPolicy", "latest") != offset_reset:
                    self.problem(sfile, so, f"trigger on `{topic}`: offsetResetPolicy is `{meta.get('offsetResetPolicy', 'latest')}`, the engine's consumer uses `{offset_reset}`")
                if meta.get("allowIdleConsumers") == "true":
                    self.problem(sfile, so, f"trigger on `{topic}`: allowIdleConsumers must stay false: a member beyond the partition count consumes nothing")
                if hi > partitions:
                    self.problem(sfile, so, f"maxReplicaCount {hi} is above pipeline `{name}`'s {partitions} partitions: Kafka gives each partition to one member of `{group}`, so replicas beyond {partitions} would sit idle")
            for t in triggers:
                if t["metadata"].get("topic") not in {p.get("topic") for p in pipelines.values()}:
                    self.problem(sfile, so, f"a kafka trigger reads topic `{t['metadata'].get('topic')}`, which no pipeline consumes")
        least = {}  # Deployment -> the fewest replicas it may run
        for w in workloads.values():
            replicas = w.deploy["spec"].get("replicas", 1)
            least[w.name] = min([o["spec"].get("minReplicaCount" if o["kind"] == "ScaledObject" else "minReplicas", replicas)
                                 for _, o, ref in self.autoscalers() if ref.get("name") == w.name] + [replicas])
        for pfile, pdb in self.of_kind("PodDisruptionBudget"):
            spec = pdb["spec"]
            selected = [least[w.name] for w in workloads.values() if self.selects(pdb["spec"]["selector"].get("matchLabels"), w)]
            if not selected:
                continue  # named by check_selectors
            floor = min(selected)
            if "maxUnavailable" in spec and spec["maxUnavailable"] in (0, "0%"):
                self.problem(pfile, pdb, "maxUnavailable 0 blocks every node drain")
            if isinstance(spec.get("minAvailable"), int) and spec["minAvailable"] >= floor:
                self.problem(pfile, pdb, f"minAvailable {spec['minAvailable']} leaves no disruption at {floor} replicas: node drains would block")


    def check_shared(self) -> None:
        """Both Deployments run one engine: the same image and plugins, pipelines file,
        identity, brokers, TLS and secrets. Above all the principal key: apply records the
        principal of an event only when ingest's signature checks under the same key."""
        workloads = self.workloads()
        why = {
            "env ORDO_PRINCIPAL_KEY": ": the apply side would record every principal the ingest side signed as `claimed`",
            "env ORDO_LOG_KEY_SECRET": ": one key would have different hashes in the two sides' logs",
            "pipelines file": ": ingest would take events that apply does not apply the same way",
            "plugin images (initContainers)": ": ingest would validate with another plugin than the one apply merges with",
        }

        def facts(w: Workload) -> dict[str, tuple[Any, Any]]:
            """What must agree: the value compared, and how a message shows it."""
            env = self.env(w.engine)
            loaded = self.pipelines_file(w)
            found: dict[str, tuple[Any, Any]] = {
                "image": (w.engine.get("image"),) * 2,
                "plugin images (initContainers)": (sorted(c.get("image", "") for c in w.template["spec"].get("initContainers") or []),) * 2,
                "serviceAccountName": (w.template["spec"].get("serviceAccountName"),) * 2,
                "pipelines file": (loaded and loaded[1], self.config_source(w)),
            }
            for name in SHARED_ENV:
                entry = env.get(name, {})
                found[f"env {name}"] = (entry.get("valueFrom", entry.get("value")),) * 2
            return found

        first = workloads[0]
        mine = facts(first)
        for w in workloads[1:]:
            for what, (value, shown_theirs) in facts(w).items():
                if value != mine[what][0]:
                    self.problem(w.file, w.deploy, f"its {what} ({shown_theirs}) differs from Deployment/{first.name}'s ({mine[what][1]}){why.get(what, '')}")


def shown(value: Any) -> str:
    """A value as a message shows it: `unset` for a missing one."""
    return "unset" if value is None else repr(value)


def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    text = str(text)
    units = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if match is None or match.group(2) not in units and match.group(2) != "":
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * units.get(match.group(2), 1)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} DIR (the kustomization directory)", file=sys.stderr)
        return 2
    checker = Checker(Path(argv[1]))
    if not checker.load():
        for p in checker.problems:
            print(f"FAIL {p}", file=sys.stderr)
        return 1
    checks = [
        ("kustomization", lambda: None),  # its problems were found while loading
        ("schemas", checker.check_schemas),
        ("selectors", checker.check_selectors),
        ("scale target", checker.check_scale_target),
        ("grace period", checker.each(checker.check_grace)),
        ("probes", checker.each(checker.check_probes)),
        ("listeners and ports", checker.each(checker.check_listeners)),
        ("security context and resources", checker.check_security_and_namespace),
        ("secrets by reference", checker.check_secrets_everywhere),
        ("identity and environment", checker.each(checker.check_identity_and_env)),
        ("pipelines file", checker.each(checker.check_pipelines_file)),
        ("scaling on lag", checker.check_scaling),
        ("Kafka over TLS", checker.check_kafka_transport),
        ("HTTPS from a Secret", checker.each(checker.check_https)),
        ("admin port behind a NetworkPolicy", checker.each(checker.check_network_policy)),
        # The engine split by role (ordo run --role): one Deployment each, scaled each its way.
        ("a Deployment per role", checker.check_roles),
        ("Service to ingest pods only", checker.check_service_to_ingest),
        ("autoscaler per role", checker.check_autoscaler_roles),
        ("one engine in both roles", checker.check_shared),
    ]
    loading_problems = len(checker.problems)
    for name, check in checks:
        checker.run(name, check)
    # Problems found while loading count against the first check.
    checker.results[0] = ("kustomization", loading_problems)
    for problem in checker.problems:
        print(f"FAIL {problem}", file=sys.stderr)
    failed = sum(1 for _, n in checker.results if n)
    names = ", ".join(name for name, _ in checker.results)
    kinds = ", ".join(sorted({f"{o['kind']}/{o['metadata']['name']}" for _, o in checker.objects}))
    print(f"deploy/kubernetes: {len(checker.objects)} objects ({kinds}); Kubernetes {' and '.join(K8S_VERSIONS)} schemas (strict), "
          f"{', '.join(CRD_SCHEMAS.values())}; checks: {names}")
    sys.stderr.flush()
    if failed:
        print(f"failed checks: {', '.join(name for name, n in checker.results if n)}")
    print(f"deploy: {len(checks) - failed} passed, {failed} failed")
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
