"""Each invariant of check_manifests.py, seen failing (deploy/check.sh runs this after it).

A check that cannot fail proves nothing. Each case below copies deploy/kubernetes, undoes one
protection with a text edit (the edit must still apply: if a manifest changes under it, this
test says so rather than passing on an unbroken copy), runs the checker on the copy and
expects it to fail naming the problem. The untouched copy must pass, so each failure is the
edit's. The engine's source, which the checker reads constants from, is linked beside the
copy.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ left in deploy/
import check_manifests  # noqa: E402

# (what is undone, file, text in it, replaced by, a fragment the checker must print).
CASES = [
    # The split by role.
    ("apply says no role", "deployment-apply.yaml",
     "            - name: ORDO_ROLE\n              value: apply\n", "",
     "sets neither ORDO_ROLE nor --role, so it runs the default role `all`"),
    ("two ingest Deployments", "deployment-apply.yaml",
     "            - name: ORDO_ROLE\n              value: apply\n",
     "            - name: ORDO_ROLE\n              value: ingest\n",
     "needs exactly one Deployment of role `apply`, has 0"),
    ("--role overrides ORDO_ROLE", "deployment-ingest.yaml",
     'args: ["run"]', 'args: ["run", "--role", "apply"]',
     "runs the role `apply` (--role), but its pods are labelled app.kubernetes.io/component='ingest'"),
    ("the Service reaches apply pods", "service.yaml",
     "  selector:\n    app.kubernetes.io/name: ordo\n    app.kubernetes.io/component: ingest\n",
     "  selector:\n    app.kubernetes.io/name: ordo\n",
     "selects the pods of Deployment/ordo-apply, whose role is `apply`"),
    ("KEDA scales ingest", "scaledobject.yaml",
     "    name: ordo-apply\n  pollingInterval", "    name: ordo-ingest\n  pollingInterval",
     "targets Deployment/ordo-ingest, whose role is `ingest`"),
    ("KEDA and the HPA on one Deployment", "scaledobject.yaml",
     "    name: ordo-apply\n  pollingInterval", "    name: ordo-ingest\n  pollingInterval",
     "two autoscalers would fight over its replicas"),
    ("the HPA scales apply", "hpa.yaml",
     "    kind: Deployment\n    name: ordo-ingest", "    kind: Deployment\n    name: ordo-apply",
     "is the ingest Deployment, but no HorizontalPodAutoscaler targets it"),
    ("the HPA not on CPU", "hpa.yaml", "        name: cpu", "        name: memory",
     "has no Resource metric on cpu"),
    ("one ingest replica", "hpa.yaml", "  minReplicas: 3", "  minReplicas: 1",
     "minReplicas is 1"),
    ("the principal key differs", "deployment-apply.yaml",
     "                  key: principal-key", "                  key: principal-key-apply",
     "env ORDO_PRINCIPAL_KEY"),
    ("another plugin image on apply", "deployment-apply.yaml",
     '        - name: plugins\n          image: ghcr.io/example/ordo:0.1.0',
     '        - name: plugins\n          image: ghcr.io/example/ordo-plugins:0.2.0',
     "ingest would validate with another plugin"),
    ("apply's grace shorter than its consumer drain", "deployment-apply.yaml",
     "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 20",
     "the shutdown of an engine of role `apply`: preStop 0 s + max(HTTP drain 10 s, consumer drain 10 s)"),
    ("ingest's grace shorter than its HTTP drain", "deployment-ingest.yaml",
     "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 25",
     "the shutdown of an engine of role `ingest`: preStop 5 s + max(HTTP drain 10 s)"),
    ("ingest without preStop", "deployment-ingest.yaml",
     '          lifecycle:\n            preStop:\n              exec:\n                command: ["sleep", "5"]\n', "",
     "behind the Service ordo but have no preStop sleep"),
    ("ingest's port open on apply pods", "networkpolicy.yaml",
     "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: ordo\n      app.kubernetes.io/component: ingest\n",
     "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: ordo\n",
     "opens port http of the apply pods (Deployment/ordo-apply)"),
    ("apply without a disruption budget", "poddisruptionbudget.yaml",
     "      app.kubernetes.io/component: apply\n", "      app.kubernetes.io/component: engine\n",
     "Deployment/ordo-apply: needs exactly one PodDisruptionBudget selecting its pods, has 0"),
    ("overlapping Deployment selectors", "deployment-ingest.yaml",
     "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ordo\n      app.kubernetes.io/component: ingest\n",
     "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ordo\n",
     "also selects the pods of Deployment/ordo-apply"),
    # The older checks, now on each Deployment: one example each that the apply side is read.
    ("apply's engine may run as root", "deployment-apply.yaml",
     "              memory: 1536Mi\n          securityContext:\n            runAsNonRoot: true",
     "              memory: 1536Mi\n          securityContext:\n            runAsNonRoot: false",
     "Deployment/ordo-apply: containers[engine].securityContext.runAsNonRoot must be true"),
    ("apply's brokers in clear text", "deployment-apply.yaml",
     "b-1.example.kafka.eu-west-1.amazonaws.com:9098,", "b-1.example.kafka.eu-west-1.amazonaws.com:9092,",
     "Deployment/ordo-apply: KAFKA_BROKERS names b-1.example.kafka.eu-west-1.amazonaws.com:9092"),
    ("apply probed over HTTP", "deployment-apply.yaml",
     "          readinessProbe:\n            httpGet:\n              scheme: HTTPS",
     "          readinessProbe:\n            httpGet:\n              scheme: HTTP",
     "Deployment/ordo-apply: container `engine`: readinessProbe.httpGet.scheme is HTTP"),
    ("KEDA beyond the partitions", "scaledobject.yaml",
     "  maxReplicaCount: 6", "  maxReplicaCount: 7",
     "maxReplicaCount 7 is above pipeline `patient-profile`'s 6 partitions"),
    ("apply's admin port open to all", "networkpolicy.yaml",
     "        - podSelector:\n            matchLabels:\n              ordo.example/operator: \"true\"\n",
     "        - podSelector: {}\n",
     "opens the admin port 9000 to every pod of the namespace"),
]


def run_checker(kdir: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = check_manifests.main(["check_manifests.py", str(kdir)])
    return status, err.getvalue() + out.getvalue()


class Broken(unittest.TestCase):
    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ordo-deploy-"))
        self.addCleanup(shutil.rmtree, self.root)
        self.kdir = self.root / "deploy" / "kubernetes"
        shutil.copytree(HERE / "kubernetes", self.kdir)
        (self.root / "engine").symlink_to(HERE.parent / "engine")

    def test_the_shipped_directory_passes(self) -> None:
        status, output = run_checker(self.kdir)
        self.assertEqual(status, 0, output)

    def test_each_protection_undone_is_named(self) -> None:
        for what, file, old, new, expected in CASES:
            with self.subTest(what):
                path = self.kdir / file
                original = path.read_text()
                self.assertEqual(original.count(old), 1, f"{file} no longer holds the text this case edits: update it in {Path(__file__).name}")
                path.write_text(original.replace(old, new))
                try:
                    status, output = run_checker(self.kdir)
                finally:
                    path.write_text(original)
                self.assertEqual(status, 1, f"{what}: the checker passed\n{output}")
                self.assertIn(expected, output, f"{what}: the checker failed, but not naming it")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=0 if "-q" in sys.argv else 1).result
    if result.wasSuccessful():
        print(f"deploy: the checker named each of {len(CASES)} protections undone, and passed the untouched copy")
    sys.exit(0 if result.wasSuccessful() else 1)
